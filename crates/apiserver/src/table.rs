//! `Table` (`meta.k8s.io/v1`) output: the columns and cells the Kubernetes API server's
//! printers compute for each served kind (pods exactly as upstream computes READY, STATUS
//! and RESTARTS, native sidecars included), `includeObject` handling, and the one-row Table
//! of a watch event. Time is an argument: `now` is when the answer is made.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobCondition};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Endpoints, Event, Namespace, Node, PodReadinessGate, PodSpec, PodStatus,
    Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::catalogue::Resource;
use crate::status::ApiError;

/// What `rows[].object` holds (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// `null`.
    None,
    /// A `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter (`None`, `Metadata`, `Object`).
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("") | Some("Metadata") => Ok(Self::Metadata),
            Some("None") => Ok(Self::None),
            Some("Object") => Ok(Self::Object),
            Some(other) => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

/// One column definition. The fields are in the order of their JSON names, so a Table
/// serialised at once reads as one built of JSON values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    /// What the column shows.
    pub description: &'static str,
    /// `name` for the object name column, else empty.
    pub format: &'static str,
    /// Display name (`Nominated Node`).
    pub name: &'static str,
    /// 0 always shown, 1 only with `-o wide`.
    pub priority: i32,
    /// `string` or `integer`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

const fn col(name: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        description,
        priority: 0,
    }
}
const fn int(name: &'static str, description: &'static str) -> Column {
    Column {
        kind: "integer",
        ..col(name, description)
    }
}
const fn wide(c: Column) -> Column {
    Column { priority: 1, ..c }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: "Name must be unique within a namespace.",
    priority: 0,
};
const AGE: Column = col(
    "Age",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);
const CONTAINERS: Column = wide(col(
    "Containers",
    "Names of each container in the template.",
));
const IMAGES: Column = wide(col(
    "Images",
    "Images referenced by each container in the template.",
));
const SELECTOR: Column = wide(col("Selector", "Label selector of the objects it manages."));

/// The columns of `resource`'s Table.
pub fn columns(resource: &Resource) -> Vec<Column> {
    match (resource.gvk.group, resource.gvk.kind) {
        ("", "Pod") => vec![
            NAME,
            col(
                "Ready",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            col(
                "Status",
                "The aggregate status of the containers in this pod.",
            ),
            col(
                "Restarts",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            AGE,
            wide(col("IP", "IP address allocated to the pod.")),
            wide(col(
                "Node",
                "NodeName is the name of the node the pod is scheduled onto.",
            )),
            wide(col(
                "Nominated Node",
                "Node the scheduler nominated for a preempting pod.",
            )),
            wide(col(
                "Readiness Gates",
                "Readiness gates that are true out of those the pod declares.",
            )),
        ],
        ("", "Namespace") => vec![NAME, col("Status", "The status of the namespace"), AGE],
        ("", "Service") => vec![
            NAME,
            col("Type", "The type of the service."),
            col("Cluster-IP", "The IP address of the service."),
            col("External-IP", "The external IP address of the service."),
            col("Port(s)", "The ports of the service."),
            AGE,
            wide(col(
                "Selector",
                "Route traffic to pods with label keys and values matching this selector.",
            )),
        ],
        ("", "Endpoints") => vec![NAME, col("Endpoints", "Endpoints of the service."), AGE],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            NAME,
            col("AddressType", "The type of address held by the slice."),
            col("Ports", "Ports of the slice."),
            col("Endpoints", "Addresses of the slice's endpoints."),
            AGE,
        ],
        ("", "ConfigMap") => vec![NAME, col("Data", "Number of data entries."), AGE],
        ("", "Secret") => vec![
            NAME,
            col("Type", "The type of the secret."),
            col("Data", "Number of data entries."),
            AGE,
        ],
        ("", "ServiceAccount") => vec![NAME, col("Secrets", "Number of secrets."), AGE],
        (_, "Event") => vec![
            col("Last Seen", "Time of the last occurrence."),
            col("Type", "Type of this event (Normal, Warning)."),
            col("Reason", "Why the action was taken."),
            col("Object", "The object this event is about."),
            wide(col(
                "Subobject",
                "The part of the object this event is about.",
            )),
            wide(col("Source", "The component reporting this event.")),
            col(
                "Message",
                "A human-readable description of the status of this operation.",
            ),
            wide(col("First Seen", "Time of the first occurrence.")),
            wide(col("Count", "The number of times this event has occurred.")),
            wide(NAME),
        ],
        ("apps", "Deployment") => vec![
            NAME,
            col("Ready", "Number of the pod with ready state"),
            col(
                "Up-to-date",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            col(
                "Available",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "ReplicaSet") => vec![
            NAME,
            int("Desired", "Number of desired pods."),
            int("Current", "Number of actual pods."),
            int("Ready", "Number of ready pods."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "Job") => vec![
            NAME,
            col("Status", "Status of the job."),
            col("Completions", "The completion status of the job."),
            col("Duration", "Time required to complete the job."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "CronJob") => vec![
            NAME,
            col("Schedule", "The schedule in Cron format."),
            col("Timezone", "The time zone name for the given schedule."),
            Column {
                kind: "boolean",
                ..col("Suspend", "Whether subsequent executions are suspended.")
            },
            int("Active", "Number of currently running jobs."),
            col(
                "Last Schedule",
                "When the job was last successfully scheduled.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("", "Node") => vec![
            NAME,
            col("Status", "The status of the node"),
            col("Roles", "The roles of the node"),
            AGE,
            col("Version", "Kubelet Version reported by the node."),
            wide(col(
                "Internal-IP",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            )),
            wide(col(
                "External-IP",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            )),
            wide(col(
                "OS-Image",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            )),
            wide(col(
                "Kernel-Version",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            )),
            wide(col(
                "Container-Runtime",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            )),
        ],
        _ => vec![NAME, AGE],
    }
}

/// apimachinery's `HumanDuration` of `seconds` (and the nanoseconds beyond them).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn seconds_between(from: Timestamp, to: Timestamp) -> i64 {
    to.duration_since(from).as_secs()
}

/// `translateTimestampSince`: the age of `t` at `now`, `<unknown>` without a time.
pub fn since(t: Option<&Time>, now: Timestamp) -> String {
    match t {
        Some(t) => human_duration(seconds_between(t.0, now)),
        None => "<unknown>".into(),
    }
}

fn cannot_print(e: serde_json::Error) -> ApiError {
    ApiError::internal(format!("cannot print object: {e}"))
}

/// An object a row is printed from: a decoded JSON value (one object's GET or watch
/// event) or JSON text (a list's items, as the store holds them). Each printer decodes
/// the typed fields it needs straight from it.
trait Source {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, ApiError>;
}

impl Source for Value {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        T::deserialize(self).map_err(cannot_print)
    }
}

impl Source for RawValue {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_str(self.get()).map_err(cannot_print)
    }
}

/// An object's `metadata` alone (the printers of kinds without columns of their own).
#[derive(Deserialize)]
struct MetadataOnly {
    #[serde(default)]
    metadata: Option<ObjectMeta>,
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_owned()
    }
}

/// `labels.FormatLabels`: `k=v,k2=v2` sorted by key, `<none>` when empty.
pub fn format_labels(labels: Option<&BTreeMap<String, String>>) -> String {
    let s = labels
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    or_none(&s)
}

/// `LabelSelectorAsSelector(s).String()`: requirements sorted by key; empty for none.
pub fn selector_string(selector: Option<&LabelSelector>) -> String {
    let Some(sel) = selector else {
        return String::new();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        reqs.push((k.clone(), format!("{k}={v}")));
    }
    for e in sel.match_expressions.iter().flatten() {
        let mut values = e.values.clone().unwrap_or_default();
        values.sort();
        let k = &e.key;
        let text = match e.operator.as_str() {
            "In" => format!("{k} in ({})", values.join(",")),
            "NotIn" => format!("{k} notin ({})", values.join(",")),
            "Exists" => k.clone(),
            "DoesNotExist" => format!("!{k}"),
            other => format!("{k} {other} ({})", values.join(",")),
        };
        reqs.push((k.clone(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// `FormatLabelSelector`: the selector string, `<none>` when it selects everything.
pub fn format_label_selector(selector: Option<&LabelSelector>) -> String {
    or_none(&selector_string(selector))
}

fn container_cells(spec: Option<&PodSpec>) -> (String, String) {
    let containers: &[Container] = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.image.as_deref().unwrap_or(""))
        .collect();
    (names.join(","), images.join(","))
}

/// Cells and conditions of one row.
struct Row {
    cells: Vec<Value>,
    conditions: Option<Value>,
}

fn plain(cells: Vec<Value>) -> Row {
    Row {
        cells,
        conditions: None,
    }
}

fn name_of(meta: &ObjectMeta) -> Value {
    json!(meta.name.clone().unwrap_or_default())
}

fn age(meta: &ObjectMeta, now: Timestamp) -> Value {
    json!(since(meta.creation_timestamp.as_ref(), now))
}

/// The parts of a Pod its row reads, decoded without the rest (the containers' commands,
/// env, probes and resources, `managedFields`, …): a list of pods decodes only these.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PrintedPod {
    metadata: PrintedPodMeta,
    spec: Option<PrintedPodSpec>,
    status: Option<PodStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PrintedPodMeta {
    name: Option<String>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PrintedPodSpec {
    /// Only counted.
    containers: Option<Vec<IgnoredAny>>,
    init_containers: Option<Vec<PrintedInitContainer>>,
    node_name: Option<String>,
    readiness_gates: Option<Vec<PodReadinessGate>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PrintedInitContainer {
    name: String,
    restart_policy: Option<String>,
}

impl PrintedInitContainer {
    /// A native sidecar, as `podrun_model::is_sidecar` tells: `restartPolicy: Always`.
    fn is_sidecar(&self) -> bool {
        self.restart_policy.as_deref() == Some("Always")
    }
}

fn is_sidecar(spec: &PrintedPodSpec, name: &str) -> bool {
    spec.init_containers
        .iter()
        .flatten()
        .any(|c| c.name == name && c.is_sidecar())
}

fn later(a: Option<Timestamp>, b: Option<&Time>) -> Option<Timestamp> {
    match (a, b.map(|t| t.0)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn pod_row(pod: PrintedPod, now: Timestamp) -> Row {
    let spec = pod.spec.unwrap_or_default();
    let spec = &spec;
    let status = pod.status.unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_default();
    let mut reason = status
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| phase.clone());
    let conditions = status.conditions.clone().unwrap_or_default();
    if conditions
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".into();
    }
    let row_conditions = match phase.as_str() {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    };
    let init_count = spec.init_containers.as_ref().map_or(0, Vec::len);
    let total = spec.containers.as_ref().map_or(0, Vec::len)
        + spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.is_sidecar())
            .count();
    let mut ready = 0usize;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;
    let mut initializing = false;
    for (i, c) in status.init_container_statuses.iter().flatten().enumerate() {
        restarts += i64::from(c.restart_count);
        let last_term = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        if let Some(t) = last_term {
            last_restart = later(last_restart, t.finished_at.as_ref());
        }
        let sidecar = is_sidecar(spec, &c.name);
        if sidecar {
            sidecar_restarts += i64::from(c.restart_count);
            if let Some(t) = last_term {
                last_sidecar_restart = later(last_sidecar_restart, t.finished_at.as_ref());
            }
        }
        let state = c.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if sidecar && c.started == Some(true) {
            if c.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = &state.terminated {
            reason = match t.reason.as_deref() {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => match t.signal {
                    Some(s) if s != 0 => format!("Init:Signal:{s}"),
                    _ => format!("Init:ExitCode:{}", t.exit_code),
                },
            };
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{init_count}");
        }
        initializing = true;
        break;
    }
    let initialized = conditions
        .iter()
        .any(|c| c.type_ == "Initialized" && c.status == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in status.container_statuses.iter().flatten().rev() {
            restarts += i64::from(c.restart_count);
            if let Some(t) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
                last_restart = later(last_restart, t.finished_at.as_ref());
            }
            let state = c.state.clone().unwrap_or_default();
            let waiting = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty());
            if let Some(w) = waiting {
                reason = w;
            } else if let Some(t) = &state.terminated {
                reason = match t.reason.as_deref() {
                    Some(r) if !r.is_empty() => r.to_owned(),
                    _ => match t.signal {
                        Some(s) if s != 0 => format!("Signal:{s}"),
                        _ => format!("ExitCode:{}", t.exit_code),
                    },
                };
            } else if c.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }
    if pod.metadata.deletion_timestamp.is_some() {
        if status.reason.as_deref() == Some("NodeLost") {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => {
            format!(
                "{restarts} ({} ago)",
                human_duration(seconds_between(t, now))
            )
        }
        _ => restarts.to_string(),
    };
    let ip = status
        .pod_ips
        .as_ref()
        .and_then(|ips| ips.first())
        .map(|ip| ip.ip.clone())
        .unwrap_or_default();
    let gates = match spec.readiness_gates.as_deref() {
        None | Some([]) => "<none>".to_owned(),
        Some(gates) => {
            let true_count = gates
                .iter()
                .filter(|g| {
                    conditions
                        .iter()
                        .find(|c| c.type_ == g.condition_type)
                        .is_some_and(|c| c.status == "True")
                })
                .count();
            format!("{true_count}/{}", gates.len())
        }
    };
    Row {
        cells: vec![
            json!(pod.metadata.name.unwrap_or_default()),
            json!(format!("{ready}/{total}")),
            json!(reason),
            json!(restarts_cell),
            json!(since(pod.metadata.creation_timestamp.as_ref(), now)),
            json!(or_none(&ip)),
            json!(or_none(spec.node_name.as_deref().unwrap_or(""))),
            json!(or_none(status.nominated_node_name.as_deref().unwrap_or(""))),
            json!(gates),
        ],
        conditions: row_conditions,
    }
}

fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let joined = list.join(",");
    if more {
        return format!("{joined} + {} more...", count - max);
    }
    if joined.is_empty() {
        "<unset>".into()
    } else {
        joined
    }
}

fn endpoints_cell(ep: &Endpoints) -> String {
    let subsets = ep.subsets.as_deref().unwrap_or(&[]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    let max = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addresses = ss.addresses.as_deref().unwrap_or(&[]);
        let ports = ss.ports.as_deref().unwrap_or(&[]);
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(a.ip.clone());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == max {
                    more = true;
                    break;
                }
                let host = if a.ip.contains(':') {
                    format!("[{}]", a.ip)
                } else {
                    a.ip.clone()
                };
                list.push(format!("{host}:{}", p.port));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - max)
    } else {
        joined
    }
}

fn service_row(svc: &Service, now: Timestamp) -> Row {
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    let external_ips = spec.external_ips.clone().unwrap_or_default();
    // A sorted set, as upstream's `loadBalancerStatusStringer`.
    let lb: std::collections::BTreeSet<String> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i.ip.clone()
                .filter(|s| !s.is_empty())
                .or_else(|| i.hostname.clone().filter(|s| !s.is_empty()))
        })
        .collect();
    let external = match kind.as_str() {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_owned()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut all: Vec<String> = lb.iter().cloned().collect();
            all.extend(external_ips.iter().cloned());
            if all.is_empty() {
                "<pending>".to_owned()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => spec.external_name.clone().unwrap_or_default(),
        _ => "<unknown>".to_owned(),
    };
    let ports: Vec<String> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            match p.node_port {
                Some(n) if n > 0 => format!("{}:{n}/{proto}", p.port),
                _ => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    plain(vec![
        name_of(&svc.metadata),
        json!(kind),
        // `clusterIPs[0]`; `clusterIP` stands in on objects stored before it was defaulted.
        json!(or_none(
            spec.cluster_ips
                .as_ref()
                .and_then(|ips| ips.first())
                .or(spec.cluster_ip.as_ref())
                .map_or("", String::as_str)
        )),
        json!(external),
        json!(or_none(&ports.join(","))),
        age(&svc.metadata, now),
        json!(format_labels(spec.selector.as_ref())),
    ])
}

/// The first condition of type `kind` decides, as upstream's `hasJobCondition`.
fn job_has(conditions: &[JobCondition], kind: &str) -> bool {
    conditions
        .iter()
        .find(|c| c.type_ == kind)
        .is_some_and(|c| c.status == "True")
}

fn job_row(job: &Job, now: Timestamp) -> Row {
    let spec = job.spec.clone().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let succeeded = status.succeeded.unwrap_or(0);
    let completions = match spec.completions {
        Some(c) => format!("{succeeded}/{c}"),
        None => match spec.parallelism {
            Some(p) if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (&status.start_time, &status.completion_time) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(seconds_between(s.0, now)),
        (Some(s), Some(c)) => human_duration(seconds_between(s.0, c.0)),
    };
    let conditions = status.conditions.clone().unwrap_or_default();
    let state = if job_has(&conditions, "Complete") {
        "Complete"
    } else if job_has(&conditions, "Failed") {
        "Failed"
    } else if job.metadata.deletion_timestamp.is_some() {
        "Terminating"
    } else if job_has(&conditions, "Suspended") {
        "Suspended"
    } else if job_has(&conditions, "FailureTarget") {
        "FailureTarget"
    } else if job_has(&conditions, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let (names, images) = container_cells(spec.template.spec.as_ref());
    plain(vec![
        name_of(&job.metadata),
        json!(state),
        json!(completions),
        json!(duration),
        age(&job.metadata, now),
        json!(names),
        json!(images),
        json!(format_label_selector(spec.selector.as_ref())),
    ])
}

fn event_row(ev: &Event, now: Timestamp) -> Row {
    let first = match &ev.first_timestamp {
        Some(t) => since(Some(t), now),
        None => match &ev.event_time {
            Some(t) => human_duration(seconds_between(t.0, now)),
            None => "<unknown>".into(),
        },
    };
    let mut last = match &ev.last_timestamp {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = ev.count.unwrap_or(0);
    if let Some(series) = &ev.series {
        if let Some(t) = &series.last_observed_time {
            last = human_duration(seconds_between(t.0, now));
        }
        count = series.count.unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let involved = &ev.involved_object;
    let kind = involved.kind.clone().unwrap_or_default().to_lowercase();
    let target = match involved.name.as_deref() {
        Some(n) if !n.is_empty() => format!("{kind}/{n}"),
        _ => kind,
    };
    let component = ev
        .source
        .as_ref()
        .and_then(|s| s.component.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| ev.reporting_component.clone())
        .unwrap_or_default();
    let instance = ev
        .source
        .as_ref()
        .and_then(|s| s.host.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| ev.reporting_instance.clone())
        .unwrap_or_default();
    let source = match (component.is_empty(), instance.is_empty()) {
        (true, true) => String::new(),
        (_, true) => component,
        _ => format!("{component}, {instance}"),
    };
    plain(vec![
        json!(last),
        json!(ev.type_.clone().unwrap_or_default()),
        json!(ev.reason.clone().unwrap_or_default()),
        json!(target),
        json!(involved.field_path.clone().unwrap_or_default()),
        json!(source),
        json!(ev.message.clone().unwrap_or_default().trim()),
        json!(first),
        json!(count),
        name_of(&ev.metadata),
    ])
}

/// An `events.k8s.io/v1` Event in the core form the printer reads.
fn events_v1_as_core(object: &Value) -> Value {
    let mut core = json!({
        "metadata": object.get("metadata").cloned().unwrap_or(Value::Null),
        "involvedObject": object.get("regarding").cloned().unwrap_or(json!({})),
        "reason": object.get("reason"),
        "message": object.get("note"),
        "type": object.get("type"),
        "source": object.get("deprecatedSource"),
        "firstTimestamp": object.get("deprecatedFirstTimestamp"),
        "lastTimestamp": object.get("deprecatedLastTimestamp"),
        "count": object.get("deprecatedCount"),
        "eventTime": object.get("eventTime"),
        "series": object.get("series"),
        "reportingComponent": object.get("reportingController"),
        "reportingInstance": object.get("reportingInstance"),
    });
    if let Value::Object(m) = &mut core {
        m.retain(|_, v| !v.is_null());
    }
    core
}

fn node_row(node: &Node, now: Timestamp) -> Row {
    let status = node.status.clone().unwrap_or_default();
    let mut states: Vec<String> = Vec::new();
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
    {
        states.push(if c.status == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if states.is_empty() {
        states.push("Unknown".into());
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        states.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in node.metadata.labels.iter().flatten() {
        let role = if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
            r.to_owned()
        } else if k == "kubernetes.io/role" {
            v.clone()
        } else {
            continue;
        };
        if !role.is_empty() && !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles.sort();
    let info = status.node_info.clone().unwrap_or_default();
    let address = |kind: &str| {
        status
            .addresses
            .iter()
            .flatten()
            .find(|a| a.type_ == kind)
            .map_or("<none>".to_owned(), |a| a.address.clone())
    };
    let unknown = |s: &str| {
        if s.is_empty() {
            "<unknown>".to_owned()
        } else {
            s.to_owned()
        }
    };
    plain(vec![
        name_of(&node.metadata),
        json!(states.join(",")),
        json!(or_none(&roles.join(","))),
        age(&node.metadata, now),
        json!(info.kubelet_version),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(unknown(&info.os_image)),
        json!(unknown(&info.kernel_version)),
        json!(unknown(&info.container_runtime_version)),
    ])
}

fn row_for<S: Source + ?Sized>(
    resource: &Resource,
    object: &S,
    now: Timestamp,
) -> Result<Row, ApiError> {
    Ok(match (resource.gvk.group, resource.gvk.kind) {
        ("", "Pod") => pod_row(object.decode::<PrintedPod>()?, now),
        ("", "Namespace") => {
            let ns: Namespace = object.decode()?;
            let phase = ns
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            plain(vec![
                name_of(&ns.metadata),
                json!(phase),
                age(&ns.metadata, now),
            ])
        }
        ("", "Service") => service_row(&object.decode()?, now),
        ("", "Endpoints") => {
            let ep: Endpoints = object.decode()?;
            plain(vec![
                name_of(&ep.metadata),
                json!(endpoints_cell(&ep)),
                age(&ep.metadata, now),
            ])
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            let s: EndpointSlice = object.decode()?;
            let max = 3;
            let mut ports = Vec::new();
            let mut pcount = 0;
            for p in s.ports.iter().flatten() {
                if ports.len() < max {
                    ports.push(match (p.port, &p.name) {
                        (Some(n), _) => n.to_string(),
                        (None, Some(name)) => name.clone(),
                        (None, None) => "<unset>".into(),
                    });
                }
                pcount += 1;
            }
            let mut addrs = Vec::new();
            let mut acount = 0;
            for e in s.endpoints.iter().flatten() {
                for a in &e.addresses {
                    if addrs.len() < max {
                        addrs.push(a.clone());
                    }
                    acount += 1;
                }
            }
            plain(vec![
                name_of(&s.metadata),
                json!(s.address_type),
                json!(list_with_more(&ports, pcount > max, pcount, max)),
                json!(list_with_more(&addrs, acount > max, acount, max)),
                age(&s.metadata, now),
            ])
        }
        ("", "ConfigMap") => {
            let cm: ConfigMap = object.decode()?;
            let n = cm.data.as_ref().map_or(0, BTreeMap::len)
                + cm.binary_data.as_ref().map_or(0, BTreeMap::len);
            plain(vec![
                name_of(&cm.metadata),
                json!(n),
                age(&cm.metadata, now),
            ])
        }
        ("", "Secret") => {
            let s: Secret = object.decode()?;
            plain(vec![
                name_of(&s.metadata),
                json!(s.type_.clone().unwrap_or_else(|| "Opaque".into())),
                json!(s.data.as_ref().map_or(0, BTreeMap::len)),
                age(&s.metadata, now),
            ])
        }
        ("", "ServiceAccount") => {
            let sa: ServiceAccount = object.decode()?;
            plain(vec![
                name_of(&sa.metadata),
                json!(sa.secrets.as_ref().map_or(0, Vec::len)),
                age(&sa.metadata, now),
            ])
        }
        ("", "Event") => event_row(&object.decode()?, now),
        ("events.k8s.io", "Event") => {
            let core = events_v1_as_core(&object.decode::<Value>()?);
            event_row(&core.decode()?, now)
        }
        ("apps", "Deployment") => {
            let d: Deployment = object.decode()?;
            let spec = d.spec.clone();
            let status = d.status.clone().unwrap_or_default();
            let (names, images) = container_cells(spec.template.spec.as_ref());
            plain(vec![
                name_of(&d.metadata),
                json!(format!(
                    "{}/{}",
                    status.ready_replicas.unwrap_or(0),
                    spec.replicas.unwrap_or(1)
                )),
                json!(status.updated_replicas.unwrap_or(0)),
                json!(status.available_replicas.unwrap_or(0)),
                age(&d.metadata, now),
                json!(names),
                json!(images),
                json!(selector_string(Some(&spec.selector))),
            ])
        }
        ("apps", "ReplicaSet") => {
            let rs: ReplicaSet = object.decode()?;
            let spec = rs.spec.clone();
            let status = rs.status.clone().unwrap_or_default();
            let (names, images) =
                container_cells(spec.template.as_ref().and_then(|t| t.spec.as_ref()));
            plain(vec![
                name_of(&rs.metadata),
                json!(spec.replicas.unwrap_or(1)),
                json!(status.replicas),
                json!(status.ready_replicas.unwrap_or(0)),
                age(&rs.metadata, now),
                json!(names),
                json!(images),
                json!(format_label_selector(Some(&spec.selector))),
            ])
        }
        ("batch", "Job") => job_row(&object.decode()?, now),
        ("batch", "CronJob") => {
            let cj: CronJob = object.decode()?;
            let spec = cj.spec.clone();
            let status = cj.status.clone().unwrap_or_default();
            let job_spec = spec.job_template.spec.clone().unwrap_or_default();
            let (names, images) = container_cells(job_spec.template.spec.as_ref());
            let selector = format_label_selector(job_spec.selector.as_ref());
            plain(vec![
                name_of(&cj.metadata),
                json!(spec.schedule),
                json!(spec.time_zone.clone().unwrap_or_else(|| "<none>".into())),
                json!(match spec.suspend {
                    None => "<unset>",
                    Some(true) => "True",
                    Some(false) => "False",
                }),
                json!(status.active.as_ref().map_or(0, Vec::len)),
                json!(match &status.last_schedule_time {
                    Some(t) => since(Some(t), now),
                    None => "<none>".into(),
                }),
                age(&cj.metadata, now),
                json!(names),
                json!(images),
                json!(selector),
            ])
        }
        ("", "Node") => node_row(&object.decode()?, now),
        _ => {
            let meta = object
                .decode::<MetadataOnly>()?
                .metadata
                .unwrap_or_default();
            plain(vec![name_of(&meta), age(&meta, now)])
        }
    })
}

/// The `rows[].object` of `object` for `include`.
pub fn row_object(object: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => object.clone(),
        IncludeObject::Metadata => partial_object_metadata(object),
    }
}

/// `object` as a `PartialObjectMetadata`.
pub fn partial_object_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// One Table row for `object`.
pub fn row(
    resource: &Resource,
    object: &Value,
    include: IncludeObject,
    now: Timestamp,
) -> Result<Value, ApiError> {
    let r = row_for(resource, object, now)?;
    let mut out = json!({"cells": r.cells});
    if let Some(c) = r.conditions {
        out["conditions"] = c;
    }
    out["object"] = row_object(object, include);
    Ok(out)
}

/// A Table of `objects` (one for a single GET, all items for a list) with list metadata
/// `resource_version` and `continue_token`.
pub fn table(
    resource: &Resource,
    objects: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    include: IncludeObject,
    now: Timestamp,
) -> Result<Value, ApiError> {
    let rows = objects
        .iter()
        .map(|o| row(resource, o, include, now))
        .collect::<Result<Vec<_>, _>>()?;
    let mut metadata = json!({});
    if !resource_version.is_empty() {
        metadata["resourceVersion"] = json!(resource_version);
    }
    if let Some(c) = continue_token.filter(|c| !c.is_empty()) {
        metadata["continue"] = json!(c);
    }
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns(resource),
    });
    // Moved in, not through `json!`, which would copy every row.
    t["rows"] = Value::Array(rows);
    Ok(t)
}

/// A watch event whose object is a one-row Table; `columnDefinitions` only when `first`.
pub fn watch_event(
    resource: &Resource,
    event_type: &str,
    object: &Value,
    first: bool,
    include: IncludeObject,
    now: Timestamp,
) -> Result<Value, ApiError> {
    let rv = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut t = table(
        resource,
        std::slice::from_ref(object),
        rv,
        None,
        include,
        now,
    )?;
    if !first {
        t["columnDefinitions"] = Value::Null;
    }
    Ok(json!({"type": event_type, "object": t}))
}

/// The `metadata` of an object given as JSON text, left as text (`None` without one).
pub fn encoded_metadata(object: &RawValue) -> Result<Option<&RawValue>, ApiError> {
    #[derive(Deserialize)]
    struct Metadata<'a> {
        #[serde(borrow, default)]
        metadata: Option<&'a RawValue>,
    }
    let m: Metadata<'_> = serde_json::from_str(object.get()).map_err(cannot_print)?;
    Ok(m.metadata)
}

/// `object` (JSON text) with `kind` and `apiVersion` filled in from `resource` where it
/// lacks them, as a row's whole object carries them.
pub fn encoded_with_kind(
    resource: &Resource,
    object: &RawValue,
) -> Result<Box<RawValue>, ApiError> {
    let mut top: BTreeMap<String, &RawValue> =
        serde_json::from_str(object.get()).map_err(cannot_print)?;
    if top.contains_key("kind") && top.contains_key("apiVersion") {
        return Ok(object.to_owned());
    }
    let kind = serde_json::value::to_raw_value(resource.gvk.kind).map_err(cannot_print)?;
    let api_version =
        serde_json::value::to_raw_value(&resource.gvk.api_version()).map_err(cannot_print)?;
    top.entry("kind".into()).or_insert(&kind);
    top.entry("apiVersion".into()).or_insert(&api_version);
    serde_json::value::to_raw_value(&top).map_err(cannot_print)
}

/// A `PartialObjectMetadata` over `metadata` given as JSON text (`{}` without one).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EncodedPartialObjectMetadata<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a RawValue,
}

impl<'a> EncodedPartialObjectMetadata<'a> {
    /// The `PartialObjectMetadata` of `metadata`.
    pub fn new(metadata: Option<&'a RawValue>) -> Self {
        Self {
            api_version: "meta.k8s.io/v1",
            kind: "PartialObjectMetadata",
            metadata: metadata.unwrap_or(empty_object()),
        }
    }
}

fn empty_object() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| RawValue::from_string("{}".into()).expect("valid JSON"))
}

/// List metadata of a Table: `continue` and `resourceVersion` when there are.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TableMeta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    r#continue: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_version: Option<&'a str>,
}

/// What a row of an encoded Table carries as its object.
enum EncodedRowObject<'a> {
    None,
    Object(Box<RawValue>),
    Metadata(EncodedPartialObjectMetadata<'a>),
}

impl Serialize for EncodedRowObject<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::None => s.serialize_unit(),
            Self::Object(o) => o.serialize(s),
            Self::Metadata(m) => m.serialize(s),
        }
    }
}

#[derive(Serialize)]
struct EncodedRow<'a> {
    cells: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conditions: Option<Value>,
    object: EncodedRowObject<'a>,
}

/// The fields in the order of their JSON names, as [`table`]'s `Value` has them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EncodedTable<'a> {
    api_version: &'static str,
    column_definitions: Vec<Column>,
    kind: &'static str,
    metadata: TableMeta<'a>,
    rows: Vec<EncodedRow<'a>>,
}

/// [`table`] of objects given as JSON text (a list's items as the store holds them),
/// serialised: each printer decodes only its typed fields from the text, a row's
/// `PartialObjectMetadata` copies the object's `metadata` text, and the answer is written
/// once into one buffer. A row's whole object (`includeObject=Object`) carries `kind`
/// and `apiVersion`, filled in from `resource` where the text lacks them.
pub fn table_encoded(
    resource: &Resource,
    objects: &[Box<RawValue>],
    resource_version: &str,
    continue_token: Option<&str>,
    include: IncludeObject,
    now: Timestamp,
) -> Result<Vec<u8>, ApiError> {
    let rows = objects
        .iter()
        .map(|o| {
            let r = row_for(resource, o.as_ref(), now)?;
            let object = match include {
                IncludeObject::None => EncodedRowObject::None,
                IncludeObject::Object => EncodedRowObject::Object(encoded_with_kind(resource, o)?),
                IncludeObject::Metadata => EncodedRowObject::Metadata(
                    EncodedPartialObjectMetadata::new(encoded_metadata(o)?),
                ),
            };
            Ok(EncodedRow {
                cells: r.cells,
                conditions: r.conditions,
                object,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let t = EncodedTable {
        api_version: "meta.k8s.io/v1",
        column_definitions: columns(resource),
        kind: "Table",
        metadata: TableMeta {
            r#continue: continue_token.filter(|c| !c.is_empty()),
            resource_version: Some(resource_version).filter(|rv| !rv.is_empty()),
        },
        rows,
    };
    serde_json::to_vec(&t).map_err(cannot_print)
}
