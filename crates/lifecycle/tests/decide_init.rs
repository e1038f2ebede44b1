//! §2.1 `decide_init` as a pure function, row by row of the pseudo-code.

use podrun_lifecycle::init::{InitState, InitView, decide_init};

fn ric(state: InitState) -> InitView {
    InitView {
        sidecar: false,
        state,
    }
}
fn sc(state: InitState) -> InitView {
    InitView {
        sidecar: true,
        state,
    }
}
const ABSENT: InitState = InitState::Absent;
const CREATING: InitState = InitState::Creating;
const STARTED: InitState = InitState::Running { started: true };
const NOT_STARTED: InitState = InitState::Running { started: false };
fn exited(exit_code: i32) -> InitState {
    InitState::Exited {
        exit_code,
        restart: true,
    }
}

/// The rows' `never` column: a failed regular init container is not restarted (pod
/// policy `Never` without a container policy).
fn apply_never(mut views: Vec<InitView>, never: bool) -> Vec<InitView> {
    for v in &mut views {
        if let InitState::Exited { restart, .. } = &mut v.state {
            *restart = !never;
        }
    }
    views
}

/// (what, inits, regular_exists, never, to_start, kill_pod, initialized)
type Row = (
    &'static str,
    Vec<InitView>,
    bool,
    bool,
    Vec<usize>,
    bool,
    bool,
);

#[test]
fn decide_init_rows() {
    // (what, inits, regular_exists, never, to_start, kill_pod, initialized)
    let rows: Vec<Row> = vec![
        (
            "no init containers",
            vec![],
            false,
            false,
            vec![],
            false,
            true,
        ),
        (
            "nothing seen: start 0",
            vec![ric(ABSENT), sc(ABSENT)],
            false,
            false,
            vec![0],
            false,
            false,
        ),
        (
            "RIC running: wait",
            vec![ric(NOT_STARTED), sc(ABSENT)],
            false,
            false,
            vec![],
            false,
            false,
        ),
        (
            "RIC done: start next",
            vec![ric(exited(0)), sc(ABSENT)],
            false,
            false,
            vec![1],
            false,
            false,
        ),
        (
            "SC not started: wait",
            vec![sc(NOT_STARTED), ric(ABSENT)],
            false,
            false,
            vec![],
            false,
            false,
        ),
        (
            "SC creating: wait",
            vec![sc(CREATING), ric(ABSENT)],
            false,
            false,
            vec![],
            false,
            false,
        ),
        (
            "SC started: start next",
            vec![sc(STARTED), ric(ABSENT)],
            false,
            false,
            vec![1],
            false,
            false,
        ),
        (
            "last SC started: initialized",
            vec![ric(exited(0)), sc(STARTED)],
            false,
            false,
            vec![],
            false,
            true,
        ),
        (
            "last RIC done: initialized",
            vec![sc(STARTED), ric(exited(0))],
            false,
            false,
            vec![],
            false,
            true,
        ),
        (
            "SC exited before later RIC: restart it, keep RIC",
            vec![sc(exited(1)), ric(NOT_STARTED)],
            false,
            false,
            vec![0],
            false,
            false,
        ),
        (
            "RIC failed, Never: kill pod",
            vec![sc(STARTED), ric(exited(1))],
            false,
            true,
            vec![],
            true,
            false,
        ),
        (
            "RIC failed, Always: restart it",
            vec![sc(STARTED), ric(exited(1))],
            false,
            false,
            vec![1],
            false,
            false,
        ),
        (
            "initialised: only sidecars restart",
            vec![ric(exited(0)), sc(exited(2)), sc(STARTED)],
            true,
            false,
            vec![1],
            false,
            true,
        ),
        (
            "initialised: vanished SC record restarts",
            vec![ric(ABSENT), sc(ABSENT)],
            true,
            false,
            vec![1],
            false,
            true,
        ),
        (
            "initialised: finished RIC never re-run",
            vec![ric(exited(1)), sc(STARTED)],
            true,
            true,
            vec![],
            false,
            true,
        ),
    ];
    for (what, inits, regular, never, to_start, kill, initialized) in rows {
        let d = decide_init(&apply_never(inits, never), regular);
        assert_eq!(
            (d.to_start, d.kill_pod, d.initialized),
            (to_start, kill, initialized),
            "{what}"
        );
    }
}
