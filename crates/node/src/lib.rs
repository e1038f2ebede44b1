//! The node: runs pods as real Linux processes, driven by the lifecycle engine.
//!
//! `runtime` creates container processes (namespaces, mounts, logs, exit events);
//! `handler` carries out probe and hook handlers (exec, httpGet, tcpSocket, grpc, sleep);
//! `worker` is the per-pod loop that carries out what `podrun_lifecycle::PodMachine`
//! decides, through a `PodRuntime` (`pod`: real processes) and a [`sink::StatusSink`]. Decisions are never made here: they come from the lifecycle engine (pods)
//! and from the controllers (`podrun-controllers`: Jobs, Deployments, ReplicaSets,
//! EndpointSlices, garbage collection), which run beside the node on the same store.
//!
//! The node is a client of the object store ([`objects`], `<state>/store.db`), so
//! `podrun get` in another terminal sees what it does: it creates the pods it is given,
//! binds and runs the pods the controllers create, learns of deletions by watch
//! ([`source`]), and writes pod status through the status subresource.
//!
//! The pod network is `podrun-net`'s: each pod's sandbox (namespaces, veth, address),
//! which its containers join, the Service rules, which follow the node's pod events
//! ([`NodeEvent`]), and the cluster DNS, whose files every container mounts.

pub mod cgroup;
pub mod events;
#[cfg(test)]
mod fakes;
pub mod handler;
pub mod instance;
pub mod job;
pub mod layout;
pub mod objects;
mod pod;
pub mod runtime;
pub mod security;
pub mod sink;
pub mod source;
pub mod volume;
mod worker;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use podrun_model::PodPhase;

use crate::objects::{ObjectKey, Resource, Store};
use podrun_net::{PodChange, dns, sandbox};
use tokio::sync::{broadcast, mpsc};

use crate::instance::{ControlRequest, InstanceLock, Recovery};
use crate::layout::Layout;

/// Errors of node operations, worded as the API server words them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object of that name already exists and is still live.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// `pods`, `jobs`.
        resource: &'static str,
        /// Its name.
        name: String,
    },
    /// An object derived from another (a pod from a template) is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The pod's sandbox cannot be made (e.g. it needs root).
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// The store answered with an error (the API server's words) or failed.
    #[error(transparent)]
    Store(#[from] objects::Error),
    /// A file or socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The line kubectl prints for this error: `Error from server (AlreadyExists): pods
    /// "x" already exists`, `The Pod "x" is invalid: …`, or `error: …` for the rest.
    pub fn kubectl(&self) -> String {
        match self {
            Error::AlreadyExists { .. } => format!("Error from server (AlreadyExists): {self}"),
            Error::Store(objects::Error::Api(e)) => objects::kubectl_message(e),
            other => format!("error: {other}"),
        }
    }
}

impl From<podrun_store::ApiError> for Error {
    fn from(e: podrun_store::ApiError) -> Self {
        Error::Store(e.into())
    }
}

/// Something that changed on the node.
#[derive(Clone, Debug)]
pub enum NodeEvent {
    /// A pod's object changed (status, deletion).
    Pod(Arc<Pod>),
    /// A pod finished: terminal phase, no process left.
    PodFinished(Arc<Pod>),
    /// A Job's status changed.
    Job(Arc<Job>),
    /// A Job was deleted (from anywhere).
    JobDeleted(Arc<Job>),
}

/// The Service rules (`podrun_net::service`) follow the node's pod events.
impl podrun_net::PodEvent for NodeEvent {
    fn pod_change(self) -> Option<PodChange> {
        match self {
            NodeEvent::Pod(pod) => Some(PodChange::Updated(pod)),
            NodeEvent::PodFinished(pod) => Some(PodChange::Finished(pod)),
            NodeEvent::Job(_) | NodeEvent::JobDeleted(_) => None,
        }
    }
}

/// Commands to a pod worker.
#[derive(Debug)]
pub(crate) enum PodCommand {
    Delete {
        grace_period_seconds: Option<i64>,
    },
    /// The running instance of a container, for `exec`.
    ExecTarget {
        container: String,
        reply: tokio::sync::oneshot::Sender<Option<runtime::exec::ExecTarget>>,
    },
}

/// A pod worker this node runs.
pub(crate) struct Worker {
    /// The pod's uid.
    uid: String,
    /// Its commands.
    tx: mpsc::UnboundedSender<PodCommand>,
    /// Told to delete already.
    deleting: bool,
}

/// State shared by the node and its pod workers.
pub(crate) struct NodeShared {
    layout: Layout,
    store: Store,
    events: broadcast::Sender<NodeEvent>,
    pods: Mutex<HashMap<ObjectKey, Worker>>,
    /// The controllers on this node's store, while they run.
    controllers: Mutex<Option<podrun_controllers::Controllers>>,
    /// Deployments, ReplicaSets and unfinished Jobs this node created: removed when it
    /// stops, so a later run does not resume them.
    created: Mutex<Vec<(Resource, ObjectKey)>>,
    /// How pod sandboxes are networked.
    network: std::sync::RwLock<Arc<sandbox::NetworkConfig>>,
    /// Held while this node masquerades pod egress.
    masquerade: Mutex<Option<sandbox::masquerade::Masquerade>>,
    /// Set once every pod is being deleted: controllers stop replacing pods.
    stopping: std::sync::atomic::AtomicBool,
    /// Told the address of each pod sandbox with its own network, before the pod's
    /// first container starts (the cluster DNS claims it as this node's client).
    on_pod_address: std::sync::RwLock<Option<PodAddressHook>>,
}

/// What [`Node::on_pod_address`] calls.
pub type PodAddressHook = Arc<dyn Fn(std::net::Ipv4Addr) + Send + Sync>;

impl NodeShared {
    /// Where this node's pod workers write status and tell subscribers.
    fn outlet(&self) -> worker::Outlet {
        worker::Outlet {
            sink: Arc::new(self.store.clone()),
            events: self.events.clone(),
            clock: worker::Clock::WALL,
        }
    }

    /// A pod's worker is done: it leaves the node's list, a deleted pod leaves the
    /// store, and subscribers hear of its end.
    fn finished(&self, outlet: &worker::Outlet, pod: &Pod) {
        let key = key_of(&pod.metadata);
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        outlet.finish(pod);
        let _ = self
            .events
            .send(NodeEvent::PodFinished(Arc::new(pod.clone())));
    }

    /// The pod network settings in effect.
    fn network_config(&self) -> sandbox::NetworkConfig {
        sandbox::NetworkConfig::clone(&self.network.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// A key of a ConfigMap (`kind` = "ConfigMap") or Secret, read from the store.
    fn lookup(&self, pod: &Pod, kind: &str, name: &str, key: &str) -> Option<String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        self.config_data(kind, &ns, name)?.get(key).cloned()
    }

    /// A ConfigMap's (`kind` = "ConfigMap") or Secret's data as strings (a Secret's
    /// `stringData` over its `data`), read from the store.
    pub(crate) fn config_data(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<HashMap<String, String>> {
        let object = ObjectKey::new(namespace, name);
        if kind == "Secret" {
            let secret: Secret = self.store.get(Resource::SECRETS, &object).ok()??;
            let mut data: HashMap<String, String> =
                secret.string_data.unwrap_or_default().into_iter().collect();
            for (k, v) in secret.data.unwrap_or_default() {
                data.entry(k)
                    .or_insert_with(|| String::from_utf8_lossy(&v.0).into_owned());
            }
            return Some(data);
        }
        let cm: ConfigMap = self.store.get(Resource::CONFIG_MAPS, &object).ok()??;
        Some(cm.data.unwrap_or_default().into_iter().collect())
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// A node on one state directory.
#[derive(Clone)]
pub struct Node {
    shared: Arc<NodeShared>,
    _lock: Arc<InstanceLock>,
}

impl Node {
    /// Opens the node on `state_dir`: takes this process's instance lock and cleans up
    /// after instances that died. The returned [`Recovery`] says what was found.
    pub fn open(state_dir: &Path) -> Result<(Self, Recovery), Error> {
        let layout = Layout::new(state_dir);
        std::fs::create_dir_all(layout.root())?;
        let store = Store::open(state_dir)?;
        let lock = InstanceLock::acquire(&layout)?;
        let mut recovery = instance::recover(&layout, &store)?;
        // Sandboxes (netns, veth, addresses) of podruns on this state dir that died.
        recovery.reports.extend(sandbox::recover(
            state_dir,
            Path::new(sandbox::ipam::IPAM_ROOT),
        ));
        recovery.reports.extend(cgroup::remove_leftovers(&layout));
        volume::remove_leftovers(&layout);
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(NodeShared {
            layout,
            store,
            events,
            pods: Mutex::new(HashMap::new()),
            controllers: Mutex::new(None),
            created: Mutex::new(Vec::new()),
            network: std::sync::RwLock::new(Arc::new(sandbox::NetworkConfig::default())),
            masquerade: Mutex::new(None),
            stopping: std::sync::atomic::AtomicBool::new(false),
            on_pod_address: std::sync::RwLock::new(None),
        });
        let node = Self {
            shared,
            _lock: Arc::new(lock),
        };
        // Inside a runtime, the controllers and the store watches start with the node.
        if tokio::runtime::Handle::try_current().is_ok() {
            *node
                .shared
                .controllers
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(podrun_controllers::Controllers::start(
                node.shared.store.sqlite(),
            ));
            source::spawn(&node);
        }
        Ok((node, recovery))
    }

    /// The store this node writes.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The state-directory layout.
    pub fn layout(&self) -> &Layout {
        &self.shared.layout
    }

    /// Subscribes to node events.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.shared.events.subscribe()
    }

    /// Calls `hook` with the address of every pod sandbox with its own network that
    /// this node makes from now on, once the sandbox has it and before the pod's first
    /// container starts; the pod waits until the hook returns (it runs off the async
    /// workers, so it may block briefly, e.g. to write a file).
    pub fn on_pod_address(&self, hook: PodAddressHook) {
        *self
            .shared
            .on_pod_address
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Sets how pods created from now on are networked (pod CIDR, masquerading). With
    /// `masquerade`, installs the egress rule (as root) until the node is dropped.
    pub fn set_network(&self, config: sandbox::NetworkConfig) -> Result<(), Error> {
        let mut held = self
            .shared
            .masquerade
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *held = None;
        if config.masquerade {
            if !runtime::isolation_available() {
                return Err(Error::Io(std::io::Error::other(
                    "--masquerade needs root (an iptables rule and IP forwarding)",
                )));
            }
            *held = Some(sandbox::masquerade::Masquerade::enable(config.pod_cidr)?);
        }
        *self
            .shared
            .network
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// Stores a ConfigMap for `valueFrom`/`envFrom` (replacing one of the same name).
    pub fn add_config_map(&self, cm: &ConfigMap) -> Result<(), Error> {
        self.put_object(Resource::CONFIG_MAPS, cm)
    }

    /// Stores a Secret for `valueFrom`/`envFrom` (replacing one of the same name).
    pub fn add_secret(&self, secret: &Secret) -> Result<(), Error> {
        self.put_object(Resource::SECRETS, secret)
    }

    fn put_object<T: objects::StoredObject + Clone>(
        &self,
        r: Resource,
        obj: &T,
    ) -> Result<(), Error> {
        let key = key_of(obj.meta());
        if self
            .shared
            .store
            .get::<serde_json::Value>(r, &key)?
            .is_some()
        {
            self.shared.store.delete(r, &key, None)?;
        }
        let mut obj = obj.clone();
        obj.meta_mut().namespace = Some(key.namespace);
        self.shared.store.create(r, &mut obj)?;
        Ok(())
    }

    /// Creates a pod (already admitted: defaulted and validated) and starts running it.
    /// A finished pod of the same name left in the store by an earlier run is replaced;
    /// a live one is an [`Error::AlreadyExists`].
    pub fn create_pod(&self, mut pod: Pod) -> Result<Pod, Error> {
        let key = key_of(&pod.metadata);
        if !runtime::isolation_available() {
            let features = sandbox::needs_root(&sandbox::SandboxSpec::from_pod(&pod));
            if !features.is_empty() {
                return Err(sandbox::SandboxError::NeedsRoot {
                    pod: key.name,
                    features,
                }
                .into());
            }
        }
        if let Some(old) = self.shared.store.get::<Pod>(Resource::PODS, &key)? {
            let live = self
                .shared
                .pods
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&key);
            let old_dir = self.shared.layout.pod_dir(
                &key.namespace,
                &key.name,
                old.metadata.uid.as_deref().unwrap_or_default(),
            );
            let owned_elsewhere = instance::pod_owner(&old_dir)
                .is_some_and(|pid| instance::instance_alive(&self.shared.layout, pid));
            if live || owned_elsewhere {
                return Err(Error::AlreadyExists {
                    resource: "pods",
                    name: key.name,
                });
            }
            let _ = std::fs::remove_dir_all(&old_dir);
            self.shared
                .store
                .remove_pod(&key, old.metadata.uid.as_deref().unwrap_or_default())?;
        }
        let meta = &mut pod.metadata;
        meta.namespace = Some(key.namespace.clone());
        // The store stamps uid, creationTimestamp, generation and resourceVersion.
        meta.uid = None;
        meta.creation_timestamp = None;
        meta.resource_version = None;
        // Bound to this node at once, Pending until the worker reports, as the API
        // server and scheduler would leave it.
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(node_name());
        }
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some(PodPhase::Pending.into()),
            qos_class: Some(cgroup::qos_class(&pod).into()),
            ..Default::default()
        });
        self.shared.store.create(Resource::PODS, &mut pod)?;
        let _ = self
            .shared
            .events
            .send(NodeEvent::Pod(Arc::new(pod.clone())));
        self.start_worker(pod.clone());
        Ok(pod)
    }

    /// Starts the worker of a pod bound to this node.
    pub(crate) fn start_worker(&self, pod: Pod) {
        let key = key_of(&pod.metadata);
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key,
                Worker {
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                    tx,
                    deleting: false,
                },
            );
        tokio::spawn(pod::run_pod(self.shared.clone(), pod, rx));
    }

    /// Whether this node runs the pod with this uid.
    pub(crate) fn runs(&self, key: &ObjectKey, uid: &str) -> bool {
        self.shared
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .is_some_and(|w| w.uid == uid)
    }

    /// The pods this node runs: key and uid.
    pub(crate) fn running_uids(&self) -> Vec<(ObjectKey, String)> {
        self.shared
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, w)| (k.clone(), w.uid.clone()))
            .collect()
    }

    /// The running instance of container `container` of the pod `namespace/name` with uid
    /// `uid`, for [`runtime::exec::exec_session`]. The error is the kubelet's text:
    /// `container not found ("c")` when this node runs no such container instance now.
    pub async fn exec_target(
        &self,
        pod: (&str, &str, &str),
        container: &str,
    ) -> Result<runtime::exec::ExecTarget, String> {
        let (namespace, name, uid) = pod;
        let not_found = || format!("container not found ({container:?})");
        let (reply, answer) = tokio::sync::oneshot::channel();
        {
            let pods = self.shared.pods.lock().unwrap_or_else(|e| e.into_inner());
            match pods.get(&ObjectKey::new(namespace, name)) {
                Some(w) if w.uid == uid => {
                    let asked = w.tx.send(PodCommand::ExecTarget {
                        container: container.to_owned(),
                        reply,
                    });
                    if asked.is_err() {
                        return Err(not_found());
                    }
                }
                _ => return Err(not_found()),
            }
        }
        answer.await.ok().flatten().ok_or_else(not_found)
    }

    /// Tells a pod's worker to terminate, once. Returns false if this node does not run
    /// the pod.
    pub(crate) fn tell_delete(&self, key: &ObjectKey, grace_period_seconds: Option<i64>) -> bool {
        let mut pods = self.shared.pods.lock().unwrap_or_else(|e| e.into_inner());
        match pods.get_mut(key) {
            Some(w) if w.deleting => true,
            Some(w) => {
                w.deleting = true;
                w.tx.send(PodCommand::Delete {
                    grace_period_seconds,
                })
                .is_ok()
            }
            None => false,
        }
    }

    /// Asks a pod this node runs to terminate gracefully (marked for deletion in the
    /// store, as `kubectl delete` does). Returns false if this node does not run a pod
    /// of that name.
    pub fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        grace_period_seconds: Option<i64>,
    ) -> bool {
        let key = ObjectKey::new(namespace, name);
        let told = self.tell_delete(&key, grace_period_seconds);
        // A finished pod stays in the store (its worker is only cleaning up); a running
        // one is marked, so every reader sees it terminating.
        let running = self
            .shared
            .store
            .get::<Pod>(Resource::PODS, &key)
            .ok()
            .flatten()
            .is_some_and(|p| !podrun_model::is_pod_terminal(&p));
        if told && running {
            let _ = self
                .shared
                .store
                .delete(Resource::PODS, &key, grace_period_seconds);
        }
        told
    }

    /// Asks every pod this node runs to terminate gracefully. The controllers stop
    /// first, so nothing replaces the pods, and the Deployments, ReplicaSets and
    /// unfinished Jobs this node created are deleted with them.
    pub fn delete_all_pods(&self) {
        self.shared
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        drop(
            self.shared
                .controllers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let created = std::mem::take(
            &mut *self
                .shared
                .created
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let mut owners = std::collections::HashSet::new();
        for (r, key) in created {
            let Ok(Some(obj)) = self.shared.store.get::<serde_json::Value>(r, &key) else {
                continue;
            };
            if r == Resource::JOBS
                && serde_json::from_value::<Job>(obj.clone())
                    .is_ok_and(|j| podrun_controllers::job::finished(&j))
            {
                continue;
            }
            owners.insert(podrun_store::object::uid(&obj).to_string());
            let _ = self.shared.store.delete(r, &key, None);
        }
        self.delete_unbound_dependents(owners);
        let keys: Vec<ObjectKey> = self
            .shared
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for key in keys {
            self.delete_pod(&key.namespace, &key.name, None);
        }
    }

    /// Deletes the ReplicaSets and the not yet bound pods that descend from `owners`.
    /// With the controllers stopped no garbage collector would remove them, and no
    /// node of this run would start them: left in the store, they would be taken up by
    /// the next podrun on this state directory. Bound pods are stopped by their workers.
    fn delete_unbound_dependents(&self, mut owners: std::collections::HashSet<String>) {
        let store = &self.shared.store;
        let owned = |obj: &serde_json::Value, owners: &std::collections::HashSet<String>| {
            obj.pointer("/metadata/ownerReferences")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|refs| {
                    refs.iter().any(|r| {
                        r.get("uid")
                            .and_then(serde_json::Value::as_str)
                            .is_some_and(|u| owners.contains(u))
                    })
                })
        };
        for rs in store
            .list::<serde_json::Value>(Resource::REPLICA_SETS, None)
            .unwrap_or_default()
        {
            if owned(&rs, &owners) {
                owners.insert(podrun_store::object::uid(&rs).to_string());
                let _ = store.delete(Resource::REPLICA_SETS, &object_key(&rs), None);
            }
        }
        for pod in store
            .list::<serde_json::Value>(Resource::PODS, None)
            .unwrap_or_default()
        {
            let bound = pod
                .pointer("/spec/nodeName")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !bound && owned(&pod, &owners) {
                let _ = store.delete(Resource::PODS, &object_key(&pod), Some(0));
            }
        }
    }

    /// The number of pods still running on this node.
    pub fn running_pods(&self) -> usize {
        self.shared
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether every pod is being deleted (the node is shutting down).
    pub fn is_stopping(&self) -> bool {
        self.shared
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stores a Deployment; the controllers create its ReplicaSet and pods.
    pub fn create_deployment(
        &self,
        mut deployment: k8s_openapi::api::apps::v1::Deployment,
    ) -> Result<(), Error> {
        let key = key_of(&deployment.metadata);
        deployment.metadata.namespace = Some(key.namespace.clone());
        self.shared
            .store
            .create(Resource::DEPLOYMENTS, &mut deployment)?;
        self.created(Resource::DEPLOYMENTS, key);
        Ok(())
    }

    /// Stores a ReplicaSet; the controllers keep its pods running.
    pub fn create_replica_set(
        &self,
        mut rs: k8s_openapi::api::apps::v1::ReplicaSet,
    ) -> Result<(), Error> {
        let key = key_of(&rs.metadata);
        rs.metadata.namespace = Some(key.namespace.clone());
        self.shared.store.create(Resource::REPLICA_SETS, &mut rs)?;
        self.created(Resource::REPLICA_SETS, key);
        Ok(())
    }

    /// Stores a Job; the Job controller runs it. A finished Job of the same name left
    /// by an earlier run is replaced; a running one is `AlreadyExists`.
    pub fn create_job(&self, job: Job) -> Result<Job, Error> {
        let job = job::create(self, job)?;
        self.created(Resource::JOBS, key_of(&job.metadata));
        Ok(job)
    }

    fn created(&self, r: Resource, key: ObjectKey) {
        self.shared
            .created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((r, key));
    }

    /// Tells subscribers of a Job's new state, or of its deletion.
    pub(crate) fn job_changed(&self, job: Job, deleted: bool) {
        let job = Arc::new(job);
        let event = if deleted {
            NodeEvent::JobDeleted(job)
        } else {
            NodeEvent::Job(job)
        };
        let _ = self.shared.events.send(event);
    }

    /// Serves this instance's control socket until the task is dropped, so that
    /// `podrun delete` from another terminal reaches the pods within milliseconds.
    pub async fn serve_control(self) -> std::io::Result<()> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let path = self.shared.layout.instance_socket(std::process::id());
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)?;
        loop {
            let (stream, _) = listener.accept().await?;
            let node = self.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(read).read_line(&mut line).await.is_err() {
                    return;
                }
                let answer = match serde_json::from_str::<ControlRequest>(&line) {
                    Ok(ControlRequest::DeletePod {
                        namespace,
                        name,
                        grace_period_seconds,
                    }) => {
                        if node.delete_pod(&namespace, &name, grace_period_seconds) {
                            "ok"
                        } else {
                            "notfound"
                        }
                    }
                    Err(_) => "badrequest",
                };
                let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
            });
        }
    }
}

impl Drop for NodeShared {
    fn drop(&mut self) {
        let pid = std::process::id();
        let _ = std::fs::remove_file(self.layout.instance_socket(pid));
        let _ = std::fs::remove_file(self.layout.instance_lock(pid));
    }
}

/// Whether pods get their own network namespace (and so a mesh sidecar's capture rules
/// stay inside the pod).
pub fn pod_network_available() -> bool {
    runtime::isolation_available()
}

/// This machine's host name, used as the node name.
pub fn node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The wall clock as the engine's time type. Drivers read the clock; cores never do.
pub fn now() -> Timestamp {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_nanosecond(since_epoch.as_nanos() as i128).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The namespace and name of a stored object.
fn object_key(obj: &serde_json::Value) -> ObjectKey {
    ObjectKey::new(
        podrun_store::object::meta_str(obj, "namespace").unwrap_or("default"),
        podrun_store::object::name(obj),
    )
}
