//! §3: crash-loop backoff.

use podrun_lifecycle::backoff::go_duration;
use podrun_testkit::pod::{container, pod};
use podrun_testkit::sim::{Behaviour, Run, Sim};

fn waiting(sim: &Sim, init: bool) -> (String, String) {
    let st = sim.machine().status();
    let cs = if init {
        st.init_container_statuses.unwrap()
    } else {
        st.container_statuses.unwrap()
    };
    let w = cs[0].state.clone().unwrap().waiting.unwrap();
    (w.reason.unwrap_or_default(), w.message.unwrap_or_default())
}

#[test]
fn first_restart_after_a_crash_is_immediate() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().exits(3.0, 1));
    sim.run_until(5.0);
    assert_eq!(sim.expect_time("exited main#0 code=1"), 3.0);
    assert_eq!(sim.expect_time("start main#1"), 3.0);
}

#[test]
fn crash_loop_backoff_doubles_to_300s_cap() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().crashes(1));
    sim.run_until(2000.0);
    let starts: Vec<f64> = (0..10)
        .map(|n| sim.expect_time(&format!("start main#{n}")))
        .collect();
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        vec![0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
    );
}

#[test]
fn crash_loop_back_off_waiting_state_has_exact_message() {
    let p = pod("web").container(container("main")).build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().crashes(2));
    sim.run_until(1.0);
    let (reason, message) = waiting(&sim, false);
    assert_eq!(reason, "CrashLoopBackOff");
    assert_eq!(
        message,
        "back-off 10s restarting failed container=main pod=web_default(uid-web)"
    );
    // lastState carries the crash; restartCount counts previous instances.
    let st = sim.machine().status().container_statuses.unwrap().remove(0);
    assert_eq!(st.restart_count, 1);
    let last = st.last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
    sim.run_until(100.0);
    let (_, message) = waiting(&sim, false);
    assert_eq!(
        message,
        "back-off 1m20s restarting failed container=main pod=web_default(uid-web)"
    );
}

#[test]
fn restart_happens_at_the_instant_the_backoff_expires() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().exits(1.0, 1));
    // #0 exits at 1 → #1 at 1, exits at 2 → in backoff 10s from 2.
    sim.run_until(2.0);
    assert_eq!(
        sim.machine()
            .poll_timeout()
            .map(|t| t.duration_since(sim.now()).as_secs()),
        Some(10)
    );
    sim.run_until(12.0);
    assert_eq!(sim.expect_time("start main#2"), 12.0);
}

#[test]
fn backoff_resets_after_600s_running() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new().runs(vec![
            Run::Exit {
                after: 1.0,
                code: 1,
            },
            Run::Exit {
                after: 1.0,
                code: 1,
            },
            Run::Exit {
                after: 1.0,
                code: 1,
            },
            // Started at 33 (the last backoff step), runs 700s (> 600s).
            Run::Exit {
                after: 700.0,
                code: 1,
            },
            Run::Exit {
                after: 1.0,
                code: 1,
            },
        ]),
    );
    sim.run_until(800.0);
    assert_eq!(sim.expect_time("start main#3"), 33.0);
    assert_eq!(sim.expect_time("exited main#3 code=1"), 733.0);
    // Expired entry: immediate restart, and the next window is back to 10s.
    assert_eq!(sim.expect_time("start main#4"), 733.0);
    assert_eq!(sim.expect_time("start main#5"), 744.0);
}

#[test]
fn backoff_does_not_reset_when_run_is_shorter_than_600s() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new().runs(vec![
            Run::Exit {
                after: 1.0,
                code: 1,
            },
            Run::Exit {
                after: 1.0,
                code: 1,
            },
            Run::Exit {
                after: 500.0,
                code: 1,
            },
            Run::Exit {
                after: 1.0,
                code: 1,
            },
        ]),
    );
    sim.run_until(1000.0);
    // #2 started at 12 (10s step), exits at 512: 20s window.
    assert_eq!(sim.expect_time("start main#2"), 12.0);
    assert_eq!(sim.expect_time("start main#3"), 532.0);
}

#[test]
fn backoff_is_per_container() {
    let p = pod("p")
        .container(container("a"))
        .container(container("b"))
        .build();
    let mut sim = Sim::new(p)
        .script("a", Behaviour::new().crashes(1))
        .script("b", Behaviour::new().exits(50.0, 1));
    sim.run_until(60.0);
    // a is deep in backoff by 50, b's first restart is still immediate.
    assert_eq!(sim.expect_time("start b#1"), 50.0);
}

#[test]
fn regular_container_restart_follows_pod_policy() {
    for (policy, code, restarts) in [
        ("Always", 0, true),
        ("Always", 1, true),
        ("OnFailure", 0, false),
        ("OnFailure", 1, true),
        ("Never", 1, false),
        ("Never", 0, false),
    ] {
        let p = pod("p")
            .restart_policy(policy)
            .container(container("main"))
            .build();
        let mut sim = Sim::new(p).script("main", Behaviour::new().exits(1.0, code));
        sim.run_until(5.0);
        assert_eq!(
            sim.time_of("start main#1").is_some(),
            restarts,
            "policy {policy} exit {code}"
        );
    }
}

#[test]
fn go_duration_matches_go_formatting() {
    use k8s_openapi::jiff::SignedDuration as D;
    assert_eq!(go_duration(D::from_secs(10)), "10s");
    assert_eq!(go_duration(D::from_secs(80)), "1m20s");
    assert_eq!(go_duration(D::from_secs(160)), "2m40s");
    assert_eq!(go_duration(D::from_secs(300)), "5m0s");
    assert_eq!(go_duration(D::from_secs(3700)), "1h1m40s");
}
