//! `podrun inject` as a user runs it: files and stdin in, YAML out, exit codes.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_podrun");

const MANIFEST: &str = "\
# a Service stays exactly as written
apiVersion: v1
kind: Service
metadata:
  name: web   # comment kept
spec:
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: example/web:1
---
apiVersion: v1
kind: Pod
metadata:
  name: node-agent
spec:
  hostNetwork: true
  containers:
  - name: agent
    image: example/agent:1
";

fn run_stdin(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("podrun starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn injects_workloads_and_passes_other_documents_through_in_order() {
    let (code, stdout, stderr) = run_stdin(
        &["inject", "-f", "-", "--native-sidecars", "true"],
        MANIFEST,
    );
    assert_eq!(code, 0, "stderr: {stderr}");
    let docs: Vec<&str> = stdout.split("---\n").collect();
    assert_eq!(docs.len(), 3, "{stdout}");
    assert!(docs[0].starts_with("# a Service stays exactly as written\n"));
    assert!(docs[0].contains("name: web   # comment kept"));
    let deploy: serde_json::Value = serde_saphyr::from_str(docs[1]).unwrap();
    let inits = deploy["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .unwrap();
    assert_eq!(inits[0]["name"], "istio-init");
    assert_eq!(inits[1]["name"], "istio-proxy");
    assert_eq!(inits[1]["restartPolicy"], "Always");
    assert_eq!(inits[1]["command"][1], "proxy");
    assert!(docs[2].contains("hostNetwork: true") && !docs[2].contains("istio-proxy"));
    assert!(
        stderr.contains(
            "===> Skipping injection because Pod \"default/node-agent\" has host networking enabled"
        ),
        "{stderr}"
    );
}

#[test]
fn classic_mode_and_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.yaml");
    let output = dir.path().join("out.yaml");
    std::fs::write(&input, MANIFEST).unwrap();
    let out = Command::new(BIN)
        .args(["inject", "-f"])
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let text = std::fs::read_to_string(&output).unwrap();
    let deploy: serde_json::Value =
        serde_saphyr::from_str(text.split("---\n").nth(1).unwrap()).unwrap();
    // Without a cluster, `auto` means classic: the proxy is the last regular container.
    let containers = deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.last().unwrap()["name"], "istio-proxy");
    assert!(containers.last().unwrap().get("restartPolicy").is_none());
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let (code, stdout, stderr) = run_stdin(&["inject", "-f", "-"], "kind: Pod\nspec: [\n");
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("<stdin>: document 1: invalid YAML"),
        "{stderr}"
    );

    let bad_annotation = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    traffic.sidecar.istio.io/excludeOutboundIPRanges: '*'\nspec:\n  containers: [{name: a, image: x}]\n";
    let (code, _, stderr) = run_stdin(&["inject", "-f", "-"], bad_annotation);
    assert_eq!(code, 2);
    assert!(stderr.contains("excludeOutboundIPRanges"), "{stderr}");

    let (code, _, stderr) = run_stdin(&["inject", "-f", "/nonexistent/podrun.yaml"], "");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read /nonexistent/podrun.yaml"),
        "{stderr}"
    );
}
