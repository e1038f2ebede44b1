use super::*;

fn pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "web", "namespace": "prod", "uid": "u-9",
            "labels": {"app": "web", "tier": "a\"b"},
            "annotations": {"note": "x"},
        },
        "spec": {"containers": [{
            "name": "main",
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}},
        }]},
    }))
    .expect("valid pod")
}

const NODE: Allocatable = Allocatable {
    cpu_millis: 2000,
    memory_bytes: 8 << 30,
};

fn store(kind: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    match (kind, name) {
        ("ConfigMap", "cfg") => Some(BTreeMap::from([
            ("a.conf".to_string(), b"A".to_vec()),
            ("b".to_string(), b"B".to_vec()),
        ])),
        ("Secret", "creds") => Some(BTreeMap::from([("token".to_string(), b"s3cr3t".to_vec())])),
        _ => None,
    }
}

fn cm(v: serde_json::Value) -> ConfigMapVolumeSource {
    serde_json::from_value(v).expect("valid source")
}

#[test]
fn config_map_all_keys_with_default_mode() {
    let files = config_map(&cm(serde_json::json!({"name": "cfg"})), &store).unwrap();
    assert_eq!(
        files,
        [
            FileEntry {
                path: "a.conf".into(),
                data: b"A".to_vec(),
                mode: 0o644
            },
            FileEntry {
                path: "b".into(),
                data: b"B".to_vec(),
                mode: 0o644
            },
        ]
    );
    let files = config_map(
        &cm(serde_json::json!({"name": "cfg", "defaultMode": 0o400})),
        &store,
    )
    .unwrap();
    assert!(files.iter().all(|f| f.mode == 0o400));
}

#[test]
fn config_map_items_rename_and_set_modes() {
    let src = cm(serde_json::json!({"name": "cfg", "items": [
        {"key": "b", "path": "dir/renamed", "mode": 0o600},
        {"key": "a.conf", "path": "a"},
    ]}));
    let files = config_map(&src, &store).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(
        (files[0].path.as_str(), files[0].mode),
        ("dir/renamed", 0o600)
    );
    assert_eq!((files[1].path.as_str(), files[1].mode), ("a", 0o644));
}

#[test]
fn missing_objects_and_keys() {
    let err = config_map(&cm(serde_json::json!({"name": "nope"})), &store).unwrap_err();
    assert_eq!(err, "configmap \"nope\" not found");
    assert!(
        config_map(
            &cm(serde_json::json!({"name": "nope", "optional": true})),
            &store
        )
        .unwrap()
        .is_empty()
    );
    let err = config_map(
        &cm(serde_json::json!({"name": "cfg", "items": [{"key": "zz", "path": "z"}]})),
        &store,
    )
    .unwrap_err();
    assert_eq!(err, "configmap references non-existent config key: zz");
    let ok = config_map(&cm(serde_json::json!({"name": "cfg", "optional": true, "items": [{"key": "zz", "path": "z"}]})), &store).unwrap();
    assert!(ok.is_empty());
    let err = config_map(
        &cm(serde_json::json!({"name": "cfg", "items": [{"key": "b", "path": "../escape"}]})),
        &store,
    )
    .unwrap_err();
    assert!(err.contains(".."), "{err}");
    let err = config_map(
        &cm(serde_json::json!({"name": "cfg", "defaultMode": 0o1777})),
        &store,
    )
    .unwrap_err();
    assert!(err.contains("invalid file mode"), "{err}");
}

#[test]
fn secret_files() {
    let src: SecretVolumeSource =
        serde_json::from_value(serde_json::json!({"secretName": "creds", "defaultMode": 0o440}))
            .unwrap();
    let files = secret(&src, &store).unwrap();
    assert_eq!(
        files,
        [FileEntry {
            path: "token".into(),
            data: b"s3cr3t".to_vec(),
            mode: 0o440
        }]
    );
    let src: SecretVolumeSource =
        serde_json::from_value(serde_json::json!({"secretName": "other"})).unwrap();
    assert_eq!(
        secret(&src, &store).unwrap_err(),
        "secret \"other\" not found"
    );
}

#[test]
fn downward_api_fields_and_resources() {
    let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}, "mode": 0o600},
        {"path": "cpu_limit", "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu", "divisor": "1m"}},
        {"path": "cpu_limit_cores", "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu"}},
        {"path": "mem_limit", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory", "divisor": "1Mi"}},
        {"path": "mem_request", "resourceFieldRef": {"containerName": "main", "resource": "requests.memory"}},
        {"path": "cpu_request", "resourceFieldRef": {"containerName": "main", "resource": "requests.cpu", "divisor": "1m"}},
    ]))
    .unwrap();
    let files = downward_api(&items, None, &pod(), NODE).unwrap();
    let text = |p: &str| {
        let f = files
            .iter()
            .find(|f| f.path == p)
            .unwrap_or_else(|| panic!("{p}"));
        String::from_utf8(f.data.clone()).unwrap()
    };
    assert_eq!(text("name"), "web");
    assert_eq!(text("ns"), "prod");
    assert_eq!(text("uid"), "u-9");
    assert_eq!(text("labels"), "app=\"web\"\ntier=\"a\\\"b\"");
    assert_eq!(text("app"), "web");
    assert_eq!(text("annotations"), "note=\"x\"");
    assert_eq!(text("cpu_limit"), "500");
    assert_eq!(text("cpu_limit_cores"), "1");
    assert_eq!(text("mem_limit"), "64");
    assert_eq!(text("mem_request"), "0");
    assert_eq!(text("cpu_request"), "250");
    assert_eq!(
        files.iter().find(|f| f.path == "annotations").unwrap().mode,
        0o600
    );
    let unset: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
        {"path": "m", "resourceFieldRef": {"containerName": "main", "resource": "limits.ephemeral-storage"}},
    ]))
    .unwrap();
    assert_eq!(
        downward_api(&unset, None, &pod(), NODE).unwrap()[0].data,
        b"0"
    );
    let bad: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
        {"path": "x", "fieldRef": {"fieldPath": "spec.nope"}},
    ]))
    .unwrap();
    assert!(
        downward_api(&bad, None, &pod(), NODE)
            .unwrap_err()
            .contains("unsupported fieldPath")
    );
}

#[test]
fn node_allocatable_is_reported_for_unset_limits() {
    let mut p = pod();
    p.spec.as_mut().unwrap().containers[0].resources = None;
    let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
        {"path": "c", "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu"}},
        {"path": "m", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory", "divisor": "1Gi"}},
    ]))
    .unwrap();
    let files = downward_api(&items, None, &p, NODE).unwrap();
    assert_eq!(files[0].data, b"2");
    assert_eq!(files[1].data, b"8");
}

#[test]
fn projected_merges_sources_and_refuses_tokens() {
    let src: ProjectedVolumeSource = serde_json::from_value(serde_json::json!({
        "defaultMode": 0o400,
        "sources": [
            {"configMap": {"name": "cfg", "items": [{"key": "b", "path": "b"}]}},
            {"secret": {"name": "creds"}},
            {"downwardAPI": {"items": [{"path": "pod", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        ],
    }))
    .unwrap();
    let files = projected(&src, &pod(), &store, NODE).unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["b", "token", "pod"]);
    assert!(files.iter().all(|f| f.mode == 0o400));
    let tok: ProjectedVolumeSource = serde_json::from_value(serde_json::json!({
        "sources": [{"serviceAccountToken": {"path": "token"}}],
    }))
    .unwrap();
    assert!(
        projected(&tok, &pod(), &store, NODE)
            .unwrap_err()
            .contains("serviceAccountToken is not supported")
    );
    let dup: ProjectedVolumeSource = serde_json::from_value(serde_json::json!({
        "sources": [{"configMap": {"name": "cfg"}}, {"configMap": {"name": "cfg"}}],
    }))
    .unwrap();
    assert!(
        projected(&dup, &pod(), &store, NODE)
            .unwrap_err()
            .contains("conflicting path")
    );
}
