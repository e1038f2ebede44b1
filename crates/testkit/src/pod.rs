//! Builders for defaulted pods: the shape the kubelet receives after API defaulting and
//! validation (probe defaults filled, `terminationGracePeriodSeconds` set).

use k8s_openapi::api::core::v1::{
    Container, ContainerRestartRule, ContainerRestartRuleOnExitCodes, ExecAction, Lifecycle,
    LifecycleHandler, Pod, PodSpec, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

/// The instant every simulated scenario starts at (creationTimestamp of built pods).
pub const EPOCH_SECONDS: i64 = 1_700_000_000;

/// [`EPOCH_SECONDS`] as a timestamp.
pub fn epoch() -> Timestamp {
    // Invariant: a small positive constant is always a valid timestamp.
    Timestamp::from_second(EPOCH_SECONDS).expect("epoch is a valid timestamp")
}

/// A probe with API defaults (period 10s, timeout 1s, success 1, failure 3).
#[derive(Clone, Debug)]
pub struct ProbeBuilder(Probe);

/// A probe with API defaults.
pub fn probe() -> ProbeBuilder {
    ProbeBuilder(Probe {
        exec: Some(ExecAction {
            command: Some(vec!["true".to_owned()]),
        }),
        initial_delay_seconds: Some(0),
        period_seconds: Some(10),
        timeout_seconds: Some(1),
        success_threshold: Some(1),
        failure_threshold: Some(3),
        ..Probe::default()
    })
}

impl ProbeBuilder {
    /// `periodSeconds`.
    pub fn period(mut self, s: i32) -> Self {
        self.0.period_seconds = Some(s);
        self
    }
    /// `initialDelaySeconds`.
    pub fn initial_delay(mut self, s: i32) -> Self {
        self.0.initial_delay_seconds = Some(s);
        self
    }
    /// `successThreshold`.
    pub fn success_threshold(mut self, n: i32) -> Self {
        self.0.success_threshold = Some(n);
        self
    }
    /// `failureThreshold`.
    pub fn failure_threshold(mut self, n: i32) -> Self {
        self.0.failure_threshold = Some(n);
        self
    }
    /// Probe-level `terminationGracePeriodSeconds`.
    pub fn termination_grace(mut self, s: i64) -> Self {
        self.0.termination_grace_period_seconds = Some(s);
        self
    }
    /// The API object.
    pub fn build(self) -> Probe {
        self.0
    }
}

/// A container spec.
#[derive(Clone, Debug)]
pub struct ContainerBuilder(Container);

/// A container named `name` running image `busybox:1.36`.
pub fn container(name: &str) -> ContainerBuilder {
    ContainerBuilder(Container {
        name: name.to_owned(),
        image: Some("busybox:1.36".to_owned()),
        ..Container::default()
    })
}

fn exec_handler() -> LifecycleHandler {
    LifecycleHandler {
        exec: Some(ExecAction {
            command: Some(vec!["true".to_owned()]),
        }),
        ..LifecycleHandler::default()
    }
}

impl ContainerBuilder {
    /// `image`.
    pub fn image(mut self, image: &str) -> Self {
        self.0.image = Some(image.to_owned());
        self
    }
    /// `startupProbe`.
    pub fn startup_probe(mut self, p: ProbeBuilder) -> Self {
        self.0.startup_probe = Some(p.build());
        self
    }
    /// `readinessProbe`.
    pub fn readiness_probe(mut self, p: ProbeBuilder) -> Self {
        self.0.readiness_probe = Some(p.build());
        self
    }
    /// `livenessProbe`.
    pub fn liveness_probe(mut self, p: ProbeBuilder) -> Self {
        self.0.liveness_probe = Some(p.build());
        self
    }
    /// `lifecycle.postStart` (an exec handler; its behaviour is scripted in the sim).
    pub fn post_start(mut self) -> Self {
        self.0
            .lifecycle
            .get_or_insert_with(Lifecycle::default)
            .post_start = Some(exec_handler());
        self
    }
    /// `lifecycle.preStop` (an exec handler; its behaviour is scripted in the sim).
    pub fn pre_stop(mut self) -> Self {
        self.0
            .lifecycle
            .get_or_insert_with(Lifecycle::default)
            .pre_stop = Some(exec_handler());
        self
    }
    /// The container's own `restartPolicy`.
    pub fn restart_policy(mut self, policy: &str) -> Self {
        self.0.restart_policy = Some(policy.to_owned());
        self
    }
    /// Appends a `restartPolicyRules` entry: `action` (`Restart`,
    /// `RestartAllContainers`) on exit codes `operator` (`In`, `NotIn`) `values`.
    pub fn rule(mut self, action: &str, operator: &str, values: &[i32]) -> Self {
        self.0
            .restart_policy_rules
            .get_or_insert_with(Vec::new)
            .push(ContainerRestartRule {
                action: action.to_owned(),
                exit_codes: Some(ContainerRestartRuleOnExitCodes {
                    operator: operator.to_owned(),
                    values: Some(values.to_vec()),
                }),
            });
        self
    }
    /// The API object.
    pub fn build(self) -> Container {
        self.0
    }
}

/// A pod spec under construction.
#[derive(Clone, Debug)]
pub struct PodBuilder {
    name: String,
    spec: PodSpec,
}

/// A pod named `name` in namespace `default`, `restartPolicy: Always`, TGPS 30.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder {
        name: name.to_owned(),
        spec: PodSpec {
            restart_policy: Some("Always".to_owned()),
            termination_grace_period_seconds: Some(30),
            ..PodSpec::default()
        },
    }
}

impl PodBuilder {
    /// `spec.restartPolicy`.
    pub fn restart_policy(mut self, policy: &str) -> Self {
        self.spec.restart_policy = Some(policy.to_owned());
        self
    }
    /// `spec.terminationGracePeriodSeconds`.
    pub fn grace(mut self, seconds: i64) -> Self {
        self.spec.termination_grace_period_seconds = Some(seconds);
        self
    }
    /// `spec.activeDeadlineSeconds`.
    pub fn active_deadline(mut self, seconds: i64) -> Self {
        self.spec.active_deadline_seconds = Some(seconds);
        self
    }
    /// A regular init container.
    pub fn init(mut self, c: ContainerBuilder) -> Self {
        self.spec
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(c.build());
        self
    }
    /// A sidecar: an init container with `restartPolicy: Always`.
    pub fn sidecar(mut self, c: ContainerBuilder) -> Self {
        let mut c = c.build();
        c.restart_policy = Some("Always".to_owned());
        self.spec
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(c);
        self
    }
    /// A regular container.
    pub fn container(mut self, c: ContainerBuilder) -> Self {
        self.spec.containers.push(c.build());
        self
    }
    /// The pod, created at [`epoch`].
    pub fn build(self) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some("default".to_owned()),
                uid: Some(format!("uid-{}", self.name)),
                creation_timestamp: Some(Time(epoch())),
                ..ObjectMeta::default()
            },
            spec: Some(self.spec),
            status: None,
        }
    }
}
