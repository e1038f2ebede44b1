//! The sandbox workers: a few long-lived threads that make every pod sandbox, in the
//! order the pods asked.
//!
//! Making a sandbox is mostly kernel work under locks that serialise it anyway (a network
//! namespace, a veth pair, addresses and routes all take the RTNL lock), so running a
//! hundred at once only makes each one wait for the CPU and the lock behind the others.
//! Instead at most [`worker_count`] sandboxes are made at a time and the rest queue: the
//! time a pod spends in the queue is reported apart from the work itself
//! ([`super::Sandbox::queue_time`], [`super::Sandbox::setup_time`]).
//!
//! Workers run at a raised priority (nice -10), so a busy machine delays a sandbox
//! less. A worker also saves per-pod costs: it enters a pod's new namespaces and returns
//! to its own with `setns` instead of starting a thread per pod, and it keeps one host
//! netlink socket. A worker that cannot return to its namespaces ends, and a new one is
//! started by the next request.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

use super::netlink::Netlink;
use super::ns::{Home, Stranded};

/// What a job gets to work with: the worker's own namespaces and host netlink socket.
#[derive(Debug)]
pub(crate) struct Worker {
    /// The namespaces the worker returns to after making a pod's.
    pub home: Home,
    netlink: Option<Netlink>,
}

impl Worker {
    /// The worker's netlink socket in the host's network namespace, opened on first use.
    pub fn host_netlink(&mut self) -> std::io::Result<&mut Netlink> {
        match &mut self.netlink {
            Some(nl) => Ok(nl),
            slot => Ok(slot.insert(Netlink::open()?)),
        }
    }

    /// Drops the netlink socket after an error, so the next job opens a fresh one.
    pub fn reset_netlink(&mut self) {
        self.netlink = None;
    }
}

/// A queued job: it gets the worker and the instant it was queued, and returns
/// `Err(Stranded)` if it left the worker outside its namespaces.
type Job = Box<dyn FnOnce(&mut Worker, Instant) -> Result<(), Stranded> + Send>;

struct Queue {
    jobs: Mutex<VecDeque<(Job, Instant)>>,
    ready: Condvar,
    /// Workers alive.
    alive: AtomicUsize,
}

fn queue() -> &'static Queue {
    static QUEUE: OnceLock<Queue> = OnceLock::new();
    QUEUE.get_or_init(|| Queue {
        jobs: Mutex::new(VecDeque::new()),
        ready: Condvar::new(),
        alive: AtomicUsize::new(0),
    })
}

/// How many sandboxes are made at a time: one per two CPUs, at least one and at most
/// four. Most of the work holds the RTNL lock, so on two CPUs a second worker mostly
/// waits for the first (and takes CPU from the containers being started meanwhile).
pub fn worker_count() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / 2).clamp(1, 4)
}

/// The workers' nice value. A worker is busy a few milliseconds per pod, and every pod
/// waits for it before its first container starts; at the default priority it is
/// preempted, often while holding the RTNL lock, by whatever else keeps the CPUs busy
/// (the containers of the pods made just before, or unrelated work).
const WORKER_NICE: libc::c_int = -10;

/// Queues `job`; it runs on a worker. Starts workers up to [`worker_count`] (the calling
/// thread's namespaces become theirs, so call from podrun's own, as every pod worker and
/// blocking task is).
pub(crate) fn submit(
    job: impl FnOnce(&mut Worker, Instant) -> Result<(), Stranded> + Send + 'static,
) -> std::io::Result<()> {
    let q = queue();
    let mut jobs = q.jobs.lock().unwrap_or_else(|e| e.into_inner());
    while q.alive.load(Ordering::SeqCst) < worker_count() {
        let home = Home::here()?;
        q.alive.fetch_add(1, Ordering::SeqCst);
        let started = std::thread::Builder::new()
            .name("podrun-sandbox".into())
            .spawn(move || run(home));
        if let Err(e) = started {
            q.alive.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
    }
    jobs.push_back((Box::new(job), Instant::now()));
    q.ready.notify_one();
    Ok(())
}

/// Descriptors the process's table is grown to hold before the first sandbox (at most the
/// soft `RLIMIT_NOFILE`).
const DESCRIPTOR_ROOM: u64 = 4096;

/// Grows the process's descriptor table once, up front. Every pod keeps a few descriptors
/// open for its life (its namespaces, its containers' pidfds and pipes: about eight), so a
/// hundred pods take the table through several sizes, and growing a table other threads
/// share waits for an RCU grace period (tens of milliseconds on a busy machine) in
/// whichever thread opened the descriptor that did not fit: often a sandbox worker, in
/// the middle of a pod's setup. The table never shrinks; 4096 slots take 32 KiB.
fn reserve_descriptors(home: &Home) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(DESCRIPTOR_ROOM);
        let top = soft.min(DESCRIPTOR_ROOM).saturating_sub(1) as libc::c_int;
        // SAFETY: fcntl(2) duplicating a descriptor we own onto the lowest free number at
        // or above `top`; the duplicate is closed at once.
        unsafe {
            let fd = libc::fcntl(home.raw(), libc::F_DUPFD_CLOEXEC, top);
            if fd >= 0 {
                libc::close(fd);
            }
        }
    });
}

fn run(home: Home) {
    // Before the first job: its pod sees the wait as time in the queue.
    reserve_descriptors(&home);
    // SAFETY: setpriority(2) of this thread (a thread id is a process id to it).
    if unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            WORKER_NICE,
        )
    } != 0
    {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "cannot raise the sandbox worker's priority"
        );
    }
    let q = queue();
    let mut worker = Worker {
        home,
        netlink: None,
    };
    loop {
        let (job, queued) = {
            let mut jobs = q.jobs.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(j) = jobs.pop_front() {
                    break j;
                }
                jobs = q.ready.wait(jobs).unwrap_or_else(|e| e.into_inner());
            }
        };
        if job(&mut worker, queued).is_err() {
            // This thread is in a pod's namespaces: it must not take another job. The next
            // submit starts a replacement from a thread that is not.
            q.alive.fetch_sub(1, Ordering::SeqCst);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::ns;
    use std::os::unix::fs::MetadataExt;

    fn ino(path: &str) -> u64 {
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn a_worker_is_back_in_its_namespaces_after_making_a_pods() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: it creates namespaces"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netns");
        let (tx, rx) = std::sync::mpsc::channel();
        submit(move |worker, _| {
            let req = ns::Request {
                netns_path: Some(path.clone()),
                hostname: Some("worker-test".into()),
            };
            let created = ns::create(&req, &worker.home)?.expect("namespaces");
            let fd_ino = |fd: &std::os::fd::OwnedFd| {
                std::fs::File::from(fd.try_clone().unwrap())
                    .metadata()
                    .unwrap()
                    .ino()
            };
            let pod = [
                fd_ino(created.net.as_ref().unwrap()),
                fd_ino(created.uts.as_ref().unwrap()),
                fd_ino(&created.ipc),
            ];
            let mounted = ino(&path.display().to_string());
            let now = ["net", "uts", "ipc"].map(|k| ino(&format!("/proc/thread-self/ns/{k}")));
            ns::unbind_netns(&path).unwrap();
            tx.send((pod, mounted, now)).unwrap();
            Ok(())
        })
        .unwrap();
        let (pod, mounted, now) = rx.recv().unwrap();
        let host = ["net", "uts", "ipc"].map(|k| ino(&format!("/proc/thread-self/ns/{k}")));
        assert_eq!(now, host, "the worker returned to podrun's namespaces");
        for (p, h) in pod.iter().zip(host) {
            assert_ne!(*p, h, "the pod got namespaces of its own");
        }
        assert_eq!(mounted, pod[0], "the network namespace is bind-mounted");
        // The descriptor table was grown before the first job.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let size: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(DESCRIPTOR_ROOM);
        assert!(size >= soft.min(DESCRIPTOR_ROOM), "FDSize {size}");
    }
}
