//! Readiness, drain and shutdown (spec §3.6–3.7).
//!
//! [`Control`] is the shared switchboard: the admin endpoints and the signal handler
//! flip it, the listeners and HTTP connections watch it. [`plan_shutdown`] is the
//! pure decision of what a SIGTERM means, given what happened before.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::DrainSettings;

/// Where the proxy is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Listeners not bound yet: not ready.
    Starting,
    /// Serving; `/healthz/ready` answers 200.
    Live,
    /// Inbound drain requested (`/drain`, `/drain_listeners`): inbound still accepts,
    /// but every inbound HTTP connection is told to go away.
    Draining,
    /// SIGTERM received: inbound refuses new connections and finishes in-flight ones.
    Terminating,
}

/// What to do after SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownPlan {
    /// Exit at once (native mode: drained before by the `preStop` hook).
    ExitNow,
    /// Classic mode: wait this long, then exit.
    WaitFor(Duration),
    /// `EXIT_ON_ZERO_ACTIVE_CONNECTIONS`: wait `minimum`, then check every `poll`
    /// and exit once no downstream connection is active.
    WaitForZero {
        /// `MINIMUM_DRAIN_DURATION`.
        minimum: Duration,
        /// Check period.
        poll: Duration,
    },
}

/// Decides what SIGTERM means (spec §3.7): after a `/drain` the app containers have
/// already exited, so nothing is left to serve; otherwise run the classic timing.
pub fn plan_shutdown(settings: &DrainSettings, drained_before: bool) -> ShutdownPlan {
    if drained_before {
        ShutdownPlan::ExitNow
    } else if settings.exit_on_zero_active_connections {
        ShutdownPlan::WaitForZero {
            minimum: settings.minimum_drain_duration,
            poll: settings.poll_interval,
        }
    } else {
        ShutdownPlan::WaitFor(settings.termination_drain_duration)
    }
}

/// Shared lifecycle switches.
#[derive(Debug)]
pub struct Control {
    phase: watch::Sender<Phase>,
    drained_before: AtomicBool,
    draining_since: OnceLock<Instant>,
    sigterm: watch::Sender<bool>,
    quit: watch::Sender<bool>,
    exited: watch::Sender<bool>,
}

impl Default for Control {
    fn default() -> Self {
        Self::new()
    }
}

impl Control {
    /// A control in [`Phase::Starting`].
    pub fn new() -> Self {
        Control {
            phase: watch::channel(Phase::Starting).0,
            drained_before: AtomicBool::new(false),
            draining_since: OnceLock::new(),
            sigterm: watch::channel(false).0,
            quit: watch::channel(false).0,
            exited: watch::channel(false).0,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Watches the phase.
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Ready: live and not draining or shutting down.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Live
    }

    /// Listeners are up.
    pub fn set_live(&self) {
        self.advance(Phase::Live);
    }

    /// Starts the inbound drain and remembers it, so SIGTERM later exits at once.
    pub fn drain(&self) {
        self.drained_before.store(true, Ordering::SeqCst);
        // Set before the phase moves, so whoever sees `Draining` sees when it began.
        self.draining_since.get_or_init(Instant::now);
        self.advance(Phase::Draining);
    }

    /// When the first drain request came, if one did.
    pub fn draining_since(&self) -> Option<Instant> {
        self.draining_since.get().copied()
    }

    /// Whether a drain was requested before.
    pub fn drained_before(&self) -> bool {
        self.drained_before.load(Ordering::SeqCst)
    }

    /// SIGTERM (or SIGINT) arrived.
    pub fn terminate(&self) {
        self.advance(Phase::Terminating);
        self.sigterm.send_replace(true);
    }

    /// `/quitquitquit`: exit now, skipping the drain.
    pub fn quit(&self) {
        self.quit.send_replace(true);
    }

    /// Marks the process as exiting: every connection task stops.
    pub fn set_exited(&self) {
        self.exited.send_replace(true);
    }

    /// Resolves once the proxy exits.
    pub async fn exited(&self) {
        let mut rx = self.exited.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we borrow it.
        let _ = rx.wait_for(|e| *e).await;
    }

    /// Resolves once SIGTERM arrived.
    pub async fn sigterm_received(&self) {
        let mut rx = self.sigterm.subscribe();
        let _ = rx.wait_for(|e| *e).await;
    }

    /// Resolves once `/quitquitquit` was called.
    pub async fn quit_requested(&self) {
        let mut rx = self.quit.subscribe();
        let _ = rx.wait_for(|e| *e).await;
    }

    /// Moves the phase forward only: a late "live" never undoes a drain.
    fn advance(&self, to: Phase) {
        self.phase.send_if_modified(|p| {
            if to > *p {
                *p = to;
                true
            } else {
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_plans() {
        let classic = DrainSettings::default();
        assert_eq!(
            plan_shutdown(&classic, false),
            ShutdownPlan::WaitFor(Duration::from_secs(5))
        );
        assert_eq!(plan_shutdown(&classic, true), ShutdownPlan::ExitNow);
        let zero = DrainSettings {
            exit_on_zero_active_connections: true,
            ..DrainSettings::default()
        };
        assert_eq!(
            plan_shutdown(&zero, false),
            ShutdownPlan::WaitForZero {
                minimum: Duration::from_secs(5),
                poll: Duration::from_secs(1)
            }
        );
        assert_eq!(plan_shutdown(&zero, true), ShutdownPlan::ExitNow);
    }

    #[test]
    fn phase_only_moves_forward() {
        let c = Control::new();
        assert!(!c.is_ready());
        c.set_live();
        assert!(c.is_ready());
        c.drain();
        assert_eq!(c.phase(), Phase::Draining);
        assert!(c.drained_before());
        c.set_live();
        assert_eq!(c.phase(), Phase::Draining);
        c.terminate();
        assert_eq!(c.phase(), Phase::Terminating);
        c.drain();
        assert_eq!(c.phase(), Phase::Terminating);
        assert!(!c.is_ready());
    }

    #[test]
    fn the_drain_began_at_the_first_drain_request() {
        let c = Control::new();
        c.set_live();
        assert_eq!(c.draining_since(), None);
        c.drain();
        let since = c.draining_since().expect("drain start");
        c.drain();
        assert_eq!(c.draining_since(), Some(since));
        // Classic mode: SIGTERM without a drain before it.
        let classic = Control::new();
        classic.terminate();
        assert_eq!(classic.draining_since(), None);
    }
}
