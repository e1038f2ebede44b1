//! `podrun server`: the Kubernetes API for the real kubectl, over the state directory's
//! object store. It opens the store (`<state>/store.db`), seeds the namespaces and
//! ServiceAccounts every cluster has, serves HTTPS with a bearer token on 127.0.0.1 (other
//! addresses with `--listen`, with a warning), writes the kubeconfig into the state
//! directory and prints how to use it. Pods created in a namespace labelled
//! `istio-injection=enabled` get the mesh sidecar, as `podrun run` injects it.
//!
//! The node and the controllers run inside the server: a pod created through kubectl
//! (or by a Deployment's ReplicaSet, or a Job) is bound to this node and runs as real
//! processes, and its status comes back through the API.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use podrun_apiserver::server::{ApiServer, DEFAULT_LISTEN, bind, serve};
use podrun_apiserver::store_backend::StoreBackend;
use podrun_node::Node;
use podrun_store_sqlite::SqliteStore;
use serde_json::Value;

use crate::Global;

/// Arguments of `podrun server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve the API on. Anything beyond loopback is reachable by other hosts
    /// (they still need the token) and is warned about.
    #[arg(long, default_value_t = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Pod addresses come from this CIDR; the host bridge podrun0 gets its first address.
    #[arg(long, default_value = podrun_net::sandbox::DEFAULT_POD_CIDR)]
    pub pod_cidr: podrun_net::sandbox::ipam::Ipv4Cidr,
    /// Let pods reach beyond this machine: masquerade their traffic (an iptables
    /// MASQUERADE rule and IP forwarding, removed when the server exits).
    #[arg(long)]
    pub masquerade: bool,
    /// Run the containers of pods created through the API on the host's filesystem: pods
    /// and pod templates without the `podrun.io/host-rootfs` annotation get `"*"`.
    #[arg(long)]
    pub host_rootfs: bool,
}

/// How long a stopping server waits for its pods to end.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(40);

/// Runs the subcommand until SIGINT or SIGTERM.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    let state = global.state_dir();
    std::fs::create_dir_all(&state)
        .with_context(|| format!("creating the state directory {}", state.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        // Subscribed before the node opens, so no Event of a pod it takes up is missed.
        let pods_dir = podrun_node::layout::Layout::new(&state).pods_dir();
        let recorded = podrun_node::events::subscribe(&pods_dir);
        // Inside the runtime, the node starts its controllers and its watch of the store.
        let (node, recovery) = Node::open(&state)
            .map_err(|e| anyhow::anyhow!("opening the node on {}: {e}", state.display()))?;
        for line in &recovery.reports {
            eprintln!("podrun: {line}");
        }
        if !podrun_node::runtime::isolation_available() {
            eprintln!("{}", podrun_net::sandbox::NO_ROOT_WARNING);
        }
        node.set_network(podrun_net::sandbox::NetworkConfig {
            pod_cidr: args.pod_cidr,
            masquerade: args.masquerade,
            ..Default::default()
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        tokio::spawn(node.clone().serve_control());
        let store: SqliteStore = node.store().sqlite().clone();
        store
            .lock()
            .seed_defaults(podrun_store_sqlite::stamp)
            .map_err(|e| anyhow::anyhow!("seeding the default namespaces: {}", e.message()))?;
        let events_store = store.clone();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || publish_events(&events_store, &pods_dir, &recorded))
            .context("starting the Event publisher")?;
        let layout = node.layout().clone();
        let log_dirs = Arc::new(move |pod: &Value| {
            let meta = &pod["metadata"];
            Some(layout.pod_dir(
                meta["namespace"].as_str()?,
                meta["name"].as_str()?,
                meta["uid"].as_str()?,
            ))
        });
        let cluster_ips = NodeClusterIps::open(&state, &store)?;
        tokio::spawn(cluster_ips.clone().release_deleted(store.clone()));
        let backend = StoreBackend::new(store, crate::mesh::config())
            .with_cluster_ips(cluster_ips.clone())
            .with_host_rootfs(podrun_apiserver::admission::HostRootfs {
                all: args.host_rootfs,
            })
            .with_log_dirs(log_dirs)
            .with_exec(exec_hook(node.clone()))
            .with_nodes(vec![this_node()]);
        let bound = bind(&state, args.listen)
            .await
            .with_context(|| format!("serving on {}", args.listen))?;
        let tls = bound
            .credentials
            .server_config()
            .context("loading the serving certificate")?;
        eprintln!(
            "podrun server: serving the Kubernetes API on https://{}",
            bound.addr
        );
        println!("export KUBECONFIG={}", bound.kubeconfig.display());
        let server = Arc::new(ApiServer::new(
            Arc::new(backend),
            bound.credentials,
            env!("CARGO_PKG_VERSION"),
        ));
        serve(bound.listener, tls, server, shutdown())
            .await
            .context("serving the API")?;
        // Pods stop with the server; their Deployments, ReplicaSets and Jobs stay in the
        // store and start them again with the next server.
        // Subscribed first: each pod that finishes wakes the count check below.
        let mut changes = node.subscribe();
        node.delete_all_pods();
        let grace = tokio::time::sleep(STOP_GRACE);
        tokio::pin!(grace);
        while node.running_pods() > 0 {
            tokio::select! {
                () = &mut grace => break,
                change = changes.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = change {
                        break;
                    }
                }
            }
        }
        if let Err(e) = cluster_ips.services.shutdown() {
            eprintln!("podrun server: withdrawing the Services' cluster IPs: {e}");
        }
        eprintln!("podrun server: stopped");
        Ok(0)
    })
}

/// The node's host-wide ClusterIP allocator behind the API's Services: the allocation
/// file in the state directory and the addresses every live podrun on the host publishes
/// (`podrun run`'s Services and other servers'), taken under the host-wide lock, so no two
/// of them ever hand out the same address. The server only allocates and publishes; it
/// programs no Service rules.
struct NodeClusterIps {
    services: podrun_net::service::Services,
}

impl NodeClusterIps {
    /// Opens the allocator and reserves the addresses of the Services already stored.
    fn open(state: &std::path::Path, store: &SqliteStore) -> anyhow::Result<Arc<Self>> {
        use podrun_net::service::{ServiceConfig, Services};
        let config = ServiceConfig {
            apply_rules: false,
            ..ServiceConfig::defaults(state)?
        };
        let this = Arc::new(Self {
            services: Services::open(config)?,
        });
        let stored = store
            .list(
                &podrun_store::ResourceType::SERVICES,
                None,
                &podrun_store::ListOptions::default(),
            )
            .map_err(|e| anyhow::anyhow!("listing the stored Services: {}", e.message()))?;
        for svc in &stored.items {
            let meta = &svc["metadata"];
            let (Some(ns), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) else {
                continue;
            };
            let Some(ip) = svc
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
            else {
                continue;
            };
            if let Err(e) = this.reserve(ns, name, Some(ip)) {
                eprintln!("podrun server: Service {ns}/{name} keeps {ip}, which {e}");
            }
        }
        Ok(this)
    }

    fn reserve(
        &self,
        namespace: &str,
        name: &str,
        requested: Option<std::net::Ipv4Addr>,
    ) -> Result<std::net::Ipv4Addr, String> {
        let service = k8s_openapi::api::core::v1::Service {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
                cluster_ip: requested.map(|ip| ip.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self.services.create(service).map_err(|e| e.to_string())?;
        created
            .spec
            .and_then(|s| s.cluster_ip)
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| "failed to allocate a serviceIP".to_owned())
    }

    /// Gives a deleted Service's address back, however it was deleted (through the
    /// API, `podrun delete`, or its namespace going).
    async fn release_deleted(self: Arc<Self>, store: SqliteStore) {
        let opts = podrun_store::WatchOptions {
            resource_version: Some(store.lock().revision().unwrap_or(0).to_string()),
            ..Default::default()
        };
        let mut watch = match store.watch(&podrun_store::ResourceType::SERVICES, None, &opts) {
            Ok(w) => w,
            Err(e) => {
                eprintln!(
                    "podrun server: cannot follow Service deletions: {}",
                    e.message()
                );
                return;
            }
        };
        while let Some(event) = watch.next().await {
            if event.kind != podrun_store::EventType::Deleted {
                continue;
            }
            let meta = &event.object["metadata"];
            if let (Some(ns), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) {
                let this = self.clone();
                let (ns, name) = (ns.to_owned(), name.to_owned());
                let _ = tokio::task::spawn_blocking(move || {
                    podrun_apiserver::store_backend::ClusterIps::release(this.as_ref(), &ns, &name)
                })
                .await;
            }
        }
    }
}

impl podrun_apiserver::store_backend::ClusterIps for NodeClusterIps {
    fn allocate(
        &self,
        namespace: &str,
        name: &str,
        requested: Option<std::net::Ipv4Addr>,
    ) -> Result<std::net::Ipv4Addr, String> {
        self.reserve(namespace, name, requested)
    }

    fn release(&self, namespace: &str, name: &str) {
        if let Err(e) = self.services.delete(namespace, name) {
            eprintln!("podrun server: releasing the cluster IP of {namespace}/{name}: {e}");
        }
    }
}

/// `pods/exec`: the command runs in the pod's container on this server's node.
fn exec_hook(node: Node) -> podrun_apiserver::store_backend::ExecHook {
    use podrun_apiserver::backend::{ExecProcess, ExecRequest};
    use podrun_node::runtime::exec::{ExecStreams, TerminalSize, exec_session};
    Arc::new(move |pod: Value, container: String, request: ExecRequest| {
        let node = node.clone();
        Box::pin(async move {
            let meta = &pod["metadata"];
            let field = |k: &str| meta[k].as_str().unwrap_or_default().to_owned();
            let (ns, name, uid) = (field("namespace"), field("name"), field("uid"));
            let target = node.exec_target((&ns, &name, &uid), &container).await?;
            let ExecRequest::Start(options) = request else {
                return Ok(None);
            };
            let streams = ExecStreams {
                stdin: options.stdin,
                stdout: options.stdout,
                stderr: options.stderr,
                tty: options.tty,
            };
            let size = options
                .size
                .map(|(width, height)| TerminalSize { width, height });
            let started = exec_session(
                &target.process,
                &options.command,
                &target.env,
                streams,
                size,
            )
            .await;
            let mut session = match started {
                Ok(s) => s,
                Err(podrun_node::runtime::ExecError::NotRunning) => {
                    return Err(format!("container not found ({container:?})"));
                }
                Err(e) => return Ok(Some(ExecProcess::failed(e.to_string()))),
            };
            type Reader = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;
            type Writer = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;
            let stdin = session.stdin.take().map(|w| Box::pin(w) as Writer);
            let stdout = session.stdout.take().map(|r| Box::pin(r) as Reader);
            let stderr = session.stderr.take().map(|r| Box::pin(r) as Reader);
            // The command lives as long as both the resizer and the exit future.
            let session = Arc::new(session);
            let resizer = session.clone();
            Ok(Some(ExecProcess {
                stdin,
                stdout,
                stderr,
                resize: Box::new(move |width, height| {
                    let _ = resizer.resize(TerminalSize { width, height });
                }),
                exit: Box::pin(async move { Ok(session.wait().await.exit_code) }),
            }))
        })
    })
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Publishes the Events the node records into the store, so `kubectl get events` and
/// `kubectl describe` list and watch them as a cluster's: first the latest state of each
/// Event in the pods' `events.jsonl` files (those recorded before a restart, whose
/// publishing a crash may have cut short), then each Event as the node records it (a
/// repeat is the same Event with its count moved on). Runs for the life of the process.
fn publish_events(
    store: &SqliteStore,
    pods_dir: &std::path::Path,
    recorded: &std::sync::mpsc::Receiver<k8s_openapi::api::core::v1::Event>,
) {
    if let Ok(dirs) = std::fs::read_dir(pods_dir) {
        for dir in dirs.flatten() {
            let path = dir.path().join(podrun_node::events::EVENTS_FILE);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            // Whole lines only: one being written arrives through `recorded`.
            let Some(end) = text.rfind('\n') else {
                continue;
            };
            for event in podrun_node::events::latest_events(&text[..=end]) {
                publish(store, &event);
            }
        }
    }
    for event in recorded {
        publish(store, &event);
    }
}

fn publish(store: &SqliteStore, event: &k8s_openapi::api::core::v1::Event) {
    if let Ok(mut value) = serde_json::to_value(event) {
        upsert_event(store, &mut value);
    }
}

/// Creates the Event, or moves the stored one of that name on to this state.
fn upsert_event(store: &SqliteStore, event: &mut Value) {
    use podrun_store::ResourceType;
    let rt = &ResourceType::EVENTS;
    let (Some(ns), Some(name)) = (
        event
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_owned),
        event
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_owned),
    ) else {
        return;
    };
    match store.get(rt, Some(&ns), &name) {
        Ok(old) => {
            // The stored one is this state or a later one (read from the file first).
            let count = |e: &Value| e.get("count").and_then(Value::as_i64).unwrap_or(1);
            if count(&old) > count(event)
                || (count(&old) == count(event)
                    && old.get("lastTimestamp") == event.get("lastTimestamp"))
            {
                return;
            }
            if let Some(meta) = event.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
            let _ = store.update(rt, Some(&ns), &name, event.clone());
        }
        Err(_) => {
            let _ = store.create(rt, Some(&ns), event.clone());
        }
    }
}

/// The Node this server runs, as `kubectl get nodes` and `describe node` show it.
fn this_node() -> Value {
    let name = podrun_node::node_name();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let now = podrun_store_sqlite::now();
    let time = k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", now)
        .unwrap_or_else(|_| now.to_string());
    let capacity = serde_json::json!({
        "cpu": cpus.to_string(),
        "memory": format!("{memory_kib}Ki"),
        "pods": "110",
    });
    serde_json::json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": podrun_store_sqlite::stamp().uid,
            "creationTimestamp": time,
            "resourceVersion": "1",
            "labels": {
                "kubernetes.io/arch": arch,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": arch,
                "beta.kubernetes.io/os": "linux",
            },
        },
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": time,
                "lastTransitionTime": time,
            }],
            "addresses": [{"type": "Hostname", "address": name}],
            "nodeInfo": {
                "architecture": arch,
                "operatingSystem": "linux",
                "kubeletVersion": "v1.34.0",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": format!("podrun://{}", env!("CARGO_PKG_VERSION")),
                "osImage": "",
                "kernelVersion": nix::sys::utsname::uname()
                    .map(|u| u.release().to_string_lossy().into_owned())
                    .unwrap_or_default(),
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    })
}
