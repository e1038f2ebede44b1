//! The object store's SQLite backend and its watch fan-out.
//!
//! [`SqliteStorage`] implements the core's [`Storage`](podrun_store::Storage) in one
//! SQLite file per state directory (`<state>/store.db`, WAL mode, `synchronous=FULL`,
//! one transaction per write: a write acknowledged is a write that survives SIGKILL and
//! power loss). Any podrun process may open it: `podrun get` reads while
//! `podrun run` writes, and `podrun delete` writes from another terminal; SQLite's
//! locks serialise writers, and revisions stay one global sequence.
//!
//! [`SqliteStore`] adds what a running instance needs on top: a lock around the
//! writing connection, uid and time stamping, and watches. One hub task per instance
//! reads new rows once after each change — a write of this process, or any process's
//! write seen through inotify on the WAL file ([`notify`]) — and broadcasts them; each
//! watch filters what it receives through the core's [`Watch`] cursor. A watch that
//! falls behind the broadcast catches up from the table itself, so it never misses a
//! row; one that falls behind the retained window gets `410 Expired`.
//!
//! Why SQLite: other processes must read (and `podrun delete` write) the store while an
//! instance runs, which SQLite's WAL gives with plain file locks; an embedded store that
//! one process owns (redb) would have put every other terminal behind a socket to the
//! running instance. A user can also read the table with the `sqlite3` CLI. Figures
//! and the bench command: `docs/store.md`.
//!
//! This crate must never decide object semantics: those are the core's.

pub mod notify;
pub mod storage;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use podrun_store::{
    ApiError, DeleteOptions, Deleted, EncodedList, List, ListOptions, ResourceType, Row, Stamp,
    Storage, Store, Watch, WatchEvent, WatchOptions,
};
use serde_json::Value;
use tokio::sync::{Notify, broadcast};

pub use storage::{CHANGED_FILE, DB_FILE, Error, SCHEMA_VERSION, SqliteStorage};

/// Rows the hub keeps for watches that are slow to read; beyond that, they catch up
/// from the table.
const FAN_OUT_BUFFER: usize = 4096;

/// Revisions kept watchable by default (the API server's watch cache keeps a window of
/// events too; a watch from before it relists).
const RETAINED_REVISIONS: u64 = 10_000;

/// When the hub looks again after the WAL changed without an announced commit.
const WAL_RECHECK: Duration = Duration::from_millis(20);

/// Rows the hub reads per query.
const HUB_CHUNK: usize = 1024;

/// A running instance's store: the SQLite log, stamping, and watch fan-out.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    fan_out_buffer: usize,
    retain: u64,
    store: Mutex<Store<SqliteStorage>>,
    wrote: Notify,
    hub: OnceLock<broadcast::Sender<Arc<Row>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

/// The wall clock as a timestamp.
pub fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::new(since.as_secs() as i64, since.subsec_nanos() as i32).unwrap_or_default()
}

/// A fresh stamp: the wall clock and a random (v4) uid.
pub fn stamp() -> Stamp {
    Stamp {
        now: now(),
        uid: uuid::Uuid::new_v4().to_string(),
    }
}

impl SqliteStore {
    /// Opens the store of a state directory. A directory laid out by an older podrun,
    /// or a database of another schema, is refused with an error that says so.
    pub fn open(dir: &Path) -> Result<SqliteStore, Error> {
        let storage = SqliteStorage::open(dir)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                fan_out_buffer: FAN_OUT_BUFFER,
                retain: RETAINED_REVISIONS,
                store: Mutex::new(Store::new(storage)),
                wrote: Notify::new(),
                hub: OnceLock::new(),
            }),
        })
    }

    /// Sets how many rows the fan-out holds for slow watches before they must catch
    /// up from the table (default 4096). Only before the first watch.
    pub fn with_fan_out_buffer(mut self, rows: usize) -> SqliteStore {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.fan_out_buffer = rows.max(1);
        }
        self
    }

    /// Sets how many of the newest revisions stay watchable (default 10,000): after
    /// writes through this instance, older history is compacted away. Only before the
    /// store is shared.
    pub fn with_retained_revisions(mut self, revisions: u64) -> SqliteStore {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.retain = revisions.max(1);
        }
        self
    }

    /// The core store, locked (reads and writes of the core's whole API).
    pub fn lock(&self) -> MutexGuard<'_, Store<SqliteStorage>> {
        // A panic while holding the lock cannot leave a torn write behind (each write
        // is one SQLite transaction), so a poisoned lock is still sound to use.
        self.inner
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn written<T>(&self, r: Result<T, ApiError>) -> Result<T, ApiError> {
        if r.is_ok() {
            self.inner.wrote.notify_one();
            self.compact_if_due();
        }
        r
    }

    /// Keeps the newest `retain` revisions watchable and forgets older history, in steps
    /// of a tenth of the window rather than at every write.
    fn compact_if_due(&self) {
        let retain = self.inner.retain;
        let mut s = self.lock();
        let (Ok(head), Ok(compacted)) = (s.revision(), s.compacted()) else {
            return;
        };
        if head.saturating_sub(compacted) > retain + retain / 10 {
            // A failed compaction leaves more history than needed, nothing worse; the
            // next write tries again.
            let _ = s.compact(head - retain);
        }
    }

    /// Creates an object, stamped now with a fresh uid.
    pub fn create(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let r = self.lock().create(rt, namespace, obj, &stamp());
        self.written(r)
    }

    /// Reads an object.
    pub fn get(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.lock().get(rt, namespace, name)
    }

    /// Replaces an object.
    pub fn update(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let r = self.lock().update(rt, namespace, name, obj);
        self.written(r)
    }

    /// Replaces an object's status.
    pub fn update_status(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let r = self.lock().update_status(rt, namespace, name, obj);
        self.written(r)
    }

    /// Deletes an object (now).
    pub fn delete(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let r = self.lock().delete(rt, namespace, name, opts, now());
        self.written(r)
    }

    /// Lists a collection at one revision.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<List, ApiError> {
        self.lock().list(rt, namespace, opts)
    }

    /// Lists a collection at one revision, each item the stored JSON with its
    /// `resourceVersion` (see [`Store::list_encoded`]).
    pub fn list_encoded(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<EncodedList, ApiError> {
        self.lock().list_encoded(rt, namespace, opts)
    }

    /// Compacts history, keeping the newest `keep` revisions watchable.
    pub fn compact_keep(&self, keep: u64) -> Result<(), ApiError> {
        let mut s = self.lock();
        let head = s.revision()?;
        s.compact(head.saturating_sub(keep))
    }

    /// Opens a watch. Its first events (initial `ADDED`s, the end-of-initial-events
    /// bookmark, and anything written since the requested revision) are ready at once.
    /// Needs a tokio runtime (the first watch starts the instance's hub).
    pub fn watch(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &WatchOptions,
    ) -> Result<WatchStream, ApiError> {
        let rows = self.hub()?.subscribe();
        let store = self.lock();
        let (mut watch, mut pending) = store.watch(rt, namespace, opts)?;
        pending.extend(watch.catch_up(&store)?);
        drop(store);
        Ok(WatchStream {
            store: self.clone(),
            watch,
            pending: pending.into(),
            rows,
            failed: false,
        })
    }

    fn hub(&self) -> Result<&broadcast::Sender<Arc<Row>>, ApiError> {
        if let Some(h) = self.inner.hub.get() {
            return Ok(h);
        }
        // The hub reads through its own connection so it never waits for a writer's
        // lock, and wakes on inotify for other processes' writes.
        let reader = SqliteStorage::open(&self.inner.dir).map_err(ApiError::internal)?;
        let wal = notify::WalWatcher::new(&self.inner.dir, DB_FILE, storage::CHANGED_FILE)
            .map_err(ApiError::internal)?;
        let start = reader.revision().map_err(ApiError::internal)?;
        let (tx, _) = broadcast::channel(self.inner.fan_out_buffer);
        if self.inner.hub.set(tx.clone()).is_err() {
            // Another watch started the hub first.
            return self
                .inner
                .hub
                .get()
                .ok_or_else(|| ApiError::internal("hub"));
        }
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(run_hub(inner, reader, wal, start, tx));
        self.inner
            .hub
            .get()
            .ok_or_else(|| ApiError::internal("hub"))
    }
}

async fn run_hub(
    inner: std::sync::Weak<Inner>,
    reader: SqliteStorage,
    wal: notify::WalWatcher,
    mut after: u64,
    tx: broadcast::Sender<Arc<Row>>,
) {
    let mut recheck_wal = false;
    loop {
        loop {
            let rows = match reader.events("", after, HUB_CHUNK) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing_error(&e);
                    break;
                }
            };
            let n = rows.len();
            for row in rows {
                after = row.revision;
                let _ = tx.send(Arc::new(row));
            }
            if n < HUB_CHUNK {
                break;
            }
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let wait = if recheck_wal {
            WAL_RECHECK
        } else {
            Duration::from_secs(5)
        };
        recheck_wal = false;
        tokio::select! {
            () = strong.wrote.notified() => {}
            r = wal.changed() => match r {
                Ok(notify::Change::Committed) => {}
                // A commit by a writer that does not announce may not be visible yet.
                Ok(notify::Change::Wal) => recheck_wal = true,
                // inotify failed: fall back to a slow timer rather than go deaf.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            // A missed wake-up, or the second look after a WAL change.
            () = tokio::time::sleep(wait) => {}
        }
        drop(strong);
        if tx.receiver_count() == 0 && inner.strong_count() == 0 {
            return;
        }
    }
}

fn tracing_error(e: &Error) {
    eprintln!("podrun store: reading new rows: {e}");
}

/// One watch's stream of events.
pub struct WatchStream {
    store: SqliteStore,
    watch: Watch,
    pending: std::collections::VecDeque<WatchEvent>,
    rows: broadcast::Receiver<Arc<Row>>,
    failed: bool,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("revision", &self.watch.revision())
            .finish()
    }
}

impl WatchStream {
    /// The next event; `None` once the stream has ended (after an `ERROR` event, such as
    /// a 410 when the watch fell out of the retained window).
    pub async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.failed {
                return None;
            }
            match self.rows.recv().await {
                Ok(row) => {
                    if let Some(e) = self.watch.handle_row(&row) {
                        return Some(e);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let store = self.store.lock();
                    match self.watch.catch_up(&store) {
                        Ok(evs) => self.pending.extend(evs),
                        Err(e) => {
                            self.failed = true;
                            self.pending.push_back(WatchEvent::error(&e));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event, or — when the client allowed bookmarks and nothing came for
    /// `every` — a `BOOKMARK` at the newest revision seen, as the API server sends one
    /// now and then so a client resumes from a recent revision.
    pub async fn next_or_bookmark(&mut self, every: Duration) -> Option<WatchEvent> {
        if !self.watch.bookmarks_allowed() {
            return self.next().await;
        }
        // `next` is cancel-safe: an event not yet returned stays queued.
        match tokio::time::timeout(every, self.next()).await {
            Ok(event) => event,
            Err(_) => self.watch.bookmark(),
        }
    }

    /// A `BOOKMARK` at the newest revision this watch has seen, if the client allowed
    /// bookmarks (the caller sends one now and then, as the API server does every
    /// minute or so).
    pub fn bookmark(&self) -> Option<WatchEvent> {
        self.watch.bookmark()
    }

    /// The newest revision this watch has seen.
    pub fn revision(&self) -> u64 {
        self.watch.revision()
    }
}
