//! Kubernetes 1.37 restart rules and `RestartAllContainers` on real processes, in the
//! style of upstream's node e2e harness: every container appends `name Starting`,
//! `name Started` / `name Exiting` lines with a timestamp to a log in a shared emptyDir,
//! and counts its own earlier runs there to decide what this run does.
//!
//! These tests need root (pods run in their own PID and mount namespaces) and fail
//! loudly without it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use podrun_model::{Object, admit_pod, parse_manifests};
use podrun_node::{Node, NodeEvent};

fn require_root() {
    assert!(
        podrun_node::runtime::isolation_available(),
        "these tests need root (PID and mount namespaces); run them as root like CI does"
    );
}

/// A container script: logs `Starting`, then runs `body` (which may use `$RUN`, the
/// number of this container's earlier runs).
fn script(name: &str, body: &str) -> String {
    format!(
        "LOG=/shared/log; RUN=$(cat $LOG 2>/dev/null | grep -c '^{name} Starting'); \
         echo \"{name} Starting $(date +%s.%N)\" >> $LOG; {body}"
    )
}

/// Body: exit with `code` on the first run (logging `Exiting`), sleep after that.
fn first_run_exits(name: &str, code: i32) -> String {
    format!(
        "if [ \"$RUN\" = 0 ]; then sleep 0.3; echo \"{name} Exiting $(date +%s.%N)\" >> $LOG; \
         exit {code}; fi; echo \"{name} Started $(date +%s.%N)\" >> $LOG; exec sleep 1000"
    )
}

fn sleeps(name: &str) -> String {
    format!("echo \"{name} Started $(date +%s.%N)\" >> $LOG; exec sleep 1000")
}

fn container_yaml(name: &str, extra: &str, body: &str) -> String {
    let cmd = script(name, body).replace('\'', "''");
    format!(
        "  - name: {name}\n    image: busybox\n{extra}    command: [sh, -c, '{cmd}']\n    volumeMounts: [{{name: shared, mountPath: /shared}}]\n"
    )
}

struct Harness {
    _dir: tempfile::TempDir,
    node: Node,
    events: tokio::sync::broadcast::Receiver<NodeEvent>,
}

impl Harness {
    fn new() -> Self {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let (node, _) = Node::open(dir.path()).expect("node opens");
        let events = node.subscribe();
        Harness {
            _dir: dir,
            node,
            events,
        }
    }

    fn create(&self, yaml: &str) -> Pod {
        let objs = parse_manifests(yaml, "pod.yaml").expect("manifest parses");
        let Some(Object::Pod(pod)) = objs.into_iter().next() else {
            panic!("not a pod")
        };
        let pod = admit_pod(*pod).expect("pod admitted");
        self.node.create_pod(pod).expect("pod created")
    }

    /// Waits (at most 30 s) for a status of pod `name` that satisfies `done`.
    async fn wait_for(&mut self, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last: Option<Pod> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = if left.is_zero() {
                None
            } else {
                tokio::time::timeout(left, self.events.recv()).await.ok()
            };
            match event {
                Some(Ok(NodeEvent::Pod(p) | NodeEvent::PodFinished(p)))
                    if p.metadata.name.as_deref() == Some(name) =>
                {
                    if done(&p) {
                        return (*p).clone();
                    }
                    last = Some((*p).clone());
                }
                Some(Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Some(Err(e)) => panic!("event stream ended: {e}"),
                None => {
                    let log = last.as_ref().map(|p| lines(&self.log(p)));
                    panic!(
                        "timed out waiting for {what}; log {log:?}; last status {:#?}",
                        last.and_then(|p| p.status)
                    );
                }
            }
        }
    }

    /// The shared log once it has at least `n` lines (waits at most 10 s).
    async fn log_lines(&self, pod: &Pod, n: usize) -> Vec<(String, String, f64)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log(pod);
            if log.len() >= n || Instant::now() > deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self, pod: &Pod) -> Vec<(String, String, f64)> {
        let dir = self.node.layout().pod_dir(
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap(),
            pod.metadata.uid.as_deref().unwrap(),
        );
        let path: PathBuf = self.node.layout().empty_dir(&dir, "shared").join("log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .map(|l| {
                let mut it = l.split_whitespace();
                let name = it.next().unwrap_or_default().to_owned();
                let what = it.next().unwrap_or_default().to_owned();
                let at = it.next().and_then(|t| t.parse().ok()).unwrap_or(0.0);
                (name, what, at)
            })
            .collect()
    }

    async fn delete(&mut self, name: &str) {
        assert!(self.node.delete_pod("default", name, Some(0)));
        self.wait_for(name, "pod finished", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| matches!(s.phase.as_deref(), Some("Succeeded" | "Failed")))
        })
        .await;
    }
}

fn statuses(pod: &Pod, init: bool) -> Vec<ContainerStatus> {
    let st = pod.status.clone().unwrap_or_default();
    if init {
        st.init_container_statuses.unwrap_or_default()
    } else {
        st.container_statuses.unwrap_or_default()
    }
}

fn running_with(pod: &Pod, init: bool, name: &str, restarts: i32) -> bool {
    statuses(pod, init).iter().any(|s| {
        s.name == name
            && s.restart_count == restarts
            && s.state.as_ref().is_some_and(|st| st.running.is_some())
    })
}

/// The lines of one container, in order.
fn only(seq: &[String], name: &str) -> Vec<String> {
    seq.iter()
        .filter(|l| l.split(' ').next() == Some(name))
        .cloned()
        .collect()
}

/// Index of the `nth` (0-based) occurrence of `line`.
fn pos(seq: &[String], line: &str, nth: usize) -> usize {
    seq.iter()
        .enumerate()
        .filter(|(_, l)| *l == line)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {line:?} #{nth} in {seq:?}"))
        .0
}

fn lines(log: &[(String, String, f64)]) -> Vec<String> {
    log.iter().map(|(n, w, _)| format!("{n} {w}")).collect()
}

fn pod_yaml(name: &str, init: &str, sidecars_and_inits: bool, containers: &str) -> String {
    let inits = if sidecars_and_inits {
        format!("  initContainers:\n{init}")
    } else {
        String::new()
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 30\n  volumes: [{{name: shared, emptyDir: {{}}}}]\n{inits}  containers:\n{containers}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rule_restarts_a_container_only_on_the_matching_exit_code() {
    let mut h = Harness::new();
    let rule = "    restartPolicy: Never\n    restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [42]}}]\n";
    let body = "if [ \"$RUN\" = 0 ]; then echo \"restarter Exiting $(date +%s.%N)\" >> $LOG; exit 42; fi; \
                echo \"restarter Exiting $(date +%s.%N)\" >> $LOG; exit 1";
    let yaml = pod_yaml(
        "rule-42",
        "",
        false,
        &container_yaml("restarter", rule, body),
    );
    let pod = h.create(&yaml);
    let done = h
        .wait_for("rule-42", "pod failed", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        })
        .await;
    assert_eq!(
        lines(&h.log(&pod)),
        [
            "restarter Starting",
            "restarter Exiting",
            "restarter Starting",
            "restarter Exiting"
        ]
    );
    let st = &statuses(&done, false)[0];
    assert_eq!(st.restart_count, 1);
    let t = st.state.clone().unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (1, Some("Error")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_all_containers_from_a_regular_container() {
    let mut h = Harness::new();
    let rule = "    restartPolicy: Never\n    restartPolicyRules: [{action: RestartAllContainers, exitCodes: {operator: In, values: [42]}}]\n";
    let init = container_yaml("init", "", "echo \"init Exiting $(date +%s.%N)\" >> $LOG");
    let containers = container_yaml("trigger", rule, &first_run_exits("trigger", 42))
        + &container_yaml("worker", "", &sleeps("worker"));
    let pod = h.create(&pod_yaml("restart-all", &init, true, &containers));
    let done = h
        .wait_for("restart-all", "both containers running again", |p| {
            running_with(p, false, "trigger", 1) && running_with(p, false, "worker", 1)
        })
        .await;
    let log = h.log_lines(&pod, 12).await;
    let seq = lines(&log);
    // Per container, and across: the whole first round, the trigger's exit, then the
    // init container again before any regular container of the second round.
    assert_eq!(
        only(&seq, "trigger"),
        [
            "trigger Starting",
            "trigger Exiting",
            "trigger Starting",
            "trigger Started"
        ]
    );
    assert_eq!(
        only(&seq, "worker"),
        [
            "worker Starting",
            "worker Started",
            "worker Starting",
            "worker Started"
        ]
    );
    assert_eq!(
        only(&seq, "init"),
        [
            "init Starting",
            "init Exiting",
            "init Starting",
            "init Exiting"
        ]
    );
    let exit = pos(&seq, "trigger Exiting", 0);
    let init_again = pos(&seq, "init Starting", 1);
    let second_init_done = pos(&seq, "init Exiting", 1);
    assert!(pos(&seq, "worker Started", 0) < exit, "{seq:?}");
    assert!(exit < init_again, "{seq:?}");
    assert!(
        second_init_done < pos(&seq, "trigger Starting", 1),
        "{seq:?}"
    );
    assert!(
        second_init_done < pos(&seq, "worker Starting", 1),
        "{seq:?}"
    );
    // The worker (a shell as PID 1 ignoring SIGTERM) was killed after the 2 s floor,
    // without its grace period; the pod then started again from its init container.
    let gap = log[init_again].2 - log[exit].2;
    assert!(
        (1.5..6.0).contains(&gap),
        "restart began {gap:.2}s after the trigger"
    );
    // Same sandbox: the emptyDir kept the first round's lines; counts and lastState.
    assert_eq!(statuses(&done, true)[0].restart_count, 1);
    for st in statuses(&done, false) {
        let last = st.last_state.unwrap().terminated.unwrap();
        assert_eq!(last.reason.as_deref(), Some("RestartingAllContainers"));
        assert_eq!(last.exit_code, 137);
    }
    assert_eq!(
        done.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    h.delete("restart-all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_all_containers_from_a_sidecar() {
    let mut h = Harness::new();
    let rule = "    restartPolicy: Always\n    restartPolicyRules: [{action: RestartAllContainers, exitCodes: {operator: In, values: [7]}}]\n";
    let sidecar = container_yaml("sidecar", rule, &first_run_exits("sidecar", 7));
    let containers = container_yaml("main", "", &sleeps("main"));
    let pod = h.create(&pod_yaml("restart-all-sc", &sidecar, true, &containers));
    h.wait_for("restart-all-sc", "sidecar and main running again", |p| {
        running_with(p, true, "sidecar", 1) && running_with(p, false, "main", 1)
    })
    .await;
    let seq = lines(&h.log_lines(&pod, 8).await);
    assert_eq!(
        only(&seq, "sidecar"),
        [
            "sidecar Starting",
            "sidecar Exiting",
            "sidecar Starting",
            "sidecar Started"
        ]
    );
    assert_eq!(
        only(&seq, "main"),
        [
            "main Starting",
            "main Started",
            "main Starting",
            "main Started"
        ]
    );
    // main started after the sidecar in both rounds, and again only after the exit.
    assert!(pos(&seq, "sidecar Starting", 0) < pos(&seq, "main Starting", 0));
    assert!(pos(&seq, "sidecar Exiting", 0) < pos(&seq, "sidecar Starting", 1));
    assert!(pos(&seq, "sidecar Starting", 1) < pos(&seq, "main Starting", 1));
    h.delete("restart-all-sc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_all_containers_from_an_init_container() {
    let mut h = Harness::new();
    let rule = "    restartPolicy: Never\n    restartPolicyRules: [{action: RestartAllContainers, exitCodes: {operator: In, values: [42]}}]\n";
    let inits = container_yaml("first", "", "echo \"first Exiting $(date +%s.%N)\" >> $LOG")
        + &container_yaml(
            "second",
            rule,
            "echo \"second Exiting $(date +%s.%N)\" >> $LOG; [ \"$RUN\" = 0 ] && exit 42; exit 0",
        );
    let containers = container_yaml("main", "", &sleeps("main"));
    let pod = h.create(&pod_yaml("restart-all-init", &inits, true, &containers));
    let done = h
        .wait_for("restart-all-init", "main running", |p| {
            running_with(p, false, "main", 0)
        })
        .await;
    assert_eq!(
        lines(&h.log_lines(&pod, 10).await),
        [
            "first Starting",
            "first Exiting",
            "second Starting",
            "second Exiting",
            "first Starting",
            "first Exiting",
            "second Starting",
            "second Exiting",
            "main Starting",
            "main Started",
        ]
    );
    let inits = statuses(&done, true);
    assert_eq!((inits[0].restart_count, inits[1].restart_count), (1, 1));
    h.delete("restart-all-init").await;
}
