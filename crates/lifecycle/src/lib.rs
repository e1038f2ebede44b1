//! The kubelet's pod lifecycle with native sidecars, as a sans-IO state machine.
//!
//! This crate owns every *decision* the kubelet makes for one pod: init order, when a
//! sidecar counts as started, restarts and crash-loop backoff, probe scheduling, hooks,
//! ordered termination with per-container grace, pod phase, conditions, container
//! states, and the `kubectl get pods` STATUS/READY/RESTARTS strings.
//!
//! It must never do I/O: no clock, no processes, no sockets, no tokio. Time is always an
//! argument (`now`), so every rule can be tested on a simulated clock.
//!
//! # Driving a [`PodMachine`]
//!
//! 1. Feed inputs with the `handle_*` methods as things happen (a container process was
//!    started, exited, a probe or hook finished, the pod was deleted, a timer fired).
//! 2. Drain [`PodMachine::poll_action`] until it returns `None` and carry out each
//!    [`Action`]; report results back through `handle_*`.
//! 3. Arm one timer for [`PodMachine::poll_timeout`] and call
//!    [`PodMachine::handle_timeout`] when it fires.
//! 4. Read [`PodMachine::status`] whenever you want to publish the pod's status.

pub mod backoff;
pub mod init;
pub mod print;
pub mod probes;
pub mod restart;
pub mod slot;
pub mod status;
pub mod termination;

mod machine;

pub use machine::{PodMachine, TerminationCause};

use std::time::Duration;

/// A point in time (UTC). The engine never reads a clock; callers pass `now`.
pub type Time = k8s_openapi::jiff::Timestamp;

/// One container of the pod, by its place in the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContainerId {
    /// `spec.initContainers[i]` (a regular init container or a sidecar).
    Init(usize),
    /// `spec.containers[i]`.
    Regular(usize),
}

/// The kind of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `startupProbe`.
    Startup,
    /// `readinessProbe`.
    Readiness,
    /// `livenessProbe`.
    Liveness,
}

/// The kind of a lifecycle hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// `lifecycle.postStart`: runs right after the container started; the next
    /// container is not started before it returns.
    PostStart,
    /// `lifecycle.preStop`: runs before the stop signal, bounded by the grace period.
    PreStop,
}

/// The outcome of one probe run. A probe that exceeded `timeoutSeconds` is a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// The handler succeeded.
    Success,
    /// The handler failed or timed out.
    Failure,
}

/// The signal a kill step sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// The container's stop signal (SIGTERM).
    Term,
    /// SIGKILL, after the grace period ran out.
    Kill,
}

/// How a container process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code; 128 + signal number when a signal ended it.
    pub exit_code: i32,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended it.
    pub oom_killed: bool,
    /// Contents of the termination message, if the driver read one.
    pub message: Option<String>,
}

/// Something the driver must do. Every action names the container *instance*
/// (`restart_count` of that instance) so that results for an older instance can be
/// told apart and ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create and start the container process. Report
    /// [`PodMachine::handle_container_started`] or
    /// [`PodMachine::handle_container_start_failed`].
    StartContainer {
        /// Which container.
        id: ContainerId,
        /// The new instance's restart count.
        restart_count: i32,
    },
    /// Run a hook handler of the container. Report [`PodMachine::handle_hook_result`].
    RunHook {
        /// Which container.
        id: ContainerId,
        /// The instance the hook belongs to.
        restart_count: i32,
        /// Which hook.
        hook: HookKind,
    },
    /// Abandon a hook that is still running (a preStop whose grace ran out): kill its
    /// process or drop its request. No result is expected afterwards.
    CancelHook {
        /// Which container.
        id: ContainerId,
        /// The instance the hook belongs to.
        restart_count: i32,
        /// Which hook.
        hook: HookKind,
    },
    /// Run one probe of the container, bounded by its `timeoutSeconds`. Report
    /// [`PodMachine::handle_probe_result`].
    RunProbe {
        /// Which container.
        id: ContainerId,
        /// The instance probed.
        restart_count: i32,
        /// Which probe.
        probe: ProbeKind,
    },
    /// Send a signal to the container instance's processes.
    Signal {
        /// Which container.
        id: ContainerId,
        /// The instance to signal.
        restart_count: i32,
        /// Which signal.
        signal: StopSignal,
    },
}

/// `t + d`, saturating at the end of representable time instead of panicking (a huge
/// grace period or deadline from a manifest must not crash the engine).
pub(crate) fn add(t: Time, d: k8s_openapi::jiff::SignedDuration) -> Time {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Time::MIN
    } else {
        Time::MAX
    })
}

/// `t + secs` seconds, saturating.
pub(crate) fn add_secs(t: Time, secs: i64) -> Time {
    add(t, k8s_openapi::jiff::SignedDuration::from_secs(secs))
}

/// Converts whole seconds from the spec into a [`Duration`], clamping negatives to 0.
pub fn seconds(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}
