//! Addendum §4 (1.35–1.37 changes at default gates) and §5 (upstream's sidecar fixes),
//! each on the simulated clock and named for the upstream change.

use k8s_openapi::api::core::v1::ContainerStatus;
use k8s_openapi::jiff::SignedDuration;
use podrun_lifecycle::ProbeResult;
use podrun_lifecycle::backoff::Backoff;
use podrun_testkit::pod::{container, pod, probe};
use podrun_testkit::sim::{Behaviour, ProbeScript, Run, Sim};

fn init(sim: &Sim, i: usize) -> ContainerStatus {
    sim.machine().status().init_container_statuses.unwrap()[i].clone()
}

fn regular(sim: &Sim, i: usize) -> ContainerStatus {
    sim.machine().status().container_statuses.unwrap()[i].clone()
}

#[test]
fn r133066_backoff_restart_requeued_exactly_at_expiry() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().exits(3.5, 1));
    sim.run_until(41.0);
    // Immediate first restart, then exactly at each window's end, not on a 10s retry.
    assert_eq!(sim.expect_time("start main#1"), 3.5);
    assert_eq!(sim.expect_time("exited main#1 code=1"), 7.0);
    assert_eq!(sim.expect_time("start main#2"), 17.0);
    assert_eq!(sim.expect_time("exited main#2 code=1"), 20.5);
    assert_eq!(sim.expect_time("start main#3"), 40.5);
}

#[test]
fn kep4603_max_container_restart_period_caps_the_backoff() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::with_backoff(p, Backoff::with_max(SignedDuration::from_secs(4)))
        .script("main", Behaviour::new().crashes(1));
    sim.run_until(20.0);
    let starts: Vec<f64> = (0..5)
        .map(|n| sim.expect_time(&format!("start main#{n}")))
        .collect();
    assert_eq!(starts, vec![0.0, 0.0, 4.0, 8.0, 12.0]);
    let (_, message) = {
        let w = regular(&sim, 0).state.unwrap().waiting.unwrap();
        (w.reason, w.message.unwrap())
    };
    assert!(message.starts_with("back-off 4s restarting failed container=main"));
}

#[test]
fn kep4603_a_short_max_also_shortens_the_first_delay() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::with_backoff(p, Backoff::with_max(SignedDuration::from_secs(2)))
        .script("main", Behaviour::new().crashes(1));
    sim.run_until(7.0);
    assert_eq!(sim.expect_time("start main#2"), 2.0);
    assert_eq!(sim.expect_time("start main#3"), 4.0);
}

#[test]
fn observed_generation_on_status_and_kubelet_conditions() {
    let mut p = pod("p")
        .container(container("main").restart_policy("Never").rule(
            "RestartAllContainers",
            "In",
            &[42],
        ))
        .build();
    p.metadata.generation = Some(3);
    let mut sim = Sim::new(p);
    sim.run_until(1.0);
    let st = sim.machine().status();
    assert_eq!(st.observed_generation, Some(3));
    for c in st.conditions.unwrap() {
        let want = (c.type_ != "AllContainersRestarting").then_some(3);
        assert_eq!(c.observed_generation, want, "{}", c.type_);
    }
}

#[test]
fn pod_ready_to_start_containers_true_while_the_sandbox_exists() {
    let p = pod("p")
        .restart_policy("Never")
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().exits(2.0, 0));
    let cond = |sim: &Sim| {
        sim.machine()
            .status()
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "PodReadyToStartContainers")
            .unwrap()
            .status
    };
    assert_eq!(cond(&sim), "True");
    assert!(sim.run_to_finish(10.0));
    assert_eq!(cond(&sim), "False");
}

#[test]
fn r125880_sidecars_with_failing_startup_probes_get_sigterm_on_delete() {
    // Several sidecars whose startup probe never passes: only the first was created
    // (the next waits for it to start). Deleting the pod sends it SIGTERM at once and
    // nobody waits for the sidecars that never existed.
    let failing = || container("sc").startup_probe(probe().period(1).failure_threshold(1000));
    let p = pod("p")
        .grace(30)
        .sidecar(failing())
        .sidecar(container("sc2").startup_probe(probe().period(1).failure_threshold(1000)))
        .sidecar(container("sc3").startup_probe(probe().period(1).failure_threshold(1000)))
        .container(container("main"))
        .build();
    let never = || Behaviour::new().startup(ProbeScript::always(ProbeResult::Failure));
    let mut sim = Sim::new(p)
        .script("sc", never())
        .script("sc2", never())
        .script("sc3", never());
    sim.delete_at(10.0, None);
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("TERM sc#0"), 10.0);
    assert_eq!(sim.expect_time("exited sc#0 code=143"), 10.0);
    assert_eq!(sim.count("start sc2#"), 0);
    assert_eq!(sim.count("KILL"), 0);
    assert!(sim.machine().is_finished());
}

#[test]
fn r122902_sidecar_status_goes_from_terminated_back_to_running_in_never_pod() {
    let p = pod("p")
        .restart_policy("Never")
        .sidecar(container("sc").readiness_probe(probe().period(1)))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script(
        "sc",
        Behaviour::new().runs(vec![
            Run::Exit {
                after: 5.0,
                code: 1,
            },
            Run::Forever,
        ]),
    );
    sim.run_until(8.0);
    assert_eq!(sim.expect_time("start sc#1"), 5.0);
    let st = init(&sim, 0);
    assert!(st.state.unwrap().running.is_some(), "running again");
    assert_eq!(st.restart_count, 1);
    assert_eq!(
        st.last_state.unwrap().terminated.unwrap().exit_code,
        1,
        "lastState keeps the crash"
    );
    assert!(st.ready, "readiness resumes on the new instance");
    assert_eq!(sim.phase(), "Running");
}

#[test]
fn r132826_sidecar_startup_probe_runs_on_the_new_instance_in_never_pod() {
    // The sidecar crashes before its startup probe passed; the new instance gets its
    // own startup probe and initialisation completes.
    let p = pod("p")
        .restart_policy("Never")
        .sidecar(container("sc").startup_probe(probe().period(1).failure_threshold(30)))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p)
        .script(
            "sc",
            Behaviour::new()
                .runs(vec![
                    Run::Exit {
                        after: 2.5,
                        code: 1,
                    },
                    Run::Forever,
                ])
                .startup(ProbeScript::new(|c| {
                    if c.restart_count == 0 {
                        ProbeResult::Failure
                    } else {
                        ProbeResult::Success
                    }
                })),
        )
        .script("main", Behaviour::new());
    sim.run_until(20.0);
    assert_eq!(sim.expect_time("start sc#1"), 2.5);
    assert!(sim.time_of("startup sc#1 success").is_some());
    assert!(sim.expect_time("start main#0") >= 2.5);
    assert_eq!(sim.phase(), "Running");
}

#[test]
fn r141342_replaced_container_does_not_inherit_started_or_ready() {
    // A sidecar whose liveness probe kills it: the new instance is not started until its
    // own startup probe passes, and not ready before its readiness probe does.
    let p = pod("p")
        .grace(1)
        .sidecar(
            container("sc")
                .startup_probe(probe().period(5))
                .readiness_probe(probe().period(5))
                .liveness_probe(probe().period(1).failure_threshold(1)),
        )
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script(
        "sc",
        Behaviour::new()
            .liveness(ProbeScript::new(|c| {
                if c.restart_count == 0 && c.at >= 10.0 {
                    ProbeResult::Failure
                } else {
                    ProbeResult::Success
                }
            }))
            .startup(ProbeScript::new(|c| {
                if c.restart_count == 0 || c.attempt >= 1 {
                    ProbeResult::Success
                } else {
                    ProbeResult::Failure
                }
            })),
    );
    sim.run_until(12.0);
    assert_eq!(sim.expect_time("start sc#1"), 10.0);
    let st = init(&sim, 0);
    assert_eq!(st.restart_count, 1);
    assert_eq!((st.started, st.ready), (Some(false), false));
    sim.run_until(20.0);
    // Its own startup probe: fails at 10, passes at the next period.
    assert_eq!(sim.expect_time("is-started sc#1"), 15.0);
    assert!(init(&sim, 0).ready);
}

#[test]
fn kep5532_initialized_is_never_taken_back_once_true() {
    // The regular container never starts (its config is broken) and the sidecar crashes:
    // before 1.35 Initialized went back to False; the kubelet now keeps the old True.
    let p = pod("p")
        .sidecar(container("sc"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p)
        .script(
            "sc",
            Behaviour::new().runs(vec![
                Run::Exit {
                    after: 5.0,
                    code: 1,
                },
                Run::Exit {
                    after: 0.0,
                    code: 1,
                },
            ]),
        )
        .script(
            "main",
            Behaviour::new().start_fails(100, "CreateContainerConfigError"),
        );
    let initialized = |sim: &Sim| {
        sim.machine()
            .status()
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Initialized")
            .unwrap()
            .status
    };
    sim.run_until(1.0);
    assert_eq!(initialized(&sim), "True");
    sim.run_until(6.0);
    assert_eq!(sim.expect_time("exited sc#1 code=1"), 5.0);
    // The sidecar waits in CrashLoopBackOff, not started; no regular container ran.
    assert_eq!(init(&sim, 0).started, Some(false));
    assert_eq!(initialized(&sim), "True");
}

#[test]
fn kep5067_graceful_deletion_bumps_the_generation_the_kubelet_reports() {
    let mut p = pod("p").container(container("main")).build();
    p.metadata.generation = Some(1);
    let mut sim = Sim::new(p);
    sim.delete_at(2.0, Some(30));
    sim.run_until(1.0);
    assert_eq!(sim.machine().status().observed_generation, Some(1));
    sim.run_until(2.0);
    let st = sim.machine().status();
    assert_eq!(st.observed_generation, Some(2));
    assert!(
        st.conditions
            .unwrap()
            .iter()
            .all(|c| c.observed_generation == Some(2))
    );
    // A second deletion request does not bump it again.
    sim.delete_at(3.0, Some(1));
    sim.run_until(3.0);
    assert_eq!(sim.machine().status().observed_generation, Some(2));
}
