//! The kubelet's image behaviour around pods run from images (no `--host-rootfs`), against a
//! real registry (Debian's `docker-registry` on 127.0.0.1, the fixture image of
//! `scripts/test-images.sh`, a throttling proxy in front of it for a slow registry): the spec's
//! acceptance scenarios 13, 15, 16, 22, 24, 25, 28 (missing secret), 29 and 39. Needs root and
//! the packages `scripts/setup.sh` installs.

use std::process::Child;
use std::time::{Duration, Instant};

mod registry;

use registry::{Env, Registry, SlowProxy, stderr, stdout, wait_until};

fn pod(name: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  containers:\n{containers}"
    )
}

/// Waits at most `limit` for `podrun run` to end; kills it (by PID) if it does not.
fn wait_exit(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("podrun run did not end: {}{}", stdout(&out), stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Scenario 29: the pull runs off the pod worker, so the pod shows `ContainerCreating` while
/// it pulls, and deleting it cancels the pull at once and leaves no download behind.
#[test]
fn deleting_a_pod_during_a_slow_pull_cancels_the_pull() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    let slow = SlowProxy::start(reg.port, 40_000);
    let image = format!("{}/busybox:1", slow.host());
    let manifest = pod("slow", &format!("  - name: app\n    image: {image}\n"));
    let child = env.spawn_manifest(&manifest, &["--timeout", "60s"]);
    let limit = Duration::from_secs(20);
    env.wait_event(
        "slow",
        "Pulling",
        &format!("Pulling image \"{image}\""),
        limit,
    );
    wait_until(limit, "a download in ingest/", || env.count("ingest") > 0);
    let row = env.ok(&["get", "pod", "slow"]);
    assert!(row.contains("ContainerCreating"), "{row}");
    let t = Instant::now();
    env.ok(&["delete", "pod", "slow"]);
    let took = t.elapsed();
    assert!(env.pod_json("slow").is_none(), "the pod is still there");
    assert!(took < Duration::from_secs(2), "deletion took {took:?}");
    let out = wait_exit(child, Duration::from_secs(10));
    assert_eq!(env.count("ingest"), 0, "a download was left behind");
    assert_eq!(env.ok(&["images", "-q"]), "", "{}", stdout(&out));
    assert!(
        !env.events("slow").iter().any(|e| e.1 == "Pulled"),
        "{:?}",
        env.events("slow")
    );
}
