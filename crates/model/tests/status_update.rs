//! Pod status updates: `observedGeneration` values and which containers may leave the
//! `terminated` state (upstream `ValidatePodStatusUpdate` at 1.37 default gates).

use k8s_openapi::api::core::v1::{
    Container, ContainerRestartRule, ContainerRestartRuleOnExitCodes, ContainerState,
    ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod, PodCondition, PodSpec,
    PodStatus,
};
use podrun_model::validate_pod_status_update;

fn c(name: &str, policy: Option<&str>, rule: Option<(&str, i32)>) -> Container {
    Container {
        name: name.to_owned(),
        restart_policy: policy.map(str::to_owned),
        restart_policy_rules: rule.map(|(action, code)| {
            vec![ContainerRestartRule {
                action: action.to_owned(),
                exit_codes: Some(ContainerRestartRuleOnExitCodes {
                    operator: "In".to_owned(),
                    values: Some(vec![code]),
                }),
            }]
        }),
        ..Container::default()
    }
}

fn terminated(name: &str, code: i32) -> ContainerStatus {
    ContainerStatus {
        name: name.to_owned(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn running(name: &str) -> ContainerStatus {
    ContainerStatus {
        name: name.to_owned(),
        state: Some(ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod(policy: &str, init: Vec<Container>, containers: Vec<Container>, status: PodStatus) -> Pod {
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("p".to_owned()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.to_owned()),
            init_containers: Some(init),
            containers,
            ..Default::default()
        }),
        status: Some(status),
    }
}

fn update(
    policy: &str,
    init: Vec<Container>,
    containers: Vec<Container>,
    old: PodStatus,
    new: PodStatus,
) -> Result<(), String> {
    let old = pod(policy, init.clone(), containers.clone(), old);
    let new = pod(policy, init, containers, new);
    validate_pod_status_update(&new, &old).map_err(|e| e.to_string())
}

fn regular(statuses: Vec<ContainerStatus>) -> PodStatus {
    PodStatus {
        container_statuses: Some(statuses),
        ..Default::default()
    }
}

#[test]
fn terminated_container_may_not_run_again_unless_it_restarts() {
    let err = update(
        "Never",
        vec![],
        vec![c("a", None, None)],
        regular(vec![terminated("a", 1)]),
        regular(vec![running("a")]),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "Pod \"p\" is invalid: status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"
    );
    // Its own rule restarts it on 42.
    update(
        "Never",
        vec![],
        vec![c("a", Some("Never"), Some(("Restart", 42)))],
        regular(vec![terminated("a", 42)]),
        regular(vec![running("a")]),
    )
    .unwrap();
    // Own Never in an Always pod: no.
    assert!(
        update(
            "Always",
            vec![],
            vec![c("a", Some("Never"), None)],
            regular(vec![terminated("a", 0)]),
            regular(vec![running("a")]),
        )
        .is_err()
    );
    // A RestartAllContainers rule anywhere allows every transition.
    update(
        "Never",
        vec![],
        vec![
            c("a", None, None),
            c("b", Some("Never"), Some(("RestartAllContainers", 42))),
        ],
        regular(vec![terminated("a", 0), running("b")]),
        regular(vec![running("a"), running("b")]),
    )
    .unwrap();
}

#[test]
fn r123323_sidecars_may_leave_terminated_in_never_pods() {
    let init = |s: Vec<ContainerStatus>| PodStatus {
        init_container_statuses: Some(s),
        ..Default::default()
    };
    update(
        "Never",
        vec![c("sc", Some("Always"), None)],
        vec![c("a", None, None)],
        init(vec![terminated("sc", 1)]),
        init(vec![running("sc")]),
    )
    .unwrap();
    let err = update(
        "Never",
        vec![c("ric", None, None)],
        vec![c("a", None, None)],
        init(vec![terminated("ric", 1)]),
        init(vec![running("ric")]),
    )
    .unwrap_err();
    assert!(err.ends_with(
        "status.initContainerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"
    ));
}

#[test]
fn observed_generation_must_be_non_negative() {
    let status = PodStatus {
        observed_generation: Some(-1),
        conditions: Some(vec![PodCondition {
            type_: "Ready".to_owned(),
            status: "True".to_owned(),
            observed_generation: Some(-1),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let err = update(
        "Always",
        vec![],
        vec![c("a", None, None)],
        PodStatus::default(),
        status,
    )
    .unwrap_err();
    assert_eq!(
        err,
        "Pod \"p\" is invalid: [status.observedGeneration: Invalid value: -1: must be a non-negative integer, status.conditions[0].observedGeneration: Invalid value: -1: must be a non-negative integer]"
    );
}
