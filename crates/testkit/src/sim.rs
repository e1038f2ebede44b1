//! A simulated-clock driver for [`PodMachine`]: scripted fake containers, a queue of
//! future events, and a transcript.
//!
//! The driver plays the node: it carries out every [`Action`] by scheduling the result
//! its script calls for (a container is running after its start latency, exits after N
//! seconds, answers SIGTERM after T seconds, a probe succeeds on its third try, a hook
//! takes T seconds or never returns). [`Sim::step`] jumps the clock to the earliest of
//! the next scheduled result and [`PodMachine::poll_timeout`], delivers it, and drains
//! the machine's actions again. Every action and input is recorded with its time in
//! seconds since the pod was created.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time as ApiTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use podrun_lifecycle::print::{PodRow, pod_row};
use podrun_lifecycle::{
    Action, ContainerId, ExitStatus, HookKind, PodMachine, ProbeKind, ProbeResult, StopSignal,
};

use crate::pod::epoch;

/// One probe run as a script sees it.
#[derive(Clone, Copy, Debug)]
pub struct ProbeCall {
    /// The instance probed.
    pub restart_count: i32,
    /// How many runs of this probe this instance had before (0 for the first).
    pub attempt: u32,
    /// Seconds since the pod was created.
    pub at: f64,
}

/// A scripted probe handler.
#[derive(Clone)]
pub struct ProbeScript {
    answer: Arc<dyn Fn(ProbeCall) -> ProbeResult + Send + Sync>,
    /// Seconds the probe takes before its result is reported.
    pub latency: f64,
}

impl fmt::Debug for ProbeScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeScript")
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl ProbeScript {
    /// Answers with `f(call)`.
    pub fn new(f: impl Fn(ProbeCall) -> ProbeResult + Send + Sync + 'static) -> Self {
        ProbeScript {
            answer: Arc::new(f),
            latency: 0.0,
        }
    }
    /// Always the same result.
    pub fn always(result: ProbeResult) -> Self {
        Self::new(move |_| result)
    }
    /// Fails the first `n` runs of every instance, then succeeds.
    pub fn succeed_after(n: u32) -> Self {
        Self::new(move |c| {
            if c.attempt >= n {
                ProbeResult::Success
            } else {
                ProbeResult::Failure
            }
        })
    }
    /// Succeeds until `at` seconds, fails from then on.
    pub fn fail_from(at: f64) -> Self {
        Self::new(move |c| {
            if c.at >= at {
                ProbeResult::Failure
            } else {
                ProbeResult::Success
            }
        })
    }
    /// Each run takes `seconds` before its result arrives.
    pub fn with_latency(mut self, seconds: f64) -> Self {
        self.latency = seconds;
        self
    }
}

/// A scripted hook handler.
#[derive(Clone, Debug, PartialEq)]
pub enum HookScript {
    /// Returns successfully after this many seconds.
    Ok(f64),
    /// Fails after this many seconds with this message.
    Fail(f64, String),
    /// Never returns.
    Hang,
}

/// How one container instance runs once started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Run {
    /// Runs until signalled.
    Forever,
    /// Exits by itself after `after` seconds with `code`.
    Exit {
        /// Seconds after start.
        after: f64,
        /// Exit code.
        code: i32,
    },
}

/// What a container does on SIGTERM.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OnTerm {
    /// Exits after `after` seconds with `code` (143 is the default action's code).
    Exit {
        /// Seconds after SIGTERM.
        after: f64,
        /// Exit code.
        code: i32,
    },
    /// Ignores SIGTERM; only SIGKILL ends it.
    Ignore,
}

/// The script of one container (all its instances).
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Start attempts that fail, in order, as `(reason, message)`; later attempts succeed.
    pub start_failures: Vec<(String, String)>,
    /// Seconds a start takes.
    pub start_latency: f64,
    /// Instance `n` follows `runs[n]` (the last entry repeats). Empty: run forever.
    pub runs: Vec<Run>,
    /// Reaction to SIGTERM.
    pub on_term: OnTerm,
    /// startupProbe handler (default: succeeds).
    pub startup: Option<ProbeScript>,
    /// readinessProbe handler (default: succeeds).
    pub readiness: Option<ProbeScript>,
    /// livenessProbe handler (default: succeeds).
    pub liveness: Option<ProbeScript>,
    /// postStart handler (default: returns at once).
    pub post_start: HookScript,
    /// preStop handler (default: returns at once).
    pub pre_stop: HookScript,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            start_failures: Vec::new(),
            start_latency: 0.0,
            runs: Vec::new(),
            on_term: OnTerm::Exit {
                after: 0.0,
                code: 143,
            },
            startup: None,
            readiness: None,
            liveness: None,
            post_start: HookScript::Ok(0.0),
            pre_stop: HookScript::Ok(0.0),
        }
    }
}

impl Behaviour {
    /// Runs until signalled; exits 143 right away on SIGTERM.
    pub fn new() -> Self {
        Self::default()
    }
    /// Every instance exits with `code` after `after` seconds.
    pub fn exits(mut self, after: f64, code: i32) -> Self {
        self.runs = vec![Run::Exit { after, code }];
        self
    }
    /// Per-instance runs (the last one repeats).
    pub fn runs(mut self, runs: Vec<Run>) -> Self {
        self.runs = runs;
        self
    }
    /// Crashes (exit `code`) right at start, every time.
    pub fn crashes(self, code: i32) -> Self {
        self.exits(0.0, code)
    }
    /// On SIGTERM, keeps running for `after` seconds, then exits with `code`.
    pub fn on_term(mut self, after: f64, code: i32) -> Self {
        self.on_term = OnTerm::Exit { after, code };
        self
    }
    /// Ignores SIGTERM.
    pub fn ignores_term(mut self) -> Self {
        self.on_term = OnTerm::Ignore;
        self
    }
    /// The first start attempts fail with `reason`.
    pub fn start_fails(mut self, times: usize, reason: &str) -> Self {
        for _ in 0..times {
            self.start_failures
                .push((reason.to_owned(), format!("{reason}: scripted")));
        }
        self
    }
    /// Starts take `seconds`.
    pub fn start_latency(mut self, seconds: f64) -> Self {
        self.start_latency = seconds;
        self
    }
    /// startupProbe script.
    pub fn startup(mut self, s: ProbeScript) -> Self {
        self.startup = Some(s);
        self
    }
    /// readinessProbe script.
    pub fn readiness(mut self, s: ProbeScript) -> Self {
        self.readiness = Some(s);
        self
    }
    /// livenessProbe script.
    pub fn liveness(mut self, s: ProbeScript) -> Self {
        self.liveness = Some(s);
        self
    }
    /// postStart script.
    pub fn post_start(mut self, h: HookScript) -> Self {
        self.post_start = h;
        self
    }
    /// preStop script.
    pub fn pre_stop(mut self, h: HookScript) -> Self {
        self.pre_stop = h;
        self
    }

    fn run(&self, restart_count: i32) -> Run {
        let n = usize::try_from(restart_count).unwrap_or(0);
        self.runs
            .get(n)
            .or(self.runs.last())
            .copied()
            .unwrap_or(Run::Forever)
    }
}

/// A driver-side event waiting for its instant.
#[derive(Clone, Debug)]
enum Event {
    Started(ContainerId, i32),
    StartFailed(ContainerId, i32, String, String),
    Exit(ContainerId, i32, ExitStatus),
    Probe(ContainerId, i32, ProbeKind, ProbeResult),
    Hook(ContainerId, i32, HookKind, Result<(), String>),
    Delete(Option<i64>),
}

/// One line of the transcript.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Seconds since the pod was created.
    pub at: f64,
    /// What happened, e.g. `TERM s3#0`, `start main#1`, `exited main#0 code=0`.
    pub what: String,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>8.3} {}", self.at, self.what)
    }
}

/// One `kubectl get pods -w` line: the row whenever READY or STATUS changed.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchRow {
    /// Seconds since the pod was created.
    pub at: f64,
    /// The row.
    pub row: PodRow,
    /// `status.phase` at that moment.
    pub phase: String,
}

/// Bound on steps for every run loop, so a machine that never settles fails the test
/// instead of hanging it.
pub const MAX_STEPS: usize = 100_000;

/// The simulated node driving one [`PodMachine`].
pub struct Sim {
    machine: PodMachine,
    now: Timestamp,
    behaviours: HashMap<String, Behaviour>,
    queue: BTreeMap<(Timestamp, u64), Event>,
    seq: u64,
    start_attempts: HashMap<ContainerId, usize>,
    probe_attempts: HashMap<(ContainerId, i32, ProbeKind), u32>,
    running: HashMap<ContainerId, i32>,
    transcript: Vec<Record>,
    watch: Vec<WatchRow>,
    started_seen: HashMap<ContainerId, i32>,
    /// The exit code of each container whose last published state was `terminated`.
    terminated_seen: HashMap<ContainerId, i32>,
    terminating_seen: bool,
    deleted_at: Option<Timestamp>,
    violations: Vec<String>,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("at", &self.at())
            .field("transcript", &self.transcript.len())
            .finish_non_exhaustive()
    }
}

fn name_of(machine: &PodMachine, id: ContainerId) -> String {
    machine
        .container_name(id)
        .map_or_else(|| format!("{id:?}"), str::to_owned)
}

fn hook_name(h: HookKind) -> &'static str {
    match h {
        HookKind::PostStart => "postStart",
        HookKind::PreStop => "preStop",
    }
}

fn probe_name(p: ProbeKind) -> &'static str {
    match p {
        ProbeKind::Startup => "startup",
        ProbeKind::Readiness => "readiness",
        ProbeKind::Liveness => "liveness",
    }
}

impl Sim {
    /// A simulation of `pod`, admitted at the pod's creation instant.
    pub fn new(pod: Pod) -> Self {
        Self::with_backoff(pod, podrun_lifecycle::backoff::Backoff::default())
    }

    /// [`Sim::new`] on a node whose crash-loop backoff table is `backoff`.
    pub fn with_backoff(pod: Pod, backoff: podrun_lifecycle::backoff::Backoff) -> Self {
        let now = epoch();
        let mut sim = Sim {
            machine: PodMachine::with_backoff(pod, now, backoff),
            now,
            behaviours: HashMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            start_attempts: HashMap::new(),
            probe_attempts: HashMap::new(),
            running: HashMap::new(),
            transcript: Vec::new(),
            watch: Vec::new(),
            started_seen: HashMap::new(),
            terminated_seen: HashMap::new(),
            terminating_seen: false,
            deleted_at: None,
            violations: Vec::new(),
        };
        sim.observe();
        sim
    }

    /// Scripts container `name` (containers without a script run forever).
    pub fn script(mut self, name: &str, b: Behaviour) -> Self {
        self.behaviours.insert(name.to_owned(), b);
        self
    }

    /// The machine under test.
    pub fn machine(&self) -> &PodMachine {
        &self.machine
    }

    /// Seconds since the pod was created.
    pub fn at(&self) -> f64 {
        self.secs(self.now)
    }

    /// The simulated clock.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    fn secs(&self, t: Timestamp) -> f64 {
        t.duration_since(epoch()).as_secs_f64()
    }

    fn instant(&self, at: f64) -> Timestamp {
        let d = SignedDuration::try_from_secs_f64(at.max(0.0)).unwrap_or(SignedDuration::MAX);
        epoch().checked_add(d).unwrap_or(Timestamp::MAX)
    }

    fn schedule(&mut self, after: f64, e: Event) {
        let at = self.instant(self.secs(self.now) + after.max(0.0));
        self.seq += 1;
        self.queue.insert((at, self.seq), e);
    }

    fn record(&mut self, what: String) {
        let at = self.at();
        self.transcript.push(Record { at, what });
    }

    fn behaviour(&self, id: ContainerId) -> Behaviour {
        let name = name_of(&self.machine, id);
        self.behaviours.get(&name).cloned().unwrap_or_default()
    }

    /// Deletes the pod `at` seconds after creation (grace `None`: the pod's TGPS).
    pub fn delete_at(&mut self, at: f64, grace: Option<i64>) {
        let after = at - self.at();
        self.schedule(after, Event::Delete(grace));
    }

    /// The pod with its current status (and deletionTimestamp once deleted).
    pub fn pod(&self) -> Pod {
        let mut pod = self.machine.pod().clone();
        pod.status = Some(self.machine.status());
        pod.metadata.deletion_timestamp = self.deleted_at.map(ApiTime);
        pod
    }

    /// The `kubectl get pods` row now.
    pub fn row(&self) -> PodRow {
        pod_row(&self.pod(), self.now)
    }

    /// `status.phase` now.
    pub fn phase(&self) -> String {
        self.machine.status().phase.unwrap_or_default()
    }

    /// Every row change so far, like `kubectl get pods -w`.
    pub fn watch(&self) -> &[WatchRow] {
        &self.watch
    }

    /// The STATUS column of every row change, in order.
    pub fn statuses(&self) -> Vec<String> {
        self.watch.iter().map(|w| w.row.status.clone()).collect()
    }

    /// The transcript so far.
    pub fn transcript(&self) -> &[Record] {
        &self.transcript
    }

    /// The transcript as text, one record a line.
    pub fn transcript_text(&self) -> String {
        self.transcript.iter().map(|r| format!("{r}\n")).collect()
    }

    /// Times of every record whose text equals `what`.
    pub fn times_of(&self, what: &str) -> Vec<f64> {
        self.transcript
            .iter()
            .filter(|r| r.what == what)
            .map(|r| r.at)
            .collect()
    }

    /// Time of the first record whose text equals `what`.
    pub fn time_of(&self, what: &str) -> Option<f64> {
        self.times_of(what).first().copied()
    }

    /// Time of the first record `what`; panics with the transcript when it is missing.
    pub fn expect_time(&self, what: &str) -> f64 {
        match self.time_of(what) {
            Some(t) => t,
            None => panic!("no `{what}` in transcript:\n{}", self.transcript_text()),
        }
    }

    /// Number of records whose text starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.transcript
            .iter()
            .filter(|r| r.what.starts_with(prefix))
            .count()
    }

    /// Index of the first record equal to `what`.
    pub fn index_of(&self, what: &str) -> Option<usize> {
        self.transcript.iter().position(|r| r.what == what)
    }

    /// Invariant violations seen while running (see [`Sim::check_invariants`]).
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    // === driving ===

    /// Drains and carries out every pending action.
    fn drain(&mut self) {
        let mut guard = 0;
        while let Some(action) = self.machine.poll_action() {
            guard += 1;
            if guard > MAX_STEPS {
                self.violations
                    .push("action storm: machine never went quiet".to_owned());
                return;
            }
            self.perform(action);
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::StartContainer { id, restart_count } => {
                let name = name_of(&self.machine, id);
                self.check_start_allowed(id, &name);
                self.record(format!("start {name}#{restart_count}"));
                let b = self.behaviour(id);
                let attempt = self.start_attempts.entry(id).or_insert(0);
                let failure = b.start_failures.get(*attempt).cloned();
                *attempt += 1;
                let e = match failure {
                    Some((reason, message)) => {
                        Event::StartFailed(id, restart_count, reason, message)
                    }
                    None => Event::Started(id, restart_count),
                };
                self.schedule(b.start_latency, e);
            }
            Action::RunHook {
                id,
                restart_count,
                hook,
            } => {
                let name = name_of(&self.machine, id);
                self.record(format!("run {} {name}#{restart_count}", hook_name(hook)));
                let b = self.behaviour(id);
                let script = match hook {
                    HookKind::PostStart => b.post_start,
                    HookKind::PreStop => b.pre_stop,
                };
                match script {
                    HookScript::Ok(after) => {
                        self.schedule(after, Event::Hook(id, restart_count, hook, Ok(())));
                    }
                    HookScript::Fail(after, msg) => {
                        self.schedule(after, Event::Hook(id, restart_count, hook, Err(msg)));
                    }
                    HookScript::Hang => {}
                }
            }
            Action::CancelHook {
                id,
                restart_count,
                hook,
            } => {
                let name = name_of(&self.machine, id);
                self.record(format!("cancel {} {name}#{restart_count}", hook_name(hook)));
                self.queue.retain(|_, e| {
                    !matches!(e, Event::Hook(i, rc, h, _) if *i == id && *rc == restart_count && *h == hook)
                });
            }
            Action::RunProbe {
                id,
                restart_count,
                probe,
            } => {
                let name = name_of(&self.machine, id);
                self.record(format!(
                    "probe {} {name}#{restart_count}",
                    probe_name(probe)
                ));
                let b = self.behaviour(id);
                let script = match probe {
                    ProbeKind::Startup => b.startup,
                    ProbeKind::Readiness => b.readiness,
                    ProbeKind::Liveness => b.liveness,
                };
                let at = self.at();
                let attempt = self
                    .probe_attempts
                    .entry((id, restart_count, probe))
                    .or_insert(0);
                let call = ProbeCall {
                    restart_count,
                    attempt: *attempt,
                    at,
                };
                *attempt += 1;
                let (result, latency) = match script {
                    Some(s) => ((s.answer)(call), s.latency),
                    None => (ProbeResult::Success, 0.0),
                };
                self.schedule(latency, Event::Probe(id, restart_count, probe, result));
            }
            Action::Signal {
                id,
                restart_count,
                signal,
            } => {
                let name = name_of(&self.machine, id);
                let sig = match signal {
                    StopSignal::Term => "TERM",
                    StopSignal::Kill => "KILL",
                };
                self.record(format!("{sig} {name}#{restart_count}"));
                if self.running.get(&id) != Some(&restart_count) {
                    return;
                }
                match signal {
                    StopSignal::Kill => {
                        self.cancel_exits(id, restart_count);
                        let exit = ExitStatus {
                            exit_code: 137,
                            signal: Some(9),
                            oom_killed: false,
                            message: None,
                        };
                        self.schedule(0.0, Event::Exit(id, restart_count, exit));
                    }
                    StopSignal::Term => {
                        if let OnTerm::Exit { after, code } = self.behaviour(id).on_term {
                            let exit = ExitStatus {
                                exit_code: code,
                                signal: (code == 143).then_some(15),
                                oom_killed: false,
                                message: None,
                            };
                            // Keep an earlier natural exit if there is one.
                            let at = self.instant(self.at() + after);
                            let earlier = self.queue.iter().any(|((t, _), e)| {
                                *t <= at && matches!(e, Event::Exit(i, rc, _) if *i == id && *rc == restart_count)
                            });
                            if !earlier {
                                self.cancel_exits(id, restart_count);
                                self.schedule(after, Event::Exit(id, restart_count, exit));
                            }
                        }
                    }
                }
            }
        }
    }

    fn cancel_exits(&mut self, id: ContainerId, restart_count: i32) {
        self.queue
            .retain(|_, e| !matches!(e, Event::Exit(i, rc, _) if *i == id && *rc == restart_count));
    }

    fn deliver(&mut self, e: Event) {
        let now = self.now;
        match e {
            Event::Started(id, rc) => {
                let name = name_of(&self.machine, id);
                self.record(format!("started {name}#{rc}"));
                self.running.insert(id, rc);
                if let Run::Exit { after, code } = self.behaviour(id).run(rc) {
                    let exit = ExitStatus {
                        exit_code: code,
                        signal: None,
                        oom_killed: false,
                        message: None,
                    };
                    self.schedule(after, Event::Exit(id, rc, exit));
                }
                self.machine.handle_container_started(id, rc, now);
            }
            Event::StartFailed(id, rc, reason, message) => {
                let name = name_of(&self.machine, id);
                self.record(format!("start-failed {name}#{rc} {reason}"));
                self.machine
                    .handle_container_start_failed(id, rc, &reason, &message, now);
            }
            Event::Exit(id, rc, exit) => {
                let name = name_of(&self.machine, id);
                self.record(format!("exited {name}#{rc} code={}", exit.exit_code));
                if self.running.get(&id) == Some(&rc) {
                    self.running.remove(&id);
                }
                self.machine.handle_container_exited(id, rc, exit, now);
            }
            Event::Probe(id, rc, kind, result) => {
                let name = name_of(&self.machine, id);
                let r = match result {
                    ProbeResult::Success => "success",
                    ProbeResult::Failure => "failure",
                };
                self.record(format!("{} {name}#{rc} {r}", probe_name(kind)));
                self.machine.handle_probe_result(id, rc, kind, result, now);
            }
            Event::Hook(id, rc, kind, result) => {
                let name = name_of(&self.machine, id);
                let r = if result.is_ok() { "ok" } else { "failed" };
                self.record(format!("{} {name}#{rc} {r}", hook_name(kind)));
                self.machine.handle_hook_result(id, rc, kind, result, now);
            }
            Event::Delete(grace) => {
                self.record(match grace {
                    Some(g) => format!("delete grace={g}"),
                    None => "delete".to_owned(),
                });
                self.deleted_at.get_or_insert(now);
                self.machine.handle_delete(grace, now);
            }
        }
        self.observe();
        self.drain();
    }

    /// Records what the machine's state says after an input: termination beginning,
    /// containers becoming started, phase and row changes.
    fn observe(&mut self) {
        if !self.terminating_seen
            && let Some((_, cause)) = self.machine.termination()
        {
            self.terminating_seen = true;
            self.record(format!("terminating {cause:?}"));
        }
        let status = self.machine.status();
        let ids: Vec<ContainerId> = self.machine.containers().collect();
        let all = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        let all: Vec<_> = all.collect();
        self.check_transitions(&ids, &all);
        for (id, st) in ids.into_iter().zip(all) {
            if st.started == Some(true) && st.state.as_ref().is_some_and(|s| s.running.is_some()) {
                let rc = st.restart_count;
                if self.started_seen.get(&id) != Some(&rc) {
                    self.started_seen.insert(id, rc);
                    self.record(format!("is-started {}#{rc}", st.name));
                }
            }
        }
        let row = self.row();
        let phase = self.phase();
        let changed = self.watch.last().is_none_or(|w| {
            w.row.ready != row.ready || w.row.status != row.status || w.phase != phase
        });
        if changed {
            self.watch.push(WatchRow {
                at: self.at(),
                row,
                phase,
            });
        }
    }

    /// The API server's status-update check (`ValidateContainerStateTransition`): a
    /// container may leave `terminated` only if it restarts after that exit (its own
    /// policy and rules, else the pod policy; sidecars always), or the pod has a
    /// `RestartAllContainers` rule.
    fn check_transitions(
        &mut self,
        ids: &[ContainerId],
        statuses: &[&k8s_openapi::api::core::v1::ContainerStatus],
    ) {
        use podrun_lifecycle::restart::{RestartPolicy, RestartSpec};
        let pod = self.machine.pod();
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = RestartPolicy::parse(spec.restart_policy.as_deref().unwrap_or("Always"));
        let containers: Vec<_> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .cloned()
            .collect();
        let restart_all = containers
            .iter()
            .any(|c| RestartSpec::from_container(c).has_restart_all_rule());
        for ((id, st), c) in ids.iter().zip(statuses).zip(&containers) {
            let terminated = st
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code);
            match (self.terminated_seen.get(id).copied(), terminated) {
                (Some(code), None) => {
                    let restart = RestartSpec::from_container(c);
                    let sidecar = matches!(id, ContainerId::Init(_)) && podrun_model::is_sidecar(c);
                    let allowed = restart_all
                        || sidecar
                        || restart.should_restart(policy, code)
                        || st.restart_count > 0 && self.restarted_after_probe_kill(c, policy);
                    if !allowed {
                        self.violations.push(format!(
                            "{} left terminated (exit {code}) though it may not restart",
                            st.name
                        ));
                    }
                    self.terminated_seen.remove(id);
                }
                (_, Some(code)) => {
                    self.terminated_seen.insert(*id, code);
                }
                (None, None) => {}
            }
        }
    }

    /// A probe-killed container is restarted when its effective policy is not `Never`,
    /// whatever its exit code.
    fn restarted_after_probe_kill(
        &self,
        c: &k8s_openapi::api::core::v1::Container,
        policy: podrun_lifecycle::restart::RestartPolicy,
    ) -> bool {
        podrun_lifecycle::restart::RestartSpec::from_container(c).restarts_after_probe_kill(policy)
    }

    /// The instant of the next scheduled event or machine deadline.
    pub fn next_instant(&self) -> Option<Timestamp> {
        let queued = self.queue.keys().next().map(|(t, _)| *t);
        match (queued, self.machine.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Jumps to the next instant and delivers what is due. Returns false when nothing is
    /// left to happen.
    pub fn step(&mut self) -> bool {
        self.drain();
        let Some(next) = self.next_instant() else {
            return false;
        };
        if next > self.now {
            self.now = next;
        }
        // Driver events first (they happened), then the machine's own timers.
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let e = entry.remove();
            self.deliver(e);
        }
        // Fire the machine's own timers at this instant (a no-op when an input already
        // brought the machine to `now`).
        let now = self.now;
        self.machine.handle_timeout(now);
        self.observe();
        self.drain();
        true
    }

    /// Steps until `at` seconds (inclusive), then sets the clock to `at`.
    pub fn run_until(&mut self, at: f64) {
        let target = self.instant(at);
        for _ in 0..MAX_STEPS {
            self.drain();
            match self.next_instant() {
                Some(t) if t <= target => {
                    self.step();
                }
                _ => {
                    if target > self.now {
                        self.now = target;
                        self.machine.handle_timeout(target);
                        self.observe();
                        self.drain();
                    }
                    return;
                }
            }
        }
        panic!("run_until({at}) did not settle in {MAX_STEPS} steps");
    }

    /// Steps until the machine reports finished or `limit` seconds passed; returns
    /// whether it finished.
    pub fn run_to_finish(&mut self, limit: f64) -> bool {
        let target = self.instant(limit);
        for _ in 0..MAX_STEPS {
            self.drain();
            if self.machine.is_finished() {
                return true;
            }
            match self.next_instant() {
                Some(t) if t <= target => {
                    self.step();
                }
                _ => return self.machine.is_finished(),
            }
        }
        panic!("run_to_finish({limit}) did not settle in {MAX_STEPS} steps");
    }

    // === invariants ===

    fn check_start_allowed(&mut self, id: ContainerId, name: &str) {
        if self.machine.termination().is_some() {
            self.violations.push(format!(
                "{name} started at {} after termination began",
                self.at()
            ));
        }
        // Before the first start of a regular container, every sidecar must have been
        // started at some point.
        if let ContainerId::Regular(_) = id
            && !self
                .transcript
                .iter()
                .any(|r| r.what.starts_with(&format!("start {name}#")))
        {
            let pod = self.machine.pod();
            let sidecars: Vec<String> = pod
                .spec
                .iter()
                .flat_map(|s| s.init_containers.iter().flatten())
                .filter(|c| podrun_model::is_sidecar(c))
                .map(|c| c.name.clone())
                .collect();
            for sc in sidecars {
                let prefix = format!("is-started {sc}#");
                if !self.transcript.iter().any(|r| r.what.starts_with(&prefix)) {
                    self.violations.push(format!(
                        "{name} started at {} before sidecar {sc} was ever started",
                        self.at()
                    ));
                }
            }
        }
    }

    /// Panics with the transcript if an invariant was broken: a container started after
    /// termination began, or a regular container started before every sidecar had been
    /// started.
    pub fn check_invariants(&self) {
        assert!(
            self.violations.is_empty(),
            "invariants broken: {:?}\n{}",
            self.violations,
            self.transcript_text()
        );
    }
}
