//! The kubelet's per-container kill procedure (`killContainer`) as a timed state machine.
//!
//! Every container being stopped walks the same steps from its own t0:
//!
//! 1. preStop (if the container has one and grace > 0), bounded by the grace period;
//!    the whole seconds it took are deducted from the grace. A hook still running when
//!    the grace ends is no longer waited for, but it is not killed either: it lives
//!    until its container is killed.
//! 2. When termination ordering applies (pod termination of a pod with sidecars, and the
//!    container is a sidecar), wait for its turn, bounded by what is left of the grace;
//!    the whole seconds waited are deducted.
//! 3. The 2-second floor: `grace = max(grace, 2)`.
//! 4. The stop signal, then SIGKILL once `grace` seconds passed.
//!
//! The procedure itself never decides whose turn it is; the machine tells it.

use k8s_openapi::jiff::SignedDuration;

use crate::{Time, add_secs};

/// `minimumGracePeriodInSeconds`: a stop signal always gets this long before SIGKILL.
pub const MINIMUM_GRACE_SECONDS: i64 = 2;

/// Why a container is being killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillCause {
    /// The pod is terminating (deletion, completion, init failure, deadline).
    PodTermination,
    /// The startupProbe failed; the container is restarted.
    StartupProbe,
    /// The livenessProbe failed; the container is restarted.
    LivenessProbe,
    /// The postStart hook failed; the container is restarted per policy.
    FailedPostStartHook,
    /// A `RestartAllContainers` rule matched: every container is killed at once with
    /// grace 0 (the 2-second floor still applies), without preStop.
    RestartAllContainers,
}

/// Where a kill procedure stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillStep {
    /// The preStop hook runs; it is abandoned at `deadline`.
    PreStop {
        /// When it started.
        since: Time,
        /// When it is abandoned.
        deadline: Time,
    },
    /// Waiting for this container's turn in the termination order.
    AwaitTurn {
        /// When the wait began.
        since: Time,
        /// When the wait gives up.
        deadline: Time,
    },
    /// The stop signal was sent; SIGKILL follows at `kill_at`.
    Signalled {
        /// When SIGKILL is due.
        kill_at: Time,
    },
    /// SIGKILL was sent; waiting for the exit report.
    Killed,
}

/// What the procedure asks the driver to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillEffect {
    /// Start the preStop hook.
    RunPreStop,
    /// Abandon the running preStop hook (its container is gone).
    CancelPreStop,
    /// Send the stop signal.
    Term,
    /// Send SIGKILL.
    Kill,
}

/// One container instance's kill procedure.
#[derive(Clone, Debug)]
pub struct Kill {
    /// Why it is being killed.
    pub cause: KillCause,
    /// When the procedure began.
    pub t0: Time,
    /// Grace seconds left after the deductions so far.
    pub grace: i64,
    /// Whether it must wait for its turn in the termination order.
    pub ordered: bool,
    /// Current step.
    pub step: KillStep,
    /// The preStop hook was started and has not returned.
    pub pre_stop_running: bool,
}

// === impl Kill ===

impl Kill {
    /// Begins killing at `now` with `grace` seconds; returns the procedure and its first
    /// effects.
    pub fn begin(
        cause: KillCause,
        grace: i64,
        has_pre_stop: bool,
        ordered: bool,
        now: Time,
        effects: &mut Vec<KillEffect>,
    ) -> Self {
        let grace = grace.max(0);
        let mut kill = Kill {
            cause,
            t0: now,
            grace,
            ordered,
            step: KillStep::Killed,
            pre_stop_running: false,
        };
        if has_pre_stop && grace > 0 {
            kill.pre_stop_running = true;
            kill.step = KillStep::PreStop {
                since: now,
                deadline: add_secs(now, grace),
            };
            effects.push(KillEffect::RunPreStop);
        } else {
            kill.after_pre_stop(now, effects);
        }
        kill
    }

    fn after_pre_stop(&mut self, now: Time, effects: &mut Vec<KillEffect>) {
        if self.ordered && self.grace > 0 {
            self.step = KillStep::AwaitTurn {
                since: now,
                deadline: add_secs(now, self.grace),
            };
        } else {
            self.signal(now, effects);
        }
    }

    fn signal(&mut self, now: Time, effects: &mut Vec<KillEffect>) {
        let grace = self.grace.max(MINIMUM_GRACE_SECONDS);
        self.step = KillStep::Signalled {
            kill_at: add_secs(now, grace),
        };
        effects.push(KillEffect::Term);
    }

    /// The preStop hook returned (successfully or not: a failing preStop only emits an
    /// event and the kill continues).
    pub fn handle_pre_stop_done(&mut self, now: Time, effects: &mut Vec<KillEffect>) {
        self.pre_stop_running = false;
        if let KillStep::PreStop { since, .. } = self.step {
            self.grace = (self.grace - whole_seconds(now.duration_since(since))).max(0);
            self.after_pre_stop(now, effects);
        }
    }

    /// It is this container's turn (everything it waits for has terminated).
    pub fn handle_turn(&mut self, now: Time, effects: &mut Vec<KillEffect>) {
        if let KillStep::AwaitTurn { since, .. } = self.step {
            self.grace = (self.grace - whole_seconds(now.duration_since(since))).max(0);
            self.signal(now, effects);
        }
    }

    /// Fires whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Time, effects: &mut Vec<KillEffect>) {
        match self.step {
            KillStep::PreStop { deadline, .. } if deadline <= now => {
                // The kubelet stops waiting for the hook; the hook itself keeps running
                // until the container is killed.
                self.grace = 0;
                self.after_pre_stop(now, effects);
            }
            KillStep::AwaitTurn { deadline, .. } if deadline <= now => {
                self.grace = 0;
                self.signal(now, effects);
            }
            KillStep::Signalled { kill_at } if kill_at <= now => {
                self.step = KillStep::Killed;
                effects.push(KillEffect::Kill);
            }
            _ => {}
        }
    }

    /// The pod's termination caps this procedure: nothing may take longer than
    /// `deadline` (plus the 2s floor after a stop signal). Used when a shorter deletion
    /// grace arrives while the container is already being stopped.
    pub fn cap(&mut self, deadline: Time, now: Time) {
        match &mut self.step {
            KillStep::PreStop { deadline: d, .. } | KillStep::AwaitTurn { deadline: d, .. } => {
                *d = (*d).min(deadline.max(now));
            }
            KillStep::Signalled { kill_at } => {
                let floor = add_secs(now, MINIMUM_GRACE_SECONDS);
                *kill_at = (*kill_at).min(deadline.max(floor));
            }
            KillStep::Killed => {}
        }
        let left = whole_seconds(deadline.duration_since(now)).max(0);
        self.grace = self.grace.min(left);
    }

    /// The next instant this procedure has something to do.
    pub fn next_timeout(&self) -> Option<Time> {
        match self.step {
            KillStep::PreStop { deadline, .. } | KillStep::AwaitTurn { deadline, .. } => {
                Some(deadline)
            }
            KillStep::Signalled { kill_at } => Some(kill_at),
            KillStep::Killed => None,
        }
    }

    /// The kill is still waiting for the preStop hook.
    pub fn in_pre_stop(&self) -> bool {
        matches!(self.step, KillStep::PreStop { .. })
    }

    /// The preStop hook is still running (waited for or not).
    pub fn pre_stop_running(&self) -> bool {
        self.pre_stop_running
    }

    /// Waiting for its turn.
    pub fn awaiting_turn(&self) -> bool {
        matches!(self.step, KillStep::AwaitTurn { .. })
    }
}

/// Elapsed time truncated to whole seconds, as the kubelet deducts it.
fn whole_seconds(d: SignedDuration) -> i64 {
    d.as_secs()
}
