//! Change notification across processes: inotify on the state directory.
//!
//! Every podrun writer rewrites one byte of `store.changed` after each commit, and
//! the kernel wakes every watching instance at once; nothing polls the database.
//! Chosen over a datagram socket per instance because writers need no registry of
//! listeners (a `podrun delete` from another terminal notifies without knowing who
//! listens), and a listener that died leaves nothing behind.
//!
//! Why not the WAL file alone: SQLite appends a commit's frames to `store.db-wal`
//! before it syncs them and publishes the commit in the shared-memory index, so a
//! reader woken by that write looks too early and finds nothing — measured here as
//! every cross-process event arriving only with the *next* write. The WAL is still
//! watched, for writers that are not podrun (the `sqlite3` CLI): such a wake-up is
//! followed by a second look shortly after. A wake-up that finds no new row costs one
//! indexed query.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::Path;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Wakes when a writer announces a commit, or the database's WAL file changes.
pub struct WalWatcher {
    fd: AsyncFd<InotifyFd>,
    wal_name: String,
    changed_name: String,
}

/// What woke the watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A podrun writer announced a commit (it is visible now).
    Committed,
    /// The WAL file changed: a commit may become visible shortly.
    Wal,
}

struct InotifyFd(Inotify);

impl std::os::fd::AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl WalWatcher {
    /// Watches `dir` for changes of `changed_file` and `<db_file>-wal`. Needs a tokio
    /// runtime.
    pub fn new(dir: &Path, db_file: &str, changed_file: &str) -> std::io::Result<WalWatcher> {
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
            changed_name: changed_file.to_string(),
        })
    }

    /// Waits for the next change (several queued changes count as one; an announced
    /// commit wins over a WAL change).
    pub async fn changed(&self) -> std::io::Result<Change> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut hit = None;
            loop {
                match guard.get_inner().0.read_events() {
                    Ok(events) => {
                        for e in &events {
                            let name = e.name.as_deref();
                            if name == Some(OsStr::new(&self.changed_name)) {
                                hit = Some(Change::Committed);
                            } else if name == Some(OsStr::new(&self.wal_name)) {
                                hit = hit.or(Some(Change::Wal));
                            }
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(change) = hit {
                return Ok(change);
            }
        }
    }
}
