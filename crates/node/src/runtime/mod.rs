//! Container processes: namespaces, mounts, logs and exit events.
//!
//! A container is a real Linux process on the host file system (`image` is only recorded).
//! As root each container gets its own PID namespace — its main process is PID 1 there, as in
//! any Kubernetes container, so SIGKILL of it ends every process of the container and a
//! SIGTERM is only acted on if the program handles it — and its own mount namespace with a
//! private view of the host root where volumes are bind-mounted (see [`rootfs`]). Without root
//! a container is only a new session with `PR_SET_PDEATHSIG`, and [`isolation_available`]
//! says so.
//!
//! Exits are learnt from the pidfd becoming readable; output goes to a CRI-format log file.

mod child;
pub mod exec;
pub mod image_root;
pub mod images;
pub mod log;
mod process;
pub mod rootfs;

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::watch;

use child::{ChildPlan, ChildReport, RawOp, Stage};
/// The namespaces of a pod's sandbox its containers join.
pub use podrun_net::PodNamespaces;
/// Whether containers can get namespaces of their own (podrun runs as root).
pub use podrun_process::isolation_available;
use process::ProcessHandle;
use rootfs::{MountOp, PlannedBind, ROOTFS_MOUNTPOINT};

/// `PATH` used for the executable lookup when the container's env has none (runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Cap on the output an exec probe/hook keeps, like the kubelet's (10 KiB).
pub const MAX_EXEC_OUTPUT: usize = 10 * 1024;

/// The pod a container belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
}

/// A volume: a host directory (or file) bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host path.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: PathBuf,
    /// Mount read-only.
    pub read_only: bool,
}

/// Everything needed to start one container instance. The default is an empty launch
/// (no command) that keeps today's behaviour for every optional setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerLaunch {
    /// Owning pod.
    pub pod: PodIdentity,
    /// Container name.
    pub container_name: String,
    /// Restart count of this instance.
    pub restart_count: i32,
    /// Resolved command + args (non-empty).
    pub argv: Vec<String>,
    /// Resolved environment, in order.
    pub env: Vec<(String, String)>,
    /// `workingDir`; the process starts in `/` without it.
    pub working_dir: Option<PathBuf>,
    /// Volume mounts.
    pub mounts: Vec<BindMount>,
    /// CRI-format log file to create for this instance.
    pub log_path: PathBuf,
    /// Host file and path inside the container of the termination message.
    pub termination_message: Option<(PathBuf, PathBuf)>,
    /// Hostname (own UTS namespace) when set.
    pub hostname: Option<String>,
    /// uid, gid and supplementary groups to run as; `None` keeps podrun's own.
    pub credentials: Option<crate::security::Credentials>,
    /// Capability sets; `None` keeps podrun's own.
    pub capabilities: Option<crate::security::CapabilitySets>,
    /// Set `PR_SET_NO_NEW_PRIVS` before exec.
    pub no_new_privs: bool,
    /// Make the container's root view read-only (volumes stay as mounted).
    pub read_only_rootfs: bool,
    /// cgroup directories (one per hierarchy) the process joins before exec.
    pub cgroup: Vec<PathBuf>,
    /// Run from an image: the root is an overlay of its layers with this instance's
    /// writable layer instead of the host's file system. Needs root.
    pub image: Option<image_root::ImageRoot>,
    /// Container paths of the image's `Volumes`: each gets a writable directory of its own,
    /// filled from the image, unless a volume is mounted at the same path.
    pub image_volumes: Vec<PathBuf>,
    /// The image's `StopSignal`: sent instead of SIGTERM to stop the container.
    pub stop_signal: Option<i32>,
    /// `privileged: true`: `/proc` and `/sys` paths are not masked and `/sys` is writable.
    pub privileged: bool,
    /// The pod's `/dev/shm`, shared by its containers as the sandbox's is: a tmpfs mounted
    /// at this host path on first use (unmounted with the pod's other mounts). `None` gives
    /// the container one of its own.
    pub pod_shm: Option<PathBuf>,
}

/// How a container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code; `128 + n` when killed by signal `n`.
    pub exit_code: i32,
    /// The terminating signal, if any.
    pub signal: Option<i32>,
    /// When podrun learnt of the exit.
    pub finished_at: SystemTime,
}

/// Why a container (or an exec'd command) could not be started. The text is what the
/// container's `RunContainerError` message shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    /// `argv` was empty.
    #[error("no command specified")]
    NoCommand,
    /// An argument or env entry contains a NUL byte.
    #[error("invalid {what}: contains a NUL byte")]
    NulByte {
        /// Which field.
        what: String,
    },
    /// The command name was not found in `$PATH`.
    #[error("exec: \"{name}\": executable file not found in $PATH")]
    NotFound {
        /// The name looked up.
        name: String,
    },
    /// `execve` failed.
    #[error("exec: \"{name}\": {reason}")]
    Exec {
        /// The command.
        name: String,
        /// Why.
        reason: String,
    },
    /// The working directory is unusable.
    #[error("chdir to cwd (\"{dir}\") failed: {reason}")]
    WorkingDir {
        /// The directory.
        dir: String,
        /// Why.
        reason: String,
    },
    /// The container's root could not be planned.
    #[error(transparent)]
    Plan(#[from] rootfs::PlanError),
    /// A mount failed.
    #[error("error {what}: {reason}")]
    Mount {
        /// What was being mounted.
        what: String,
        /// Why.
        reason: String,
    },
    /// Volume mounts were requested but this process cannot isolate (not root).
    #[error(
        "volume mounts need isolation, which needs root: refusing to run with host paths instead"
    )]
    IsolationUnavailable,
    /// The container runs from an image, which needs root.
    #[error(
        "running a container from an image needs root (podrun runs as uid {uid}); run podrun \
         as root or list the container in podrun.io/host-rootfs"
    )]
    ImageNeedsRoot {
        /// podrun's effective uid.
        uid: u32,
    },
    /// No tokio runtime to deliver exit events.
    #[error("spawning a container needs a tokio runtime")]
    NoRuntime,
    /// Any other setup step.
    #[error("{step}: {reason}")]
    Setup {
        /// The step.
        step: String,
        /// Why.
        reason: String,
    },
}

/// A running (or exited, not yet dropped) container instance.
///
/// Dropping it while the process still runs kills the container with SIGKILL (the exit is
/// still reaped in the background), so a container can never outlive its handle unseen.
#[derive(Debug)]
pub struct ContainerProcess {
    proc: ProcessHandle,
    isolated: bool,
    ns_flags: libc::c_int,
    /// In a PID namespace shared with other containers: the main process is not that
    /// namespace's init, so killing it would not end its children; SIGKILL goes to its
    /// process group as well.
    shared_pid: bool,
    /// The container's user, capabilities and cgroups: exec probes and hooks run with
    /// them too, as the CRI's ExecSync runs a command with the container's process spec.
    exec_security: Option<child::ChildSecurity>,
    exec_cgroup: Vec<PathBuf>,
    working_dir: Option<PathBuf>,
    logs_rx: watch::Receiver<bool>,
    started_at: SystemTime,
    name: String,
    /// The image's `StopSignal`, sent for SIGTERM.
    stop_signal: Option<i32>,
}

/// Output of a command run with [`exec_in`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code (`128 + n` on signal `n`).
    pub exit_code: i32,
    /// stdout and stderr interleaved, at most [`MAX_EXEC_OUTPUT`] bytes.
    pub output: Vec<u8>,
}

impl ExecOutput {
    /// The output as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

/// Why [`exec_in`] could not produce an exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The command could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// It ran past its timeout and was killed.
    #[error("command \"{command}\" timed out")]
    Timeout {
        /// The command line.
        command: String,
    },
    /// The container is no longer running.
    #[error("container is not running")]
    NotRunning,
}

// === impl ContainerProcess ===

impl ContainerProcess {
    /// Spawns the container: returns once its command has been exec'd (or fails with the
    /// reason). Must be called inside a tokio runtime, which then delivers exit events and
    /// runs the log writers.
    pub fn spawn(launch: &ContainerLaunch) -> Result<ContainerProcess, SpawnError> {
        Self::spawn_in(launch, PodNamespaces::default())
    }

    /// [`ContainerProcess::spawn`] inside a pod sandbox: the container joins the pod's
    /// network, UTS and IPC namespaces (and its PID namespace when shared) before exec.
    /// Joining needs root; without it only an empty `pod` is accepted.
    pub fn spawn_in(
        launch: &ContainerLaunch,
        pod: PodNamespaces<'_>,
    ) -> Result<ContainerProcess, SpawnError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SpawnError::NoRuntime);
        }
        let isolated = isolation_available();
        if !isolated && launch.image.is_some() {
            return Err(SpawnError::ImageNeedsRoot {
                uid: rustix::process::geteuid().as_raw(),
            });
        }
        if !isolated && !launch.mounts.is_empty() {
            return Err(SpawnError::IsolationUnavailable);
        }
        let mut env = launch.env.clone();
        if !env.iter().any(|(k, _)| k == "HOSTNAME") {
            let host = launch
                .hostname
                .clone()
                .unwrap_or_else(|| launch.pod.name.clone());
            env.push(("HOSTNAME".into(), host));
        }
        let (ops, op_names) = if isolated {
            let mut binds: Vec<PlannedBind> = launch
                .mounts
                .iter()
                .map(|m| PlannedBind {
                    source: m.source.clone(),
                    target: m.target.clone(),
                    read_only: m.read_only,
                })
                .collect();
            if let Some((host_file, in_container)) = &launch.termination_message {
                ensure_file(host_file)?;
                binds.push(PlannedBind {
                    source: host_file.clone(),
                    target: in_container.clone(),
                    read_only: false,
                });
            }
            ensure_rootfs_mountpoint()?;
            let plan = match &launch.image {
                Some(image) => {
                    let empty_lower = prepare_image_dirs(image)?;
                    image_root::pod_file_modes(&mut binds, launch.read_only_rootfs);
                    let mounted: Vec<PathBuf> = binds.iter().map(|b| b.target.clone()).collect();
                    let volumes_dir = empty_lower.with_file_name("volumes");
                    binds.extend(
                        image_root::prepare_image_volumes(
                            image,
                            &launch.image_volumes,
                            &mounted,
                            &volumes_dir,
                        )
                        .map_err(|e| setup("fill the image's volumes", e))?,
                    );
                    image_root::plan_image_rootfs(
                        &image_root::LayerStack::new(&image.layers),
                        image,
                        &empty_lower,
                        &binds,
                        launch.working_dir.as_deref(),
                        launch.read_only_rootfs,
                        launch.privileged,
                    )?
                }
                None => {
                    let plan = rootfs::plan_rootfs(&rootfs::RealHost, &binds)?;
                    if launch.read_only_rootfs {
                        rootfs::read_only_root(plan, binds.len())
                    } else {
                        plan
                    }
                }
            };
            let mut plan = plan;
            if let Some(shm) = &launch.pod_shm {
                ensure_pod_shm(shm)?;
                rootfs::use_pod_shm(&mut plan, shm);
            }
            raw_ops(&plan)?
        } else {
            (Vec::new(), Vec::new())
        };
        let joins_pod =
            pod.net.is_some() || pod.uts.is_some() || pod.ipc.is_some() || pod.pid_init.is_some();
        if !isolated && joins_pod {
            return Err(setup_err(
                "join pod namespaces",
                "joining a pod sandbox needs root",
            ));
        }
        let hostname = match (&launch.hostname, isolated, pod.uts) {
            (Some(h), true, None) => Some(cstring(h, "hostname")?),
            _ => None,
        };
        let shared_pid = pod.pid_init.is_some();
        // `ns_flags`: the namespaces created by the clone itself. `exec_flags`: every
        // namespace the container is in that exec probes and hooks must join too.
        let mut ns_flags = 0;
        let mut exec_flags = 0;
        if isolated {
            ns_flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS;
            if hostname.is_some() {
                ns_flags |= libc::CLONE_NEWUTS;
            }
            exec_flags = ns_flags;
            if launch.image.is_some() {
                // The container made its own cgroup namespace (see image_root); exec'd
                // commands see the same /proc/self/cgroup.
                exec_flags |= libc::CLONE_NEWCGROUP;
            }
            if shared_pid {
                // The PID namespace is joined by an intermediate (setns only affects the
                // children of the caller); the mount namespace is made by its child.
                ns_flags = 0;
            }
            for (fd, flag) in [
                (pod.net, libc::CLONE_NEWNET),
                (pod.uts, libc::CLONE_NEWUTS),
                (pod.ipc, libc::CLONE_NEWIPC),
            ] {
                if fd.is_some() {
                    exec_flags |= flag;
                }
            }
        }

        let (out_r, out_w) = pipe_pair()?;
        let (err_r, err_w) = pipe_pair()?;
        let devnull = open_devnull()?;
        let sink = log::LogSink::open(&launch.log_path).map_err(|e| setup("create log file", e))?;
        let mut plan = build_plan(
            &launch.argv,
            &env,
            launch.working_dir.as_deref(),
            [devnull.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
            ops,
            hostname,
            pod.pid_init.map(|fd| (fd.as_raw_fd(), libc::CLONE_NEWPID)),
        )?;
        plan.join = [
            (pod.net, libc::CLONE_NEWNET),
            (pod.uts, libc::CLONE_NEWUTS),
            (pod.ipc, libc::CLONE_NEWIPC),
        ]
        .into_iter()
        .filter_map(|(fd, flag)| Some((fd?.as_raw_fd(), flag)))
        .collect();
        if shared_pid {
            plan.inner_flags = libc::CLONE_NEWNS;
        }
        let needs_root = launch.credentials.is_some()
            || launch.capabilities.is_some()
            || launch.read_only_rootfs
            || !launch.cgroup.is_empty();
        if !isolated && needs_root {
            return Err(setup_err(
                "apply securityContext and resources",
                "changing user, capabilities, root file system or cgroup needs root",
            ));
        }
        plan.cgroup_procs = open_cgroup_procs(&launch.cgroup)?;
        if launch.credentials.is_some() || launch.capabilities.is_some() || launch.no_new_privs {
            plan.security = Some(child::ChildSecurity {
                credentials: launch
                    .credentials
                    .as_ref()
                    .map(|c| (c.uid, c.gid, c.groups.clone())),
                capabilities: launch.capabilities.map(|c| {
                    [
                        c.bounding.0,
                        c.permitted.0,
                        c.effective.0,
                        c.inheritable.0,
                        c.ambient.0,
                    ]
                }),
                no_new_privs: launch.no_new_privs,
            });
        }
        let exec_security = plan.security.clone();
        let argv0 = launch.argv[0].clone();
        let cloned = child::run_on_spawner(move || child::clone_child(&plan, ns_flags))
            .and_then(|r| r)
            .map_err(|e| setup("clone", e))?;
        let started_at = SystemTime::now();
        drop((out_w, err_w, devnull));
        let (pid, pidfd) = if shared_pid {
            // `cloned` is the intermediate that joined the pod's PID namespace; it has
            // exited, and its child (a sibling of ours) is the container.
            reap_failed(&cloned.pidfd);
            let inner = cloned.report.inner_pid;
            if cloned.report.stage != Stage::None {
                if inner > 0 {
                    reap_pid(inner);
                }
                return Err(report_error(
                    &cloned.report,
                    &argv0,
                    launch.working_dir.as_deref(),
                    &op_names,
                ));
            }
            (inner, pidfd_of(inner, "clone")?)
        } else {
            if cloned.report.stage != Stage::None {
                reap_failed(&cloned.pidfd);
                return Err(report_error(
                    &cloned.report,
                    &argv0,
                    launch.working_dir.as_deref(),
                    &op_names,
                ));
            }
            (cloned.pid, cloned.pidfd)
        };
        let proc = match ProcessHandle::watch(pid as u32, pidfd) {
            Ok(p) => p,
            Err(e) => return Err(setup("watch pidfd", e)),
        };
        let (logs_tx, logs_rx) = watch::channel(false);
        let out = pipe::Receiver::from_owned_fd(out_r).map_err(|e| setup("stdout pipe", e))?;
        let err = pipe::Receiver::from_owned_fd(err_r).map_err(|e| setup("stderr pipe", e))?;
        tokio::spawn(async move {
            tokio::join!(
                log::pump_logs(out, log::LogStream::Stdout, sink.clone()),
                log::pump_logs(err, log::LogStream::Stderr, sink),
            );
            let _ = logs_tx.send(true);
        });
        tracing::debug!(pod = %launch.pod.name, container = %launch.container_name, pid, isolated, "container started");
        let container = ContainerProcess {
            proc,
            isolated,
            ns_flags: exec_flags,
            shared_pid,
            exec_security,
            exec_cgroup: launch.cgroup.clone(),
            working_dir: launch.working_dir.clone(),
            logs_rx,
            started_at,
            name: launch.container_name.clone(),
            stop_signal: launch.stop_signal,
        };
        // For `podrun exec` from another process; best effort, as the log is.
        let spec_file = exec::spec_file(&launch.log_path);
        if let Some(spec) = exec::ExecSpec::of(&container, &env)
            && let Err(e) = spec.write(&spec_file)
        {
            tracing::warn!(path = %spec_file.display(), %e, "cannot record the container's exec spec");
        }
        Ok(container)
    }

    /// The host pid of the container's main process.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The pidfd of the main process (valid while `self` lives).
    pub fn pidfd(&self) -> RawFd {
        self.proc.pidfd()
    }

    /// Whether the container has its own namespaces.
    pub fn is_isolated(&self) -> bool {
        self.isolated
    }

    /// When the command was exec'd.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Resolves when the main process has exited and was reaped (exit code `128 + n` on
    /// signal `n`). Event-driven and cancel-safe; any number of tasks may await it. It does
    /// not wait for the log writers: see [`ContainerProcess::logs_done`].
    pub async fn wait(&self) -> ExitInfo {
        self.proc.wait().await
    }

    /// The exit status if the container has already exited.
    pub fn try_wait(&self) -> Option<ExitInfo> {
        self.proc.try_status()
    }

    /// Resolves when both output pipes reached end of file and every line is in the log file.
    /// With isolation that follows the exit at once (every process of the container is
    /// gone); without it a background process that kept stdout open delays it.
    pub async fn logs_done(&self) {
        let mut rx = self.logs_rx.clone();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Sends `sig` to the container: to its init through the pidfd (with a PID namespace
    /// SIGKILL of the init ends every process in it), and without isolation to its whole
    /// process group. SIGTERM, the stop request, becomes the image's `StopSignal` when it
    /// has one (as containerd's StopContainer does). Signalling an exited container does
    /// nothing.
    pub fn signal(&self, sig: nix::sys::signal::Signal) -> std::io::Result<()> {
        let group = !self.isolated || (self.shared_pid && sig == nix::sys::signal::Signal::SIGKILL);
        let raw = match (sig, self.stop_signal) {
            (nix::sys::signal::Signal::SIGTERM, Some(stop)) => stop,
            _ => sig as i32,
        };
        self.proc.signal(raw, group)
    }
}

impl Drop for ContainerProcess {
    fn drop(&mut self) {
        if self.proc.try_status().is_none() {
            let group = !self.isolated || self.shared_pid;
            let _ = self.proc.signal(libc::SIGKILL, group);
            kill_and_reap_detached(self.proc.clone(), group);
        }
    }
}

/// SIGKILLs `proc` and reaps it on a short-lived thread: the tokio watcher may not get to
/// run any more (its runtime may be shutting down), and a dead child left unreaped would
/// stay a zombie for podrun's whole life.
fn kill_and_reap_detached(proc: ProcessHandle, group: bool) {
    let _ = proc.signal(libc::SIGKILL, group);
    let spawned = std::thread::Builder::new()
        .name("podrun-reap".into())
        .spawn(move || {
            proc.reap_blocking();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a reaper thread; the child is reaped when its watcher runs");
    }
}

/// Runs `argv` inside the running container — its mount, PID (and UTS) namespaces, its
/// working directory — with `env`, as an exec probe or hook does. stdout and stderr are
/// captured together (capped at [`MAX_EXEC_OUTPUT`]). The command is killed (with its process
/// group) when `timeout` expires or when the returned future is dropped.
pub async fn exec_in(
    container: &ContainerProcess,
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<ExecOutput, ExecError> {
    if container.try_wait().is_some() {
        return Err(ExecError::NotRunning);
    }
    let (out_r, out_w) = pipe_pair()?;
    let devnull = open_devnull()?;
    let stdio = [devnull.as_raw_fd(), out_w.as_raw_fd(), out_w.as_raw_fd()];
    let proc = exec::spawn_in(&exec::Host::of(container), argv, env, stdio, false)?;
    drop((out_w, devnull));
    let guard = KillOnDrop(Some(proc.clone()));
    let mut rx = pipe::Receiver::from_owned_fd(out_r).map_err(|e| setup("output pipe", e))?;

    let run = async {
        let mut output = Vec::new();
        let mut buf = vec![0u8; 4096];
        let mut exited = None;
        let mut eof = false;
        // Read while waiting; after the exit, give late output a moment, but never wait for
        // EOF forever: a background process of the command may hold the pipe open.
        loop {
            let read_deadline = async {
                match exited {
                    Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = rx.read(&mut buf), if !eof => match r {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) => {
                        let room = MAX_EXEC_OUTPUT.saturating_sub(output.len());
                        output.extend_from_slice(&buf[..n.min(room)]);
                    }
                },
                info = proc.wait(), if exited.is_none() => exited = Some(info),
                _ = read_deadline => break,
            }
            if eof && exited.is_some() {
                break;
            }
        }
        (exited, output)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok((Some(info), output)) => {
            std::mem::forget(guard);
            Ok(ExecOutput {
                exit_code: info.exit_code,
                output,
            })
        }
        Ok((None, _)) | Err(_) => {
            drop(guard);
            Err(ExecError::Timeout {
                command: argv.join(" "),
            })
        }
    }
}

/// Kills an exec'd command (and its process group) if its future is dropped or times out,
/// then reaps it so no zombie is left.
struct KillOnDrop(Option<ProcessHandle>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Some(proc) = self.0.take() else { return };
        if proc.try_status().is_some() {
            return;
        }
        kill_and_reap_detached(proc, true);
    }
}

// === preparation (parent side, may allocate) ===

fn setup(step: &str, e: std::io::Error) -> SpawnError {
    SpawnError::Setup {
        step: step.into(),
        reason: errno_text_io(&e),
    }
}

fn setup_err(step: &str, reason: &str) -> SpawnError {
    SpawnError::Setup {
        step: step.into(),
        reason: reason.into(),
    }
}

/// A pidfd of the process `pid` that the intermediate of step `step` started.
fn pidfd_of(pid: libc::pid_t, step: &str) -> Result<OwnedFd, SpawnError> {
    rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).ok_or_else(|| setup_err(step, "no pid"))?,
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(|e| setup("pidfd_open", e.into()))
}

fn cstring(s: impl AsRef<[u8]>, what: &str) -> Result<CString, SpawnError> {
    CString::new(s.as_ref()).map_err(|_| SpawnError::NulByte { what: what.into() })
}

/// Go-style error text for an errno: lower case, no "(os error N)".
fn errno_text(errno: i32) -> String {
    errno_text_io(&std::io::Error::from_raw_os_error(errno))
}

fn errno_text_io(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A close-on-exec pipe whose ends are both ≥ 3, so wiring them to fd 0–2 in the child can
/// never clobber one another.
fn pipe_pair() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two fresh descriptors, which we take ownership of at once.
    let (r, w) = unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(setup("pipe", std::io::Error::last_os_error()));
        }
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

fn open_devnull() -> Result<OwnedFd, SpawnError> {
    let f = std::fs::File::open("/dev/null").map_err(|e| setup("open /dev/null", e))?;
    above_stdio(f.into())
}

fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, SpawnError> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd);
    }
    // SAFETY: fcntl on a valid fd; the duplicate is a new fd we own.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(setup("dup", std::io::Error::last_os_error()));
    }
    // SAFETY: `dup` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

fn ensure_file(path: &Path) -> Result<(), SpawnError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| setup("create termination message directory", e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
        .map_err(|e| setup("create termination message file", e))
}

fn ensure_rootfs_mountpoint() -> Result<(), SpawnError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| std::fs::create_dir_all(ROOTFS_MOUNTPOINT).map_err(|e| errno_text_io(&e)))
        .clone()
        .map_err(|reason| SpawnError::Setup {
            step: format!("create {ROOTFS_MOUNTPOINT}"),
            reason,
        })
}

/// Mounts the pod's shared `/dev/shm` tmpfs at `dir` unless it is already there (its device
/// then differs from its parent's): 64 MiB, `nosuid,nodev,noexec`, mode 1777, as containerd
/// makes a sandbox's.
fn ensure_pod_shm(dir: &Path) -> Result<(), SpawnError> {
    use std::os::unix::fs::MetadataExt;
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let step = || format!("mount the pod's /dev/shm at {}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| setup(&step(), e))?;
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev());
    if dev(dir).map_err(|e| setup(&step(), e))? != dev(parent).map_err(|e| setup(&step(), e))? {
        return Ok(());
    }
    nix::mount::mount(
        Some("shm"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,size={}k", rootfs::DEV_SHM_BYTES / 1024).as_str()),
    )
    .map_err(|e| setup(&step(), std::io::Error::from(e)))
}

/// Makes the instance's upper and work directories new and empty (a restart never sees the
/// files of the instance before it) and returns an empty directory that stands in for the
/// lower layer of an image without layers.
fn prepare_image_dirs(image: &image_root::ImageRoot) -> Result<PathBuf, SpawnError> {
    use std::os::unix::fs::DirBuilderExt;
    let empty = image
        .upper
        .parent()
        .unwrap_or(Path::new("/"))
        .join("lower-empty");
    for dir in [&image.upper, &image.work, &empty] {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(setup(&format!("clear {}", dir.display()), e)),
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| setup(&format!("create {}", dir.display()), e))?;
    }
    Ok(empty)
}

/// Paths to try for `argv0`: itself when it contains a slash, else each `$PATH` entry.
fn exec_candidates(argv0: &str, env: &[(String, String)]) -> Vec<PathBuf> {
    if argv0.contains('/') {
        return vec![PathBuf::from(argv0)];
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| {
            if dir.is_empty() {
                Path::new(".").join(argv0)
            } else {
                Path::new(dir).join(argv0)
            }
        })
        .collect()
}

fn build_plan(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&Path>,
    stdio: [RawFd; 3],
    ops: Vec<RawOp>,
    hostname: Option<CString>,
    setns: Option<(RawFd, libc::c_int)>,
) -> Result<ChildPlan, SpawnError> {
    let argv0 = argv.first().ok_or(SpawnError::NoCommand)?;
    if argv0.is_empty() {
        return Err(SpawnError::NoCommand);
    }
    let argv_c = argv
        .iter()
        .map(|a| cstring(a, "command or args"))
        .collect::<Result<Vec<_>, _>>()?;
    let envp_c = env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}"), "environment variable"))
        .collect::<Result<Vec<_>, _>>()?;
    let candidates = exec_candidates(argv0, env)
        .iter()
        .map(|p| cstring(p.as_os_str().as_bytes(), "command"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp_c.iter().map(|c| c.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let cwd = match cwd {
        Some(d) => Some(cstring(d.as_os_str().as_bytes(), "workingDir")?),
        None if setns.is_some() || !ops.is_empty() => Some(CString::from(c"/")),
        None => None,
    };
    Ok(ChildPlan {
        ops,
        hostname,
        cwd,
        candidates,
        _argv: argv_c,
        argv_ptrs,
        _envp: envp_c,
        envp_ptrs,
        stdio,
        parent_pidfd: child::self_pidfd().map_err(|e| setup("pidfd_open self", e))?,
        setns,
        inner_flags: 0,
        join: Vec::new(),
        cgroup_procs: Vec::new(),
        security: None,
        controlling_terminal: false,
    })
}

/// Opens `cgroup.procs` of each directory for the child to write itself into.
fn open_cgroup_procs(dirs: &[PathBuf]) -> Result<Vec<OwnedFd>, SpawnError> {
    dirs.iter()
        .map(|d| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(d.join("cgroup.procs"))
                .map_err(|e| setup(&format!("open {}/cgroup.procs", d.display()), e))?;
            above_stdio(f.into())
        })
        .collect()
}

/// Converts the plan into C strings, with a description of each op for error messages.
fn raw_ops(plan: &[MountOp]) -> Result<(Vec<RawOp>, Vec<String>), SpawnError> {
    let c = |p: &Path| cstring(p.as_os_str().as_bytes(), "mount path");
    let inside = |p: &Path| -> String {
        let rel = p.strip_prefix(ROOTFS_MOUNTPOINT).unwrap_or(p);
        Path::new("/").join(rel).display().to_string()
    };
    let mut ops = Vec::with_capacity(plan.len());
    let mut names = Vec::with_capacity(plan.len());
    for op in plan {
        let (raw, name) = match op {
            MountOp::MakeRootPrivate => {
                (RawOp::MakeRootPrivate, "making mounts private".to_string())
            }
            MountOp::Tmpfs {
                target,
                devices,
                options,
            } => (
                RawOp::Tmpfs {
                    target: c(target)?,
                    devices: *devices,
                    data: cstring(options, "mount options")?,
                },
                format!("mounting tmpfs to rootfs at {:?}", inside(target)),
            ),
            MountOp::MakeUnbindable { target } => (
                RawOp::MakeUnbindable { target: c(target)? },
                "preparing rootfs".to_string(),
            ),
            MountOp::Mkdir { path } => (
                RawOp::Mkdir { path: c(path)? },
                format!("creating mount point {:?}", inside(path)),
            ),
            MountOp::Touch { path } => (
                RawOp::Touch { path: c(path)? },
                format!("creating mount point {:?}", inside(path)),
            ),
            MountOp::Symlink { target, link } => (
                RawOp::Symlink {
                    target: c(target)?,
                    link: c(link)?,
                },
                format!("creating symlink {:?}", inside(link)),
            ),
            MountOp::CharDevice { path, major, minor } => (
                RawOp::CharDevice {
                    path: c(path)?,
                    dev: libc::makedev(*major, *minor),
                },
                format!("creating device {:?}", inside(path)),
            ),
            MountOp::Bind {
                source,
                target,
                read_only,
            } => (
                RawOp::Bind {
                    source: c(source)?,
                    target: c(target)?,
                    read_only: *read_only,
                },
                format!(
                    "mounting {:?} to rootfs at {:?}",
                    source.display().to_string(),
                    inside(target)
                ),
            ),
            MountOp::Mask { target, dir, null } => (
                RawOp::Mask {
                    target: c(target)?,
                    dir: *dir,
                    null: c(null)?,
                },
                format!("masking {:?}", inside(target)),
            ),
            MountOp::ReadOnlyPath { target } => (
                RawOp::ReadOnlyPath { target: c(target)? },
                format!("making {:?} read-only", inside(target)),
            ),
            MountOp::NewCgroupNamespace => (
                RawOp::NewCgroupNamespace,
                "creating the cgroup namespace".to_string(),
            ),
            MountOp::Special {
                fstype,
                target,
                flags,
                options,
            } => (
                RawOp::Special {
                    fstype: cstring(fstype, "fstype")?,
                    target: c(target)?,
                    flags: *flags as libc::c_ulong,
                    data: cstring(options, "mount options")?,
                },
                format!("mounting {fstype} to rootfs at {:?}", inside(target)),
            ),
            MountOp::ReadOnly { target } => (
                RawOp::ReadOnly { target: c(target)? },
                format!("making {:?} read-only", inside(target)),
            ),
            MountOp::PivotRoot { new_root } => (
                RawOp::PivotRoot {
                    new_root: c(new_root)?,
                },
                "pivot_root".to_string(),
            ),
        };
        ops.push(raw);
        names.push(name);
    }
    Ok((ops, names))
}

fn report_error(
    report: &ChildReport,
    argv0: &str,
    cwd: Option<&Path>,
    op_names: &[String],
) -> SpawnError {
    let reason = errno_text(report.errno);
    match report.stage {
        Stage::Exec if report.errno == libc::ENOENT && !argv0.contains('/') => {
            SpawnError::NotFound { name: argv0.into() }
        }
        Stage::Exec if report.errno == libc::ENOENT => SpawnError::Exec {
            name: argv0.into(),
            reason: format!("stat {argv0}: {reason}"),
        },
        Stage::Exec => SpawnError::Exec {
            name: argv0.into(),
            reason,
        },
        Stage::Chdir => SpawnError::WorkingDir {
            dir: cwd
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "/".into()),
            reason,
        },
        Stage::Op(i) => SpawnError::Mount {
            what: op_names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("mount step {i}")),
            reason,
        },
        other => SpawnError::Setup {
            step: format!("{other:?}"),
            reason,
        },
    }
}

/// Reaps a child known to have exited (or to be exiting): it failed before exec, or it is
/// an intermediate that already returned.
fn reap_failed(pidfd: &OwnedFd) {
    loop {
        match rustix::process::waitid(
            rustix::process::WaitId::PidFd(std::os::fd::AsFd::as_fd(pidfd)),
            rustix::process::WaitIdOptions::EXITED,
        ) {
            Err(e) if e == rustix::io::Errno::INTR => continue,
            _ => return,
        }
    }
}

fn reap_pid(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waitpid for one specific child of ours.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lookup_uses_env_path_or_default() {
        let env = vec![("PATH".to_string(), "/a::/b".to_string())];
        assert_eq!(
            exec_candidates("sh", &env),
            vec![
                PathBuf::from("/a/sh"),
                PathBuf::from("./sh"),
                PathBuf::from("/b/sh")
            ]
        );
        assert_eq!(exec_candidates("/x/y", &env), vec![PathBuf::from("/x/y")]);
        assert_eq!(
            exec_candidates("sh", &[]).len(),
            DEFAULT_PATH.split(':').count()
        );
    }

    #[test]
    fn errno_text_is_go_style() {
        assert_eq!(errno_text(libc::ENOENT), "no such file or directory");
        assert_eq!(errno_text(libc::EACCES), "permission denied");
    }

    #[test]
    fn report_errors_read_like_runc() {
        let r = ChildReport {
            stage: Stage::Exec,
            errno: libc::ENOENT,
            inner_pid: 0,
        };
        assert_eq!(
            report_error(&r, "foo", None, &[]).to_string(),
            "exec: \"foo\": executable file not found in $PATH"
        );
        assert_eq!(
            report_error(&r, "/nope", None, &[]).to_string(),
            "exec: \"/nope\": stat /nope: no such file or directory"
        );
        let r = ChildReport {
            stage: Stage::Chdir,
            errno: libc::ENOENT,
            inner_pid: 0,
        };
        assert_eq!(
            report_error(&r, "sh", Some(Path::new("/w")), &[]).to_string(),
            "chdir to cwd (\"/w\") failed: no such file or directory"
        );
    }
}
