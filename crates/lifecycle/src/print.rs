//! The `kubectl get pods` columns, computed as the API server's printer (`printPod`) does.
//!
//! Server-side printing means these strings come from the API server, not from kubectl;
//! the algorithm below follows the one of the 1.34 tree: `Init:N/M` counts all init
//! containers, sidecars count in READY only while started and ready, regular statuses are
//! visited last to first so the first waiting/terminated one wins, and `Terminating` is
//! shown only for pods that are not in a terminal phase.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::SignedDuration;

use crate::Time;
use podrun_model::{PodPhase, is_sidecar};

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

fn condition_true(pod: &Pod, type_: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

fn last_finished(st: &ContainerStatus) -> Option<Time> {
    st.last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.finished_at.as_ref())
        .map(|t| t.0)
}

fn max_time(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `translateTimestampSince`: `<unknown>` for a missing time.
fn since(t: Option<Time>, now: Time) -> String {
    match t {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".to_owned(),
    }
}

/// The row for `pod` at `now`.
pub fn pod_row(pod: &Pod, now: Time) -> PodRow {
    let empty = Default::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let status = pod.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.as_deref().unwrap_or_default();
    let sidecar_names: Vec<&str> = init_specs
        .iter()
        .filter(|c| is_sidecar(c))
        .map(|c| c.name.as_str())
        .collect();
    let total = spec.containers.len() + sidecar_names.len();
    let mut ready = 0usize;
    let phase = status.phase.clone().unwrap_or_default();
    let mut reason = match status.reason.as_deref() {
        Some(r) if !r.is_empty() => r.to_owned(),
        _ => phase.clone(),
    };
    let gated = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"));
    if gated {
        reason = "SchedulingGated".to_owned();
    }

    let mut restarts: i64 = 0;
    let mut last_restart: Option<Time> = None;
    let mut sc_restarts: i64 = 0;
    let mut sc_last_restart: Option<Time> = None;
    let mut initializing = false;
    let init_statuses = status
        .init_container_statuses
        .as_deref()
        .unwrap_or_default();
    for (i, st) in init_statuses.iter().enumerate() {
        restarts += i64::from(st.restart_count);
        last_restart = max_time(last_restart, last_finished(st));
        let sidecar = sidecar_names.contains(&st.name.as_str());
        if sidecar {
            sc_restarts += i64::from(st.restart_count);
            sc_last_restart = max_time(sc_last_restart, last_finished(st));
        }
        let state = st.state.clone().unwrap_or_default();
        if let Some(t) = &state.terminated
            && t.exit_code == 0
        {
            continue;
        }
        if sidecar && st.started == Some(true) {
            if st.ready {
                ready += 1;
            }
            continue;
        }
        let waiting_reason = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .unwrap_or("");
        reason = if let Some(t) = &state.terminated {
            match t.reason.as_deref() {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => match t.signal {
                    Some(s) if s != 0 => format!("Init:Signal:{s}"),
                    _ => format!("Init:ExitCode:{}", t.exit_code),
                },
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = sc_restarts;
        last_restart = sc_last_restart;
        let mut has_running = false;
        for st in status.container_statuses.iter().flatten().rev() {
            restarts += i64::from(st.restart_count);
            last_restart = max_time(last_restart, last_finished(st));
            let state = st.state.clone().unwrap_or_default();
            let waiting_reason = state.waiting.as_ref().and_then(|w| w.reason.as_deref());
            if let Some(r) = waiting_reason.filter(|r| !r.is_empty()) {
                reason = r.to_owned();
            } else if let Some(t) = &state.terminated {
                reason = match t.reason.as_deref() {
                    Some(r) if !r.is_empty() => r.to_owned(),
                    _ => match t.signal {
                        Some(s) if s != 0 => format!("Signal:{s}"),
                        _ => format!("ExitCode:{}", t.exit_code),
                    },
                };
            } else if st.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "Ready") {
                "Running".to_owned()
            } else {
                "NotReady".to_owned()
            };
        }
    }

    if pod.metadata.deletion_timestamp.is_some() {
        if status.reason.as_deref() == Some("NodeLost") {
            reason = "Unknown".to_owned();
        } else if !PodPhase::of(pod).is_some_and(PodPhase::is_terminal) {
            reason = "Terminating".to_owned();
        }
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };
    PodRow {
        name: pod.metadata.name.clone().unwrap_or_default(),
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
        age: since(pod.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
    }
}

/// Kubernetes' `HumanDuration` (used for AGE and restart ages).
pub fn human_duration(d: SignedDuration) -> String {
    // Go converts with int(d.Seconds()), truncating toward zero; up to one second in
    // the future still reads as "0s" to tolerate clock skew.
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_owned();
    } else if seconds < 0 {
        return "0s".to_owned();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{h}h", hours / 24);
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{dy}d", hours / 24 / 365);
    }
    format!("{}y", hours / 24 / 365)
}
