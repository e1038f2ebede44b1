//! The object store behind the [`Backend`] trait: every verb for every served kind on a
//! [`SqliteStore`], with admission (defaulting, validation, sidecar injection), patches,
//! server-side apply and field ownership, the `status` and `scale` subresources, watches
//! with bookmarks, and `pods/log` from the node's CRI log files.
//!
//! The store's calls are short SQLite transactions; they run on tokio's blocking pool so a
//! write's fsync never holds up the server's other requests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use podrun_inject::MeshConfig;
use podrun_store::{Filter, ResourceType, Stamp};
use podrun_store_sqlite::SqliteStore;
use serde_json::{Value, json};

use crate::admission::{self, Operation};
use crate::apply::{self, ApplyError};
use crate::backend::*;
use crate::catalogue::Resource;
use crate::openapi;
use crate::patch::{self, PatchError, PatchType};
use crate::status::{ApiError, StatusCause, StatusDetails};

/// How often an idle watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// Attempts of a read-patch-write before a conflict goes back to the client.
const PATCH_ATTEMPTS: usize = 5;

/// Where the node keeps a pod's container logs: `<dir>/<container>/<restart>.log`.
pub type LogDirs = Arc<dyn Fn(&Value) -> Option<PathBuf> + Send + Sync>;

/// `pods/exec` on the node that runs the pod: the pod (as stored), the container and the
/// request (see [`Backend::exec`]); an error is the node's text.
pub type ExecHook = Arc<
    dyn Fn(Value, String, ExecRequest) -> BoxFuture<'static, Result<Option<ExecProcess>, String>>
        + Send
        + Sync,
>;

/// The store as the API server's backend.
#[derive(Clone)]
pub struct StoreBackend {
    store: SqliteStore,
    mesh: Arc<MeshConfig>,
    host_rootfs: admission::HostRootfs,
    log_dirs: Option<LogDirs>,
    exec: Option<ExecHook>,
    nodes: Arc<Vec<Value>>,
    cluster_ips: Option<Arc<dyn ClusterIps>>,
}

/// Where Services' cluster IPs come from when one allocator serves more than this store:
/// `podrun server` hands out the node's host-wide ones, so that a `podrun run` on the
/// same host (or state directory) never gets the address of a Service created through
/// the API, nor the other way round. Without one, a Service gets the first address of
/// the Service CIDR that no stored Service has.
pub trait ClusterIps: Send + Sync {
    /// Reserves a cluster IP for the Service (`namespace/name`): `requested` when it is
    /// free (else 422 `… provided IP is already allocated`), the first free one when
    /// `None`. Reserving again for the same Service gives its address back.
    fn allocate(
        &self,
        namespace: &str,
        name: &str,
        requested: Option<std::net::Ipv4Addr>,
    ) -> Result<std::net::Ipv4Addr, String>;
    /// Gives the Service's address back (a create that failed after reserving).
    fn release(&self, namespace: &str, name: &str);
}

impl std::fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBackend")
            .field("store", &self.store)
            .finish()
    }
}

/// A store error as the server's `Status`.
pub fn from_store(e: podrun_store::ApiError) -> ApiError {
    let s = *e.0;
    let reason: &'static str = match s.reason.as_deref().unwrap_or("") {
        "NotFound" => "NotFound",
        "AlreadyExists" => "AlreadyExists",
        "Conflict" => "Conflict",
        "Invalid" => "Invalid",
        "BadRequest" => "BadRequest",
        "Forbidden" => "Forbidden",
        "Expired" => "Expired",
        "Gone" => "Gone",
        "Timeout" => "Timeout",
        "TooManyRequests" => "TooManyRequests",
        "MethodNotAllowed" => "MethodNotAllowed",
        "InternalError" => "InternalError",
        "ResourceExpired" => "Expired",
        _ => "",
    };
    let details = s.details.map(|d| {
        Box::new(StatusDetails {
            name: d.name.unwrap_or_default(),
            group: d.group.unwrap_or_default(),
            kind: d.kind.unwrap_or_default(),
            uid: d.uid.unwrap_or_default(),
            causes: d
                .causes
                .unwrap_or_default()
                .into_iter()
                .map(|c| StatusCause {
                    reason: c.reason.unwrap_or_default(),
                    message: c.message.unwrap_or_default(),
                    field: c.field.unwrap_or_default(),
                })
                .collect(),
            retry_after_seconds: d.retry_after_seconds,
        })
    });
    ApiError {
        code: s.code.unwrap_or(500) as u16,
        reason,
        message: s.message.unwrap_or_default(),
        details,
    }
}

fn rt_of(resource: &Resource) -> Result<&'static ResourceType, ApiError> {
    ResourceType::find(resource.gvk.group, resource.plural).ok_or_else(|| {
        if is_nodes(resource) || view_of(resource).is_some() {
            // Nodes are reported by the server and views are derived: neither is
            // written through it.
            ApiError::method_not_supported(resource, "write")
        } else {
            ApiError::internal(format!("the store holds no {}", resource.plural))
        }
    })
}

fn is_nodes(resource: &Resource) -> bool {
    resource.gvk.group.is_empty() && resource.plural == "nodes"
}

/// A kind served as a read-only view of what the store holds ([`crate::views`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// `events.k8s.io/v1` Events, from core Events.
    EventsV1,
    /// Core `v1` Endpoints, from EndpointSlices.
    Endpoints,
}

fn view_of(resource: &Resource) -> Option<View> {
    match (resource.gvk.group, resource.plural) {
        ("events.k8s.io", "events") => Some(View::EventsV1),
        ("", "endpoints") => Some(View::Endpoints),
        _ => None,
    }
}

/// Turns a stored object into its view.
type Convert = fn(&StoreBackend, &Value) -> Result<Value, ApiError>;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn now_string() -> String {
    let now = podrun_store_sqlite::now();
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", now)
        .unwrap_or_else(|_| now.to_string())
}

fn filter(
    rt: &ResourceType,
    labels: Option<&str>,
    fields: Option<&str>,
) -> Result<Filter, ApiError> {
    Filter::parse(rt, labels.unwrap_or(""), fields.unwrap_or("")).map_err(from_store)
}

/// Gives the Service ClusterIP `ip`, single-stack IPv4.
fn set_cluster_ip(svc: &mut Value, ip: std::net::Ipv4Addr) {
    let spec = &mut svc["spec"];
    spec["clusterIP"] = json!(ip.to_string());
    spec["clusterIPs"] = json!([ip.to_string()]);
    spec["ipFamilies"] = json!(["IPv4"]);
    spec["ipFamilyPolicy"] = json!("SingleStack");
}

/// The store's form of a watch of `rt` with `options` (selectors parsed).
fn store_watch_options(
    rt: &ResourceType,
    options: &WatchOptions,
) -> Result<podrun_store::WatchOptions, ApiError> {
    Ok(podrun_store::WatchOptions {
        filter: filter(
            rt,
            options.label_selector.as_deref(),
            options.field_selector.as_deref(),
        )?,
        resource_version: options.resource_version.clone(),
        resource_version_match: options.resource_version_match.clone(),
        send_initial_events: options.send_initial_events,
        allow_bookmarks: options.allow_bookmarks,
    })
}

fn patch_error(e: PatchError) -> ApiError {
    match e {
        PatchError::BadPatch(m) => ApiError::bad_request(m),
        PatchError::Apply(m) => ApiError {
            code: 422,
            reason: "Invalid",
            message: m,
            details: None,
        },
    }
}

fn event_type_of(kind: podrun_store::EventType) -> EventType {
    match kind {
        podrun_store::EventType::Added => EventType::Added,
        podrun_store::EventType::Modified => EventType::Modified,
        podrun_store::EventType::Deleted => EventType::Deleted,
        podrun_store::EventType::Bookmark => EventType::Bookmark,
        podrun_store::EventType::Error => EventType::Error,
    }
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn resource_version(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The `Scale` of a Deployment or ReplicaSet.
fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

fn conflicts_error(resource: &Resource, name: &str, conflicts: &[apply::Conflict]) -> ApiError {
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with {:?} using {}: {}",
                c.manager, c.api_version, c.field
            )
        })
        .collect();
    let message = if lines.len() == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!(
            "Apply failed with {} conflicts: {}",
            lines.len(),
            lines.join("\n")
        )
    };
    ApiError {
        code: 409,
        reason: "Conflict",
        message,
        details: Some(Box::new(StatusDetails {
            name: name.to_owned(),
            group: resource.gvk.group.into(),
            kind: resource.plural.into(),
            causes: conflicts
                .iter()
                .map(|c| StatusCause {
                    reason: "FieldManagerConflict".into(),
                    message: format!("conflict with {:?} using {}", c.manager, c.api_version),
                    field: c.field.clone(),
                })
                .collect(),
            ..Default::default()
        })),
    }
}

impl StoreBackend {
    /// A backend over `store`, injecting pods with `mesh` where the namespace asks.
    pub fn new(store: SqliteStore, mesh: MeshConfig) -> StoreBackend {
        StoreBackend {
            store,
            mesh: Arc::new(mesh),
            host_rootfs: admission::HostRootfs::default(),
            log_dirs: None,
            exec: None,
            nodes: Arc::new(Vec::new()),
            cluster_ips: None,
        }
    }

    /// Services get their cluster IPs from `allocator` ([`ClusterIps`]).
    pub fn with_cluster_ips(mut self, allocator: Arc<dyn ClusterIps>) -> StoreBackend {
        self.cluster_ips = Some(allocator);
        self
    }

    /// Host-filesystem mode for the pods and pod templates created through the API
    /// (`podrun server --host-rootfs`).
    pub fn with_host_rootfs(mut self, host_rootfs: admission::HostRootfs) -> StoreBackend {
        self.host_rootfs = host_rootfs;
        self
    }

    /// The Nodes this server reports (the node it runs): `nodes` answers get, list and
    /// watch from them; the store holds no Nodes.
    pub fn with_nodes(mut self, nodes: Vec<Value>) -> StoreBackend {
        self.nodes = Arc::new(nodes);
        self
    }

    fn view_get(&self, view: View, o: &ObjectRef) -> Result<Value, ApiError> {
        let ns = o.namespace.as_deref();
        match view {
            View::EventsV1 => {
                let core = self
                    .store
                    .get(&ResourceType::EVENTS, ns, &o.name)
                    .map_err(|_| ApiError::not_found(o.resource, &o.name))?;
                Ok(crate::views::event_v1(&core))
            }
            View::Endpoints => {
                let svc = self
                    .store
                    .get(&ResourceType::SERVICES, ns, &o.name)
                    .map_err(|_| ApiError::not_found(o.resource, &o.name))?;
                Ok(crate::views::endpoints(&svc, &self.slices_of(ns, &o.name)?))
            }
        }
    }

    fn slices_of(&self, namespace: Option<&str>, service: &str) -> Result<Vec<Value>, ApiError> {
        let rt = &ResourceType::ENDPOINT_SLICES;
        let opts = podrun_store::ListOptions {
            filter: filter(rt, Some(&format!("{SERVICE_NAME_LABEL}={service}")), None)?,
            ..Default::default()
        };
        Ok(self
            .store
            .list(rt, namespace, &opts)
            .map_err(from_store)?
            .items)
    }

    fn view_list(
        &self,
        view: View,
        c: &CollectionRef,
        l: &ListOptions,
    ) -> Result<ObjectList, ApiError> {
        let ns = c.namespace.as_deref();
        let (rt, convert): (&ResourceType, Convert) = match view {
            View::EventsV1 => (&ResourceType::EVENTS, |_, e| Ok(crate::views::event_v1(e))),
            View::Endpoints => (&ResourceType::SERVICES, |b, svc| {
                let ns = svc.pointer("/metadata/namespace").and_then(Value::as_str);
                Ok(crate::views::endpoints(
                    svc,
                    &b.slices_of(ns, name_of(svc))?,
                ))
            }),
        };
        let opts = podrun_store::ListOptions {
            filter: filter(rt, l.label_selector.as_deref(), None)?,
            ..Default::default()
        };
        let list = self.store.list(rt, ns, &opts).map_err(from_store)?;
        Ok(ObjectList {
            items: list
                .items
                .iter()
                .map(|o| convert(self, o).map(|v| encode_object(&v)))
                .collect::<Result<_, _>>()?,
            resource_version: list.revision.to_string(),
            ..Default::default()
        })
    }

    /// A watch of the `Endpoints` view: the Services' events (their selectors, revision,
    /// initial events and bookmarks) become the Endpoints' own, and an EndpointSlice's
    /// change becomes a `MODIFIED` of its Service's Endpoints at the slice's revision,
    /// as the endpoints controller writes an Endpoints object when its slices' pods
    /// change. Both watches follow the same global revision, so a client resuming from
    /// an Endpoints `resourceVersion` misses neither kind of change.
    fn watch_endpoints(
        &self,
        collection: &CollectionRef,
        options: &WatchOptions,
    ) -> Result<BoxStream<'static, WatchEvent>, ApiError> {
        let services = &ResourceType::SERVICES;
        let slices = &ResourceType::ENDPOINT_SLICES;
        let ns = collection.namespace.as_deref();
        let from_now = options
            .resource_version
            .as_deref()
            .is_none_or(|rv| rv.is_empty() || rv == "0");
        let service_stream = self
            .store
            .watch(services, ns, &store_watch_options(services, options)?)
            .map_err(from_store)?;
        // Slices from the same revision; with the current objects as the start, only their
        // later changes (the Services' initial events carry the slices as they are).
        let slice_stream = self
            .store
            .watch(
                slices,
                ns,
                &podrun_store::WatchOptions {
                    filter: filter(slices, None, None)?,
                    resource_version: if from_now {
                        Some(service_stream.revision().to_string())
                    } else {
                        options.resource_version.clone()
                    },
                    resource_version_match: None,
                    send_initial_events: None,
                    allow_bookmarks: false,
                },
            )
            .map_err(from_store)?;
        let me = self.clone();
        let service_events =
            futures::stream::unfold((service_stream, me.clone()), |(mut s, me)| async move {
                let e = s.next_or_bookmark(BOOKMARK_EVERY).await?;
                let event_type = event_type_of(e.kind);
                let object = match event_type {
                    EventType::Added | EventType::Modified => {
                        let svc = e.object;
                        let ns = svc
                            .pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        let name = name_of(&svc).to_owned();
                        let found = me
                            .blocking(move |b| b.slices_of(ns.as_deref(), &name))
                            .await;
                        let mut ep = crate::views::endpoints(&svc, &found.unwrap_or_default());
                        ep["metadata"]["resourceVersion"] =
                            svc["metadata"]["resourceVersion"].clone();
                        ep
                    }
                    EventType::Deleted => crate::views::endpoints(&e.object, &[]),
                    EventType::Bookmark => {
                        let mut b = e.object;
                        b["kind"] = json!("Endpoints");
                        b
                    }
                    EventType::Error => e.object,
                };
                Some((WatchEvent { event_type, object }, (s, me)))
            });
        let label_selector = options.label_selector.clone();
        let field_selector = options.field_selector.clone();
        let slice_events = futures::stream::unfold((slice_stream, me), move |(mut s, me)| {
            let (labels, fields) = (label_selector.clone(), field_selector.clone());
            async move {
                loop {
                    let e = s.next().await?;
                    if e.kind == podrun_store::EventType::Error {
                        let event = WatchEvent {
                            event_type: EventType::Error,
                            object: e.object,
                        };
                        return Some((event, (s, me)));
                    }
                    let Some(service) = e
                        .object
                        .pointer(&format!(
                            "/metadata/labels/{}",
                            SERVICE_NAME_LABEL.replace('/', "~1")
                        ))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                    else {
                        continue;
                    };
                    let ns = e
                        .object
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let revision = resource_version(&e.object).unwrap_or_default();
                    let (labels, fields) = (labels.clone(), fields.clone());
                    let current = me
                        .blocking(move |b| {
                            // The Service as the watch selects it, and its slices now.
                            let name_field = format!("metadata.name={service}");
                            let fields = match fields.as_deref().filter(|f| !f.is_empty()) {
                                Some(f) => format!("{f},{name_field}"),
                                None => name_field,
                            };
                            let opts = podrun_store::ListOptions {
                                filter: filter(
                                    &ResourceType::SERVICES,
                                    labels.as_deref(),
                                    Some(&fields),
                                )?,
                                ..Default::default()
                            };
                            let svc = b
                                .store
                                .list(&ResourceType::SERVICES, ns.as_deref(), &opts)
                                .map_err(from_store)?
                                .items
                                .into_iter()
                                .next();
                            match svc {
                                Some(svc) => {
                                    let found = b.slices_of(ns.as_deref(), &service)?;
                                    Ok(Some(crate::views::endpoints(&svc, &found)))
                                }
                                None => Ok(None),
                            }
                        })
                        .await;
                    if let Ok(Some(mut ep)) = current {
                        ep["metadata"]["resourceVersion"] = json!(revision);
                        let event = WatchEvent {
                            event_type: EventType::Modified,
                            object: ep,
                        };
                        return Some((event, (s, me)));
                    }
                }
            }
        });
        Ok(futures::stream::select(service_events, slice_events).boxed())
    }

    fn node(&self, name: &str, resource: &Resource) -> Result<Value, ApiError> {
        self.nodes
            .iter()
            .find(|n| name_of(n) == name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// Where `pods/log` finds a pod's container logs.
    pub fn with_log_dirs(mut self, dirs: LogDirs) -> StoreBackend {
        self.log_dirs = Some(dirs);
        self
    }

    /// How `pods/exec` starts commands on the node.
    pub fn with_exec(mut self, exec: ExecHook) -> StoreBackend {
        self.exec = Some(exec);
        self
    }

    /// The store.
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StoreBackend) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(ApiError::internal)?
    }

    fn namespace_labels(&self, namespace: Option<&str>) -> BTreeMap<String, String> {
        namespace
            .and_then(|ns| self.store.get(&ResourceType::NAMESPACES, None, ns).ok())
            .map(|n| admission::labels(&n))
            .unwrap_or_default()
    }

    fn do_create(
        &self,
        c: &CollectionRef,
        object: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let rt = rt_of(c.resource)?;
        let stamp = podrun_store_sqlite::stamp();
        let labels = self.namespace_labels(c.namespace.as_deref());
        let (mut obj, _warnings) = admission::admit(
            c.resource,
            object,
            Operation::Create,
            &labels,
            &self.mesh,
            &stamp.uid,
            self.host_rootfs,
        )?;
        // The reservation of a shared allocator, given back unless the create succeeds.
        let mut reserved = None;
        if c.resource.plural == "services" {
            let ns = c.namespace.as_deref().unwrap_or("default");
            reserved = self.allocate_cluster_ip(&mut obj, ns, options.dry_run)?;
        }
        if let Some(manager) = &options.field_manager {
            apply::record_update(
                None,
                &mut obj,
                manager,
                &rt.api_version(),
                c.resource.schema,
                rt.status_subresource,
                &now_string(),
            );
        }
        let result = self.store_create(c, rt, obj, &stamp, options.dry_run);
        if let (Some((allocator, ns, name)), Err(_)) = (reserved, &result) {
            allocator.release(&ns, &name);
        }
        result
    }

    fn store_create(
        &self,
        c: &CollectionRef,
        rt: &'static ResourceType,
        obj: Value,
        stamp: &Stamp,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if dry_run {
            return self.dry_create(rt, c.namespace.as_deref(), obj, stamp);
        }
        if c.resource.plural == "jobs" {
            // A Job's selector names the uid chosen here, so the store takes this stamp;
            // the instance's watches hear of the write through the WAL.
            let r = self
                .store
                .lock()
                .create(rt, c.namespace.as_deref(), obj, stamp);
            return r.map_err(from_store);
        }
        // Through the instance: its watches hear of it at once, and it compacts history.
        self.store
            .create(rt, c.namespace.as_deref(), obj)
            .map_err(from_store)
    }

    /// Gives a Service that needs one a cluster IP, in `clusterIP` and `clusterIPs`, with
    /// the single-stack IPv4 fields the API server sets with it: from the shared
    /// allocator when there is one (which also reserves an address the Service asks for;
    /// the reservation is returned so a failed create gives it back), else the first free
    /// one of the Service CIDR among the stored Services.
    #[allow(clippy::type_complexity)]
    fn allocate_cluster_ip(
        &self,
        svc: &mut Value,
        namespace: &str,
        dry_run: bool,
    ) -> Result<Option<(Arc<dyn ClusterIps>, String, String)>, ApiError> {
        let needs = admission::needs_cluster_ip(svc);
        let requested = svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<std::net::Ipv4Addr>().ok());
        let allocator = match &self.cluster_ips {
            Some(a) if !dry_run && (needs || requested.is_some()) => a.clone(),
            _ if needs => {
                self.first_free_cluster_ip(svc)?;
                return Ok(None);
            }
            _ => return Ok(None),
        };
        let ns = namespace.to_owned();
        let name = name_of(svc).to_owned();
        let ip = allocator
            .allocate(&ns, &name, requested)
            .map_err(|message| {
                let value = format!("[]string{{{:?}}}", requested.map(|r| r.to_string()).unwrap_or_default());
                let field = "spec.clusterIPs";
                let kind_name = name_of(svc);
                ApiError {
                    code: 422,
                    reason: "Invalid",
                    message: format!(
                        "Service {kind_name:?} is invalid: {field}: Invalid value: {value}: {message}"
                    ),
                    details: Some(Box::new(StatusDetails {
                        name: kind_name.to_owned(),
                        kind: "Service".into(),
                        causes: vec![StatusCause {
                            reason: "FieldValueInvalid".into(),
                            message: format!("Invalid value: {value}: {message}"),
                            field: field.into(),
                        }],
                        ..Default::default()
                    })),
                }
            })?;
        set_cluster_ip(svc, ip);
        Ok(Some((allocator, ns, name)))
    }

    fn first_free_cluster_ip(&self, svc: &mut Value) -> Result<(), ApiError> {
        let list = self
            .store
            .list(
                &ResourceType::SERVICES,
                None,
                &podrun_store::ListOptions::default(),
            )
            .map_err(from_store)?;
        let used = list
            .items
            .iter()
            .filter_map(|s| s.pointer("/spec/clusterIP")?.as_str()?.parse().ok())
            .collect();
        let ip = admission::allocate_cluster_ip(&used).ok_or_else(|| ApiError {
            code: 500,
            reason: "InternalError",
            message: "Internal error occurred: failed to allocate a serviceIP: range is full"
                .into(),
            details: None,
        })?;
        set_cluster_ip(svc, ip);
        Ok(())
    }

    /// A create that is checked against the store's rules but stores nothing.
    fn dry_create(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        obj: Value,
        stamp: &Stamp,
    ) -> Result<Value, ApiError> {
        let mut mem = podrun_store::Store::new(podrun_store::MemoryStorage::new());
        if let Some(ns) = namespace {
            let mut live = self
                .store
                .get(&ResourceType::NAMESPACES, None, ns)
                .map_err(from_store)?;
            if let Some(meta) = live.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
            mem.create(&ResourceType::NAMESPACES, None, live, stamp)
                .map_err(from_store)?;
        }
        if let Ok(existing) = self.store.get(rt, namespace, name_of(&obj)) {
            let _ = existing;
            return Err(from_store(podrun_store::ApiError::already_exists(
                rt,
                name_of(&obj),
            )));
        }
        mem.create(rt, namespace, obj, stamp).map_err(from_store)
    }

    /// Stores `new` over `old` (read at `old`'s resourceVersion): admission, field
    /// ownership, then the store's update with its optimistic concurrency.
    fn write_back(
        &self,
        o: &ObjectRef,
        old: &Value,
        mut new: Value,
        options: &WriteOptions,
        track: bool,
    ) -> Result<Value, ApiError> {
        let rt = rt_of(o.resource)?;
        let ns = o.namespace.as_deref();
        match o.subresource {
            Some("status") => {
                if options.dry_run {
                    return Ok(new);
                }
                self.store
                    .update_status(rt, ns, &o.name, new)
                    .map_err(from_store)
            }
            Some("scale") => {
                let replicas = new.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
                let mut obj = old.clone();
                obj["spec"]["replicas"] = replicas;
                if let Some(rv) = resource_version(&new) {
                    obj["metadata"]["resourceVersion"] = json!(rv);
                }
                if let Some(manager) = &options.field_manager {
                    apply::record_update(
                        Some(old),
                        &mut obj,
                        manager,
                        &rt.api_version(),
                        o.resource.schema,
                        rt.status_subresource,
                        &now_string(),
                    );
                }
                if options.dry_run {
                    return Ok(scale_of(&obj));
                }
                let stored = self
                    .store
                    .update(rt, ns, &o.name, obj)
                    .map_err(from_store)?;
                Ok(scale_of(&stored))
            }
            _ => {
                let labels = self.namespace_labels(ns);
                let (mut admitted, _) = admission::admit(
                    o.resource,
                    new,
                    Operation::Update,
                    &labels,
                    &self.mesh,
                    old.pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    self.host_rootfs,
                )?;
                if track && let Some(manager) = &options.field_manager {
                    apply::record_update(
                        Some(old),
                        &mut admitted,
                        manager,
                        &rt.api_version(),
                        o.resource.schema,
                        rt.status_subresource,
                        &now_string(),
                    );
                }
                new = admitted;
                if options.dry_run {
                    return Ok(new);
                }
                self.store.update(rt, ns, &o.name, new).map_err(from_store)
            }
        }
    }

    fn do_patch(
        &self,
        o: &ObjectRef,
        p: &PatchRequest,
        options: &WriteOptions,
    ) -> Result<Patched, ApiError> {
        let rt = rt_of(o.resource)?;
        let ns = o.namespace.as_deref();
        let (schema, api_version) = match o.subresource {
            Some("scale") => (
                "io.k8s.api.autoscaling.v1.Scale",
                "autoscaling/v1".to_owned(),
            ),
            _ => (o.resource.schema, rt.api_version()),
        };
        let mut last = None;
        for _ in 0..PATCH_ATTEMPTS {
            let live = match self.store.get(rt, ns, &o.name) {
                Ok(v) => Some(v),
                Err(e)
                    if e.code() == 404
                        && p.patch_type == PatchType::Apply
                        && o.subresource.is_none() =>
                {
                    None
                }
                Err(e) => return Err(from_store(e)),
            };
            let Some(live) = live else {
                // Server-side apply of an object that does not exist creates it.
                let config = self.apply_config(o, p, options)?;
                let manager = options.field_manager.clone().unwrap_or_default();
                let obj = apply::apply(
                    None,
                    &config,
                    &manager,
                    &api_version,
                    schema,
                    rt.status_subresource,
                    options.force,
                    &now_string(),
                )
                .map_err(|e| match e {
                    ApplyError::Conflicts(c) => conflicts_error(o.resource, &o.name, &c),
                    ApplyError::Patch(e) => patch_error(e),
                })?;
                let c = CollectionRef {
                    resource: o.resource,
                    namespace: o.namespace.clone(),
                };
                let created = self.do_create(
                    &c,
                    obj,
                    &WriteOptions {
                        field_manager: None,
                        ..options.clone()
                    },
                );
                match created {
                    Err(e) if e.code == 409 => {
                        last = Some(e);
                        continue;
                    }
                    other => {
                        return other.map(|object| Patched {
                            object,
                            created: true,
                        });
                    }
                }
            };
            let original = match o.subresource {
                Some("scale") => scale_of(&live),
                _ => live.clone(),
            };
            let body = p.body.as_ref();
            let mut patched = match p.patch_type {
                PatchType::Json => patch::json_patch(&original, body).map_err(patch_error)?,
                PatchType::Merge => patch::merge_patch(&original, body).map_err(patch_error)?,
                PatchType::StrategicMerge => {
                    patch::strategic_merge_patch(&original, body, schema).map_err(patch_error)?
                }
                PatchType::Apply => {
                    let config = self.apply_config(o, p, options)?;
                    let manager = options.field_manager.clone().unwrap_or_default();
                    apply::apply(
                        Some(&original),
                        &config,
                        &manager,
                        &api_version,
                        schema,
                        rt.status_subresource,
                        options.force,
                        &now_string(),
                    )
                    .map_err(|e| match e {
                        ApplyError::Conflicts(c) => conflicts_error(o.resource, &o.name, &c),
                        ApplyError::Patch(e) => patch_error(e),
                    })?
                }
            };
            // Unknown fields the patch brought in.
            let unknown = openapi::unknown_fields(
                schema,
                &mut patched,
                options.field_validation != FieldValidation::Strict,
            );
            if !unknown.is_empty() && options.field_validation == FieldValidation::Strict {
                return Err(ApiError::bad_request(format!(
                    "failed to create typed patched object ({}): {}",
                    api_version,
                    unknown
                        .iter()
                        .map(|f| format!("unknown field {f:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            // The patch's own resourceVersion, if it set one, is a precondition;
            // otherwise the write is conditional on the version just read.
            let pinned = resource_version(&patched) != resource_version(&original);
            if !pinned && let Some(rv) = resource_version(&live) {
                patched["metadata"]["resourceVersion"] = json!(rv);
            }
            let track = p.patch_type != PatchType::Apply;
            match self.write_back(o, &live, patched, options, track) {
                Err(e) if e.code == 409 && !pinned => {
                    last = Some(e);
                    continue;
                }
                other => {
                    return other.map(|object| Patched {
                        object,
                        created: false,
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| ApiError::conflict(o.resource, &o.name)))
    }

    /// The configuration of a server-side apply: YAML or JSON, for this object.
    fn apply_config(
        &self,
        o: &ObjectRef,
        p: &PatchRequest,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if options.field_manager.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError {
                code: 422,
                reason: "Invalid",
                message: "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
                details: Some(Box::new(StatusDetails {
                    group: "meta.k8s.io".into(),
                    kind: "PatchOptions".into(),
                    causes: vec![StatusCause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value: is required for apply patch".into(),
                        field: "fieldManager".into(),
                    }],
                    ..Default::default()
                })),
            });
        }
        let text = std::str::from_utf8(&p.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        let mut config: Value = serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "the apply configuration must be an object",
            ));
        }
        let meta = config
            .as_object_mut()
            .expect("checked")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        match meta.get("name").and_then(Value::as_str) {
            None | Some("") => meta["name"] = json!(o.name),
            Some(n) if n == o.name => {}
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({})",
                    o.name
                )));
            }
        }
        if let Some(ns) = &o.namespace {
            meta["namespace"] = json!(ns);
        }
        Ok(config)
    }

    fn do_delete(&self, o: &ObjectRef, d: &DeleteOptions) -> Result<Deleted, ApiError> {
        let rt = rt_of(o.resource)?;
        let propagation = match d.propagation_policy.as_deref() {
            Some("Foreground") => podrun_store::Propagation::Foreground,
            Some("Orphan") => podrun_store::Propagation::Orphan,
            _ => podrun_store::Propagation::Background,
        };
        let opts = podrun_store::DeleteOptions {
            uid: d.precondition_uid.clone(),
            resource_version: d.precondition_resource_version.clone(),
            grace_period_seconds: d.grace_period_seconds,
            propagation,
        };
        if d.dry_run {
            let obj = self
                .store
                .get(rt, o.namespace.as_deref(), &o.name)
                .map_err(from_store)?;
            return Ok(Deleted::Object(obj));
        }
        let out = self
            .store
            .delete(rt, o.namespace.as_deref(), &o.name, &opts)
            .map_err(from_store)?;
        Ok(Deleted::Object(out.object))
    }

    /// The store's options of a list of `c`.
    fn store_list_options(
        c: &CollectionRef,
        l: &ListOptions,
    ) -> Result<(&'static ResourceType, podrun_store::ListOptions), ApiError> {
        let rt = rt_of(c.resource)?;
        let exact =
            match (
                l.resource_version_match.as_deref(),
                l.resource_version.as_deref(),
            ) {
                (Some("Exact"), Some(rv)) => Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version {rv:?}"))
                })?),
                _ => None,
            };
        let opts = podrun_store::ListOptions {
            filter: filter(rt, l.label_selector.as_deref(), l.field_selector.as_deref())?,
            limit: l.limit.unwrap_or(0).max(0) as usize,
            continue_token: l.continue_token.clone().filter(|t| !t.is_empty()),
            exact_revision: exact,
        };
        Ok((rt, opts))
    }

    /// A list of stored objects, left as the store's JSON text.
    fn do_list(&self, c: &CollectionRef, l: &ListOptions) -> Result<ObjectList, ApiError> {
        let (rt, opts) = Self::store_list_options(c, l)?;
        let list = self
            .store
            .list_encoded(rt, c.namespace.as_deref(), &opts)
            .map_err(from_store)?;
        Ok(ObjectList {
            items: list.items,
            resource_version: list.revision.to_string(),
            continue_token: list.continue_token,
            remaining_item_count: None,
        })
    }
}

impl Backend for StoreBackend {
    fn get(&self, object: ObjectRef, _: GetOptions) -> BoxFuture<'_, Result<Value, ApiError>> {
        self.blocking(move |b| {
            if is_nodes(object.resource) {
                return b.node(&object.name, object.resource);
            }
            if let Some(view) = view_of(object.resource) {
                return b.view_get(view, &object);
            }
            let rt = rt_of(object.resource)?;
            let obj = b
                .store
                .get(rt, object.namespace.as_deref(), &object.name)
                .map_err(from_store)?;
            Ok(match object.subresource {
                Some("scale") => scale_of(&obj),
                _ => obj,
            })
        })
        .boxed()
    }

    fn list(
        &self,
        collection: CollectionRef,
        options: ListOptions,
    ) -> BoxFuture<'_, Result<ObjectList, ApiError>> {
        self.blocking(move |b| {
            if is_nodes(collection.resource) {
                let rev = b.store.lock().revision().map_err(from_store)?;
                // Nodes answer label selectors; the filter's kind only matters for fields.
                let filter = podrun_store::Filter::parse(
                    &ResourceType::NAMESPACES,
                    options.label_selector.as_deref().unwrap_or(""),
                    "",
                )
                .map_err(from_store)?;
                return Ok(ObjectList {
                    items: b
                        .nodes
                        .iter()
                        .filter(|n| filter.matches(&ResourceType::NAMESPACES, n))
                        .map(encode_object)
                        .collect(),
                    resource_version: rev.to_string(),
                    ..Default::default()
                });
            }
            if let Some(view) = view_of(collection.resource) {
                return b.view_list(view, &collection, &options);
            }
            b.do_list(&collection, &options)
        })
        .boxed()
    }

    fn create(
        &self,
        collection: CollectionRef,
        object: Value,
        options: WriteOptions,
    ) -> BoxFuture<'_, Result<Value, ApiError>> {
        self.blocking(move |b| b.do_create(&collection, object, &options))
            .boxed()
    }

    fn update(
        &self,
        object: ObjectRef,
        body: Value,
        options: WriteOptions,
    ) -> BoxFuture<'_, Result<Value, ApiError>> {
        self.blocking(move |b| {
            let rt = rt_of(object.resource)?;
            let old = b
                .store
                .get(rt, object.namespace.as_deref(), &object.name)
                .map_err(from_store)?;
            b.write_back(&object, &old, body, &options, true)
        })
        .boxed()
    }

    fn patch(
        &self,
        object: ObjectRef,
        patch: PatchRequest,
        options: WriteOptions,
    ) -> BoxFuture<'_, Result<Patched, ApiError>> {
        self.blocking(move |b| b.do_patch(&object, &patch, &options))
            .boxed()
    }

    fn delete(
        &self,
        object: ObjectRef,
        options: DeleteOptions,
    ) -> BoxFuture<'_, Result<Deleted, ApiError>> {
        self.blocking(move |b| b.do_delete(&object, &options))
            .boxed()
    }

    fn delete_collection(
        &self,
        collection: CollectionRef,
        selection: ListOptions,
        options: DeleteOptions,
    ) -> BoxFuture<'_, Result<ObjectList, ApiError>> {
        self.blocking(move |b| {
            let (rt, opts) = Self::store_list_options(
                &collection,
                &ListOptions {
                    limit: None,
                    continue_token: None,
                    ..selection
                },
            )?;
            let list = b
                .store
                .list(rt, collection.namespace.as_deref(), &opts)
                .map_err(from_store)?;
            let mut items = Vec::new();
            for item in &list.items {
                let o = ObjectRef {
                    resource: collection.resource,
                    namespace: item
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    name: name_of(item).to_owned(),
                    subresource: None,
                };
                match b.do_delete(&o, &options) {
                    Ok(Deleted::Object(v)) => items.push(encode_object(&v)),
                    Ok(Deleted::Gone { .. }) => {}
                    // Gone meanwhile.
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(ObjectList {
                items,
                resource_version: list.revision.to_string(),
                continue_token: None,
                remaining_item_count: None,
            })
        })
        .boxed()
    }

    fn watch(
        &self,
        collection: CollectionRef,
        options: WatchOptions,
    ) -> BoxFuture<'_, Result<BoxStream<'static, WatchEvent>, ApiError>> {
        async move {
            if is_nodes(collection.resource) {
                // The node does not change while the server runs: its ADDED events (for a
                // watch from the start), then nothing until the watch times out.
                let from_start = options
                    .resource_version
                    .as_deref()
                    .is_none_or(|rv| rv.is_empty() || rv == "0");
                let added: Vec<WatchEvent> = if from_start {
                    self.nodes
                        .iter()
                        .map(|n| WatchEvent {
                            event_type: EventType::Added,
                            object: n.clone(),
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                return Ok(futures::stream::iter(added)
                    .chain(futures::stream::pending())
                    .boxed());
            }
            let view = view_of(collection.resource);
            let rt = match view {
                Some(View::EventsV1) => &ResourceType::EVENTS,
                Some(View::Endpoints) => return self.watch_endpoints(&collection, &options),
                None => rt_of(collection.resource)?,
            };
            let opts = store_watch_options(rt, &options)?;
            let stream = self
                .store
                .watch(rt, collection.namespace.as_deref(), &opts)
                .map_err(from_store)?;
            let events = futures::stream::unfold(stream, move |mut s| async move {
                let e = s.next_or_bookmark(BOOKMARK_EVERY).await?;
                let event_type = event_type_of(e.kind);
                let object = match (view, event_type) {
                    (
                        Some(View::EventsV1),
                        EventType::Added | EventType::Modified | EventType::Deleted,
                    ) => crate::views::event_v1(&e.object),
                    (Some(View::EventsV1), EventType::Bookmark) => {
                        let mut b = e.object;
                        b["apiVersion"] = json!("events.k8s.io/v1");
                        b
                    }
                    _ => e.object,
                };
                Some((WatchEvent { event_type, object }, s))
            });
            Ok(events.boxed())
        }
        .boxed()
    }

    fn log(
        &self,
        pod: ObjectRef,
        options: LogOptions,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, ApiError>> {
        let dirs = self.log_dirs.clone();
        async move {
            let obj = self
                .get(
                    ObjectRef {
                        subresource: None,
                        ..pod.clone()
                    },
                    GetOptions::default(),
                )
                .await?;
            crate::logs::stream(&obj, dirs.as_ref().and_then(|d| d(&obj)), &options).await
        }
        .boxed()
    }

    fn exec(
        &self,
        pod: Value,
        container: String,
        request: ExecRequest,
    ) -> BoxFuture<'_, Result<Option<ExecProcess>, ApiError>> {
        let hook = self.exec.clone();
        async move {
            let Some(hook) = hook else {
                return Err(crate::backend::no_node_for_exec());
            };
            hook(pod, container, request)
                .await
                .map_err(ApiError::bad_request)
        }
        .boxed()
    }
}
