//! §6.1: the phase algorithm on API statuses, case by case.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodSpec,
};
use podrun_lifecycle::status::pod_phase;
use podrun_testkit::pod::{container, pod};

fn spec(policy: &str, ric: bool, sc: bool, mains: usize) -> PodSpec {
    let mut b = pod("p").restart_policy(policy);
    if ric {
        b = b.init(container("ric"));
    }
    if sc {
        b = b.sidecar(container("sc"));
    }
    for i in 0..mains {
        b = b.container(container(&format!("m{i}")));
    }
    b.build().spec.unwrap()
}

#[derive(Clone, Copy)]
enum S {
    Running {
        started: bool,
    },
    Exited(i32),
    Waiting,
    /// Waiting after a terminated instance with this exit code.
    Backoff(i32),
}

fn st(name: &str, s: S) -> ContainerStatus {
    let term = |code| ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            ..Default::default()
        }),
        ..Default::default()
    };
    let waiting = ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some("X".into()),
            message: None,
        }),
        ..Default::default()
    };
    let (state, last, started) = match s {
        S::Running { started } => (
            ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            },
            None,
            started,
        ),
        S::Exited(c) => (term(c), None, false),
        S::Waiting => (waiting, None, false),
        S::Backoff(c) => (waiting, Some(term(c)), false),
    };
    ContainerStatus {
        name: name.into(),
        state: Some(state),
        last_state: last,
        started: Some(started),
        ..Default::default()
    }
}

/// (what, spec, init statuses, regular statuses, pod_is_terminal, expected phase)
type Case = (
    &'static str,
    PodSpec,
    Vec<ContainerStatus>,
    Vec<ContainerStatus>,
    bool,
    &'static str,
);

const RUN: S = S::Running { started: true };

#[test]
fn phase_cases() {
    let cases: Vec<Case> = vec![
        (
            "RIC running",
            spec("Always", true, false, 1),
            vec![st("ric", RUN)],
            vec![st("m0", S::Waiting)],
            false,
            "Pending",
        ),
        (
            "RIC failed under Never",
            spec("Never", true, false, 1),
            vec![st("ric", S::Exited(1))],
            vec![st("m0", S::Waiting)],
            false,
            "Failed",
        ),
        (
            "RIC failed under Never, in backoff view",
            spec("Never", true, false, 1),
            vec![st("ric", S::Backoff(1))],
            vec![st("m0", S::Waiting)],
            false,
            "Failed",
        ),
        (
            "RIC failed under OnFailure",
            spec("OnFailure", true, false, 1),
            vec![st("ric", S::Backoff(1))],
            vec![st("m0", S::Waiting)],
            false,
            "Pending",
        ),
        (
            "RIC missing status",
            spec("Always", true, false, 1),
            vec![],
            vec![st("m0", S::Waiting)],
            false,
            "Pending",
        ),
        (
            "SC running not started",
            spec("Always", false, true, 1),
            vec![st("sc", S::Running { started: false })],
            vec![st("m0", S::Waiting)],
            false,
            "Pending",
        ),
        (
            "main running",
            spec("Always", false, true, 1),
            vec![st("sc", RUN)],
            vec![st("m0", RUN)],
            false,
            "Running",
        ),
        (
            "SC restarting after init keeps Running",
            spec("Always", false, true, 1),
            vec![st("sc", S::Running { started: false })],
            vec![st("m0", RUN)],
            false,
            "Running",
        ),
        (
            "SC crash-looping after init keeps Running",
            spec("Always", false, true, 1),
            vec![st("sc", S::Backoff(1))],
            vec![st("m0", RUN)],
            false,
            "Running",
        ),
        (
            "Never: main done, SC running",
            spec("Never", false, true, 1),
            vec![st("sc", RUN)],
            vec![st("m0", S::Exited(0))],
            false,
            "Running",
        ),
        (
            "Never: main done, SC terminated non-zero",
            spec("Never", false, true, 1),
            vec![st("sc", S::Exited(137))],
            vec![st("m0", S::Exited(0))],
            false,
            "Succeeded",
        ),
        (
            "Never: main failed",
            spec("Never", false, true, 1),
            vec![st("sc", S::Exited(0))],
            vec![st("m0", S::Exited(1))],
            false,
            "Failed",
        ),
        (
            "Always: main exited 0, not terminal",
            spec("Always", false, false, 1),
            vec![],
            vec![st("m0", S::Exited(0))],
            false,
            "Running",
        ),
        (
            "Always: main exited 0, terminal",
            spec("Always", false, false, 1),
            vec![],
            vec![st("m0", S::Exited(0))],
            true,
            "Succeeded",
        ),
        (
            "Always: main exited 143, terminal",
            spec("Always", false, false, 1),
            vec![],
            vec![st("m0", S::Exited(143))],
            true,
            "Failed",
        ),
        (
            "OnFailure: main exited 1 will restart",
            spec("OnFailure", false, false, 1),
            vec![],
            vec![st("m0", S::Exited(1))],
            false,
            "Running",
        ),
        (
            "OnFailure: all exited 0",
            spec("OnFailure", false, false, 2),
            vec![],
            vec![st("m0", S::Exited(0)), st("m1", S::Exited(0))],
            false,
            "Succeeded",
        ),
        (
            "main in CrashLoopBackOff after running counts as stopped",
            spec("Always", false, false, 2),
            vec![],
            vec![st("m0", S::Backoff(1)), st("m1", RUN)],
            false,
            "Running",
        ),
        (
            "main waiting without previous run",
            spec("Always", false, false, 2),
            vec![],
            vec![st("m0", S::Waiting), st("m1", RUN)],
            false,
            "Pending",
        ),
        (
            "main status missing",
            spec("Always", false, false, 2),
            vec![],
            vec![st("m1", RUN)],
            false,
            "Pending",
        ),
        (
            "SC status missing",
            spec("Always", false, true, 1),
            vec![],
            vec![st("m0", S::Exited(0))],
            true,
            "Pending",
        ),
    ];
    for (what, spec, init, regular, terminal, want) in cases {
        assert_eq!(
            pod_phase(&spec, &init, &regular, terminal).as_str(),
            want,
            "{what}"
        );
    }
}

#[test]
fn phase_never_leaves_a_terminal_value() {
    use podrun_testkit::sim::{Behaviour, Sim};
    let p = pod("p")
        .restart_policy("Never")
        .sidecar(container("sc"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().exits(1.0, 0));
    assert!(sim.run_to_finish(30.0));
    assert_eq!(sim.phase(), "Succeeded");
    // A late delete does not change it.
    sim.delete_at(40.0, Some(0));
    sim.run_until(50.0);
    assert_eq!(sim.phase(), "Succeeded");
    let mut phases: Vec<String> = sim.watch().iter().map(|w| w.phase.clone()).collect();
    phases.dedup();
    assert_eq!(phases, vec!["Pending", "Running", "Succeeded"]);
}
