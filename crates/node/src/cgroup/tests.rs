use std::path::Path;

use super::*;

const V1_MOUNTS: &str = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";

const V2_MOUNTS: &str = "\
proc /proc proc rw 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
";

fn container(resources: serde_json::Value) -> Container {
    serde_json::from_value(serde_json::json!({"name": "c", "resources": resources}))
        .expect("valid container")
}

#[test]
fn hybrid_host_without_v2_controllers_uses_v1() {
    // The unified mount of a hybrid host has no memory/cpu: v1 must be chosen.
    let h = decide_hierarchy(V1_MOUNTS, &|_: &Path| Some("hugetlb\n".into())).unwrap();
    assert_eq!(
        h,
        Hierarchy::V1 {
            memory: "/sys/fs/cgroup/memory".into(),
            cpu: "/sys/fs/cgroup/cpu".into()
        }
    );
}

#[test]
fn unified_host_with_controllers_uses_v2() {
    let h = decide_hierarchy(V2_MOUNTS, &|p: &Path| {
        (p == Path::new("/sys/fs/cgroup")).then(|| "cpuset cpu io memory pids\n".into())
    })
    .unwrap();
    assert_eq!(
        h,
        Hierarchy::V2 {
            root: "/sys/fs/cgroup".into()
        }
    );
    assert!(decide_hierarchy(V2_MOUNTS, &|_: &Path| Some("pids".into())).is_err());
    assert!(decide_hierarchy("proc /proc proc rw 0 0\n", &|_: &Path| None).is_err());
}

#[test]
fn resource_plan_table() {
    let cases = [
        (serde_json::json!(null), None, None, 2),
        (
            serde_json::json!({"limits": {"memory": "50Mi"}}),
            Some(52_428_800),
            None,
            2,
        ),
        (
            serde_json::json!({"limits": {"cpu": "500m"}}),
            None,
            Some(50_000),
            512,
        ),
        (
            serde_json::json!({"limits": {"cpu": "2"}, "requests": {"cpu": "250m"}}),
            None,
            Some(200_000),
            256,
        ),
        (
            serde_json::json!({"limits": {"cpu": "1m"}}),
            None,
            Some(1_000),
            2,
        ),
        (
            serde_json::json!({"requests": {"cpu": "1", "memory": "1Gi"}}),
            None,
            None,
            1024,
        ),
    ];
    for (i, (res, mem, quota, shares)) in cases.into_iter().enumerate() {
        let p = ResourcePlan::from_container(&container(res)).unwrap();
        assert_eq!(p.memory_limit, mem, "case {i}");
        assert_eq!(p.cpu_quota_us, quota, "case {i}");
        assert_eq!(p.cpu_shares, shares, "case {i}");
    }
    let err = ResourcePlan::from_container(&container(
        serde_json::json!({"limits": {"memory": "lots"}}),
    ));
    assert!(err.is_err());
}

#[test]
fn files_per_version() {
    let p = ResourcePlan {
        memory_limit: Some(1000),
        cpu_quota_us: Some(50_000),
        cpu_shares: 512,
    };
    let v1 = p.files(&Hierarchy::V1 {
        memory: "/m".into(),
        cpu: "/c".into(),
    });
    assert!(v1.contains(&(0, "memory.limit_in_bytes", "1000".into())));
    assert!(v1.contains(&(1, "cpu.cfs_quota_us", "50000".into())));
    assert!(v1.contains(&(1, "cpu.shares", "512".into())));
    let v2 = p.files(&Hierarchy::V2 { root: "/u".into() });
    assert!(v2.contains(&(0, "memory.max", "1000".into())));
    assert!(v2.contains(&(0, "cpu.max", "50000 100000".into())));
    assert!(v2.contains(&(0, "cpu.weight", "20".into())));
    let unlimited = ResourcePlan {
        memory_limit: None,
        cpu_quota_us: None,
        cpu_shares: 2,
    };
    let v2 = unlimited.files(&Hierarchy::V2 { root: "/u".into() });
    assert!(v2.contains(&(0, "cpu.max", "max 100000".into())));
    assert!(v2.contains(&(0, "cpu.weight", "1".into())));
    assert!(!v2.iter().any(|(_, f, _)| *f == "memory.max"));
}

#[test]
fn weight_conversion_matches_runc() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
}

#[test]
fn oom_counter_is_read_from_either_file() {
    assert_eq!(
        oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
        Some(3)
    );
    assert_eq!(
        oom_kill_count("low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\n"),
        Some(1)
    );
    assert_eq!(oom_kill_count("oom_kill_disable 0\n"), None);
}

#[test]
fn qos_class_table() {
    let pod = |containers: serde_json::Value| -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({"spec": {"containers": containers}})).unwrap()
    };
    let cases = [
        (serde_json::json!([{"name": "a"}]), "BestEffort"),
        (
            serde_json::json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]),
            "Guaranteed",
        ),
        (
            serde_json::json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}}]),
            "Guaranteed",
        ),
        (
            serde_json::json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]),
            "Burstable",
        ),
        (
            serde_json::json!([{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}]),
            "Burstable",
        ),
        (
            serde_json::json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}, {"name": "b"}]),
            "Burstable",
        ),
        (
            serde_json::json!([{"name": "a", "resources": {"requests": {"cpu": "0"}}}]),
            "BestEffort",
        ),
    ];
    for (i, (containers, want)) in cases.into_iter().enumerate() {
        assert_eq!(qos_class(&pod(containers)), want, "case {i}");
    }
}

#[test]
fn pod_level_values_sum_containers_when_all_are_limited() {
    let pod = |spec: serde_json::Value| -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({"spec": spec})).unwrap()
    };
    let limited = |name: &str, mem: &str, cpu: &str| serde_json::json!({"name": name, "resources": {"limits": {"memory": mem, "cpu": cpu}}});
    let p = ResourcePlan::for_pod(&pod(serde_json::json!({
        "containers": [limited("a", "100Mi", "500m"), limited("b", "50Mi", "250m")],
        "initContainers": [limited("i", "120Mi", "2")],
    })))
    .unwrap();
    assert_eq!(p.memory_limit, Some(150 * 1024 * 1024));
    // The init container's larger cpu limit wins.
    assert_eq!(p.cpu_quota_us, Some(200_000));
    assert_eq!(p.cpu_shares, 2048);
    // A sidecar counts with the regular containers.
    let mut sidecar = limited("s", "10Mi", "100m");
    sidecar["restartPolicy"] = "Always".into();
    let p = ResourcePlan::for_pod(&pod(serde_json::json!({
        "containers": [limited("a", "100Mi", "500m")],
        "initContainers": [sidecar],
    })))
    .unwrap();
    assert_eq!(p.memory_limit, Some(110 * 1024 * 1024));
    // One container without a limit leaves the pod unbounded.
    let p = ResourcePlan::for_pod(&pod(serde_json::json!({
        "containers": [limited("a", "100Mi", "500m"), {"name": "b"}],
    })))
    .unwrap();
    assert_eq!((p.memory_limit, p.cpu_quota_us), (None, None));
    assert_eq!(p.cpu_shares, 514);
}
