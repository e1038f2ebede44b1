//! Image failures before a start: retried every 10 s, never stepping the crash-loop
//! back-off (kubelet 1.37: the image has its own back-off, and `doBackOff` looks at exited
//! instances only).

use podrun_testkit::pod::{container, pod};
use podrun_testkit::sim::{Behaviour, Sim};

#[test]
fn image_failures_are_retried_every_10s() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::new(p).script("main", Behaviour::new().start_fails(6, "ErrImagePull"));
    sim.run_until(100.0);
    assert_eq!(
        sim.times_of("start main#0"),
        [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    );
    assert_eq!(sim.times_of("start-failed main#0 ErrImagePull").len(), 6);
}

#[test]
fn other_start_failures_still_step_the_crash_loop_back_off() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new().start_fails(3, "CreateContainerConfigError"),
    );
    sim.run_until(100.0);
    assert_eq!(sim.times_of("start main#0"), [0.0, 0.0, 10.0, 30.0]);
}

#[test]
fn a_crash_after_image_failures_starts_the_crash_loop_at_its_first_step() {
    let p = pod("p").container(container("main")).build();
    let mut sim = Sim::new(p).script(
        "main",
        Behaviour::new()
            .start_fails(5, "ImagePullBackOff")
            .crashes(1),
    );
    sim.run_until(200.0);
    assert_eq!(sim.times_of("start main#0").last(), Some(&50.0));
    // The instance crashed at once: restarted immediately, then after 10 s, as for a
    // container that never failed to start.
    assert_eq!(sim.expect_time("start main#1"), 50.0);
    assert_eq!(sim.expect_time("start main#2"), 60.0);
}
