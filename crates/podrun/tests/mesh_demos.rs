//! The mesh stories end to end, with `podrun run --inject` and nothing else installed:
//! the injected `istio-init` runs `podrun proxy-init` in the pod's network namespace and
//! `istio-proxy` runs `podrun proxy` as a native sidecar. Needs root.

mod common;

use std::time::{Duration, Instant};

use common::{ChildGuard, Podrun, interrupt, ready_status, stderr, stdout, wait_for};

#[test]
fn injected_exiting_app_ends_completed_and_exits_0() {
    let podrun = Podrun::with_sidecars();
    let out = podrun.run(&["run", "--inject", "-f", "../../examples/exiting-app.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = ready_status(&stdout(&out));
    assert!(rows.iter().any(|r| r == "2/2 Running"), "{rows:?}");
    assert_eq!(
        rows.last().map(String::as_str),
        Some("0/2 Completed"),
        "{rows:?}"
    );
}

#[test]
fn init_container_reaches_a_service_through_the_sidecar_and_the_access_log_shows_it() {
    let podrun = Podrun::with_sidecars();
    let out = podrun.run(&["run", "--inject", "-f", "../../examples/httpbin-curl.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let logs = stdout(&podrun.run(&["logs", "curl-init", "-c", "istio-proxy"]));
    let last = logs.lines().last().unwrap_or_default();
    assert!(last.contains(r#""GET /get HTTP/1.1" 200"#), "{logs}");
    assert!(last.contains(r#""curl/"#), "{last}");
    assert!(last.contains(r#""httpbin:8000""#), "{last}");
}

#[test]
fn sleep_sample_runs_2_of_2_with_istio_init_and_istio_proxy_as_init_containers() {
    let podrun = Podrun::with_sidecars();
    let mut child = ChildGuard(
        podrun
            .command()
            .args([
                "run",
                common::HOST_ROOTFS,
                "--inject",
                "-f",
                "../../examples/sleep.yaml",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while !stdout(&podrun.run(&["get", "pods"])).contains("2/2     Running") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "sleep pod never 2/2 Running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let columns = stdout(&podrun.run(&[
        "get",
        "pod",
        "-o",
        "custom-columns=NAME:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name",
    ]));
    let row: Vec<&str> = columns.lines().nth(1).unwrap().split_whitespace().collect();
    assert!(row[0].starts_with("sleep-"), "{columns}");
    assert_eq!(&row[1..], ["istio-init,istio-proxy", "sleep"], "{columns}");
    interrupt(&child);
    assert_eq!(child.0.wait().unwrap().code(), Some(130));
}

/// An app whose readiness probe the injector moved onto the proxy's status port: the pod
/// still becomes 2/2 Running, and the app sees the probe coming from the proxy's
/// capture-exempt source `127.0.0.6` with its own port in `Host`.
const PROBED_APP: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: probed
spec:
  containers:
    - name: web
      image: python
      ports:
        - {name: http, containerPort: 8080}
      readinessProbe:
        httpGet: {path: /ready, port: http}
        periodSeconds: 1
      livenessProbe:
        tcpSocket: {port: 8080}
        initialDelaySeconds: 1
        periodSeconds: 1
      command:
        - python3
        - -c
        - |
          import http.server, signal, sys
          signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
          class H(http.server.BaseHTTPRequestHandler):
              def do_GET(self):
                  print("probe", self.client_address[0], self.path, self.headers.get("Host"),
                        self.headers.get("User-Agent"), flush=True)
                  self.send_response(200 if self.path == "/ready" else 404)
                  self.send_header("content-length", "0")
                  self.end_headers()
              def log_message(self, *args):
                  pass
          http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
"#;

#[test]
fn injected_app_readiness_probe_is_served_through_the_status_port() {
    let podrun = Podrun::with_sidecars();
    let manifest = podrun.state_dir().join("probed.yaml");
    std::fs::write(&manifest, PROBED_APP).unwrap();
    let mut child = ChildGuard(
        podrun
            .command()
            .args(["run", common::HOST_ROOTFS, "--inject", "-f"])
            .arg(&manifest)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("probed pod 2/2 Running", || {
        stdout(&podrun.run(&["get", "pods"])).contains("2/2     Running")
    });
    // The kubelet's probe targets the status port; the original is recorded for the proxy.
    let columns = stdout(&podrun.run(&[
        "get",
        "pod",
        "probed",
        "-o",
        "custom-columns=PATH:.spec.containers[0].readinessProbe.httpGet.path,PORT:.spec.containers[0].readinessProbe.httpGet.port,LIVE:.spec.containers[0].livenessProbe.httpGet.path",
    ]));
    let row: Vec<&str> = columns
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["/app-health/web/readyz", "15020", "/app-health/web/livez"],
        "{columns}"
    );
    let logs = stdout(&podrun.run(&["logs", "probed", "-c", "web"]));
    let probe = logs
        .lines()
        .find(|l| l.contains("probe ") && l.contains(" /ready "))
        .unwrap_or_else(|| panic!("the app never saw its readiness probe: {logs}"));
    let fields: Vec<&str> = probe.split_whitespace().collect();
    assert_eq!(fields[1], "127.0.0.6", "{probe}");
    assert!(
        fields[3].ends_with(":8080"),
        "Host names the app port: {probe}"
    );
    assert!(fields[4].starts_with("kube-probe/"), "{probe}");
    // It did not come through the inbound capture listener, which would have logged it.
    let proxy_logs = stdout(&podrun.run(&["logs", "probed", "-c", "istio-proxy"]));
    assert!(!proxy_logs.contains("GET /ready"), "{proxy_logs}");
    interrupt(&child);
    assert_eq!(child.0.wait().unwrap().code(), Some(130));
}

#[test]
fn inject_refuses_up_front_when_the_proxy_user_cannot_execute_podrun() {
    let podrun = Podrun::new();
    // A private directory (mode 0700, as temporary and home directories often are):
    // UID 1337 cannot reach a binary inside it.
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        private.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let binary = private.path().join("podrun");
    std::fs::hard_link(env!("CARGO_BIN_EXE_podrun"), &binary)
        .or_else(|_| std::fs::copy(env!("CARGO_BIN_EXE_podrun"), &binary).map(drop))
        .unwrap();
    let out = std::process::Command::new(&binary)
        .arg("--state-dir")
        .arg(podrun.state_dir())
        .args([
            "run",
            common::HOST_ROOTFS,
            "--inject",
            "-f",
            "../../examples/exiting-app.yaml",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains("runs") && err.contains("as UID 1337"), "{err}");
    assert!(err.contains("chmod o+x"), "{err}");
    assert!(
        !stdout(&podrun.run(&["get", "pods"])).contains("exiting"),
        "no pod was created"
    );
}
