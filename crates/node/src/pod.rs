//! The pod worker's production runtime: what [`crate::worker`]'s loop asks of a
//! [`PodRuntime`], carried out with real processes. The pod's sandbox comes first;
//! container instances are processes in it (their exits arrive from pidfds, so they are
//! seen within milliseconds), probes and hooks run against them, and images are pulled
//! off the worker.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
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
use crate::worker::{Input, PodRuntime, Timeline};
use crate::{NodeShared, PodCommand};

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
    commands: mpsc::UnboundedReceiver<PodCommand>,
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
    let sandbox = match Sandbox::create_queued(spec, network, state_dir).await {
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
    // The cluster DNS learns the pod's address before the pod can ask it anything.
    let hook = shared
        .on_pod_address
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if sandbox.has_own_network()
        && let IpAddr::V4(ip) = sandbox.pod_ip()
        && let Some(hook) = hook
    {
        let _ = tokio::task::spawn_blocking(move || hook(ip)).await;
    }
    let probe_ip = if sandbox.has_own_network() {
        sandbox.pod_ip()
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };

    let (tx, inputs) = mpsc::unbounded_channel();
    let mut timeline = Timeline::open(&pod_dir);
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
    let recorder = crate::events::Recorder::open(&pod_dir, &pod);
    let runtime = ProcessRuntime {
        shared: shared.clone(),
        layout,
        pod_dir,
        identity: PodIdentity {
            namespace: ns,
            name,
            uid,
        },
        tx,
        sandbox,
        net,
        probe_ip,
        etc_hostname,
        running: HashMap::new(),
        hooks: HashMap::new(),
        image_events: Vec::new(),
        pod_events: Vec::new(),
        pulls: HashMap::new(),
    };
    let outlet = shared.outlet();
    let worker = crate::worker::Worker {
        pod,
        runtime,
        inputs,
        commands,
        outlet: outlet.clone(),
        timeline,
        recorder,
    };
    let pod = worker.run().await;
    shared.finished(&outlet, &pod);
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

/// Ends a pod whose sandbox could not be made: `Failed`, with the kubelet's event text
/// as the message, and no container started.
fn sandbox_failed(shared: &NodeShared, mut pod: Pod, pod_dir: &Path, error: &str) {
    tracing::warn!(pod = ?pod.metadata.name, %error, "cannot create pod sandbox");
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase = Some("Failed".into());
    status.reason = Some("FailedCreatePodSandBox".into());
    status.message = Some(format!("Failed to create pod sandbox: {error}"));
    let outlet = shared.outlet();
    outlet.publish(&mut pod);
    let _ = std::fs::remove_file(pod_dir.join("owner"));
    shared.finished(&outlet, &pod);
}

/// The production [`PodRuntime`]: container instances as real processes in the pod's
/// sandbox, probes and hooks against them, images pulled off the worker.
struct ProcessRuntime {
    shared: Arc<NodeShared>,
    layout: Layout,
    pod_dir: PathBuf,
    identity: PodIdentity,
    tx: mpsc::UnboundedSender<Input<Box<crate::runtime::images::Ensured>>>,
    sandbox: Sandbox,
    net: NetStatus,
    probe_ip: IpAddr,
    etc_hostname: Option<PathBuf>,
    /// The container instances with a process.
    running: HashMap<ContainerId, Running>,
    /// Hooks in progress.
    hooks: HashMap<(ContainerId, HookKind), AbortHandle>,
    /// Image Events of the last container start, for the recorder.
    image_events: Vec<(ContainerId, Vec<podrun_images::policy::ImageEvent>)>,
    /// Events about the pod itself (`FailedToRetrieveImagePullSecret`), for the recorder.
    pod_events: Vec<podrun_images::policy::ImageEvent>,
    /// Starts waiting for a pull: the instance and the pull's task.
    pulls: HashMap<ContainerId, (i32, AbortHandle)>,
}

// === impl PodRuntime for ProcessRuntime ===

impl PodRuntime for ProcessRuntime {
    type Pulled = Box<crate::runtime::images::Ensured>;

    fn carry_out(&mut self, action: Action, machine: &mut PodMachine, now: Timestamp) {
        self.carry_out_action(action, machine, now);
    }

    fn pulling(&self, id: ContainerId, restart_count: i32) -> bool {
        self.pulls
            .get(&id)
            .is_some_and(|(rc, _)| *rc == restart_count)
    }

    fn runs(&self, id: ContainerId, restart_count: i32) -> bool {
        self.running
            .get(&id)
            .is_some_and(|r| r.restart_count == restart_count)
    }

    fn handle_pulled(
        &mut self,
        id: ContainerId,
        restart_count: i32,
        ensured: Self::Pulled,
        machine: &mut PodMachine,
        timeline: &mut Timeline,
        recorder: &mut crate::events::Recorder,
        now: Timestamp,
    ) {
        self.pulls.remove(&id);
        timeline.record("pulled", Some(id), &ensured.image.is_ok().to_string());
        recorder.handle_image_events(id, &ensured.events);
        let result = match ensured.image {
            Ok(image) => self.start(machine.pod(), id, restart_count, Some(image)),
            Err(f) => Err((f.reason, f.message)),
        };
        self.finish_start(id, restart_count, result, machine, now);
    }

    fn handle_exited(&mut self, id: ContainerId, restart_count: i32) {
        if self.runs(id, restart_count)
            && let Some(r) = self.running.remove(&id)
        {
            let _ = std::fs::remove_file(&r.pid_file);
        }
    }

    fn handle_hook_done(&mut self, id: ContainerId, hook: HookKind) {
        self.hooks.remove(&(id, hook));
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

    fn exec_target(&self, id: ContainerId) -> Option<crate::runtime::exec::ExecTarget> {
        self.running
            .get(&id)
            .filter(|r| r.process.try_wait().is_none())
            .map(|r| crate::runtime::exec::ExecTarget {
                process: r.process.clone(),
                env: r.env.clone(),
            })
    }

    fn record_events(&mut self, recorder: &mut crate::events::Recorder) {
        if !self.pod_events.is_empty() {
            recorder.handle_pod_events(&std::mem::take(&mut self.pod_events));
        }
        for (id, events) in self.image_events.drain(..) {
            recorder.handle_image_events(id, &events);
        }
    }

    fn decorate(&self, pod: &Pod, status: &mut PodStatus) {
        self.net.apply(status);
        crate::runtime::images::apply_image_ids(
            pod.metadata.uid.as_deref().unwrap_or_default(),
            status,
        );
    }

    async fn teardown(self) -> Duration {
        let ProcessRuntime {
            mut sandbox,
            running,
            hooks,
            pod_dir,
            identity,
            ..
        } = self;
        drop(hooks);
        drop(running);
        let teardown = tokio::task::spawn_blocking(move || sandbox.destroy())
            .await
            .unwrap_or_default();
        crate::cgroup::remove_pod(&identity.uid).await;
        crate::volume::unmount_all(&pod_dir);
        crate::runtime::images::pod_finished(&pod_dir, &identity.uid);
        let _ = std::fs::remove_file(pod_dir.join("owner"));
        teardown
    }
}

impl ProcessRuntime {
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
                        pulled: ensured,
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
        now: Timestamp,
    ) {
        match result {
            Ok(r) => {
                let process = r.process.clone();
                let cgroup = r.cgroup.clone();
                let tx = self.tx.clone();
                let message_file = self.layout.termination_log(
                    &self.pod_dir,
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
                self.running.insert(id, r);
                machine.handle_container_started(id, restart_count, now);
            }
            Err((reason, message)) => {
                machine.handle_container_start_failed(id, restart_count, reason, &message, now);
            }
        }
    }

    fn carry_out_action(&mut self, action: Action, machine: &mut PodMachine, now: Timestamp) {
        match action {
            Action::StartContainer { id, restart_count } => {
                if let Some(result) = self.begin_start(machine.pod(), id, restart_count) {
                    self.finish_start(id, restart_count, result, machine, now);
                }
            }
            Action::RunHook {
                id,
                restart_count,
                hook,
            } => {
                let Some(r) = self
                    .running
                    .get(&id)
                    .filter(|r| r.restart_count == restart_count)
                else {
                    machine.handle_hook_result(
                        id,
                        restart_count,
                        hook,
                        Err("container is not running".into()),
                        now,
                    );
                    return;
                };
                let c = container(machine.pod(), id);
                let handler = c.lifecycle.as_ref().and_then(|l| match hook {
                    HookKind::PostStart => l.post_start.clone(),
                    HookKind::PreStop => l.pre_stop.clone(),
                });
                let Some(handler) = handler else {
                    machine.handle_hook_result(id, restart_count, hook, Ok(()), now);
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
                self.hooks.insert((id, hook), task.abort_handle());
            }
            Action::CancelHook { id, hook, .. } => {
                if let Some(task) = self.hooks.remove(&(id, hook)) {
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
                    self.running
                        .get(&id)
                        .filter(|r| r.restart_count == restart_count),
                ) else {
                    machine.handle_probe_result(
                        id,
                        restart_count,
                        probe,
                        ProbeResult::Failure,
                        now,
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
                if let Some(r) = self
                    .running
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
        let file = self.layout.empty_dir(&self.pod_dir, volume).join(path);
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
        mounts.extend(crate::dns::pod_file_mounts(&self.pod_dir).into_iter().map(
            |(source, target)| BindMount {
                source,
                target,
                read_only: false,
            },
        ));
        let log_path = self.layout.log_file(&self.pod_dir, &c.name, restart_count);
        let message_host = self
            .layout
            .termination_log(&self.pod_dir, &c.name, restart_count);
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
        let pid_file = self.layout.pid_file(&self.pod_dir, &c.name, restart_count);
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
            &self.pod_dir,
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
                let p = crate::volume::prepare_for(&self.shared, &self.pod_dir, pod, v)?;
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
