//! What happens between `clone` and `exec`.
//!
//! Everything the child needs is prepared by the parent ([`ChildPlan`]: C strings, pointer
//! arrays, file descriptors, mount operations). The child runs with `CLONE_VM | CLONE_VFORK`
//! on a stack of its own, like `posix_spawn`: it shares the parent's memory while the parent
//! thread is suspended, so it may only make raw system calls — no allocation, no locks, no
//! panics. It reports a failure by writing a [`ChildReport`] into memory the parent reads
//! once `clone` returns (by then the child has either exec'd or exited).
//!
//! All clones happen on one long-lived thread ([`podrun_process::run_on_spawner`]):
//! `PR_SET_PDEATHSIG` fires when the *thread* that created the child exits, so cloning from
//! a short-lived thread (tokio's blocking pool) would kill containers at random.

use std::ffi::{CString, c_int, c_void};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub(crate) use podrun_process::{run_on_spawner, self_pidfd};

/// Size of each child stack. The child code is small and non-recursive; this is generous.
const CHILD_STACK: usize = 256 * 1024;

/// One prepared mount-namespace operation (see `rootfs::MountOp`).
#[derive(Debug)]
pub(crate) enum RawOp {
    MakeRootPrivate,
    Tmpfs {
        target: CString,
        devices: bool,
        data: CString,
    },
    MakeUnbindable {
        target: CString,
    },
    Mkdir {
        path: CString,
    },
    Touch {
        path: CString,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    CharDevice {
        path: CString,
        dev: libc::dev_t,
    },
    Bind {
        source: CString,
        target: CString,
        read_only: bool,
    },
    Special {
        fstype: CString,
        target: CString,
        flags: libc::c_ulong,
        data: CString,
    },
    PivotRoot {
        new_root: CString,
    },
    ReadOnly {
        target: CString,
    },
    Mask {
        target: CString,
        dir: bool,
        null: CString,
    },
    ReadOnlyPath {
        target: CString,
    },
    NewCgroupNamespace,
}

/// Everything the child needs, built before cloning.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    /// Mount operations (empty without isolation).
    pub ops: Vec<RawOp>,
    /// Hostname to set (only with a new UTS namespace).
    pub hostname: Option<CString>,
    /// Directory to change to after the root is in place.
    pub cwd: Option<CString>,
    /// Paths to try for `execve`, in order (one unless `$PATH` was searched).
    pub candidates: Vec<CString>,
    /// Keeps the argv strings alive for `argv_ptrs`.
    pub _argv: Vec<CString>,
    /// Null-terminated argv.
    pub argv_ptrs: Vec<*const libc::c_char>,
    /// Keeps the env strings alive for `envp_ptrs`.
    pub _envp: Vec<CString>,
    /// Null-terminated envp.
    pub envp_ptrs: Vec<*const libc::c_char>,
    /// The child's fd 0, 1 and 2 (all ≥ 3 and close-on-exec in the parent).
    pub stdio: [RawFd; 3],
    /// A pidfd of this process: the child checks it is still alive after arming PDEATHSIG.
    pub parent_pidfd: RawFd,
    /// For exec in a running container: its pidfd and the namespaces to join.
    pub setns: Option<(RawFd, c_int)>,
    /// Extra clone flags of the process started after `setns` (e.g. `CLONE_NEWNS` for a
    /// container that joins its pod's shared PID namespace but has its own mounts).
    pub inner_flags: c_int,
    /// Pod namespaces (fd, `CLONE_NEW*` type) the child joins before anything else, so
    /// that mounts such as sysfs see the pod's network.
    pub join: Vec<(RawFd, c_int)>,
    /// `cgroup.procs` files of the container's cgroups: the child writes `0` (itself) to
    /// each before anything else, so nothing it does escapes its limits.
    pub cgroup_procs: Vec<OwnedFd>,
    /// Credentials, capabilities and `no_new_privs` applied after the mounts, before exec.
    pub security: Option<ChildSecurity>,
    /// fd 0 is a terminal to make the controlling terminal of the new session.
    pub controlling_terminal: bool,
}

/// The security settings in raw form (see `crate::security::SecurityPlan`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ChildSecurity {
    /// (uid, gid, supplementary groups) to switch to.
    pub credentials: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    /// (bounding, permitted, effective, inheritable, ambient) masks.
    pub capabilities: Option<[u64; 5]>,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
}

// SAFETY: the raw pointers point into the CStrings owned by the same plan; the plan is moved
// to the spawner thread as a whole and only read there.
unsafe impl Send for ChildPlan {}

/// Where the child failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Nothing failed.
    None,
    /// `PR_SET_PDEATHSIG`.
    DeathSignal,
    /// The parent died before the child armed PDEATHSIG.
    ParentGone,
    /// `setsid`.
    Setsid,
    /// Joining the container's namespaces.
    Setns,
    /// Cloning the process that runs inside the container.
    CloneInner,
    /// Mount operation number `n`.
    Op(usize),
    /// `sethostname`.
    Hostname,
    /// Wiring fd 0–2.
    Stdio,
    /// `chdir` to the working directory.
    Chdir,
    /// `execve`; `searched` tells whether `$PATH` was searched.
    Exec,
    /// Joining the container's cgroup.
    Cgroup,
    /// Dropping capabilities from the bounding set.
    BoundingSet,
    /// `setgroups`/`setresgid`/`setresuid`.
    Credentials,
    /// `capset` or the ambient set.
    Capabilities,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
}

/// Written by the child, read by the parent after `clone` returns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildReport {
    pub stage: Stage,
    pub errno: i32,
    /// For exec in a container: host pid of the process started inside it.
    pub inner_pid: libc::pid_t,
}

struct ChildArgs {
    plan: *const ChildPlan,
    report: *mut ChildReport,
    inner_stack: *mut u8,
}

/// The result of a clone: the child's pidfd and pid plus its report.
#[derive(Debug)]
pub(crate) struct Cloned {
    pub pidfd: OwnedFd,
    pub pid: libc::pid_t,
    pub report: ChildReport,
}

/// Clones a child that executes `plan` (call on the spawner thread). `flags` are namespace
/// flags (`CLONE_NEWPID | CLONE_NEWNS | …`) or 0.
pub(crate) fn clone_child(plan: &ChildPlan, ns_flags: c_int) -> std::io::Result<Cloned> {
    let mut stack = vec![0u8; CHILD_STACK];
    let mut inner_stack = if plan.setns.is_some() {
        vec![0u8; CHILD_STACK]
    } else {
        Vec::new()
    };
    let mut report = ChildReport {
        stage: Stage::None,
        errno: 0,
        inner_pid: 0,
    };
    let args = ChildArgs {
        plan,
        report: &mut report,
        inner_stack: if inner_stack.is_empty() {
            std::ptr::null_mut()
        } else {
            // Stacks grow down on every architecture we build for.
            inner_stack.as_mut_ptr().wrapping_add(CHILD_STACK)
        },
    };
    let entry: extern "C" fn(*mut c_void) -> c_int = if plan.setns.is_some() {
        enter_then_spawn
    } else {
        child_main
    };
    let mut pidfd: c_int = -1;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | ns_flags | libc::SIGCHLD;
    // SAFETY: the child runs `entry` on its own stack with `args`, which live until clone
    // returns (CLONE_VFORK suspends this thread until the child has exec'd or exited). The
    // child only performs async-signal-safe system calls on memory prepared here.
    let pid = unsafe {
        libc::clone(
            entry,
            stack.as_mut_ptr().wrapping_add(CHILD_STACK) as *mut c_void,
            flags,
            &args as *const ChildArgs as *mut c_void,
            &mut pidfd as *mut c_int,
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The child wrote `report` before exec/exit; vfork completion orders it before this read.
    // SAFETY: reading our own stack variable; the child no longer runs on our memory.
    let report = unsafe { std::ptr::read_volatile(&report) };
    drop(inner_stack);
    drop(stack);
    // SAFETY: CLONE_PIDFD stored a fresh pidfd owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Cloned { pidfd, pid, report })
}

fn fail(args: &ChildArgs, stage: Stage) -> ! {
    // SAFETY: async-signal-safe: read errno, write the report slot, exit without atexit.
    unsafe {
        let errno = *libc::__errno_location();
        std::ptr::write_volatile(
            args.report,
            ChildReport {
                stage,
                errno,
                inner_pid: 0,
            },
        );
        libc::_exit(127)
    }
}

/// Intermediate for exec in a container: joins its namespaces, then clones the process that
/// runs the command as a sibling (`CLONE_PARENT`), so podrun reaps it directly, and exits.
extern "C" fn enter_then_spawn(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `ChildArgs` of `clone_child`, alive while we run.
    let args = unsafe { &*(arg as *const ChildArgs) };
    // SAFETY: the plan outlives the child (see clone_child).
    let plan = unsafe { &*args.plan };
    let Some((pidfd, nsflags)) = plan.setns else {
        fail(args, Stage::Setns)
    };
    // SAFETY: raw system calls only.
    unsafe {
        if libc::setns(pidfd, nsflags) != 0 {
            fail(args, Stage::Setns);
        }
        let pid = libc::clone(
            child_main,
            args.inner_stack as *mut c_void,
            libc::CLONE_VM
                | libc::CLONE_VFORK
                | libc::CLONE_PARENT
                | libc::SIGCHLD
                | plan.inner_flags,
            arg,
        );
        if pid < 0 {
            fail(args, Stage::CloneInner);
        }
        // Keep a failure the inner child reported; add its pid either way.
        let mut r = std::ptr::read_volatile(args.report);
        r.inner_pid = pid;
        std::ptr::write_volatile(args.report, r);
        libc::_exit(0)
    }
}

/// The container process (or exec'd command) between clone and exec.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `ChildArgs` of `clone_child`, alive while we run.
    let args = unsafe { &*(arg as *const ChildArgs) };
    // SAFETY: the plan outlives the child (see clone_child).
    let plan = unsafe { &*args.plan };
    // SAFETY: everything below is a raw system call on memory prepared by the parent.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            fail(args, Stage::DeathSignal);
        }
        // If podrun died before PDEATHSIG was armed, nobody would ever kill us.
        // (A pidfd turns readable when its process has exited; unlike pidfd_send_signal this
        // works from inside the new PID namespace.)
        let mut pfd = libc::pollfd {
            fd: plan.parent_pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 0) != 0 {
            fail(args, Stage::ParentGone);
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                // Fails harmlessly for the libc-internal real-time signals.
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        for fd in &plan.cgroup_procs {
            if libc::write(fd.as_raw_fd(), c"0".as_ptr() as *const c_void, 1) != 1 {
                fail(args, Stage::Cgroup);
            }
        }
        if libc::setsid() < 0 {
            fail(args, Stage::Setsid);
        }
        for &(fd, nstype) in &plan.join {
            if libc::setns(fd, nstype) != 0 {
                fail(args, Stage::Setns);
            }
        }
        // Device nodes and mount points get exactly the modes asked for (a umask would
        // leave /dev/null unwritable for a non-root user); the process's own umask is
        // back in place before exec.
        let umask = libc::umask(0);
        for (i, op) in plan.ops.iter().enumerate() {
            if run_op(op) != 0 {
                fail(args, Stage::Op(i));
            }
        }
        libc::umask(umask);
        if let Some(h) = &plan.hostname
            && libc::sethostname(h.as_ptr(), h.as_bytes().len()) != 0
        {
            fail(args, Stage::Hostname);
        }
        for (target, &fd) in plan.stdio.iter().enumerate() {
            if libc::dup2(fd, target as c_int) < 0 {
                fail(args, Stage::Stdio);
            }
        }
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            fail(args, Stage::Stdio);
        }
        if plan.controlling_terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
            fail(args, Stage::Stdio);
        }
        if let Some(sec) = &plan.security
            && let Err(stage) = apply_security(sec)
        {
            fail(args, stage);
        }
        if let Some(cwd) = &plan.cwd
            && libc::chdir(cwd.as_ptr()) != 0
        {
            fail(args, Stage::Chdir);
        }
        if plan.security.as_ref().is_some_and(|s| s.no_new_privs)
            && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        {
            fail(args, Stage::NoNewPrivs);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());

        // execvp's rules: keep searching on "not there", remember "permission denied",
        // stop on anything else.
        let mut saw_eacces = false;
        let mut last = libc::ENOENT;
        for cand in &plan.candidates {
            libc::execve(
                cand.as_ptr(),
                plan.argv_ptrs.as_ptr(),
                plan.envp_ptrs.as_ptr(),
            );
            let e = *libc::__errno_location();
            match e {
                libc::EACCES => saw_eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => {
                    last = e;
                    break;
                }
            }
            last = e;
        }
        if saw_eacces && matches!(last, libc::ENOENT | libc::ENOTDIR) {
            last = libc::EACCES;
        }
        *libc::__errno_location() = last;
        fail(args, Stage::Exec)
    }
}

/// Applies credentials and capabilities in runc's order: shrink the bounding set (needs
/// CAP_SETPCAP, so while still root), keep the permitted set across the uid change, switch
/// groups and ids, then set permitted/effective/inheritable and the ambient set.
///
/// # Safety
/// Only raw system calls on memory prepared by the parent; safe between clone and exec.
unsafe fn apply_security(sec: &ChildSecurity) -> Result<(), Stage> {
    // SAFETY: raw system calls with pointers into `sec`, which outlives the call.
    unsafe {
        if let Some([bounding, ..]) = sec.capabilities {
            for cap in 0..64u32 {
                if bounding & (1u64 << cap) == 0
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                    && *libc::__errno_location() != libc::EINVAL
                {
                    // EINVAL: a capability number the running kernel does not know.
                    return Err(Stage::BoundingSet);
                }
            }
        }
        if let Some((uid, gid, groups)) = &sec.credentials {
            if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
                return Err(Stage::Credentials);
            }
            // Raw syscalls, not the libc wrappers: glibc's set*id broadcast the change to
            // every thread of the process, and this child shares podrun's memory.
            if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0
                || libc::syscall(libc::SYS_setresgid, *gid, *gid, *gid) != 0
                || libc::syscall(libc::SYS_setresuid, *uid, *uid, *uid) != 0
            {
                return Err(Stage::Credentials);
            }
            if libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0 {
                return Err(Stage::Credentials);
            }
        }
        if let Some([_, permitted, effective, inheritable, ambient]) = sec.capabilities {
            let header = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let lo = |m: u64| m as u32;
            let hi = |m: u64| (m >> 32) as u32;
            let data = [
                CapData {
                    effective: lo(effective),
                    permitted: lo(permitted),
                    inheritable: lo(inheritable),
                },
                CapData {
                    effective: hi(effective),
                    permitted: hi(permitted),
                    inheritable: hi(inheritable),
                },
            ];
            if libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) != 0 {
                return Err(Stage::Capabilities);
            }
            if libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(Stage::Capabilities);
            }
            for cap in 0..64u32 {
                if ambient & (1u64 << cap) != 0
                    && libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    ) != 0
                {
                    return Err(Stage::Capabilities);
                }
            }
        }
    }
    Ok(())
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Runs one mount-namespace operation; returns 0 or -1 with errno set.
///
/// # Safety
/// Only raw system calls; safe to call between clone and exec.
unsafe fn run_op(op: &RawOp) -> c_int {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: all pointers come from live CStrings in the plan.
    unsafe {
        match op {
            RawOp::MakeRootPrivate => libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            RawOp::Tmpfs {
                target,
                devices,
                data,
            } => libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                if *devices {
                    libc::MS_NOSUID
                } else {
                    libc::MS_NOSUID | libc::MS_NODEV
                },
                data.as_ptr() as *const c_void,
            ),
            RawOp::MakeUnbindable { target } => libc::mount(
                null,
                target.as_ptr(),
                null,
                libc::MS_UNBINDABLE,
                std::ptr::null(),
            ),
            RawOp::Mkdir { path } => {
                if libc::mkdir(path.as_ptr(), 0o755) != 0
                    && *libc::__errno_location() != libc::EEXIST
                {
                    -1
                } else {
                    0
                }
            }
            RawOp::Touch { path } => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                if fd < 0 {
                    -1
                } else {
                    libc::close(fd);
                    0
                }
            }
            RawOp::Symlink { target, link } => libc::symlink(target.as_ptr(), link.as_ptr()),
            RawOp::CharDevice { path, dev } => {
                libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, *dev)
            }
            RawOp::Bind {
                source,
                target,
                read_only,
            } => {
                let r = libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                );
                if r != 0 || !*read_only {
                    return r;
                }
                // Read-only for the whole bound tree, submounts included.
                set_attr_recursive(target, MOUNT_ATTR_RDONLY)
            }
            RawOp::Special {
                fstype,
                target,
                flags,
                data,
            } => libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                *flags,
                data.as_ptr() as *const c_void,
            ),
            RawOp::ReadOnly { target } => {
                // Only this mount (not its submounts: volumes stay writable).
                let attr = MountAttr {
                    attr_set: MOUNT_ATTR_RDONLY,
                    attr_clr: 0,
                    propagation: 0,
                    userns_fd: 0,
                };
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    target.as_ptr(),
                    0 as libc::c_uint,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                ) as c_int
            }
            RawOp::Mask { target, dir, null } => {
                // runc's maskPath: a path the kernel does not have is left alone.
                let r = if *dir {
                    libc::mount(
                        c"tmpfs".as_ptr(),
                        target.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        c"size=0,mode=0755".as_ptr() as *const c_void,
                    )
                } else {
                    libc::mount(
                        null.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    )
                };
                if r != 0 && matches!(*libc::__errno_location(), libc::ENOENT | libc::ENOTDIR) {
                    0
                } else {
                    r
                }
            }
            RawOp::ReadOnlyPath { target } => {
                if libc::mount(
                    target.as_ptr(),
                    target.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                {
                    return if *libc::__errno_location() == libc::ENOENT {
                        0
                    } else {
                        -1
                    };
                }
                set_attr_recursive(
                    target,
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                )
            }
            RawOp::NewCgroupNamespace => libc::unshare(libc::CLONE_NEWCGROUP),
            RawOp::PivotRoot { new_root } => {
                // runc's trick: pivot onto "." and lazily detach the old root stacked under it,
                // so no put_old directory is needed.
                if libc::chdir(new_root.as_ptr()) != 0
                    || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
                    || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
                {
                    return -1;
                }
                libc::chdir(c"/".as_ptr())
            }
        }
    }
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// Sets the mount attributes `attr_set` on the mount at `target` and every mount below it
/// (`mount_setattr(2)` with `AT_RECURSIVE`); 0 or -1 with errno set. Only the raw system
/// call: safe to call between clone and exec.
fn set_attr_recursive(target: &std::ffi::CStr, attr_set: u64) -> c_int {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `target` is NUL-terminated and `attr` outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) as c_int
    }
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
