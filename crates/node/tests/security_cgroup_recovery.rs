//! After a crash, opening the node removes the pod cgroups it owned (killing anything
//! left in them) and memory-backed emptyDir mounts, and leaves other pods' cgroups alone.
//!
//! Needs root (cgroups, mounts) and fails loudly without it.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use podrun_node::Node;
use podrun_node::cgroup::{self, PodCgroup, ResourcePlan};

/// Kills the test's process and removes its cgroups even if an assertion fails.
struct Cleanup {
    child: Option<Child>,
    dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd.flatten() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn open_removes_leftover_pod_cgroups_and_mounts_of_dead_instances_only() {
    assert!(
        podrun_node::runtime::isolation_available(),
        "this test needs root (cgroups, mounts); run it as root like CI does"
    );
    let state = tempfile::tempdir().unwrap();
    let h = cgroup::host().expect("cgroups on this host");
    let ours = format!("leftover-{}", std::process::id());
    let foreign = format!("foreign-{}", std::process::id());
    let mut cleanup = Cleanup {
        child: None,
        dirs: [h.pod_dirs(&ours), h.pod_dirs(&foreign)].concat(),
    };
    // A pod of a dead podrun: its directory has no live owner.
    let pod_dir = state.path().join(format!("pods/default_web_{ours}"));
    std::fs::create_dir_all(&pod_dir).unwrap();
    std::fs::write(pod_dir.join("owner"), "999999999\n").unwrap();
    let ed = pod_dir.join("volumes/cache");
    podrun_node::volume::prepare_empty_dir(&ed, Some("Memory"), Some("1Mi"), None).unwrap();
    assert!(podrun_node::volume::is_mount_point(&ed));
    let plan = ResourcePlan::from_container(
        &serde_json::from_value(serde_json::json!({"name": "app"})).unwrap(),
    )
    .unwrap();
    let pod_cg = PodCgroup::create(h.clone(), &ours).unwrap();
    let cg = pod_cg.container("app", &plan).unwrap();
    // A process the crashed podrun left inside the container's cgroup.
    let child = Command::new("sleep").arg("300").spawn().unwrap();
    let pid = child.id();
    cleanup.child = Some(child);
    for d in cg.dirs() {
        std::fs::write(d.join("cgroup.procs"), pid.to_string()).unwrap();
    }
    // Another state directory's pod: not ours to touch.
    let other = PodCgroup::create(h.clone(), &foreign).unwrap();

    let (_node, recovery) = Node::open(state.path()).expect("node opens");

    for d in pod_cg.dirs() {
        assert!(!d.exists(), "{} must be removed", d.display());
    }
    assert!(
        recovery.reports.iter().any(|r| r.contains(&ours)),
        "{:?}",
        recovery.reports
    );
    assert!(
        !podrun_node::volume::is_mount_point(&ed),
        "tmpfs left mounted"
    );
    for d in other.dirs() {
        assert!(d.exists(), "{} belongs to another podrun", d.display());
    }
    // The leftover process was killed (it is our child: reap it).
    let deadline = Instant::now() + Duration::from_secs(5);
    let child = cleanup.child.as_mut().unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(libc::SIGKILL));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leftover process {pid} still alive"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
