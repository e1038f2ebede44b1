//! Where the node learns of its pods: a watch of the store. A pod the controllers
//! created (no `spec.nodeName` yet) is admitted, bound to this node and started; a pod
//! this node runs that is marked for deletion (`deletionTimestamp`, from `podrun
//! delete` in another terminal, the garbage collector or a controller) is told to
//! terminate with its grace period; one removed outright is stopped at once. Job
//! changes are passed on to subscribers (`podrun run` waits for its Jobs).
//!
//! Several podrun instances may share a state directory and so a node name: an
//! instance runs the pods it created and those whose binding it won (the bind is an
//! update with a resourceVersion precondition, so exactly one instance wins it).
//!
//! [`decide`] is pure: the event and what the node runs in, the action out.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use podrun_store::{
    ApiError, EventType, ListOptions, ResourceType, WatchEvent, WatchOptions, object,
};
use podrun_store_sqlite::SqliteStore;
use serde_json::Value;

use crate::objects::ObjectKey;
use crate::{Node, NodeShared, instance::InstanceLock};

/// What the node does about one pod event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodAction {
    /// Nothing.
    Ignore,
    /// Bind the unscheduled pod to this node and run it.
    Bind,
    /// Tell the worker to terminate with this grace period.
    Delete(Option<i64>),
}

/// Decides what to do about a pod event. `runs` says whether this node runs the pod
/// (by uid).
pub fn decide(kind: EventType, pod: &Value, runs: bool) -> PodAction {
    match kind {
        // Removed without the node's final delete (grace period 0 from elsewhere).
        EventType::Deleted if runs => return PodAction::Delete(Some(0)),
        EventType::Added | EventType::Modified => {}
        _ => return PodAction::Ignore,
    }
    if object::is_deleting(pod) {
        if runs {
            let grace = pod
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            return PodAction::Delete(grace);
        }
        return PodAction::Ignore;
    }
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    let unbound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if unbound && !finished && !runs {
        return PodAction::Bind;
    }
    PodAction::Ignore
}

/// The pods a node learns of: every pod there is (bound to it or waiting for a
/// binding) and their changes, deletion included, as a stream. The store is the
/// production source; the dispatch's tests use an in-memory one.
pub trait PodSource: Send + Sync + 'static {
    /// Every pod now, and the revision they were read at.
    fn list(&self) -> Result<(Vec<Value>, u64), ApiError>;

    /// The changes after `revision`, in order. The stream ends (or sends an `ERROR`)
    /// when it is lost, e.g. `410 Gone` after falling behind; the reader lists again.
    fn watch(&self, revision: u64) -> Result<BoxStream<'static, WatchEvent>, ApiError>;
}

/// What a node's pod events act on: its pod workers.
pub(crate) trait Workers {
    /// Whether a worker runs the pod `key` with this uid.
    fn runs(&self, key: &ObjectKey, uid: &str) -> bool;
    /// The pods the workers run: key and uid.
    fn running(&self) -> Vec<(ObjectKey, String)>;
    /// Tells a pod's worker to terminate with this grace period.
    fn tell_delete(&self, key: &ObjectKey, grace_period_seconds: Option<i64>);
    /// Whether the node is shutting down (binds nothing new).
    fn is_stopping(&self) -> bool;
    /// Binds an unscheduled pod to this node and runs it.
    fn bind(&self, key: &ObjectKey, pod: Value);
}

/// Follows `source` for as long as `workers` gives a node: every pod is acted on as
/// [`decide`] says. Each (re)start of the stream lists first, and a pod a worker runs
/// that the list no longer holds (or holds with another uid) was removed while the
/// stream was down: it is stopped at once, as a `DELETED` event would have stopped it.
pub(crate) async fn follow<S, W>(source: S, workers: impl Fn() -> Option<W>)
where
    S: PodSource,
    W: Workers,
{
    loop {
        // Taken before the list: a pod started after the list was read is not in it,
        // while one started before it is (its object was written first).
        let Some(before) = workers().map(|w| w.running()) else {
            return;
        };
        let (pods, revision) = match source.list() {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = e.message(), "pod list failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        {
            let Some(w) = workers() else {
                return;
            };
            for (key, uid) in missed_deletions(&before, &pods) {
                w.tell_delete(&key, Some(0));
                tracing::debug!(pod = %key.name, %uid, "removed while the pod watch was down");
            }
            for pod in pods {
                handle_pod(&w, EventType::Added, pod);
            }
        }
        let mut watch = match source.watch(revision) {
            Ok(w) => w,
            // Fell out of the window between list and watch: list again.
            Err(e) => {
                tracing::debug!(error = e.message(), "pod watch failed");
                continue;
            }
        };
        while let Some(event) = watch.next().await {
            if event.kind == EventType::Error {
                break;
            }
            let Some(w) = workers() else {
                return;
            };
            handle_pod(&w, event.kind, event.object);
        }
    }
}

/// The pods a node runs that a fresh list no longer holds under the same uid.
fn missed_deletions(running: &[(ObjectKey, String)], listed: &[Value]) -> Vec<(ObjectKey, String)> {
    let present: HashSet<(ObjectKey, &str)> =
        listed.iter().map(|p| (key_of(p), object::uid(p))).collect();
    running
        .iter()
        .filter(|(key, uid)| !present.contains(&(key.clone(), uid.as_str())))
        .cloned()
        .collect()
}

fn key_of(obj: &Value) -> ObjectKey {
    ObjectKey::new(
        object::meta_str(obj, "namespace").unwrap_or("default"),
        object::name(obj),
    )
}

fn handle_pod(workers: &impl Workers, kind: EventType, obj: Value) {
    let key = key_of(&obj);
    let runs = workers.runs(&key, object::uid(&obj));
    match decide(kind, &obj, runs) {
        PodAction::Ignore => {}
        PodAction::Delete(grace) => workers.tell_delete(&key, grace),
        PodAction::Bind => {
            if !workers.is_stopping() {
                workers.bind(&key, obj);
            }
        }
    }
}

/// The store as a [`PodSource`].
#[derive(Clone)]
pub struct StorePodSource(pub SqliteStore);

impl PodSource for StorePodSource {
    fn list(&self) -> Result<(Vec<Value>, u64), ApiError> {
        let list = self
            .0
            .list(&ResourceType::PODS, None, &ListOptions::default())?;
        Ok((list.items, list.revision))
    }

    fn watch(&self, revision: u64) -> Result<BoxStream<'static, WatchEvent>, ApiError> {
        let opts = WatchOptions {
            resource_version: Some(revision.to_string()),
            ..WatchOptions::default()
        };
        let watch = self.0.watch(&ResourceType::PODS, None, &opts)?;
        Ok(futures::stream::unfold(watch, |mut w| async move {
            let event = w.next().await?;
            Some((event, w))
        })
        .boxed())
    }
}

// === impl Workers for Node ===

impl Workers for Node {
    fn runs(&self, key: &ObjectKey, uid: &str) -> bool {
        Node::runs(self, key, uid)
    }

    fn running(&self) -> Vec<(ObjectKey, String)> {
        self.running_uids()
    }

    fn tell_delete(&self, key: &ObjectKey, grace_period_seconds: Option<i64>) {
        Node::tell_delete(self, key, grace_period_seconds);
    }

    fn is_stopping(&self) -> bool {
        Node::is_stopping(self)
    }

    fn bind(&self, key: &ObjectKey, pod: Value) {
        if let Err(e) = bind(self, key, pod) {
            tracing::warn!(pod = %key.name, %e, "cannot bind pod");
        }
    }
}

/// Starts the watches of pods and Jobs for this node.
pub(crate) fn spawn(node: &Node) {
    let shared = Arc::downgrade(&node.shared);
    let lock = Arc::downgrade(&node._lock);
    let source = StorePodSource(node.shared.store.sqlite().clone());
    let (s, l) = (shared.clone(), lock.clone());
    tokio::spawn(follow(source, move || upgrade(&s, &l)));
    tokio::spawn(watch_jobs(shared, lock));
}

fn upgrade(shared: &Weak<NodeShared>, lock: &Weak<InstanceLock>) -> Option<Node> {
    Some(Node {
        shared: shared.upgrade()?,
        _lock: lock.upgrade()?,
    })
}

/// Admits (defaults and validates) an unscheduled pod, binds it to this node and
/// starts it. A pod that does not pass admission ends `Failed` with the reason.
fn bind(node: &Node, key: &ObjectKey, obj: Value) -> Result<(), crate::Error> {
    let store = node.shared.store.sqlite();
    let pod: Pod = serde_json::from_value(obj.clone()).map_err(crate::objects::Error::from)?;
    let mut admitted = match podrun_model::admit_pod(pod) {
        Ok(p) => p,
        Err(e) => {
            let mut failed = obj;
            failed["status"]["phase"] = "Failed".into();
            failed["status"]["reason"] = "Invalid".into();
            failed["status"]["message"] = e.to_string().into();
            store.update_status(&ResourceType::PODS, Some(&key.namespace), &key.name, failed)?;
            return Ok(());
        }
    };
    if let Some(spec) = admitted.spec.as_mut() {
        spec.node_name = Some(crate::node_name());
    }
    // The admitted spec and the binding in one write, conditional on the version read.
    let mut bound = serde_json::to_value(&admitted).map_err(crate::objects::Error::from)?;
    bound["metadata"] = obj["metadata"].clone();
    let stored = match store.update(&ResourceType::PODS, Some(&key.namespace), &key.name, bound) {
        Ok(v) => v,
        // Bound by another instance, or changed since: a newer event follows.
        Err(e) if e.code() == 409 || e.code() == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut pod: Pod = serde_json::from_value(stored).map_err(crate::objects::Error::from)?;
    pod.status.get_or_insert_with(Default::default).qos_class =
        Some(crate::cgroup::qos_class(&pod).into());
    node.start_worker(pod);
    Ok(())
}

async fn watch_jobs(shared: Weak<NodeShared>, lock: Weak<InstanceLock>) {
    loop {
        let Some(node) = upgrade(&shared, &lock) else {
            return;
        };
        let store = node.shared.store.sqlite().clone();
        drop(node);
        let opts = WatchOptions {
            // From now: subscribers care about Jobs changing from here on.
            resource_version: Some(store.lock().revision().unwrap_or(0).to_string()),
            ..WatchOptions::default()
        };
        let mut watch = match store.watch(&ResourceType::JOBS, None, &opts) {
            Ok(w) => w,
            Err(_) => match store.watch(&ResourceType::JOBS, None, &WatchOptions::default()) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = e.message(), "job watch failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while let Some(event) = watch.next().await {
            if event.kind == EventType::Error {
                break;
            }
            let Some(node) = upgrade(&shared, &lock) else {
                return;
            };
            let deleted = event.kind == EventType::Deleted;
            if matches!(
                event.kind,
                EventType::Added | EventType::Modified | EventType::Deleted
            ) && let Ok(job) = serde_json::from_value::<Job>(event.object)
            {
                node.job_changed(job, deleted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_events_become_node_actions() {
        let pending =
            json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Pending"}});
        let bound = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n"}, "status": {"phase": "Running"}});
        let done = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Succeeded"}});
        let deleting = json!({"metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z",
                                            "deletionGracePeriodSeconds": 5},
                              "spec": {"nodeName": "n"}});
        let table = [
            (EventType::Added, &pending, false, PodAction::Bind),
            (EventType::Modified, &pending, false, PodAction::Bind),
            (EventType::Added, &pending, true, PodAction::Ignore),
            (EventType::Added, &bound, false, PodAction::Ignore),
            (EventType::Added, &done, false, PodAction::Ignore),
            (
                EventType::Modified,
                &deleting,
                true,
                PodAction::Delete(Some(5)),
            ),
            (EventType::Modified, &deleting, false, PodAction::Ignore),
            (EventType::Deleted, &bound, true, PodAction::Delete(Some(0))),
            (EventType::Deleted, &bound, false, PodAction::Ignore),
            (EventType::Bookmark, &bound, true, PodAction::Ignore),
        ];
        for (kind, pod, runs, want) in table {
            assert_eq!(decide(kind, pod, runs), want, "{kind:?} {pod} runs={runs}");
        }
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod follow_tests;
