//! Manifest parsing: documents, lists, kinds, and kubectl-style errors.

use podrun_model::{Object, ParseErrorKind, parse_manifests};
use proptest::prelude::*;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: busybox\n";

#[test]
fn multi_document_yaml_with_empty_documents() {
    let text = format!(
        "---\n# comment only\n---\n{POD}---\n\n---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: a, image: b}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {{ports: [{{port: 80}}]}}\n"
    );
    let objs = parse_manifests(&text, "m.yaml").unwrap();
    let kinds: Vec<_> = objs
        .iter()
        .map(|o| (o.kind(), o.name().unwrap_or("")))
        .collect();
    assert_eq!(kinds, vec![("Pod", "p"), ("Job", "j"), ("Service", "s")]);
    assert!(parse_manifests("", "empty.yaml").unwrap().is_empty());
    assert!(
        parse_manifests("---\n---\n", "empty.yaml")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn all_supported_kinds_parse() {
    let text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {k: v}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: v}\ndata: {d: aGk=}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: a, image: b}]}\n---\napiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: r}\nspec:\n  selector: {matchLabels: {a: b}}\n";
    let objs = parse_manifests(text, "k.yaml").unwrap();
    let kinds: Vec<_> = objs.iter().map(Object::kind).collect();
    assert_eq!(
        kinds,
        vec![
            "ServiceAccount",
            "ConfigMap",
            "Secret",
            "Namespace",
            "Deployment",
            "ReplicaSet"
        ]
    );
    let Object::Secret(s) = &objs[2] else {
        panic!()
    };
    assert_eq!(s.data.as_ref().unwrap()["d"].0, b"hi");
}

#[test]
fn json_object_stream_and_list() {
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"b"}]}}"#;
    assert_eq!(parse_manifests(pod, "p.json").unwrap().len(), 1);
    // Two concatenated objects, as `kubectl get -o json` of several files.
    assert_eq!(
        parse_manifests(&format!("{pod}\n{pod}"), "p.json")
            .unwrap()
            .len(),
        2
    );
    let list = format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[{pod},{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c"}}}}]}}"#
    );
    let objs = parse_manifests(&list, "l.json").unwrap();
    assert_eq!(
        objs.iter().map(Object::kind).collect::<Vec<_>>(),
        vec!["Pod", "ConfigMap"]
    );
    // A YAML List works too, and an empty one yields nothing.
    let yaml_list = format!("apiVersion: v1\nkind: List\nitems:\n- {}\n", pod);
    assert_eq!(parse_manifests(&yaml_list, "l.yaml").unwrap().len(), 1);
    assert!(
        parse_manifests("apiVersion: v1\nkind: List\n", "l.yaml")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn stdin_text_reports_stdin() {
    let err =
        parse_manifests("apiVersion: v1\nkind: Foo\nmetadata: {name: x}\n", "STDIN").unwrap_err();
    assert_eq!(
        err.to_string(),
        "resource mapping not found for name: \"x\" namespace: \"\" from \"STDIN\": no matches for kind \"Foo\" in version \"v1\"\nensure CRDs are installed first"
    );
    assert!(
        err.kubectl_message()
            .starts_with("error: resource mapping not found")
    );
}

#[test]
fn unknown_kind_and_wrong_group() {
    let err = parse_manifests(
        "apiVersion: v1\nkind: Job\nmetadata: {name: j, namespace: ns1}\n",
        "x.yaml",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "resource mapping not found for name: \"j\" namespace: \"ns1\" from \"x.yaml\": no matches for kind \"Job\" in version \"v1\"\nensure CRDs are installed first"
    );
    let err = parse_manifests("apiVersion: apps/v1\nkind: Foo\n", "x.yaml").unwrap_err();
    assert!(
        matches!(*err.kind, ParseErrorKind::UnknownKind { ref api_version, .. } if api_version == "apps/v1")
    );
}

#[test]
fn unknown_fields_are_all_reported_with_paths() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labelz: {a: b}\nspec:\n  containers:\n  - name: a\n    imagee: busybox\n    ports: [{containerPort: 80, prot: TCP}]\n  - name: b\n    image: b\n    livenessProbe: {exec: {cmd: [x]}}\n  foo: 1\nstatus: {}\ncreationTimestamp: null\n";
    let err = parse_manifests(text, "p.yaml").unwrap_err();
    let ParseErrorKind::UnknownFields { fields, .. } = &*err.kind else {
        panic!("{err:?}")
    };
    assert_eq!(
        fields,
        &vec![
            "metadata.labelz".to_string(),
            "spec.containers[0].imagee".into(),
            "spec.containers[0].ports[0].prot".into(),
            "spec.containers[1].livenessProbe.exec.cmd".into(),
            "spec.foo".into(),
        ]
    );
    assert_eq!(
        err.server_message().unwrap(),
        "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"metadata.labelz\", unknown field \"spec.containers[0].imagee\", unknown field \"spec.containers[0].ports[0].prot\", unknown field \"spec.containers[1].livenessProbe.exec.cmd\", unknown field \"spec.foo\""
    );
    assert!(err.kubectl_message().starts_with(
        "Error from server (BadRequest): error when creating \"p.yaml\": Pod in version"
    ));

    let one = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, imagee: b}]\n";
    assert_eq!(
        parse_manifests(one, "x.yaml")
            .unwrap_err()
            .server_message()
            .unwrap(),
        "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].imagee\""
    );
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {backofLimit: 1}\n";
    assert_eq!(
        parse_manifests(job, "x.yaml")
            .unwrap_err()
            .server_message()
            .unwrap(),
        "Job in version \"v1\" cannot be handled as a Job: strict decoding error: unknown field \"spec.backofLimit\""
    );
}

#[test]
fn wrong_types_are_decode_errors() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: b, ports: [{containerPort: http}]}]\n";
    let err = parse_manifests(text, "p.yaml").unwrap_err();
    let ParseErrorKind::Decode { path, .. } = &*err.kind else {
        panic!("{err:?}")
    };
    assert_eq!(path, "spec.containers[0].ports[0].containerPort");
    // Quantities may be bare numbers.
    let q = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: b, resources: {limits: {cpu: 1, memory: 128Mi}, requests: {cpu: 0.5}}}]\n";
    assert_eq!(parse_manifests(q, "q.yaml").unwrap().len(), 1);
}

#[test]
fn missing_kind_and_api_version() {
    let err = parse_manifests("apiVersion: v1\nmetadata: {name: x}\n", "x.yaml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to decode \"x.yaml\": Object 'Kind' is missing in '{\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"x\"}}'"
    );
    let err = parse_manifests("kind: Pod\n", "x.yaml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to decode \"x.yaml\": Object 'apiVersion' is missing in '{\"kind\":\"Pod\"}'"
    );
    let err = parse_manifests("- 1\n- 2\n", "x.yaml").unwrap_err();
    assert!(
        matches!(*err.kind, ParseErrorKind::NotAnObject { found: "array" }),
        "{err:?}"
    );
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    let err = parse_manifests(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a: b\n",
        "bad.yaml",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "error parsing bad.yaml: error converting YAML to JSON: yaml: line 4, column 10: mapping values are not allowed in this context"
    );
    let err = parse_manifests("{\"kind\": \"Pod\",,}", "bad.json").unwrap_err();
    assert!(
        matches!(*err.kind, ParseErrorKind::Syntax { line: Some(1), .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("error parsing bad.json: "),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_manifests(&text, "fuzz.yaml");
    }

    /// Mutations of a valid manifest never panic the parser or admission.
    #[test]
    fn mutated_manifests_never_panic(pos in 0usize..POD.len(), ch in proptest::sample::select(vec![':', '-', ' ', '\n', '{', '[', '"', '\'', '&', '*', '!', '#', '0', 'x'])) {
        let mut s: Vec<char> = POD.chars().collect();
        s[pos] = ch;
        let text: String = s.into_iter().collect();
        if let Ok(objs) = parse_manifests(&text, "m.yaml") {
            for o in objs {
                if let Object::Pod(p) = o {
                    let _ = podrun_model::admit_pod(*p);
                }
            }
        }
    }
}
