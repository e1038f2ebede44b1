//! §2.1–§2.4: the init sequence, sidecar "started", postStart, start failures.

use podrun_lifecycle::ProbeResult;
use podrun_testkit::pod::{container, pod, probe};
use podrun_testkit::sim::{Behaviour, HookScript, ProbeScript, Sim};

#[test]
fn regular_init_containers_run_one_after_another_before_main() {
    let p = pod("p")
        .init(container("i1"))
        .init(container("i2"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p)
        .script("i1", Behaviour::new().exits(3.0, 0))
        .script("i2", Behaviour::new().exits(2.0, 0));
    sim.run_until(10.0);
    assert_eq!(sim.expect_time("start i1#0"), 0.0);
    assert_eq!(sim.expect_time("start i2#0"), 3.0);
    assert_eq!(sim.expect_time("start main#0"), 5.0);
    assert_eq!(sim.phase(), "Running");
    sim.check_invariants();
}

#[test]
fn sidecar_without_startup_probe_unblocks_next_init_container() {
    let p = pod("p")
        .sidecar(container("sc"))
        .init(container("i1"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("i1", Behaviour::new().exits(2.0, 0));
    sim.run_until(5.0);
    assert_eq!(sim.expect_time("start sc#0"), 0.0);
    assert_eq!(sim.expect_time("start i1#0"), 0.0);
    assert_eq!(sim.expect_time("start main#0"), 2.0);
    // The sidecar keeps running alongside.
    assert_eq!(sim.count("TERM"), 0);
    sim.check_invariants();
}

#[test]
fn sidecar_startup_probe_gates_next_init_container() {
    let p = pod("p")
        .sidecar(container("sc").startup_probe(probe().period(1)))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script(
        "sc",
        Behaviour::new().startup(ProbeScript::succeed_after(2)),
    );
    sim.run_until(5.0);
    // Probes at 0, 1, 2: the third succeeds.
    assert_eq!(sim.times_of("probe startup sc#0"), vec![0.0, 1.0, 2.0]);
    assert_eq!(sim.expect_time("is-started sc#0"), 2.0);
    assert_eq!(sim.expect_time("start main#0"), 2.0);
    // The startup probe stops after its success.
    assert_eq!(sim.count("probe startup"), 3);
    sim.check_invariants();
}

#[test]
fn sidecar_readiness_does_not_gate_the_init_sequence() {
    let p = pod("p")
        .sidecar(container("sc").readiness_probe(probe().period(5)))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script(
        "sc",
        Behaviour::new().readiness(ProbeScript::always(ProbeResult::Failure)),
    );
    sim.run_until(3.0);
    assert_eq!(sim.expect_time("start main#0"), 0.0);
    assert_eq!(sim.row().ready, "1/2");
    sim.check_invariants();
}

#[test]
fn sidecar_post_start_blocks_next_container_until_it_returns() {
    let p = pod("p")
        .sidecar(container("sc").post_start())
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("sc", Behaviour::new().post_start(HookScript::Ok(4.0)));
    sim.run_until(6.0);
    assert_eq!(sim.expect_time("run postStart sc#0"), 0.0);
    assert_eq!(sim.expect_time("postStart sc#0 ok"), 4.0);
    assert_eq!(sim.expect_time("start main#0"), 4.0);
    sim.check_invariants();
}

#[test]
fn regular_containers_start_in_order_each_after_previous_post_start() {
    let p = pod("p")
        .container(container("a").post_start())
        .container(container("b").post_start())
        .container(container("c"))
        .build();
    let mut sim = Sim::new(p)
        .script("a", Behaviour::new().post_start(HookScript::Ok(2.0)))
        .script("b", Behaviour::new().post_start(HookScript::Ok(3.0)));
    sim.run_until(10.0);
    assert_eq!(sim.expect_time("start a#0"), 0.0);
    assert_eq!(sim.expect_time("start b#0"), 2.0);
    assert_eq!(sim.expect_time("start c#0"), 5.0);
}

#[test]
fn failed_post_start_kills_and_restarts_the_container() {
    let p = pod("p")
        .sidecar(container("sc").post_start())
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script(
        "sc",
        Behaviour::new().post_start(HookScript::Fail(1.0, "hook exited 1".into())),
    );
    sim.run_until(1.0);
    assert_eq!(sim.expect_time("TERM sc#0"), 1.0);
    // Killed instance exits, shows PostStartHookError while it waits, restarts at once
    // (first restart is immediate).
    assert_eq!(sim.expect_time("start sc#1"), 1.0);
    sim.run_until(2.0);
    // Second failure: now in backoff, the reason is CrashLoopBackOff.
    let st = sim.machine().status();
    let sc = &st.init_container_statuses.unwrap()[0];
    assert_eq!(sc.restart_count, 1);
    let waiting = sc.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        sim.time_of("start main#0"),
        None,
        "main must wait for the sidecar"
    );
}

#[test]
fn failed_post_start_shows_post_start_hook_error_while_being_killed_out() {
    let p = pod("p")
        .restart_policy("Never")
        .sidecar(container("sc"))
        .container(container("main").post_start())
        .build();
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new()
            .post_start(HookScript::Fail(1.0, "boom".into()))
            .on_term(3.0, 1),
    );
    sim.run_until(2.0);
    // Still running, being stopped.
    assert_eq!(sim.expect_time("TERM main#0"), 1.0);
    sim.run_to_finish(60.0);
    // Never: not restarted; pod fails.
    assert_eq!(sim.time_of("start main#1"), None);
    assert_eq!(sim.phase(), "Failed");
}

#[test]
fn start_failure_shows_reason_and_is_retried_with_backoff() {
    let p = pod("p")
        .init(container("i1"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script(
        "i1",
        Behaviour::new()
            .start_fails(3, "CreateContainerConfigError")
            .exits(1.0, 0),
    );
    sim.run_until(1.0);
    assert_eq!(sim.row().status, "Init:CreateContainerConfigError");
    sim.run_until(60.0);
    // Retried immediately, then after 10s, then 20s.
    assert_eq!(sim.times_of("start i1#0"), vec![0.0, 0.0, 10.0, 30.0]);
    assert_eq!(sim.expect_time("start main#0"), 31.0);
    assert_eq!(sim.phase(), "Running");
}

#[test]
fn bad_image_init_container_keeps_pod_pending_even_under_never() {
    let p = pod("p")
        .restart_policy("Never")
        .init(container("i1").image("nope:missing"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("i1", Behaviour::new().start_fails(1000, "ErrImagePull"));
    sim.run_until(600.0);
    assert_eq!(sim.phase(), "Pending");
    let row = sim.row();
    assert_eq!(
        (
            row.ready.as_str(),
            row.status.as_str(),
            row.restarts.as_str()
        ),
        ("0/1", "Init:ErrImagePull", "0")
    );
}

#[test]
fn ric_failure_under_never_fails_pod_and_stops_sidecars() {
    let p = pod("p")
        .restart_policy("Never")
        .sidecar(container("sc"))
        .init(container("i1"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p)
        .script("i1", Behaviour::new().exits(2.0, 1))
        .script("sc", Behaviour::new().on_term(1.0, 0));
    assert!(sim.run_to_finish(60.0));
    assert_eq!(sim.expect_time("terminating InitFailed"), 2.0);
    assert_eq!(sim.expect_time("TERM sc#0"), 2.0);
    assert_eq!(sim.time_of("start main#0"), None);
    assert_eq!(sim.time_of("start i1#1"), None);
    assert_eq!(sim.phase(), "Failed");
    let row = sim.row();
    assert_eq!(
        (row.ready.as_str(), row.status.as_str()),
        ("0/2", "Init:Error")
    );
    sim.check_invariants();
}

#[test]
fn ric_failure_under_on_failure_restarts_it_with_backoff_and_keeps_pending() {
    let p = pod("p")
        .restart_policy("OnFailure")
        .sidecar(container("sc"))
        .init(container("i1"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("i1", Behaviour::new().crashes(1));
    sim.run_until(35.0);
    assert_eq!(sim.times_of("start i1#0"), vec![0.0]);
    assert_eq!(sim.expect_time("start i1#1"), 0.0);
    assert_eq!(sim.expect_time("start i1#2"), 10.0);
    assert_eq!(sim.expect_time("start i1#3"), 30.0);
    assert_eq!(sim.phase(), "Pending");
    assert_eq!(sim.count("TERM sc"), 0, "earlier sidecars keep running");
    assert_eq!(sim.row().status, "Init:CrashLoopBackOff");
}

#[test]
fn sidecar_crashing_before_started_is_restarted_and_blocks_later_containers() {
    let p = pod("p")
        .restart_policy("Never")
        .sidecar(container("sc").startup_probe(probe().period(1).initial_delay(5)))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("sc", Behaviour::new().exits(2.0, 1));
    sim.run_until(20.0);
    // Restarted under pod policy Never: sidecars always restart.
    assert_eq!(sim.expect_time("start sc#1"), 2.0);
    assert_eq!(sim.expect_time("start sc#2"), 14.0);
    assert_eq!(sim.time_of("start main#0"), None);
    assert_eq!(sim.phase(), "Pending");
}

#[test]
fn sidecar_crash_after_init_restarts_in_parallel_and_pod_stays_running() {
    let p = pod("p")
        .sidecar(container("sc"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script(
        "sc",
        Behaviour::new().runs(vec![
            podrun_testkit::sim::Run::Exit {
                after: 5.0,
                code: 2,
            },
            podrun_testkit::sim::Run::Forever,
        ]),
    );
    sim.run_until(10.0);
    assert_eq!(sim.expect_time("start sc#1"), 5.0);
    assert_eq!(sim.count("TERM main"), 0);
    assert_eq!(sim.phase(), "Running");
    assert_eq!(sim.row().restarts, "1 (5s ago)");
    let st = sim.machine().status();
    let init = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Initialized")
        .unwrap();
    assert_eq!(init.status, "True");
}

#[test]
fn sidecar_startup_probe_failure_kills_and_restarts_it() {
    let p = pod("p")
        .sidecar(
            container("sc")
                .pre_stop()
                .startup_probe(probe().period(1).failure_threshold(3).termination_grace(4)),
        )
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script(
        "sc",
        Behaviour::new()
            .startup(ProbeScript::always(ProbeResult::Failure))
            .pre_stop(HookScript::Ok(1.0))
            .ignores_term(),
    );
    sim.run_until(10.0);
    // Failures at 0, 1, 2 → kill at 2 with preStop, probe grace 4: 1s preStop, then
    // SIGTERM at 3, SIGKILL 3s later.
    assert_eq!(sim.expect_time("run preStop sc#0"), 2.0);
    assert_eq!(sim.expect_time("TERM sc#0"), 3.0);
    assert_eq!(sim.expect_time("KILL sc#0"), 6.0);
    assert_eq!(sim.expect_time("start sc#1"), 6.0);
    assert_eq!(sim.time_of("start main#0"), None);
}
