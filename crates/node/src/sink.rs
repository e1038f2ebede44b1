//! Where a pod worker's status goes: the [`StatusSink`] seam. The store is the
//! production sink (`podrun get` in another terminal reads what the worker wrote); the
//! worker loop's tests use an in-memory one.
//!
//! The sink only answers each write; what to do about a conflict (read the latest object
//! and write again) is the worker's decision, in [`write_status`].

use k8s_openapi::api::core::v1::Pod;
use podrun_store::{ApiError, ResourceType, object};

use crate::objects::{ObjectKey, Store};

/// Writes of a pod worker: its pod's status, and the final delete once its containers
/// are gone.
pub trait StatusSink: Send + Sync {
    /// Writes `pod.status` over the stored pod of the same uid — and of the same
    /// `resourceVersion` when `pod` carries one (else unconditionally, as the kubelet's
    /// status patch). Returns the stored `resourceVersion`. A gone pod is `NotFound`;
    /// a write that lost a race is `Conflict`.
    fn write_status(&self, pod: &Pod) -> Result<String, ApiError>;

    /// The stored pod of that name, `None` once it is gone.
    fn latest(&self, key: &ObjectKey) -> Result<Option<Pod>, ApiError>;

    /// The kubelet's final delete of a pod whose containers are gone: grace period 0,
    /// for this uid only. A pod already gone (or replaced) is no error.
    fn remove(&self, key: &ObjectKey, uid: &str) -> Result<(), ApiError>;
}

/// How often a status write that lost a race is tried again, with the latest object.
const WRITE_TRIES: usize = 6;

/// Writes the worker's status of `pod` and stamps the stored `resourceVersion` on it.
/// The first write is unconditional; one that loses a race (`Conflict`) is written
/// again over the latest object of the same uid, conditional on its
/// `resourceVersion`, a few times. A pod gone or replaced in the store takes no status.
pub(crate) fn write_status(sink: &dyn StatusSink, pod: &mut Pod) -> Result<(), ApiError> {
    let key = crate::key_of(&pod.metadata);
    let mut write = pod.clone();
    write.metadata.resource_version = None;
    let mut tries = 0;
    loop {
        match sink.write_status(&write) {
            Ok(rv) => {
                // Only the revision comes back: the worker's copy stays the worker's.
                pod.metadata.resource_version = Some(rv);
                return Ok(());
            }
            Err(e) if e.code() == 404 => return Ok(()),
            Err(e) if e.code() == 409 && tries + 1 < WRITE_TRIES => {
                tries += 1;
                let Some(mut latest) = sink.latest(&key)? else {
                    return Ok(());
                };
                if latest.metadata.uid != pod.metadata.uid {
                    return Ok(());
                }
                latest.status = pod.status.clone();
                write = latest;
            }
            Err(e) => return Err(e),
        }
    }
}

// === impl StatusSink for Store ===

impl StatusSink for Store {
    fn write_status(&self, pod: &Pod) -> Result<String, ApiError> {
        let key = crate::key_of(&pod.metadata);
        let v = serde_json::to_value(pod).map_err(ApiError::internal)?;
        let stored =
            self.sqlite()
                .update_status(&ResourceType::PODS, Some(&key.namespace), &key.name, v)?;
        Ok(object::meta_str(&stored, "resourceVersion")
            .unwrap_or_default()
            .to_string())
    }

    fn latest(&self, key: &ObjectKey) -> Result<Option<Pod>, ApiError> {
        match self
            .sqlite()
            .get(&ResourceType::PODS, Some(&key.namespace), &key.name)
        {
            Ok(v) => serde_json::from_value::<Pod>(v)
                .map(Some)
                .map_err(ApiError::internal),
            Err(e) if e.code() == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remove(&self, key: &ObjectKey, uid: &str) -> Result<(), ApiError> {
        match self.remove_pod(key, uid) {
            Ok(()) => Ok(()),
            Err(crate::objects::Error::Api(e)) => Err(e),
            Err(e) => Err(ApiError::internal(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Resource;
    use podrun_testkit::pod::{container, pod};

    fn stored_pod(store: &Store) -> Pod {
        let mut p = pod("web").container(container("main")).build();
        p.metadata.uid = None;
        p.metadata.creation_timestamp = None;
        store.create(Resource::PODS, &mut p).expect("created");
        p
    }

    #[test]
    fn the_store_answers_a_stale_write_with_a_conflict_and_the_worker_writes_again() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path()).expect("store");
        let mut p = stored_pod(&store);
        let key = ObjectKey::new("default", "web");

        // Someone else writes after the worker read the pod.
        let mut other = store.latest(&key).expect("read").expect("there");
        other.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        store
            .sqlite()
            .update(
                &ResourceType::PODS,
                Some("default"),
                "web",
                serde_json::to_value(&other).expect("json"),
            )
            .expect("updated");
        p.status.get_or_insert_with(Default::default).phase = Some("Running".into());
        let stale = store.write_status(&p).expect_err("a stale resourceVersion");
        assert_eq!(stale.code(), 409);

        // The worker's write: over the latest object, the other writer's labels kept.
        write_status(&store, &mut p).expect("written");
        let now = store.latest(&key).expect("read").expect("there");
        assert_eq!(now.metadata.resource_version, p.metadata.resource_version);
        assert_eq!(now.status.and_then(|s| s.phase).as_deref(), Some("Running"));
        assert!(now.metadata.labels.is_some_and(|l| l.contains_key("app")));
    }

    #[test]
    fn the_final_delete_removes_only_the_same_uid_and_a_gone_pod_takes_no_status() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path()).expect("store");
        let mut p = stored_pod(&store);
        let key = ObjectKey::new("default", "web");
        let uid = p.metadata.uid.clone().expect("stamped");

        store.remove(&key, "another-uid").expect("no error");
        assert!(store.latest(&key).expect("read").is_some(), "not that pod");
        store.remove(&key, &uid).expect("removed");
        assert!(store.latest(&key).expect("read").is_none());
        store.remove(&key, &uid).expect("gone already is no error");

        p.status.get_or_insert_with(Default::default).phase = Some("Succeeded".into());
        write_status(&store, &mut p).expect("nothing to write to, no error");
    }
}
