//! The pod worker's loop: one tokio task per pod that carries out what its
//! [`PodMachine`] decides and feeds the results back.
//!
//! The loop never decides anything itself. It waits on exactly three things: an input
//! from the work the runtime started (process exits, probe and hook results, pulls), a
//! control command (deletion, exec), or the machine's next timer. It talks to three
//! seams: a [`PodRuntime`] that carries out the machine's actions (real processes in
//! [`crate::pod`]), a [`StatusSink`] that takes the pod's status (the store), and a
//! [`Clock`] (the wall clock, or tokio's when a test pauses it). Its tests drive it with
//! fakes of all three and need no root.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use podrun_lifecycle::{
    Action, ContainerId, ExitStatus, HookKind, PodMachine, ProbeKind, ProbeResult,
};
use tokio::sync::{broadcast, mpsc};

use crate::events::Recorder;
use crate::sink::StatusSink;
use crate::{NodeEvent, PodCommand};

/// Inputs from the work a pod's runtime started. `P` is what a pull running off the
/// worker hands back.
#[derive(Debug)]
pub(crate) enum Input<P> {
    /// A container instance's process exited.
    Exited {
        id: ContainerId,
        restart_count: i32,
        exit: ExitStatus,
    },
    /// A hook handler ended.
    Hook {
        id: ContainerId,
        restart_count: i32,
        hook: HookKind,
        result: Result<(), String>,
    },
    /// A probe ended.
    Probe {
        id: ContainerId,
        restart_count: i32,
        probe: ProbeKind,
        result: ProbeResult,
        /// Why it failed.
        output: String,
    },
    /// A pull a start was waiting for ended.
    Pulled {
        id: ContainerId,
        restart_count: i32,
        pulled: P,
    },
}

/// What carries out a pod's actions: starts container instances, signals them, runs
/// their probes and hooks. Results come back to the loop as [`Input`]s through the
/// sender the runtime was made with (the runtime holds one, so the channel stays open
/// while it lives), or at once through the machine.
pub(crate) trait PodRuntime: Send {
    /// What a pull running off the worker hands back.
    type Pulled: Send + 'static;

    /// Carries out one action of the machine.
    fn carry_out(&mut self, action: Action, machine: &mut PodMachine, now: Timestamp);

    /// Whether instance `restart_count` of `id` waits for a pull.
    fn pulling(&self, id: ContainerId, restart_count: i32) -> bool;

    /// Whether instance `restart_count` of `id` has a process.
    fn runs(&self, id: ContainerId, restart_count: i32) -> bool;

    /// A pull that instance `restart_count` of `id` waited for ended: starts it, or
    /// reports the failed start to the machine.
    #[allow(clippy::too_many_arguments)]
    fn handle_pulled(
        &mut self,
        id: ContainerId,
        restart_count: i32,
        pulled: Self::Pulled,
        machine: &mut PodMachine,
        timeline: &mut Timeline,
        recorder: &mut Recorder,
        now: Timestamp,
    );

    /// Instance `restart_count` of `id` exited.
    fn handle_exited(&mut self, id: ContainerId, restart_count: i32);

    /// A hook of `id` ended.
    fn handle_hook_done(&mut self, id: ContainerId, hook: HookKind);

    /// Cancels every pull in progress; the instances that waited for them.
    fn cancel_pulls(&mut self) -> Vec<(ContainerId, i32)>;

    /// The running instance of `id`, for `exec`.
    fn exec_target(&self, id: ContainerId) -> Option<crate::runtime::exec::ExecTarget>;

    /// Hands the Events gathered since the last call to the recorder.
    fn record_events(&mut self, recorder: &mut Recorder);

    /// Adds what the runtime knows to a status about to be published (addresses,
    /// image ids).
    fn decorate(&self, pod: &Pod, status: &mut PodStatus);

    /// Releases what the pod held once no process is left; how long the sandbox's
    /// teardown took.
    fn teardown(self) -> impl Future<Output = Duration> + Send;
}

/// The time the worker goes by: the wall clock, or one that moves with tokio's clock so
/// a test that pauses tokio's time controls it too.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    /// A wall-clock instant and the tokio instant it was read at, when following tokio.
    tokio: Option<(Timestamp, tokio::time::Instant)>,
}

impl Clock {
    /// The wall clock.
    pub(crate) const WALL: Clock = Clock { tokio: None };

    /// A clock at `at` now, moving with tokio's clock.
    #[cfg(test)]
    pub(crate) fn following_tokio(at: Timestamp) -> Clock {
        Clock {
            tokio: Some((at, tokio::time::Instant::now())),
        }
    }

    /// The time now.
    pub(crate) fn now(&self) -> Timestamp {
        match self.tokio {
            None => crate::now(),
            Some((at, base)) => {
                let since = tokio::time::Instant::now().duration_since(base);
                let nanos = at.as_nanosecond().saturating_add(since.as_nanos() as i128);
                Timestamp::from_nanosecond(nanos).unwrap_or(at)
            }
        }
    }

    /// The tokio instant of an engine deadline.
    fn instant(&self, at: Timestamp) -> tokio::time::Instant {
        let wait = at.duration_since(self.now());
        let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
        tokio::time::Instant::now() + wait
    }
}

/// Where a worker's results go: its status, the node's subscribers, and the clock it
/// reads.
#[derive(Clone)]
pub(crate) struct Outlet {
    /// Where status is written (the store).
    pub(crate) sink: Arc<dyn StatusSink>,
    /// The node's subscribers.
    pub(crate) events: broadcast::Sender<NodeEvent>,
    /// The worker's clock.
    pub(crate) clock: Clock,
}

impl Outlet {
    /// Stores the pod's status (stamping its resourceVersion) and tells subscribers.
    pub(crate) fn publish(&self, pod: &mut Pod) {
        if let Err(e) = crate::sink::write_status(&*self.sink, pod) {
            tracing::error!(%e, "cannot store pod status");
        }
        let _ = self.events.send(NodeEvent::Pod(Arc::new(pod.clone())));
    }

    /// The end of a pod whose containers are gone: a deleted pod disappears from the
    /// store, as the API server removes it once the kubelet confirms.
    pub(crate) fn finish(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            let key = crate::key_of(&pod.metadata);
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            if let Err(e) = self.sink.remove(&key, uid) {
                tracing::error!(%e, "cannot remove deleted pod");
            }
        }
    }
}

/// The pod's timeline: one JSON line per input and action, with nanosecond wall-clock
/// times, in `<pod dir>/timeline.jsonl`. It is how latencies are measured and how a
/// pod's lifecycle can be drawn afterwards.
pub(crate) struct Timeline {
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Timeline {
    pub(crate) fn open(pod_dir: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(pod_dir.join("timeline.jsonl"))
            .ok()
            .map(std::io::BufWriter::new);
        Self { file }
    }

    pub(crate) fn record(&mut self, event: &str, id: Option<ContainerId>, detail: &str) {
        use std::io::Write;
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let container = id.map_or(String::new(), |id| format!("{id:?}"));
        let line = serde_json::json!({
            "t": crate::now().as_nanosecond().to_string(),
            "event": event,
            "container": container,
            "detail": detail,
        });
        let _ = writeln!(file, "{line}");
    }

    pub(crate) fn flush(&mut self) {
        use std::io::Write;
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
    }
}

/// One pod's worker: what it carries out, where it reports, and what it keeps.
pub(crate) struct Worker<R: PodRuntime> {
    /// The pod as the worker knows it (status, deletion).
    pub(crate) pod: Pod,
    pub(crate) runtime: R,
    pub(crate) inputs: mpsc::UnboundedReceiver<Input<R::Pulled>>,
    pub(crate) commands: mpsc::UnboundedReceiver<PodCommand>,
    pub(crate) outlet: Outlet,
    pub(crate) timeline: Timeline,
    pub(crate) recorder: Recorder,
}

impl<R: PodRuntime> Worker<R> {
    /// Runs the pod to its end: returns the pod once it is finished (terminal phase and
    /// no process left) and its runtime torn down. The caller makes the final delete
    /// ([`Outlet::finish`]).
    pub(crate) async fn run(self) -> Pod {
        let Worker {
            mut pod,
            mut runtime,
            mut inputs,
            mut commands,
            outlet,
            mut timeline,
            mut recorder,
        } = self;
        let clock = outlet.clock;
        let mut machine = PodMachine::new(pod.clone(), clock.now());
        let mut last_status = None;
        let mut commands_open = true;
        let mut last_phase = String::new();

        loop {
            while let Some(action) = machine.poll_action() {
                // Publish what is visible before a container starts (e.g. `Init:1/2`, or
                // `PodInitializing` between the last sidecar being started and the first
                // regular container), as the kubelet's status sync would have seen it.
                if matches!(action, Action::StartContainer { .. }) {
                    publish_if_changed(&outlet, &runtime, &mut pod, &machine, &mut last_status);
                    if let Some(status) = &last_status {
                        recorder.handle_status(status);
                    }
                }
                record_action(&mut timeline, &action);
                runtime.carry_out(action.clone(), &mut machine, clock.now());
                runtime.record_events(&mut recorder);
                if let Action::StartContainer { id, restart_count } = action
                    && runtime.pulling(id, restart_count)
                {
                    // Recorded when the pull ends and the start goes on.
                    timeline.record("pulling", Some(id), &restart_count.to_string());
                    continue;
                }
                let started = matches!(action, Action::StartContainer { id, restart_count }
                    if runtime.runs(id, restart_count));
                recorder.handle_action(&action, &machine, started);
            }
            publish_if_changed(&outlet, &runtime, &mut pod, &machine, &mut last_status);
            if let Some(status) = &last_status {
                recorder.handle_status(status);
            }
            let phase = last_status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            if phase != last_phase {
                timeline.record("phase", None, &phase);
                last_phase = phase;
            }
            if machine.is_finished() {
                break;
            }
            let deadline = machine.poll_timeout().map(|at| clock.instant(at));
            tokio::select! {
                input = inputs.recv() => {
                    // The runtime holds a sender itself, so the channel never closes.
                    let Some(input) = input else { break };
                    let now = clock.now();
                    match input {
                        Input::Exited { id, restart_count, exit } => {
                            timeline.record("exited", Some(id), &exit.exit_code.to_string());
                            recorder.handle_exited(id, restart_count, &exit);
                            runtime.handle_exited(id, restart_count);
                            machine.handle_container_exited(id, restart_count, exit, now);
                        }
                        Input::Hook { id, restart_count, hook, result } => {
                            timeline.record("hook-done", Some(id), &format!("{hook:?} {}", result.is_ok()));
                            runtime.handle_hook_done(id, hook);
                            recorder.handle_hook(id, restart_count, hook, &result);
                            machine.handle_hook_result(id, restart_count, hook, result, now);
                        }
                        Input::Probe { id, restart_count, probe, result, output } => {
                            timeline.record("probe", Some(id), &format!("{probe:?} {result:?}"));
                            // A probe that was under way when its container exited failed
                            // for that reason alone: no Unhealthy Event for it (the kubelet
                            // probes running containers only).
                            if runtime.runs(id, restart_count) {
                                recorder.handle_probe(id, restart_count, probe, result, &output);
                            }
                            machine.handle_probe_result(id, restart_count, probe, result, now);
                        }
                        Input::Pulled { id, restart_count, pulled } => {
                            if !runtime.pulling(id, restart_count) {
                                continue;
                            }
                            runtime.handle_pulled(id, restart_count, pulled, &mut machine, &mut timeline, &mut recorder, now);
                            runtime.record_events(&mut recorder);
                            let started = runtime.runs(id, restart_count);
                            recorder.handle_action(&Action::StartContainer { id, restart_count }, &machine, started);
                        }
                    }
                }
                command = commands.recv(), if commands_open => {
                    match command {
                        Some(PodCommand::Delete { grace_period_seconds }) => {
                            let now = clock.now();
                            if pod.metadata.deletion_timestamp.is_none() {
                                // A graceful deletion bumps the generation (as the machine does).
                                pod.metadata.generation = pod.metadata.generation.map(|g| g.saturating_add(1));
                                pod.metadata.deletion_timestamp = Some(Time(now));
                                pod.metadata.deletion_grace_period_seconds = Some(
                                    grace_period_seconds
                                        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                                        .unwrap_or(30),
                                );
                            }
                            machine.handle_delete(grace_period_seconds, now);
                            // The kubelet cancels the pulls of a deleted pod.
                            for (id, restart_count) in runtime.cancel_pulls() {
                                timeline.record("pull-cancelled", Some(id), &restart_count.to_string());
                                machine.handle_container_start_failed(
                                    id,
                                    restart_count,
                                    "ErrImagePull",
                                    "the pull was cancelled: the pod is being deleted",
                                    now,
                                );
                                recorder.handle_action(&Action::StartContainer { id, restart_count }, &machine, false);
                            }
                            let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
                            recorder.handle_delete(grace);
                            // Publish the deletion timestamp even if the status did not change.
                            last_status = None;
                        }
                        Some(PodCommand::ExecTarget { container: wanted, reply }) => {
                            let target = container_id(machine.pod(), &wanted)
                                .and_then(|id| runtime.exec_target(id));
                            let _ = reply.send(target);
                        }
                        None => commands_open = false,
                    }
                }
                () = sleep_until(deadline) => {
                    machine.handle_timeout(clock.now());
                }
            }
        }
        runtime.cancel_pulls();
        let teardown = runtime.teardown().await;
        timeline.record("sandbox-teardown", None, &teardown.as_micros().to_string());
        timeline.record("finished", None, &last_phase);
        timeline.flush();
        pod
    }
}

fn record_action(timeline: &mut Timeline, action: &Action) {
    match action {
        Action::StartContainer { id, restart_count } => {
            timeline.record("start", Some(*id), &restart_count.to_string());
        }
        Action::RunHook { id, hook, .. } => {
            timeline.record("hook", Some(*id), &format!("{hook:?}"))
        }
        Action::CancelHook { id, hook, .. } => {
            timeline.record("cancel-hook", Some(*id), &format!("{hook:?}"));
        }
        Action::RunProbe { .. } => {}
        Action::Signal { id, signal, .. } => {
            timeline.record("signal", Some(*id), &format!("{signal:?}"));
        }
    }
}

/// Stores and announces the pod when its status changed since the last publication.
fn publish_if_changed<R: PodRuntime>(
    outlet: &Outlet,
    runtime: &R,
    pod: &mut Pod,
    machine: &PodMachine,
    last: &mut Option<PodStatus>,
) {
    let status = machine.status();
    if last.as_ref() == Some(&status) {
        return;
    }
    *last = Some(status.clone());
    let mut status = status;
    runtime.decorate(pod, &mut status);
    status.qos_class = Some(crate::cgroup::qos_class(pod).into());
    pod.status = Some(status);
    outlet.publish(pod);
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The id of the container named `name` in the pod's spec.
fn container_id(pod: &Pod, name: &str) -> Option<ContainerId> {
    let spec = pod.spec.as_ref()?;
    if let Some(i) = spec.containers.iter().position(|c| c.name == name) {
        return Some(ContainerId::Regular(i));
    }
    spec.init_containers
        .as_ref()?
        .iter()
        .position(|c| c.name == name)
        .map(ContainerId::Init)
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
