//! In-memory fakes of the node's seams, for tests that need no root and no store file:
//! a [`FakeSink`] (the store as a pod worker sees it), a [`FakeRuntime`] whose
//! containers follow scripts on tokio's clock, a [`FakeSource`] whose watch a test can
//! break, and [`FakeWorkers`] that record what the source's events asked of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use podrun_lifecycle::{
    Action, ContainerId, ExitStatus, HookKind, PodMachine, ProbeResult, StopSignal,
};
use podrun_store::{ApiError, EventType, ResourceType, WatchEvent};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::events::Recorder;
use crate::objects::ObjectKey;
use crate::sink::StatusSink;
use crate::source::{PodSource, Workers};
use crate::worker::{Input, PodRuntime, Timeline};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// === FakeSink ===

/// One status write the sink took.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StatusWrite {
    /// The phase written.
    pub(crate) phase: Option<String>,
    /// The resourceVersion the write was conditional on, if any.
    pub(crate) precondition: Option<String>,
    /// Whether the pod was marked for deletion in the worker's copy.
    pub(crate) deleting: bool,
}

#[derive(Default)]
struct SinkState {
    pods: HashMap<ObjectKey, (Pod, u64)>,
    revision: u64,
    writes: Vec<StatusWrite>,
    conflicts: Vec<ObjectKey>,
    removed: Vec<(ObjectKey, String)>,
    /// Writes that lose a race to another writer before they land.
    lose_next: usize,
}

/// The store as a pod worker sees it, in memory.
#[derive(Clone, Default)]
pub(crate) struct FakeSink(Arc<Mutex<SinkState>>);

impl FakeSink {
    /// A sink holding `pod`.
    pub(crate) fn with(pod: &Pod) -> Self {
        let sink = Self::default();
        sink.put(pod.clone());
        sink
    }

    /// Stores `pod` (a write by someone else): a new revision.
    pub(crate) fn put(&self, pod: Pod) {
        let mut s = lock(&self.0);
        s.revision += 1;
        let rev = s.revision;
        s.pods.insert(crate::key_of(&pod.metadata), (pod, rev));
    }

    /// The next `n` status writes lose a race: another writer commits first.
    pub(crate) fn lose_next(&self, n: usize) {
        lock(&self.0).lose_next = n;
    }

    /// The status writes taken, in order.
    pub(crate) fn writes(&self) -> Vec<StatusWrite> {
        lock(&self.0).writes.clone()
    }

    /// The writes answered with a Conflict.
    pub(crate) fn conflicts(&self) -> usize {
        lock(&self.0).conflicts.len()
    }

    /// The final deletes taken.
    pub(crate) fn removed(&self) -> Vec<(ObjectKey, String)> {
        lock(&self.0).removed.clone()
    }

    /// The stored pod.
    pub(crate) fn stored(&self, key: &ObjectKey) -> Option<Pod> {
        lock(&self.0).pods.get(key).map(|(p, _)| p.clone())
    }
}

impl StatusSink for FakeSink {
    fn write_status(&self, pod: &Pod) -> Result<String, ApiError> {
        let key = crate::key_of(&pod.metadata);
        let mut s = lock(&self.0);
        let name = key.name.clone();
        let Some((stored, rev)) = s.pods.get(&key).cloned() else {
            return Err(ApiError::not_found(&ResourceType::PODS, &name));
        };
        if stored.metadata.uid != pod.metadata.uid {
            return Err(ApiError::internal("another pod of that name"));
        }
        if s.lose_next > 0 {
            // Another writer (a label change, say) commits between read and write.
            s.lose_next -= 1;
            s.revision += 1;
            let next = s.revision;
            let mut other = stored;
            other
                .metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("touched".into(), next.to_string());
            s.pods.insert(key.clone(), (other, next));
            s.conflicts.push(key);
            return Err(ApiError::modified(&ResourceType::PODS, &name));
        }
        let precondition = pod.metadata.resource_version.clone();
        if let Some(rv) = &precondition
            && *rv != rev.to_string()
        {
            s.conflicts.push(key);
            return Err(ApiError::modified(&ResourceType::PODS, &name));
        }
        s.revision += 1;
        let next = s.revision;
        let mut new = stored;
        new.status = pod.status.clone();
        s.pods.insert(key, (new, next));
        s.writes.push(StatusWrite {
            phase: pod.status.as_ref().and_then(|st| st.phase.clone()),
            precondition,
            deleting: pod.metadata.deletion_timestamp.is_some(),
        });
        Ok(next.to_string())
    }

    fn latest(&self, key: &ObjectKey) -> Result<Option<Pod>, ApiError> {
        Ok(lock(&self.0).pods.get(key).map(|(p, rev)| {
            let mut p = p.clone();
            p.metadata.resource_version = Some(rev.to_string());
            p
        }))
    }

    fn remove(&self, key: &ObjectKey, uid: &str) -> Result<(), ApiError> {
        let mut s = lock(&self.0);
        if s.pods
            .get(key)
            .is_some_and(|(p, _)| p.metadata.uid.as_deref() == Some(uid))
        {
            s.pods.remove(key);
            s.revision += 1;
        }
        s.removed.push((key.clone(), uid.to_string()));
        Ok(())
    }
}

// === FakeRuntime ===

/// What a fake container does once started.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Script {
    /// Exits by itself after this long, with `exit_code`.
    pub(crate) exits_after: Option<Duration>,
    /// Its exit code when it exits by itself.
    pub(crate) exit_code: i32,
    /// Exits this long after a SIGTERM; `None` ignores SIGTERM.
    pub(crate) term_after: Option<Duration>,
    /// Its start takes this long (an image pull, say): the start happens after it.
    pub(crate) starts_after: Duration,
}

impl Script {
    /// Runs until signalled; SIGTERM ends it at once.
    pub(crate) fn serves() -> Self {
        Script {
            exits_after: None,
            exit_code: 0,
            term_after: Some(Duration::ZERO),
            starts_after: Duration::ZERO,
        }
    }

    /// Exits with `code` after `after`.
    pub(crate) fn exits(after: Duration, code: i32) -> Self {
        Script {
            exits_after: Some(after),
            exit_code: code,
            ..Script::serves()
        }
    }

    /// Ignores SIGTERM (only SIGKILL ends it).
    pub(crate) fn ignoring_term(self) -> Self {
        Script {
            term_after: None,
            ..self
        }
    }

    /// Takes `d` to start.
    pub(crate) fn starting_in(self, d: Duration) -> Self {
        Script {
            starts_after: d,
            ..self
        }
    }
}

/// What the fake runtime saw, with tokio's elapsed time since the test began.
#[derive(Clone, Default)]
pub(crate) struct Journal(Arc<Mutex<Vec<(Duration, String)>>>);

impl Journal {
    fn push(&self, base: tokio::time::Instant, line: String) {
        lock(&self.0).push((base.elapsed(), line));
    }

    /// The lines, without times.
    pub(crate) fn lines(&self) -> Vec<String> {
        lock(&self.0).iter().map(|(_, l)| l.clone()).collect()
    }

    /// When the first line equal to `line` was written.
    pub(crate) fn at(&self, line: &str) -> Option<Duration> {
        lock(&self.0)
            .iter()
            .find(|(_, l)| l == line)
            .map(|(t, _)| *t)
    }
}

/// Instances alive, shared with the tasks that end them (so an instance exits once).
type Alive = Arc<Mutex<HashMap<ContainerId, i32>>>;

/// A [`PodRuntime`] whose containers follow [`Script`]s on tokio's clock.
pub(crate) struct FakeRuntime {
    scripts: HashMap<String, Script>,
    tx: mpsc::UnboundedSender<Input<()>>,
    alive: Alive,
    /// Starts waiting (the fake's stand-in for a pull): instance and task.
    pending: HashMap<ContainerId, (i32, tokio::task::AbortHandle)>,
    journal: Journal,
    base: tokio::time::Instant,
}

impl FakeRuntime {
    /// A runtime for scripts by container name (a container without one serves), and
    /// the receiver of its inputs.
    pub(crate) fn new(
        scripts: &[(&str, Script)],
        journal: Journal,
    ) -> (Self, mpsc::UnboundedReceiver<Input<()>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = FakeRuntime {
            scripts: scripts
                .iter()
                .map(|(n, s)| ((*n).to_string(), *s))
                .collect(),
            tx,
            alive: Arc::default(),
            pending: HashMap::new(),
            journal,
            base: tokio::time::Instant::now(),
        };
        (runtime, rx)
    }

    fn name(machine: &PodMachine, id: ContainerId) -> String {
        let spec = machine.pod().spec.as_ref();
        let c = match id {
            ContainerId::Init(i) => spec.and_then(|s| s.init_containers.as_ref()?.get(i)),
            ContainerId::Regular(i) => spec.and_then(|s| s.containers.get(i)),
        };
        c.map(|c| c.name.clone()).unwrap_or_default()
    }

    /// Ends instance `rc` of `id` after `after` with `exit`, unless it ended already.
    fn exit_later(
        &self,
        id: ContainerId,
        rc: i32,
        after: Duration,
        exit: ExitStatus,
        what: String,
    ) {
        let (alive, tx, journal, base) = (
            self.alive.clone(),
            self.tx.clone(),
            self.journal.clone(),
            self.base,
        );
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if lock(&alive).get(&id) != Some(&rc) {
                return;
            }
            lock(&alive).remove(&id);
            journal.push(base, what);
            let _ = tx.send(Input::Exited {
                id,
                restart_count: rc,
                exit,
            });
        });
    }

    fn started(&mut self, id: ContainerId, rc: i32, name: &str) {
        let script = self
            .scripts
            .get(name)
            .copied()
            .unwrap_or_else(Script::serves);
        lock(&self.alive).insert(id, rc);
        self.journal.push(self.base, format!("started {name}"));
        if let Some(after) = script.exits_after {
            let exit = ExitStatus {
                exit_code: script.exit_code,
                signal: None,
                oom_killed: false,
                message: None,
            };
            self.exit_later(
                id,
                rc,
                after,
                exit,
                format!("exited {name} {}", script.exit_code),
            );
        }
    }
}

fn killed_by(signal: i32) -> ExitStatus {
    ExitStatus {
        exit_code: 128 + signal,
        signal: Some(signal),
        oom_killed: false,
        message: None,
    }
}

impl PodRuntime for FakeRuntime {
    type Pulled = ();

    fn carry_out(&mut self, action: Action, machine: &mut PodMachine, now: Timestamp) {
        match action {
            Action::StartContainer { id, restart_count } => {
                let name = Self::name(machine, id);
                let script = self
                    .scripts
                    .get(&name)
                    .copied()
                    .unwrap_or_else(Script::serves);
                self.journal.push(self.base, format!("start {name}"));
                if script.starts_after.is_zero() {
                    self.started(id, restart_count, &name);
                    machine.handle_container_started(id, restart_count, now);
                    return;
                }
                // Waits like a pull: the start goes on when the wait ends, unless the
                // pod is deleted first.
                let tx = self.tx.clone();
                let after = script.starts_after;
                let task = tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(Input::Pulled {
                        id,
                        restart_count,
                        pulled: (),
                    });
                });
                self.pending
                    .insert(id, (restart_count, task.abort_handle()));
            }
            Action::Signal {
                id,
                restart_count,
                signal,
            } => {
                let name = Self::name(machine, id);
                let script = self
                    .scripts
                    .get(&name)
                    .copied()
                    .unwrap_or_else(Script::serves);
                match signal {
                    StopSignal::Term => {
                        self.journal.push(self.base, format!("term {name}"));
                        if let Some(after) = script.term_after {
                            self.exit_later(
                                id,
                                restart_count,
                                after,
                                killed_by(15),
                                format!("exited {name} 143"),
                            );
                        }
                    }
                    StopSignal::Kill => {
                        self.journal.push(self.base, format!("kill {name}"));
                        self.exit_later(
                            id,
                            restart_count,
                            Duration::ZERO,
                            killed_by(9),
                            format!("exited {name} 137"),
                        );
                    }
                }
            }
            Action::RunProbe {
                id,
                restart_count,
                probe,
            } => {
                let _ = self.tx.send(Input::Probe {
                    id,
                    restart_count,
                    probe,
                    result: ProbeResult::Success,
                    output: String::new(),
                });
            }
            Action::RunHook {
                id,
                restart_count,
                hook,
            } => {
                let _ = self.tx.send(Input::Hook {
                    id,
                    restart_count,
                    hook,
                    result: Ok(()),
                });
            }
            Action::CancelHook { .. } => {}
        }
    }

    fn pulling(&self, id: ContainerId, restart_count: i32) -> bool {
        self.pending
            .get(&id)
            .is_some_and(|(rc, _)| *rc == restart_count)
    }

    fn runs(&self, id: ContainerId, restart_count: i32) -> bool {
        lock(&self.alive).get(&id) == Some(&restart_count)
    }

    fn handle_pulled(
        &mut self,
        id: ContainerId,
        restart_count: i32,
        (): (),
        machine: &mut PodMachine,
        _: &mut Timeline,
        _: &mut Recorder,
        now: Timestamp,
    ) {
        self.pending.remove(&id);
        let name = Self::name(machine, id);
        self.started(id, restart_count, &name);
        machine.handle_container_started(id, restart_count, now);
    }

    fn handle_exited(&mut self, _: ContainerId, _: i32) {}

    fn handle_hook_done(&mut self, _: ContainerId, _: HookKind) {}

    fn cancel_pulls(&mut self) -> Vec<(ContainerId, i32)> {
        self.pending
            .drain()
            .map(|(id, (rc, task))| {
                task.abort();
                (id, rc)
            })
            .collect()
    }

    fn exec_target(&self, _: ContainerId) -> Option<crate::runtime::exec::ExecTarget> {
        None
    }

    fn record_events(&mut self, _: &mut Recorder) {}

    fn decorate(&self, _: &Pod, status: &mut PodStatus) {
        status.pod_ip = Some("198.18.0.9".into());
    }

    async fn teardown(self) -> Duration {
        self.journal.push(self.base, "teardown".into());
        Duration::ZERO
    }
}

// === FakeSource ===

#[derive(Default)]
struct SourceState {
    pods: HashMap<ObjectKey, Value>,
    revision: u64,
    /// The open watch's sender; dropping it ends the stream (a lost watch).
    watch: Option<mpsc::UnboundedSender<WatchEvent>>,
    lists: usize,
}

/// Pods in memory, as a [`PodSource`] whose watch a test can break.
#[derive(Clone, Default)]
pub(crate) struct FakeSource(Arc<Mutex<SourceState>>);

impl FakeSource {
    /// Adds or changes a pod: the open watch (if any) sees it.
    pub(crate) fn apply(&self, mut pod: Value) {
        let mut s = lock(&self.0);
        s.revision += 1;
        pod["metadata"]["resourceVersion"] = s.revision.to_string().into();
        let key = key_of(&pod);
        let kind = if s.pods.contains_key(&key) {
            EventType::Modified
        } else {
            EventType::Added
        };
        s.pods.insert(key, pod.clone());
        if let Some(w) = &s.watch {
            let _ = w.send(WatchEvent { kind, object: pod });
        }
    }

    /// Removes a pod outright: the open watch (if any) sees it.
    pub(crate) fn remove(&self, namespace: &str, name: &str) {
        let mut s = lock(&self.0);
        s.revision += 1;
        if let Some(pod) = s.pods.remove(&ObjectKey::new(namespace, name))
            && let Some(w) = &s.watch
        {
            let _ = w.send(WatchEvent {
                kind: EventType::Deleted,
                object: pod,
            });
        }
    }

    /// Ends the open watch, as a lost connection or a `410 Gone` would.
    pub(crate) fn break_watch(&self) {
        lock(&self.0).watch = None;
    }

    /// How often the source was listed.
    pub(crate) fn lists(&self) -> usize {
        lock(&self.0).lists
    }

    /// Whether a watch is open.
    pub(crate) fn watching(&self) -> bool {
        lock(&self.0).watch.is_some()
    }
}

fn key_of(pod: &Value) -> ObjectKey {
    ObjectKey::new(
        podrun_store::object::meta_str(pod, "namespace").unwrap_or("default"),
        podrun_store::object::name(pod),
    )
}

impl PodSource for FakeSource {
    fn list(&self) -> Result<(Vec<Value>, u64), ApiError> {
        let mut s = lock(&self.0);
        s.lists += 1;
        Ok((s.pods.values().cloned().collect(), s.revision))
    }

    fn watch(&self, _revision: u64) -> Result<BoxStream<'static, WatchEvent>, ApiError> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.0).watch = Some(tx);
        Ok(tokio_stream_from(rx))
    }
}

fn tokio_stream_from(rx: mpsc::UnboundedReceiver<WatchEvent>) -> BoxStream<'static, WatchEvent> {
    futures::stream::unfold(rx, |mut rx| async move {
        let e = rx.recv().await?;
        Some((e, rx))
    })
    .boxed()
}

// === FakeWorkers ===

/// What the source's events asked of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Asked {
    /// Bind and run this pod.
    Bind(String),
    /// Terminate this pod with this grace period.
    Delete(String, Option<i64>),
}

#[derive(Default)]
struct WorkersState {
    running: HashMap<ObjectKey, String>,
    asked: Vec<Asked>,
}

/// Pod workers that only record what they are asked (a bind runs the pod at once).
#[derive(Clone, Default)]
pub(crate) struct FakeWorkers(Arc<Mutex<WorkersState>>);

impl FakeWorkers {
    /// What was asked, in order.
    pub(crate) fn asked(&self) -> Vec<Asked> {
        lock(&self.0).asked.clone()
    }
}

impl Workers for FakeWorkers {
    fn runs(&self, key: &ObjectKey, uid: &str) -> bool {
        lock(&self.0).running.get(key).is_some_and(|u| u == uid)
    }

    fn running(&self) -> Vec<(ObjectKey, String)> {
        lock(&self.0)
            .running
            .iter()
            .map(|(k, u)| (k.clone(), u.clone()))
            .collect()
    }

    fn tell_delete(&self, key: &ObjectKey, grace_period_seconds: Option<i64>) {
        let mut s = lock(&self.0);
        if s.running.contains_key(key) {
            s.asked
                .push(Asked::Delete(key.name.clone(), grace_period_seconds));
        }
    }

    fn is_stopping(&self) -> bool {
        false
    }

    fn bind(&self, key: &ObjectKey, pod: Value) {
        let mut s = lock(&self.0);
        s.running
            .insert(key.clone(), podrun_store::object::uid(&pod).to_string());
        s.asked.push(Asked::Bind(key.name.clone()));
    }
}
