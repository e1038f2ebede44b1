//! Rolling a Deployment under load (root, real namespaces, the real binary, every pod
//! injected): a client sends keep-alive HTTP requests at a fixed rate through its proxy
//! to a Service over a 2-replica Deployment; mid-load the Deployment's template changes
//! (as `kubectl set image` would, written to the store from another process), the
//! controller surges a new pod, waits for it to be available and only then removes an
//! old one, twice; not one request may fail, and the answers move from v1 to v2.
//!
//! Two variants, as for deleting a replica (reliability_drain.rs, which explains the
//! order of endpoint removal, proxy drain and termination): the replicas carry the
//! `preStop` sleep Kubernetes recommends for apps behind a Service, or none, where the
//! client's proxy retries as Envoy does under Istio's default policy.

mod common;

use std::time::{Duration, Instant};

use common::{Podrun, stdout, wait_for};
use podrun_store::ResourceType;
use serde_json::Value;

/// At most this many requests, one every 25 ms (30 s); the test stops the client
/// earlier, a second after the rollout completed.
const MAX_REQUESTS: u32 = 1200;

fn manifest(dir: &str, pre_stop: bool) -> String {
    let lifecycle = if pre_stop {
        "        lifecycle:\n          preStop:\n            sleep: {seconds: 2}\n"
    } else {
        ""
    };
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: roll}}
spec:
  selector: {{app: roll}}
  ports:
  - {{name: http, port: 80, targetPort: http}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: roll}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: roll}}}}
  template:
    metadata: {{labels: {{app: roll}}}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: http
        image: python
        command: ["python3", "-m", "http.server", "8080", "--directory", "{dir}/v1"]
        ports:
        - {{name: http, containerPort: 8080}}
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
{lifecycle}{client}"#,
        client = common::load_client_pod(dir, MAX_REQUESTS)
    )
}

/// The client: waits for the go file, then sends requests on one keep-alive connection
/// (a new one only when the server closes it) until the stop file appears, and prints
/// the tally with the version that answered last.
const CLIENT: &str = r#"
import http.client, os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
for _ in range(600):
    if os.path.exists(d + "/go"):
        break
    time.sleep(0.05)
ok, failed, errors, seen, last = 0, 0, [], set(), ""
conn = None
start = time.time()
sent = 0
for i in range(n):
    if os.path.exists(d + "/stop"):
        break
    delay = start + i * 0.025 - time.time()
    if delay > 0:
        time.sleep(delay)
    if i == 40:
        open(d + "/midload", "w").close()
    sent += 1
    try:
        if conn is None:
            conn = http.client.HTTPConnection("roll", 80, timeout=5)
        conn.request("GET", "/who")
        r = conn.getresponse()
        body = r.read().decode()
        if r.status == 200:
            ok += 1
            seen.add(body)
            last = body
        else:
            failed += 1
            errors.append((i, r.status))
        if (r.getheader("connection") or "").lower() == "close":
            conn.close()
            conn = None
    except Exception as e:
        failed += 1
        errors.append((i, repr(e)))
        if conn is not None:
            conn.close()
        conn = None
print("sent=%d ok=%d failed=%d seen=%s last=%s errors=%s" % (sent, ok, failed, ",".join(sorted(seen)), last, errors[:10]))
"#;

/// The Deployment as stored (`null` until `podrun run` created it).
fn deployment(podrun: &Podrun) -> Value {
    podrun_store_sqlite::SqliteStore::open(podrun.state_dir())
        .ok()
        .and_then(|s| {
            s.get(&ResourceType::DEPLOYMENTS, Some("default"), "roll")
                .ok()
        })
        .unwrap_or(Value::Null)
}

fn rolled_out(d: &Value) -> bool {
    let n = |p: &str| d.pointer(p).and_then(Value::as_i64);
    n("/status/observedGeneration") == n("/metadata/generation")
        && n("/status/updatedReplicas") == Some(2)
        && n("/status/replicas") == Some(2)
        && n("/status/availableReplicas") == Some(2)
}

#[test]
fn rolling_a_deployment_mid_load_fails_no_request() {
    roll_under_load(true);
}

#[test]
fn rolling_a_deployment_mid_load_without_a_prestop_sleep_fails_no_request() {
    roll_under_load(false);
}

fn roll_under_load(pre_stop: bool) {
    // The drain tests' lock: podruns on one host give their first Service the same
    // ClusterIP, so these tests take turns.
    let _turn = common::host_turn("podrun-reliability-drain.lock");
    let podrun = Podrun::with_sidecars();
    let dir = common::served_dirs(&["v1", "v2"], CLIENT);
    let d = dir.path().display().to_string();

    let mut run =
        podrun.spawn_run_captured(&manifest(&d, pre_stop), &["--inject", "--timeout", "120s"]);
    wait_for("both replicas available", || {
        rolled_out(&deployment(&podrun))
    });
    std::fs::write(dir.path().join("go"), "").unwrap();
    wait_for("the load under way", || dir.path().join("midload").exists());

    // `kubectl set image`: a new template, written from this other process.
    let mut d = deployment(&podrun);
    let containers = d
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
        .expect("containers");
    let http = containers
        .iter_mut()
        .find(|c| c["name"] == "http")
        .expect("the http container");
    let dir_arg = http["command"]
        .as_array_mut()
        .and_then(|c| c.last_mut())
        .expect("the directory argument");
    *dir_arg = format!("{}/v2", dir.path().display()).into();
    let store = podrun_store_sqlite::SqliteStore::open(podrun.state_dir()).expect("store");
    store
        .update(&ResourceType::DEPLOYMENTS, Some("default"), "roll", d)
        .expect("new template");
    let rolled = Instant::now();
    wait_for("the rollout to complete", || {
        let d = deployment(&podrun);
        d.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
            .and_then(Value::as_str)
            == Some("2")
            && rolled_out(&d)
    });
    let took = rolled.elapsed();
    // A second of load on the new replicas alone, then the client stops.
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(dir.path().join("stop"), "").unwrap();

    let logs = common::finish_load_client(&podrun, &mut run);
    let tally = logs
        .lines()
        .find(|l| l.starts_with("sent="))
        .unwrap_or_else(|| panic!("no tally in:\n{logs}"));
    let sent: u32 = tally
        .trim_start_matches("sent=")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("sent");
    assert!(
        tally.starts_with(&format!(
            "sent={sent} ok={sent} failed=0 seen=v1,v2 last=v2 "
        )),
        "{tally}\nclient proxy:\n{}",
        stdout(&podrun.run(&["logs", "client", "-c", "istio-proxy"]))
    );
    eprintln!("preStop {pre_stop}: rollout took {took:?}; {tally}");
}
