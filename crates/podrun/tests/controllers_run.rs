//! The controllers in a real `podrun run`, driven from another terminal: a Job
//! deleted there stays deleted and its pods stop; a Deployment's pod deleted there is
//! replaced within 2 s. Real processes; pods run without isolation when not root.

mod common;

use std::time::{Duration, Instant};

use common::{Podrun, processes_with, stderr, stdout, wait_for};

fn running_pods(podrun: &Podrun) -> Vec<String> {
    stdout(&podrun.run(&["get", "pods"]))
        .lines()
        .skip(1)
        .filter(|l| l.contains("1/1") && l.contains("Running"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn a_job_deleted_from_another_terminal_stays_deleted_and_its_pods_stop() {
    let podrun = Podrun::new();
    let marker = format!("podrun-job-delete-{}", std::process::id());
    let manifest = format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {{name: work}}
spec:
  parallelism: 2
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done; echo {marker}"]
"#
    );
    let mut child = podrun.spawn_run(&manifest, &[]);
    wait_for("two job pods running", || running_pods(&podrun).len() == 2);
    // (A shell's forked child shares its command line until it execs `sleep`.)
    assert!(processes_with(&marker).len() >= 2, "a shell per pod");

    let del = podrun.run(&["delete", "job", "work"]);
    assert_eq!(del.status.code(), Some(0), "{}", stderr(&del));
    assert_eq!(
        stdout(&del),
        "job.batch \"work\" deleted from default namespace\n"
    );
    wait_for("the job's processes to stop", || {
        processes_with(&marker).is_empty()
    });
    // `podrun run` has nothing left to wait for: it ends (the Job never completed).
    let status = child.0.wait().expect("podrun run ends");
    assert_eq!(status.code(), Some(1));
    // Nothing comes back: no Job, no pod, no process.
    std::thread::sleep(Duration::from_millis(1500));
    let jobs = podrun.run(&["get", "jobs"]);
    assert!(stdout(&jobs).is_empty(), "{}", stdout(&jobs));
    assert!(stdout(&podrun.run(&["get", "pods"])).is_empty());
    assert!(processes_with(&marker).is_empty());
}

#[test]
fn a_deployments_deleted_pod_is_replaced_within_2s() {
    let podrun = Podrun::new();
    let marker = format!("podrun-deploy-replace-{}", std::process::id());
    let manifest = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done; echo {marker}"]
"#
    );
    let child = podrun.spawn_run(&manifest, &[]);
    wait_for("two replicas running", || running_pods(&podrun).len() == 2);
    let before = running_pods(&podrun);
    assert!(
        before.iter().all(|n| n.starts_with("web-")),
        "pods named after the ReplicaSet: {before:?}"
    );

    let start = Instant::now();
    let del = podrun.run(&["delete", "pod", &before[0], "--wait=false"]);
    assert_eq!(del.status.code(), Some(0), "{}", stderr(&del));
    let mut replaced = false;
    while start.elapsed() < Duration::from_secs(2) {
        let now = running_pods(&podrun);
        if now.len() == 2 && !now.contains(&before[0]) {
            replaced = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    assert!(replaced, "replaced within 2 s: {:?}", running_pods(&podrun));
    eprintln!("deleted pod replaced in {took:?}");

    common::interrupt(&child);
    let mut child = child;
    let status = child.0.wait().expect("podrun run ends");
    assert_eq!(status.code(), Some(130));
    wait_for("every replica's process to stop", || {
        processes_with(&marker).is_empty()
    });
}

#[test]
fn a_finished_run_leaves_no_pod_of_its_deployment_behind() {
    // The run ends as soon as its one awaited pod is done, while the ReplicaSet
    // controller may still be creating the Deployment's pods: none of them, bound or
    // not, may stay in the store for the next podrun on this state directory to start.
    let podrun = Podrun::new();
    let manifest = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 5
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: done}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: ["true"]
"#;
    let mut child = podrun.spawn_run(manifest, &[]);
    let status = child.0.wait().expect("podrun run ends");
    assert_eq!(status.code(), Some(0));
    let left: Vec<String> = stdout(&podrun.run(&["get", "pods"]))
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "done")
        .collect();
    assert!(left.is_empty(), "pods left in the store: {left:?}");
}
