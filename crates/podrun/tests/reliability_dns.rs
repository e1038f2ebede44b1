//! Cluster DNS and Services stay reachable while pods come and go (root, real
//! namespaces, the real binary).
//!
//! A bridge without a hardware address of its own takes the lowest address among its
//! ports, and takes another when that port leaves; the pods still on the bridge keep the
//! old one in their ARP cache for the gateway (which is also the cluster DNS address)
//! and go unanswered until the entry expires, 15 to 45 s later. The test arranges the
//! worst case on purpose: it gives one pod's veth the lowest possible locally
//! administered address, lets a surviving pod talk to the gateway, deletes that pod,
//! and asks again.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{ChildGuard, Podrun, stderr, stdout, wait_for};

/// Lower than any address the kernel gives a veth (random, locally administered).
const LOWEST_MAC: &str = "02:00:00:00:00:01";

fn manifest(dir: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: lowmac
spec:
  selector:
    app: lowmac
  ports:
  - port: 80
    targetPort: http
---
apiVersion: v1
kind: Pod
metadata:
  name: server
  labels:
    app: lowmac
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: http
    image: python
    command: ["python3", "-m", "http.server", "8080", "--directory", "{dir}/www"]
    ports:
    - name: http
      containerPort: 8080
    readinessProbe:
      tcpSocket:
        port: 8080
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: leaver
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sleep
    image: busybox
    command: ["sleep", "300"]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  restartPolicy: Never
  dnsConfig:
    options:
    - name: timeout
      value: "1"
    - name: attempts
      value: "1"
  containers:
  - name: client
    image: curl
    command: ["sh", "{dir}/client.sh"]
"#
    )
}

/// The client: times its first lookup, reaches the Service (so its ARP cache holds the
/// gateway's address), waits for the leaver to be deleted, then looks the Service up and
/// calls its ClusterIP again, each on a short deadline.
const CLIENT: &str = r#"
set -u
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
wait_file() {
  for i in $(seq 600); do [ -f "$1" ] && return 0; sleep 0.05; done
  echo "never saw $1"; exit 1
}
wait_file "$DIR/start"
t=$(date +%s%N)
first=$(getent hosts lowmac | cut -d' ' -f1)
echo "first-lookup=$first ms=$(ms $t)"
for i in $(seq 150); do
  [ "$(curl -sS --max-time 1 http://lowmac/who 2>/dev/null)" = ok ] && break
  sleep 0.2
done
[ "$(curl -sS --max-time 2 http://lowmac/who)" = ok ] || { echo "Service never answered"; exit 1; }
touch "$DIR/phase1"
wait_file "$DIR/go"
t=$(date +%s%N)
ip=$(getent hosts lowmac.default.svc.cluster.local | cut -d' ' -f1)
echo "after-lookup=$ip ms=$(ms $t)"
[ -n "$ip" ] || exit 1
t=$(date +%s%N)
body=$(curl -sS --max-time 2 "http://$ip/who") || { echo "ClusterIP $ip unanswered"; exit 1; }
echo "after-clusterip=$body ms=$(ms $t)"
"#;

/// The host end of the veth of pod `name`, from the sandbox records.
fn veth_of(state: &Path, name: &str) -> Option<String> {
    std::fs::read_dir(state.join("sandboxes"))
        .ok()?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .find(|r| r["name"] == name)
        .and_then(|r| r["veth"].as_str().map(String::from))
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The milliseconds a client log line `key=… ms=N` reports.
fn millis(logs: &str, key: &str) -> u64 {
    let line = logs
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} line in:\n{logs}"));
    line.rsplit("ms=")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ms in {line:?}"))
}

#[test]
fn dns_and_cluster_ips_keep_answering_when_the_pod_with_the_lowest_mac_leaves() {
    let podrun = Podrun::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/who"), "ok").unwrap();
    std::fs::write(dir.path().join("client.sh"), format!("DIR={d}\n{CLIENT}")).unwrap();

    let mut run = ChildGuard(
        podrun
            .command()
            .args(["run", common::HOST_ROOTFS, "-f", "-", "--timeout", "90s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::io::Write::write_all(&mut run.0.stdin.take().unwrap(), manifest(&d).as_bytes()).unwrap();

    // The leaver's veth gets the lowest address on the bridge before the client sends
    // anything, so a bridge that follows its ports would now answer with this address.
    let mut veth = None;
    wait_for("the leaver's veth", || {
        veth = veth_of(podrun.state_dir(), "leaver").filter(|v| link_exists(v));
        veth.is_some()
    });
    let veth = veth.unwrap();
    let set = std::process::Command::new("ip")
        .args(["link", "set", "dev", &veth, "address", LOWEST_MAC])
        .output()
        .unwrap();
    assert!(set.status.success(), "ip link set: {}", stderr(&set));
    std::fs::write(dir.path().join("start"), "").unwrap();

    wait_for("the client reaching the Service", || {
        dir.path().join("phase1").exists()
    });
    let deleted = podrun.run(&["delete", "pod", "leaver", "--grace-period", "0"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    wait_for("the leaver's veth to go", || !link_exists(&veth));
    std::fs::write(dir.path().join("go"), "").unwrap();

    let child = std::mem::replace(
        &mut run.0,
        std::process::Command::new("true").spawn().unwrap(),
    );
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let logs = stdout(&podrun.run(&["logs", "client"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "client logs:\n{logs}\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    // Answered in milliseconds: a lost query would take the resolver's 1 s timeout.
    for key in [
        "first-lookup=198.19.",
        "after-lookup=198.19.",
        "after-clusterip=ok",
    ] {
        let ms = millis(&logs, key);
        assert!(ms < 900, "{key}: {ms} ms\n{logs}");
    }
}
