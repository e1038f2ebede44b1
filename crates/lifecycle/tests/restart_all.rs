//! Addendum §3: `action: RestartAllContainers` (KEP-5532) on the simulated clock.

use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition};
use podrun_testkit::pod::{container, pod};
use podrun_testkit::sim::{Behaviour, Run, Sim};

const REMOVED_MESSAGE: &str = "The container is removed because RestartAllContainers in place";

fn condition(sim: &Sim, type_: &str) -> Option<PodCondition> {
    sim.machine()
        .status()
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == type_)
}

fn regular(sim: &Sim, i: usize) -> ContainerStatus {
    sim.machine().status().container_statuses.unwrap()[i].clone()
}

fn init(sim: &Sim, i: usize) -> ContainerStatus {
    sim.machine().status().init_container_statuses.unwrap()[i].clone()
}

fn exit_then_forever(after: f64, code: i32) -> Behaviour {
    Behaviour::new().runs(vec![Run::Exit { after, code }, Run::Forever])
}

/// Two regular containers; `main` restarts the whole pod when it exits 42. `keeper`
/// ignores SIGTERM like a shell as PID 1.
fn two_containers(policy: &str) -> Sim {
    let p = pod("p")
        .restart_policy(policy)
        .container(container("main").restart_policy("Never").rule(
            "RestartAllContainers",
            "In",
            &[42],
        ))
        .container(container("keeper").pre_stop())
        .build();
    Sim::new(p)
        .script("main", exit_then_forever(5.0, 42))
        .script("keeper", Behaviour::new().ignores_term())
}

#[test]
fn restart_all_kills_every_container_at_once_without_pre_stop_or_grace() {
    let mut sim = two_containers("Never");
    sim.run_until(20.0);
    assert_eq!(sim.expect_time("exited main#0 code=42"), 5.0);
    assert_eq!(sim.expect_time("TERM keeper#0"), 5.0);
    assert_eq!(sim.count("run preStop"), 0, "no preStop hook");
    // Grace 0 with the kubelet's 2-second floor.
    assert_eq!(sim.expect_time("KILL keeper#0"), 7.0);
    assert_eq!(sim.expect_time("start main#1"), 7.0);
    assert_eq!(sim.expect_time("start keeper#1"), 7.0);
    assert_eq!(sim.count("start main#2"), 0, "one round only");
    sim.check_invariants();
}

#[test]
fn restart_all_condition_true_during_cleanup_with_reason_and_message() {
    let mut sim = two_containers("Never");
    sim.run_until(4.0);
    let c = condition(&sim, "AllContainersRestarting").expect("condition present");
    assert_eq!((c.status.as_str(), c.reason), ("False", None));
    sim.run_until(6.0);
    let c = condition(&sim, "AllContainersRestarting").unwrap();
    assert_eq!(c.status, "True");
    assert_eq!(c.reason.as_deref(), Some("RestartAllContainersStarted"));
    assert_eq!(
        c.message.as_deref(),
        Some("container exited with restart policy rule")
    );
    // The trigger shows its real exit meanwhile.
    let main = regular(&sim, 0);
    let t = main.state.unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (42, Some("Error")));
    sim.run_until(8.0);
    let c = condition(&sim, "AllContainersRestarting").unwrap();
    assert_eq!((c.status.as_str(), c.reason), ("False", None));
}

#[test]
fn restart_all_condition_only_on_pods_with_the_rule() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::new(p);
    sim.run_until(1.0);
    assert!(condition(&sim, "AllContainersRestarting").is_none());
}

#[test]
fn removed_containers_show_restarting_all_containers_until_recreated() {
    let mut sim = two_containers("Never");
    sim.run_until(20.0);
    // The kubectl view, row by row.
    let rows: Vec<(String, String, String)> = sim
        .watch()
        .iter()
        .map(|w| {
            (
                w.row.ready.clone(),
                w.row.status.clone(),
                w.row.restarts.clone(),
            )
        })
        .collect();
    let want = |r: &str, s: &str, n: &str| (r.to_owned(), s.to_owned(), n.to_owned());
    assert!(rows.contains(&want("2/2", "Running", "0")), "{rows:?}");
    assert!(rows.contains(&want("1/2", "Error", "0")), "{rows:?}");
    assert!(
        rows.contains(&want("0/2", "RestartingAllContainers", "2")),
        "{rows:?}"
    );
    assert_eq!(
        rows.last().unwrap(),
        &want("2/2", "Running", "2"),
        "{rows:?}"
    );
    assert!(
        sim.watch()
            .iter()
            .all(|w| w.phase == "Running" || w.at < 1.0)
    );
    // Recreated: running again, lastState the removal record, count unchanged.
    for i in 0..2 {
        let st = regular(&sim, i);
        assert!(st.state.unwrap().running.is_some());
        assert_eq!(st.restart_count, 1);
        let last = st.last_state.unwrap().terminated.unwrap();
        assert_eq!(last.reason.as_deref(), Some("RestartingAllContainers"));
        assert_eq!(last.message.as_deref(), Some(REMOVED_MESSAGE));
        assert_eq!(last.exit_code, 137);
        assert!(last.started_at.is_none() && last.finished_at.is_none());
        assert!(last.container_id.is_none());
    }
    sim.check_invariants();
}

#[test]
fn removed_container_status_is_waiting_restarting_all_containers() {
    // A start that takes a while keeps the removed state visible.
    let p = pod("p")
        .restart_policy("Never")
        .container(container("main").restart_policy("Never").rule(
            "RestartAllContainers",
            "In",
            &[42],
        ))
        .build();
    let mut sim = Sim::new(p).script("main", exit_then_forever(5.0, 42).start_latency(1.0));
    sim.run_until(6.5);
    let st = regular(&sim, 0);
    let w = st.state.unwrap().waiting.unwrap();
    assert_eq!(w.reason.as_deref(), Some("RestartingAllContainers"));
    assert_eq!(w.message.as_deref(), Some(REMOVED_MESSAGE));
    assert_eq!(st.restart_count, 1);
    assert_eq!(
        sim.phase(),
        "Running",
        "a Never pod does not fail on the trigger"
    );
    assert_eq!(sim.row().status, "RestartingAllContainers");
}

#[test]
fn restart_all_from_an_init_container_runs_every_init_container_again() {
    let p = pod("p")
        .restart_policy("Never")
        .init(container("first"))
        .init(
            container("second")
                .restart_policy("Never")
                .rule("RestartAllContainers", "In", &[42]),
        )
        .container(container("main"))
        .build();
    let exit = |code| Run::Exit { after: 1.0, code };
    let mut sim = Sim::new(p)
        .script("first", Behaviour::new().exits(1.0, 0))
        .script("second", Behaviour::new().runs(vec![exit(42), exit(0)]))
        .script("main", Behaviour::new());
    sim.run_until(20.0);
    assert_eq!(sim.expect_time("exited second#0 code=42"), 2.0);
    assert_eq!(sim.expect_time("start first#1"), 2.0);
    assert_eq!(sim.expect_time("start second#1"), 3.0);
    assert_eq!(sim.expect_time("start main#0"), 4.0);
    assert_eq!(sim.phase(), "Running");
    assert_eq!(init(&sim, 0).restart_count, 1);
    assert_eq!(init(&sim, 1).restart_count, 1);
    // main never existed before: nothing to remove.
    assert_eq!(regular(&sim, 0).restart_count, 0);
    sim.check_invariants();
}

#[test]
fn restart_all_from_a_sidecar_restarts_sidecar_then_main() {
    let p = pod("p")
        .restart_policy("Never")
        .sidecar(
            container("sc")
                .restart_policy("Always")
                .rule("RestartAllContainers", "In", &[1]),
        )
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p)
        .script("sc", exit_then_forever(10.0, 1))
        .script("main", Behaviour::new().ignores_term());
    sim.run_until(30.0);
    assert_eq!(sim.expect_time("exited sc#0 code=1"), 10.0);
    assert_eq!(sim.expect_time("TERM main#0"), 10.0);
    assert_eq!(sim.expect_time("KILL main#0"), 12.0);
    assert_eq!(sim.expect_time("start sc#1"), 12.0);
    assert_eq!(sim.expect_time("start main#1"), 12.0);
    let start_sc = sim.index_of("start sc#1").unwrap();
    let start_main = sim.index_of("start main#1").unwrap();
    assert!(start_sc < start_main, "sidecar first");
    // The trigger's own exit prints as Init:Error; after the removal Initialized stays
    // True, so the regular containers' reason wins over the init containers'.
    assert!(sim.statuses().contains(&"Init:Error".to_owned()));
    assert!(
        sim.watch()
            .iter()
            .filter(|w| w.at >= 12.0)
            .all(|w| !w.row.status.starts_with("Init:")),
        "{:?}",
        sim.watch()
    );
    let rows: Vec<&str> = sim.watch().iter().map(|w| w.row.status.as_str()).collect();
    assert!(rows.contains(&"RestartingAllContainers"), "{rows:?}");
    assert_eq!(sim.row().restarts, "2");
    sim.check_invariants();
}

#[test]
fn second_container_with_the_same_rule_does_not_cause_a_second_round() {
    // Catalogue L9: the containers killed by the restart exit non-zero, which their
    // own NotIn [0] rule matches; their records are removed, so no second round.
    let rule = |c: podrun_testkit::pod::ContainerBuilder| {
        c.restart_policy("Never")
            .rule("RestartAllContainers", "NotIn", &[0])
    };
    let p = pod("p")
        .restart_policy("Never")
        .container(rule(container("a")))
        .container(rule(container("b")))
        .build();
    let mut sim = Sim::new(p)
        .script("a", exit_then_forever(3.0, 1))
        .script("b", Behaviour::new());
    sim.run_until(60.0);
    assert_eq!(sim.count("start a#"), 2);
    assert_eq!(sim.count("start b#"), 2);
    assert_eq!(sim.phase(), "Running");
    sim.check_invariants();
}

#[test]
fn first_matching_rule_restart_all_wins_over_a_later_restart_rule() {
    let p = pod("p")
        .restart_policy("Never")
        .container(
            container("main")
                .restart_policy("Never")
                .rule("RestartAllContainers", "In", &[3])
                .rule("Restart", "In", &[3]),
        )
        .container(container("other"))
        .build();
    let mut sim = Sim::new(p).script("main", exit_then_forever(2.0, 3));
    sim.run_until(10.0);
    assert_eq!(sim.expect_time("TERM other#0"), 2.0);
    assert_eq!(sim.count("start other#1"), 1);
}

#[test]
fn a_new_failure_after_the_restart_follows_the_normal_rules() {
    // After the restart a regular init container without its own policy fails under
    // pod policy Never: the pod fails.
    let p = pod("p")
        .restart_policy("Never")
        .init(container("init"))
        .container(container("main").restart_policy("Never").rule(
            "RestartAllContainers",
            "In",
            &[42],
        ))
        .build();
    let exit = |code| Run::Exit { after: 1.0, code };
    let mut sim = Sim::new(p)
        .script("init", Behaviour::new().runs(vec![exit(0), exit(1)]))
        .script("main", exit_then_forever(2.0, 42));
    assert!(sim.run_to_finish(60.0));
    assert_eq!(sim.expect_time("start init#1"), 3.0);
    assert_eq!(sim.phase(), "Failed");
    sim.check_invariants();
}

#[test]
fn deletion_during_restart_all_terminates_normally() {
    let mut sim = two_containers("Never");
    sim.delete_at(6.0, Some(30));
    assert!(sim.run_to_finish(60.0));
    assert_eq!(sim.count("start main#1"), 0);
    assert_eq!(sim.count("start keeper#1"), 0);
    assert_eq!(sim.expect_time("KILL keeper#0"), 7.0);
}

#[test]
fn restart_all_never_triggers_once_the_pod_is_terminal() {
    let p = pod("p")
        .restart_policy("Never")
        .container(container("main").restart_policy("Never"))
        .container(container("late").restart_policy("Never").rule(
            "RestartAllContainers",
            "In",
            &[42],
        ))
        .build();
    let mut sim = Sim::new(p)
        .script("main", Behaviour::new().exits(1.0, 0))
        .script("late", Behaviour::new().exits(1.0, 0));
    assert!(sim.run_to_finish(60.0));
    assert_eq!(sim.phase(), "Succeeded");
    let c = condition(&sim, "AllContainersRestarting").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("PodCompleted"))
    );
}
