//! Manifests the API server rejects are rejected by `podrun run` at once, with the API
//! server's message and field path and exit code 2, before anything is created; none
//! may hang until `--timeout`.

mod common;

use std::time::{Duration, Instant};

use common::{Podrun, stderr};

/// Runs `manifest`; asserts exit 2 within 10 s and nothing left in the state directory
/// but what opening it makes. Returns stderr.
fn refused(manifest: &str) -> String {
    let podrun = Podrun::new();
    let start = Instant::now();
    let out = podrun.run_manifest(manifest, &["--timeout", "60s"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        !podrun.state_dir().join("pods").exists(),
        "a pod directory was made for a refused manifest"
    );
    err
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  restartPolicy: Never
  containers:
  - name: a
    image: busybox
    command: ["true"]
"#;

#[test]
fn run_as_user_minus_one_is_refused_not_retried() {
    let err = refused(&POD.replace(
        "  restartPolicy: Never\n",
        "  restartPolicy: Never\n  securityContext: {runAsUser: -1}\n",
    ));
    assert_eq!(
        err.trim(),
        r#"The Pod "p" is invalid: spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive"#
    );
}

#[test]
fn a_limit_that_is_not_a_quantity_is_refused_by_the_decoder() {
    let err = refused(&format!(
        "{POD}    resources:\n      limits: {{memory: lots}}\n"
    ));
    assert!(
        err.contains(r#"Pod in version "v1" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#),
        "{err}"
    );
    let err = refused(&format!(
        "{POD}    resources:\n      requests: {{cpu: 500mi}}\n"
    ));
    assert!(err.contains("unable to parse quantity's suffix"), "{err}");
}

#[test]
fn a_one_megabyte_annotation_is_refused() {
    let big = "x".repeat(1 << 20);
    let err = refused(&POD.replace(
        "metadata: {name: p}",
        &format!("metadata:\n  name: p\n  annotations: {{note: {big}}}"),
    ));
    assert_eq!(
        err.trim(),
        r#"The Pod "p" is invalid: metadata.annotations: Too long: must have at most 262144 bytes"#
    );
}

#[test]
fn empty_input_and_a_bare_document_separator_say_so() {
    for input in ["", "---\n", "# nothing\n---\n---\n"] {
        let err = refused(input);
        assert_eq!(err.trim(), "error: no objects passed to run", "{input:?}");
    }
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: a
        image: busybox
        command: [sleep, "100"]
"#;

#[test]
fn the_issues_deployments_are_refused() {
    let cases: [(&str, &str, &str); 7] = [
        (
            "  replicas: 2\n",
            "  replicas: -1\n",
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            "  selector: {matchLabels: {app: web}}\n",
            "",
            "spec.selector: Required value",
        ),
        (
            "  selector: {matchLabels: {app: web}}\n",
            "  selector: {matchLabels: {app: api}}\n",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
        ),
        (
            "    spec:\n",
            "    spec:\n      restartPolicy: Never\n",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
        ),
        (
            "  replicas: 2\n",
            "  replicas: 2\n  strategy: {type: Canary}\n",
            "spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:\"Canary\", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: \"Recreate\", \"RollingUpdate\"",
        ),
        (
            "  replicas: 2\n",
            "  replicas: 2\n  minReadySeconds: -1\n  revisionHistoryLimit: -1\n",
            "spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            "  replicas: 2\n",
            "  replicas: 2\n  progressDeadlineSeconds: -5\n",
            "spec.progressDeadlineSeconds: Invalid value: -5: must be greater than or equal to 0",
        ),
    ];
    for (from, to, want) in cases {
        let manifest = DEPLOYMENT.replace(from, to);
        assert_ne!(manifest, DEPLOYMENT, "{from:?} not in the base manifest");
        let err = refused(&manifest);
        assert!(
            err.starts_with("The Deployment \"web\" is invalid: ") && err.contains(want),
            "want {want:?} in:\n{err}"
        );
    }
}

#[test]
fn bad_config_maps_and_secrets_are_refused() {
    let err = refused(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\ndata: {\"a/b\": x}\n",
    );
    assert!(
        err.contains("metadata.name: Invalid value: \"Bad_Name\"")
            && err.contains("data[a/b]: Invalid value: \"a/b\": a valid config key"),
        "{err}"
    );
    let err = refused(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: cert}\ntype: kubernetes.io/tls\nstringData: {tls.crt: x}\n",
    );
    assert_eq!(
        err.trim(),
        r#"The Secret "cert" is invalid: data[tls.key]: Required value"#
    );
}
