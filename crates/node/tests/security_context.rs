//! securityContext and resources carried out on real processes: the container's uid and
//! groups, its capability sets, no_new_privs, a read-only root with writable volumes, and
//! a memory limit that OOM-kills through a real cgroup.
//!
//! These tests need root (namespaces, setuid, cgroups) and fail loudly without it.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use podrun_node::cgroup::{self, PodCgroup, ResourcePlan};
use podrun_node::runtime::{
    BindMount, ContainerLaunch, ContainerProcess, PodIdentity, isolation_available,
};
use podrun_node::security::{self, CapSet, cap_number};

fn require_root() {
    assert!(
        isolation_available(),
        "these tests need root (setuid, capabilities, cgroups); run them as root like CI does"
    );
}

fn pod_with(pod_sc: serde_json::Value, c_sc: serde_json::Value) -> (Pod, Container) {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sec", "namespace": "default", "uid": "sec-uid"},
        "spec": {"securityContext": pod_sc, "containers": [{"name": "c", "securityContext": c_sc}]},
    }))
    .expect("valid pod");
    let c = pod.spec.as_ref().expect("spec").containers[0].clone();
    (pod, c)
}

static NEXT_LOG: AtomicUsize = AtomicUsize::new(0);

fn launch(dir: &Path, script: &str, pod: &Pod, c: &Container) -> ContainerLaunch {
    let plan = security::plan(pod, c).expect("plan").for_host();
    ContainerLaunch {
        pod: PodIdentity {
            namespace: "default".into(),
            name: "sec".into(),
            uid: "sec-uid".into(),
        },
        container_name: "c".into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        // A fresh log per launch: the log file is appended to.
        log_path: dir.join(format!(
            "c/{}.log",
            NEXT_LOG.fetch_add(1, Ordering::Relaxed)
        )),
        credentials: Some(plan.credentials),
        capabilities: Some(plan.capabilities),
        no_new_privs: plan.no_new_privs,
        read_only_rootfs: plan.read_only_rootfs,
        ..Default::default()
    }
}

async fn run(l: &ContainerLaunch) -> (i32, String) {
    let c = ContainerProcess::spawn(l).expect("spawn");
    let exit = tokio::time::timeout(Duration::from_secs(30), c.wait())
        .await
        .expect("container exits in time");
    tokio::time::timeout(Duration::from_secs(10), c.logs_done())
        .await
        .expect("logs complete");
    let log = std::fs::read_to_string(&l.log_path).expect("log file");
    // CRI lines: "<time> <stream> <P|F> <text>"
    let text = log
        .lines()
        .map(|line| line.splitn(4, ' ').nth(3).unwrap_or("").to_string() + "\n")
        .collect();
    (exit.exit_code, text)
}

fn status_field<'a>(text: &'a str, field: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{field} missing in {text}"))
}

#[tokio::test]
async fn run_as_user_group_and_supplemental_groups_are_effective() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (pod, c) = pod_with(
        serde_json::json!({"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000]}),
        serde_json::json!({"runAsUser": 1001}),
    );
    let (code, out) = run(&launch(dir.path(), "id -u; id -g; id -G", &pod, &c)).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "1001\n3000\n3000 2000 4000\n");
}

#[tokio::test]
async fn dropped_capability_is_missing_and_added_one_present() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (pod, c) = pod_with(
        serde_json::json!(null),
        serde_json::json!({"capabilities": {"drop": ["NET_RAW", "CHOWN"], "add": ["NET_ADMIN"]}}),
    );
    let (code, out) = run(&launch(dir.path(), "cat /proc/self/status", &pod, &c)).await;
    assert_eq!(code, 0, "{out}");
    let eff = u64::from_str_radix(status_field(&out, "CapEff:"), 16).unwrap();
    let bnd = u64::from_str_radix(status_field(&out, "CapBnd:"), 16).unwrap();
    let prm = u64::from_str_radix(status_field(&out, "CapPrm:"), 16).unwrap();
    let inh = u64::from_str_radix(status_field(&out, "CapInh:"), 16).unwrap();
    let amb = u64::from_str_radix(status_field(&out, "CapAmb:"), 16).unwrap();
    let set = CapSet(eff);
    assert!(
        !set.contains(cap_number("NET_RAW").unwrap()),
        "{:?}",
        set.names()
    );
    assert!(
        !set.contains(cap_number("CHOWN").unwrap()),
        "{:?}",
        set.names()
    );
    assert!(
        set.contains(cap_number("NET_ADMIN").unwrap()),
        "{:?}",
        set.names()
    );
    assert!(
        !set.contains(cap_number("SYS_ADMIN").unwrap()),
        "{:?}",
        set.names()
    );
    let mut want = CapSet::runtime_default();
    want.remove(13);
    want.remove(0);
    want.insert(12);
    assert_eq!((eff, prm, bnd), (want.0, want.0, want.0));
    assert_eq!((inh, amb), (0, 0));
    // The missing capability really is missing: chown to another user fails.
    let (code, out) = run(&launch(
        dir.path(),
        "touch /tmp/podrun-chown-$$ && chown 1234 /tmp/podrun-chown-$$; r=$?; rm -f /tmp/podrun-chown-$$; exit $r",
        &pod,
        &c,
    ))
    .await;
    assert_ne!(code, 0, "chown must fail without CAP_CHOWN: {out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[tokio::test]
async fn privileged_gets_every_capability_and_default_gets_fourteen() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (pod, c) = pod_with(
        serde_json::json!(null),
        serde_json::json!({"privileged": true}),
    );
    let (_, out) = run(&launch(dir.path(), "cat /proc/self/status", &pod, &c)).await;
    // containerd gives a privileged container every capability the runtime itself has.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let own = u64::from_str_radix(status_field(&own, "CapPrm:"), 16).unwrap();
    let eff = u64::from_str_radix(status_field(&out, "CapEff:"), 16).unwrap();
    assert_eq!(eff, own);
    assert!(eff.count_ones() > 30, "{eff:x}");
    let (pod, c) = pod_with(serde_json::json!(null), serde_json::json!(null));
    let (_, out) = run(&launch(dir.path(), "cat /proc/self/status", &pod, &c)).await;
    let eff = u64::from_str_radix(status_field(&out, "CapEff:"), 16).unwrap();
    assert_eq!(eff, CapSet::runtime_default().0);
}

#[tokio::test]
async fn non_root_user_keeps_capabilities_only_in_the_bounding_set() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (pod, c) = pod_with(
        serde_json::json!({"runAsUser": 1000}),
        serde_json::json!(null),
    );
    let (_, out) = run(&launch(dir.path(), "cat /proc/self/status", &pod, &c)).await;
    assert_eq!(status_field(&out, "CapEff:"), "0000000000000000");
    let bnd = u64::from_str_radix(status_field(&out, "CapBnd:"), 16).unwrap();
    assert_eq!(bnd, CapSet::runtime_default().0);
}

#[tokio::test]
async fn allow_privilege_escalation_false_sets_no_new_privs() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (pod, c) = pod_with(
        serde_json::json!(null),
        serde_json::json!({"allowPrivilegeEscalation": false}),
    );
    let (_, out) = run(&launch(dir.path(), "cat /proc/self/status", &pod, &c)).await;
    assert_eq!(status_field(&out, "NoNewPrivs:"), "1");
    let (pod, c) = pod_with(serde_json::json!(null), serde_json::json!(null));
    let (_, out) = run(&launch(dir.path(), "cat /proc/self/status", &pod, &c)).await;
    assert_eq!(status_field(&out, "NoNewPrivs:"), "0");
}

#[tokio::test]
async fn read_only_root_filesystem_keeps_volumes_writable() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    let (pod, c) = pod_with(
        serde_json::json!(null),
        serde_json::json!({"readOnlyRootFilesystem": true}),
    );
    let mut l = launch(
        dir.path(),
        "touch /podrun-ro-test 2>&1; touch /tmp/podrun-ro-test-$$ 2>&1; touch /data/ok && echo volume-ok; touch /data/sub/also 2>&1 || echo no-subdir; echo x > /dev/shm/f && echo shm-ok",
        &pod,
        &c,
    );
    l.mounts = vec![BindMount {
        source: vol.clone(),
        target: "/data".into(),
        read_only: false,
    }];
    let (code, out) = run(&l).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("Read-only file system").count(), 2, "{out}");
    assert!(out.contains("volume-ok"), "{out}");
    assert!(out.contains("shm-ok"), "{out}");
    assert!(vol.join("ok").exists());
    // Without the setting the same root is writable (where the host's is).
    let (pod, c) = pod_with(serde_json::json!(null), serde_json::json!(null));
    let marker = format!("/tmp/podrun-rw-test-{}", std::process::id());
    let (code, out) = run(&launch(dir.path(), &format!("touch {marker}"), &pod, &c)).await;
    assert_eq!(code, 0, "{out}");
    assert!(Path::new(&marker).exists());
    let _ = std::fs::remove_file(&marker);
}

/// Removes the test's pod cgroup even when an assertion fails.
struct CgroupGuard(String);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Ok(h) = cgroup::host() {
            for d in h.pod_dirs(&self.0) {
                if let Ok(rd) = std::fs::read_dir(&d) {
                    for e in rd.flatten() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
                let _ = std::fs::remove_dir(&d);
            }
        }
    }
}

#[tokio::test]
async fn memory_limit_breach_is_an_oom_kill_with_137_and_cgroup_is_removed() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let uid = format!("test-oom-{}", std::process::id());
    let _guard = CgroupGuard(uid.clone());
    let hierarchy = cgroup::host().expect("cgroups available");
    let pod_cg = PodCgroup::create(hierarchy.clone(), &uid).expect("pod cgroup");
    let c: Container = serde_json::from_value(serde_json::json!({
        "name": "hog", "resources": {"limits": {"memory": "50Mi", "cpu": "500m"}},
    }))
    .unwrap();
    let plan = ResourcePlan::from_container(&c).unwrap();
    let cg = pod_cg.container("hog", &plan).expect("container cgroup");
    for d in cg.dirs() {
        assert!(d.exists(), "{}", d.display());
    }
    let (pod, sc) = pod_with(serde_json::json!(null), serde_json::json!(null));
    let mut l = launch(
        dir.path(),
        "exec python3 -c 'b = bytearray(200 * 1024 * 1024); print(len(b))'",
        &pod,
        &sc,
    );
    l.env
        .push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
    l.cgroup = cg.dirs().to_vec();
    let (code, out) = run(&l).await;
    assert_eq!(code, 137, "{out}");
    assert!(
        cg.oom_killed(),
        "the kernel's oom_kill counter must have moved"
    );
    // The limit values are in place.
    match &hierarchy {
        cgroup::Hierarchy::V1 { .. } => {
            let m = std::fs::read_to_string(cg.dirs()[0].join("memory.limit_in_bytes")).unwrap();
            assert_eq!(m.trim(), (50 * 1024 * 1024).to_string());
            let q = std::fs::read_to_string(cg.dirs()[1].join("cpu.cfs_quota_us")).unwrap();
            assert_eq!(q.trim(), "50000");
        }
        cgroup::Hierarchy::V2 { .. } => {
            let m = std::fs::read_to_string(cg.dirs()[0].join("memory.max")).unwrap();
            assert_eq!(m.trim(), (50 * 1024 * 1024).to_string());
        }
    }
    // A process within its limit is not counted as OOM-killed.
    let cg2 = pod_cg.container("fine", &plan).expect("container cgroup");
    let (pod, sc) = pod_with(serde_json::json!(null), serde_json::json!(null));
    let mut l = launch(dir.path(), "cat /proc/self/cgroup", &pod, &sc);
    l.cgroup = cg2.dirs().to_vec();
    let (code, out) = run(&l).await;
    assert_eq!(code, 0);
    assert!(!cg2.oom_killed());
    assert!(out.contains(&format!("/podrun/{uid}/fine")), "{out}");
    pod_cg.remove().await.expect("remove");
    for d in pod_cg.dirs() {
        assert!(!d.exists(), "{} must be gone", d.display());
    }
}

#[tokio::test]
async fn exec_probes_run_as_the_container_user_with_its_capabilities() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (pod, c) = pod_with(
        serde_json::json!({"runAsUser": 1234, "runAsGroup": 5678}),
        serde_json::json!({"allowPrivilegeEscalation": false}),
    );
    let l = launch(dir.path(), "sleep 30", &pod, &c);
    let process = ContainerProcess::spawn(&l).expect("spawn");
    let out = podrun_node::runtime::exec_in(
        &process,
        &[
            "sh".into(),
            "-c".into(),
            "id -u; id -g; grep -E 'CapBnd|NoNewPrivs' /proc/self/status".into(),
        ],
        &[("PATH".into(), "/usr/bin:/bin".into())],
        Duration::from_secs(10),
    )
    .await
    .expect("exec");
    let text = out.text();
    assert_eq!(out.exit_code, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..2], ["1234", "5678"], "{text}");
    let bnd = u64::from_str_radix(status_field(&text, "CapBnd:"), 16).unwrap();
    assert_eq!(bnd, CapSet::runtime_default().0);
    assert_eq!(status_field(&text, "NoNewPrivs:"), "1");
    process.signal(nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), process.wait()).await;
}
