//! §7: `kubectl get pods` rows: the §7.3 worked example, every §7.4 row, Terminating,
//! RESTARTS ages and `HumanDuration` bands.

use k8s_openapi::jiff::SignedDuration;
use podrun_lifecycle::print::human_duration;
use podrun_testkit::pod::{container, pod, probe};
use podrun_testkit::sim::{Behaviour, ProbeScript, Run, Sim};

fn cols(sim: &Sim) -> (String, String, String) {
    let r = sim.row();
    (r.ready, r.status, r.restarts)
}

fn row(ready: &str, status: &str, restarts: &str) -> (String, String, String) {
    (ready.into(), status.into(), restarts.into())
}

#[test]
fn istio_style_never_pod_walks_the_7_3_table() {
    let p = pod("p")
        .restart_policy("Never")
        .init(container("istio-init"))
        .sidecar(
            container("istio-proxy")
                .startup_probe(probe().period(1))
                .readiness_probe(probe().period(1)),
        )
        .container(container("sleep"))
        .build();
    let mut sim = Sim::new(p)
        .script("istio-init", Behaviour::new().exits(1.0, 0))
        .script(
            "istio-proxy",
            Behaviour::new()
                .startup(ProbeScript::succeed_after(2))
                .readiness(ProbeScript::succeed_after(1))
                .on_term(1.0, 0),
        )
        .script("sleep", Behaviour::new().start_latency(2.0).exits(1.0, 0));
    // Row 1: istio-init running.
    sim.run_until(0.5);
    assert_eq!(cols(&sim), row("0/2", "Init:0/2", "0"));
    assert_eq!(sim.phase(), "Pending");
    // Row 2: istio-proxy running, startup probe pending.
    sim.run_until(1.5);
    assert_eq!(cols(&sim), row("0/2", "Init:1/2", "0"));
    assert_eq!(sim.phase(), "Pending");
    // Row 3: istio-proxy started at 3 (probes at 1, 2, 3), not ready yet; sleep creating.
    sim.run_until(3.0);
    assert_eq!(cols(&sim), row("0/2", "PodInitializing", "0"));
    assert_eq!(sim.phase(), "Pending");
    // Row 4: ready at 4 (first readiness fails at 3, succeeds at 4); sleep still creating.
    sim.run_until(4.5);
    assert_eq!(cols(&sim), row("1/2", "PodInitializing", "0"));
    assert_eq!(sim.phase(), "Pending");
    // Row 5: sleep running from 5.
    sim.run_until(5.5);
    assert_eq!(cols(&sim), row("2/2", "Running", "0"));
    assert_eq!(sim.phase(), "Running");
    // Row 6: sleep completed at 6; the sidecar takes 1s to stop.
    sim.run_until(6.5);
    assert_eq!(cols(&sim), row("1/2", "Completed", "0"));
    assert_eq!(sim.phase(), "Running");
    // Row 7: everything stopped.
    assert!(sim.run_to_finish(60.0));
    assert_eq!(cols(&sim), row("0/2", "Completed", "0"));
    assert_eq!(sim.phase(), "Succeeded");
    assert_eq!(
        sim.statuses(),
        vec![
            "Init:0/2",
            "Init:1/2",
            "PodInitializing",
            "PodInitializing",
            "Running",
            "Completed",
            "Completed"
        ]
    );
}

#[test]
fn terminated_sidecar_with_error_still_prints_completed_pod() {
    // §7.3 row 7 with a non-zero sidecar exit: Init:Error is overwritten by Completed.
    let p = pod("p")
        .restart_policy("Never")
        .sidecar(container("proxy"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p)
        .script("proxy", Behaviour::new().on_term(0.0, 1))
        .script("main", Behaviour::new().exits(1.0, 0));
    assert!(sim.run_to_finish(60.0));
    assert_eq!(cols(&sim), row("0/2", "Completed", "0"));
    assert_eq!(sim.phase(), "Succeeded");
}

#[test]
fn all_running_and_ready_with_ric_and_two_sidecars() {
    let p = pod("p")
        .init(container("i"))
        .sidecar(container("s1"))
        .sidecar(container("s2"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("i", Behaviour::new().exits(2.0, 0));
    sim.run_until(1.0);
    assert_eq!(cols(&sim), row("0/3", "Init:0/3", "0"));
    sim.run_until(3.0);
    assert_eq!(cols(&sim), row("3/3", "Running", "0"));
}

#[test]
fn ric_exit_1_under_never_prints_init_error() {
    let p = pod("p")
        .restart_policy("Never")
        .init(container("i"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("i", Behaviour::new().exits(1.0, 1));
    assert!(sim.run_to_finish(10.0));
    assert_eq!(cols(&sim), row("0/1", "Init:Error", "0"));
}

#[test]
fn ric_crash_looping_prints_init_crash_loop_back_off_with_ric_restarts() {
    let p = pod("p")
        .init(container("i"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("i", Behaviour::new().crashes(1));
    sim.run_until(35.0);
    // Instances at 0, 0, 10, 30: restartCount 3, last crash at 30.
    assert_eq!(
        cols(&sim),
        row("0/1", "Init:CrashLoopBackOff", "3 (5s ago)")
    );
}

#[test]
fn sidecar_crash_looping_before_started_prints_init_crash_loop_back_off() {
    let p = pod("p")
        .sidecar(container("sc").startup_probe(probe().initial_delay(5)))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("sc", Behaviour::new().crashes(1));
    sim.run_until(12.0);
    assert_eq!(
        cols(&sim),
        row("0/2", "Init:CrashLoopBackOff", "2 (2s ago)")
    );
}

#[test]
fn two_mains_one_completed_prints_not_ready() {
    let p = pod("p")
        .restart_policy("Never")
        .container(container("a"))
        .container(container("b"))
        .build();
    let mut sim = Sim::new(p).script("a", Behaviour::new().exits(1.0, 0));
    sim.run_until(2.0);
    assert_eq!(cols(&sim), row("1/2", "NotReady", "0"));
}

#[test]
fn main_exit_1_under_never_with_sidecar_terminated_prints_error() {
    let p = pod("p")
        .restart_policy("Never")
        .sidecar(container("sc"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().exits(1.0, 1));
    assert!(sim.run_to_finish(60.0));
    assert_eq!(cols(&sim), row("0/2", "Error", "0"));
    assert_eq!(sim.phase(), "Failed");
}

#[test]
fn main_crash_loop_prints_crash_loop_back_off_with_main_and_sidecar_restarts() {
    let p = pod("p")
        .sidecar(container("sc"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p)
        .script(
            "sc",
            Behaviour::new().runs(vec![
                Run::Exit {
                    after: 1.0,
                    code: 1,
                },
                Run::Forever,
            ]),
        )
        .script("main", Behaviour::new().exits(2.0, 1));
    // main: 0→2, 2→4, then 10s backoff until 14.
    sim.run_until(6.0);
    assert_eq!(cols(&sim), row("1/2", "CrashLoopBackOff", "2 (2s ago)"));
}

#[test]
fn init_container_with_bad_image_prints_its_waiting_reason() {
    let p = pod("p")
        .init(container("i").image("missing:1"))
        .container(container("main"))
        .build();
    let mut sim = Sim::new(p).script(
        "i",
        Behaviour::new()
            .start_fails(1, "ErrImagePull")
            .start_fails(100, "ImagePullBackOff"),
    );
    // An image failure is retried 10 s later.
    sim.run_until(10.5);
    assert_eq!(cols(&sim), row("0/1", "Init:ImagePullBackOff", "0"));
    assert_eq!(
        sim.statuses(),
        vec!["Init:0/1", "Init:ErrImagePull", "Init:ImagePullBackOff"]
    );
}

#[test]
fn deleted_running_pod_prints_terminating_until_terminal() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().on_term(3.0, 0));
    sim.delete_at(5.0, None);
    sim.run_until(6.0);
    assert_eq!(cols(&sim), row("1/1", "Terminating", "0"));
    assert!(sim.run_to_finish(60.0));
    // Terminal pods keep their status even with a deletion timestamp (newer printers).
    assert_eq!(sim.phase(), "Succeeded");
    assert_eq!(cols(&sim).1, "Completed");
}

#[test]
fn age_column_uses_creation_timestamp() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::new(p);
    sim.run_until(3725.0);
    assert_eq!(sim.row().age, "62m");
    assert_eq!(sim.row().name, "p");
}

#[test]
fn human_duration_covers_every_band() {
    let h = |s: i64| human_duration(SignedDuration::from_secs(s));
    assert_eq!(
        human_duration(SignedDuration::from_millis(-2500)),
        "<invalid>"
    );
    assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
    assert_eq!(h(0), "0s");
    assert_eq!(h(119), "119s");
    assert_eq!(h(120), "2m");
    assert_eq!(h(125), "2m5s");
    assert_eq!(h(599), "9m59s");
    assert_eq!(h(600), "10m");
    assert_eq!(h(3 * 3600 - 1), "179m");
    assert_eq!(h(3 * 3600), "3h");
    assert_eq!(h(3 * 3600 + 60 * 5), "3h5m");
    assert_eq!(h(8 * 3600), "8h");
    assert_eq!(h(47 * 3600 + 59 * 60), "47h");
    assert_eq!(h(48 * 3600), "2d");
    assert_eq!(h(50 * 3600), "2d2h");
    assert_eq!(h(8 * 24 * 3600), "8d");
    assert_eq!(h(729 * 24 * 3600), "729d");
    assert_eq!(h(730 * 24 * 3600), "2y");
    assert_eq!(h(731 * 24 * 3600), "2y1d");
    assert_eq!(h(8 * 365 * 24 * 3600), "8y");
    assert_eq!(h(9 * 365 * 24 * 3600 + 86400), "9y");
}
