//! One container of the pod: what its spec asks for and what its instances did.
//!
//! A [`Slot`] holds the running instance (if any), the two most recent terminated
//! instances (for `state` and `lastState`), the in-flight start, and the waiting overlay
//! (`CrashLoopBackOff`, start failures, `PostStartHookError`) the kubelet keeps in its
//! reason cache.

use k8s_openapi::api::core::v1::{Container, Probe};

use crate::probes::Probes;
use crate::restart::RestartSpec;
use crate::termination::Kill;
use crate::{ContainerId, ExitStatus, ProbeKind, Time};

/// What kind of container a slot is, in Kubernetes words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular init container (no container-level `restartPolicy`).
    RegularInit,
    /// A sidecar: an init container with `restartPolicy: Always`.
    Sidecar,
    /// An entry of `spec.containers`.
    Regular,
}

/// The probe fields the engine acts on, with API defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// `initialDelaySeconds`, counted from the instance's `startedAt`.
    pub initial_delay: i64,
    /// `periodSeconds`.
    pub period: i64,
    /// `successThreshold`.
    pub success_threshold: i32,
    /// `failureThreshold`.
    pub failure_threshold: i32,
    /// Probe-level `terminationGracePeriodSeconds`.
    pub termination_grace: Option<i64>,
}

impl ProbeSpec {
    /// Reads a probe, filling API defaults for unset or zero fields the way defaulting
    /// does (pods arrive defaulted; this only guards against a hand-built pod).
    pub fn from_probe(p: &Probe) -> Self {
        fn positive(v: Option<i32>, default: i32) -> i32 {
            match v {
                Some(v) if v > 0 => v,
                _ => default,
            }
        }
        ProbeSpec {
            initial_delay: i64::from(p.initial_delay_seconds.unwrap_or(0).max(0)),
            period: i64::from(positive(p.period_seconds, 10)),
            success_threshold: positive(p.success_threshold, 1),
            failure_threshold: positive(p.failure_threshold, 3),
            termination_grace: p.termination_grace_period_seconds,
        }
    }
}

/// The parts of a container's spec the engine needs.
#[derive(Clone, Debug)]
pub struct SlotSpec {
    /// Container name.
    pub name: String,
    /// Image as written in the spec (reported in the status).
    pub image: String,
    /// RIC, sidecar or regular.
    pub kind: Kind,
    /// Has a `lifecycle.postStart` handler.
    pub post_start: bool,
    /// Has a `lifecycle.preStop` handler.
    pub pre_stop: bool,
    /// `startupProbe`.
    pub startup: Option<ProbeSpec>,
    /// `readinessProbe`.
    pub readiness: Option<ProbeSpec>,
    /// `livenessProbe`.
    pub liveness: Option<ProbeSpec>,
    /// Its own `restartPolicy` and `restartPolicyRules`.
    pub restart: RestartSpec,
}

impl SlotSpec {
    /// Reads one container of the pod spec.
    pub fn new(c: &Container, kind: Kind) -> Self {
        let lifecycle = c.lifecycle.as_ref();
        // Probes and hooks are forbidden on regular init containers by validation; ignore
        // them defensively so a hand-built pod cannot make a RIC probe-driven.
        let allowed = kind != Kind::RegularInit;
        let probe = |p: &Option<Probe>| p.as_ref().filter(|_| allowed).map(ProbeSpec::from_probe);
        SlotSpec {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            kind,
            post_start: allowed && lifecycle.is_some_and(|l| l.post_start.is_some()),
            pre_stop: allowed && lifecycle.is_some_and(|l| l.pre_stop.is_some()),
            startup: probe(&c.startup_probe),
            readiness: probe(&c.readiness_probe),
            liveness: probe(&c.liveness_probe),
            restart: RestartSpec::from_container(c),
        }
    }

    /// The spec of one probe kind.
    pub fn probe(&self, kind: ProbeKind) -> Option<ProbeSpec> {
        match kind {
            ProbeKind::Startup => self.startup,
            ProbeKind::Readiness => self.readiness,
            ProbeKind::Liveness => self.liveness,
        }
    }
}

/// A finished container instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminated {
    /// The instance's restart count.
    pub restart_count: i32,
    /// When its process started.
    pub started_at: Time,
    /// When its process exited.
    pub finished_at: Time,
    /// How it ended.
    pub exit: ExitStatus,
    /// Its liveness or startup probe had it killed (the restart decision then ignores
    /// the exit code).
    pub probe_killed: bool,
    /// Not a real exit: the record a `RestartAllContainers` leaves for a container it
    /// removed (reason `RestartingAllContainers`, exit code 137, no times).
    pub restart_all: bool,
}

impl Terminated {
    /// The record of a container removed by `RestartAllContainers`; `restart_count` is
    /// the count its next instance gets.
    pub fn removed_by_restart_all(restart_count: i32, at: Time) -> Self {
        Terminated {
            restart_count,
            started_at: at,
            finished_at: at,
            exit: ExitStatus {
                exit_code: 137,
                signal: None,
                oom_killed: false,
                message: None,
            },
            probe_killed: false,
            restart_all: true,
        }
    }
}

/// The postStart hook of a running instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostStart {
    /// The hook is running; the start operation is not over.
    Running,
    /// No hook, or it returned successfully.
    Done,
    /// The hook failed; the instance is being killed.
    Failed,
}

/// A container instance whose process is running.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The instance's restart count.
    pub restart_count: i32,
    /// When its process started.
    pub started_at: Time,
    /// The postStart hook's progress.
    pub post_start: PostStart,
    /// Probe workers of this instance.
    pub probes: Probes,
    /// The kill procedure, once the instance is being stopped.
    pub kill: Option<Kill>,
}

impl Instance {
    /// `started` of the container status: running, postStart returned, and the
    /// startupProbe (if any) succeeded.
    pub fn started(&self) -> bool {
        self.post_start == PostStart::Done && self.probes.startup_succeeded()
    }
}

/// A waiting state the kubelet keeps for a container that is not running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Waiting reason, e.g. `CrashLoopBackOff`.
    pub reason: String,
    /// Waiting message.
    pub message: String,
}

/// What ended the latest attempt to run the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastEvent {
    /// An instance exited at this time.
    Exited(Time),
    /// Creating/starting an instance failed at this time.
    StartFailed(Time),
    /// The container's image could not be had at this time (`ErrImagePull`,
    /// `ImagePullBackOff`, `InvalidImageName`, `ErrImageNeverPull`): retried after
    /// [`IMAGE_RETRY_SECS`], without stepping the crash-loop back-off (the image has its own).
    ImageFailed(Time),
}

/// Seconds after an image failure before the start is tried again (the pod worker's requeue).
pub const IMAGE_RETRY_SECS: i64 = 10;

/// Whether a waiting `reason` of a failed start is an image failure.
pub fn is_image_reason(reason: &str) -> bool {
    matches!(
        reason,
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
    )
}

impl LastEvent {
    /// When it happened (the backoff's event time).
    pub fn at(self) -> Time {
        match self {
            LastEvent::Exited(t) | LastEvent::StartFailed(t) | LastEvent::ImageFailed(t) => t,
        }
    }
}

/// One container of the pod and everything the engine knows about it.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Which container.
    pub id: ContainerId,
    /// Its spec.
    pub spec: SlotSpec,
    /// Restart count the next instance gets.
    pub next_restart_count: i32,
    /// `StartContainer` was issued for this restart count; no result yet.
    pub starting: Option<i32>,
    /// The running instance.
    pub current: Option<Instance>,
    /// The most recent terminated instance.
    pub last: Option<Terminated>,
    /// The terminated instance before `last`.
    pub previous: Option<Terminated>,
    /// What ended the latest attempt, for backoff.
    pub last_event: Option<LastEvent>,
    /// The reason-cache overlay shown while the container waits to be started again.
    pub waiting: Option<Waiting>,
    /// End of the backoff window the container is waiting in.
    pub retry_at: Option<Time>,
}

impl Slot {
    /// A container that has not run yet.
    pub fn new(id: ContainerId, spec: SlotSpec) -> Self {
        Slot {
            id,
            spec,
            next_restart_count: 0,
            starting: None,
            current: None,
            last: None,
            previous: None,
            last_event: None,
            waiting: None,
            retry_at: None,
        }
    }

    /// Is this a sidecar?
    pub fn is_sidecar(&self) -> bool {
        self.spec.kind == Kind::Sidecar
    }

    /// The running instance, if it is `restart_count`.
    pub fn instance_mut(&mut self, restart_count: i32) -> Option<&mut Instance> {
        self.current
            .as_mut()
            .filter(|i| i.restart_count == restart_count)
    }

    /// Has a process (or a start in flight that may become one).
    pub fn is_active(&self) -> bool {
        self.current.is_some() || self.starting.is_some()
    }

    /// The container was removed by `RestartAllContainers` and no new instance runs yet.
    pub fn removed_by_restart_all(&self) -> bool {
        self.current.is_none() && self.last.as_ref().is_some_and(|t| t.restart_all)
    }

    /// The latest instance is terminated with exit code 0 and nothing replaced it.
    pub fn completed(&self) -> bool {
        !self.is_active()
            && matches!(self.last_event, Some(LastEvent::Exited(_)))
            && self.last.as_ref().is_some_and(|t| t.exit.exit_code == 0)
    }
}
