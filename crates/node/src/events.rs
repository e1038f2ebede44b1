//! What the pod worker saw happen, kept with the pod: lifecycle records and Kubernetes
//! Events.
//!
//! The worker calls one [`Recorder`] per pod with what it already knows — the
//! machine's actions, the inputs it feeds back (process exits, hook and probe results),
//! deletions and each status it publishes — and the recorder writes:
//!
//! * `<pod dir>/lifecycle.jsonl`: one [`podrun_timeline::Record`] per transition, with
//!   milliseconds since the worker started (monotonic clock) and the wall clock;
//! * `<pod dir>/events.jsonl`: the `v1.Event`s the kubelet (and the scheduler) would
//!   have posted, with upstream's reasons and messages. A repeat of an event is the
//!   same Event (same name) with its `count` and `lastTimestamp` moved on, appended as
//!   a new line, so the last line of a name is the Event as an API server would hold it.
//!
//! Both streams also go to the file named by [`write_all_pods_to`] (`podrun run
//! --events FILE`). Writing is best effort: a full disk must not stop a pod.
//!
//! Each Event, once written, is also handed to the receivers [`subscribe`]d to the pods'
//! directory: `podrun server` stores them as the kubelet posts its Events to the API
//! server, learning of each one as it is recorded.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use podrun_lifecycle::{
    Action, ContainerId, ExitStatus, HookKind, PodMachine, ProbeKind, ProbeResult, StopSignal,
};
use podrun_timeline::{ContainerKind, ContainerRef, Probe, Record, Transition};

/// The file every pod's records and Events are copied to, when set.
static ALL_PODS: OnceLock<Mutex<File>> = OnceLock::new();

/// Copies every pod's lifecycle records and Events, as they are written, to `path`
/// (created or truncated). Only the first call in a process takes effect.
pub fn write_all_pods_to(path: &Path) -> std::io::Result<()> {
    let file = File::create(path)?;
    let _ = ALL_PODS.set(Mutex::new(file));
    Ok(())
}

/// Receivers of the Events recorded for the pods under a directory, by that directory.
type Subscribers = HashMap<PathBuf, Vec<std::sync::mpsc::Sender<Event>>>;

static SUBSCRIBERS: Mutex<Option<Subscribers>> = Mutex::new(None);

/// Every Event recorded from now on for a pod whose directory is in `pods_dir` (the
/// node's `<state>/pods`), in the order written: a new Event with `count` 1, a repeat
/// as the same Event with its `count` and `lastTimestamp` moved on. The receiver blocks
/// until the next one; dropping it unsubscribes.
pub fn subscribe(pods_dir: &Path) -> std::sync::mpsc::Receiver<Event> {
    let (tx, rx) = std::sync::mpsc::channel();
    SUBSCRIBERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .entry(pods_dir.to_path_buf())
        .or_default()
        .push(tx);
    rx
}

/// Hands `event` of a pod in `pods_dir` to its subscribers, forgetting the gone ones.
fn notify(pods_dir: &Path, event: &Event) {
    let mut subscribers = SUBSCRIBERS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(all) = subscribers.as_mut() else {
        return;
    };
    let Some(receivers) = all.get_mut(pods_dir) else {
        return;
    };
    receivers.retain(|tx| tx.send(event.clone()).is_ok());
    if receivers.is_empty() {
        all.remove(pods_dir);
    }
}

/// The name of a pod's lifecycle record file in its directory.
pub const LIFECYCLE_FILE: &str = "lifecycle.jsonl";
/// The name of a pod's Event file in its directory.
pub const EVENTS_FILE: &str = "events.jsonl";

/// The last line written for each Event name, in first-seen order: what an API server
/// holding these Events would list.
pub fn latest_events(jsonl: &str) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for line in jsonl.lines() {
        let Ok(event) = serde_json::from_str::<Event>(line) else {
            continue;
        };
        match out
            .iter_mut()
            .find(|e| e.metadata.name == event.metadata.name)
        {
            Some(old) => *old = event,
            None => out.push(event),
        }
    }
    out
}

// === Correlator ===

/// Repeats of an Event within this long are aggregated (client-go's
/// `maxIntervalInSeconds`, 600 s).
const AGGREGATE_INTERVAL: SignedDuration = SignedDuration::from_secs(600);
/// This many distinct messages for one reason and object within the interval are
/// combined into one Event (client-go's `maxEvents`, 10).
const AGGREGATE_MAX: usize = 10;
/// Events one source may post about one object in a burst (client-go's
/// `defaultSpamBurst`)…
const SPAM_BURST: f64 = 25.0;
/// …and how fast that allowance refills: one Event per five minutes
/// (`defaultSpamQPS`).
const SPAM_PER_SECOND: f64 = 1.0 / 300.0;

/// Counts repeats as client-go's `EventCorrelator` does for the kubelet: an identical
/// Event (same source, object, field path, type, reason and message) bumps the first
/// one's `count` and `lastTimestamp`; the tenth distinct message for the same
/// source, object, type and reason within ten minutes turns into one Event whose
/// message starts with `(combined from similar events): `. Then, as client-go's
/// spam filter, a source may post 25 Events about one object in a burst and one more
/// per five minutes after that: the rest are counted but not posted, so the next
/// posted repeat carries their count. Pure: time is an argument.
#[derive(Debug, Default)]
pub struct Correlator {
    /// The Event last counted for each identity.
    seen: HashMap<String, Event>,
    /// Messages seen per aggregate key, and when the key was last seen.
    similar: HashMap<String, (HashSet<String>, Timestamp)>,
    /// Allowance left per source and object, and when it was last refilled.
    allowance: HashMap<String, (f64, Timestamp)>,
}

impl Correlator {
    /// The Event to post for `draft` at `now` (a new Event with `count` 1, or an
    /// earlier one with its count moved on), or `None` when the spam filter holds it
    /// back.
    pub fn correlate(&mut self, draft: Event, now: Timestamp) -> Option<Event> {
        let event = self.count(draft, now);
        let key = object_key(&event).join("\u{0}");
        let (tokens, last) = self.allowance.entry(key).or_insert((SPAM_BURST, now));
        let elapsed = now.duration_since(*last).as_secs_f64().max(0.0);
        *tokens = (*tokens + elapsed * SPAM_PER_SECOND).min(SPAM_BURST);
        *last = now;
        if *tokens < 1.0 {
            return None;
        }
        *tokens -= 1.0;
        Some(event)
    }

    /// Aggregates and counts `draft`, as client-go does before its spam filter.
    fn count(&mut self, draft: Event, now: Timestamp) -> Event {
        let (draft, key) = self.aggregate(draft, now);
        if let Some(last) = self.seen.get(&key) {
            let mut event = last.clone();
            event.count = Some(last.count.unwrap_or(1).saturating_add(1));
            event.last_timestamp = Some(Time(now));
            self.seen.insert(key, event.clone());
            return event;
        }
        let mut event = draft;
        event.metadata.name = Some(format!(
            "{}.{:x}",
            event.involved_object.name.as_deref().unwrap_or_default(),
            now.as_nanosecond()
        ));
        event.count = Some(1);
        event.first_timestamp = Some(Time(now));
        event.last_timestamp = Some(Time(now));
        self.seen.insert(key, event.clone());
        event
    }

    fn aggregate(&mut self, draft: Event, now: Timestamp) -> (Event, String) {
        let aggregate_key = aggregate_key(&draft);
        let message = draft.message.clone().unwrap_or_default();
        let entry = self
            .similar
            .entry(aggregate_key.clone())
            .or_insert_with(|| (HashSet::new(), now));
        if now.duration_since(entry.1) > AGGREGATE_INTERVAL {
            entry.0.clear();
        }
        entry.0.insert(message.clone());
        entry.1 = now;
        if entry.0.len() < AGGREGATE_MAX {
            let key = event_key(&draft);
            return (draft, key);
        }
        // Keep the set just under the limit, as client-go pops one entry.
        entry.0.remove(&message);
        let mut combined = draft;
        combined.message = Some(format!("(combined from similar events): {message}"));
        (combined, aggregate_key)
    }
}

fn object_key(e: &Event) -> [&str; 7] {
    let o = &e.involved_object;
    let source = e.source.as_ref();
    [
        source.and_then(|s| s.component.as_deref()).unwrap_or(""),
        source.and_then(|s| s.host.as_deref()).unwrap_or(""),
        o.kind.as_deref().unwrap_or(""),
        o.namespace.as_deref().unwrap_or(""),
        o.name.as_deref().unwrap_or(""),
        o.uid.as_deref().unwrap_or(""),
        o.api_version.as_deref().unwrap_or(""),
    ]
}

/// Source, object, type, reason and reporter: the key similar Events share.
fn aggregate_key(e: &Event) -> String {
    let mut parts: Vec<&str> = object_key(e).to_vec();
    parts.extend([
        e.type_.as_deref().unwrap_or(""),
        e.reason.as_deref().unwrap_or(""),
        e.reporting_component.as_deref().unwrap_or(""),
        e.reporting_instance.as_deref().unwrap_or(""),
    ]);
    parts.join("\u{0}")
}

/// Everything that makes two Events the same Event.
fn event_key(e: &Event) -> String {
    let mut parts: Vec<&str> = object_key(e).to_vec();
    parts.extend([
        e.involved_object.field_path.as_deref().unwrap_or(""),
        e.type_.as_deref().unwrap_or(""),
        e.reason.as_deref().unwrap_or(""),
        e.message.as_deref().unwrap_or(""),
    ]);
    parts.join("\u{0}")
}

// === Recorder ===

/// One container as the recorder names it.
#[derive(Clone, Debug)]
struct Named {
    name: String,
    field_path: String,
    image: String,
}

/// What the recorder last saw of one container.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// Last result of each probe, per instance.
    probes: HashMap<(i32, u8), bool>,
    /// Instances that began stopping (preStop or SIGTERM).
    stopping: HashSet<i32>,
    ready: bool,
    started: bool,
    /// (restart count, waiting reason) last seen in the status.
    waiting: Option<(i32, String)>,
}

/// One pod's recorder. See the module docs.
pub(crate) struct Recorder {
    start: Instant,
    /// The directory holding the pod's directory: what [`subscribe`] is keyed by.
    pods_dir: PathBuf,
    pod: String,
    reference: ObjectReference,
    node: String,
    containers: HashMap<ContainerId, Named>,
    seen: HashMap<ContainerId, Seen>,
    phase: Option<String>,
    deleted: bool,
    correlator: Correlator,
    lifecycle: Option<File>,
    events: Option<File>,
    /// Containers whose last start recorded its own image Events.
    image_handled: HashSet<ContainerId>,
}

impl Recorder {
    /// Opens the pod's record files in `pod_dir` and records that the pod was bound to
    /// this node (`Scheduled`).
    pub(crate) fn open(pod_dir: &Path, pod: &Pod) -> Self {
        let open = |name: &str| -> Option<File> {
            let path: PathBuf = pod_dir.join(name);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| tracing::warn!(path = %path.display(), %e, "cannot record pod events"))
                .ok()
        };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut containers = HashMap::new();
        let mut refs = Vec::new();
        for (i, c) in spec.init_containers.iter().flatten().enumerate() {
            let kind = if podrun_model::is_sidecar(c) {
                ContainerKind::Sidecar
            } else {
                ContainerKind::Init
            };
            containers.insert(
                ContainerId::Init(i),
                named(c, format!("spec.initContainers{{{}}}", c.name)),
            );
            refs.push(ContainerRef {
                name: c.name.clone(),
                kind,
            });
        }
        for (i, c) in spec.containers.iter().enumerate() {
            containers.insert(
                ContainerId::Regular(i),
                named(c, format!("spec.containers{{{}}}", c.name)),
            );
            refs.push(ContainerRef {
                name: c.name.clone(),
                kind: ContainerKind::Regular,
            });
        }
        let node = spec.node_name.clone().unwrap_or_else(crate::node_name);
        let mut recorder = Self {
            start: Instant::now(),
            pods_dir: pod_dir.parent().unwrap_or(pod_dir).to_path_buf(),
            pod: format!("{namespace}/{name}"),
            reference: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(namespace.clone()),
                name: Some(name.clone()),
                uid: Some(uid.clone()),
                resource_version: pod.metadata.resource_version.clone(),
                ..Default::default()
            },
            node: node.clone(),
            containers,
            seen: HashMap::new(),
            phase: None,
            deleted: false,
            correlator: Correlator::default(),
            lifecycle: open(LIFECYCLE_FILE),
            events: open(EVENTS_FILE),
            image_handled: HashSet::new(),
        };
        recorder.record(
            None,
            Transition::Scheduled {
                uid,
                containers: refs,
            },
        );
        recorder.event(
            None,
            "default-scheduler",
            "Normal",
            "Scheduled",
            format!("Successfully assigned {namespace}/{name} to {node}"),
        );
        recorder
    }

    /// Records what carrying out `action` did. `started` says whether a
    /// `StartContainer` produced a running process.
    pub(crate) fn handle_action(&mut self, action: &Action, machine: &PodMachine, started: bool) {
        match *action {
            Action::StartContainer { id, restart_count } => {
                let Some(c) = self.containers.get(&id).cloned() else {
                    return;
                };
                let image_handled = self.image_handled.remove(&id);
                if !image_handled {
                    self.container_event(
                        id,
                        "Normal",
                        "Pulled",
                        format!(
                            "Container image \"{}\" already present on machine and can be accessed by the pod",
                            c.image
                        ),
                    );
                }
                if started {
                    self.record(Some((id, restart_count)), Transition::Created);
                    // The kubelet's words (kuberuntime startContainer).
                    let created = format!("Created container: {}", c.name);
                    self.container_event(id, "Normal", "Created", created);
                    self.record(Some((id, restart_count)), Transition::Started);
                    let started = format!("Started container {}", c.name);
                    self.container_event(id, "Normal", "Started", started);
                } else {
                    let (reason, message) = waiting(&machine.status(), &c.name)
                        .unwrap_or_else(|| ("RunContainerError".into(), String::new()));
                    if !podrun_lifecycle::slot::is_image_reason(&reason) {
                        self.container_event(id, "Warning", "Failed", format!("Error: {message}"));
                    }
                    self.record(
                        Some((id, restart_count)),
                        Transition::StartFailed { reason, message },
                    );
                }
            }
            Action::RunHook {
                id,
                restart_count,
                hook: HookKind::PreStop,
            } => {
                self.stopping(id, restart_count);
                self.record(Some((id, restart_count)), Transition::PreStopStarted);
            }
            Action::RunHook { .. } | Action::RunProbe { .. } => {}
            Action::CancelHook {
                id,
                restart_count,
                hook: HookKind::PreStop,
            } => self.record(Some((id, restart_count)), Transition::PreStopCancelled),
            Action::CancelHook { .. } => {}
            Action::Signal {
                id,
                restart_count,
                signal,
            } => {
                let signal = match signal {
                    StopSignal::Term => {
                        self.stopping(id, restart_count);
                        "SIGTERM"
                    }
                    StopSignal::Kill => "SIGKILL",
                };
                self.record(
                    Some((id, restart_count)),
                    Transition::SignalSent {
                        signal: signal.into(),
                    },
                );
            }
        }
    }

    /// The image Events of a container start (`Pulling`, `Pulled`, `Failed`, `BackOff`,
    /// `InspectFailed`, `ErrImageNeverPull`), recorded before the start's own.
    pub(crate) fn handle_image_events(
        &mut self,
        id: ContainerId,
        events: &[podrun_images::policy::ImageEvent],
    ) {
        self.image_handled.insert(id);
        for e in events {
            self.container_event(id, e.type_.as_str(), e.reason, e.message.clone());
        }
    }

    /// Events about the pod itself from its container starts
    /// (`FailedToRetrieveImagePullSecret`).
    pub(crate) fn handle_pod_events(&mut self, events: &[podrun_images::policy::ImageEvent]) {
        for e in events {
            self.event(
                None,
                "kubelet",
                e.type_.as_str(),
                e.reason,
                e.message.clone(),
            );
        }
    }

    /// The first stop step of an instance: the kubelet's `Killing` Event.
    fn stopping(&mut self, id: ContainerId, restart_count: i32) {
        let Some(name) = self.containers.get(&id).map(|c| c.name.clone()) else {
            return;
        };
        let seen = self.seen.entry(id).or_default();
        if !seen.stopping.insert(restart_count) {
            return;
        }
        let failed = |probe: u8| seen.probes.get(&(restart_count, probe)) == Some(&false);
        let message = if !self.deleted && failed(probe_index(ProbeKind::Liveness)) {
            format!("Container {name} failed liveness probe, will be restarted")
        } else if !self.deleted && failed(probe_index(ProbeKind::Startup)) {
            format!("Container {name} failed startup probe, will be restarted")
        } else {
            format!("Stopping container {name}")
        };
        self.container_event(id, "Normal", "Killing", message);
    }

    /// A container process exited.
    pub(crate) fn handle_exited(&mut self, id: ContainerId, restart_count: i32, exit: &ExitStatus) {
        let reason = if exit.oom_killed {
            "OOMKilled"
        } else if exit.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        self.record(
            Some((id, restart_count)),
            Transition::Exited {
                exit_code: exit.exit_code,
                signal: exit.signal,
                reason: reason.into(),
            },
        );
    }

    /// A hook returned.
    pub(crate) fn handle_hook(
        &mut self,
        id: ContainerId,
        restart_count: i32,
        hook: HookKind,
        result: &Result<(), String>,
    ) {
        let error = result.as_ref().err().cloned();
        // Upstream leaves the handler's output out of the Event (it may hold secrets).
        let (transition, failed) = match hook {
            HookKind::PostStart => (
                Transition::PostStartDone { error },
                ("FailedPostStartHook", "PostStartHook failed"),
            ),
            HookKind::PreStop => (
                Transition::PreStopDone { error },
                ("FailedPreStopHook", "PreStopHook failed"),
            ),
        };
        if result.is_err() {
            self.container_event(id, "Warning", failed.0, failed.1.into());
        }
        self.record(Some((id, restart_count)), transition);
    }

    /// A probe finished; `output` says why it failed.
    pub(crate) fn handle_probe(
        &mut self,
        id: ContainerId,
        restart_count: i32,
        probe: ProbeKind,
        result: ProbeResult,
        output: &str,
    ) {
        let success = result == ProbeResult::Success;
        let previous = self
            .seen
            .entry(id)
            .or_default()
            .probes
            .insert((restart_count, probe_index(probe)), success);
        if !success {
            let kind = match probe {
                ProbeKind::Startup => "Startup",
                ProbeKind::Readiness => "Readiness",
                ProbeKind::Liveness => "Liveness",
            };
            self.container_event(
                id,
                "Warning",
                "Unhealthy",
                format!("{kind} probe failed: {output}"),
            );
        }
        if previous != Some(success) {
            let probe = match probe {
                ProbeKind::Startup => Probe::Startup,
                ProbeKind::Readiness => Probe::Readiness,
                ProbeKind::Liveness => Probe::Liveness,
            };
            self.record(
                Some((id, restart_count)),
                Transition::ProbeResult { probe, success },
            );
        }
    }

    /// The pod was deleted with this grace period.
    pub(crate) fn handle_delete(&mut self, grace_period_seconds: i64) {
        if !self.deleted {
            self.deleted = true;
            self.record(
                None,
                Transition::DeletionRequested {
                    grace_period_seconds,
                },
            );
        }
    }

    /// The status the worker publishes: records phase, `started` and `ready` changes
    /// and crash-loop back-off waits.
    pub(crate) fn handle_status(&mut self, status: &PodStatus) {
        if let Some(phase) = &status.phase
            && self.phase.as_ref() != Some(phase)
        {
            self.phase = Some(phase.clone());
            self.record(
                None,
                Transition::Phase {
                    phase: phase.clone(),
                },
            );
        }
        let ids: Vec<(ContainerId, String)> = self
            .containers
            .iter()
            .map(|(id, c)| (*id, c.name.clone()))
            .collect();
        let statuses = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for cs in statuses {
            let Some((id, _)) = ids.iter().find(|(_, n)| *n == cs.name) else {
                continue;
            };
            let id = *id;
            let at = Some((id, cs.restart_count));
            let seen = self.seen.entry(id).or_default().clone();
            let started = cs.started == Some(true);
            if started != seen.started {
                self.seen.entry(id).or_default().started = started;
                if started {
                    self.record(at, Transition::StartupDone { started });
                }
            }
            if cs.ready != seen.ready {
                self.seen.entry(id).or_default().ready = cs.ready;
                self.record(at, Transition::Ready { ready: cs.ready });
            }
            let waiting = cs
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .map(|w| (w.reason.clone().unwrap_or_default(), w.message.clone()));
            let now_waiting = waiting
                .as_ref()
                .map(|(reason, _)| (cs.restart_count, reason.clone()));
            if now_waiting != seen.waiting {
                self.seen.entry(id).or_default().waiting = now_waiting;
                if let Some((reason, message)) = waiting
                    && reason == "CrashLoopBackOff"
                {
                    let pod = self.pod_ref();
                    let name = cs.name.clone();
                    self.record(
                        at,
                        Transition::BackOff {
                            message: message.unwrap_or_default(),
                        },
                    );
                    self.container_event(
                        id,
                        "Warning",
                        "BackOff",
                        format!("Back-off restarting failed container {name} in pod {pod}"),
                    );
                }
            }
        }
    }

    /// `name_namespace(uid)`, as the kubelet names a pod in messages.
    fn pod_ref(&self) -> String {
        let r = &self.reference;
        format!(
            "{}_{}({})",
            r.name.as_deref().unwrap_or_default(),
            r.namespace.as_deref().unwrap_or_default(),
            r.uid.as_deref().unwrap_or_default()
        )
    }

    fn record(&mut self, container: Option<(ContainerId, i32)>, transition: Transition) {
        let (name, restart_count) = match container {
            Some((id, n)) => (self.containers.get(&id).map(|c| c.name.clone()), Some(n)),
            None => (None, None),
        };
        let record = Record {
            ms: (self.start.elapsed().as_micros() as f64) / 1000.0,
            time: crate::now().to_string(),
            pod: self.pod.clone(),
            container: name,
            restart_count,
            transition,
        };
        if let Ok(line) = serde_json::to_string(&record) {
            write_line(self.lifecycle.as_mut(), &line);
        }
    }

    fn container_event(&mut self, id: ContainerId, type_: &str, reason: &str, message: String) {
        let field_path = self.containers.get(&id).map(|c| c.field_path.clone());
        self.event(field_path, "kubelet", type_, reason, message);
    }

    fn event(
        &mut self,
        field_path: Option<String>,
        component: &str,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        let draft = Event {
            metadata: ObjectMeta {
                namespace: self.reference.namespace.clone(),
                ..Default::default()
            },
            involved_object: ObjectReference {
                field_path,
                ..self.reference.clone()
            },
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(type_.into()),
            source: Some(EventSource {
                component: Some(component.into()),
                host: (component == "kubelet").then(|| self.node.clone()),
            }),
            reporting_component: Some(component.into()),
            reporting_instance: (component == "kubelet").then(|| self.node.clone()),
            ..Default::default()
        };
        let Some(event) = self.correlator.correlate(draft, crate::now()) else {
            return;
        };
        if let Ok(line) = serde_json::to_string(&event) {
            write_line(self.events.as_mut(), &line);
        }
        notify(&self.pods_dir, &event);
    }
}

fn named(c: &k8s_openapi::api::core::v1::Container, field_path: String) -> Named {
    Named {
        name: c.name.clone(),
        field_path,
        image: c.image.clone().unwrap_or_default(),
    }
}

fn probe_index(probe: ProbeKind) -> u8 {
    match probe {
        ProbeKind::Startup => 0,
        ProbeKind::Readiness => 1,
        ProbeKind::Liveness => 2,
    }
}

/// The waiting reason and message the status shows for container `name`.
fn waiting(status: &PodStatus, name: &str) -> Option<(String, String)> {
    let cs = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find(|c| c.name == name)?;
    let w = cs.state.as_ref()?.waiting.as_ref()?;
    Some((
        w.reason.clone().unwrap_or_default(),
        w.message.clone().unwrap_or_default(),
    ))
}

/// Appends one line to the pod's file and to the all-pods file, if set.
fn write_line(file: Option<&mut File>, line: &str) {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    if let Some(f) = file {
        let _ = f.write_all(&bytes);
    }
    if let Some(all) = ALL_PODS.get() {
        let _ = all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(&bytes);
    }
}

#[cfg(test)]
mod tests;
