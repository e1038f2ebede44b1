//! §4: probe scheduling, ready/started, conditions.

use k8s_openapi::api::core::v1::PodCondition;
use podrun_lifecycle::ProbeResult;
use podrun_testkit::pod::{container, pod, probe};
use podrun_testkit::sim::{Behaviour, ProbeScript, Sim};

fn condition(sim: &Sim, type_: &str) -> PodCondition {
    sim.machine()
        .status()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

fn summary(c: &PodCondition) -> (String, Option<String>, Option<String>) {
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[test]
fn first_probe_at_initial_delay_then_every_period() {
    let p = pod("p")
        .container(container("main").readiness_probe(probe().initial_delay(5).period(3)))
        .build();
    let mut sim = Sim::new(p);
    sim.run_until(15.0);
    assert_eq!(
        sim.times_of("probe readiness main#0"),
        vec![5.0, 8.0, 11.0, 14.0]
    );
}

#[test]
fn zero_initial_delay_probes_immediately_at_start() {
    let p = pod("p")
        .container(container("main").liveness_probe(probe().period(10)))
        .build();
    let mut sim = Sim::new(p);
    sim.run_until(1.0);
    assert_eq!(sim.times_of("probe liveness main#0"), vec![0.0]);
}

#[test]
fn probe_in_flight_is_not_reissued_and_runs_again_when_it_returns_late() {
    let p = pod("p")
        .container(container("main").readiness_probe(probe().period(2)))
        .build();
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new().readiness(ProbeScript::always(ProbeResult::Success).with_latency(5.0)),
    );
    sim.run_until(12.0);
    // Issued at 0 and answered at 5: the ticks at 2 and 4 collapse into one pending tick
    // that runs as soon as the result is in (5); the same happens at 10.
    assert_eq!(sim.times_of("probe readiness main#0"), vec![0.0, 5.0, 10.0]);
}

#[test]
fn readiness_and_liveness_wait_until_started() {
    let p = pod("p")
        .container(
            container("main")
                .startup_probe(probe().period(1).failure_threshold(5))
                .readiness_probe(probe().period(1))
                .liveness_probe(probe().period(1)),
        )
        .build();
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new().startup(ProbeScript::succeed_after(3)),
    );
    sim.run_until(6.0);
    assert_eq!(sim.expect_time("is-started main#0"), 3.0);
    assert_eq!(sim.expect_time("probe readiness main#0"), 3.0);
    assert_eq!(sim.expect_time("probe liveness main#0"), 3.0);
    assert_eq!(
        sim.count("probe startup"),
        4,
        "startup stops after its success"
    );
}

#[test]
fn readiness_success_threshold_and_failure_threshold_flip_ready() {
    let p = pod("p")
        .container(
            container("main")
                .readiness_probe(probe().period(1).success_threshold(2).failure_threshold(2)),
        )
        .build();
    // Success until 10, failure from 10.
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new().readiness(ProbeScript::fail_from(10.0)),
    );
    sim.run_until(0.5);
    assert_eq!(
        sim.row().ready,
        "0/1",
        "one success is below successThreshold 2"
    );
    sim.run_until(1.0);
    assert_eq!(sim.row().ready, "1/1");
    sim.run_until(10.5);
    assert_eq!(
        sim.row().ready,
        "1/1",
        "one failure is below failureThreshold 2"
    );
    sim.run_until(11.0);
    assert_eq!(sim.row().ready, "0/1");
    assert_eq!(sim.row().status, "Running");
    assert_eq!(
        summary(&condition(&sim, "Ready")),
        (
            "False".into(),
            Some("ContainersNotReady".into()),
            Some("containers with unready status: [main]".into())
        )
    );
}

#[test]
fn liveness_failure_kills_and_restarts_the_container() {
    let p = pod("p")
        .container(container("main").liveness_probe(probe().period(5).failure_threshold(3)))
        .build();
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new().liveness(ProbeScript::fail_from(20.0)),
    );
    sim.run_until(40.0);
    // Failures at 20, 25, 30 → kill at 30 with TGPS, exits 143, restarted at once.
    assert_eq!(sim.expect_time("TERM main#0"), 30.0);
    assert_eq!(sim.expect_time("start main#1"), 30.0);
    assert_eq!(sim.count("probe liveness main#0"), 7);
}

#[test]
fn liveness_failure_under_never_kills_without_restart() {
    let p = pod("p")
        .restart_policy("Never")
        .container(container("main").liveness_probe(probe().period(1).failure_threshold(1)))
        .build();
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new().liveness(ProbeScript::always(ProbeResult::Failure)),
    );
    assert!(sim.run_to_finish(60.0));
    assert_eq!(sim.time_of("start main#1"), None);
    assert_eq!(sim.phase(), "Failed");
}

#[test]
fn sidecar_liveness_failure_restarts_only_the_sidecar() {
    let p = pod("p")
        .sidecar(container("sc").liveness_probe(probe().period(1).failure_threshold(2)))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("sc", Behaviour::new().liveness(ProbeScript::fail_from(5.0)));
    sim.run_until(8.0);
    assert_eq!(sim.expect_time("TERM sc#0"), 6.0);
    assert_eq!(sim.expect_time("start sc#1"), 6.0);
    assert_eq!(sim.count("TERM main"), 0);
    assert_eq!(sim.phase(), "Running");
}

#[test]
fn startup_probe_failure_kills_regular_container_with_probe_grace() {
    let p = pod("p")
        .container(
            container("main")
                .startup_probe(probe().period(1).failure_threshold(2).termination_grace(3)),
        )
        .build();
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new()
            .startup(ProbeScript::always(ProbeResult::Failure))
            .ignores_term(),
    );
    sim.run_until(5.0);
    assert_eq!(sim.expect_time("TERM main#0"), 1.0);
    assert_eq!(sim.expect_time("KILL main#0"), 4.0);
}

#[test]
fn probes_restart_for_each_new_instance() {
    let p = pod("p")
        .container(container("main").readiness_probe(probe().period(10)))
        .build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().exits(3.0, 1));
    sim.run_until(4.0);
    assert_eq!(sim.times_of("probe readiness main#0"), vec![0.0]);
    assert_eq!(sim.times_of("probe readiness main#1"), vec![3.0]);
}

#[test]
fn liveness_stops_during_termination_but_readiness_continues() {
    let p = pod("p")
        .container(
            container("main")
                .readiness_probe(probe().period(1))
                .liveness_probe(probe().period(1)),
        )
        .build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().on_term(5.0, 0));
    sim.delete_at(2.5, None);
    sim.run_until(7.0);
    assert_eq!(sim.times_of("probe liveness main#0"), vec![0.0, 1.0, 2.0]);
    assert!(sim.times_of("probe readiness main#0").contains(&5.0));
}

#[test]
fn conditions_follow_initialisation_and_readiness() {
    let p = pod("p")
        .init(container("i1"))
        .sidecar(container("sc").readiness_probe(probe().period(1).initial_delay(4)))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("i1", Behaviour::new().exits(2.0, 0));
    sim.run_until(1.0);
    assert_eq!(summary(&condition(&sim, "PodScheduled")).0, "True");
    assert_eq!(
        summary(&condition(&sim, "PodReadyToStartContainers")).0,
        "True"
    );
    assert_eq!(
        summary(&condition(&sim, "Initialized")),
        (
            "False".into(),
            Some("ContainersNotInitialized".into()),
            Some("containers with incomplete status: [i1 sc]".into())
        )
    );
    assert_eq!(
        summary(&condition(&sim, "ContainersReady")),
        (
            "False".into(),
            Some("ContainersNotReady".into()),
            Some("containers with unready status: [sc main]".into())
        )
    );
    sim.run_until(3.0);
    assert_eq!(
        summary(&condition(&sim, "Initialized")),
        ("True".into(), None, None)
    );
    assert_eq!(
        summary(&condition(&sim, "Ready")).2.as_deref(),
        Some("containers with unready status: [sc]")
    );
    sim.run_until(6.0);
    assert_eq!(
        summary(&condition(&sim, "Ready")),
        ("True".into(), None, None)
    );
    assert_eq!(
        summary(&condition(&sim, "ContainersReady")),
        ("True".into(), None, None)
    );
    let ready = condition(&sim, "Ready");
    assert_eq!(
        ready
            .last_transition_time
            .unwrap()
            .0
            .duration_since(sim.machine().status().start_time.unwrap().0)
            .as_secs(),
        6,
        "transition time is when it became True"
    );
}

#[test]
fn conditions_of_succeeded_and_failed_pods() {
    let p = pod("p")
        .restart_policy("Never")
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().exits(1.0, 0));
    assert!(sim.run_to_finish(10.0));
    assert_eq!(
        summary(&condition(&sim, "Initialized")),
        ("True".into(), Some("PodCompleted".into()), None)
    );
    assert_eq!(
        summary(&condition(&sim, "Ready")),
        ("False".into(), Some("PodCompleted".into()), None)
    );
    assert_eq!(
        summary(&condition(&sim, "PodReadyToStartContainers")).0,
        "False"
    );

    let p = pod("p")
        .restart_policy("Never")
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().exits(1.0, 1));
    assert!(sim.run_to_finish(10.0));
    assert_eq!(
        summary(&condition(&sim, "ContainersReady")),
        ("False".into(), Some("PodFailed".into()), None)
    );
}

#[test]
fn sidecar_restart_after_initialisation_keeps_initialized_true() {
    let p = pod("p")
        .sidecar(container("sc").startup_probe(probe().period(1).initial_delay(2)))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script(
        "sc",
        Behaviour::new().runs(vec![
            podrun_testkit::sim::Run::Exit {
                after: 10.0,
                code: 1,
            },
            podrun_testkit::sim::Run::Forever,
        ]),
    );
    sim.run_until(11.0);
    assert_eq!(sim.expect_time("start sc#1"), 10.0);
    assert_eq!(summary(&condition(&sim, "Initialized")).0, "True");
    let st = sim
        .machine()
        .status()
        .init_container_statuses
        .unwrap()
        .remove(0);
    assert_eq!((st.started, st.ready), (Some(false), false));
}

#[test]
fn container_status_fields() {
    let p = pod("p")
        .init(container("i1"))
        .container(container("main").image("nginx:1.27"))
        .build();
    let mut sim = Sim::new(p).script("i1", Behaviour::new().exits(1.0, 0));
    sim.run_until(0.5);
    let st = sim.machine().status();
    let main = &st.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        main.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    sim.run_until(2.0);
    let st = sim.machine().status();
    let i1 = &st.init_container_statuses.as_ref().unwrap()[0];
    let t = i1.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert!(i1.ready, "a completed regular init container is ready");
    assert_eq!(i1.container_id.as_deref(), Some("podrun://uid-p-i1-0"));
    let main = &st.container_statuses.as_ref().unwrap()[0];
    assert_eq!(main.image, "nginx:1.27");
    assert_eq!(main.image_id, "");
    assert_eq!(main.name, "main");
    assert_eq!(
        (main.started, main.ready, main.restart_count),
        (Some(true), true, 0)
    );
    assert!(main.state.as_ref().unwrap().running.is_some());
    assert!(st.start_time.is_some());

    let p = pod("q").container(container("main")).build();
    let sim = Sim::new(p);
    let st = sim.machine().status();
    let main = &st.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        main.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("ContainerCreating"),
        "no init containers: ContainerCreating"
    );
}

#[test]
fn oom_killed_reason() {
    let p = pod("p")
        .restart_policy("Never")
        .container(container("main"))
        .build();
    let mut m = podrun_lifecycle::PodMachine::new(p, podrun_testkit::pod::epoch());
    let t = podrun_testkit::pod::epoch();
    let id = podrun_lifecycle::ContainerId::Regular(0);
    assert!(matches!(
        m.poll_action(),
        Some(podrun_lifecycle::Action::StartContainer { .. })
    ));
    m.handle_container_started(id, 0, t);
    m.handle_container_exited(
        id,
        0,
        podrun_lifecycle::ExitStatus {
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
            message: Some("oom".into()),
        },
        t,
    );
    let st = m.status().container_statuses.unwrap().remove(0);
    let term = st.state.unwrap().terminated.unwrap();
    assert_eq!(term.reason.as_deref(), Some("OOMKilled"));
    assert_eq!(term.message.as_deref(), Some("oom"));
    assert!(m.is_finished());
}
