//! Pod phase as a type: `status.phase` stays an `Option<String>` on the wire (the
//! k8s-openapi `PodStatus`), and code that decides anything from it reads it into a
//! [`PodPhase`] first.

use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

/// Where a pod is in its lifecycle (`PodPhase` in the core API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PodPhase {
    /// Accepted, but not every container has been started yet.
    Pending,
    /// Bound to a node and every container started; at least one still runs.
    Running,
    /// Every container terminated in success and none will be restarted.
    Succeeded,
    /// Every container terminated and at least one in failure.
    Failed,
    /// The node could not report the pod's state.
    Unknown,
}

/// A `status.phase` text that is not one of the five phases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported value: {0:?}: supported values: \"Failed\", \"Pending\", \"Running\", \"Succeeded\", \"Unknown\""
)]
pub struct UnknownPhase(pub String);

impl PodPhase {
    /// Every phase, in lifecycle order.
    pub const ALL: [PodPhase; 5] = [
        PodPhase::Pending,
        PodPhase::Running,
        PodPhase::Succeeded,
        PodPhase::Failed,
        PodPhase::Unknown,
    ];

    /// The API spelling (`Pending`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
            PodPhase::Unknown => "Unknown",
        }
    }

    /// Reads the API spelling; anything else is `None`.
    pub fn from_api(text: &str) -> Option<PodPhase> {
        PodPhase::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// The phase `pod.status.phase` names, if it names one.
    pub fn of(pod: &Pod) -> Option<PodPhase> {
        pod.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .and_then(PodPhase::from_api)
    }

    /// Is this phase terminal (`Succeeded` or `Failed`), one a pod never leaves?
    pub fn is_terminal(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

/// Has the pod reached a terminal phase (`status.phase` `Succeeded` or `Failed`)?
pub fn is_pod_terminal(pod: &Pod) -> bool {
    PodPhase::of(pod).is_some_and(PodPhase::is_terminal)
}

impl fmt::Display for PodPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PodPhase {
    type Err = UnknownPhase;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PodPhase::from_api(s).ok_or_else(|| UnknownPhase(s.to_owned()))
    }
}

impl From<PodPhase> for String {
    fn from(phase: PodPhase) -> String {
        phase.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_serialise_to_the_api_strings() {
        for phase in PodPhase::ALL {
            let json = serde_json::to_value(phase).expect("serialises");
            assert_eq!(json, serde_json::Value::from(phase.as_str()));
            let back: PodPhase = serde_json::from_value(json).expect("deserialises");
            assert_eq!(back, phase);
            assert_eq!(phase.as_str().parse::<PodPhase>(), Ok(phase));
        }
        assert!(serde_json::from_str::<PodPhase>("\"running\"").is_err());
        assert_eq!(
            "Done".parse::<PodPhase>().map_err(|e| e.to_string()),
            Err("unsupported value: \"Done\": supported values: \"Failed\", \"Pending\", \"Running\", \"Succeeded\", \"Unknown\"".to_owned())
        );
    }

    #[test]
    fn only_succeeded_and_failed_are_terminal() {
        let terminal: Vec<_> = PodPhase::ALL
            .into_iter()
            .filter(|p| p.is_terminal())
            .collect();
        assert_eq!(terminal, [PodPhase::Succeeded, PodPhase::Failed]);
    }

    #[test]
    fn a_pods_phase_is_read_from_its_status() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Running"}
        }))
        .expect("pod");
        assert_eq!(PodPhase::of(&pod), Some(PodPhase::Running));
        assert_eq!(PodPhase::of(&Pod::default()), None);
        assert!(!is_pod_terminal(&pod));
        assert!(!is_pod_terminal(&Pod::default()));
        let failed: Pod =
            serde_json::from_value(serde_json::json!({"status": {"phase": "Failed"}}))
                .expect("pod");
        assert!(is_pod_terminal(&failed));
    }
}
