//! The lifecycle record: one container or pod transition the node observed, as one
//! JSON line of `<pod dir>/lifecycle.jsonl`.

use serde::{Deserialize, Serialize};

/// One transition, stamped with the node's monotonic clock (milliseconds since the pod
/// worker started) and the wall clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Milliseconds since the pod worker started, from a monotonic clock.
    pub ms: f64,
    /// Wall-clock time (RFC 3339, UTC).
    pub time: String,
    /// `namespace/name` of the pod.
    pub pod: String,
    /// The container, for container transitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The container instance (its restart count), for container transitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
    /// What happened.
    #[serde(flatten)]
    pub transition: Transition,
}

/// What kind of container a lane is, as the kubelet tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerKind {
    /// An init container that runs to completion.
    Init,
    /// An init container with `restartPolicy: Always`.
    Sidecar,
    /// One of `spec.containers`.
    Regular,
}

/// A container of the pod, in spec order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    /// Its name.
    pub name: String,
    /// Init, sidecar or regular.
    pub kind: ContainerKind,
}

/// A probe's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Probe {
    /// `startupProbe`.
    Startup,
    /// `readinessProbe`.
    Readiness,
    /// `livenessProbe`.
    Liveness,
}

/// A transition of the pod or of one container instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "transition", rename_all_fields = "camelCase")]
pub enum Transition {
    /// The pod was bound to this node and its worker started; its containers in spec
    /// order (init containers and sidecars first).
    Scheduled {
        /// `metadata.uid`.
        uid: String,
        /// The containers in spec order.
        containers: Vec<ContainerRef>,
    },
    /// `status.phase` changed.
    Phase {
        /// The new phase.
        phase: String,
    },
    /// The pod was deleted; termination begins.
    DeletionRequested {
        /// The grace period in effect.
        grace_period_seconds: i64,
    },
    /// The container instance was created.
    Created,
    /// Its process started.
    Started,
    /// It could not be created or started.
    StartFailed {
        /// The waiting reason (`CreateContainerConfigError`, …).
        reason: String,
        /// Why.
        message: String,
    },
    /// Its postStart hook returned.
    PostStartDone {
        /// The hook's error, if it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A probe's result changed (the first result of each probe is recorded too).
    ProbeResult {
        /// Which probe.
        probe: Probe,
        /// Whether it passed.
        success: bool,
    },
    /// `containerStatuses[].started` changed (startup probe passed, or none).
    StartupDone {
        /// The new value.
        started: bool,
    },
    /// `containerStatuses[].ready` changed.
    Ready {
        /// The new value.
        ready: bool,
    },
    /// Its preStop hook began.
    PreStopStarted,
    /// Its preStop hook returned.
    PreStopDone {
        /// The hook's error, if it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Its preStop hook was abandoned because the grace period ran out.
    PreStopCancelled,
    /// A stop signal was sent to it.
    SignalSent {
        /// `SIGTERM` or `SIGKILL`.
        signal: String,
    },
    /// Its process exited.
    Exited {
        /// The exit code (128 + signal when a signal ended it).
        exit_code: i32,
        /// The signal that ended it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        /// `Completed`, `Error` or `OOMKilled`.
        reason: String,
    },
    /// It waits in crash-loop back-off before its next restart.
    BackOff {
        /// The waiting message (`back-off 10s restarting failed container=…`).
        message: String,
    },
}

impl Transition {
    /// The transition's name as written in the `transition` field.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Scheduled { .. } => "Scheduled",
            Self::Phase { .. } => "Phase",
            Self::DeletionRequested { .. } => "DeletionRequested",
            Self::Created => "Created",
            Self::Started => "Started",
            Self::StartFailed { .. } => "StartFailed",
            Self::PostStartDone { .. } => "PostStartDone",
            Self::ProbeResult { .. } => "ProbeResult",
            Self::StartupDone { .. } => "StartupDone",
            Self::Ready { .. } => "Ready",
            Self::PreStopStarted => "PreStopStarted",
            Self::PreStopDone { .. } => "PreStopDone",
            Self::PreStopCancelled => "PreStopCancelled",
            Self::SignalSent { .. } => "SignalSent",
            Self::Exited { .. } => "Exited",
            Self::BackOff { .. } => "BackOff",
        }
    }
}

impl Probe {
    /// `startup`, `readiness`, `liveness`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Readiness => "readiness",
            Self::Liveness => "liveness",
        }
    }
}

impl ContainerKind {
    /// `init`, `sidecar`, `regular`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Sidecar => "sidecar",
            Self::Regular => "regular",
        }
    }
}
