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
