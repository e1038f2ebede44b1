//! Pod status-update validation (upstream `ValidatePodStatusUpdate`): the parts the
//! 1.35–1.37 lifecycle changed — `observedGeneration` values, and which container may
//! leave the `terminated` state (`ValidateContainerStateTransition`,
//! `ValidateInitContainerStateTransition` with ContainerRestartRules and
//! RestartAllContainersOnContainerExits on).

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodSpec};

use crate::field::{FieldError, Invalid, Path};

const NON_NEGATIVE: &str = "must be a non-negative integer";
const NOT_NON_TERMINATED: &str = "may not be transitioned to non-terminated state";

/// Upstream `ContainerShouldRestart`: the container's own `restartPolicy` and its
/// `restartPolicyRules` (first match wins; a `RestartAllContainers` match falls back to
/// the container policy) when it has a policy, else the pod's `restartPolicy`.
pub fn container_should_restart(c: &Container, pod: &PodSpec, exit_code: i32) -> bool {
    if let Some(policy) = c.restart_policy.as_deref() {
        let matched = c.restart_policy_rules.iter().flatten().find(|r| {
            r.exit_codes.as_ref().is_some_and(|codes| {
                let listed = codes.values.iter().flatten().any(|v| *v == exit_code);
                match codes.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                }
            })
        });
        if matched.is_some_and(|r| r.action == "Restart") {
            return true;
        }
        match policy {
            "Always" => return true,
            "OnFailure" => return exit_code != 0,
            "Never" => return false,
            _ => {}
        }
    }
    match pod.restart_policy.as_deref() {
        Some("OnFailure") => exit_code != 0,
        Some("Never") => false,
        _ => true,
    }
}

/// Does any init or regular container carry a `RestartAllContainers` rule?
fn any_restart_all_rule(spec: &PodSpec) -> bool {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| {
            c.restart_policy.is_some()
                && c.restart_policy_rules
                    .iter()
                    .flatten()
                    .any(|r| r.action == "RestartAllContainers")
        })
}

fn transitions(
    new: &[ContainerStatus],
    old: &[ContainerStatus],
    containers: &[Container],
    spec: &PodSpec,
    path: &Path,
    init: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if any_restart_all_rule(spec) {
        return errs;
    }
    for (i, o) in old.iter().enumerate() {
        let Some(t) = o.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            continue;
        };
        let Some(c) = containers.iter().find(|c| c.name == o.name) else {
            continue;
        };
        let sidecar = init && crate::is_sidecar(c);
        if sidecar || container_should_restart(c, spec, t.exit_code) {
            continue;
        }
        let left = new
            .iter()
            .any(|n| n.name == o.name && n.state.as_ref().is_none_or(|s| s.terminated.is_none()));
        if left {
            errs.push(FieldError::forbidden(
                path.index(i).child("state"),
                NOT_NON_TERMINATED,
            ));
        }
    }
    errs
}

/// Validates a status update of `old` to `new` (the spec is `old`'s: it is immutable
/// where it matters here). Errors come in upstream's order.
pub fn validate_pod_status_update(new: &Pod, old: &Pod) -> Result<(), Invalid> {
    let mut errs = Vec::new();
    let empty = PodSpec::default();
    let spec = old.spec.as_ref().unwrap_or(&empty);
    let status = new.status.clone().unwrap_or_default();
    let old_status = old.status.clone().unwrap_or_default();
    let sp = Path::new("status");
    if let Some(g) = status.observed_generation.filter(|g| *g < 0) {
        errs.push(FieldError::invalid_num(
            sp.child("observedGeneration"),
            g,
            NON_NEGATIVE,
        ));
    }
    for (i, c) in status.conditions.iter().flatten().enumerate() {
        if let Some(g) = c.observed_generation.filter(|g| *g < 0) {
            errs.push(FieldError::invalid_num(
                sp.child("conditions").index(i).child("observedGeneration"),
                g,
                NON_NEGATIVE,
            ));
        }
    }
    errs.extend(transitions(
        status.container_statuses.as_deref().unwrap_or_default(),
        old_status.container_statuses.as_deref().unwrap_or_default(),
        &spec.containers,
        spec,
        &sp.child("containerStatuses"),
        false,
    ));
    errs.extend(transitions(
        status
            .init_container_statuses
            .as_deref()
            .unwrap_or_default(),
        old_status
            .init_container_statuses
            .as_deref()
            .unwrap_or_default(),
        spec.init_containers.as_deref().unwrap_or_default(),
        spec,
        &sp.child("initContainerStatuses"),
        true,
    ));
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Invalid::new(
            "Pod",
            new.metadata.name.clone().unwrap_or_default(),
            errs,
        ))
    }
}
