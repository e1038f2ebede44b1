//! The pod worker: one tokio task per pod that carries out what its
//! [`PodMachine`] decides and feeds the results back.
//!
//! The worker never decides anything itself. It waits on exactly three things: an input
//! from the container processes, probes and hooks it started (process exits arrive from
//! pidfds, so they are seen within milliseconds), a control command (deletion), or the
//! machine's next timer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use podrun_lifecycle::{
    Action, ContainerId, ExitStatus, HookKind, PodMachine, ProbeKind, ProbeResult, StopSignal,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::handler::{self, HandlerOutcome};
use crate::instance;
use crate::layout::Layout;
use crate::runtime::{BindMount, ContainerLaunch, ContainerProcess, PodIdentity};
use crate::sandbox::{Sandbox, SandboxSpec};
use crate::{NodeShared, PodCommand};

/// Inputs from the work the pod worker started.
#[derive(Debug)]
enum Input {
    Exited {
        id: ContainerId,
        restart_count: i32,
        exit: ExitStatus,
    },
    Hook {
        id: ContainerId,
        restart_count: i32,
        hook: HookKind,
        result: Result<(), String>,
    },
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
        ensured: Box<crate::runtime::images::Ensured>,
    },
}

/// The pod's timeline: one JSON line per input and action, with nanosecond wall-clock
/// times, in `<pod dir>/timeline.jsonl`. It is how latencies are measured and how a
/// pod's lifecycle can be drawn afterwards.
struct Timeline {
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Timeline {
    fn open(pod_dir: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(pod_dir.join("timeline.jsonl"))
            .ok()
            .map(std::io::BufWriter::new);
        Self { file }
    }

    fn record(&mut self, event: &str, id: Option<ContainerId>, detail: &str) {
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

    fn flush(&mut self) {
        use std::io::Write;
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
    }
}

struct Running {
    restart_count: i32,
    process: Arc<ContainerProcess>,
    env: Arc<Vec<(String, String)>>,
    pid_file: PathBuf,
    cgroup: Option<Arc<crate::cgroup::ContainerCgroup>>,
}

/// Runs one pod to its end. Returns when the pod is finished (terminal phase and no
/// process left).
pub(crate) async fn run_pod(
    shared: Arc<NodeShared>,
    mut pod: Pod,
    mut commands: mpsc::UnboundedReceiver<PodCommand>,
) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let layout = shared.layout.clone();
    let pod_dir = layout.pod_dir(&ns, &name, &uid);
    let _ = std::fs::create_dir_all(&pod_dir);
    let _ = std::fs::write(pod_dir.join("owner"), format!("{}\n", std::process::id()));

    // The sandbox comes first: its address is part of the status the containers' downward
    // API sees, and every container joins its namespaces.
    let spec = SandboxSpec::from_pod(&pod);
    let network = shared.network_config();
    let state_dir = layout.root().to_path_buf();
    let mut sandbox = match Sandbox::create_queued(spec, network, state_dir).await {
        Ok(sandbox) => sandbox,
        Err(e) => return sandbox_failed(&shared, pod, &pod_dir, &e.to_string()),
    };
    let net = NetStatus {
        pod_ip: sandbox.pod_ip().to_string(),
        host_ip: sandbox.host_ip().to_string(),
    };
    net.apply(pod.status.get_or_insert_with(Default::default));
    // Probes and hooks reach a pod with its own network at its IP; a pod on the host
    // network at loopback, where servers bound to either address answer.
    // `/etc/hostname` shows the pod's hostname, as the kubelet mounts it.
    let etc_hostname = (sandbox.has_own_network() && crate::runtime::isolation_available())
        .then(|| {
            let path = pod_dir.join("etc-hostname");
            let name = SandboxSpec::from_pod(&pod).pod_hostname().to_string();
            std::fs::write(&path, format!("{name}\n"))
                .ok()
                .map(|()| path)
        })
        .flatten();
    // A pod with its own network gets the cluster DNS in /etc/resolv.conf and its own
    // address in /etc/hosts, as the kubelet writes them.
    if sandbox.has_own_network()
        && let IpAddr::V4(ip) = sandbox.pod_ip()
        && let Err(e) = crate::dns::write_pod_files(
            &pod,
            ip,
            shared.network_config().pod_cidr.gateway(),
            &pod_dir,
        )
    {
        tracing::warn!(pod = ?pod.metadata.name, %e, "cannot write the pod's DNS files");
    }
    let probe_ip = if sandbox.has_own_network() {
        sandbox.pod_ip()
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };

    let mut machine = PodMachine::new(pod.clone(), crate::now());
    let (tx, mut inputs) = mpsc::unbounded_channel::<Input>();
    let mut running: HashMap<ContainerId, Running> = HashMap::new();
    let mut hooks: HashMap<(ContainerId, HookKind), AbortHandle> = HashMap::new();
    let mut worker = Worker {
        shared: &shared,
        layout: &layout,
        pod_dir: &pod_dir,
        identity: PodIdentity {
            namespace: ns.clone(),
            name: name.clone(),
            uid: uid.clone(),
        },
        tx,
        sandbox: &sandbox,
        probe_ip,
        etc_hostname,
        image_events: Vec::new(),
        pod_events: Vec::new(),
        pulls: HashMap::new(),
    };
    let mut last_status = None;
    let mut commands_open = true;
    let mut timeline = Timeline::open(&pod_dir);
    let mut recorder = crate::events::Recorder::open(&pod_dir, &pod);
    let mut last_phase = String::new();
    timeline.record(
        "sandbox-queued",
        None,
        &sandbox.queue_time().as_micros().to_string(),
    );
    timeline.record(
        "sandbox-setup",
        None,
        &sandbox.setup_time().as_micros().to_string(),
    );

    loop {
        while let Some(action) = machine.poll_action() {
            // Publish what is visible before a container starts (e.g. `Init:1/2`, or
            // `PodInitializing` between the last sidecar being started and the first
            // regular container), as the kubelet's status sync would have seen it.
            if matches!(action, Action::StartContainer { .. }) {
                publish_if_changed(&shared, &mut pod, &machine, &mut last_status, &net);
                if let Some(status) = &last_status {
                    recorder.handle_status(status);
                }
            }
            record_action(&mut timeline, &action);
            worker.carry_out(action.clone(), &mut machine, &mut running, &mut hooks);
            worker.record_events(&mut recorder);
            if let Action::StartContainer { id, restart_count } = action
                && worker.pulling(id, restart_count)
            {
                // Recorded when the pull ends and the start goes on.
                timeline.record("pulling", Some(id), &restart_count.to_string());
                continue;
            }
            let started = matches!(action, Action::StartContainer { id, restart_count }
                if running.get(&id).is_some_and(|r| r.restart_count == restart_count));
            recorder.handle_action(&action, &machine, started);
        }
        publish_if_changed(&shared, &mut pod, &machine, &mut last_status, &net);
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
        let deadline = machine.poll_timeout().map(to_instant);
        tokio::select! {
            input = inputs.recv() => {
                // The worker holds a sender itself, so the channel never closes.
                let Some(input) = input else { break };
                let now = crate::now();
                match input {
                    Input::Exited { id, restart_count, exit } => {
                        timeline.record("exited", Some(id), &exit.exit_code.to_string());
                        recorder.handle_exited(id, restart_count, &exit);
                        if running.get(&id).is_some_and(|r| r.restart_count == restart_count)
                            && let Some(r) = running.remove(&id)
                        {
                            let _ = std::fs::remove_file(&r.pid_file);
                        }
                        machine.handle_container_exited(id, restart_count, exit, now);
                    }
                    Input::Hook { id, restart_count, hook, result } => {
                        timeline.record("hook-done", Some(id), &format!("{hook:?} {}", result.is_ok()));
                        hooks.remove(&(id, hook));
                        recorder.handle_hook(id, restart_count, hook, &result);
                        machine.handle_hook_result(id, restart_count, hook, result, now);
                    }
                    Input::Probe { id, restart_count, probe, result, output } => {
                        timeline.record("probe", Some(id), &format!("{probe:?} {result:?}"));
                        recorder.handle_probe(id, restart_count, probe, result, &output);
                        machine.handle_probe_result(id, restart_count, probe, result, now);
                    }
                    Input::Pulled { id, restart_count, ensured } => {
                        if !worker.pulling(id, restart_count) {
                            continue;
                        }
                        worker.pulls.remove(&id);
                        timeline.record("pulled", Some(id), &ensured.image.is_ok().to_string());
                        recorder.handle_image_events(id, &ensured.events);
                        let result = match ensured.image {
                            Ok(image) => worker.start(machine.pod(), id, restart_count, Some(image)),
                            Err(f) => Err((f.reason, f.message)),
                        };
                        worker.finish_start(id, restart_count, result, &mut machine, &mut running);
                        worker.record_events(&mut recorder);
                        let started = running.get(&id).is_some_and(|r| r.restart_count == restart_count);
                        recorder.handle_action(&Action::StartContainer { id, restart_count }, &machine, started);
                    }
                }
            }
            command = commands.recv(), if commands_open => {
                match command {
                    Some(PodCommand::Delete { grace_period_seconds }) => {
                        let now = crate::now();
                        if pod.metadata.deletion_timestamp.is_none() {
                            // A graceful deletion bumps the generation (as the machine does).
                            pod.metadata.generation = pod.metadata.generation.map(|g| g.saturating_add(1));
                            pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
                            pod.metadata.deletion_grace_period_seconds = Some(
                                grace_period_seconds
                                    .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                                    .unwrap_or(30),
                            );
                        }
                        machine.handle_delete(grace_period_seconds, now);
                        // The kubelet cancels the pulls of a deleted pod.
                        for (id, restart_count) in worker.cancel_pulls() {
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
                            .and_then(|id| running.get(&id))
                            .filter(|r| r.process.try_wait().is_none())
                            .map(|r| crate::runtime::exec::ExecTarget {
                                process: r.process.clone(),
                                env: r.env.clone(),
                            });
                        let _ = reply.send(target);
                    }
                    None => commands_open = false,
                }
            }
            () = sleep_until(deadline) => {
                machine.handle_timeout(crate::now());
            }
        }
    }
    worker.cancel_pulls();
    drop(worker);
    drop(running);
    let teardown = tokio::task::spawn_blocking(move || sandbox.destroy())
        .await
        .unwrap_or_default();
    timeline.record("sandbox-teardown", None, &teardown.as_micros().to_string());
    crate::cgroup::remove_pod(&uid).await;
    crate::volume::unmount_all(&pod_dir);
    crate::runtime::images::pod_finished(&pod_dir, &uid);
    timeline.record("finished", None, &last_phase);
    timeline.flush();
    let _ = std::fs::remove_file(pod_dir.join("owner"));
    shared.finished(&pod);
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

/// The addresses a pod's status shows.
struct NetStatus {
    pod_ip: String,
    host_ip: String,
}

impl NetStatus {
    fn apply(&self, status: &mut k8s_openapi::api::core::v1::PodStatus) {
        use k8s_openapi::api::core::v1::{HostIP, PodIP};
        status.pod_ip = Some(self.pod_ip.clone());
        status.pod_ips = Some(vec![PodIP {
            ip: self.pod_ip.clone(),
        }]);
        status.host_ip = Some(self.host_ip.clone());
        status.host_ips = Some(vec![HostIP {
            ip: self.host_ip.clone(),
        }]);
    }
}

/// Stores and announces the pod when its status changed since the last publication.
fn publish_if_changed(
    shared: &NodeShared,
    pod: &mut Pod,
    machine: &PodMachine,
    last: &mut Option<k8s_openapi::api::core::v1::PodStatus>,
    net: &NetStatus,
) {
    let status = machine.status();
    if last.as_ref() == Some(&status) {
        return;
    }
    *last = Some(status.clone());
    let mut status = status;
    net.apply(&mut status);
    crate::runtime::images::apply_image_ids(
        pod.metadata.uid.as_deref().unwrap_or_default(),
        &mut status,
    );
    status.qos_class = Some(crate::cgroup::qos_class(pod).into());
    pod.status = Some(status);
    shared.publish(pod);
}

/// Ends a pod whose sandbox could not be made: `Failed`, with the kubelet's event text
/// as the message, and no container started.
fn sandbox_failed(shared: &NodeShared, mut pod: Pod, pod_dir: &Path, error: &str) {
    tracing::warn!(pod = ?pod.metadata.name, %error, "cannot create pod sandbox");
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase = Some("Failed".into());
    status.reason = Some("FailedCreatePodSandBox".into());
    status.message = Some(format!("Failed to create pod sandbox: {error}"));
    shared.publish(&mut pod);
    let _ = std::fs::remove_file(pod_dir.join("owner"));
    shared.finished(&pod);
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Converts an engine deadline into the tokio clock.
fn to_instant(at: Timestamp) -> tokio::time::Instant {
    let now = crate::now();
    let wait = at.duration_since(now);
    let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + wait
}

struct Worker<'a> {
    shared: &'a NodeShared,
    layout: &'a Layout,
    pod_dir: &'a Path,
    identity: PodIdentity,
    tx: mpsc::UnboundedSender<Input>,
    sandbox: &'a Sandbox,
    probe_ip: IpAddr,
    etc_hostname: Option<PathBuf>,
    /// Image Events of the last container start, for the recorder.
    image_events: Vec<(ContainerId, Vec<podrun_images::policy::ImageEvent>)>,
    /// Events about the pod itself (`FailedToRetrieveImagePullSecret`), for the recorder.
    pod_events: Vec<podrun_images::policy::ImageEvent>,
    /// Starts waiting for a pull: the instance and the pull's task.
    pulls: HashMap<ContainerId, (i32, AbortHandle)>,
}

impl Worker<'_> {
    /// Whether instance `restart_count` of `id` waits for a pull.
    fn pulling(&self, id: ContainerId, restart_count: i32) -> bool {
        self.pulls
            .get(&id)
            .is_some_and(|(rc, _)| *rc == restart_count)
    }

    /// Cancels every pull in progress (dropping its future removes its downloads); the
    /// instances that waited for them.
    fn cancel_pulls(&mut self) -> Vec<(ContainerId, i32)> {
        self.pulls
            .drain()
            .map(|(id, (restart_count, task))| {
                task.abort();
                (id, restart_count)
            })
            .collect()
    }

    /// Hands the Events gathered since the last call to the recorder.
    fn record_events(&mut self, recorder: &mut crate::events::Recorder) {
        if !self.pod_events.is_empty() {
            recorder.handle_pod_events(&std::mem::take(&mut self.pod_events));
        }
        for (id, events) in self.image_events.drain(..) {
            recorder.handle_image_events(id, &events);
        }
    }

    /// The first part of a start: for a container run from its image, the kubelet's
    /// `EnsureImageExists`. `None` when a pull runs off the worker (its end arrives as
    /// [`Input::Pulled`]); else the start's result.
    fn begin_start(
        &mut self,
        pod: &Pod,
        id: ContainerId,
        restart_count: i32,
    ) -> Option<Result<Running, (&'static str, String)>> {
        let c = container(pod, id);
        if crate::runtime::images::host_rootfs(pod, &c.name) {
            return Some(self.start(pod, id, restart_count, None));
        }
        let images = match crate::runtime::images::node_images(self.layout.root()) {
            Ok(images) => images,
            Err(e) => return Some(Err(("ErrImagePull", e))),
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let secret = |name: &str| self.shared.config_data("Secret", &ns, name);
        let (keyring, missing) = crate::runtime::images::keyring(pod, &secret);
        if !missing.is_empty() {
            self.pod_events
                .push(podrun_images::policy::missing_pull_secrets(&missing));
        }
        match images.begin(pod, c, &keyring) {
            crate::runtime::images::Begin::Done(ensured) => {
                self.image_events.push((id, ensured.events));
                Some(match ensured.image {
                    Ok(image) => self.start(pod, id, restart_count, Some(image)),
                    Err(f) => Err((f.reason, f.message)),
                })
            }
            crate::runtime::images::Begin::Pull { events, pull } => {
                self.image_events.push((id, events));
                let tx = self.tx.clone();
                let task = tokio::spawn(async move {
                    let ensured = Box::new(pull.run().await);
                    let _ = tx.send(Input::Pulled {
                        id,
                        restart_count,
                        ensured,
                    });
                });
                self.pulls.insert(id, (restart_count, task.abort_handle()));
                None
            }
        }
    }

    /// Reports a start's result to the machine and watches the process it started.
    fn finish_start(
        &mut self,
        id: ContainerId,
        restart_count: i32,
        result: Result<Running, (&'static str, String)>,
        machine: &mut PodMachine,
        running: &mut HashMap<ContainerId, Running>,
    ) {
        let now = crate::now();
        match result {
            Ok(r) => {
                let process = r.process.clone();
                let cgroup = r.cgroup.clone();
                let tx = self.tx.clone();
                let message_file = self.layout.termination_log(
                    self.pod_dir,
                    &container(machine.pod(), id).name,
                    restart_count,
                );
                tokio::spawn(async move {
                    let info = process.wait().await;
                    let message = std::fs::read_to_string(&message_file)
                        .ok()
                        .filter(|m| !m.is_empty())
                        .map(|m| truncate(m, 4096));
                    let _ = tx.send(Input::Exited {
                        id,
                        restart_count,
                        exit: ExitStatus {
                            exit_code: info.exit_code,
                            signal: info.signal,
                            oom_killed: cgroup.as_ref().is_some_and(|c| c.oom_killed()),
                            message,
                        },
                    });
                });
                running.insert(id, r);
                machine.handle_container_started(id, restart_count, now);
            }
            Err((reason, message)) => {
                machine.handle_container_start_failed(id, restart_count, reason, &message, now);
            }
        }
    }

    fn carry_out(
        &mut self,
        action: Action,
        machine: &mut PodMachine,
        running: &mut HashMap<ContainerId, Running>,
        hooks: &mut HashMap<(ContainerId, HookKind), AbortHandle>,
    ) {
        match action {
            Action::StartContainer { id, restart_count } => {
                if let Some(result) = self.begin_start(machine.pod(), id, restart_count) {
                    self.finish_start(id, restart_count, result, machine, running);
                }
            }
            Action::RunHook {
                id,
                restart_count,
                hook,
            } => {
                let Some(r) = running
                    .get(&id)
                    .filter(|r| r.restart_count == restart_count)
                else {
                    machine.handle_hook_result(
                        id,
                        restart_count,
                        hook,
                        Err("container is not running".into()),
                        crate::now(),
                    );
                    return;
                };
                let c = container(machine.pod(), id);
                let handler = c.lifecycle.as_ref().and_then(|l| match hook {
                    HookKind::PostStart => l.post_start.clone(),
                    HookKind::PreStop => l.pre_stop.clone(),
                });
                let Some(handler) = handler else {
                    machine.handle_hook_result(id, restart_count, hook, Ok(()), crate::now());
                    return;
                };
                let process = r.process.clone();
                let env = r.env.clone();
                let ports = c.ports.clone().unwrap_or_default();
                let tx = self.tx.clone();
                let probe_ip = self.probe_ip;
                let task = tokio::spawn(async move {
                    let outcome =
                        handler::run_hook_with_ports(&handler, &process, &env, probe_ip, &ports)
                            .await;
                    let result = match outcome {
                        HandlerOutcome::Success => Ok(()),
                        HandlerOutcome::Failure(msg) => Err(msg),
                    };
                    let _ = tx.send(Input::Hook {
                        id,
                        restart_count,
                        hook,
                        result,
                    });
                });
                hooks.insert((id, hook), task.abort_handle());
            }
            Action::CancelHook { id, hook, .. } => {
                if let Some(task) = hooks.remove(&(id, hook)) {
                    task.abort();
                }
            }
            Action::RunProbe {
                id,
                restart_count,
                probe,
            } => {
                let c = container(machine.pod(), id);
                let spec = match probe {
                    ProbeKind::Startup => c.startup_probe.clone(),
                    ProbeKind::Readiness => c.readiness_probe.clone(),
                    ProbeKind::Liveness => c.liveness_probe.clone(),
                };
                let (Some(spec), Some(r)) = (
                    spec,
                    running
                        .get(&id)
                        .filter(|r| r.restart_count == restart_count),
                ) else {
                    machine.handle_probe_result(
                        id,
                        restart_count,
                        probe,
                        ProbeResult::Failure,
                        crate::now(),
                    );
                    return;
                };
                let process = r.process.clone();
                let env = r.env.clone();
                let ports = c.ports.clone().unwrap_or_default();
                let tx = self.tx.clone();
                let probe_ip = self.probe_ip;
                tokio::spawn(async move {
                    let outcome =
                        handler::run_probe_with_ports(&spec, &process, &env, probe_ip, &ports)
                            .await;
                    let (result, output) = match outcome {
                        HandlerOutcome::Success => (ProbeResult::Success, String::new()),
                        HandlerOutcome::Failure(msg) => {
                            tracing::debug!(?id, ?probe, %msg, "probe failed");
                            (ProbeResult::Failure, msg)
                        }
                    };
                    let _ = tx.send(Input::Probe {
                        id,
                        restart_count,
                        probe,
                        result,
                        output,
                    });
                });
            }
            Action::Signal {
                id,
                restart_count,
                signal,
            } => {
                if let Some(r) = running
                    .get(&id)
                    .filter(|r| r.restart_count == restart_count)
                {
                    let sig = match signal {
                        StopSignal::Term => nix::sys::signal::Signal::SIGTERM,
                        StopSignal::Kill => nix::sys::signal::Signal::SIGKILL,
                    };
                    if let Err(e) = r.process.signal(sig) {
                        tracing::debug!(?id, %e, "signal failed (process already gone)");
                    }
                }
            }
        }
    }

    /// A `fileKeyRef` lookup: `name` is `<volumeName>/<path>` inside the pod's emptyDir
    /// volume, read when the container starts (an earlier init container may have
    /// written it). [`podrun_model::ALL_KEYS`] lists the file's keys.
    fn env_file_value(&self, name: &str, key: &str) -> Option<String> {
        use std::io::Read;
        let (volume, path) = name.split_once('/')?;
        let file = self.layout.empty_dir(self.pod_dir, volume).join(path);
        let mut text = String::new();
        std::fs::File::open(file)
            .ok()?
            .take(podrun_model::ENV_FILE_MAX_BYTES as u64)
            .read_to_string(&mut text)
            .ok()?;
        let entries = podrun_model::parse_env_file(&text);
        if key == podrun_model::ALL_KEYS {
            let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
            return Some(keys.join("\n"));
        }
        entries.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Creates and starts one container instance, from `from_image` unless it runs on the
    /// host's file system. Errors carry the kubelet's waiting reason and a message.
    fn start(
        &mut self,
        pod: &Pod,
        id: ContainerId,
        restart_count: i32,
        from_image: Option<podrun_images::EnsuredImage>,
    ) -> Result<Running, (&'static str, String)> {
        let c = container(pod, id);
        let image = c.image.clone().unwrap_or_default();
        let lookup = |kind: &str, name: &str, key: &str| {
            if kind == podrun_model::ENV_FILE_KIND {
                self.env_file_value(name, key)
            } else {
                self.shared.lookup(pod, kind, name, key)
            }
        };
        let env = podrun_model::container_env(pod, c, &lookup)
            .map_err(|e| ("CreateContainerConfigError", e))?;
        let argv = podrun_model::container_argv(c, &env);
        let host_fs = crate::runtime::images::host_rootfs(pod, &c.name);
        if host_fs && c.command.as_ref().is_none_or(|cmd| cmd.is_empty()) {
            return Err((
                "CreateContainerConfigError",
                format!(
                    "container {:?} has no command: it is listed in the pod's {} annotation, so it \
                     runs as a process on the host filesystem without image {image:?}; set `command`",
                    c.name,
                    crate::runtime::images::HOST_ROOTFS_ANNOTATION,
                ),
            ));
        }
        let image_user = crate::security::image_user_of(from_image.as_ref());
        let prepared = crate::security::prepare(pod, c, &image_user)
            .map_err(|e| ("CreateContainerConfigError", e))?;
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        let net_admin = c
            .security_context
            .as_ref()
            .and_then(|s| s.capabilities.as_ref()?.add.as_ref())
            .is_some_and(|add| {
                add.iter()
                    .any(|cap| cap == "NET_ADMIN" || cap == "CAP_NET_ADMIN")
            });
        if net_admin && !host_network && !crate::pod_network_available() {
            // Such a container (e.g. a mesh's traffic-capture init step) would change the
            // host's network instead of the pod's: refuse rather than downgrade.
            return Err((
                "CreateContainerConfigError",
                format!(
                    "container {:?} adds NET_ADMIN for the pod's own network namespace, \
                     which this node cannot create; it would act on the host's network",
                    c.name
                ),
            ));
        }
        let mut mounts = self
            .mounts(pod, c)
            .map_err(|e| ("CreateContainerConfigError", e))?;
        if let Some(path) = &self.etc_hostname {
            mounts.push(BindMount {
                source: path.clone(),
                target: PathBuf::from("/etc/hostname"),
                read_only: true,
            });
        }
        mounts.extend(crate::dns::pod_file_mounts(self.pod_dir).into_iter().map(
            |(source, target)| BindMount {
                source,
                target,
                read_only: false,
            },
        ));
        let log_path = self.layout.log_file(self.pod_dir, &c.name, restart_count);
        let message_host = self
            .layout
            .termination_log(self.pod_dir, &c.name, restart_count);
        let _ = std::fs::create_dir_all(self.pod_dir.join(&c.name));
        let _ = std::fs::write(&message_host, b"");
        let message_path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        let mut launch = ContainerLaunch {
            pod: self.identity.clone(),
            container_name: c.name.clone(),
            restart_count,
            argv,
            env,
            working_dir: c.working_dir.clone().map(PathBuf::from),
            mounts,
            log_path,
            termination_message: Some((message_host, PathBuf::from(message_path))),
            pod_shm: Some(self.pod_dir.join("shm")),
            // A hostNetwork pod keeps the host's name, as in Kubernetes; otherwise the
            // sandbox's UTS namespace already carries it.
            hostname: (!pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false))
            .then(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.hostname.clone())
                    .unwrap_or_else(|| self.identity.name.clone())
            }),
            ..Default::default()
        };
        prepared.apply(&mut launch);
        if let Some(image) = &from_image {
            self.apply_image(pod, c, image, restart_count, &mut launch)?;
        }
        let process = ContainerProcess::spawn_in(&launch, self.sandbox.namespaces())
            .map_err(|e| ("RunContainerError", e.to_string()))?;
        let pid_file = self.layout.pid_file(self.pod_dir, &c.name, restart_count);
        let _ = instance::write_pid_record(&pid_file, process.pid());
        Ok(Running {
            restart_count,
            process: Arc::new(process),
            // The process's own environment (the image's included): exec probes, hooks
            // and `kubectl exec` run with it, as the CRI runs them with the process spec.
            env: Arc::new(launch.env),
            pid_file,
            cgroup: prepared.cgroup.map(Arc::new),
        })
    }

    /// Makes `launch` run from `image`: its argv, env, working directory, user and root.
    fn apply_image(
        &self,
        pod: &Pod,
        c: &Container,
        image: &podrun_images::EnsuredImage,
        restart_count: i32,
        launch: &mut ContainerLaunch,
    ) -> Result<(), (&'static str, String)> {
        let part = |command: bool, args: bool| {
            let mut only = c.clone();
            if !command {
                only.command = None;
            }
            if !args {
                only.args = None;
            }
            podrun_model::container_argv(&only, &launch.env)
        };
        let hostname = pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| self.identity.name.clone());
        let sc = c.security_context.clone().unwrap_or_default();
        let psc = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let id = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
        let mut extra_groups: Vec<u32> = psc
            .supplemental_groups
            .iter()
            .flatten()
            .filter_map(|g| u32::try_from(*g).ok())
            .collect();
        extra_groups.extend(id(psc.fs_group));
        let run_as = crate::runtime::images::RunAs {
            user: id(sc.run_as_user.or(psc.run_as_user)),
            group: id(sc.run_as_group.or(psc.run_as_group)),
            extra_groups,
        };
        let p = crate::runtime::images::image_process(
            image,
            c,
            &part(true, false),
            &part(false, true),
            &hostname,
            &launch.env,
            &run_as,
        )
        .map_err(|e| ("CreateContainerError", e))?;
        launch.argv = p.argv;
        launch.env = p.env;
        launch.working_dir = Some(p.working_dir);
        if launch.credentials.is_some() {
            launch.credentials = Some(crate::security::Credentials {
                uid: p.user.uid,
                gid: p.user.gid,
                groups: p.user.groups,
            });
        }
        crate::runtime::images::record_started(&self.identity.uid, &c.name, image);
        launch.image = Some(crate::runtime::images::instance_root(
            self.pod_dir,
            &c.name,
            restart_count,
            image,
        ));
        crate::runtime::image_root::apply_image_config(launch, image);
        Ok(())
    }

    /// The container's volume mounts as host directories.
    fn mounts(&self, pod: &Pod, c: &Container) -> Result<Vec<BindMount>, String> {
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let Some(v) = volumes.iter().find(|v| v.name == m.name) else {
                return Err(format!("volume {:?} not found", m.name));
            };
            let mut forced_read_only = false;
            let mut source = if crate::volume::is_managed(v) {
                let p = crate::volume::prepare_for(self.shared, self.pod_dir, pod, v)?;
                forced_read_only = p.force_read_only;
                p.path
            } else if let Some(hp) = &v.host_path {
                let path = PathBuf::from(&hp.path);
                match hp.type_.as_deref().unwrap_or("") {
                    "DirectoryOrCreate" => std::fs::create_dir_all(&path)
                        .map_err(|e| format!("hostPath {:?}: {e}", hp.path))?,
                    "FileOrCreate" if !path.exists() => std::fs::write(&path, b"")
                        .map_err(|e| format!("hostPath {:?}: {e}", hp.path))?,
                    "Directory" if !path.is_dir() => {
                        return Err(format!(
                            "hostPath type check failed: {} is not a directory",
                            hp.path
                        ));
                    }
                    "File" if !path.is_file() => {
                        return Err(format!(
                            "hostPath type check failed: {} is not a file",
                            hp.path
                        ));
                    }
                    _ if !path.exists() => {
                        return Err(format!("hostPath {}: no such file or directory", hp.path));
                    }
                    _ => {}
                }
                path
            } else {
                return Err(format!(
                    "volume {:?}: only emptyDir and hostPath volumes can be mounted by this node",
                    v.name
                ));
            };
            if let Some(sub) = m.sub_path.as_ref().filter(|s| !s.is_empty()) {
                source = crate::volume::sub_path(&source, sub)?;
            }
            out.push(BindMount {
                source,
                target: PathBuf::from(&m.mount_path),
                read_only: m.read_only.unwrap_or(false) || forced_read_only,
            });
        }
        Ok(out)
    }
}

fn container(pod: &Pod, id: ContainerId) -> &Container {
    let spec = pod.spec.as_ref();
    let c = match id {
        ContainerId::Init(i) => spec.and_then(|s| s.init_containers.as_ref()?.get(i)),
        ContainerId::Regular(i) => spec.and_then(|s| s.containers.get(i)),
    };
    // Invariant: the machine only names containers of the spec it was built from.
    c.expect("container id from the machine exists in the pod spec")
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

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
