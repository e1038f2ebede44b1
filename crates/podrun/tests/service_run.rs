//! Services through the real binary (root, real namespaces): a pod reaches a Service by
//! short name, by FQDN and by ClusterIP through the cluster DNS and the DNAT rules, an
//! unready pod drops out of the endpoints, `podrun get services` shows the ClusterIP,
//! and nothing is left behind afterwards.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{ChildGuard, Podrun, stderr, stdout};

fn manifest(dir: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: v1
kind: Pod
metadata:
  name: server-a
  labels:
    app: web
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Always
  containers:
  - name: http
    image: python
    command: ["python3", "-m", "http.server", "8080", "--directory", "{dir}/a"]
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
  name: server-b
  labels:
    app: web
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Always
  containers:
  - name: http
    image: python
    command: ["python3", "-m", "http.server", "9090", "--directory", "{dir}/b"]
    ports:
    - name: http
      containerPort: 9090
    readinessProbe:
      exec:
        command: ["test", "-f", "{dir}/ready-b"]
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  restartPolicy: Never
  containers:
  - name: curl
    image: curl
    command: ["sh", "{dir}/client.sh"]
"#
    )
}

/// The client: waits until both servers answered through the Service, checks the
/// FQDN and the ClusterIP, then makes server-b unready and checks that 20 requests in
/// a row land on server-a.
const CLIENT: &str = r#"
set -u
get() { curl -sS --max-time 2 "$1"; }
a=0; b=0
for i in $(seq 150); do
  case "$(get http://web/who)" in a) a=1;; b) b=1;; esac
  [ $a = 1 ] && [ $b = 1 ] && break
  sleep 0.2
done
[ $a = 1 ] && [ $b = 1 ] || { echo "never reached both endpoints: a=$a b=$b"; exit 1; }
fqdn=$(get http://web.default.svc.cluster.local/who) || exit 1
ip=$(getent hosts web.default.svc.cluster.local | cut -d' ' -f1)
byip=$(get "http://$ip/who") || exit 1
echo "fqdn=$fqdn clusterip=$ip byip=$byip"
rm -f "$DIR/ready-b"
sleep 3
for i in $(seq 20); do
  w=$(get http://web/who)
  [ "$w" = a ] || { echo "request $i landed on '$w' after server-b turned unready"; exit 1; }
done
echo "unready-dropped"
"#;

#[test]
fn pod_reaches_service_by_name_and_cluster_ip_and_unready_pod_drops_out() {
    let podrun = Podrun::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    for who in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(who)).unwrap();
        std::fs::write(dir.path().join(who).join("who"), who).unwrap();
    }
    std::fs::write(dir.path().join("ready-b"), "").unwrap();
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
    run.0
        .stdin
        .take()
        .unwrap()
        .write_all(manifest(&d).as_bytes())
        .unwrap();

    // While the run goes on, `podrun get services` shows the allocated ClusterIP.
    let start = Instant::now();
    let row = loop {
        let out = stdout(&podrun.run(&["get", "services"]));
        if let Some(row) = out.lines().find(|l| l.starts_with("web ")) {
            break row.to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no web Service row"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "ClusterIP", "{row}");
    assert!(cells[2].starts_with("198.19."), "{row}");
    assert_eq!(cells[4], "80/TCP", "{row}");

    let child = std::mem::replace(
        &mut run.0,
        std::process::Command::new("true").spawn().unwrap(),
    );
    let out = child.wait_with_output().unwrap();
    let logs = podrun.run(&["logs", "client"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "client logs:\n{}\nstdout:\n{}\nstderr:\n{}",
        stdout(&logs),
        stdout(&out),
        stderr(&out)
    );
    let logs = stdout(&logs);
    assert!(
        logs.contains(&format!("fqdn=a clusterip={} byip=", cells[2]))
            || logs.contains(&format!("fqdn=b clusterip={} byip=", cells[2])),
        "{logs}"
    );
    assert!(logs.contains("unready-dropped"), "{logs}");

    // The run removed its Service, its rules and released the ClusterIP.
    let save = std::process::Command::new("iptables-save")
        .output()
        .unwrap();
    let save = String::from_utf8_lossy(&save.stdout);
    assert!(
        !save.contains(&format!("{}/32", cells[2])),
        "rules for {} left:\n{save}",
        cells[2]
    );
    let alloc =
        std::fs::read_to_string(podrun.state_dir().join("services/clusterips")).unwrap_or_default();
    assert!(alloc.is_empty(), "{alloc}");
    assert!(
        !stdout(&podrun.run(&["get", "services"])).contains("web "),
        "Service still listed"
    );
}

fn chain_exists(chain: &str) -> bool {
    let save = std::process::Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&save.stdout).contains(&format!(":{chain} "))
}

#[test]
fn rules_of_a_killed_podrun_are_removed_by_the_next_start() {
    let podrun = Podrun::new();
    let manifest = r#"apiVersion: v1
kind: Service
metadata:
  name: leftover
spec:
  selector:
    app: leftover
  ports:
  - port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: sleeper
  labels:
    app: leftover
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sleep
    image: busybox
    command: ["sleep", "60"]
"#;
    let mut run = ChildGuard(
        podrun
            .command()
            .args(["run", common::HOST_ROOTFS, "-f", "-", "--timeout", "60s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    run.0
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    let pid = run.0.id();
    let chain = format!("PODRUN{pid}-SERVICES");
    let start = Instant::now();
    while !chain_exists(&chain) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{chain} never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    run.0.kill().unwrap();
    run.0.wait().unwrap();
    assert!(chain_exists(&chain), "SIGKILL cannot have removed {chain}");
    let dns_file = std::path::Path::new("/run/podrun/dns").join(pid.to_string());
    assert!(dns_file.exists(), "the run published no DNS names");

    let out = podrun.run_manifest(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: once\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: busybox\n    command: [\"true\"]\n",
        &["--timeout", "30s"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!chain_exists(&chain), "{chain} survived the next start");
    let filter = std::process::Command::new("iptables-save")
        .args(["-t", "filter"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&filter.stdout).contains(&chain));
    assert!(
        !dns_file.exists(),
        "{} survived the next start",
        dns_file.display()
    );
}
