//! Change notification across processes: inotify on the state directory, filtered to
//! the database's WAL file.
//!
//! Every commit in WAL mode appends frames to `store.db-wal`, so a modification of that
//! file is a write by some process — this one or another. The kernel wakes the
//! watching instance at once; nothing polls the database. Chosen over a datagram socket
//! per instance because writers need no registry of listeners (a `podrun delete` from
//! another terminal, or the `sqlite3` CLI, notifies without knowing who listens), and a
//! listener that died leaves nothing behind. A wake-up that finds no new row (this
//! instance's own commit, a checkpoint) costs one indexed query.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::Path;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Wakes when the database's WAL file changes.
pub struct WalWatcher {
    fd: AsyncFd<InotifyFd>,
    wal_name: String,
}

struct InotifyFd(Inotify);

impl std::os::fd::AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl WalWatcher {
    /// Watches `dir` for changes of `<db_file>-wal`. Needs a tokio runtime.
    pub fn new(dir: &Path, db_file: &str) -> std::io::Result<WalWatcher> {
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        ino.add_watch(
            dir,
            AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
        )?;
        // SAFETY: the descriptor is owned by the `Inotify` inside the `AsyncFd`, so it
        // stays open for as long as it is registered.
        let fd = unsafe { AsyncFd::register_with_interest(InotifyFd(ino), Interest::READABLE) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(WalWatcher {
            fd,
            wal_name: format!("{db_file}-wal"),
        })
    }

    /// Waits for the next change of the WAL file (several queued changes count as one).
    pub async fn changed(&self) -> std::io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut hit = false;
            loop {
                match guard.get_inner().0.read_events() {
                    Ok(events) => {
                        hit |= events
                            .iter()
                            .any(|e| e.name.as_deref() == Some(OsStr::new(&self.wal_name)));
                    }
                    Err(nix::errno::Errno::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if hit {
                return Ok(());
            }
        }
    }
}
