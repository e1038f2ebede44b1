//! `podrun run -f` with a CronJob: validated as the API server does (exit 2 with its
//! message, nothing created), and run by the CronJob controller — its Jobs' pods run
//! and complete while the run goes on, and nothing of it outlives the run. Needs root.

mod common;

use common::{Podrun, interrupt, stderr, stdout, wait_for};

#[test]
fn an_invalid_cron_job_is_refused_with_the_api_servers_message() {
    let podrun = Podrun::new();
    let manifest = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "61 * * * *"
  concurrencyPolicy: Sometimes
  timeZone: Mars/Olympus
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - {name: main, image: busybox, command: ["true"]}
"#;
    let out = podrun.run_manifest(manifest, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "The CronJob \"tick\" is invalid: [\
         spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61, \
         spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus, \
         spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"]\n"
    );
    assert!(stdout(&podrun.run(&["get", "jobs"])).is_empty());
}

#[test]
fn a_cron_job_runs_its_jobs_until_the_run_ends_and_leaves_nothing() {
    let podrun = Podrun::new();
    let manifest = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "@every 1s"
  timeZone: Europe/Berlin
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - {name: main, image: busybox, command: ["sh", "-c", "echo tick"]}
"#;
    let child = podrun.spawn_run(manifest, &[]);
    // The first Job is created a second after the CronJob, named after its minute.
    wait_for("a Job of the CronJob completes", || {
        stdout(&podrun.run(&["get", "jobs"]))
            .lines()
            .skip(1)
            .any(|l| l.starts_with("tick-") && l.contains("Complete"))
    });
    let pods = stdout(&podrun.run(&["get", "pods"]));
    assert!(
        pods.lines()
            .any(|l| l.starts_with("tick-") && l.contains("Completed")),
        "{pods}"
    );
    interrupt(&child);
    let mut child = child;
    let status = child.0.wait().expect("podrun run ends");
    assert_eq!(status.code(), Some(130));
    // Neither the CronJob's Jobs nor their pods outlive the run.
    assert_eq!(stdout(&podrun.run(&["get", "jobs"])), "");
    assert_eq!(stdout(&podrun.run(&["get", "pods"])), "");
    let output = {
        use std::io::Read;
        let mut s = String::new();
        child
            .0
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut s)
            .expect("read");
        s
    };
    assert!(
        output
            .lines()
            .any(|l| l.starts_with("tick-") && l.contains("Completed")),
        "the run printed the Job's pod: {output}"
    );
}
