//! A reflector: one kind listed and then watched into a cache, as client-go's
//! reflector and informer keep one. A watch that ends — an `ERROR` event such as the
//! 410 of a watch that fell out of the store's window, or a closed stream — is
//! followed by a fresh list, and every object that changed between the two (added,
//! modified, or gone) is announced, so a handler never misses a change of state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use podrun_store::{EventType, ListOptions, ResourceType, WatchOptions, object};
use podrun_store_sqlite::SqliteStore;
use serde_json::Value;
use tokio::sync::watch;

/// Called with every object that changed (its new state, or its last state if gone).
pub type Handler = Box<dyn Fn(&Value) + Send + Sync>;

/// How often an idle watch asks for a bookmark, so the cache's revision follows the
/// store's head even when nothing of this kind changes.
const BOOKMARK_EVERY: Duration = Duration::from_millis(500);

/// One kind's cache, kept by list + watch.
#[derive(Clone)]
pub struct Reflector {
    inner: Arc<Inner>,
}

struct Inner {
    rt: ResourceType,
    cache: RwLock<BTreeMap<String, Value>>,
    revision: watch::Sender<u64>,
    synced: watch::Sender<bool>,
    handlers: Mutex<Vec<Handler>>,
    relists: AtomicU64,
}

impl std::fmt::Debug for Reflector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reflector")
            .field("kind", &self.inner.rt.kind)
            .field("revision", &*self.inner.revision.borrow())
            .finish()
    }
}

/// The cache key of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn key_of(obj: &Value) -> String {
    match object::meta_str(obj, "namespace") {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", object::name(obj)),
        _ => object::name(obj).to_string(),
    }
}

/// Splits a cache key into namespace and name.
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

impl Reflector {
    /// A reflector for one kind; nothing is read until [`Reflector::spawn`].
    pub fn new(rt: &ResourceType) -> Reflector {
        Reflector {
            inner: Arc::new(Inner {
                rt: *rt,
                cache: RwLock::new(BTreeMap::new()),
                revision: watch::channel(0).0,
                synced: watch::channel(false).0,
                handlers: Mutex::new(Vec::new()),
                relists: AtomicU64::new(0),
            }),
        }
    }

    /// The kind reflected.
    pub fn resource(&self) -> &ResourceType {
        &self.inner.rt
    }

    /// Adds a handler for changes. Handlers added before [`Reflector::spawn`] see every
    /// object of the first list.
    pub fn on_change(&self, handler: Handler) {
        self.handlers().push(handler);
    }

    fn handlers(&self) -> std::sync::MutexGuard<'_, Vec<Handler>> {
        self.inner
            .handlers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn notify(&self, obj: &Value) {
        for h in self.handlers().iter() {
            h(obj);
        }
    }

    /// One object of the cache.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.read().get(key).cloned()
    }

    /// Every object of the cache, in key order.
    pub fn list(&self) -> Vec<Value> {
        self.read().values().cloned().collect()
    }

    /// The objects of the cache `pick` chooses, in key order; only those are copied.
    pub fn select(&self, pick: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.read().values().filter(|o| pick(o)).cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Value>> {
        self.inner
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Value>> {
        self.inner
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The store revision the cache reflects.
    pub fn revision(&self) -> u64 {
        *self.inner.revision.borrow()
    }

    /// How many times the cache was listed again after a watch ended.
    pub fn relists(&self) -> u64 {
        self.inner.relists.load(Ordering::Relaxed)
    }

    /// Waits until the first list is in the cache.
    pub async fn synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Waits until the cache reflects `revision` (a write the caller made), or
    /// `timeout` passes. Returns whether it got there.
    pub async fn wait_for(&self, revision: u64, timeout: Duration) -> bool {
        let mut rx = self.inner.revision.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Runs the list + watch loop until the task is aborted.
    pub fn spawn(&self, store: SqliteStore) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.run(store).await })
    }

    async fn run(self, store: SqliteStore) {
        let rt = self.inner.rt;
        let mut first = true;
        loop {
            if !first {
                self.inner.relists.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            let list = match store.list(&rt, None, &ListOptions::default()) {
                Ok(list) => list,
                Err(e) => {
                    tracing::warn!(kind = rt.kind, error = e.message(), "list failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            self.replace(list.items);
            self.inner.revision.send_replace(list.revision);
            self.inner.synced.send_replace(true);
            let opts = WatchOptions {
                resource_version: Some(list.revision.to_string()),
                allow_bookmarks: true,
                ..WatchOptions::default()
            };
            let mut stream = match store.watch(&rt, None, &opts) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(kind = rt.kind, error = e.message(), "watch failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            while let Some(event) = stream.next_or_bookmark(BOOKMARK_EVERY).await {
                match event.kind {
                    EventType::Added | EventType::Modified => {
                        let key = key_of(&event.object);
                        self.write().insert(key, event.object.clone());
                        self.notify(&event.object);
                    }
                    EventType::Deleted => {
                        let key = key_of(&event.object);
                        self.write().remove(&key);
                        self.notify(&event.object);
                    }
                    EventType::Bookmark => {}
                    EventType::Error => {
                        tracing::debug!(kind = rt.kind, status = %event.object, "watch ended; listing again");
                        break;
                    }
                }
                let seen = event.revision().max(stream.revision());
                self.inner.revision.send_if_modified(|r| {
                    let newer = seen > *r;
                    *r = (*r).max(seen);
                    newer
                });
            }
        }
    }

    /// Puts a fresh list in the cache and announces what differs from before: objects
    /// new or changed, and the last state of those gone.
    fn replace(&self, items: Vec<Value>) {
        let fresh: BTreeMap<String, Value> = items.into_iter().map(|o| (key_of(&o), o)).collect();
        let old = std::mem::replace(&mut *self.write(), fresh.clone());
        for (key, obj) in &old {
            if !fresh.contains_key(key) {
                self.notify(obj);
            }
        }
        for (key, obj) in &fresh {
            let same = old.get(key).is_some_and(|o| {
                object::meta_str(o, "resourceVersion") == object::meta_str(obj, "resourceVersion")
            });
            if !same {
                self.notify(obj);
            }
        }
    }
}
