//! Pod sandboxes through the real binary (root, real namespaces): pod-to-pod traffic by
//! IP, hostname, process isolation, hostNetwork, and that a SIGKILLed podrun's network
//! leftovers are reported by `podrun doctor` and removed by the next start.

mod common;

use std::time::{Duration, Instant};

use common::{ChildGuard, Podrun, stderr, stdout, wait_for};

fn spawn_run(podrun: &Podrun, manifest: &str) -> ChildGuard {
    podrun.spawn_run(manifest, &[])
}

fn get_pod(podrun: &Podrun, name: &str) -> serde_json::Value {
    let out = podrun.run(&["get", "pod", name, "-o", "json"]);
    serde_json::from_str(&stdout(&out)).unwrap_or(serde_json::Value::Null)
}

fn running_ip(podrun: &Podrun, name: &str) -> (String, String) {
    let mut found = None;
    wait_for(&format!("pod {name} Running with an IP"), || {
        let pod = get_pod(podrun, name);
        let ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready && let Some(ip) = pod["status"]["podIP"].as_str() {
            found = Some((
                ip.to_string(),
                pod["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
        found.is_some()
    });
    found.unwrap()
}

fn netns_names() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

#[test]
fn pods_reach_each_other_by_ip_and_see_only_their_own_processes() {
    let podrun = Podrun::new();
    let marker = format!("sbweb{}", std::process::id());
    let server = spawn_run(
        &podrun,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: http
    image: python
    command: ["python3", "-c", "import http.server,sys; sys.argv=['{marker}']; http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port=8080, bind='0.0.0.0')"]
    readinessProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 1
"#
        ),
    );
    let (ip, uid) = running_ip(&podrun, "web");
    assert!(ip.starts_with("198.18."), "pod IP from the pod CIDR: {ip}");
    let netns = format!("podrun-{}", &uid[..8]);
    assert!(netns_names().contains(&netns), "ip netns sees {netns}");
    assert!(link_exists(&format!("podrunv{}", &uid[..8])), "host veth");
    assert!(link_exists("podrun0"), "bridge");

    let (m1, m2) = marker.split_at(3);
    let client = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: python
    command:
    - sh
    - -c
    - |
      python3 -c "import urllib.request; print('status', urllib.request.urlopen('http://{ip}:8080/', timeout=5).status)"
      echo "hostname=$(hostname)"
      echo "etc=$(cat /etc/hostname)"
      echo "procs=$(ls /proc | grep -c '^[0-9]')"
      # Split so this script's own command line does not contain the marker.
      if grep -qs "{m1}""{m2}" /proc/[0-9]*/cmdline; then echo sees-web; else echo no-web; fi
      echo "ip=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(("{ip}", 9)); print(s.getsockname()[0])')"
"#
    );
    let out = podrun.run_manifest(&client, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let logs = stdout(&podrun.run(&["logs", "client"]));
    assert!(logs.contains("status 200"), "pod-to-pod HTTP by IP: {logs}");
    assert!(logs.contains("hostname=client"), "{logs}");
    assert!(logs.contains("etc=client"), "{logs}");
    assert!(
        logs.contains("no-web"),
        "the client must not see web's processes: {logs}"
    );
    let procs: usize = logs
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .and_then(|n| n.trim().parse().ok())
        .expect("procs line");
    assert!(procs < 10, "only the client's own processes: {procs}");
    let client_ip = get_pod(&podrun, "client")["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        logs.contains(&format!("ip={client_ip}")),
        "{logs} vs {client_ip}"
    );
    assert_ne!(client_ip, ip);

    // A podrun killed with its pod running: the next start removes the sandbox.
    let mut server = server;
    server.0.kill().expect("SIGKILL podrun");
    server.0.wait().expect("reap podrun");
    drop(server);
    let out = podrun.run(&["doctor"]);
    assert!(
        stdout(&out).contains(&netns),
        "doctor lists {netns}: {}",
        stdout(&out)
    );
    let out = podrun.run_manifest(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: next}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: c, image: busybox, command: [\"true\"]}\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("removed the sandbox of pod default/web"),
        "{}",
        stderr(&out)
    );
    assert!(!netns_names().contains(&netns), "netns removed");
    assert!(
        !link_exists(&format!("podrunv{}", &uid[..8])),
        "veth removed"
    );
    assert!(
        !std::fs::read_dir("/run/podrun/ipam/198.18.0.0_16")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .starts_with(&uid)),
        "address released"
    );
}

#[test]
fn host_network_pod_sees_the_host_interfaces() {
    let podrun = Podrun::new();
    let host_links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo" && !n.starts_with("podrunv") && !n.starts_with("veth"))
        .collect();
    assert!(!host_links.is_empty());
    let out = podrun.run_manifest(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: hn}\nspec:\n  hostNetwork: true\n  restartPolicy: Never\n  containers:\n  - {name: c, image: busybox, command: [\"cat\", \"/proc/net/dev\"]}\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let logs = stdout(&podrun.run(&["logs", "hn"]));
    for l in &host_links {
        assert!(logs.contains(&format!("{l}:")), "{l} visible: {logs}");
    }
    let pod = get_pod(&podrun, "hn");
    assert_eq!(pod["status"]["podIP"], pod["status"]["hostIP"]);
}

#[test]
fn shared_process_namespace_lets_containers_see_each_other() {
    let podrun = Podrun::new();
    let marker = format!("sbshared{}", std::process::id());
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: shared}}
spec:
  shareProcessNamespace: true
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: side
    image: busybox
    restartPolicy: Always
    command: ["sh", "-c", "exec -a {marker} sleep 1000"]
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "sleep 0.3; if grep -qs {marker} /proc/[0-9]*/cmdline; then echo sees-side; fi; cat /proc/1/comm"]
"#
    );
    let out = podrun.run_manifest(&manifest, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let logs = stdout(&podrun.run(&["logs", "shared", "-c", "main"]));
    assert!(logs.contains("sees-side"), "{logs}");
    assert!(
        logs.contains("podrun-pause"),
        "PID 1 is the pod's init: {logs}"
    );
    assert!(common::processes_with(&marker).is_empty());
}

#[test]
fn churn_of_200_pods_leaves_no_namespace_veth_address_or_process() {
    let podrun = Podrun::new();
    let mut manifest = String::new();
    for i in 0..200 {
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: churn-{i}}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: c, image: busybox, command: [\"true\"]}}\n"
        ));
    }
    let start = Instant::now();
    let out = podrun.run_manifest(&manifest, &["--timeout", "120s"]);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(took < Duration::from_secs(120), "200 pods took {took:?}");
    let list: serde_json::Value =
        serde_json::from_str(&stdout(&podrun.run(&["get", "pods", "-o", "json"]))).unwrap();
    let uids: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(uids.len(), 200);
    let netns = netns_names();
    let held: Vec<String> = std::fs::read_dir("/run/podrun/ipam/198.18.0.0_16")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    for uid in &uids {
        let u8 = &uid[..8];
        assert!(
            !netns.contains(&format!("podrun-{u8}")),
            "netns of {uid} left"
        );
        assert!(!link_exists(&format!("podrunv{u8}")), "veth of {uid} left");
        assert!(
            !held.iter().any(|h| h.starts_with(uid.as_str())),
            "address of {uid} left"
        );
    }
    let records = podrun.state_dir().join("sandboxes");
    let left = std::fs::read_dir(&records).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "sandbox records left");
}
