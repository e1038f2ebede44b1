//! The `kubectl get pods` columns, computed as the API server's printer does.

use k8s_openapi::api::core::v1::Pod;

use crate::Time;

/// One `kubectl get pods` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRow {
    /// NAME.
    pub name: String,
    /// READY, e.g. `1/2`.
    pub ready: String,
    /// STATUS, e.g. `Init:0/2`, `PodInitializing`, `Running`, `Completed`.
    pub status: String,
    /// RESTARTS, e.g. `0` or `3 (12s ago)`.
    pub restarts: String,
    /// AGE, e.g. `5s`.
    pub age: String,
}

/// The row for `pod` at `now`.
pub fn pod_row(pod: &Pod, now: Time) -> PodRow {
    let _ = now;
    PodRow {
        name: pod.metadata.name.clone().unwrap_or_default(),
        ready: String::new(),
        status: String::new(),
        restarts: String::new(),
        age: String::new(),
    }
}

/// Kubernetes' `HumanDuration` (used for AGE and restart ages).
pub fn human_duration(d: k8s_openapi::jiff::SignedDuration) -> String {
    format!("{}s", d.as_secs())
}
