//! Crash-loop backoff, as the kubelet's per-container backoff table computes it.
//!
//! One entry per container (the kubelet keys entries by pod and container identity plus
//! the spec hash; podrun never edits a running pod's spec, so the container is the key).
//! The table answers two questions before a container that has a previous exited
//! instance is started again: "is it still inside its backoff window?" and, when it is
//! started, "how long is the next window?". The first restart after a crash is therefore
//! immediate (no entry yet), later ones wait 10s, 20s, … up to 300s, and an entry whose
//! last step is more than 600s older than the exit starts over at 10s.

use std::collections::HashMap;

use k8s_openapi::jiff::SignedDuration;

use crate::{ContainerId, Time};

/// First delay after the immediate first restart.
pub const INITIAL_BACKOFF: SignedDuration = SignedDuration::from_secs(10);
/// The delay never grows beyond this.
pub const MAX_BACKOFF: SignedDuration = SignedDuration::from_secs(300);
/// An exit more than this long after the entry's last step resets the delay. The kubelet
/// pins this window to 600s since its 1.32 tree (it was 2 × MAX before, also 600s).
pub const BACKOFF_RESET: SignedDuration = SignedDuration::from_secs(600);

/// The crash-loop backoff table of one pod.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    entries: HashMap<ContainerId, Entry>,
    /// The kubelet's `crashLoopBackOff.maxContainerRestartPeriod`, if configured.
    max: Option<SignedDuration>,
}

/// Shortest `crashLoopBackOff.maxContainerRestartPeriod` the kubelet accepts.
pub const MIN_MAX_RESTART_PERIOD: SignedDuration = SignedDuration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: SignedDuration,
    last_update: Time,
}

// === impl Backoff ===

impl Backoff {
    /// A table whose delays stop growing at `max` (KubeletCrashLoopBackOffMax, on since
    /// 1.35): the kubelet config `crashLoopBackOff.maxContainerRestartPeriod`, 1s–300s.
    /// The first delay is then `min(10s, max)`.
    pub fn with_max(max: SignedDuration) -> Self {
        Backoff {
            entries: HashMap::new(),
            max: Some(max.clamp(MIN_MAX_RESTART_PERIOD, MAX_BACKOFF)),
        }
    }

    fn max(&self) -> SignedDuration {
        self.max.unwrap_or(MAX_BACKOFF)
    }

    fn initial(&self) -> SignedDuration {
        INITIAL_BACKOFF.min(self.max())
    }

    /// If a restart of `id`, whose previous instance ended at `event`, must still wait
    /// at `now`: the current delay (for the `back-off <delay>` message) and the instant
    /// the window ends.
    pub fn window(
        &self,
        id: ContainerId,
        event: Time,
        now: Time,
    ) -> Option<(SignedDuration, Time)> {
        let entry = self.entries.get(&id)?;
        if expired(event, entry.last_update) {
            return None;
        }
        if now.duration_since(event) < entry.delay {
            Some((entry.delay, crate::add(event, entry.delay)))
        } else {
            None
        }
    }

    /// Records that `id` is being started again at `now` after an instance that ended
    /// at `event`: the next window doubles, or starts at [`INITIAL_BACKOFF`] when there
    /// is no entry or it expired.
    pub fn step(&mut self, id: ContainerId, event: Time, now: Time) {
        let delay = match self.entries.get(&id) {
            Some(entry) if !expired(event, entry.last_update) => {
                entry.delay.saturating_mul(2).min(self.max())
            }
            _ => self.initial(),
        };
        self.entries.insert(
            id,
            Entry {
                delay,
                last_update: now,
            },
        );
    }
}

/// `hasExpired` of the backoff table: the event happened more than the reset window after
/// the entry's last step.
fn expired(event: Time, last_update: Time) -> bool {
    event.duration_since(last_update) > BACKOFF_RESET
}

/// Formats whole seconds the way Go prints a `time.Duration` (`10s`, `1m20s`, `5m0s`),
/// which is how the kubelet words the CrashLoopBackOff message.
pub fn go_duration(d: SignedDuration) -> String {
    let total = d.as_secs();
    let (sign, total) = if total < 0 {
        ("-", -total)
    } else {
        ("", total)
    };
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}
