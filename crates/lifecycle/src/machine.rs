//! [`PodMachine`]: one pod's lifecycle.

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use crate::{Action, ContainerId, ExitStatus, HookKind, ProbeKind, ProbeResult, Time};

/// One pod's lifecycle, as the kubelet drives it. See the crate docs for the protocol.
#[derive(Debug)]
pub struct PodMachine {
    pod: Pod,
    now: Time,
}

impl PodMachine {
    /// A machine for a validated, defaulted pod, created (admitted) at `now`.
    pub fn new(pod: Pod, now: Time) -> Self {
        Self { pod, now }
    }

    /// The pod this machine runs (spec as admitted).
    pub fn pod(&self) -> &Pod {
        &self.pod
    }

    /// The container process of instance `restart_count` is running.
    pub fn handle_container_started(&mut self, id: ContainerId, restart_count: i32, now: Time) {
        let _ = (id, restart_count);
        self.now = now;
    }

    /// Creating or starting the container failed (`reason` as the kubelet words it, e.g.
    /// `CreateContainerConfigError`, `RunContainerError`).
    pub fn handle_container_start_failed(
        &mut self,
        id: ContainerId,
        restart_count: i32,
        reason: &str,
        message: &str,
        now: Time,
    ) {
        let _ = (id, restart_count, reason, message);
        self.now = now;
    }

    /// The container instance's process exited.
    pub fn handle_container_exited(
        &mut self,
        id: ContainerId,
        restart_count: i32,
        exit: ExitStatus,
        now: Time,
    ) {
        let _ = (id, restart_count, exit);
        self.now = now;
    }

    /// A hook finished; `Err` carries the failure message.
    pub fn handle_hook_result(
        &mut self,
        id: ContainerId,
        restart_count: i32,
        hook: HookKind,
        result: Result<(), String>,
        now: Time,
    ) {
        let _ = (id, restart_count, hook, result);
        self.now = now;
    }

    /// A probe run finished.
    pub fn handle_probe_result(
        &mut self,
        id: ContainerId,
        restart_count: i32,
        probe: ProbeKind,
        result: ProbeResult,
        now: Time,
    ) {
        let _ = (id, restart_count, probe, result);
        self.now = now;
    }

    /// The pod was deleted with this grace period (`None`: the pod's
    /// `terminationGracePeriodSeconds`).
    pub fn handle_delete(&mut self, grace_period_seconds: Option<i64>, now: Time) {
        let _ = grace_period_seconds;
        self.now = now;
    }

    /// Time has passed; fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = now;
    }

    /// The next thing the driver must do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        None
    }

    /// When [`PodMachine::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        None
    }

    /// The pod's status as the kubelet would report it at the last `now` seen.
    pub fn status(&self) -> PodStatus {
        PodStatus::default()
    }

    /// True once the pod reached a terminal phase and no container process is left
    /// running: the driver may tear the sandbox down.
    pub fn is_finished(&self) -> bool {
        false
    }
}
