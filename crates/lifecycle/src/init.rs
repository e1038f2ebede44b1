//! The init-container decision of one kubelet sync (`computeInitContainerActions`), as a
//! pure function of the init containers' latest runtime state.
//!
//! Init containers are walked from last to first so that only the latest progress
//! matters: a finished regular init container is never re-run once something after it
//! exists, a sidecar is restarted whenever it is not running, and the next init
//! container starts only when the one before it exited 0 (regular init container) or is
//! running and started (sidecar).

/// The latest runtime state of one init container, as the decision sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitState {
    /// No instance exists (never created, or creating it failed).
    Absent,
    /// An instance is being created and started (the runtime's `Created`).
    Creating,
    /// An instance is running; `started` for a sidecar means its start operation is over
    /// and its startupProbe (if any) succeeded.
    Running {
        /// Started in the sense of the `started` status field.
        started: bool,
    },
    /// The latest instance exited with this code.
    Exited {
        /// Exit code.
        exit_code: i32,
        /// For a regular init container that failed: the kubelet restarts it
        /// (`ContainerShouldRestart`: its own policy and rules, else the pod policy).
        restart: bool,
    },
}

/// One init container for the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitView {
    /// `restartPolicy: Always`.
    pub sidecar: bool,
    /// Its latest state.
    pub state: InitState,
}

/// What the init sequence wants in this sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitDecision {
    /// Init containers to start, ascending index order.
    pub to_start: Vec<usize>,
    /// A regular init container failed and will not be restarted: the pod must be
    /// killed.
    pub kill_pod: bool,
    /// The init sequence reached its end (or a regular container already exists).
    pub initialized: bool,
}

/// Decides the init step. `regular_exists` is true when any regular container is being
/// created or is running (exited ones deliberately do not count).
pub fn decide_init(inits: &[InitView], regular_exists: bool) -> InitDecision {
    let mut d = InitDecision {
        initialized: regular_exists || inits.is_empty(),
        ..InitDecision::default()
    };
    if inits.is_empty() {
        return d;
    }
    let last = inits.len() - 1;
    let mut seen_later = regular_exists;
    for (i, view) in inits.iter().enumerate().rev() {
        match view.state {
            InitState::Absent => {
                if seen_later && view.sidecar {
                    d.to_start.push(i);
                }
                continue;
            }
            _ if seen_later && !view.sidecar => {
                // Finished regular init containers are never re-run.
                continue;
            }
            InitState::Creating => {}
            InitState::Running { started } => {
                if view.sidecar && started {
                    if i == last {
                        d.initialized = true;
                    } else if !seen_later {
                        d.to_start.push(i + 1);
                    }
                }
            }
            InitState::Exited { exit_code, restart } => {
                if view.sidecar {
                    d.to_start.push(i);
                } else if exit_code != 0 {
                    if !restart {
                        d.kill_pod = true;
                        d.to_start.clear();
                        return d;
                    }
                    d.to_start.push(i);
                } else if i == last {
                    d.initialized = true;
                } else {
                    d.to_start.push(i + 1);
                }
            }
        }
        seen_later = true;
    }
    if !seen_later {
        d.to_start.push(0);
    }
    d.to_start.sort_unstable();
    d.to_start.dedup();
    d
}
