//! Probe workers of one container instance: when each probe is due and what its results
//! mean, as the kubelet's prober worker decides.
//!
//! Rules: the startupProbe runs from `startedAt + initialDelaySeconds` until it succeeds
//! once; readiness and liveness run only once the container is started; a result changes
//! the probe's verdict only after `successThreshold` / `failureThreshold` consecutive
//! equal results; a failing liveness or startup verdict puts the worker on hold (the
//! instance is about to be killed). A probe still in flight is never issued again; if
//! its period ran out meanwhile, the next run goes out as soon as the result is in (a Go
//! ticker keeps one pending tick).

use crate::slot::ProbeSpec;
use crate::{ProbeKind, ProbeResult, Time, add_secs};

/// What a probe result asks the engine to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changes.
    Unchanged,
    /// The startupProbe succeeded: the container is started.
    Started,
    /// The readinessProbe verdict changed to this value.
    Readiness(bool),
    /// The liveness or startup probe failed `failureThreshold` times in a row: kill and
    /// restart the container.
    Kill(ProbeKind),
}

/// One probe worker.
#[derive(Clone, Debug)]
pub struct Worker {
    spec: ProbeSpec,
    kind: ProbeKind,
    /// When the next run is due; `None` until the worker is armed.
    next_due: Option<Time>,
    in_flight: bool,
    last_result: Option<ProbeResult>,
    run: i32,
    /// The verdict as published (readiness starts false, liveness true, startup unknown).
    verdict: Option<ProbeResult>,
    on_hold: bool,
}

impl Worker {
    fn new(kind: ProbeKind, spec: ProbeSpec) -> Self {
        let verdict = match kind {
            ProbeKind::Startup => None,
            ProbeKind::Readiness => Some(ProbeResult::Failure),
            ProbeKind::Liveness => Some(ProbeResult::Success),
        };
        Worker {
            spec,
            kind,
            next_due: None,
            in_flight: false,
            last_result: None,
            run: 0,
            verdict,
            on_hold: false,
        }
    }

    /// Starts the schedule: first run at `startedAt + initialDelaySeconds`, or `now` if
    /// that has passed.
    fn arm(&mut self, started_at: Time, now: Time) {
        if self.next_due.is_none() && !self.on_hold {
            self.next_due = Some(add_secs(started_at, self.spec.initial_delay).max(now));
        }
    }

    fn due(&self, now: Time) -> bool {
        !self.on_hold && !self.in_flight && self.next_due.is_some_and(|t| t <= now)
    }

    fn issue(&mut self, now: Time) {
        self.in_flight = true;
        let mut next = self.next_due.unwrap_or(now);
        // Skip ticks that went by while nothing could run, like a ticker dropping ticks.
        while next <= now {
            next = add_secs(next, self.spec.period);
        }
        self.next_due = Some(next);
    }

    fn record(&mut self, result: ProbeResult) -> Verdict {
        self.in_flight = false;
        if self.on_hold {
            return Verdict::Unchanged;
        }
        if self.last_result == Some(result) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last_result = Some(result);
            self.run = 1;
        }
        let threshold = match result {
            ProbeResult::Success => self.spec.success_threshold,
            ProbeResult::Failure => self.spec.failure_threshold,
        };
        if self.run < threshold {
            return Verdict::Unchanged;
        }
        let changed = self.verdict != Some(result);
        self.verdict = Some(result);
        match (self.kind, result) {
            (ProbeKind::Startup, ProbeResult::Success) => {
                // The startup worker stops once the container is started.
                self.on_hold = true;
                Verdict::Started
            }
            (ProbeKind::Startup | ProbeKind::Liveness, ProbeResult::Failure) => {
                self.on_hold = true;
                self.run = 0;
                Verdict::Kill(self.kind)
            }
            (ProbeKind::Readiness, r) if changed => Verdict::Readiness(r == ProbeResult::Success),
            _ => Verdict::Unchanged,
        }
    }
}

/// The probe workers of one container instance.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    startup: Option<Worker>,
    readiness: Option<Worker>,
    liveness: Option<Worker>,
}

impl Probes {
    /// Workers for the probes a container defines.
    pub fn new(
        startup: Option<ProbeSpec>,
        readiness: Option<ProbeSpec>,
        liveness: Option<ProbeSpec>,
    ) -> Self {
        Probes {
            startup: startup.map(|s| Worker::new(ProbeKind::Startup, s)),
            readiness: readiness.map(|s| Worker::new(ProbeKind::Readiness, s)),
            liveness: liveness.map(|s| Worker::new(ProbeKind::Liveness, s)),
        }
    }

    fn worker_mut(&mut self, kind: ProbeKind) -> Option<&mut Worker> {
        match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
        }
    }

    fn workers(&self) -> impl Iterator<Item = &Worker> {
        [&self.startup, &self.readiness, &self.liveness]
            .into_iter()
            .flatten()
    }

    /// No startupProbe, or it has succeeded.
    pub fn startup_succeeded(&self) -> bool {
        self.startup
            .as_ref()
            .is_none_or(|w| w.verdict == Some(ProbeResult::Success))
    }

    /// No readinessProbe, or its verdict is success.
    pub fn ready(&self) -> bool {
        self.readiness
            .as_ref()
            .is_none_or(|w| w.verdict == Some(ProbeResult::Success))
    }

    /// Arms the workers allowed to run: the startup worker once the start operation is
    /// over, readiness and liveness once the container is also started.
    pub fn arm(&mut self, started_at: Time, started: bool, now: Time) {
        if let Some(w) = self.startup.as_mut().filter(|_| !started) {
            w.arm(started_at, now);
        }
        if started {
            for w in [self.readiness.as_mut(), self.liveness.as_mut()]
                .into_iter()
                .flatten()
            {
                w.arm(started_at, now);
            }
        }
    }

    /// Stops the liveness and startup workers (the pod is terminating or the instance is
    /// being killed); readiness keeps running.
    pub fn stop_liveness_and_startup(&mut self) {
        for w in [self.startup.as_mut(), self.liveness.as_mut()]
            .into_iter()
            .flatten()
        {
            w.on_hold = true;
        }
    }

    /// Stops every worker.
    pub fn stop_all(&mut self) {
        for w in [
            self.startup.as_mut(),
            self.readiness.as_mut(),
            self.liveness.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            w.on_hold = true;
        }
    }

    /// The probes due at `now`, marked in flight.
    pub fn issue_due(&mut self, now: Time) -> Vec<ProbeKind> {
        let mut out = Vec::new();
        for kind in [
            ProbeKind::Startup,
            ProbeKind::Readiness,
            ProbeKind::Liveness,
        ] {
            if let Some(w) = self.worker_mut(kind).filter(|w| w.due(now)) {
                w.issue(now);
                out.push(kind);
            }
        }
        out
    }

    /// Records a result of an in-flight probe. Results nobody asked for are ignored.
    pub fn record(&mut self, kind: ProbeKind, result: ProbeResult) -> Verdict {
        match self.worker_mut(kind) {
            Some(w) if w.in_flight => w.record(result),
            _ => Verdict::Unchanged,
        }
    }

    /// The earliest instant a probe is due (not counting probes in flight).
    pub fn next_due(&self) -> Option<Time> {
        self.workers()
            .filter(|w| !w.on_hold && !w.in_flight)
            .filter_map(|w| w.next_due)
            .min()
    }
}
