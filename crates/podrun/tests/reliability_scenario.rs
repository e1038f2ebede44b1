//! A first user's manifest, end to end (root, real namespaces, the real binary): a
//! Service `web` with a named `targetPort` in front of a Python HTTP server, a client
//! running as UID 1234 without capabilities whose init container waits for `web` to
//! resolve and whose app calls it by short name, by `web.default` and resolves the FQDN,
//! and a pod that is OOMKilled about a second in (its veth leaves the bridge while the
//! client is talking). Every lookup must be answered in milliseconds.

mod common;

use common::{Podrun, stderr, stdout};

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
  - port: 80
    targetPort: http
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: http
    image: python
    command: ["python3", "-m", "http.server", "8080", "--directory", "{dir}"]
    ports:
    - name: http
      containerPort: 8080
    readinessProbe:
      tcpSocket:
        port: http
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  restartPolicy: Never
  securityContext:
    runAsUser: 1234
    runAsGroup: 1234
  initContainers:
  - name: wait-for-web
    image: busybox
    command:
    - sh
    - -c
    - |
      t=$(date +%s%N)
      for i in $(seq 100); do getent hosts web && break; sleep 0.1; done
      echo "init-lookup ms=$(( ($(date +%s%N) - t) / 1000000 ))"
      getent hosts web >/dev/null
    securityContext:
      capabilities:
        drop: ["ALL"]
  containers:
  - name: curl
    image: curl
    command:
    - sh
    - -c
    - |
      set -u
      ms() {{ echo $(( ($(date +%s%N) - $1) / 1000000 )); }}
      # The Service answers once the server is Ready; until then, retry (bounded).
      for i in $(seq 150); do
        [ "$(curl -sS --max-time 1 http://web/who 2>/dev/null)" = ok ] && break
        sleep 0.2
      done
      for n in 1 2 3 4 5 6 7 8 9 10; do
        t=$(date +%s%N)
        a=$(curl -sS --max-time 3 http://web/who) || {{ echo "web unanswered"; exit 1; }}
        b=$(curl -sS --max-time 3 http://web.default/who) || {{ echo "web.default unanswered"; exit 1; }}
        ip=$(getent hosts web.default.svc.cluster.local | cut -d' ' -f1)
        [ "$a$b" = okok ] && [ -n "$ip" ] || {{ echo "round $n: a=$a b=$b ip=$ip"; exit 1; }}
        echo "round $n ip=$ip ms=$(ms $t)"
        sleep 0.2
      done
    securityContext:
      allowPrivilegeEscalation: false
      capabilities:
        drop: ["ALL"]
---
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: python
    command: ["python3", "-c", "import time; time.sleep(1); b = bytearray(200 * 1024 * 1024)"]
    resources:
      limits: {{memory: 50Mi}}
"#
    )
}

fn pod_json(podrun: &Podrun, name: &str) -> serde_json::Value {
    let out = podrun.run(&["get", "pods", name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

#[test]
fn service_client_and_an_oom_killed_pod_all_behave_and_every_lookup_is_quick() {
    let podrun = Podrun::new();
    let dir = tempfile::tempdir().unwrap();
    // The server serves this directory; UID 1234 never reads it, the server (root) does.
    std::fs::write(dir.path().join("who"), "ok").unwrap();
    let out = podrun.run_manifest(
        &manifest(&dir.path().display().to_string()),
        &["--timeout", "90s"],
    );
    let logs = |c: &str| stdout(&podrun.run(&["logs", "client", "-c", c]));
    let context = format!(
        "init logs:\n{}\nclient logs:\n{}\nstdout:\n{}\nstderr:\n{}",
        logs("wait-for-web"),
        logs("curl"),
        stdout(&out),
        stderr(&out)
    );
    // The OOMKilled pod fails the run; nothing else may.
    assert_eq!(out.status.code(), Some(1), "{context}");
    let hog = pod_json(&podrun, "hog");
    assert_eq!(
        hog["status"]["containerStatuses"][0]["state"]["terminated"]["reason"], "OOMKilled",
        "{hog}"
    );
    let client = pod_json(&podrun, "client");
    assert_eq!(client["status"]["phase"], "Succeeded", "{context}");

    let init = logs("wait-for-web");
    let ms = |line: &str| -> u64 {
        line.rsplit("ms=")
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ms in {line:?}"))
    };
    let first = init
        .lines()
        .find(|l| l.starts_with("init-lookup"))
        .unwrap_or_else(|| panic!("{context}"));
    assert!(ms(first) < 1000, "the first lookup took {first}\n{context}");
    let rounds: Vec<String> = logs("curl")
        .lines()
        .filter(|l| l.starts_with("round "))
        .map(String::from)
        .collect();
    assert_eq!(rounds.len(), 10, "{context}");
    for r in &rounds {
        // Two requests and a lookup; a lost query alone would take the resolver's 5 s.
        assert!(ms(r) < 2000, "{r}\n{context}");
    }
}
