//! §5: termination triggers, the per-container kill procedure, ordering, and every
//! worked timeline of §5.4.

use podrun_testkit::pod::{PodBuilder, container, pod, probe};
use podrun_testkit::sim::{Behaviour, HookScript, Sim};

/// Sidecars s1, s2, s3 and one main container.
fn three_sidecars(policy: &str, pre_stop: bool) -> PodBuilder {
    let sc = |n: &str| {
        let c = container(n);
        if pre_stop { c.pre_stop() } else { c }
    };
    pod("p")
        .restart_policy(policy)
        .sidecar(sc("s1"))
        .sidecar(sc("s2"))
        .sidecar(sc("s3"))
        .container(container("main"))
}

#[test]
fn job_pod_sidecars_stop_in_reverse_order_after_main_exits() {
    // §5.4 timeline 1.
    let mut sim = Sim::new(three_sidecars("Never", false).build())
        .script("main", Behaviour::new().exits(5.0, 0))
        .script("s1", Behaviour::new().on_term(5.0, 0))
        .script("s2", Behaviour::new().on_term(5.0, 0))
        .script("s3", Behaviour::new().on_term(5.0, 0));
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("terminating Completed"), 5.0);
    assert_eq!(sim.expect_time("TERM s3#0"), 5.0);
    assert_eq!(sim.expect_time("TERM s2#0"), 10.0);
    assert_eq!(sim.expect_time("TERM s1#0"), 15.0);
    assert_eq!(sim.expect_time("exited s1#0 code=0"), 20.0);
    assert_eq!(sim.count("KILL"), 0);
    assert_eq!(sim.phase(), "Succeeded");
    let st = sim.machine().status();
    for sc in st.init_container_statuses.unwrap() {
        let t = sc.state.unwrap().terminated.unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    }
    sim.check_invariants();
}

#[test]
fn sidecars_killed_together_when_their_pre_stop_hooks_never_finish() {
    // §5.4 timeline 2, as upstream's node e2e of that name: the kubelet stops waiting
    // for each hook at the grace period, but the hook keeps running until its container
    // is killed at grace + the 2 s floor; the three hooks end within 1 s of each other.
    let b = |s: Sim, n: &str| {
        s.script(
            n,
            Behaviour::new().pre_stop(HookScript::Hang).ignores_term(),
        )
    };
    let sim = Sim::new(three_sidecars("Never", true).build())
        .script("main", Behaviour::new().exits(5.0, 0));
    let sim = b(sim, "s1");
    let sim = b(sim, "s2");
    let mut sim = b(sim, "s3");
    assert!(sim.run_to_finish(100.0));
    for s in ["s1", "s2", "s3"] {
        assert_eq!(sim.expect_time(&format!("run preStop {s}#0")), 5.0);
        assert_eq!(sim.expect_time(&format!("TERM {s}#0")), 35.0);
        assert_eq!(
            sim.expect_time(&format!("cancel preStop {s}#0")),
            37.0,
            "the hook lives until its container is killed"
        );
        assert_eq!(sim.expect_time(&format!("KILL {s}#0")), 37.0);
        assert_eq!(sim.expect_time(&format!("exited {s}#0 code=137")), 37.0);
    }
    assert_eq!(
        sim.phase(),
        "Succeeded",
        "sidecar exit codes never fail the pod"
    );
    let st = sim.machine().status();
    let t = st.init_container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(t.reason.as_deref(), Some("Error"));
}

#[test]
fn short_pre_stops_run_together_and_sigterms_still_go_in_reverse_order() {
    // §5.4 timeline 3.
    let mut sim = Sim::new(three_sidecars("Never", true).build())
        .script("main", Behaviour::new().exits(5.0, 0));
    for s in ["s1", "s2", "s3"] {
        sim = sim.script(
            s,
            Behaviour::new()
                .pre_stop(HookScript::Ok(1.0))
                .on_term(1.0, 0),
        );
    }
    assert!(sim.run_to_finish(100.0));
    for s in ["s1", "s2", "s3"] {
        assert_eq!(sim.expect_time(&format!("run preStop {s}#0")), 5.0);
    }
    let (t3, t2, t1) = (
        sim.expect_time("TERM s3#0"),
        sim.expect_time("TERM s2#0"),
        sim.expect_time("TERM s1#0"),
    );
    assert_eq!((t3, t2, t1), (6.0, 7.0, 8.0));
    assert_eq!(sim.count("KILL"), 0);
    assert_eq!(sim.phase(), "Succeeded");
}

#[test]
fn grace_expiry_sends_sigkill_with_2s_floor() {
    // §5.4 timeline 4: deletion with grace 5.
    let mut sim = Sim::new(three_sidecars("Always", false).build())
        .script("main", Behaviour::new().on_term(20.0, 0))
        .script("s1", Behaviour::new().on_term(20.0, 0))
        .script("s2", Behaviour::new().on_term(1.0, 0))
        .script("s3", Behaviour::new().on_term(20.0, 0));
    sim.delete_at(10.0, Some(5));
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("TERM main#0"), 10.0);
    assert_eq!(sim.expect_time("KILL main#0"), 15.0);
    assert_eq!(sim.expect_time("exited main#0 code=137"), 15.0);
    for s in ["s1", "s2", "s3"] {
        assert_eq!(sim.expect_time(&format!("TERM {s}#0")), 15.0);
    }
    assert_eq!(sim.expect_time("exited s2#0 code=0"), 16.0);
    assert_eq!(sim.expect_time("KILL s1#0"), 17.0);
    assert_eq!(sim.expect_time("KILL s3#0"), 17.0);
    assert_eq!(sim.time_of("KILL s2#0"), None);
    assert_eq!(sim.phase(), "Failed", "main exited 137");
    sim.check_invariants();
}

#[test]
fn sidecar_waits_for_later_sidecar_until_grace_then_gets_the_floor() {
    // §5.4 timeline 5.
    let mut sim = Sim::new(three_sidecars("Always", false).build())
        .script("main", Behaviour::new().on_term(1.0, 0))
        .script("s1", Behaviour::new().on_term(1.0, 0))
        .script("s2", Behaviour::new().on_term(20.0, 0))
        .script("s3", Behaviour::new().on_term(1.0, 0));
    // Deleted at t0 = 10 once everything runs.
    sim.delete_at(10.0, Some(5));
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("exited main#0 code=0"), 11.0);
    assert_eq!(sim.expect_time("TERM s3#0"), 11.0);
    assert_eq!(sim.expect_time("exited s3#0 code=0"), 12.0);
    assert_eq!(sim.expect_time("TERM s2#0"), 12.0);
    assert_eq!(sim.expect_time("KILL s2#0"), 15.0);
    assert_eq!(sim.expect_time("TERM s1#0"), 15.0);
    assert_eq!(sim.expect_time("exited s1#0 code=0"), 16.0);
    assert_eq!(sim.phase(), "Succeeded");
}

#[test]
fn long_main_pre_stop_is_cut_at_grace() {
    // §5.4 timeline 6.
    let p = pod("p").container(container("main").pre_stop()).build();
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new()
            .pre_stop(HookScript::Ok(20.0))
            .on_term(20.0, 0),
    );
    sim.delete_at(10.0, Some(5));
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("TERM main#0"), 15.0);
    // Not waited for after the grace, but only ended with its container.
    assert_eq!(sim.expect_time("exited main#0 code=137"), 17.0);
    assert_eq!(sim.expect_time("cancel preStop main#0"), 17.0);
    assert_eq!(sim.phase(), "Failed");
}

#[test]
fn sidecar_pre_stop_cut_at_grace_and_earlier_sidecar_gets_the_floor() {
    // §5.4 timeline 7.
    let mut sim = Sim::new(three_sidecars("Always", true).build())
        .script("main", Behaviour::new().on_term(1.0, 0))
        .script(
            "s1",
            Behaviour::new()
                .pre_stop(HookScript::Ok(1.0))
                .on_term(1.0, 0),
        )
        .script(
            "s2",
            Behaviour::new()
                .pre_stop(HookScript::Ok(30.0))
                .on_term(20.0, 0),
        )
        .script(
            "s3",
            Behaviour::new()
                .pre_stop(HookScript::Ok(1.0))
                .on_term(1.0, 0),
        );
    sim.delete_at(10.0, Some(5));
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("TERM s2#0"), 15.0);
    assert_eq!(sim.expect_time("exited s2#0 code=137"), 17.0);
    assert_eq!(sim.expect_time("cancel preStop s2#0"), 17.0);
    assert_eq!(sim.expect_time("TERM s1#0"), 15.0);
    assert_eq!(sim.expect_time("exited s1#0 code=0"), 16.0);
    assert_eq!(sim.phase(), "Succeeded");
}

#[test]
fn deletion_during_initialisation_does_not_wait_for_unstarted_sidecars() {
    // §5.4 timeline 8.
    let p = pod("p")
        .init(container("i1"))
        .sidecar(container("s1"))
        .sidecar(container("s2"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("i1", Behaviour::new().ignores_term());
    sim.delete_at(2.0, Some(3));
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("TERM i1#0"), 2.0);
    assert_eq!(sim.expect_time("KILL i1#0"), 5.0);
    assert!(sim.at() <= 5.0, "finished at {}", sim.at());
    assert_eq!(sim.time_of("start s1#0"), None);
    sim.check_invariants();
}

#[test]
fn deletion_with_unstarted_sidecar_finishes_in_seconds_not_grace() {
    // §5.4 timeline 9: s1 running but its startup probe never passes, s2 never created.
    let p = pod("p")
        .grace(180)
        .sidecar(container("s1").startup_probe(probe().failure_threshold(1000)))
        .sidecar(container("s2"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script(
        "s1",
        Behaviour::new()
            .startup(podrun_testkit::sim::ProbeScript::always(
                podrun_lifecycle::ProbeResult::Failure,
            ))
            .on_term(1.0, 0),
    );
    sim.delete_at(10.0, None);
    assert!(sim.run_to_finish(400.0));
    assert_eq!(sim.expect_time("TERM s1#0"), 10.0);
    assert!(sim.at() <= 12.0, "finished at {}", sim.at());
}

#[test]
fn no_restarts_during_termination() {
    // §5.6: a sidecar that crashes while the pod terminates is not restarted.
    let p = pod("p")
        .sidecar(container("sc"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p)
        .script("main", Behaviour::new().on_term(10.0, 0))
        .script(
            "sc",
            Behaviour::new().runs(vec![podrun_testkit::sim::Run::Exit {
                after: 12.0,
                code: 1,
            }]),
        );
    sim.delete_at(5.0, None);
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("exited sc#0 code=1"), 12.0);
    assert_eq!(sim.time_of("start sc#1"), None);
    assert_eq!(
        sim.time_of("TERM sc#0"),
        None,
        "it was already gone when its turn came"
    );
    assert_eq!(sim.phase(), "Succeeded");
    sim.check_invariants();
}

#[test]
fn crash_looping_sidecar_is_skipped_at_termination_and_not_restarted() {
    let p = pod("p")
        .sidecar(container("sc"))
        .container(container("main"))
        .build();
    // Instance 0 exits at 5, instance 1 (started at 5) at 6; the next restart would
    // be at 16 (10s backoff). The pod is deleted at 8, inside the backoff.
    let mut sim = Sim::new(p).script(
        "sc",
        Behaviour::new().runs(vec![
            podrun_testkit::sim::Run::Exit {
                after: 5.0,
                code: 1,
            },
            podrun_testkit::sim::Run::Exit {
                after: 1.0,
                code: 1,
            },
        ]),
    );
    sim.delete_at(8.0, Some(30));
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("start sc#1"), 5.0);
    assert_eq!(sim.time_of("start sc#2"), None);
    assert_eq!(sim.expect_time("TERM main#0"), 8.0);
    assert_eq!(sim.count("TERM sc"), 0);
    assert!(sim.at() <= 8.0, "nothing waits for the crashed sidecar");
    sim.check_invariants();
}

#[test]
fn pod_deadline_exceeded_fails_pod_and_kills_containers() {
    let p = pod("p")
        .restart_policy("Never")
        .active_deadline(30)
        .sidecar(container("sc"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p)
        .script("main", Behaviour::new().on_term(3.0, 143))
        .script("sc", Behaviour::new().on_term(3.0, 143));
    sim.run_until(30.0);
    // While the containers shut down, STATUS shows the pod's reason.
    assert_eq!(sim.row().status, "DeadlineExceeded");
    assert_eq!(sim.phase(), "Failed");
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("terminating DeadlineExceeded"), 30.0);
    assert_eq!(sim.expect_time("TERM main#0"), 30.0);
    assert_eq!(
        sim.expect_time("TERM sc#0"),
        33.0,
        "the sidecar waits for main"
    );
    let st = sim.machine().status();
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    assert_eq!(st.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        st.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    // Once they are terminated, the first regular container's reason wins (printPod).
    assert_eq!(sim.row().status, "Error");
}

#[test]
fn deletion_without_grace_uses_pod_termination_grace_period() {
    let p = pod("p").grace(7).container(container("main")).build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().ignores_term());
    sim.delete_at(1.0, None);
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("KILL main#0"), 8.0);
}

#[test]
fn shorter_second_deletion_caps_the_running_kill() {
    let p = pod("p").grace(60).container(container("main")).build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().ignores_term());
    sim.delete_at(0.0, None);
    sim.delete_at(10.0, Some(3));
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("KILL main#0"), 13.0);
}
