//! The node e2e harness of the lifecycle tests: a node on a temporary state directory,
//! pods whose containers log `name Starting/Started/Exiting <timestamp>` lines to a
//! shared emptyDir, and waits on the node's events.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use podrun_model::{Object, admit_pod, parse_manifests};
use podrun_node::{Node, NodeEvent};

pub fn require_root() {
    assert!(
        podrun_node::runtime::isolation_available(),
        "these tests need root (PID and mount namespaces); run them as root like CI does"
    );
}

/// A container script: logs `Starting`, then runs `body` (which may use `$RUN`, the
/// number of this container's earlier runs).
pub fn script(name: &str, body: &str) -> String {
    format!(
        "LOG=/shared/log; RUN=$(cat $LOG 2>/dev/null | grep -c '^{name} Starting'); \
         echo \"{name} Starting $(date +%s.%N)\" >> $LOG; {body}"
    )
}

/// Body: exit with `code` on the first run (logging `Exiting`), sleep after that.
pub fn first_run_exits(name: &str, code: i32) -> String {
    format!(
        "if [ \"$RUN\" = 0 ]; then sleep 1; echo \"{name} Exiting $(date +%s.%N)\" >> $LOG; \
         exit {code}; fi; echo \"{name} Started $(date +%s.%N)\" >> $LOG; exec sleep 1000"
    )
}

pub fn sleeps(name: &str) -> String {
    format!("echo \"{name} Started $(date +%s.%N)\" >> $LOG; exec sleep 1000")
}

pub fn container_yaml(name: &str, extra: &str, body: &str) -> String {
    let cmd = script(name, body).replace('\'', "''");
    format!(
        "  - name: {name}\n    image: busybox\n{extra}    command: [sh, -c, '{cmd}']\n    volumeMounts: [{{name: shared, mountPath: /shared}}]\n"
    )
}

/// The harness's containers run the host's `sh` (host-filesystem mode), never an image.
fn host_rootfs(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(podrun_model::HOST_ROOTFS_ANNOTATION.into(), "*".into());
}

pub struct Harness {
    _dir: tempfile::TempDir,
    /// The node under test.
    pub node: Node,
    events: tokio::sync::broadcast::Receiver<NodeEvent>,
}

impl Harness {
    pub fn new() -> Self {
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

    pub fn create(&self, yaml: &str) -> Pod {
        let objs = parse_manifests(yaml, "pod.yaml").expect("manifest parses");
        let Some(Object::Pod(pod)) = objs.into_iter().next() else {
            panic!("not a pod")
        };
        let mut pod = admit_pod(*pod).expect("pod admitted");
        host_rootfs(&mut pod.metadata);
        self.node.create_pod(pod).expect("pod created")
    }

    /// Creates a Job from `yaml` (admitted as the API server would).
    pub fn create_job(&self, yaml: &str) {
        let objs = parse_manifests(yaml, "job.yaml").expect("manifest parses");
        let Some(Object::Job(job)) = objs.into_iter().next() else {
            panic!("not a job")
        };
        let mut job = podrun_model::admit_job(*job).expect("job admitted");
        if let Some(spec) = job.spec.as_mut() {
            host_rootfs(spec.template.metadata.get_or_insert_with(Default::default));
        }
        self.node.create_job(job).expect("job created");
    }

    /// Waits (at most 30 s) for a status of Job `name` that satisfies `done`.
    pub async fn wait_for_job(
        &mut self,
        name: &str,
        done: impl Fn(&k8s_openapi::api::batch::v1::Job) -> bool,
    ) -> k8s_openapi::api::batch::v1::Job {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for job {name}");
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Ok(NodeEvent::Job(j)))
                    if j.metadata.name.as_deref() == Some(name) && done(&j) =>
                {
                    return (*j).clone();
                }
                Ok(Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => panic!("event stream ended: {e}"),
                Err(_) => panic!("timed out waiting for job {name}"),
            }
        }
    }

    /// Waits (at most 30 s) for a status of pod `name` that satisfies `done`.
    pub async fn wait_for(&mut self, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
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
    pub async fn log_lines(&self, pod: &Pod, n: usize) -> Vec<(String, String, f64)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log(pod);
            if log.len() >= n || Instant::now() > deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self, pod: &Pod) -> Vec<(String, String, f64)> {
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

    pub async fn delete(&mut self, name: &str) {
        assert!(self.node.delete_pod("default", name, Some(0)));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "pod {name} did not finish after deletion");
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Ok(NodeEvent::PodFinished(p))) if p.metadata.name.as_deref() == Some(name) => {
                    return;
                }
                Ok(Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => panic!("event stream ended: {e}"),
                Err(_) => panic!("pod {name} did not finish after deletion"),
            }
        }
    }
}

pub fn statuses(pod: &Pod, init: bool) -> Vec<ContainerStatus> {
    let st = pod.status.clone().unwrap_or_default();
    if init {
        st.init_container_statuses.unwrap_or_default()
    } else {
        st.container_statuses.unwrap_or_default()
    }
}

pub fn running_with(pod: &Pod, init: bool, name: &str, restarts: i32) -> bool {
    statuses(pod, init).iter().any(|s| {
        s.name == name
            && s.restart_count == restarts
            && s.state.as_ref().is_some_and(|st| st.running.is_some())
    })
}

/// The lines of one container, in order.
pub fn only(seq: &[String], name: &str) -> Vec<String> {
    seq.iter()
        .filter(|l| l.split(' ').next() == Some(name))
        .cloned()
        .collect()
}

/// Index of the `nth` (0-based) occurrence of `line`.
pub fn pos(seq: &[String], line: &str, nth: usize) -> usize {
    seq.iter()
        .enumerate()
        .filter(|(_, l)| *l == line)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {line:?} #{nth} in {seq:?}"))
        .0
}

pub fn lines(log: &[(String, String, f64)]) -> Vec<String> {
    log.iter().map(|(n, w, _)| format!("{n} {w}")).collect()
}
