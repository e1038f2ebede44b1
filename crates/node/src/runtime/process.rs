//! A child process known by its pidfd: exit events from the pidfd becoming readable (tokio
//! `AsyncFd`, no polling), reaping with `waitid(P_PIDFD)` only for this child (never
//! `waitpid(-1)`, which would steal tokio's own children), and signals that can never hit a
//! recycled pid.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustix::process::{WaitId, WaitIdOptions};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::ExitInfo;

/// An `Arc<OwnedFd>` that tokio can register: the fd stays open as long as any clone lives.
#[derive(Debug, Clone)]
struct SharedFd(Arc<OwnedFd>);

impl AsRawFd for SharedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Our child process: pid, pidfd and its exit status once reaped.
#[derive(Debug, Clone)]
pub(crate) struct ProcessHandle {
    pid: u32,
    pidfd: Arc<OwnedFd>,
    /// `Some` once reaped. Reaping and group signals happen under this lock, so a process
    /// group is never signalled after its leader's pid could have been recycled.
    status: Arc<Mutex<Option<ExitInfo>>>,
    exit_rx: watch::Receiver<Option<ExitInfo>>,
}

impl ProcessHandle {
    /// Starts watching `pidfd` for the exit of child `pid`. Needs a tokio runtime.
    pub(crate) fn watch(pid: u32, pidfd: OwnedFd) -> std::io::Result<ProcessHandle> {
        let pidfd = Arc::new(pidfd);
        let status = Arc::new(Mutex::new(None));
        let (tx, exit_rx) = watch::channel(None);
        // SAFETY: the fd is owned by the Arc inside SharedFd and stays open and unchanged for
        // the AsyncFd's whole life.
        let afd = unsafe {
            AsyncFd::register_with_interest(SharedFd(pidfd.clone()), tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        let handle = ProcessHandle {
            pid,
            pidfd,
            status,
            exit_rx,
        };
        let st = handle.status.clone();
        tokio::spawn(async move {
            loop {
                let mut guard = match afd.readable().await {
                    Ok(g) => g,
                    Err(e) => {
                        tracing::warn!(error = %e, pid, "pidfd watch failed; reaping in a blocking task");
                        let fd = afd.get_ref().clone();
                        let st = st.clone();
                        let tx = tx.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            if let Some(info) = reap(&fd.0, &st, false) {
                                let _ = tx.send(Some(info));
                            }
                        })
                        .await;
                        return;
                    }
                };
                if let Some(info) = reap(&afd.get_ref().0, &st, true) {
                    let _ = tx.send(Some(info));
                    return;
                }
                guard.clear_ready();
            }
        });
        Ok(handle)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn pidfd(&self) -> RawFd {
        self.pidfd.as_raw_fd()
    }

    /// The exit status if the process was already reaped.
    pub(crate) fn try_status(&self) -> Option<ExitInfo> {
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once the process has exited and was reaped. Cancel-safe.
    pub(crate) async fn wait(&self) -> ExitInfo {
        let mut rx = self.exit_rx.clone();
        if let Ok(v) = rx.wait_for(|v| v.is_some()).await
            && let Some(info) = *v
        {
            return info;
        }
        // The watcher task is gone (its runtime shut down): reap here.
        let fd = self.pidfd.clone();
        let st = self.status.clone();
        let blocking = tokio::task::spawn_blocking(move || reap(&fd, &st, false)).await;
        match blocking {
            Ok(Some(info)) => info,
            _ => self.try_status().unwrap_or(ExitInfo {
                exit_code: 137,
                signal: Some(libc::SIGKILL),
                finished_at: SystemTime::now(),
            }),
        }
    }

    /// Sends `sig` to the process (pidfd) and, with `group`, to its process group. A process
    /// that has already been reaped is left alone.
    pub(crate) fn signal(&self, sig: i32, group: bool) -> std::io::Result<()> {
        let st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if st.is_some() {
            return Ok(());
        }
        let sig = rustix::process::Signal::from_named_raw(sig)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        let direct = rustix::process::pidfd_send_signal(self.pidfd.as_fd(), sig);
        if group {
            // The leader is unreaped (we hold the lock), so its pid still names this group.
            // SAFETY: plain kill(2).
            unsafe { libc::kill(-(self.pid as libc::pid_t), sig.as_raw()) };
        }
        match direct {
            // A zombie not yet reaped: nothing left to signal.
            Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
            r => r.map_err(Into::into),
        }
    }

    /// Reaps synchronously if possible (used when the exit is known to be imminent).
    pub(crate) fn reap_blocking(&self) -> Option<ExitInfo> {
        reap(&self.pidfd, &self.status, false)
    }
}

/// `waitid(P_PIDFD, WEXITED)` under the status lock; `nohang` for the event-driven path.
fn reap(pidfd: &OwnedFd, status: &Mutex<Option<ExitInfo>>, nohang: bool) -> Option<ExitInfo> {
    let mut st = status.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(info) = *st {
        return Some(info);
    }
    let mut opts = WaitIdOptions::EXITED;
    if nohang {
        opts |= WaitIdOptions::NOHANG;
    }
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), opts) {
            Ok(Some(s)) => {
                let finished_at = SystemTime::now();
                let info = if let Some(code) = s.exit_status() {
                    ExitInfo {
                        exit_code: code,
                        signal: None,
                        finished_at,
                    }
                } else if let Some(sig) = s.terminating_signal() {
                    ExitInfo {
                        exit_code: 128 + sig,
                        signal: Some(sig),
                        finished_at,
                    }
                } else {
                    // Stop/continue events are not requested; treat anything else as not yet.
                    return None;
                };
                *st = Some(info);
                return Some(info);
            }
            Ok(None) => return None,
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) if e == rustix::io::Errno::CHILD => {
                // Someone else reaped it: the status is lost; report it the way the kubelet
                // reports a vanished container (137).
                tracing::warn!("child was reaped elsewhere; exit status unknown");
                let info = ExitInfo {
                    exit_code: 137,
                    signal: None,
                    finished_at: SystemTime::now(),
                };
                *st = Some(info);
                return Some(info);
            }
            Err(e) => {
                tracing::warn!(error = %e, "waitid on pidfd failed");
                return None;
            }
        }
    }
}
