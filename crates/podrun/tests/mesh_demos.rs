//! The mesh stories end to end, with `podrun run --inject` and nothing else installed:
//! the injected `istio-init` runs `podrun proxy-init` in the pod's network namespace and
//! `istio-proxy` runs `podrun proxy` as a native sidecar. Needs root.

mod common;

use std::time::{Duration, Instant};

use common::{ChildGuard, Podrun, interrupt, ready_status, stderr, stdout};

#[test]
fn injected_exiting_app_ends_completed_and_exits_0() {
    let podrun = Podrun::new();
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
    let podrun = Podrun::new();
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
    let podrun = Podrun::new();
    let mut child = ChildGuard(
        podrun
            .command()
            .args(["run", "--inject", "-f", "../../examples/sleep.yaml"])
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
