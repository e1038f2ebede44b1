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
            std::path::PathBuf::from(format!("/proc/{}/root/dev/ptmx", container.pid()))
        } else {
            std::path::PathBuf::from("/dev/ptmx")
        };
        let (master, slave) = open_pty(&ptmx, size)?;
        if let Some((uid, gid, _)) = container
            .exec_security
            .as_ref()
            .and_then(|s| s.credentials.as_ref())
        {
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
    container: &ContainerProcess,
    argv: &[String],
    env: &[(String, String)],
    stdio: [RawFd; 3],
    ctty: bool,
) -> Result<ProcessHandle, ExecError> {
    let setns = container
        .isolated
        .then_some((container.pidfd(), container.ns_flags));
    let mut plan = build_plan(
        argv,
        env,
        container.working_dir.as_deref(),
        stdio,
        Vec::new(),
        None,
        setns,
    )?;
    plan.security = container.exec_security.clone();
    plan.controlling_terminal = ctty;
    // A cgroup already removed (the container is ending) just leaves the command outside.
    plan.cgroup_procs = open_cgroup_procs(&container.exec_cgroup).unwrap_or_default();
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
            return Err(report_error(
                &cloned.report,
                &argv0,
                container.working_dir.as_deref(),
                &[],
            )
            .into());
        }
        (pidfd_of(inner, "exec")?, inner)
    } else {
        if cloned.report.stage != Stage::None {
            reap_failed(&cloned.pidfd);
            return Err(report_error(
                &cloned.report,
                &argv0,
                container.working_dir.as_deref(),
                &[],
            )
            .into());
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
