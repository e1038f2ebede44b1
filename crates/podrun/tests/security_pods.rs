//! `podrun run` honouring securityContext, resources and the data volumes: an OOM-killed
//! container is `OOMKilled` with exit code 137 and its cgroup is gone after the pod;
//! runAsNonRoot is refused with the kubelet's message; configMap, secret, downwardAPI,
//! projected and memory-backed emptyDir volumes show their content, modes and owners.
//!
//! These tests need root (namespaces, setuid, cgroups, tmpfs) and fail loudly without it.

mod common;

use std::time::{Duration, Instant};

use common::{ChildGuard, Podrun, stderr, stdout};

fn pod_json(podrun: &Podrun, name: &str) -> serde_json::Value {
    let json = stdout(&podrun.run(&["get", "pod", name, "-o", "json"]));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// Every directory a pod's cgroup could be in, whatever the host's cgroup version.
fn cgroup_dirs(uid: &str) -> Vec<std::path::PathBuf> {
    let h = podrun_node::cgroup::host().expect("cgroups on this host");
    h.pod_dirs(uid)
}

#[test]
fn memory_limit_breach_shows_oom_killed_137_and_the_cgroup_is_removed() {
    let podrun = Podrun::new();
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: python
    command: ["python3", "-c", "b = bytearray(200 * 1024 * 1024); print(len(b))"]
    resources:
      limits: {memory: 50Mi, cpu: "1"}
"#;
    let out = podrun.run_manifest(manifest, &["--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("OOMKilled"), "{}", stdout(&out));
    let pod = pod_json(&podrun, "hog");
    let term = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["reason"], "OOMKilled", "{pod}");
    assert_eq!(term["exitCode"], 137, "{pod}");
    assert_eq!(pod["status"]["phase"], "Failed");
    assert_eq!(pod["status"]["qosClass"], "Guaranteed", "{pod}");
    let uid = pod["metadata"]["uid"].as_str().expect("uid");
    for d in cgroup_dirs(uid) {
        assert!(!d.exists(), "{} must be removed with the pod", d.display());
    }
}

#[test]
fn run_as_non_root_without_a_user_is_refused_with_the_kubelet_message() {
    let podrun = Podrun::new();
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: strict}
spec:
  restartPolicy: Never
  securityContext: {runAsNonRoot: true}
  containers:
  - {name: app, image: busybox, command: ["true"]}
"#;
    let child = podrun
        .command()
        .args(["run", common::HOST_ROOTFS, "-f", "-", "--timeout", "20s"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("podrun runs");
    let mut child = ChildGuard(child);
    {
        use std::io::Write;
        let mut stdin = child.0.stdin.take().expect("stdin");
        stdin.write_all(manifest.as_bytes()).expect("manifest");
    }
    // The kubelet keeps the container waiting (and retrying); look while it does.
    let deadline = Instant::now() + Duration::from_secs(15);
    let pod = loop {
        let json = stdout(&podrun.run(&["get", "pod", "strict", "-o", "json"]));
        if json.contains("runAsNonRoot") && json.contains("waiting") {
            break serde_json::from_str::<serde_json::Value>(&json).expect("pod json");
        }
        assert!(
            Instant::now() < deadline,
            "no CreateContainerConfigError seen: {json}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let uid = pod["metadata"]["uid"].as_str().expect("uid");
    let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(waiting["reason"], "CreateContainerConfigError", "{pod}");
    assert_eq!(
        waiting["message"],
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"strict_default({uid})\", container: app)"
        ),
        "{pod}"
    );
}

#[test]
fn volumes_and_identity_are_what_the_spec_says() {
    let podrun = Podrun::new();
    let manifest = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {app.conf: "level=debug", other: "x"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: s3cr3t}
---
apiVersion: v1
kind: Pod
metadata:
  name: vols
  labels: {app: vols}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000, supplementalGroups: [4000]}
  containers:
  - name: app
    image: busybox
    command:
    - sh
    - -c
    - |
      echo "id $(id -u) $(id -g) $(id -G)"
      echo "cfg $(cat /etc/cfg/conf) $(stat -c %a /etc/cfg/conf)"
      echo "secret $(cat /etc/creds/token) $(stat -c '%a %g' /etc/creds/token)"
      echo "labels $(cat /etc/info/labels)"
      echo "name $(cat /etc/info/name) $(cat /etc/info/mem)"
      echo "projected $(cat /etc/all/conf) $(cat /etc/all/token) $(cat /etc/all/ns)"
      echo "cache $(stat -f -c %T /cache) $(stat -c '%a %g' /cache)"
      echo "sub $(cat /sub/file)"
      touch /etc/cfg/new 2>/dev/null || echo "cfg read-only"
      echo hi > /cache/f && echo "cache writable"
      grep NoNewPrivs /proc/self/status
    securityContext: {allowPrivilegeEscalation: false}
    resources:
      limits: {memory: 64Mi}
    volumeMounts:
    - {name: cfg, mountPath: /etc/cfg}
    - {name: creds, mountPath: /etc/creds}
    - {name: info, mountPath: /etc/info}
    - {name: all, mountPath: /etc/all}
    - {name: cache, mountPath: /cache}
    - {name: all, mountPath: /sub/file, subPath: conf}
  volumes:
  - name: cfg
    configMap:
      name: settings
      items: [{key: app.conf, path: conf, mode: 384}]
  - name: creds
    secret: {secretName: creds, defaultMode: 256}
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: mem, resourceFieldRef: {containerName: app, resource: limits.memory, divisor: 1Mi}}
  - name: all
    projected:
      sources:
      - configMap: {name: settings, items: [{key: app.conf, path: conf}]}
      - secret: {name: creds}
      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
  - name: cache
    emptyDir: {medium: Memory, sizeLimit: 8Mi}
"#;
    let out = podrun.run_manifest(manifest, &["--timeout", "60s"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    let logs = stdout(&podrun.run(&["logs", "vols"]));
    let expect = [
        "id 1000 3000 3000 2000 4000",
        "cfg level=debug 640",
        "secret s3cr3t 440 2000",
        "labels app=\"vols\"",
        "name vols 64",
        "projected level=debug s3cr3t default",
        "cache tmpfs 2777 2000",
        "sub level=debug",
        "cfg read-only",
        "cache writable",
        "NoNewPrivs:\t1",
    ];
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines, expect, "{logs}");
    // The memory-backed emptyDir was unmounted with the pod.
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        podrun_node::volume::mounts_under(&info, podrun.state_dir()).is_empty(),
        "{info}"
    );
}
