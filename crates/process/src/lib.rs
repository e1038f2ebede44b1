//! Processes on this host, as the node's containers and the network's pod sandboxes both
//! need them.
//!
//! * [`run_on_spawner`]: every long-lived child podrun clones — each container, each pod's
//!   init — is cloned on one long-lived thread. `PR_SET_PDEATHSIG` fires when the *thread*
//!   that created the child exits, so cloning from a short-lived thread (tokio's blocking
//!   pool) would kill children at random.
//! * [`self_pidfd`]: a pidfd of this process, which a child polls to learn that podrun
//!   died before it armed `PR_SET_PDEATHSIG`.
//! * [`process_start_time`]: a pid with its start time names one process even after the
//!   pid is reused; records of what podrun started keep both.
//! * [`isolation_available`]: whether this process may give its children namespaces of
//!   their own (it runs as root).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// Runs `f` on the spawner thread and returns its result.
pub fn run_on_spawner<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    static SPAWNER: OnceLock<std::sync::Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("podrun-spawner".into())
            .spawn(move || {
                // Block every signal on this thread: clone children start with this mask, so no
                // handler of ours can run inside a child that shares our memory. The child
                // restores default dispositions and an empty mask just before exec.
                // SAFETY: plain libc calls on a local sigset.
                unsafe {
                    let mut all: libc::sigset_t = std::mem::zeroed();
                    libc::sigfillset(&mut all);
                    libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
                }
                while let Ok(job) = rx.recv() {
                    job();
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the spawner thread");
        }
        std::sync::Mutex::new(tx)
    });
    let (rtx, rrx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = rtx.send(f());
    });
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    rrx.recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))
}

/// A pidfd of this process, opened once.
pub fn self_pidfd() -> std::io::Result<RawFd> {
    static FD: OnceLock<Result<OwnedFd, i32>> = OnceLock::new();
    let fd = FD.get_or_init(|| {
        rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|e| e.raw_os_error())
    });
    match fd {
        Ok(fd) => Ok(fd.as_raw_fd()),
        Err(e) => Err(std::io::Error::from_raw_os_error(*e)),
    }
}

/// Field 22 of `/proc/<pid>/stat`: the process start time in clock ticks since boot.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether this process can give its children their own namespaces (it runs as root).
pub fn isolation_available() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_this_process_is_readable() {
        assert!(process_start_time(std::process::id()).is_some());
        assert!(process_start_time(u32::MAX).is_none());
    }

    #[test]
    fn the_spawner_runs_every_job_on_one_thread() {
        let first = run_on_spawner(|| std::thread::current().id()).unwrap();
        let second = std::thread::spawn(|| run_on_spawner(|| std::thread::current().id()))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(first, second);
        assert_ne!(first, std::thread::current().id());
        assert_eq!(
            run_on_spawner(|| std::thread::current().name().map(String::from)).unwrap(),
            Some("podrun-spawner".to_string())
        );
    }

    #[test]
    fn the_pidfd_of_this_process_is_opened_once() {
        let fd = self_pidfd().unwrap();
        assert!(fd >= 0);
        assert_eq!(self_pidfd().unwrap(), fd);
    }
}
