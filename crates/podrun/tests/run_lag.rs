//! A `podrun run` whose event stream falls behind recovers by listing the store
//! again: no pod's or Job's completion is lost. The run reads its events through a
//! two-event buffer, consumed 10 ms an event (`PODRUN_RUN_EVENT_BUFFER`), while twelve
//! pods and a Job's two pods end at the same moment. Needs root.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{HOST_ROOTFS, Podrun};

const PODS: usize = 12;

fn manifest() -> String {
    let mut m = String::new();
    for i in 0..PODS {
        m.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: burst-{i}}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: main, image: busybox, command: [sh, -c, 'sleep 1; echo done']}}\n"
        ));
    }
    m.push_str(
        "---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: burst-job}\nspec:\n  completions: 2\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - {name: main, image: busybox, command: [sh, -c, 'sleep 1']}\n",
    );
    m
}

#[test]
fn a_run_that_falls_behind_lists_again_and_misses_no_completion() {
    let podrun = Podrun::new();
    let start = Instant::now();
    let mut child = podrun
        .command()
        .args(["run", HOST_ROOTFS, "--timeout", "60s", "-f", "-"])
        .env("PODRUN_RUN_EVENT_BUFFER", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("podrun runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest().as_bytes())
        .expect("manifest");
    let out = child.wait_with_output().expect("podrun run ends");
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("events behind; listing pods and Jobs again"),
        "the run fell behind: {stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    assert!(took < Duration::from_secs(30), "ended in {took:?}");
    for i in 0..PODS {
        let name = format!("burst-{i} ");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&name) && l.contains("Completed")),
            "burst-{i} Completed is printed: {stdout}"
        );
    }
    eprintln!("{PODS} pods and a Job ended in {took:?}; {stderr}");
}
