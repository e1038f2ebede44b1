//! Pod status as the kubelet reports it: container statuses, the pod phase
//! (`getPhase`) and the kubelet-owned conditions.
//!
//! The phase and condition functions work on API statuses only, exactly like the
//! kubelet's, so they can be checked against the spec's tables without a machine.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, PodCondition, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time as ApiTime;
use podrun_model::{PodPhase, is_sidecar};

use crate::Time;
use crate::restart::{RestartPolicy, RestartSpec};
use crate::slot::{Instance, Kind, Slot, Terminated, Waiting};

/// The waiting and last-state reason of a container removed by `RestartAllContainers`.
pub const RESTARTING_ALL_CONTAINERS: &str = "RestartingAllContainers";
/// The message that goes with [`RESTARTING_ALL_CONTAINERS`].
pub const RESTARTING_ALL_CONTAINERS_MESSAGE: &str =
    "The container is removed because RestartAllContainers in place";

/// Identity of the pod for container IDs.
pub(crate) struct PodIdentity<'a> {
    pub uid: &'a str,
    pub has_init_containers: bool,
}

fn api_time(t: Time) -> ApiTime {
    ApiTime(t)
}

/// The `terminated` state of a finished instance.
fn terminated_state(t: &Terminated, pod: &PodIdentity<'_>, name: &str) -> ContainerState {
    if t.restart_all {
        return ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: t.exit.exit_code,
                reason: Some(RESTARTING_ALL_CONTAINERS.to_owned()),
                message: Some(RESTARTING_ALL_CONTAINERS_MESSAGE.to_owned()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
    }
    let reason = if t.exit.oom_killed {
        "OOMKilled"
    } else if t.exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(container_id(pod.uid, name, t.restart_count)),
            exit_code: t.exit.exit_code,
            finished_at: Some(api_time(t.finished_at)),
            message: t.exit.message.clone().filter(|m| !m.is_empty()),
            reason: Some(reason.to_owned()),
            signal: t.exit.signal,
            started_at: Some(api_time(t.started_at)),
        }),
        ..ContainerState::default()
    }
}

fn waiting_state(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()).filter(|r| !r.is_empty()),
            message: Some(message.to_owned()).filter(|m| !m.is_empty()),
        }),
        ..ContainerState::default()
    }
}

fn running_state(i: &Instance) -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(api_time(i.started_at)),
        }),
        ..ContainerState::default()
    }
}

/// `podrun://<podUID>-<name>-<restartCount>`: stable per instance, so logs and
/// `--previous` can find an instance by its ID.
pub fn container_id(uid: &str, name: &str, restart_count: i32) -> String {
    format!("podrun://{uid}-{name}-{restart_count}")
}

/// The container status of one slot. `will_restart`: the container is not running and
/// will be started again (only then does the reason-cache overlay replace its
/// terminated state, as `convertToAPIContainerStatuses` does).
pub(crate) fn container_status(
    slot: &Slot,
    pod: &PodIdentity<'_>,
    will_restart: bool,
) -> ContainerStatus {
    let name = slot.spec.name.as_str();
    let default_reason = if pod.has_init_containers {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let mut st = ContainerStatus {
        name: name.to_owned(),
        image: slot.spec.image.clone(),
        image_id: String::new(),
        started: Some(false),
        ready: false,
        ..ContainerStatus::default()
    };
    let terminated = |t: &Option<Terminated>| t.as_ref().map(|t| terminated_state(t, pod, name));
    if let Some(i) = &slot.current {
        st.state = Some(running_state(i));
        st.last_state = terminated(&slot.last);
        st.restart_count = i.restart_count;
        st.container_id = Some(container_id(pod.uid, name, i.restart_count));
        st.started = Some(i.started());
        // A regular init container is ready only once it completed.
        st.ready = slot.spec.kind != Kind::RegularInit && i.started() && i.probes.ready();
    } else if let Some(last) = slot.last.as_ref().filter(|t| t.restart_all) {
        // Removed by RestartAllContainers; its new instance does not exist yet.
        st.restart_count = last.restart_count;
        st.state = Some(waiting_state(
            RESTARTING_ALL_CONTAINERS,
            RESTARTING_ALL_CONTAINERS_MESSAGE,
        ));
        st.last_state = terminated(&slot.last);
    } else if let Some(last) = &slot.last {
        st.restart_count = last.restart_count;
        st.container_id = Some(container_id(pod.uid, name, last.restart_count));
        match (&slot.waiting, will_restart) {
            (Some(Waiting { reason, message }), true) => {
                st.state = Some(waiting_state(reason, message));
                st.last_state = terminated(&slot.last);
            }
            _ => {
                st.state = terminated(&slot.last);
                st.last_state = terminated(&slot.previous);
            }
        }
        // A regular init container is ready once it completed.
        st.ready = slot.spec.kind == Kind::RegularInit && last.exit.exit_code == 0;
    } else {
        let (reason, message) = match &slot.waiting {
            Some(w) => (w.reason.as_str(), w.message.as_str()),
            None => (default_reason, ""),
        };
        st.state = Some(waiting_state(reason, message));
    }
    st
}

// === phase ===

fn state_of(st: Option<&ContainerStatus>) -> Option<&ContainerState> {
    st.and_then(|s| s.state.as_ref())
}

fn last_terminated(st: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    st.last_state.as_ref().and_then(|s| s.terminated.as_ref())
}

/// The container's last exit cannot end the pod: it restarts by itself or through a
/// `RestartAllContainers` (or was just removed by one).
fn restartable(c: &Container, policy: RestartPolicy, st: Option<&ContainerStatus>) -> bool {
    let Some(st) = st else {
        return false;
    };
    if st
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.reason.as_deref() == Some(RESTARTING_ALL_CONTAINERS))
        && st.state.as_ref().is_some_and(|s| s.terminated.is_none())
    {
        return true;
    }
    let exit = st
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| last_terminated(st))
        .map(|t| t.exit_code);
    exit.is_some_and(|code| RestartSpec::from_container(c).restartable(policy, code))
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

/// The pod's `restartPolicy`, `Always` when unset.
pub fn restart_policy(spec: &PodSpec) -> &str {
    spec.restart_policy.as_deref().unwrap_or("Always")
}

/// The kubelet's `getPhase`: the phase from the spec and the API container statuses.
/// `pod_is_terminal` is true once the kubelet decided the pod is finished (deleted,
/// deadline exceeded) and no container runs any more.
pub fn pod_phase(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    pod_is_terminal: bool,
) -> PodPhase {
    let policy = RestartPolicy::parse(restart_policy(spec));
    let (mut pending_ric, mut failed_init) = (0, 0);
    let mut ric_not_restartable = false;
    let (mut running, mut waiting, mut stopped, mut succeeded, mut unknown, mut pending_sc) =
        (0, 0, 0, 0, 0, 0);
    for c in spec.init_containers.iter().flatten() {
        let st = find(init_statuses, &c.name);
        let state = state_of(st);
        if is_sidecar(c) {
            match state {
                None => unknown += 1,
                Some(s) if s.running.is_some() => {
                    running += 1;
                    if !st.and_then(|s| s.started).unwrap_or(false) {
                        pending_sc += 1;
                    }
                }
                Some(s) if s.terminated.is_some() => {}
                Some(_) if st.and_then(last_terminated).is_some() => {}
                Some(_) => {
                    pending_sc += 1;
                    waiting += 1;
                }
            }
            continue;
        }
        match state {
            None => pending_ric += 1,
            Some(s) if s.running.is_some() => pending_ric += 1,
            Some(s) => {
                let exit = match (&s.terminated, st.and_then(last_terminated)) {
                    (Some(t), _) | (None, Some(t)) => Some(t.exit_code),
                    (None, None) => None,
                };
                match exit {
                    Some(0) => {}
                    Some(_) => {
                        failed_init += 1;
                        if !restartable(c, policy, st) {
                            ric_not_restartable = true;
                        }
                    }
                    None => pending_ric += 1,
                }
            }
        }
    }
    let mut initialised_before = false;
    for c in &spec.containers {
        let st = find(statuses, &c.name);
        match state_of(st) {
            None => unknown += 1,
            Some(s) if s.running.is_some() => {
                running += 1;
                initialised_before = true;
            }
            Some(s) if s.terminated.is_some() => {
                stopped += 1;
                initialised_before = true;
                if s.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
                    succeeded += 1;
                }
            }
            Some(_) if st.and_then(last_terminated).is_some() => stopped += 1,
            Some(_) => waiting += 1,
        }
    }
    if failed_init > 0 && ric_not_restartable {
        return PodPhase::Failed;
    }
    if pending_ric > 0 || (pending_sc > 0 && !initialised_before) || waiting > 0 {
        return PodPhase::Pending;
    }
    if running > 0 && unknown == 0 {
        return PodPhase::Running;
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if pod_is_terminal {
            return if stopped == succeeded {
                PodPhase::Succeeded
            } else {
                PodPhase::Failed
            };
        }
        // Any stopped container that will run again keeps the pod Running.
        let restarts = spec
            .containers
            .iter()
            .any(|c| restartable(c, policy, find(statuses, &c.name)));
        if restarts {
            return PodPhase::Running;
        }
        return if stopped == succeeded {
            PodPhase::Succeeded
        } else {
            PodPhase::Failed
        };
    }
    PodPhase::Pending
}

// === conditions ===

/// `PodScheduled`.
pub const POD_SCHEDULED: &str = "PodScheduled";
/// `PodReadyToStartContainers`.
pub const POD_READY_TO_START_CONTAINERS: &str = "PodReadyToStartContainers";
/// `Initialized`.
pub const INITIALIZED: &str = "Initialized";
/// `ContainersReady`.
pub const CONTAINERS_READY: &str = "ContainersReady";
/// `Ready`.
pub const READY: &str = "Ready";
/// `AllContainersRestarting`.
pub const ALL_CONTAINERS_RESTARTING: &str = "AllContainersRestarting";

/// A condition without times (the machine adds transition times).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// Condition type.
    pub type_: &'static str,
    /// `True` / `False`.
    pub status: bool,
    /// Reason, if any.
    pub reason: Option<&'static str>,
    /// Message, if any.
    pub message: Option<String>,
}

impl Condition {
    fn new(type_: &'static str, status: bool) -> Self {
        Condition {
            type_,
            status,
            reason: None,
            message: None,
        }
    }

    fn because(mut self, reason: &'static str, message: Option<String>) -> Self {
        self.reason = Some(reason);
        self.message = message;
        self
    }

    /// The API condition with the given transition time; `generation` is the pod's
    /// `metadata.generation` the kubelet acted on (`AllContainersRestarting` carries
    /// none).
    pub fn to_api(&self, last_transition: Time, generation: Option<i64>) -> PodCondition {
        PodCondition {
            observed_generation: generation.filter(|_| self.type_ != ALL_CONTAINERS_RESTARTING),
            type_: self.type_.to_owned(),
            status: if self.status { "True" } else { "False" }.to_owned(),
            reason: self.reason.map(str::to_owned),
            message: self.message.clone(),
            last_transition_time: Some(api_time(last_transition)),
            ..PodCondition::default()
        }
    }
}

/// Go's `%s` of a `[]string`: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// `Initialized` as `GeneratePodInitializedCondition` computes it.
pub fn initialized_condition(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    phase: PodPhase,
) -> Condition {
    let mut unknown = Vec::new();
    let mut incomplete = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let Some(st) = find(init_statuses, &c.name) else {
            unknown.push(c.name.as_str());
            continue;
        };
        let done = if is_sidecar(c) {
            st.started.unwrap_or(false)
        } else {
            st.ready
        };
        if !done {
            incomplete.push(c.name.as_str());
        }
    }
    if phase == PodPhase::Succeeded && unknown.is_empty() {
        return Condition::new(INITIALIZED, true).because("PodCompleted", None);
    }
    let regular_started = statuses.iter().any(|s| {
        s.state
            .as_ref()
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    });
    if regular_started {
        return Condition::new(INITIALIZED, true);
    }
    unfinished_condition(
        INITIALIZED,
        "ContainersNotInitialized",
        &unknown,
        ("incomplete", &incomplete),
    )
}

/// `ContainersReady` as `GenerateContainersReadyCondition` computes it: every sidecar
/// and every regular container ready.
pub fn containers_ready_condition(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    phase: PodPhase,
) -> Condition {
    let mut unknown = Vec::new();
    let mut unready = Vec::new();
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c));
    for (c, list) in sidecars
        .map(|c| (c, init_statuses))
        .chain(spec.containers.iter().map(|c| (c, statuses)))
    {
        match find(list, &c.name) {
            Some(st) if !st.ready => unready.push(c.name.as_str()),
            Some(_) => {}
            None => unknown.push(c.name.as_str()),
        }
    }
    if phase == PodPhase::Succeeded && unknown.is_empty() {
        return Condition::new(CONTAINERS_READY, false).because("PodCompleted", None);
    }
    if phase == PodPhase::Failed {
        return Condition::new(CONTAINERS_READY, false).because("PodFailed", None);
    }
    unfinished_condition(
        CONTAINERS_READY,
        "ContainersNotReady",
        &unknown,
        ("unready", &unready),
    )
}

/// True when no container is unknown or behind; otherwise False with `reason` and the
/// kubelet's message, `containers with unknown status: [..], containers with <what>
/// status: [..]`.
fn unfinished_condition(
    type_: &'static str,
    reason: &'static str,
    unknown: &[&str],
    (what, behind): (&str, &[&str]),
) -> Condition {
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(unknown)
        ));
    }
    if !behind.is_empty() {
        messages.push(format!(
            "containers with {what} status: {}",
            go_list(behind)
        ));
    }
    if messages.is_empty() {
        Condition::new(type_, true)
    } else {
        Condition::new(type_, false).because(reason, Some(messages.join(", ")))
    }
}

/// `Ready`: `ContainersReady` (podrun pods have no readiness gates).
pub fn ready_condition(containers_ready: &Condition) -> Condition {
    Condition {
        type_: READY,
        ..containers_ready.clone()
    }
}

/// `AllContainersRestarting` as `GenerateAllContainersRestarting` computes it;
/// `restarting`: a `RestartAllContainers` was triggered and its cleanup is not over.
pub fn all_containers_restarting_condition(phase: PodPhase, restarting: bool) -> Condition {
    let c = Condition::new(ALL_CONTAINERS_RESTARTING, false);
    if phase == PodPhase::Succeeded {
        c.because("PodCompleted", None)
    } else if phase == PodPhase::Failed {
        c.because("PodFailed", None)
    } else if restarting {
        Condition::new(ALL_CONTAINERS_RESTARTING, true).because(
            "RestartAllContainersStarted",
            Some("container exited with restart policy rule".to_owned()),
        )
    } else {
        c
    }
}

/// What the machine adds to the status-derived conditions.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConditionInputs {
    /// The sandbox exists (`PodReadyToStartContainers`).
    pub sandbox_ready: bool,
    /// `Initialized` was True before: it stays True (a pod is never uninitialized).
    pub hold_initialized: bool,
    /// `Some(restarting)` when the spec has a `RestartAllContainers` rule.
    pub all_containers_restarting: Option<bool>,
}

/// All kubelet-owned conditions in the order the kubelet lists them.
pub fn conditions(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    phase: PodPhase,
    inputs: ConditionInputs,
) -> Vec<Condition> {
    let containers_ready = containers_ready_condition(spec, init_statuses, statuses, phase);
    let mut initialized = initialized_condition(spec, init_statuses, statuses, phase);
    if inputs.hold_initialized && !initialized.status {
        initialized = Condition::new(INITIALIZED, true);
    }
    let mut out = vec![
        Condition::new(POD_READY_TO_START_CONTAINERS, inputs.sandbox_ready),
        initialized,
        ready_condition(&containers_ready),
        containers_ready,
    ];
    if let Some(restarting) = inputs.all_containers_restarting {
        out.push(all_containers_restarting_condition(phase, restarting));
    }
    out.push(Condition::new(POD_SCHEDULED, true));
    out
}
