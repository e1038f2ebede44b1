//! Drain without loss (root, real namespaces, the real binary, every pod injected): a
//! client sends keep-alive HTTP requests at a fixed rate through its proxy to a Service
//! with two replicas; the replica the client's connection reached is deleted in the
//! middle of the load, and not one request may fail.
//!
//! As in Kubernetes, the app is told to stop at the moment its endpoint is removed.
//! With the `preStop` sleep Kubernetes recommends, the app keeps serving while the
//! removal reaches the Service rules and the draining proxy answers with `Connection:
//! close`, after which the client's next connection lands on the other replica.
//! Without it, the client's proxy does what Envoy does under Istio's default outbound
//! retry policy: a kept connection the leaving replica closed gets no request, and a
//! `503` or a failed connect is tried again on a new connection, which the Service
//! sends to the replica that stays.

mod common;

use common::{Podrun, stderr, stdout, wait_for};

/// Requests the client sends, one every 25 ms (5 s of load).
const REQUESTS: u32 = 200;

/// A replica; `pre_stop`: with a 2 s `preStop` sleep.
fn server(name: &str, dir: &str, pre_stop: bool) -> String {
    let lifecycle = if pre_stop {
        "    lifecycle:\n      preStop:\n        sleep: {seconds: 2}\n"
    } else {
        ""
    };
    format!(
        r#"---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: drain}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: http
    image: python
    command: ["python3", "-m", "http.server", "8080", "--directory", "{dir}/{name}"]
    ports:
    - {{name: http, containerPort: 8080}}
    readinessProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 1
{lifecycle}"#
    )
}

fn manifest(dir: &str, pre_stop: bool) -> String {
    let mut m = String::from(
        r#"apiVersion: v1
kind: Service
metadata: {name: drain}
spec:
  selector: {app: drain}
  ports:
  - {name: http, port: 80, targetPort: http}
"#,
    );
    m.push_str(&server("a", dir, pre_stop));
    m.push_str(&server("b", dir, pre_stop));
    m.push_str(&common::load_client_pod(dir, REQUESTS));
    m
}

/// The client: waits for the go file, then sends the requests on one keep-alive
/// connection (a new one only when the server closes it, as HTTP/1.1 clients do),
/// writing the replica that answered to `midload` after 40, and prints the tally.
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
for i in range(n):
    delay = start + i * 0.025 - time.time()
    if delay > 0:
        time.sleep(delay)
    if i == 40:
        # Which replica the connection reached: the test deletes that one.
        with open(d + "/midload.tmp", "w") as f:
            f.write(last)
        os.rename(d + "/midload.tmp", d + "/midload")
    try:
        if conn is None:
            conn = http.client.HTTPConnection("drain", 80, timeout=5)
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
print("ok=%d failed=%d seen=%s errors=%s" % (ok, failed, ",".join(sorted(seen)), errors[:10]))
"#;

fn ready(podrun: &Podrun, name: &str) -> bool {
    let out = stdout(&podrun.run(&["get", "pods", name]));
    out.lines()
        .nth(1)
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("2/2"))
}

#[test]
fn deleting_a_replica_mid_load_fails_no_request() {
    drain_under_load(true);
}

#[test]
fn deleting_a_replica_mid_load_without_a_prestop_sleep_fails_no_request() {
    drain_under_load(false);
}

fn drain_under_load(pre_stop: bool) {
    // The two variants create the same Service, which two podruns on one host give the
    // same ClusterIP: run concurrently, one's teardown cuts the other's Service off.
    let _turn = common::host_turn("podrun-reliability-drain.lock");
    let podrun = Podrun::with_sidecars();
    let dir = common::served_dirs(&["a", "b"], CLIENT);
    let d = dir.path().display().to_string();

    let mut run =
        podrun.spawn_run_captured(&manifest(&d, pre_stop), &["--inject", "--timeout", "120s"]);
    wait_for("both replicas ready", || {
        ready(&podrun, "a") && ready(&podrun, "b")
    });
    std::fs::write(dir.path().join("go"), "").unwrap();
    wait_for("the load under way", || dir.path().join("midload").exists());
    // The replica the client's keep-alive connection reached goes away.
    let victim = std::fs::read_to_string(dir.path().join("midload")).unwrap();
    assert!(victim == "a" || victim == "b", "{victim:?}");
    let deleted = podrun.run(&["delete", "pod", &victim]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));

    let logs = common::finish_load_client(&podrun, &mut run);
    let tally = logs
        .lines()
        .find(|l| l.starts_with("ok="))
        .unwrap_or_else(|| panic!("no tally in:\n{logs}"));
    let proxy_log = |pod: &str| stdout(&podrun.run(&["logs", pod, "-c", "istio-proxy"]));
    assert!(
        tally.starts_with(&format!("ok={REQUESTS} failed=0 seen=a,b ")),
        "{tally}\nclient proxy:\n{}\na proxy:\n{}\nb proxy:\n{}",
        proxy_log("client"),
        proxy_log("a"),
        proxy_log("b")
    );
    eprintln!("preStop {pre_stop}: deleted {victim}; {tally}");
}
