//! Mesh sidecar injection: pod + mesh config → injected pod + RFC 6902 JSONPatch.
//!
//! This crate owns the decision (inject or skip, native or classic), the rendering of the
//! `istio-init` and `istio-proxy` containers as Istio's injection template does, user
//! overrides, app probe rewriting, the status annotation that makes re-injection idempotent,
//! a minimal JSON Patch generator, and the multi-document manifest walk of `kube-inject`.
//!
//! It must never do I/O, read a clock or spawn anything: the webhook and the CLI feed it
//! values and print what it returns. Pods are handled as raw `serde_json::Value` end to end so
//! fields this crate does not know (for example `restartPolicy` on another init container,
//! added by a newer API) are never dropped.
//!
//! ```
//! use podrun_inject::{MeshConfig, NativeSidecars, Outcome, PodContext, inject};
//! let pod = serde_json::json!({
//!     "apiVersion": "v1", "kind": "Pod",
//!     "metadata": {"name": "web", "labels": {"app": "web"}},
//!     "spec": {"containers": [{"name": "web", "image": "example/web:1"}]},
//! });
//! let config = MeshConfig { native_sidecars: NativeSidecars::True, ..MeshConfig::default() };
//! let Outcome::Injected(out) = inject(&pod, &PodContext::default(), &config).unwrap() else {
//!     panic!("expected injection");
//! };
//! assert_eq!(out.pod["spec"]["initContainers"][1]["restartPolicy"], "Always");
//! let mut patched = pod.clone();
//! json_patch::patch(&mut patched, &out.patch).unwrap();
//! assert_eq!(patched, out.pod);
//! ```

mod annotations;
mod config;
mod manifest;
mod patch;
mod probes;
mod render;

use std::collections::BTreeMap;
use std::fmt;

pub use annotations::{
    INJECT as INJECT_KEY, NATIVE_SIDECAR as NATIVE_SIDECAR_KEY, OVERRIDES as OVERRIDES_KEY,
    STATUS as STATUS_KEY,
};
pub use config::{
    ConfigError, InterceptionMode, LabelSelector, LabelSelectorRequirement, MeshConfig,
    NativeSidecars, Policy, ProxyResources, Runtime,
};
pub use manifest::{
    CONTROL_PLANE_VOLUMES, ManifestError, ManifestOutput, ObjectOutcome,
    drop_control_plane_volumes, inject_manifests, inject_object,
};
pub use patch::diff;
pub use render::{INIT_NAME, PROXY_NAME, inject, kubelet_supports_native};

/// The workload that owns the pod ("deploy meta"): used for the canonical name,
/// `ISTIO_META_WORKLOAD_NAME` and `ISTIO_META_OWNER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Workload name, e.g. the Deployment's.
    pub name: String,
    /// Workload kind, e.g. `Deployment`.
    pub kind: String,
    /// Workload apiVersion, e.g. `apps/v1`.
    pub api_version: String,
}

/// What the caller knows about the pod beyond the pod itself.
#[derive(Debug, Clone, Default)]
pub struct PodContext {
    /// Namespace when `metadata.namespace` is empty (the AdmissionRequest's namespace).
    pub namespace: Option<String>,
    /// The enclosing workload; `None` derives it from the pod's owner references.
    pub workload: Option<Workload>,
    /// `status.nodeInfo.kubeletVersion` of the relevant nodes, for `nativeSidecars: auto`;
    /// `None` means "no node information", which makes `auto` choose classic mode.
    pub kubelet_versions: Option<Vec<String>>,
    /// Key/value pairs from the webhook URL (`/inject/cluster/c1/net/n1`).
    pub path_params: BTreeMap<String, String>,
}

/// Where the proxy went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarMode {
    /// Proxy is an init container with `restartPolicy: Always`.
    Native,
    /// Proxy is a regular container.
    Classic,
}

/// A successful injection.
#[derive(Debug, Clone)]
pub struct Injected {
    /// The injected pod (or pod template).
    pub pod: serde_json::Value,
    /// RFC 6902 patch from the input to `pod`.
    pub patch: json_patch::Patch,
    /// Native or classic.
    pub mode: SidecarMode,
    /// Non-fatal findings (invalid switch values, dnsPolicy, Jobs that cannot be wrapped).
    pub warnings: Vec<String>,
}

/// Why a pod was left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `spec.hostNetwork: true`.
    HostNetwork,
    /// A namespace that is never injected.
    SystemNamespace(String),
    /// The pod or policy opted out.
    Disabled,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HostNetwork => f.write_str("has host networking enabled"),
            Self::SystemNamespace(ns) => write!(f, "is in the system namespace {ns}"),
            Self::Disabled => f.write_str("has sidecar injection disabled"),
        }
    }
}

/// Result of [`inject`].
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The pod was injected.
    Injected(Injected),
    /// Policy said no; the pod is unchanged.
    Skipped(Skip),
}

/// Injection refused: bad pod shape, invalid annotation or invalid configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// The object is not a usable pod.
    #[error("invalid pod: {0}")]
    InvalidPod(String),
    /// An injection annotation failed validation.
    #[error("invalid annotation {key}: {message}")]
    InvalidAnnotation {
        /// The annotation key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The mesh configuration cannot be rendered.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl InjectError {
    fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidPod(msg.into())
    }

    fn annotation(key: &str, message: impl Into<String>) -> Self {
        Self::InvalidAnnotation {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}
