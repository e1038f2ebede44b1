//! A work queue of keys, as client-go's: a key waiting is queued once however often it
//! is added, and a key may be added for later (a back-off, a deadline) — the earliest
//! time asked for wins, and an immediate add overtakes a delayed one.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A deduplicating queue of keys with delayed adds. Cheap to clone; clones share the queue.
#[derive(Clone, Default)]
pub struct WorkQueue {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    ready: VecDeque<String>,
    queued: HashSet<String>,
    delayed: BTreeMap<String, Instant>,
}

impl std::fmt::Debug for WorkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkQueue")
            .field("len", &self.len())
            .finish()
    }
}

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> WorkQueue {
        WorkQueue::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `key` now, unless it is already waiting.
    pub fn add(&self, key: &str) {
        let mut s = self.state();
        s.delayed.remove(key);
        if s.queued.insert(key.to_string()) {
            s.ready.push_back(key.to_string());
        }
        drop(s);
        self.inner.wake.notify_one();
    }

    /// Queues `key` after `delay`; an earlier pending add of the same key wins.
    pub fn add_after(&self, key: &str, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        let mut s = self.state();
        if s.queued.contains(key) {
            return;
        }
        let entry = s.delayed.entry(key.to_string()).or_insert(at);
        *entry = (*entry).min(at);
        drop(s);
        self.inner.wake.notify_one();
    }

    /// Keys waiting, now or later.
    pub fn len(&self) -> usize {
        let s = self.state();
        s.ready.len() + s.delayed.len()
    }

    /// Whether no key waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next key due, waiting for one.
    pub async fn next(&self) -> String {
        loop {
            let notified = self.inner.wake.notified();
            let next_due = {
                let mut s = self.state();
                let now = Instant::now();
                let due: Vec<String> = s
                    .delayed
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in due {
                    s.delayed.remove(&k);
                    if s.queued.insert(k.clone()) {
                        s.ready.push_back(k);
                    }
                }
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    return key;
                }
                s.delayed.values().min().copied()
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_added_twice_is_queued_once() {
        let q = WorkQueue::new();
        q.add("default/a");
        q.add("default/b");
        q.add("default/a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, "default/a");
        assert_eq!(q.next().await, "default/b");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_key_comes_when_due_and_an_immediate_add_overtakes_it() {
        let q = WorkQueue::new();
        let start = Instant::now();
        q.add_after("default/a", Duration::from_secs(10));
        q.add_after("default/a", Duration::from_secs(3));
        assert_eq!(q.next().await, "default/a");
        assert_eq!(start.elapsed().as_secs(), 3);

        q.add_after("default/b", Duration::from_secs(60));
        q.add("default/b");
        let start = Instant::now();
        assert_eq!(q.next().await, "default/b");
        assert_eq!(start.elapsed().as_secs(), 0);
        assert!(
            q.is_empty(),
            "the delayed add was absorbed by the immediate one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_consumer_wakes_on_add() {
        let q = WorkQueue::new();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.next().await });
        tokio::task::yield_now().await;
        q.add("ns/x");
        assert_eq!(waiter.await.unwrap(), "ns/x");
    }
}
