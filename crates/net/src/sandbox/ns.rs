//! Creating a pod's namespaces, and the pod's init for a shared PID namespace.
//!
//! Namespaces are made with `unshare` on one of the sandbox workers
//! ([`super::workers`]): long-lived threads that only make sandboxes. A thread can switch
//! its network, UTS and IPC namespaces without affecting the rest of podrun; the worker
//! keeps descriptors of the namespaces it started in ([`Home`]) and goes back to them with
//! `setns` as soon as the pod's are made. What survives are file descriptors (and the
//! `/run/netns` bind mount), which keep the namespaces alive until the sandbox is
//! destroyed. A worker that cannot go back is stranded and ends (see [`Stranded`]).

use std::ffi::{CString, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::netlink::Netlink;

/// The namespaces made for one pod.
#[derive(Debug)]
pub(crate) struct Created {
    pub net: Option<OwnedFd>,
    pub uts: Option<OwnedFd>,
    pub ipc: OwnedFd,
    /// A netlink socket inside the pod's network namespace.
    pub netlink: Option<Netlink>,
}

/// What to create.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// A new network namespace bind-mounted at this path (`None`: host network).
    pub netns_path: Option<PathBuf>,
    /// A new UTS namespace with this hostname (`None`: the host's).
    pub hostname: Option<String>,
}

/// The network, UTS and IPC namespaces a thread started in.
#[derive(Debug)]
pub(crate) struct Home {
    net: OwnedFd,
    uts: OwnedFd,
    ipc: OwnedFd,
}

/// The calling thread could not return to its [`Home`] namespaces: it must not be used
/// for anything else.
#[derive(Debug)]
pub(crate) struct Stranded;

impl Home {
    /// The calling thread's namespaces.
    pub fn here() -> io::Result<Self> {
        Ok(Self {
            net: open_own("net")?,
            uts: open_own("uts")?,
            ipc: open_own("ipc")?,
        })
    }

    /// A descriptor to duplicate (its network namespace's).
    pub fn raw(&self) -> std::os::fd::RawFd {
        self.net.as_raw_fd()
    }

    /// Makes the calling thread rejoin the namespaces among `flags`.
    fn restore(&self, flags: c_int) -> Result<(), Stranded> {
        for (fd, nstype) in [
            (&self.net, libc::CLONE_NEWNET),
            (&self.uts, libc::CLONE_NEWUTS),
            (&self.ipc, libc::CLONE_NEWIPC),
        ] {
            // SAFETY: setns(2) of this thread into a namespace we hold a descriptor of.
            if flags & nstype != 0 && unsafe { libc::setns(fd.as_raw_fd(), nstype) } != 0 {
                tracing::error!(
                    error = %io::Error::last_os_error(),
                    "a sandbox worker cannot return to podrun's namespaces"
                );
                return Err(Stranded);
            }
        }
        Ok(())
    }
}

fn open_own(kind: &str) -> io::Result<OwnedFd> {
    let f = std::fs::File::open(format!("/proc/thread-self/ns/{kind}"))
        .map_err(|e| with_step(&format!("open {kind} namespace"), e))?;
    Ok(f.into())
}

/// Creates the namespaces on the calling thread, which is back in `home` afterwards
/// (`Err(Stranded)` if it could not get back).
pub(crate) fn create(req: &Request, home: &Home) -> Result<io::Result<Created>, Stranded> {
    let mut flags = libc::CLONE_NEWIPC;
    if req.netns_path.is_some() {
        flags |= libc::CLONE_NEWNET;
    }
    if req.hostname.is_some() {
        flags |= libc::CLONE_NEWUTS;
    }
    // SAFETY: unshare(2) of per-thread namespaces; only this thread changes.
    if unsafe { libc::unshare(flags) } != 0 {
        let e = io::Error::last_os_error();
        // Nothing may have changed, but make sure.
        home.restore(flags)?;
        return Ok(Err(with_step("unshare", e)));
    }
    let created = inside(req);
    home.restore(flags)?;
    Ok(created)
}

/// The part of [`create`] done inside the new namespaces.
fn inside(req: &Request) -> io::Result<Created> {
    if let Some(h) = &req.hostname {
        nix::unistd::sethostname(h).map_err(|e| with_step("sethostname", e.into()))?;
    }
    let ipc = open_own("ipc")?;
    let uts = req.hostname.as_ref().map(|_| open_own("uts")).transpose()?;
    let (net, netlink) = match &req.netns_path {
        Some(path) => {
            let net = open_own("net")?;
            bind_netns(&net, path)?;
            let nl = Netlink::open().map_err(|e| with_step("netlink in pod", e));
            let nl = match nl {
                Ok(nl) => nl,
                Err(e) => {
                    let _ = unbind_netns(path);
                    return Err(e);
                }
            };
            (Some(net), Some(nl))
        }
        None => (None, None),
    };
    Ok(Created {
        net,
        uts,
        ipc,
        netlink,
    })
}

/// Bind-mounts the namespace at `path`, as `ip netns add` does, so `ip netns` lists it.
fn bind_netns(net: &OwnedFd, path: &Path) -> io::Result<()> {
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    };
    // The directory exists after the first pod: only then is it made.
    match create() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| with_step("create /run/netns", e))?;
            }
            create()
        }
        other => other,
    }
    .map_err(|e| with_step(&format!("create {}", path.display()), e))?;
    let source = format!("/proc/self/fd/{}", net.as_raw_fd());
    if let Err(e) = nix::mount::mount(
        Some(source.as_str()),
        path,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = std::fs::remove_file(path);
        return Err(with_step("bind-mount network namespace", e.into()));
    }
    Ok(())
}

/// Removes a `/run/netns` bind mount (the namespace itself goes when its last fd and
/// process are gone). Returns false if there was nothing there.
pub(crate) fn unbind_netns(path: &Path) -> io::Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(with_step("unmount network namespace", e.into())),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

fn with_step(step: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{step}: {e}"))
}

// === the pod's init ===

/// The init of a pod's shared PID namespace: PID 1 there, it reaps orphans (as the
/// Kubernetes pause container does) and takes every process of the pod with it when it
/// is killed.
#[derive(Debug)]
pub(crate) struct PodInit {
    pub pid: u32,
    pub pidfd: OwnedFd,
}

struct InitArgs {
    parent_pidfd: c_int,
    join: [c_int; 3],
    name: CString,
}

/// Starts the init in a new PID namespace, inside the pod's other namespaces.
pub(crate) fn start_init(ns: [Option<&OwnedFd>; 3]) -> io::Result<PodInit> {
    let parent_pidfd = podrun_process::self_pidfd()?;
    let join = ns.map(|fd| fd.map_or(-1, |f| f.as_raw_fd()));
    let args = InitArgs {
        parent_pidfd,
        join,
        name: CString::from(c"podrun-pause"),
    };
    // PR_SET_PDEATHSIG follows the creating thread: clone on the long-lived spawner.
    let (pid, pidfd) = podrun_process::run_on_spawner(move || clone_init(&args))??;
    Ok(PodInit { pid, pidfd })
}

fn clone_init(args: &InitArgs) -> io::Result<(u32, OwnedFd)> {
    const STACK: usize = 64 * 1024;
    let mut stack = vec![0u8; STACK];
    let mut pidfd: c_int = -1;
    // No CLONE_VM: the init is a copy of this process that outlives this call. Its code
    // only makes raw system calls, as after fork in a threaded program.
    // SAFETY: the child runs `init_main` on its own copy of `stack` with its own copy of
    // `args`; pidfd is written by the kernel before clone returns.
    let pid = unsafe {
        libc::clone(
            init_main,
            stack.as_mut_ptr().wrapping_add(STACK) as *mut c_void,
            libc::CLONE_NEWPID | libc::CLONE_PIDFD | libc::SIGCHLD,
            args as *const InitArgs as *mut c_void,
            &mut pidfd as *mut c_int,
        )
    };
    if pid < 0 {
        return Err(with_step("clone pod init", io::Error::last_os_error()));
    }
    drop(stack);
    // SAFETY: CLONE_PIDFD stored a fresh descriptor owned by nobody else.
    Ok((pid as u32, unsafe { OwnedFd::from_raw_fd(pidfd) }))
}

extern "C" fn init_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` points at this process's copy of the `InitArgs`; only raw system
    // calls follow.
    unsafe {
        let args = &*(arg as *const InitArgs);
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        let mut pfd = libc::pollfd {
            fd: args.parent_pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 0) != 0 {
            libc::_exit(1);
        }
        let types = [libc::CLONE_NEWNET, libc::CLONE_NEWUTS, libc::CLONE_NEWIPC];
        for (fd, nstype) in args.join.iter().zip(types) {
            if *fd >= 0 && libc::setns(*fd, nstype) != 0 {
                libc::_exit(2);
            }
        }
        libc::prctl(
            libc::PR_SET_NAME,
            args.name.as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        let mut chld: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(&chld, &mut info);
            let mut status = 0;
            while libc::waitpid(-1, &mut status, libc::WNOHANG) > 0 {}
        }
    }
}

impl PodInit {
    /// Kills the init (and so every process of the pod's PID namespace) and reaps it.
    pub fn kill(self) {
        // SAFETY: pidfd_send_signal on a pidfd we own.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            );
        }
        loop {
            match rustix::process::waitid(
                rustix::process::WaitId::PidFd(std::os::fd::AsFd::as_fd(&self.pidfd)),
                rustix::process::WaitIdOptions::EXITED,
            ) {
                Err(e) if e == rustix::io::Errno::INTR => continue,
                _ => return,
            }
        }
    }
}
