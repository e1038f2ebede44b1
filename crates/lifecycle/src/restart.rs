//! The per-container restart decision of Kubernetes 1.37 (KEP-5307 container restart
//! policy and rules, KEP-5532 `RestartAllContainers`), as upstream's
//! `ContainerShouldRestart` computes it.
//!
//! A container's own `restartPolicy` and `restartPolicyRules` come first: the rules are
//! evaluated in order on the exit code and the first match wins; a `Restart` match
//! restarts, a `RestartAllContainers` match is handled by the pod-wide in-place restart
//! and otherwise falls back to the container policy. A container without its own policy
//! follows the pod's `restartPolicy`.

use k8s_openapi::api::core::v1::Container;

/// A `restartPolicy` value (pod or container level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// `Always`.
    Always,
    /// `OnFailure`: restart on a non-zero exit code.
    OnFailure,
    /// `Never`.
    Never,
}

impl RestartPolicy {
    /// Parses a validated policy; anything unknown reads as `Always` (the API default).
    pub fn parse(s: &str) -> Self {
        match s {
            "Never" => RestartPolicy::Never,
            "OnFailure" => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// Does this policy restart a container that exited with `exit_code`?
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// A rule's `action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// `Restart`: restart this container.
    Restart,
    /// `RestartAllContainers`: restart every init and regular container of the pod in
    /// place.
    RestartAllContainers,
}

/// One `restartPolicyRules` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartRule {
    /// What a match does.
    pub action: RuleAction,
    /// `exitCodes.operator` is `In` (otherwise `NotIn`).
    pub operator_in: bool,
    /// `exitCodes.values`.
    pub values: Vec<i32>,
}

impl RestartRule {
    /// Does the rule match this exit code?
    pub fn matches(&self, exit_code: i32) -> bool {
        self.values.contains(&exit_code) == self.operator_in
    }
}

/// A container's restart settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartSpec {
    /// The container's own `restartPolicy`, if set.
    pub policy: Option<RestartPolicy>,
    /// Its `restartPolicyRules` (only meaningful with a policy, as validation requires).
    pub rules: Vec<RestartRule>,
}

impl RestartSpec {
    /// Reads a container's `restartPolicy` and `restartPolicyRules`. Rules with an
    /// unknown action or operator or without `exitCodes` (rejected by validation) are
    /// ignored.
    pub fn from_container(c: &Container) -> Self {
        let policy = c.restart_policy.as_deref().map(RestartPolicy::parse);
        let rules = c
            .restart_policy_rules
            .iter()
            .flatten()
            .filter_map(|r| {
                let action = match r.action.as_str() {
                    "Restart" => RuleAction::Restart,
                    "RestartAllContainers" => RuleAction::RestartAllContainers,
                    _ => return None,
                };
                let codes = r.exit_codes.as_ref()?;
                let operator_in = match codes.operator.as_str() {
                    "In" => true,
                    "NotIn" => false,
                    _ => return None,
                };
                Some(RestartRule {
                    action,
                    operator_in,
                    values: codes.values.clone().unwrap_or_default(),
                })
            })
            .collect();
        RestartSpec { policy, rules }
    }

    /// The action of the first rule matching `exit_code` (`findMatchingContainerRestartRule`).
    /// Rules apply only to containers with their own policy.
    pub fn matching_action(&self, exit_code: i32) -> Option<RuleAction> {
        self.policy?;
        self.rules
            .iter()
            .find(|r| r.matches(exit_code))
            .map(|r| r.action)
    }

    /// `ContainerShouldRestart`: is this container restarted after exiting with
    /// `exit_code`, under pod policy `pod`?
    pub fn should_restart(&self, pod: RestartPolicy, exit_code: i32) -> bool {
        match self.policy {
            Some(own) => {
                self.matching_action(exit_code) == Some(RuleAction::Restart)
                    || own.restarts(exit_code)
            }
            None => pod.restarts(exit_code),
        }
    }

    /// Its exit with `exit_code` triggers a `RestartAllContainers` of the pod.
    pub fn triggers_restart_all(&self, exit_code: i32) -> bool {
        self.matching_action(exit_code) == Some(RuleAction::RestartAllContainers)
    }

    /// The container may restart after an exit with `exit_code`, either by itself or
    /// through a pod-wide restart (`getPhase` counts both as restartable).
    pub fn restartable(&self, pod: RestartPolicy, exit_code: i32) -> bool {
        self.should_restart(pod, exit_code) || self.triggers_restart_all(exit_code)
    }

    /// A running container killed by its liveness or startup probe is restarted unless
    /// its effective policy is `Never`; rules are not consulted (no exit code is known
    /// when the kubelet decides).
    pub fn restarts_after_probe_kill(&self, pod: RestartPolicy) -> bool {
        self.policy.unwrap_or(pod) != RestartPolicy::Never
    }

    /// Has any `RestartAllContainers` rule.
    pub fn has_restart_all_rule(&self) -> bool {
        self.policy.is_some()
            && self
                .rules
                .iter()
                .any(|r| r.action == RuleAction::RestartAllContainers)
    }
}
