//! Interactive commands in a running container, as `kubectl exec` runs them.
//!
//! The command joins the container's namespaces (mount — for a container from an image the
//! mount namespace already holds its pivoted root —, PID, UTS, IPC and network) through the
//! container's pidfd, and runs with the container's environment, working directory, user,
//! groups, capabilities and cgroups, as runc's `exec` starts a process from the
//! container's process spec. Its stdin, stdout and stderr are pipes, or one pseudo-terminal
//! in TTY mode (stdout and stderr merged, the command's controlling terminal, resized with
//! `TIOCSWINSZ`). Dropping the [`ExecSession`] kills the command and its process group, so
//! a client that goes away leaves nothing running.
//!
//! Another process on the same state directory (`podrun exec`) starts commands the same way
//! from the [`ExecSpec`] the node writes beside each container instance's log when it
//! starts (`<pod dir>/<container>/<restart count>.exec.json`, root-only: the environment
//! may hold Secrets): [`RecordedContainer::open`] finds the instance's process again by
//! pid and start time, so a recycled pid is never joined.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

use super::child::{self, Stage};
use super::process::ProcessHandle;
use super::{
    ContainerProcess, ExecError, ExitInfo, KillOnDrop, SpawnError, build_plan, open_cgroup_procs,
    open_devnull, pidfd_of, pipe_pair, reap_failed, reap_pid, report_error, setup,
};

/// What a command started in a container takes from it: the process whose namespaces it
/// joins and the container's process spec.
pub(super) struct Host<'a> {
    pidfd: RawFd,
    pid: u32,
    isolated: bool,
    ns_flags: libc::c_int,
    security: Option<&'a child::ChildSecurity>,
    cgroup: &'a [std::path::PathBuf],
    working_dir: Option<&'a std::path::Path>,
}

impl<'a> Host<'a> {
    pub(super) fn of(c: &'a ContainerProcess) -> Self {
        Host {
            pidfd: c.pidfd(),
            pid: c.pid(),
            isolated: c.isolated,
            ns_flags: c.ns_flags,
            security: c.exec_security.as_ref(),
            cgroup: &c.exec_cgroup,
            working_dir: c.working_dir.as_deref(),
        }
    }
}

/// A container instance's process spec as the node records it at start, for commands
/// started from another process (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecSpec {
    /// Host pid of the main process.
    pub pid: u32,
    /// Its start time (`/proc/<pid>/stat` field 22, clock ticks since boot): tells the
    /// instance from a later process that got the same pid.
    pub start_time: u64,
    /// Whether the container has namespaces of its own.
    pub isolated: bool,
    /// The namespaces (`CLONE_NEW*` flags) a command joins.
    pub ns_flags: i32,
    /// The environment the main process was started with.
    pub env: Vec<(String, String)>,
    /// `workingDir`.
    pub working_dir: Option<std::path::PathBuf>,
    /// (uid, gid, supplementary groups).
    pub credentials: Option<(u32, u32, Vec<u32>)>,
    /// (bounding, permitted, effective, inheritable, ambient) capability masks.
    pub capabilities: Option<[u64; 5]>,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// cgroup directories.
    pub cgroup: Vec<std::path::PathBuf>,
}

/// Where the [`ExecSpec`] of the instance logging to `log_file` is kept.
pub fn spec_file(log_file: &std::path::Path) -> std::path::PathBuf {
    log_file.with_extension("exec.json")
}

/// The start time of process `pid` (clock ticks after boot), if it exists.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts with field 3 (state); the start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl ExecSpec {
    /// The spec of a container just started.
    pub(super) fn of(c: &ContainerProcess, env: &[(String, String)]) -> Option<Self> {
        let security = c.exec_security.clone().unwrap_or_default();
        Some(ExecSpec {
            pid: c.pid(),
            start_time: start_time(c.pid())?,
            isolated: c.isolated,
            ns_flags: c.ns_flags,
            env: env.to_vec(),
            working_dir: c.working_dir.clone(),
            credentials: security.credentials,
            capabilities: security.capabilities,
            no_new_privs: security.no_new_privs,
            cgroup: c.exec_cgroup.clone(),
        })
    }

    /// Writes the spec to `path`, readable by its owner only.
    pub(super) fn write(&self, path: &std::path::Path) -> io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(&json)
    }
}

/// A running container instance found from its [`ExecSpec`], in a process other than the
/// one that started it.
#[derive(Debug)]
pub struct RecordedContainer {
    spec: ExecSpec,
    security: Option<child::ChildSecurity>,
    pidfd: OwnedFd,
}

impl RecordedContainer {
    /// The instance whose spec is in `path`: [`ExecError::NotRunning`] when there is none
    /// or its process has ended.
    pub fn open(path: &std::path::Path) -> Result<Self, ExecError> {
        let text = std::fs::read(path).map_err(|_| ExecError::NotRunning)?;
        let spec: ExecSpec = serde_json::from_slice(&text).map_err(|_| ExecError::NotRunning)?;
        let pid = rustix::process::Pid::from_raw(spec.pid as i32).ok_or(ExecError::NotRunning)?;
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .map_err(|_| ExecError::NotRunning)?;
        // Checked with the pidfd held: the pid cannot be recycled under it from here on.
        if start_time(spec.pid) != Some(spec.start_time) {
            return Err(ExecError::NotRunning);
        }
        let security = (spec.credentials.is_some()
            || spec.capabilities.is_some()
            || spec.no_new_privs)
            .then(|| child::ChildSecurity {
                credentials: spec.credentials.clone(),
                capabilities: spec.capabilities,
                no_new_privs: spec.no_new_privs,
            });
        Ok(Self {
            spec,
            security,
            pidfd,
        })
    }

    /// The environment the container was started with.
    pub fn env(&self) -> &[(String, String)] {
        &self.spec.env
    }

    /// Whether the main process still runs (no zombie: its pidfd not yet readable).
    fn running(&self) -> bool {
        let mut fd = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on our stack for an fd we own; no waiting.
        unsafe { libc::poll(&mut fd, 1, 0) == 0 }
    }

    fn host(&self) -> Host<'_> {
        Host {
            pidfd: self.pidfd.as_raw_fd(),
            pid: self.spec.pid,
            isolated: self.spec.isolated,
            ns_flags: self.spec.ns_flags,
            security: self.security.as_ref(),
            cgroup: &self.spec.cgroup,
            working_dir: self.spec.working_dir.as_deref(),
        }
    }

    /// Starts `argv` in the container with its environment and the streams asked for, as
    /// [`exec_session`] does.
    pub async fn exec_session(
        &self,
        argv: &[String],
        streams: ExecStreams,
        size: Option<TerminalSize>,
    ) -> Result<ExecSession, ExecError> {
        if !self.running() {
            return Err(ExecError::NotRunning);
        }
        session(&self.host(), argv, &self.spec.env, streams, size).await
    }
}

/// The running instance of a container that commands are started in: its process and the
/// environment it was started with.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    /// The container's main process.
    pub process: std::sync::Arc<ContainerProcess>,
    /// Its resolved environment.
    pub env: std::sync::Arc<Vec<(String, String)>>,
}

/// What the command's standard streams are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecStreams {
    /// Give the command a stdin the caller writes (else `/dev/null`).
    pub stdin: bool,
    /// Keep its stdout (else `/dev/null`).
    pub stdout: bool,
    /// Keep its stderr (else `/dev/null`; ignored with `tty`).
    pub stderr: bool,
    /// Run it on a pseudo-terminal: stdout and stderr are the terminal's output.
    pub tty: bool,
}

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// A command running in a container. Dropping it kills the command (and its process
/// group) if it still runs.
#[derive(Debug)]
pub struct ExecSession {
    /// The command's stdin, when asked for; drop it to close the command's stdin.
    pub stdin: Option<ExecWriter>,
    /// The command's stdout (with `tty`: the terminal's output).
    pub stdout: Option<ExecReader>,
    /// The command's stderr (never with `tty`).
    pub stderr: Option<ExecReader>,
    pty: Option<std::sync::Arc<AsyncFd<OwnedFd>>>,
    proc: ProcessHandle,
    guard: KillOnDrop,
}

impl std::fmt::Debug for KillOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KillOnDrop")
    }
}

impl ExecSession {
    /// Host PID of the command.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Waits for the command to exit.
    pub async fn wait(&self) -> ExitInfo {
        self.proc.wait().await
    }

    /// Sets the terminal size (TTY mode only; otherwise nothing happens). The kernel
    /// sends the command's foreground process group `SIGWINCH`.
    pub fn resize(&self, size: TerminalSize) -> io::Result<()> {
        let Some(pty) = &self.pty else {
            return Ok(());
        };
        set_winsize(pty.get_ref().as_raw_fd(), size)
    }

    /// Kills the command and its process group now.
    pub fn kill(&mut self) {
        if let Some(proc) = self.guard.0.take()
            && proc.try_status().is_none()
        {
            super::kill_and_reap_detached(proc, true);
        }
    }
}

/// Starts `argv` in the running `container` with `env` and the streams asked for.
pub async fn exec_session(
    container: &ContainerProcess,
    argv: &[String],
    env: &[(String, String)],
    streams: ExecStreams,
    size: Option<TerminalSize>,
) -> Result<ExecSession, ExecError> {
    if container.try_wait().is_some() {
        return Err(ExecError::NotRunning);
    }
    session(&Host::of(container), argv, env, streams, size).await
}

async fn session(
    container: &Host<'_>,
    argv: &[String],
    env: &[(String, String)],
    streams: ExecStreams,
    size: Option<TerminalSize>,
) -> Result<ExecSession, ExecError> {
    let devnull = open_devnull()?;
    let mut env = env.to_vec();
    if streams.tty {
        // As containerd gives a terminal exec a terminal type when the container has none.
        if !env.iter().any(|(k, _)| k == "TERM") {
            env.push(("TERM".into(), "xterm".into()));
        }
        // The terminal comes from the container's own devpts (its /dev/ptmx), so the
        // command sees its terminal under /dev/pts, as runc gives an exec its console.
        let ptmx = if container.isolated {
            std::path::PathBuf::from(format!("/proc/{}/root/dev/ptmx", container.pid))
        } else {
            std::path::PathBuf::from("/dev/ptmx")
        };
        let (master, slave) = open_pty(&ptmx, size)?;
        if let Some((uid, gid, _)) = container.security.and_then(|s| s.credentials.as_ref()) {
            // The command's user owns its terminal.
            std::os::unix::fs::fchown(&slave, Some(*uid), Some(*gid))
                .map_err(|e| setup("chown the terminal", e))?;
        }
        let stdin_fd = if streams.stdin {
            slave.as_raw_fd()
        } else {
            devnull.as_raw_fd()
        };
        let stdio = [stdin_fd, slave.as_raw_fd(), slave.as_raw_fd()];
        let proc = spawn_in(container, argv, &env, stdio, true)?;
        drop((slave, devnull));
        let guard = KillOnDrop(Some(proc.clone()));
        set_nonblocking(master.as_raw_fd())?;
        // SAFETY: the AsyncFd owns `master`, which stays open and the same for its life.
        let master = unsafe { AsyncFd::register(master) }
            .map_err(|e| setup("register the terminal", e.into()))?;
        let master = std::sync::Arc::new(master);
        return Ok(ExecSession {
            stdin: streams
                .stdin
                .then(|| ExecWriter(Writer::Pty(master.clone()))),
            stdout: Some(ExecReader(Reader::Pty(master.clone()))),
            stderr: None,
            pty: Some(master),
            proc,
            guard,
        });
    }
    let stdin = streams.stdin.then(pipe_pair).transpose()?;
    let stdout = streams.stdout.then(pipe_pair).transpose()?;
    let stderr = streams.stderr.then(pipe_pair).transpose()?;
    let fd_or_null = |p: &Option<(OwnedFd, OwnedFd)>,
                      child_end: fn(&(OwnedFd, OwnedFd)) -> RawFd| {
        p.as_ref().map_or(devnull.as_raw_fd(), child_end)
    };
    let stdio = [
        fd_or_null(&stdin, |p| p.0.as_raw_fd()),
        fd_or_null(&stdout, |p| p.1.as_raw_fd()),
        fd_or_null(&stderr, |p| p.1.as_raw_fd()),
    ];
    let proc = spawn_in(container, argv, &env, stdio, false)?;
    let guard = KillOnDrop(Some(proc.clone()));
    drop(devnull);
    let stdin = match stdin {
        Some((r, w)) => {
            drop(r);
            Some(ExecWriter(Writer::Pipe(
                pipe::Sender::from_owned_fd(w).map_err(|e| setup("stdin pipe", e))?,
            )))
        }
        None => None,
    };
    let reader = |p: Option<(OwnedFd, OwnedFd)>, what: &str| -> Result<_, SpawnError> {
        match p {
            Some((r, w)) => {
                drop(w);
                Ok(Some(ExecReader(Reader::Pipe(
                    pipe::Receiver::from_owned_fd(r).map_err(|e| setup(what, e))?,
                ))))
            }
            None => Ok(None),
        }
    };
    Ok(ExecSession {
        stdin,
        stdout: reader(stdout, "stdout pipe")?,
        stderr: reader(stderr, "stderr pipe")?,
        pty: None,
        proc,
        guard,
    })
}

/// Clones `argv` into the container's namespaces (or, for a container without isolation,
/// as a plain child) with its security settings, cgroups and working directory, fd 0–2
/// from `stdio`. With `ctty`, fd 0 is a terminal that becomes the command's controlling
/// terminal.
pub(super) fn spawn_in(
    container: &Host<'_>,
    argv: &[String],
    env: &[(String, String)],
    stdio: [RawFd; 3],
    ctty: bool,
) -> Result<ProcessHandle, ExecError> {
    let setns = container
        .isolated
        .then_some((container.pidfd, container.ns_flags));
    let mut plan = build_plan(
        argv,
        env,
        container.working_dir,
        stdio,
        Vec::new(),
        None,
        setns,
    )?;
    plan.security = container.security.cloned();
    plan.controlling_terminal = ctty;
    // A cgroup already removed (the container is ending) just leaves the command outside.
    plan.cgroup_procs = open_cgroup_procs(container.cgroup).unwrap_or_default();
    let argv0 = argv.first().cloned().unwrap_or_default();
    let cloned = child::run_on_spawner(move || child::clone_child(&plan, 0))
        .and_then(|r| r)
        .map_err(|e| setup("clone", e))?;
    let (pidfd, pid) = if container.isolated {
        // `cloned` is the intermediate that joined the namespaces; it has exited.
        reap_failed(&cloned.pidfd);
        let inner = cloned.report.inner_pid;
        if cloned.report.stage != Stage::None {
            if inner > 0 {
                reap_pid(inner);
            }
            if cloned.report.stage == Stage::Setns && cloned.report.errno == libc::ESRCH {
                return Err(ExecError::NotRunning);
            }
            return Err(report_error(&cloned.report, &argv0, container.working_dir, &[]).into());
        }
        (pidfd_of(inner, "exec")?, inner)
    } else {
        if cloned.report.stage != Stage::None {
            reap_failed(&cloned.pidfd);
            return Err(report_error(&cloned.report, &argv0, container.working_dir, &[]).into());
        }
        (cloned.pidfd, cloned.pid)
    };
    Ok(ProcessHandle::watch(pid as u32, pidfd).map_err(|e| setup("watch pidfd", e))?)
}

/// A new pseudo-terminal pair (master, slave) from the devpts instance of `ptmx`, both
/// close-on-exec and above fd 2.
fn open_pty(
    ptmx: &std::path::Path,
    size: Option<TerminalSize>,
) -> Result<(OwnedFd, OwnedFd), SpawnError> {
    use std::os::unix::fs::OpenOptionsExt;
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(ptmx)
        .map_err(|e| setup(&format!("open {}", ptmx.display()), e))?
        .into();
    // SAFETY: plain ioctls on our master; the slave descriptor is new and ours.
    let slave = unsafe {
        let unlock: libc::c_int = 0;
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(setup("unlock the terminal", io::Error::last_os_error()));
        }
        // TIOCGPTPEER opens the slave through the master, in the master's devpts.
        let fd = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(setup(
                "open the terminal's slave",
                io::Error::last_os_error(),
            ));
        }
        OwnedFd::from_raw_fd(fd)
    };
    if let Some(size) = size {
        set_winsize(master.as_raw_fd(), size).map_err(|e| setup("size the terminal", e))?;
    }
    Ok((super::above_stdio(master)?, super::above_stdio(slave)?))
}

fn set_winsize(fd: RawFd, size: TerminalSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from our stack.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_nonblocking(fd: RawFd) -> Result<(), SpawnError> {
    // SAFETY: fcntl flag changes on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(setup(
                "make the terminal non-blocking",
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// One of the command's output streams.
#[derive(Debug)]
pub struct ExecReader(Reader);

#[derive(Debug)]
enum Reader {
    Pipe(pipe::Receiver),
    Pty(std::sync::Arc<AsyncFd<OwnedFd>>),
}

/// The command's stdin.
#[derive(Debug)]
pub struct ExecWriter(Writer);

#[derive(Debug)]
enum Writer {
    Pipe(pipe::Sender),
    Pty(std::sync::Arc<AsyncFd<OwnedFd>>),
}

/// The count of a `read(2)`/`write(2)` result, or its errno.
fn byte_count(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl AsyncRead for ExecReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Reader::Pipe(p) => Pin::new(p).poll_read(cx, buf),
            Reader::Pty(fd) => loop {
                let mut guard = ready!(fd.poll_read_ready(cx))?;
                let unfilled = buf.initialize_unfilled();
                let r = guard.try_io(|inner| {
                    // SAFETY: read into the initialised, unfilled part of `buf`.
                    byte_count(unsafe {
                        libc::read(
                            inner.get_ref().as_raw_fd(),
                            unfilled.as_mut_ptr().cast(),
                            unfilled.len(),
                        )
                    })
                });
                match r {
                    Ok(Ok(n)) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    // The terminal's last slave was closed: the command and every process
                    // that held the terminal are gone. That is the end of the output.
                    Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                        return Poll::Ready(Ok(()));
                    }
                    Ok(Err(e)) => return Poll::Ready(Err(e)),
                    Err(_would_block) => continue,
                }
            },
        }
    }
}

impl AsyncWrite for ExecWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Writer::Pipe(p) => Pin::new(p).poll_write(cx, data),
            Writer::Pty(fd) => loop {
                let mut guard = ready!(fd.poll_write_ready(cx))?;
                let r = guard.try_io(|inner| {
                    // SAFETY: write from a slice we borrow.
                    byte_count(unsafe {
                        libc::write(
                            inner.get_ref().as_raw_fd(),
                            data.as_ptr().cast(),
                            data.len(),
                        )
                    })
                });
                match r {
                    Ok(result) => return Poll::Ready(result),
                    Err(_would_block) => continue,
                }
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Writer::Pipe(p) => Pin::new(p).poll_shutdown(cx),
            // A terminal has no half-close; the caller sends the EOF character instead.
            Writer::Pty(_) => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_pair_takes_a_size() {
        let (master, slave) = open_pty(
            std::path::Path::new("/dev/ptmx"),
            Some(TerminalSize {
                width: 132,
                height: 43,
            }),
        )
        .expect("pty");
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes a winsize into our stack variable.
        assert_eq!(
            unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) },
            0
        );
        assert_eq!((ws.ws_col, ws.ws_row), (132, 43));
        set_winsize(
            master.as_raw_fd(),
            TerminalSize {
                width: 80,
                height: 24,
            },
        )
        .expect("resize");
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) },
            0
        );
        assert_eq!((ws.ws_col, ws.ws_row), (80, 24));
    }
}
