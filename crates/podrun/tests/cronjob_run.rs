//! `podrun run -f` with a CronJob: validated as the API server does (exit 2 with its
//! message, nothing created), and run by the CronJob controller — its Jobs' pods run
//! and complete while the run goes on, and nothing of it outlives the run. With the mesh,
//! the pods its Jobs create get the native sidecar, under `podrun run --inject` and
//! under `podrun server` in a namespace labelled `istio-injection=enabled`. Needs root.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Podrun, interrupt, stderr, stdout, wait_for};
use serde_json::Value;

/// A CronJob whose Jobs start every second and run one short `main` container.
const TICK: &str = r#"
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

/// The names of a pod's init containers that are native sidecars and of its containers.
fn mesh_containers(pod: &Value) -> (Vec<String>, Vec<String>) {
    let names = |list: &str, sidecars_only: bool| -> Vec<String> {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| !sidecars_only || c["restartPolicy"] == "Always")
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect()
    };
    (names("initContainers", true), names("containers", false))
}

/// The first pod in the List `listed` whose name starts with `tick-` and whose phase is
/// Succeeded.
fn succeeded_tick_pod(listed: &str) -> Option<Value> {
    let list: Value = serde_json::from_str(listed).ok()?;
    list["items"].as_array()?.iter().find_map(|p| {
        let name = p["metadata"]["name"].as_str()?;
        (name.starts_with("tick-") && p["status"]["phase"] == "Succeeded").then(|| p.clone())
    })
}

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
    let child = podrun.spawn_run(TICK, &[]);
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

#[test]
fn an_injected_cron_jobs_jobs_run_their_pods_with_the_native_sidecar() {
    let podrun = Podrun::with_sidecars();
    let mut child = podrun.spawn_run(TICK, &["--inject"]);
    let mut pod = None;
    wait_for("a pod of the CronJob's Job succeeds", || {
        pod = succeeded_tick_pod(&stdout(&podrun.run(&["get", "pods", "-o", "json"])));
        pod.is_some()
    });
    let pod = pod.expect("a succeeded pod");
    // As the webhook would inject the pod at its admission: istio-proxy a native
    // sidecar, the app the only container; the pod still completes.
    assert_eq!(
        mesh_containers(&pod),
        (vec!["istio-proxy".to_owned()], vec!["main".to_owned()]),
        "{pod:#}"
    );
    let name = pod["metadata"]["name"].as_str().expect("name");
    assert_eq!(stdout(&podrun.run(&["logs", name, "-c", "main"])), "tick\n");
    // The Job the CronJob created from its (injected) Job template carries the sidecar.
    let owner = &pod["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Job", "{pod:#}");
    let job: Value = serde_json::from_str(&stdout(&podrun.run(&[
        "get",
        "jobs",
        owner["name"].as_str().expect("the Job's name"),
        "-o",
        "json",
    ])))
    .expect("the Job as JSON");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(
        mesh_containers(&job["spec"]["template"]),
        (vec!["istio-proxy".to_owned()], vec!["main".to_owned()])
    );
    interrupt(&child);
    let status = child.0.wait().expect("podrun run ends");
    assert_eq!(status.code(), Some(130));
    assert_eq!(stdout(&podrun.run(&["get", "pods"])), "");
}

#[test]
fn a_cron_job_in_a_labelled_namespace_gets_injected_pods_under_podrun_server() {
    let podrun = Podrun::with_sidecars();
    // In the guard from the start, so a failing test still stops the server.
    let mut server = common::ChildGuard(
        podrun
            .command()
            .args(["server", "--host-rootfs", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("podrun server starts"),
    );
    let kubeconfig = common::server_kubeconfig(&mut server.0);
    let home = tempfile::tempdir().expect("home");
    let kubectl = |args: &[&str], stdin: Option<&str>| -> String {
        use std::io::Write;
        let mut child = common::kubectl_command(60, &kubeconfig, home.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .expect("write stdin");
        drop(input);
        let out = child.wait_with_output().expect("kubectl finishes");
        assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    kubectl(
        &["label", "namespace", "default", "istio-injection=enabled"],
        None,
    );
    kubectl(&["apply", "-f", "-"], Some(TICK));
    let start = Instant::now();
    let pod = loop {
        if let Some(pod) = succeeded_tick_pod(&kubectl(&["get", "pods", "-o", "json"], None)) {
            break pod;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no pod of the CronJob succeeded in 60 s"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    // Injected at admission, as Istio's webhook injects the pods a CronJob's Jobs create.
    assert_eq!(
        mesh_containers(&pod),
        (vec!["istio-proxy".to_owned()], vec!["main".to_owned()]),
        "{pod:#}"
    );
    let name = pod["metadata"]["name"].as_str().expect("name");
    assert_eq!(kubectl(&["logs", name, "-c", "main"], None), "tick\n");
    kubectl(&["delete", "cronjob", "tick"], None);
    assert!(
        common::terminate(&mut server.0),
        "podrun server did not stop within 60 s of SIGTERM"
    );
}
