//! Hooks and env files on real processes: preStop hooks that never finish (upstream
//! node e2e "sidecars killed together when their preStop hooks never finish") and
//! `fileKeyRef` env read from a file an init container wrote into an emptyDir.
//!
//! These tests need root (pods run in their own PID and mount namespaces) and fail
//! loudly without it.

mod lifecycle_harness;

use k8s_openapi::api::core::v1::Pod;
use lifecycle_harness::{Harness, container_yaml, sleeps, statuses};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_killed_together_when_their_pre_stop_hooks_never_finish() {
    let mut h = Harness::new();
    let sidecar = |n: &str| {
        let hook = format!(
            "while true; do echo \"{n} Hook $(date +%s.%N)\" >> /shared/log; sleep 0.1; done"
        );
        container_yaml(
            n,
            &format!(
                "    restartPolicy: Always\n    lifecycle: {{preStop: {{exec: {{command: [sh, -c, '{hook}']}}}}}}\n"
            ),
            &sleeps(n),
        )
    };
    let inits = sidecar("s1") + &sidecar("s2") + &sidecar("s3");
    let main = container_yaml(
        "main",
        "",
        "sleep 0.5; echo \"main Exiting $(date +%s.%N)\" >> $LOG",
    );
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hanging-hooks\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 3\n  volumes: [{{name: shared, emptyDir: {{}}}}]\n  initContainers:\n{inits}  containers:\n{main}"
    );
    let pod = h.create(&yaml);
    let done = h
        .wait_for("hanging-hooks", "pod finished", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
        })
        .await;
    let log = h.log(&pod);
    let main_exit = log
        .iter()
        .find(|(n, w, _)| n == "main" && w == "Exiting")
        .expect("main exited")
        .2;
    let mut ends = Vec::new();
    for s in ["s1", "s2", "s3"] {
        let beats: Vec<f64> = log
            .iter()
            .filter(|(n, w, _)| n == s && w == "Hook")
            .map(|(_, _, t)| *t)
            .collect();
        let (first, last) = (beats[0], *beats.last().unwrap());
        // The hook started with the termination and lived about grace + 2 s: the kubelet
        // stopped waiting at 3 s but the hook ran until its container was killed.
        assert!(
            first - main_exit < 1.0,
            "{s} hook began {:.2}s late",
            first - main_exit
        );
        let lived = last - first;
        assert!((4.3..6.5).contains(&lived), "{s} hook lived {lived:.2}s");
        ends.push(last);
    }
    let spread = ends.iter().cloned().fold(f64::MIN, f64::max)
        - ends.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread < 1.0, "hooks ended {spread:.2}s apart");
    for st in statuses(&done, true) {
        let t = st.state.unwrap().terminated.unwrap();
        assert_eq!(t.exit_code, 137, "{} killed", st.name);
    }
}

fn env_pod(name: &str, key: &str) -> String {
    let writer = container_yaml(
        "writer",
        "",
        "printf \"TOKEN='abc def'\\nOTHER=1\\n\" > /shared/app.env",
    );
    let env = format!(
        "    env: [{{name: TOKEN, valueFrom: {{fileKeyRef: {{volumeName: shared, path: app.env, key: {key}}}}}}}]\n"
    );
    let main = container_yaml("main", &env, "echo \"main TOKEN=$TOKEN\" >> $LOG");
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  volumes: [{{name: shared, emptyDir: {{}}}}]\n  initContainers:\n{writer}  containers:\n{main}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_key_ref_env_comes_from_a_file_an_init_container_wrote() {
    let mut h = Harness::new();
    let pod = h.create(&env_pod("env-file", "TOKEN"));
    h.wait_for("env-file", "pod succeeded", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
    })
    .await;
    let seq = lines_with_rest(&h, &pod);
    assert!(seq.contains(&"main TOKEN=abc def".to_owned()), "{seq:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_key_ref_missing_key_is_create_container_config_error() {
    let mut h = Harness::new();
    h.create(&env_pod("env-file-missing", "MISSING"));
    let p = h
        .wait_for("env-file-missing", "CreateContainerConfigError", |p| {
            statuses(p, false).iter().any(|s| {
                s.state
                    .as_ref()
                    .and_then(|st| st.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("CreateContainerConfigError")
            })
        })
        .await;
    let w = statuses(&p, false)[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(
        w.message.as_deref(),
        Some("couldn't find key MISSING in env file app.env in volume shared")
    );
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    h.delete("env-file-missing").await;
}

/// The shared log's lines with everything after the container name and first word.
fn lines_with_rest(h: &Harness, pod: &Pod) -> Vec<String> {
    let dir = h.node.layout().pod_dir(
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap(),
        pod.metadata.uid.as_deref().unwrap(),
    );
    std::fs::read_to_string(h.node.layout().empty_dir(&dir, "shared").join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
