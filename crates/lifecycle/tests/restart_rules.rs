//! Addendum §2.5–2.9: the per-container restart decision (container `restartPolicy` and
//! `restartPolicyRules` first, the pod's policy otherwise), on the simulated clock.

use k8s_openapi::api::core::v1::ContainerStatus;
use podrun_lifecycle::ProbeResult;
use podrun_lifecycle::restart::{RestartPolicy, RestartSpec};
use podrun_testkit::pod::{container, pod, probe};
use podrun_testkit::sim::{Behaviour, ProbeScript, Run, Sim};

fn regular(sim: &Sim, i: usize) -> ContainerStatus {
    sim.machine().status().container_statuses.unwrap()[i].clone()
}

fn init(sim: &Sim, i: usize) -> ContainerStatus {
    sim.machine().status().init_container_statuses.unwrap()[i].clone()
}

fn waiting_reason(st: &ContainerStatus) -> Option<String> {
    st.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

fn terminated_exit(st: &ContainerStatus) -> Option<i32> {
    Some(st.state.as_ref()?.terminated.as_ref()?.exit_code)
}

#[test]
fn should_restart_follows_container_policy_then_rules_then_pod_policy() {
    let spec = |c| RestartSpec::from_container(&c);
    let never_42 = spec(
        container("a")
            .restart_policy("Never")
            .rule("Restart", "In", &[42])
            .build(),
    );
    assert!(never_42.should_restart(RestartPolicy::Always, 42));
    assert!(!never_42.should_restart(RestartPolicy::Always, 1));
    assert!(!never_42.should_restart(RestartPolicy::Always, 0));
    let not_in = spec(
        container("a")
            .restart_policy("Never")
            .rule("Restart", "NotIn", &[0, 2])
            .build(),
    );
    assert!(not_in.should_restart(RestartPolicy::Never, 1));
    assert!(!not_in.should_restart(RestartPolicy::Never, 2));
    // First match wins: a RestartAllContainers match falls back to the policy.
    let first = spec(
        container("a")
            .restart_policy("Never")
            .rule("RestartAllContainers", "In", &[3])
            .rule("Restart", "In", &[3])
            .build(),
    );
    assert!(!first.should_restart(RestartPolicy::Always, 3));
    assert!(first.triggers_restart_all(3));
    let on_failure = spec(container("a").restart_policy("OnFailure").build());
    assert!(on_failure.should_restart(RestartPolicy::Never, 1));
    assert!(!on_failure.should_restart(RestartPolicy::Always, 0));
    // Without a container policy the pod policy decides and rules are ignored.
    let unset = spec(container("a").build());
    assert!(unset.should_restart(RestartPolicy::Always, 0));
    assert!(unset.should_restart(RestartPolicy::OnFailure, 1));
    assert!(!unset.should_restart(RestartPolicy::OnFailure, 0));
    assert!(!unset.should_restart(RestartPolicy::Never, 1));
}

#[test]
fn restart_rule_restarts_a_container_only_on_exit_code_42() {
    let p = pod("p")
        .restart_policy("Never")
        .container(
            container("main")
                .restart_policy("Never")
                .rule("Restart", "In", &[42]),
        )
        .build();
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new().runs(vec![
            Run::Exit {
                after: 2.0,
                code: 42,
            },
            Run::Exit {
                after: 2.0,
                code: 1,
            },
        ]),
    );
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("exited main#0 code=42"), 2.0);
    assert_eq!(
        sim.expect_time("start main#1"),
        2.0,
        "first restart immediate"
    );
    assert_eq!(sim.expect_time("exited main#1 code=1"), 4.0);
    assert_eq!(sim.count("start main#2"), 0);
    assert_eq!(sim.phase(), "Failed");
    let st = regular(&sim, 0);
    assert_eq!((terminated_exit(&st), st.restart_count), (Some(1), 1));
    assert!(
        sim.watch()
            .iter()
            .all(|w| w.phase != "Failed" || w.at >= 4.0),
        "the in-place restart never made the pod Failed"
    );
    sim.check_invariants();
}

#[test]
fn container_policy_never_in_an_always_pod_stays_terminated() {
    let p = pod("p")
        .container(container("main").restart_policy("Never"))
        .container(container("keeper"))
        .build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().exits(3.0, 1));
    sim.run_until(60.0);
    assert_eq!(sim.count("start main#"), 1);
    let st = regular(&sim, 0);
    assert_eq!(terminated_exit(&st), Some(1), "no CrashLoopBackOff overlay");
    assert_eq!(waiting_reason(&st), None);
    assert_eq!(sim.phase(), "Running");
    let row = sim.row();
    assert_eq!((row.ready.as_str(), row.status.as_str()), ("1/2", "Error"));
    sim.check_invariants();
}

#[test]
fn always_pod_whose_containers_all_have_policy_never_completes() {
    for (code, phase) in [(0, "Succeeded"), (1, "Failed")] {
        let p = pod("p")
            .container(container("main").restart_policy("Never"))
            .build();
        let mut sim = Sim::new(p).script("main", Behaviour::new().exits(1.0, code));
        assert!(sim.run_to_finish(60.0), "exit {code}");
        assert_eq!(sim.phase(), phase, "exit {code}");
        assert_eq!(sim.count("start main#"), 1);
    }
}

#[test]
fn container_policy_on_failure_in_never_pod_crash_loops_with_backoff() {
    let p = pod("p")
        .restart_policy("Never")
        .container(container("main").restart_policy("OnFailure"))
        .build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().crashes(1));
    sim.run_until(35.0);
    let starts: Vec<f64> = (0..4)
        .map(|n| sim.expect_time(&format!("start main#{n}")))
        .collect();
    assert_eq!(starts, vec![0.0, 0.0, 10.0, 30.0]);
    assert_eq!(sim.phase(), "Running");
    sim.run_until(31.0);
    assert_eq!(
        waiting_reason(&regular(&sim, 0)).as_deref(),
        Some("CrashLoopBackOff")
    );
    assert_eq!(sim.row().status, "CrashLoopBackOff");
    sim.check_invariants();
}

#[test]
fn init_container_with_own_policy_never_fails_an_always_pod() {
    let p = pod("p")
        .init(container("init").restart_policy("Never"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("init", Behaviour::new().exits(1.0, 1));
    assert!(sim.run_to_finish(60.0));
    assert_eq!(sim.count("start init#"), 1);
    assert_eq!(sim.count("start main#"), 0);
    assert_eq!(sim.expect_time("terminating InitFailed"), 1.0);
    assert_eq!(sim.phase(), "Failed");
    assert_eq!(sim.row().status, "Init:Error");
}

#[test]
fn init_container_with_own_policy_on_failure_retries_in_a_never_pod() {
    let p = pod("p")
        .restart_policy("Never")
        .init(container("init").restart_policy("OnFailure"))
        .container(container("main"))
        .build();
    let exit = |code| Run::Exit { after: 1.0, code };
    let mut sim = Sim::new(p)
        .script(
            "init",
            Behaviour::new().runs(vec![exit(1), exit(1), exit(0)]),
        )
        .script("main", Behaviour::new().exits(1.0, 0));
    sim.run_until(5.0);
    assert_eq!(sim.expect_time("start init#1"), 1.0);
    assert_eq!(
        waiting_reason(&init(&sim, 0)).as_deref(),
        Some("CrashLoopBackOff")
    );
    assert_eq!(sim.row().status, "Init:CrashLoopBackOff");
    assert_eq!(sim.phase(), "Pending");
    assert!(sim.run_to_finish(100.0));
    assert_eq!(sim.expect_time("start init#2"), 12.0);
    assert_eq!(sim.expect_time("start main#0"), 13.0);
    assert_eq!(sim.phase(), "Succeeded");
    sim.check_invariants();
}

#[test]
fn regular_init_container_without_own_policy_still_follows_the_pod() {
    // Pod policy Never, no container policy: a failed init container fails the pod.
    let p = pod("p")
        .restart_policy("Never")
        .init(container("init"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("init", Behaviour::new().exits(1.0, 2));
    assert!(sim.run_to_finish(60.0));
    assert_eq!(sim.phase(), "Failed");
    assert_eq!(sim.count("start init#"), 1);
}

#[test]
fn not_in_rule_restarts_on_any_other_exit_code() {
    let p = pod("p")
        .restart_policy("Never")
        .container(
            container("main")
                .restart_policy("Never")
                .rule("Restart", "NotIn", &[0]),
        )
        .build();
    let exit = |code| Run::Exit { after: 1.0, code };
    let mut sim = Sim::new(p).script("main", Behaviour::new().runs(vec![exit(3), exit(0)]));
    assert!(sim.run_to_finish(60.0));
    assert_eq!(sim.count("start main#"), 2);
    assert_eq!(sim.phase(), "Succeeded");
}

#[test]
fn liveness_kill_restarts_unless_the_container_policy_is_never() {
    for (pod_policy, own, restarts) in [
        ("Never", Some("OnFailure"), true),
        ("Always", Some("Never"), false),
        ("Always", None, true),
        ("Never", None, false),
    ] {
        let mut c = container("main").liveness_probe(probe().period(1).failure_threshold(1));
        if let Some(own) = own {
            c = c.restart_policy(own);
        }
        let p = pod("p")
            .restart_policy(pod_policy)
            .grace(1)
            .container(c)
            .build();
        let mut sim = Sim::new(p).script(
            "main",
            Behaviour::new()
                .liveness(ProbeScript::always(ProbeResult::Failure))
                .ignores_term(),
        );
        sim.run_until(20.0);
        assert_eq!(
            sim.count("start main#1") == 1,
            restarts,
            "pod {pod_policy}, container {own:?}"
        );
        sim.check_invariants();
    }
}

#[test]
fn sidecar_crash_in_never_pod_shows_init_crash_loop_back_off() {
    // §2.6: ShouldContainerBeRestarted honours the sidecar's own Always policy.
    let p = pod("p")
        .restart_policy("Never")
        .sidecar(container("sc"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script(
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
    );
    sim.run_until(6.0);
    assert_eq!(sim.expect_time("start sc#1"), 5.0);
    assert_eq!(
        waiting_reason(&init(&sim, 0)).as_deref(),
        Some("CrashLoopBackOff")
    );
    assert_eq!(sim.row().status, "Init:CrashLoopBackOff");
    assert_eq!(sim.phase(), "Running");
    sim.check_invariants();
}

#[test]
fn job_pod_in_place_restarts_never_make_the_pod_failed() {
    // §2.8: a Job pod (policy Never) whose container has its own OnFailure restarts in
    // place; podFailurePolicy and backoffLimit only see terminal pods.
    let p = pod("job-x")
        .restart_policy("Never")
        .container(container("work").restart_policy("OnFailure"))
        .build();
    let exit = |code| Run::Exit { after: 1.0, code };
    let mut sim = Sim::new(p).script(
        "work",
        Behaviour::new().runs(vec![exit(1), exit(1), exit(0)]),
    );
    assert!(sim.run_to_finish(100.0));
    assert!(
        sim.watch().iter().all(|w| w.phase != "Failed"),
        "{:?}",
        sim.watch()
    );
    assert_eq!(sim.phase(), "Succeeded");
    assert_eq!(regular(&sim, 0).restart_count, 2);
    sim.check_invariants();
}
