//! [`PodMachine`]: one pod's lifecycle.
//!
//! Every input updates the containers' recorded state and then runs one *sync*: fire
//! due timers, advance kill procedures, take the init/regular start decision (or the
//! termination ordering once the pod is terminating), issue due probes, and recompute the
//! published status. Effects are queued as [`Action`]s for the driver.

use std::collections::VecDeque;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time as ApiTime;
use podrun_model::PodPhase;

use crate::backoff::{Backoff, go_duration};
use crate::init::{InitState, InitView, decide_init};
use crate::probes::{Probes, Verdict};
use crate::restart::RestartPolicy;
use crate::slot::{Instance, Kind, LastEvent, PostStart, Slot, SlotSpec, Terminated, Waiting};
use crate::status::{self, Condition, PodIdentity};
use crate::termination::{Kill, KillCause, KillEffect};
use crate::{
    Action, ContainerId, ExitStatus, HookKind, ProbeKind, ProbeResult, StopSignal, Time, add_secs,
};

/// Why the pod is being terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminationCause {
    /// The pod was deleted.
    Deleted,
    /// No regular container is running and none will be started again.
    Completed,
    /// A regular init container failed and will not be restarted.
    InitFailed,
    /// `activeDeadlineSeconds` ran out.
    DeadlineExceeded,
}

/// A `RestartAllContainers` in progress (cleanup: killing every container).
#[derive(Clone, Copy, Debug)]
struct RestartAll {
    /// A sync after the trigger's has run: the status with the condition True and the
    /// trigger's real exit was published before anything is removed.
    published: bool,
}

#[derive(Clone, Copy, Debug)]
struct Termination {
    cause: TerminationCause,
    t0: Time,
    /// Grace seconds every container's kill starts with.
    grace: i64,
    /// A deletion was requested (possibly after another cause started termination).
    deleted: bool,
}

/// One pod's lifecycle, as the kubelet drives it. See the crate docs for the protocol.
#[derive(Debug)]
pub struct PodMachine {
    pod: Pod,
    now: Time,
    start_time: Time,
    pod_name: String,
    namespace: String,
    uid: String,
    policy: RestartPolicy,
    tgps: i64,
    active_deadline: Option<Time>,
    has_sidecars: bool,
    n_init: usize,
    slots: Vec<Slot>,
    backoff: Backoff,
    actions: VecDeque<Action>,
    /// The container whose start operation (create, start, postStart) is in progress.
    /// The kubelet starts containers one after another inside a sync, so at most one
    /// start operation is in flight per pod.
    start_lock: Option<ContainerId>,
    termination: Option<Termination>,
    deadline_exceeded: bool,
    /// The pod's spec has a `RestartAllContainers` rule (the condition is reported).
    has_restart_all_rule: bool,
    /// The cleanup of a `RestartAllContainers` is under way.
    restart_all: Option<RestartAll>,
    /// The phase last published; Succeeded/Failed are never left.
    phase: PodPhase,
    conditions: Vec<(Condition, Time)>,
    status: PodStatus,
}

impl PodMachine {
    /// A machine for a validated, defaulted pod, created (admitted) at `now`.
    pub fn new(pod: Pod, now: Time) -> Self {
        Self::with_backoff(pod, now, Backoff::default())
    }

    /// [`PodMachine::new`] with a crash-loop backoff table of the node's configuration
    /// (e.g. [`Backoff::with_max`]).
    pub fn with_backoff(pod: Pod, now: Time, backoff: Backoff) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = RestartPolicy::parse(status::restart_policy(&spec));
        let mut slots = Vec::new();
        for (i, c) in spec.init_containers.iter().flatten().enumerate() {
            let kind = if podrun_model::is_sidecar(c) {
                Kind::Sidecar
            } else {
                Kind::RegularInit
            };
            slots.push(Slot::new(ContainerId::Init(i), SlotSpec::new(c, kind)));
        }
        let n_init = slots.len();
        for (i, c) in spec.containers.iter().enumerate() {
            slots.push(Slot::new(
                ContainerId::Regular(i),
                SlotSpec::new(c, Kind::Regular),
            ));
        }
        let meta = &pod.metadata;
        let has_restart_all_rule = slots.iter().any(|s| s.spec.restart.has_restart_all_rule());
        let mut machine = PodMachine {
            now,
            start_time: now,
            pod_name: meta.name.clone().unwrap_or_default(),
            namespace: meta
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            uid: meta.uid.clone().unwrap_or_default(),
            policy,
            // The API defaults TGPS to 30; a pod without one falls back to the kubelet's
            // last resort (2s via the floor).
            tgps: spec.termination_grace_period_seconds.unwrap_or(0).max(0),
            active_deadline: spec.active_deadline_seconds.map(|s| add_secs(now, s)),
            has_sidecars: slots.iter().any(Slot::is_sidecar),
            n_init,
            slots,
            backoff,
            actions: VecDeque::new(),
            start_lock: None,
            termination: None,
            deadline_exceeded: false,
            has_restart_all_rule,
            restart_all: None,
            phase: PodPhase::Pending,
            conditions: Vec::new(),
            status: PodStatus::default(),
            pod,
        };
        machine.sync();
        machine
    }

    /// The pod this machine runs (spec as admitted).
    pub fn pod(&self) -> &Pod {
        &self.pod
    }

    /// The container's name, if `id` exists in the spec.
    pub fn container_name(&self, id: ContainerId) -> Option<&str> {
        self.slot_index(id)
            .map(|i| self.slots[i].spec.name.as_str())
    }

    /// Every container of the pod, init containers first, in spec order.
    pub fn containers(&self) -> impl Iterator<Item = ContainerId> + '_ {
        self.slots.iter().map(|s| s.id)
    }

    /// When the pod's termination began and why, once it did.
    pub fn termination(&self) -> Option<(Time, TerminationCause)> {
        self.termination.map(|t| (t.t0, t.cause))
    }

    /// The container process of instance `restart_count` is running.
    pub fn handle_container_started(&mut self, id: ContainerId, restart_count: i32, now: Time) {
        self.advance(now);
        let Some(ix) = self.slot_index(id) else {
            return;
        };
        let slot = &mut self.slots[ix];
        if slot.starting != Some(restart_count) {
            return;
        }
        slot.starting = None;
        slot.waiting = None;
        slot.retry_at = None;
        slot.next_restart_count = restart_count.saturating_add(1);
        let post_start = if slot.spec.post_start {
            PostStart::Running
        } else {
            PostStart::Done
        };
        slot.current = Some(Instance {
            restart_count,
            started_at: now,
            post_start,
            probes: Probes::new(slot.spec.startup, slot.spec.readiness, slot.spec.liveness),
            kill: None,
        });
        if post_start == PostStart::Running {
            // postStart runs inside the start operation; the start lock stays held.
            self.actions.push_back(Action::RunHook {
                id,
                restart_count,
                hook: HookKind::PostStart,
            });
        } else {
            self.release_start_lock(id);
        }
        if self.restart_all.is_some() && self.termination.is_none() {
            // It came up while every container is being removed: it goes too.
            self.kill_for_restart_all(ix);
        }
        if let Some(t) = self.termination {
            // It came up after termination began: nobody waits for it and it gets
            // whatever is left of the grace period.
            let left = t.grace - now.duration_since(t.t0).as_secs();
            self.kill_instance(ix, KillCause::PodTermination, left, false, false);
        }
        self.sync();
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
        self.advance(now);
        let Some(ix) = self.slot_index(id) else {
            return;
        };
        let slot = &mut self.slots[ix];
        if slot.starting != Some(restart_count) {
            return;
        }
        slot.starting = None;
        slot.waiting = Some(Waiting {
            reason: reason.to_owned(),
            message: message.to_owned(),
        });
        slot.last_event = Some(if crate::slot::is_image_reason(reason) {
            LastEvent::ImageFailed(now)
        } else {
            LastEvent::StartFailed(now)
        });
        self.release_start_lock(id);
        self.sync();
    }

    /// The container instance's process exited.
    pub fn handle_container_exited(
        &mut self,
        id: ContainerId,
        restart_count: i32,
        exit: ExitStatus,
        now: Time,
    ) {
        self.advance(now);
        let Some(ix) = self.slot_index(id) else {
            return;
        };
        let slot = &mut self.slots[ix];
        let Some(instance) = slot.current.take_if(|i| i.restart_count == restart_count) else {
            return;
        };
        if instance.post_start == PostStart::Running {
            self.actions.push_back(Action::CancelHook {
                id,
                restart_count,
                hook: HookKind::PostStart,
            });
            self.release_start_lock(id);
        }
        if instance.kill.as_ref().is_some_and(Kill::pre_stop_running) {
            self.actions.push_back(Action::CancelHook {
                id,
                restart_count,
                hook: HookKind::PreStop,
            });
        }
        let probe_killed = instance
            .kill
            .as_ref()
            .is_some_and(|k| matches!(k.cause, KillCause::StartupProbe | KillCause::LivenessProbe));
        let slot = &mut self.slots[ix];
        slot.previous = slot.last.take();
        slot.last = Some(Terminated {
            restart_count,
            started_at: instance.started_at,
            finished_at: now,
            exit,
            probe_killed,
            restart_all: false,
        });
        slot.last_event = Some(LastEvent::Exited(now));
        self.sync();
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
        self.advance(now);
        let Some(ix) = self.slot_index(id) else {
            return;
        };
        let Some(instance) = self.slots[ix].instance_mut(restart_count) else {
            return;
        };
        match hook {
            HookKind::PostStart => {
                if instance.post_start != PostStart::Running {
                    return;
                }
                match result {
                    Ok(()) => {
                        instance.post_start = PostStart::Done;
                        self.release_start_lock(id);
                    }
                    Err(message) => {
                        instance.post_start = PostStart::Failed;
                        self.slots[ix].waiting = Some(Waiting {
                            reason: "PostStartHookError".to_owned(),
                            message,
                        });
                        self.release_start_lock(id);
                        let grace = self.tgps;
                        self.kill_instance(ix, KillCause::FailedPostStartHook, grace, true, false);
                    }
                }
            }
            HookKind::PreStop => {
                // A failing preStop only produces an event; the kill goes on either way.
                let mut effects = Vec::new();
                if let Some(kill) = instance.kill.as_mut() {
                    kill.handle_pre_stop_done(now, &mut effects);
                }
                self.apply_effects(ix, restart_count, effects);
            }
        }
        self.sync();
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
        self.advance(now);
        let Some(ix) = self.slot_index(id) else {
            return;
        };
        let Some(instance) = self.slots[ix].instance_mut(restart_count) else {
            return;
        };
        let verdict = instance.probes.record(probe, result);
        if let Verdict::Kill(kind) = verdict
            && instance.kill.is_none()
            && self.termination.is_none()
        {
            let cause = match kind {
                ProbeKind::Startup => KillCause::StartupProbe,
                _ => KillCause::LivenessProbe,
            };
            let probe_grace = self.slots[ix]
                .spec
                .probe(kind)
                .and_then(|p| p.termination_grace);
            let grace = probe_grace.unwrap_or(self.tgps);
            self.kill_instance(ix, cause, grace, true, false);
        }
        self.sync();
    }

    /// The pod was deleted with this grace period (`None`: the pod's
    /// `terminationGracePeriodSeconds`).
    pub fn handle_delete(&mut self, grace_period_seconds: Option<i64>, now: Time) {
        self.advance(now);
        let grace = grace_period_seconds.unwrap_or(self.tgps).max(0);
        if !self.termination.is_some_and(|t| t.deleted) {
            // The API server bumps `metadata.generation` when a graceful deletion sets
            // `deletionTimestamp`; the kubelet then reports that generation.
            let meta = &mut self.pod.metadata;
            meta.generation = meta.generation.map(|g| g.saturating_add(1));
        }
        match self.termination.as_mut() {
            None => self.begin_termination(TerminationCause::Deleted, grace),
            Some(t) => {
                t.deleted = true;
                // A shorter grace caps everything still in progress.
                let deadline = add_secs(now, grace);
                if deadline < add_secs(t.t0, t.grace) {
                    t.grace = now.duration_since(t.t0).as_secs().saturating_add(grace);
                    for slot in &mut self.slots {
                        if let Some(kill) = slot.current.as_mut().and_then(|i| i.kill.as_mut()) {
                            kill.cap(deadline, now);
                        }
                    }
                }
            }
        }
        self.sync();
    }

    /// Time has passed; fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.advance(now);
        self.sync();
    }

    /// The next thing the driver must do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`PodMachine::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut next: Option<Time> = None;
        let mut consider = |t: Option<Time>| {
            if let Some(t) = t.filter(|t| *t > self.now) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for slot in &self.slots {
            if let Some(i) = &slot.current {
                consider(i.probes.next_due());
                consider(i.kill.as_ref().and_then(Kill::next_timeout));
            }
            if self.termination.is_none() {
                consider(slot.retry_at);
            }
        }
        if !self.deadline_exceeded && !self.phase.is_terminal() {
            consider(self.active_deadline);
        }
        if self.restart_all.is_some() && !self.slots.iter().any(Slot::is_active) {
            // Every container is gone: remove the records and start again right away
            // (the kubelet requeues the pod at once after the removals).
            return Some(self.now);
        }
        next
    }

    /// The pod's status as the kubelet would report it at the last `now` seen.
    pub fn status(&self) -> PodStatus {
        self.status.clone()
    }

    /// True once the pod reached a terminal phase (or was deleted) and no container
    /// process is left running: the driver may tear the sandbox down.
    pub fn is_finished(&self) -> bool {
        self.finished_with(self.phase)
    }

    // === internals ===

    fn finished_with(&self, phase: PodPhase) -> bool {
        let deleted = self.termination.is_some_and(|t| t.deleted);
        (phase.is_terminal() || deleted) && !self.slots.iter().any(Slot::is_active)
    }

    fn advance(&mut self, now: Time) {
        // Time never runs backwards for the engine; a late report is taken as "now".
        if now > self.now {
            self.now = now;
        }
    }

    fn slot_index(&self, id: ContainerId) -> Option<usize> {
        let ix = match id {
            ContainerId::Init(i) if i < self.n_init => i,
            ContainerId::Regular(i) => self.n_init.checked_add(i)?,
            ContainerId::Init(_) => return None,
        };
        (ix < self.slots.len()).then_some(ix)
    }

    fn release_start_lock(&mut self, id: ContainerId) {
        if self.start_lock == Some(id) {
            self.start_lock = None;
        }
    }

    /// Begins the kill procedure of slot `ix`'s running instance.
    fn kill_instance(
        &mut self,
        ix: usize,
        cause: KillCause,
        grace: i64,
        pre_stop: bool,
        ordered: bool,
    ) {
        let has_pre_stop = pre_stop && self.slots[ix].spec.pre_stop;
        let now = self.now;
        let Some(instance) = self.slots[ix].current.as_mut() else {
            return;
        };
        if instance.kill.is_some() {
            return;
        }
        instance.probes.stop_liveness_and_startup();
        let mut effects = Vec::new();
        instance.kill = Some(Kill::begin(
            cause,
            grace,
            has_pre_stop,
            ordered,
            now,
            &mut effects,
        ));
        let rc = instance.restart_count;
        self.apply_effects(ix, rc, effects);
    }

    fn apply_effects(&mut self, ix: usize, restart_count: i32, effects: Vec<KillEffect>) {
        let id = self.slots[ix].id;
        for e in effects {
            self.actions.push_back(match e {
                KillEffect::RunPreStop => Action::RunHook {
                    id,
                    restart_count,
                    hook: HookKind::PreStop,
                },
                KillEffect::CancelPreStop => Action::CancelHook {
                    id,
                    restart_count,
                    hook: HookKind::PreStop,
                },
                KillEffect::Term => Action::Signal {
                    id,
                    restart_count,
                    signal: StopSignal::Term,
                },
                KillEffect::Kill => Action::Signal {
                    id,
                    restart_count,
                    signal: StopSignal::Kill,
                },
            });
        }
    }

    /// Starts terminating the pod: every running container begins its kill procedure at
    /// this instant; nothing is started or restarted any more.
    fn begin_termination(&mut self, cause: TerminationCause, grace: i64) {
        if self.termination.is_some() {
            return;
        }
        let now = self.now;
        self.termination = Some(Termination {
            cause,
            t0: now,
            grace,
            deleted: cause == TerminationCause::Deleted,
        });
        // A deletion during a RestartAllContainers cleanup is an ordinary termination.
        self.restart_all = None;
        let deadline = add_secs(now, grace);
        for ix in 0..self.slots.len() {
            let slot = &mut self.slots[ix];
            slot.retry_at = None;
            let id = slot.id;
            let is_sidecar = slot.is_sidecar();
            let Some(instance) = slot.current.as_mut() else {
                continue;
            };
            instance.probes.stop_liveness_and_startup();
            let rc = instance.restart_count;
            if instance.post_start == PostStart::Running {
                // The start operation is abandoned; the container is stopped like the rest.
                instance.post_start = PostStart::Failed;
                self.actions.push_back(Action::CancelHook {
                    id,
                    restart_count: rc,
                    hook: HookKind::PostStart,
                });
                self.release_start_lock(id);
            }
            let slot = &mut self.slots[ix];
            let Some(instance) = slot.current.as_mut() else {
                continue;
            };
            if let Some(kill) = instance.kill.as_mut() {
                // Already being stopped for a restart: it will not be restarted now, and
                // the pod's grace bounds it.
                kill.cause = KillCause::PodTermination;
                kill.cap(deadline, now);
                continue;
            }
            let ordered = is_sidecar && self.has_sidecars;
            self.kill_instance(ix, KillCause::PodTermination, grace, true, ordered);
        }
    }

    /// `ShouldContainerBeRestarted` for an exited instance: the container's own policy
    /// and rules first, the pod policy otherwise; after a probe kill only whether the
    /// effective policy is `Never`.
    fn restarts_after(&self, slot: &Slot, t: &Terminated) -> bool {
        if t.restart_all {
            return true;
        }
        let restart = &slot.spec.restart;
        if t.probe_killed {
            restart.restarts_after_probe_kill(self.policy)
        } else {
            restart.should_restart(self.policy, t.exit.exit_code)
        }
    }

    /// Would the kubelet start this (not running) container again?
    fn should_start(&self, slot: &Slot) -> bool {
        if self.termination.is_some() || slot.is_active() {
            return false;
        }
        match (&slot.last_event, &slot.last) {
            (None, _)
            | (Some(LastEvent::StartFailed(_)), _)
            | (Some(LastEvent::ImageFailed(_)), _) => match slot.spec.kind {
                // Whether a regular init container is due is the init decision's call.
                Kind::RegularInit => slot.last.as_ref().is_none_or(|t| t.exit.exit_code != 0),
                _ => true,
            },
            (Some(LastEvent::Exited(_)), Some(t)) => match slot.spec.kind {
                Kind::Sidecar => true,
                Kind::RegularInit => t.exit.exit_code != 0 && self.restarts_after(slot, t),
                Kind::Regular => self.restarts_after(slot, t),
            },
            (Some(LastEvent::Exited(_)), None) => false,
        }
    }

    fn init_view(&self, slot: &Slot) -> InitView {
        let state = if let Some(i) = &slot.current {
            InitState::Running {
                started: i.started() && i.kill.is_none(),
            }
        } else if slot.starting.is_some() {
            InitState::Creating
        } else if let Some(t) = slot.last.as_ref().filter(|t| !t.restart_all) {
            InitState::Exited {
                exit_code: t.exit.exit_code,
                restart: self.restarts_after(slot, t),
            }
        } else {
            InitState::Absent
        };
        InitView {
            sidecar: slot.is_sidecar(),
            state,
        }
    }

    fn sync(&mut self) {
        let now = self.now;
        // 1. Kill procedures whose timers are due.
        for ix in 0..self.slots.len() {
            let Some(instance) = self.slots[ix].current.as_mut() else {
                continue;
            };
            let mut effects = Vec::new();
            if let Some(kill) = instance.kill.as_mut() {
                kill.handle_timeout(now, &mut effects);
            }
            let rc = instance.restart_count;
            self.apply_effects(ix, rc, effects);
        }
        // 2. activeDeadlineSeconds.
        if !self.deadline_exceeded
            && !self.phase.is_terminal()
            && self.active_deadline.is_some_and(|d| d <= now)
        {
            self.deadline_exceeded = true;
            self.begin_termination(TerminationCause::DeadlineExceeded, self.tgps);
        }
        // 3. RestartAllContainers, start decisions, or the termination order.
        if self.termination.is_none() && !self.phase.is_terminal() {
            self.advance_restart_all();
        }
        if self.termination.is_none() && self.restart_all.is_none() {
            self.decide_starts();
        }
        // Not `else`: the start decision may have just begun the termination (natural
        // completion, init failure), and sidecars whose turn it already is must get
        // their stop signal in this same sync, not at their turn-wait deadline.
        if self.termination.is_some() {
            self.advance_termination_order();
        }
        // 4. Probes.
        for ix in 0..self.slots.len() {
            let id = self.slots[ix].id;
            let Some(instance) = self.slots[ix].current.as_mut() else {
                continue;
            };
            if instance.post_start != PostStart::Done {
                continue;
            }
            let started = instance.started();
            instance.probes.arm(instance.started_at, started, now);
            let restart_count = instance.restart_count;
            for probe in instance.probes.issue_due(now) {
                self.actions.push_back(Action::RunProbe {
                    id,
                    restart_count,
                    probe,
                });
            }
        }
        self.refresh_status();
    }

    /// Sends the stop signal to every sidecar whose turn came: all regular containers
    /// and the next sidecar in spec order have terminated.
    fn advance_termination_order(&mut self) {
        let now = self.now;
        let regular_running = self.slots[self.n_init..]
            .iter()
            .any(|s| s.current.is_some());
        let sidecars: Vec<usize> = (0..self.n_init)
            .filter(|&i| self.slots[i].is_sidecar())
            .collect();
        for (k, &ix) in sidecars.iter().enumerate() {
            let next_running = sidecars
                .get(k + 1)
                .is_some_and(|&n| self.slots[n].current.is_some());
            if regular_running || next_running {
                continue;
            }
            let Some(instance) = self.slots[ix].current.as_mut() else {
                continue;
            };
            let mut effects = Vec::new();
            if let Some(kill) = instance.kill.as_mut().filter(|k| k.awaiting_turn()) {
                kill.handle_turn(now, &mut effects);
            }
            let rc = instance.restart_count;
            self.apply_effects(ix, rc, effects);
        }
    }

    /// `ShouldAllContainersRestart`: an init or regular container's latest exit matched
    /// a `RestartAllContainers` rule first.
    fn restart_all_triggered(&self) -> bool {
        self.slots.iter().any(|s| {
            !s.is_active()
                && matches!(s.last_event, Some(LastEvent::Exited(_)))
                && s.last.as_ref().is_some_and(|t| {
                    !t.restart_all && s.spec.restart.triggers_restart_all(t.exit.exit_code)
                })
        })
    }

    /// Phase A of a `RestartAllContainers`: on the trigger, every running init and
    /// regular container is killed at once (grace 0, no preStop, no ordering); once
    /// none is left, every container record is removed, leaving the
    /// `RestartingAllContainers` record, and the pod starts again from its first init
    /// container in the same sandbox (phase B is the ordinary start decision).
    fn advance_restart_all(&mut self) {
        if self.restart_all.is_none() {
            if !self.restart_all_triggered() {
                return;
            }
            self.restart_all = Some(RestartAll { published: false });
            for ix in 0..self.slots.len() {
                self.slots[ix].retry_at = None;
                self.kill_for_restart_all(ix);
            }
            return;
        }
        if let Some(ra) = self.restart_all.as_mut() {
            ra.published = true;
        }
        if self.slots.iter().any(Slot::is_active) {
            return;
        }
        // Cleanup done: remove every record.
        let now = self.now;
        for slot in &mut self.slots {
            if slot.last.is_none() {
                // Never created: nothing to remove.
                continue;
            }
            let record = Terminated::removed_by_restart_all(slot.next_restart_count, now);
            slot.previous = None;
            slot.last = Some(record);
            slot.last_event = None;
            slot.waiting = None;
            slot.retry_at = None;
        }
        self.restart_all = None;
    }

    /// Kills slot `ix`'s running instance for a `RestartAllContainers`.
    fn kill_for_restart_all(&mut self, ix: usize) {
        let id = self.slots[ix].id;
        let now = self.now;
        let Some(instance) = self.slots[ix].current.as_mut() else {
            return;
        };
        let rc = instance.restart_count;
        let post_start_running = instance.post_start == PostStart::Running;
        if post_start_running {
            instance.post_start = PostStart::Failed;
        }
        let mut effects = Vec::new();
        let already = match instance.kill.as_mut() {
            // Already being stopped: it must not outlive the restart's own kill.
            Some(kill) => {
                kill.cause = KillCause::RestartAllContainers;
                kill.cap(now, now);
                kill.handle_timeout(now, &mut effects);
                true
            }
            None => false,
        };
        if post_start_running {
            self.actions.push_back(Action::CancelHook {
                id,
                restart_count: rc,
                hook: HookKind::PostStart,
            });
            self.release_start_lock(id);
        }
        if already {
            self.apply_effects(ix, rc, effects);
        } else {
            self.kill_instance(ix, KillCause::RestartAllContainers, 0, false, false);
        }
    }

    fn decide_starts(&mut self) {
        let views: Vec<InitView> = self.slots[..self.n_init]
            .iter()
            .map(|s| self.init_view(s))
            .collect();
        let regular_exists = self.slots[self.n_init..].iter().any(Slot::is_active);
        let decision = decide_init(&views, regular_exists);
        if decision.kill_pod {
            self.begin_termination(TerminationCause::InitFailed, self.tgps);
            return;
        }
        let mut candidates: Vec<usize> = decision.to_start.clone();
        if decision.initialized {
            let regular: Vec<usize> = (self.n_init..self.slots.len())
                .filter(|&ix| self.should_start(&self.slots[ix]))
                .collect();
            if regular.is_empty() && !regular_exists {
                // No regular container runs and none will be started: the pod is done
                // (how Job pods with sidecars complete).
                self.begin_termination(TerminationCause::Completed, self.tgps);
                return;
            }
            candidates.extend(regular);
        }
        for ix in candidates {
            if self.start_lock.is_some() {
                break;
            }
            if !self.should_start(&self.slots[ix]) {
                continue;
            }
            if !self.try_start(ix) && self.slots[ix].spec.kind == Kind::RegularInit {
                // A regular init container that cannot start ends the sync.
                break;
            }
        }
    }

    /// Starts slot `ix` unless it is inside its backoff window. Returns whether it started.
    fn try_start(&mut self, ix: usize) -> bool {
        let now = self.now;
        let id = self.slots[ix].id;
        if let Some(LastEvent::ImageFailed(at)) = self.slots[ix].last_event {
            let until = crate::add_secs(at, crate::slot::IMAGE_RETRY_SECS);
            if now < until {
                self.slots[ix].retry_at = Some(until);
                return false;
            }
        } else if let Some(event) = self.slots[ix].last_event {
            if let Some((delay, until)) = self.backoff.window(id, event.at(), now) {
                let slot = &mut self.slots[ix];
                slot.retry_at = Some(until);
                if let LastEvent::Exited(_) = event {
                    slot.waiting = Some(Waiting {
                        reason: "CrashLoopBackOff".to_owned(),
                        message: format!(
                            "back-off {} restarting failed container={} pod={}_{}({})",
                            go_duration(delay),
                            slot.spec.name,
                            self.pod_name,
                            self.namespace,
                            self.uid
                        ),
                    });
                }
                return false;
            }
            self.backoff.step(id, event.at(), now);
        }
        let slot = &mut self.slots[ix];
        slot.retry_at = None;
        let restart_count = slot.next_restart_count;
        slot.starting = Some(restart_count);
        self.start_lock = Some(id);
        self.actions
            .push_back(Action::StartContainer { id, restart_count });
        true
    }

    fn will_restart(&self, slot: &Slot) -> bool {
        slot.starting.is_some() || self.should_start(slot)
    }

    fn refresh_status(&mut self) {
        let identity = PodIdentity {
            uid: &self.uid,
            has_init_containers: self.n_init > 0,
        };
        let statuses: Vec<ContainerStatus> = self
            .slots
            .iter()
            .map(|s| status::container_status(s, &identity, self.will_restart(s)))
            .collect();
        let (init_statuses, regular_statuses) = statuses.split_at(self.n_init);
        let spec = self.pod.spec.clone().unwrap_or_default();
        let any_active = self.slots.iter().any(Slot::is_active);
        let pod_is_terminal = self
            .termination
            .is_some_and(|t| t.deleted || t.cause == TerminationCause::DeadlineExceeded)
            && !any_active;
        let mut phase = if self.phase.is_terminal() {
            self.phase
        } else {
            status::pod_phase(&spec, init_statuses, regular_statuses, pod_is_terminal)
        };
        if self.deadline_exceeded {
            phase = PodPhase::Failed;
        }
        self.phase = phase;
        // Once initialized, a pod is never uninitialized again (the kubelet keeps the
        // old True, e.g. while a RestartAllContainers runs the init containers again).
        let hold_initialized = self
            .conditions
            .iter()
            .any(|(c, _)| c.type_ == status::INITIALIZED && c.status);
        let conditions = status::conditions(
            &spec,
            init_statuses,
            regular_statuses,
            phase,
            status::ConditionInputs {
                sandbox_ready: !self.finished_with(phase),
                hold_initialized,
                all_containers_restarting: self
                    .has_restart_all_rule
                    .then_some(self.restart_all.is_some()),
            },
        );
        let now = self.now;
        let previous = std::mem::take(&mut self.conditions);
        self.conditions = conditions
            .into_iter()
            .map(|c| {
                let since = previous
                    .iter()
                    .find(|(p, _)| p.type_ == c.type_ && p.status == c.status)
                    .map_or(now, |(_, t)| *t);
                (c, since)
            })
            .collect();
        let (reason, message) = if self.deadline_exceeded {
            (
                Some("DeadlineExceeded".to_owned()),
                Some("Pod was active on the node longer than the specified deadline".to_owned()),
            )
        } else {
            (None, None)
        };
        // The kubelet reports the generation of the spec it acted on.
        let generation = self.pod.metadata.generation;
        self.status = PodStatus {
            phase: Some(phase.into()),
            conditions: Some(
                self.conditions
                    .iter()
                    .map(|(c, t)| c.to_api(*t, generation))
                    .collect(),
            ),
            observed_generation: generation,
            init_container_statuses: (self.n_init > 0).then(|| init_statuses.to_vec()),
            container_statuses: Some(regular_statuses.to_vec()),
            start_time: Some(ApiTime(self.start_time)),
            reason,
            message,
            ..PodStatus::default()
        };
    }
}
