//! `podrun run` on real processes: ordering, exit codes, Jobs, deletion and crash safety.
//! These tests need root (pods run in their own PID and mount namespaces).

mod common;

use std::time::{Duration, Instant};

use common::{Podrun, interrupt, processes_with, ready_status, stderr, stdout, wait_for};

const EXITING_POD: &str = include_str!("../../../examples/exiting-pod.yaml");
const ORDERING: &str = include_str!("../../../examples/sidecar-ordering.yaml");
const JOB: &str = include_str!("../../../examples/job-with-sidecar.yaml");

#[test]
fn exiting_pod_shows_the_native_sidecar_story_and_succeeds() {
    let podrun = Podrun::new();
    let started = Instant::now();
    let out = podrun.run_manifest(EXITING_POD, &[]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let rows = stdout(&out);
    assert!(rows.starts_with("NAME "), "{rows}");
    let seen = ready_status(&rows);
    let expect = [
        "PodInitializing",
        "2/2 Running",
        "1/2 Completed",
        "0/2 Completed",
    ];
    let mut at = seen
        .iter()
        .position(|s| s.contains("Init:"))
        .unwrap_or_else(|| panic!("no Init: row in {seen:?}"));
    for want in expect {
        let found = seen[at..]
            .iter()
            .position(|s| s.ends_with(want))
            .unwrap_or_else(|| panic!("{want:?} missing after row {at} in {seen:?}"));
        at += found;
    }
    assert_eq!(seen.last().map(String::as_str), Some("0/2 Completed"));
    // Generous bound: the figure that matters is measured by the benchmark.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn containers_start_and_stop_in_native_sidecar_order() {
    let podrun = Podrun::new();
    let out = podrun.run_manifest(ORDERING, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let events = std::fs::read_to_string(podrun.pod_dir("ordering").join("volumes/shared/events"))
        .expect("events file in the emptyDir");
    let lines: Vec<&str> = events.lines().collect();
    assert_eq!(
        lines,
        [
            "init-1 Starting",
            "init-1 Exiting",
            "sidecar-1 Started",
            "init-2 Starting",
            "init-2 Exiting",
            "sidecar-2 Started",
            "reader Started",
            "reader Exiting",
            "sidecar-2 Exiting",
            "sidecar-1 Exiting",
        ]
    );
}

#[test]
fn job_with_sidecar_completes_and_get_jobs_says_complete() {
    let podrun = Podrun::new();
    let out = podrun.run_manifest(JOB, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let jobs = podrun.run(&["get", "jobs"]);
    let text = stdout(&jobs);
    let row = text.lines().nth(1).expect("a job row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..3], ["report", "Complete", "2/2"], "{text}");
    let pods = stdout(&podrun.run(&["get", "pods"]));
    let names: Vec<&str> = pods
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names.len(), 2, "{pods}");
    for name in names {
        let suffix = name
            .strip_prefix("report-")
            .expect("pod named after the job");
        assert_eq!(suffix.len(), 5, "{name}");
    }
}

#[test]
fn failing_main_container_exits_1_and_shows_error() {
    let podrun = Podrun::new();
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: fails}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: busybox, command: ["sh", "-c", "echo boom >&2; exit 3"]}
"#;
    let out = podrun.run_manifest(manifest, &[]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(
        ready_status(&stdout(&out))
            .last()
            .unwrap()
            .ends_with("0/1 Error")
    );
    let logs = podrun.run(&["logs", "fails"]);
    assert_eq!(stdout(&logs), "boom\n");
    let yaml = stdout(&podrun.run(&["get", "pod", "fails", "-o", "json"]));
    let pod: serde_json::Value = serde_json::from_str(&yaml).unwrap();
    assert_eq!(pod["status"]["phase"], "Failed");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
}

#[test]
fn invalid_manifest_exits_2_with_the_api_server_message() {
    let podrun = Podrun::new();
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  initContainers:
  - {name: init, image: busybox, command: ["true"], restartPolicy: Sometimes}
  containers:
  - {name: main, image: busybox, command: ["true"]}
"#;
    let out = podrun.run_manifest(manifest, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            r#"Pod "bad" is invalid: spec.initContainers[0].restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure""#
        ),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn container_without_command_gets_a_clear_error_and_timeout_exits_124() {
    let podrun = Podrun::new();
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: nocmd}
spec:
  restartPolicy: Never
  containers:
  - {name: web, image: nginx}
"#;
    let mut child = podrun.spawn_run(manifest, &["--timeout", "5s"]);
    wait_for("pod nocmd waiting: has no command", || {
        stdout(&podrun.run(&["get", "pod", "nocmd", "-o", "json"])).contains("has no command")
    });
    let json = stdout(&podrun.run(&["get", "pod", "nocmd", "-o", "json"]));
    let pod: serde_json::Value = serde_json::from_str(&json).unwrap();
    let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(waiting["reason"], "CreateContainerConfigError", "{json}");
    let mut out = String::new();
    use std::io::Read;
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(124));
    assert!(out.contains("CreateContainerConfigError"), "{out}");
}

#[test]
fn sigint_deletes_every_pod_gracefully_then_exits_130() {
    let podrun = Podrun::new();
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 5
  initContainers:
  - name: proxy
    image: proxy
    restartPolicy: Always
    command: ["sh", "-c", "trap 'echo proxy stopped >> /data/events; exit 0' TERM; while :; do sleep 1 & wait $!; done"]
    volumeMounts: [{name: data, mountPath: /data}]
  containers:
  - name: app
    image: app
    command: ["sh", "-c", "trap 'echo app stopped >> /data/events; exit 0' TERM; echo up; while :; do sleep 1 & wait $!; done"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - {name: data, emptyDir: {}}
"#;
    let mut child = podrun.spawn_run(manifest, &[]);
    wait_for("pod web 2/2 Running", || {
        stdout(&podrun.run(&["get", "pods"])).contains("2/2     Running")
    });
    let dir = podrun.pod_dir("web");
    interrupt(&child);
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let events = std::fs::read_to_string(dir.join("volumes/data/events")).unwrap();
    assert_eq!(events, "app stopped\nproxy stopped\n");
}

#[test]
fn delete_from_another_terminal_stops_a_running_pod_gracefully() {
    let podrun = Podrun::new();
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: forever}
spec:
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo up; while :; do sleep 1 & wait $!; done"]
"#;
    let mut child = podrun.spawn_run(manifest, &[]);
    wait_for("pod forever 1/1 Running", || {
        stdout(&podrun.run(&["get", "pods"])).contains("1/1     Running")
    });
    let started = Instant::now();
    let del = podrun.run(&["delete", "pod", "forever"]);
    assert_eq!(del.status.code(), Some(0), "{}", stderr(&del));
    assert_eq!(
        stdout(&del),
        "pod \"forever\" deleted from default namespace\n"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(stdout(&podrun.run(&["get", "pods"])).is_empty());
}

#[test]
fn sigkill_of_podrun_leaves_no_container_and_the_next_start_cleans_up() {
    let podrun = Podrun::new();
    let marker = format!("podrun-orphan-check-{}", std::process::id());
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: orphan}}
spec:
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "sleep 1000 & exec sh -c 'sleep 999; echo {marker}'"]
"#
    );
    let mut child = podrun.spawn_run(&manifest, &[]);
    wait_for("the container process started", || {
        !processes_with(&marker).is_empty()
    });
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    wait_for("the container process gone with podrun", || {
        processes_with(&marker).is_empty()
    });
    // The next podrun on this state directory finds the pod and reports it.
    let out = podrun.run_manifest(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: next}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: c, image: busybox, command: [\"true\"]}\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pod default/orphan"),
        "{}",
        stderr(&out)
    );
    let json = stdout(&podrun.run(&["get", "pod", "orphan", "-o", "json"]));
    let pod: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(pod["status"]["phase"], "Failed");
}
