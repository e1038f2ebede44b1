//! Container environment and argv as the kubelet builds them.

use std::collections::BTreeMap;

use podrun_model::k8s_openapi::api::core::v1::{Container, Pod};
use podrun_model::{ALL_KEYS, Object, container_argv, container_env, parse_manifests};

fn pod(yaml_containers: &str) -> Pod {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: shop\n  uid: u-1\n  labels: {{app: web, tier: front}}\n  annotations: {{note: hi}}\nspec:\n  nodeName: node1\n  serviceAccountName: sa1\n  containers:\n{yaml_containers}\nstatus:\n  podIP: 198.18.0.5\n  podIPs: [{{ip: 198.18.0.5}}, {{ip: 'fd00::5'}}]\n  hostIP: 198.19.0.1\n"
    );
    match parse_manifests(&text, "t").unwrap().remove(0) {
        Object::Pod(p) => *p,
        _ => unreachable!("a Pod manifest yields a Pod"),
    }
}

fn first(p: &Pod) -> &Container {
    &p.spec.as_ref().unwrap().containers[0]
}

/// A store with ConfigMap `cfg` {a: 1, b: 2} and Secret `sec` {pw: s3cret}.
fn store(kind: &str, name: &str, key: &str) -> Option<String> {
    let mut objs: BTreeMap<(&str, &str), BTreeMap<&str, &str>> = BTreeMap::new();
    objs.insert(("ConfigMap", "cfg"), [("a", "1"), ("b", "2")].into());
    objs.insert(("Secret", "sec"), [("pw", "s3cret")].into());
    let data = objs.get(&(kind, name))?;
    if key == ALL_KEYS {
        return Some(data.keys().copied().collect::<Vec<_>>().join("\n"));
    }
    data.get(key).map(|v| v.to_string())
}

#[test]
fn values_field_refs_and_expansion_in_order() {
    let p = pod(r#"  - name: a
    image: b
    env:
    - {name: NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: NOTE, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['note']"}}}
    - {name: MISSING, valueFrom: {fieldRef: {fieldPath: "metadata.labels['nope']"}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: IPS, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
    - {name: HOST, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: URL, value: "http://$(NAME).$(NS):$(PORT)/$$(NAME)"}
    - {name: PORT, value: "8080"}
    - {name: LATER, value: "$(PORT)"}
"#);
    let env = container_env(&p, first(&p), &store).unwrap();
    let want: Vec<(&str, &str)> = vec![
        ("NAME", "web"),
        ("NS", "shop"),
        ("UID", "u-1"),
        ("APP", "web"),
        ("NOTE", "hi"),
        ("MISSING", ""),
        ("NODE", "node1"),
        ("SA", "sa1"),
        ("IP", "198.18.0.5"),
        ("IPS", "198.18.0.5,fd00::5"),
        ("HOST", "198.19.0.1"),
        // PORT is defined later, so it is not expanded; `$$` escapes.
        ("URL", "http://web.shop:$(PORT)/$(NAME)"),
        ("PORT", "8080"),
        ("LATER", "8080"),
    ];
    let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, want);
}

#[test]
fn config_map_and_secret_refs() {
    let p = pod(r#"  - name: a
    image: b
    envFrom:
    - {configMapRef: {name: cfg}, prefix: CFG_}
    - {secretRef: {name: sec}}
    - {configMapRef: {name: gone, optional: true}}
    env:
    - {name: CFG_a, value: override}
    - {name: B, valueFrom: {configMapKeyRef: {name: cfg, key: b}}}
    - {name: PW, valueFrom: {secretKeyRef: {name: sec, key: pw}}}
    - {name: OPT, valueFrom: {configMapKeyRef: {name: cfg, key: zz, optional: true}}}
"#);
    let env = container_env(&p, first(&p), &store).unwrap();
    let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("CFG_a", "override"),
            ("CFG_b", "2"),
            ("pw", "s3cret"),
            ("B", "2"),
            ("PW", "s3cret")
        ]
    );
}

#[test]
fn missing_required_references_fail_with_kubelet_messages() {
    let cases = [
        (
            "- {name: X, valueFrom: {configMapKeyRef: {name: nope, key: a}}}",
            "configmap \"nope\" not found",
        ),
        (
            "- {name: X, valueFrom: {configMapKeyRef: {name: cfg, key: zz}}}",
            "couldn't find key zz in ConfigMap shop/cfg",
        ),
        (
            "- {name: X, valueFrom: {secretKeyRef: {name: sec, key: zz}}}",
            "couldn't find key zz in Secret shop/sec",
        ),
        (
            "- {name: X, valueFrom: {secretKeyRef: {name: nope, key: a}}}",
            "secret \"nope\" not found",
        ),
    ];
    for (env, want) in cases {
        let p = pod(&format!("  - name: a\n    image: b\n    env:\n    {env}\n"));
        assert_eq!(
            container_env(&p, first(&p), &store).unwrap_err(),
            want,
            "{env}"
        );
    }
    let p = pod("  - name: a\n    image: b\n    envFrom: [{secretRef: {name: nope}}]\n");
    assert_eq!(
        container_env(&p, first(&p), &store).unwrap_err(),
        "secret \"nope\" not found"
    );
}

#[test]
fn argv_expands_known_variables_only() {
    let p = pod(r#"  - name: a
    image: b
    command: [sh, -c, "echo $(GREETING) $(UNKNOWN) $$(GREETING)"]
    args: ["--port=$(PORT)", "$(PORT)$(PORT)"]
"#);
    let env = vec![
        ("GREETING".to_string(), "hi".to_string()),
        ("PORT".to_string(), "80".to_string()),
    ];
    assert_eq!(
        container_argv(first(&p), &env),
        vec![
            "sh",
            "-c",
            "echo hi $(UNKNOWN) $(GREETING)",
            "--port=80",
            "8080"
        ]
    );
}

#[test]
fn sidecar_detection() {
    let mut c = Container::default();
    assert!(!podrun_model::is_sidecar(&c));
    c.restart_policy = Some("Always".into());
    assert!(podrun_model::is_sidecar(&c));
    c.restart_policy = Some("Never".into());
    assert!(!podrun_model::is_sidecar(&c));
}

#[test]
fn job_conditions_count_only_when_true() {
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(serde_json::json!({
        "status": {"conditions": [
            {"type": "FailureTarget", "status": "False"},
            {"type": "Complete", "status": "True"}
        ]}
    }))
    .expect("a Job");
    assert!(podrun_model::job_has_condition(&job, "Complete"));
    assert!(!podrun_model::job_has_condition(&job, "FailureTarget"));
    assert!(!podrun_model::job_has_condition(&job, "Failed"));
    assert!(!podrun_model::job_has_condition(
        &Default::default(),
        "Complete"
    ));
}

#[test]
fn format_map_is_sorted_quoted_lines_without_a_trailing_newline() {
    use std::collections::BTreeMap;
    let m: BTreeMap<String, String> = [("tier", "a\"b"), ("app", "web"), ("n", "x\ny")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(
        podrun_model::format_map(Some(&m)),
        "app=\"web\"\nn=\"x\\ny\"\ntier=\"a\\\"b\""
    );
    assert_eq!(podrun_model::format_map(None), "");
    assert_eq!(podrun_model::format_map(Some(&BTreeMap::new())), "");
}
