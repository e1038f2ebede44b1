//! From records to a chart: lanes, runs, gaps and marks on one time axis. Pure data;
//! `svg` and `text` draw it.

use crate::record::{ContainerKind, ContainerRef, Probe, Record, Transition};

/// One pod's lifecycle, laid out on a time axis in milliseconds since the pod started.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// `namespace/name`.
    pub pod: String,
    /// The last instant the records cover.
    pub end_ms: f64,
    /// One lane per container: init containers and sidecars in spec order, then the
    /// regular containers in spec order.
    pub lanes: Vec<Lane>,
    /// `status.phase` over time; each span lasts until the next one starts.
    pub phases: Vec<PhaseSpan>,
    /// When the pod was deleted, if it was.
    pub deletion_ms: Option<f64>,
}

/// A phase and the time it began.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseSpan {
    /// `Pending`, `Running`, `Succeeded`, `Failed`.
    pub phase: String,
    /// When it began.
    pub start: f64,
    /// When the next phase began, or the chart's end.
    pub end: f64,
}

/// An interval of time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    /// Start (ms).
    pub start: f64,
    /// End (ms).
    pub end: f64,
}

/// One container's lane.
#[derive(Clone, Debug, PartialEq)]
pub struct Lane {
    /// The container's name.
    pub name: String,
    /// Init, sidecar or regular.
    pub kind: ContainerKind,
    /// Each instance's running interval, in order: a restart starts a new run.
    pub runs: Vec<Run>,
    /// Crash-loop back-off waits (from the back-off until the next instance is created).
    pub backoffs: Vec<Span>,
    /// Intervals during which the container was Ready.
    pub ready: Vec<Span>,
    /// Probe results, hooks and other instants.
    pub marks: Vec<Mark>,
}

/// One container instance from start to exit.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The instance's restart count.
    pub restart_count: i32,
    /// When its process started.
    pub start: f64,
    /// When it exited, or the chart's end if it had not.
    pub end: f64,
    /// How it ended, if it exited within the records.
    pub exit: Option<Exit>,
    /// Its preStop hook, if one ran.
    pub pre_stop: Option<Span>,
    /// From the first stop step (preStop or SIGTERM) to the exit.
    pub stopping: Option<Span>,
    /// When SIGKILL was sent, if it was.
    pub killed_at: Option<f64>,
}

/// How an instance ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Exit {
    /// The exit code.
    pub code: i32,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`.
    pub reason: String,
}

/// An instant on a lane.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    /// When.
    pub ms: f64,
    /// What.
    pub kind: MarkKind,
}

/// What an instant on a lane means.
#[derive(Clone, Debug, PartialEq)]
pub enum MarkKind {
    /// A probe's result changed.
    Probe {
        /// Which probe.
        probe: Probe,
        /// Passed or failed.
        success: bool,
    },
    /// The postStart hook returned.
    PostStart {
        /// Whether it succeeded.
        success: bool,
    },
    /// `started` became true (the startup probe passed).
    StartupDone,
    /// SIGTERM was sent.
    Term,
    /// SIGKILL was sent.
    Kill,
    /// The container could not be started.
    StartFailed {
        /// The waiting reason.
        reason: String,
    },
}

// === impl Chart ===

impl Chart {
    /// Lays out one pod's records (in the order they were written). Containers named in
    /// the `Scheduled` record get lanes in spec order, grouped init / sidecar /
    /// regular; containers only seen in later records are added after them.
    pub fn from_records(pod: &str, records: &[Record]) -> Self {
        let end_ms = records.iter().map(|r| r.ms).fold(0.0, f64::max);
        let mut lanes: Vec<Lane> = Vec::new();
        let mut phases: Vec<PhaseSpan> = Vec::new();
        let mut deletion_ms = None;
        for r in records {
            match &r.transition {
                Transition::Scheduled { containers, .. } => {
                    for c in ordered(containers) {
                        lane_for(&mut lanes, &c.name, Some(c.kind));
                    }
                }
                Transition::Phase { phase } if phases.last().is_none_or(|p| &p.phase != phase) => {
                    if let Some(last) = phases.last_mut() {
                        last.end = r.ms;
                    }
                    phases.push(PhaseSpan {
                        phase: phase.clone(),
                        start: r.ms,
                        end: end_ms,
                    });
                }
                Transition::DeletionRequested { .. } => {
                    deletion_ms.get_or_insert(r.ms);
                }
                _ => {}
            }
            let Some(name) = &r.container else { continue };
            let restart_count = r.restart_count.unwrap_or(0);
            let lane = lane_for(&mut lanes, name, None);
            lane.apply(r, restart_count, end_ms);
        }
        for lane in &mut lanes {
            if let Some(b) = lane.backoffs.last_mut()
                && b.end.is_nan()
            {
                b.end = end_ms;
            }
            if let Some(s) = lane.ready.last_mut()
                && s.end.is_nan()
            {
                s.end = end_ms;
            }
        }
        Self {
            pod: pod.to_string(),
            end_ms,
            lanes,
            phases,
            deletion_ms,
        }
    }
}

/// Init containers and sidecars keep their spec order (they are one list in the spec);
/// regular containers follow.
fn ordered(containers: &[ContainerRef]) -> impl Iterator<Item = &ContainerRef> {
    let init = containers
        .iter()
        .filter(|c| c.kind != ContainerKind::Regular);
    let regular = containers
        .iter()
        .filter(|c| c.kind == ContainerKind::Regular);
    init.chain(regular)
}

fn lane_for<'a>(lanes: &'a mut Vec<Lane>, name: &str, kind: Option<ContainerKind>) -> &'a mut Lane {
    let i = match lanes.iter().position(|l| l.name == name) {
        Some(i) => i,
        None => {
            lanes.push(Lane {
                name: name.to_string(),
                kind: kind.unwrap_or(ContainerKind::Regular),
                runs: Vec::new(),
                backoffs: Vec::new(),
                ready: Vec::new(),
                marks: Vec::new(),
            });
            lanes.len() - 1
        }
    };
    &mut lanes[i]
}

// === impl Lane ===

impl Lane {
    fn apply(&mut self, r: &Record, restart_count: i32, end_ms: f64) {
        let ms = r.ms;
        match &r.transition {
            Transition::Created => {
                if let Some(b) = self.backoffs.last_mut()
                    && b.end.is_nan()
                {
                    b.end = ms;
                }
            }
            Transition::Started => self.runs.push(Run {
                restart_count,
                start: ms,
                end: end_ms,
                exit: None,
                pre_stop: None,
                stopping: None,
                killed_at: None,
            }),
            Transition::StartFailed { reason, .. } => self.mark(
                ms,
                MarkKind::StartFailed {
                    reason: reason.clone(),
                },
            ),
            Transition::PostStartDone { error } => self.mark(
                ms,
                MarkKind::PostStart {
                    success: error.is_none(),
                },
            ),
            Transition::ProbeResult { probe, success } => self.mark(
                ms,
                MarkKind::Probe {
                    probe: *probe,
                    success: *success,
                },
            ),
            Transition::StartupDone { started: true } => self.mark(ms, MarkKind::StartupDone),
            Transition::Ready { ready } => {
                let open = self.ready.last().is_some_and(|s| s.end.is_nan());
                // A finished init container counts as ready; the lane shows readiness
                // only while an instance runs.
                let running = self.runs.last().is_some_and(|r| r.exit.is_none());
                if *ready && !open && running {
                    self.ready.push(Span {
                        start: ms,
                        end: f64::NAN,
                    });
                } else if !*ready
                    && open
                    && let Some(s) = self.ready.last_mut()
                {
                    s.end = ms;
                }
            }
            Transition::PreStopStarted => {
                if let Some(run) = self.run_mut(restart_count) {
                    run.pre_stop = Some(Span {
                        start: ms,
                        end: run.end,
                    });
                    run.stopping.get_or_insert(Span {
                        start: ms,
                        end: run.end,
                    });
                }
            }
            Transition::PreStopDone { .. } | Transition::PreStopCancelled => {
                if let Some(run) = self.run_mut(restart_count)
                    && let Some(p) = run.pre_stop.as_mut()
                {
                    p.end = ms;
                }
            }
            Transition::SignalSent { signal } => {
                let kill = signal == "SIGKILL";
                if let Some(run) = self.run_mut(restart_count) {
                    let end = run.end;
                    run.stopping.get_or_insert(Span { start: ms, end });
                    if kill {
                        run.killed_at.get_or_insert(ms);
                    }
                }
                self.mark(ms, if kill { MarkKind::Kill } else { MarkKind::Term });
            }
            Transition::Exited {
                exit_code,
                signal,
                reason,
            } => {
                if let Some(run) = self.run_mut(restart_count) {
                    run.end = ms;
                    run.exit = Some(Exit {
                        code: *exit_code,
                        signal: *signal,
                        reason: reason.clone(),
                    });
                    if let Some(s) = run.stopping.as_mut() {
                        s.end = ms;
                    }
                    if let Some(p) = run.pre_stop.as_mut() {
                        p.end = p.end.min(ms);
                    }
                }
                if let Some(s) = self.ready.last_mut()
                    && s.end.is_nan()
                {
                    s.end = ms;
                }
            }
            Transition::BackOff { .. } if self.backoffs.last().is_none_or(|b| !b.end.is_nan()) => {
                self.backoffs.push(Span {
                    start: ms,
                    end: f64::NAN,
                });
            }
            _ => {}
        }
    }

    fn mark(&mut self, ms: f64, kind: MarkKind) {
        self.marks.push(Mark { ms, kind });
    }

    fn run_mut(&mut self, restart_count: i32) -> Option<&mut Run> {
        self.runs
            .iter_mut()
            .rev()
            .find(|r| r.restart_count == restart_count)
    }

    /// How many times the container was restarted within the records.
    pub fn restarts(&self) -> usize {
        self.runs.len().saturating_sub(1)
    }
}
