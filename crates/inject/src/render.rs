//! The injection itself: decide, strip a previous injection, render `istio-init` and
//! `istio-proxy`, lay user overrides on top, rewrite app probes, place everything in native or
//! classic order, and write the metadata. Works on raw JSON so unknown fields survive.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::annotations::{self as ann, parse_bool, string_map};
use crate::config::{InterceptionMode, MeshConfig, NativeSidecars, Policy, Runtime};
use crate::probes::{self, Probers};
use crate::{InjectError, Injected, Outcome, PodContext, SidecarMode, Skip, Workload};
use podrun_model::quantity::Quantity;

/// Name of the iptables init container.
pub const INIT_NAME: &str = "istio-init";
/// Name of the proxy container.
pub const PROXY_NAME: &str = "istio-proxy";
/// Kubelet health port of the proxy.
const HEALTH_PORT: u16 = 15021;
/// Marker argument of the Job quit wrapper, used to recognise an already wrapped container.
const JOB_WRAPPER_MARK: &str = "podrun-job-wrapper";
const SYSTEM_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];
/// Injected volumes in template order.
const VOLUME_NAMES: [&str; 9] = [
    "workload-socket",
    "credential-socket",
    "workload-certs",
    "istio-envoy",
    "istio-data",
    "istio-podinfo",
    "istio-token",
    "istiod-ca-cert",
    "istio-ca-crl",
];

/// Everything the template needs, computed once from the pod and config.
struct Inputs<'a> {
    config: &'a MeshConfig,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    namespace: String,
    workload: Workload,
    native: bool,
    mode: InterceptionMode,
    status_port: u16,
    proxy_config: Map<String, Value>,
    hold_application: bool,
    proxy_env_extra: BTreeMap<String, String>,
    network: String,
    cluster_id: String,
}

impl Inputs<'_> {
    fn ann(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    fn ann_or<'b>(&'b self, key: &str, default: &'b str) -> &'b str {
        self.ann(key).unwrap_or(default)
    }

    fn podrun(&self) -> bool {
        self.config.runtime == Runtime::Podrun
    }

    /// The agent command prefix: `pilot-agent` in Istio's image, `podrun proxy` otherwise.
    fn agent(&self, rest: &[&str]) -> Value {
        let mut cmd: Vec<String> = if self.podrun() {
            vec![self.config.podrun_path.clone(), "proxy".into()]
        } else {
            vec!["pilot-agent".into()]
        };
        cmd.extend(rest.iter().map(|s| (*s).to_owned()));
        json!(cmd)
    }

    fn proxy_metadata(&self) -> BTreeMap<String, String> {
        let mut meta = self.config.proxy_metadata.clone();
        if let Some(Value::Object(m)) = self.proxy_config.get("proxyMetadata") {
            for (k, v) in m {
                if let Some(s) = v.as_str() {
                    meta.insert(k.clone(), s.to_owned());
                }
            }
        }
        meta
    }

    fn image(&self) -> String {
        if let Some(img) = self.ann(ann::PROXY_IMAGE).filter(|i| i.contains('/')) {
            return img.to_owned();
        }
        let base = &self.config.proxy_image;
        match self.ann(ann::PROXY_IMAGE_TYPE) {
            Some(t @ ("debug" | "distroless")) => format!("{base}-{t}"),
            _ => base.clone(),
        }
    }
}

// === decision ===

fn get_str<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn decide(
    pod: &Value,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    namespace: &str,
    config: &MeshConfig,
    warnings: &mut Vec<String>,
) -> Option<Skip> {
    if pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Some(Skip::HostNetwork);
    }
    if SYSTEM_NAMESPACES.contains(&namespace) {
        return Some(Skip::SystemNamespace(namespace.to_owned()));
    }
    let switch = labels
        .get(ann::INJECT)
        .or_else(|| annotations.get(ann::INJECT));
    let mut explicit = match switch.map(|s| s.to_ascii_lowercase()) {
        Some(v) if v == "true" => Some(true),
        Some(v) if v == "false" => Some(false),
        Some(v) if v.is_empty() => None,
        Some(v) => {
            warnings.push(format!(
                "invalid {} value {v:?}; using the default policy",
                ann::INJECT
            ));
            None
        }
        None => None,
    };
    if explicit.is_none() {
        if config
            .never_inject_selector
            .iter()
            .any(|s| s.matches(labels))
        {
            explicit = Some(false);
        } else if config
            .always_inject_selector
            .iter()
            .any(|s| s.matches(labels))
        {
            explicit = Some(true);
        }
    }
    let inject = match (config.policy, explicit) {
        (_, Some(v)) => v,
        (Policy::Enabled, None) => true,
        (Policy::Disabled, None) => false,
    };
    (!inject).then_some(Skip::Disabled)
}

/// Native or classic for this pod (§1.3).
fn decide_native(
    annotations: &BTreeMap<String, String>,
    config: &MeshConfig,
    kubelet_versions: Option<&[String]>,
    warnings: &mut Vec<String>,
) -> bool {
    match annotations.get(ann::NATIVE_SIDECAR).map(String::as_str) {
        Some("true") => return true,
        Some("false") => return false,
        Some(other) => warnings.push(format!(
            "ignoring {} value {other:?}: only \"true\" and \"false\" are accepted",
            ann::NATIVE_SIDECAR
        )),
        None => {}
    }
    match config.native_sidecars {
        NativeSidecars::True => true,
        NativeSidecars::False => false,
        NativeSidecars::Auto => match kubelet_versions {
            // Istio's quirk: with a node client and no nodes, the loop passes.
            Some(versions) => versions.iter().all(|v| kubelet_supports_native(v)),
            None => false,
        },
    }
}

/// Whether a kubelet version (`v1.33.2`, `v1.34.0-gke.1`) is 1.33 or newer.
pub fn kubelet_supports_native(version: &str) -> bool {
    let v = version.trim().trim_start_matches('v');
    let mut parts = v.split('.');
    let major = parts.next().and_then(|m| m.parse::<u32>().ok());
    let minor = parts.next().and_then(|m| {
        let digits: String = m.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    match (major, minor) {
        (Some(major), _) if major > 1 => true,
        (Some(1), Some(minor)) => minor >= 33,
        _ => false,
    }
}

// === workload ("deploy meta") ===

fn workload_from_pod(pod: &Value, labels: &BTreeMap<String, String>) -> Workload {
    let name = get_str(pod, "/metadata/name").unwrap_or_default();
    let generate = get_str(pod, "/metadata/generateName").unwrap_or_default();
    let mut w = Workload {
        name: if name.is_empty() {
            generate.trim_end_matches('-').to_owned()
        } else {
            name.to_owned()
        },
        kind: "Pod".into(),
        api_version: "v1".into(),
    };
    if generate.is_empty() {
        return w;
    }
    let owner = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        });
    let Some(owner) = owner else { return w };
    let (Some(oname), Some(okind)) = (get_str(owner, "/name"), get_str(owner, "/kind")) else {
        return w;
    };
    w.name = oname.to_owned();
    w.kind = okind.to_owned();
    w.api_version = get_str(owner, "/apiVersion").unwrap_or("v1").to_owned();
    match okind {
        "ReplicaSet" => {
            for (label, kind, api) in [
                ("pod-template-hash", "Deployment", "apps/v1"),
                (
                    "rollouts-pod-template-hash",
                    "Rollout",
                    "argoproj.io/v1alpha1",
                ),
            ] {
                if let Some(hash) = labels.get(label)
                    && let Some(base) = oname.strip_suffix(&format!("-{hash}"))
                {
                    w.name = base.to_owned();
                    w.kind = kind.into();
                    w.api_version = api.into();
                    break;
                }
            }
        }
        "ReplicationController" => {
            if let Some(dc) = labels.get("deploymentconfig") {
                w.name = dc.clone();
                w.kind = "DeploymentConfig".into();
                w.api_version = "apps.openshift.io/v1".into();
            }
        }
        "Job" => {
            if let Some((base, suffix)) = oname.rsplit_once('-')
                && (8..=10).contains(&suffix.len())
                && suffix.chars().all(|c| c.is_ascii_digit())
            {
                w.name = base.to_owned();
                w.kind = "CronJob".into();
                w.api_version = "batch/v1".into();
            }
        }
        _ => {}
    }
    w
}

// === helpers ===

fn container_name(c: &Value) -> Option<&str> {
    c.get("name").and_then(Value::as_str)
}

fn canonical_json(v: &Value) -> String {
    // serde_json's map may preserve insertion order when another crate enables that feature;
    // sort explicitly so annotation and env strings are stable regardless.
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, String> =
                m.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            let body: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String((*k).clone())))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn env_value(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

fn env_field(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

fn env_resource(name: &str, resource: &str, divisor: Option<&str>) -> Value {
    let mut r = json!({"resource": resource});
    if let Some(d) = divisor {
        r["divisor"] = json!(d);
    }
    json!({"name": name, "valueFrom": {"resourceFieldRef": r}})
}

fn set_env(env: &mut Vec<Value>, name: &str, value: &str) {
    if let Some(existing) = env.iter_mut().find(|e| container_name(e) == Some(name)) {
        *existing = env_value(name, value);
    } else {
        env.push(env_value(name, value));
    }
}

fn read_env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container
        .get("env")?
        .as_array()?
        .iter()
        .find(|e| container_name(e) == Some(name))?
        .get("value")?
        .as_str()
}

/// Canonical resources block, from annotations when any is set, else the mesh default.
fn resources(inputs: &Inputs<'_>) -> Result<Value, InjectError> {
    let keys = [
        (ann::PROXY_CPU, "requests", "cpu"),
        (ann::PROXY_MEMORY, "requests", "memory"),
        (ann::PROXY_CPU_LIMIT, "limits", "cpu"),
        (ann::PROXY_MEMORY_LIMIT, "limits", "memory"),
    ];
    let mut out: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    let annotated = keys.iter().any(|(k, _, _)| inputs.ann(k).is_some());
    let canon = |s: &str, what: &str| {
        Quantity::parse(s)
            .map(|q| Value::String(q.canonical()))
            .map_err(|e| InjectError::InvalidConfig(format!("{what}: {e}")))
    };
    if annotated {
        for (key, section, res) in keys {
            if let Some(v) = inputs.ann(key) {
                out.entry(section)
                    .or_default()
                    .insert(res.into(), canon(v, key)?);
            }
        }
    } else {
        let r = &inputs.config.resources;
        for (section, map) in [("requests", &r.requests), ("limits", &r.limits)] {
            for (res, v) in map {
                if let Some(v) = v {
                    out.entry(section)
                        .or_default()
                        .insert(res.clone(), canon(v, "resources")?);
                }
            }
        }
    }
    Ok(Value::Object(
        out.into_iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(k, m)| (k.to_owned(), Value::Object(m)))
            .collect(),
    ))
}

/// `-d`: `15090,15021`, the user's excludes, then the status port if not listed.
fn exclude_inbound_ports(inputs: &Inputs<'_>) -> String {
    let mut ports = vec!["15090".to_owned(), "15021".to_owned()];
    let user = inputs.ann_or(
        ann::EXCLUDE_INBOUND_PORTS,
        &inputs.config.exclude_inbound_ports,
    );
    ports.extend(
        user.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    );
    if inputs.status_port != 0 {
        let sp = inputs.status_port.to_string();
        if !ports.contains(&sp) {
            ports.push(sp);
        }
    }
    ports.join(",")
}

// === containers ===

fn render_init(inputs: &Inputs<'_>, resources: &Value) -> Value {
    let c = inputs.config;
    let mut args: Vec<String> = Vec::new();
    if !inputs.podrun() {
        args.push("istio-iptables".into());
    }
    let mut flag = |f: &str, v: String| {
        args.push(f.to_owned());
        args.push(v);
    };
    flag("-p", c.proxy_listen_port.to_string());
    flag("-z", c.proxy_inbound_listen_port.to_string());
    flag("-u", "1337".into());
    flag("-m", inputs.mode.as_str().into());
    flag(
        "-i",
        inputs
            .ann_or(ann::INCLUDE_OUTBOUND_IP_RANGES, &c.include_ip_ranges)
            .into(),
    );
    flag(
        "-x",
        inputs
            .ann_or(ann::EXCLUDE_OUTBOUND_IP_RANGES, &c.exclude_ip_ranges)
            .into(),
    );
    flag(
        "-b",
        inputs
            .ann_or(ann::INCLUDE_INBOUND_PORTS, &c.include_inbound_ports)
            .into(),
    );
    flag("-d", exclude_inbound_ports(inputs));
    if inputs.ann(ann::INCLUDE_OUTBOUND_PORTS).is_some() || !c.include_outbound_ports.is_empty() {
        flag(
            "-q",
            inputs
                .ann_or(ann::INCLUDE_OUTBOUND_PORTS, &c.include_outbound_ports)
                .into(),
        );
    }
    if inputs.ann(ann::EXCLUDE_OUTBOUND_PORTS).is_some() || !c.exclude_outbound_ports.is_empty() {
        flag(
            "-o",
            inputs
                .ann_or(ann::EXCLUDE_OUTBOUND_PORTS, &c.exclude_outbound_ports)
                .into(),
        );
    }
    if let Some(k) = inputs
        .ann(ann::REROUTE_VIRTUAL_INTERFACES)
        .or_else(|| inputs.ann(ann::KUBEVIRT_INTERFACES))
    {
        flag("-k", k.into());
    }
    if let Some(ifs) = inputs.ann(ann::EXCLUDE_INTERFACES) {
        flag("-c", ifs.into());
    }
    args.push(format!(
        "--log_output_level={}",
        inputs.ann_or(ann::AGENT_LOG_LEVEL, &c.log_level)
    ));
    if c.log_as_json {
        args.push("--log_as_json".into());
    }
    if c.force_apply_iptables {
        args.push("--force-apply".into());
    }
    let mut init = json!({
        "name": INIT_NAME,
        "image": inputs.image(),
        "args": args,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": false,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "runAsUser": 0,
        },
    });
    if inputs.podrun() {
        init["command"] = json!([c.podrun_path, "proxy-init"]);
    }
    if let Some(p) = &c.image_pull_policy {
        init["imagePullPolicy"] = json!(p);
    }
    let meta = inputs.proxy_metadata();
    if !meta.is_empty() {
        init["env"] = Value::Array(meta.iter().map(|(k, v)| env_value(k, v)).collect());
    }
    if resources.as_object().is_some_and(|m| !m.is_empty()) {
        init["resources"] = resources.clone();
    }
    init
}

fn pod_ports_json(app_containers: &[&Value]) -> String {
    let mut entries = Vec::new();
    for c in app_containers {
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // Go's struct field order for ContainerPort.
            let mut parts = Vec::new();
            for key in ["name", "hostPort", "containerPort", "protocol", "hostIP"] {
                if let Some(v) = p.get(key) {
                    parts.push(format!(
                        "{}:{}",
                        Value::String(key.into()),
                        canonical_json(v)
                    ));
                }
            }
            entries.push(format!("{{{}}}", parts.join(",")));
        }
    }
    let mut out = String::from("[");
    for (i, e) in entries.iter().enumerate() {
        out.push_str("\n    ");
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push_str("\n]");
    out
}

fn render_proxy(
    inputs: &Inputs<'_>,
    resources: &Value,
    app_containers: &[&Value],
) -> Result<Value, InjectError> {
    let c = inputs.config;
    let mut args: Vec<String> = Vec::new();
    if !inputs.podrun() {
        args.push("proxy".into());
    }
    args.extend([
        "sidecar".to_owned(),
        "--domain".to_owned(),
        format!("$(POD_NAMESPACE).svc.{}", c.cluster_domain),
        format!(
            "--proxyLogLevel={}",
            inputs.ann_or(ann::LOG_LEVEL, &c.proxy_log_level)
        ),
        format!(
            "--proxyComponentLogLevel={}",
            inputs.ann_or(ann::COMPONENT_LOG_LEVEL, &c.proxy_component_log_level)
        ),
        format!(
            "--log_output_level={}",
            inputs.ann_or(ann::AGENT_LOG_LEVEL, &c.log_level)
        ),
    ]);
    if c.log_as_json {
        args.push("--log_as_json".into());
    }

    let rev_suffix = if c.revision == "default" {
        String::new()
    } else {
        format!("-{}", c.revision)
    };
    let mut proxy_config_json = canonical_json(&Value::Object(inputs.proxy_config.clone()));
    proxy_config_json.push('\n');
    let app_names: Vec<&str> = app_containers
        .iter()
        .filter_map(|c| container_name(c))
        .collect();
    let owner = format!(
        "kubernetes://apis/{}/namespaces/{}/{}s/{}",
        inputs.workload.api_version,
        inputs.namespace,
        inputs.workload.kind.to_lowercase(),
        inputs.workload.name
    );
    let mut env = vec![
        env_value("PILOT_CERT_PROVIDER", "istiod"),
        env_value(
            "CA_ADDR",
            &format!("istiod{rev_suffix}.{}.svc:15012", c.istio_namespace),
        ),
        env_field("POD_NAME", "metadata.name"),
        env_field("POD_NAMESPACE", "metadata.namespace"),
        env_field("INSTANCE_IP", "status.podIP"),
        env_field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        env_field("HOST_IP", "status.hostIP"),
        env_resource("ISTIO_CPU_LIMIT", "limits.cpu", Some("1")),
        env_value("PROXY_CONFIG", &proxy_config_json),
        env_value("ISTIO_META_POD_PORTS", &pod_ports_json(app_containers)),
        env_value("ISTIO_META_APP_CONTAINERS", &app_names.join(",")),
        env_resource("GOMEMLIMIT", "limits.memory", None),
        env_value("ISTIO_META_CLUSTER_ID", &inputs.cluster_id),
        env_field("ISTIO_META_NODE_NAME", "spec.nodeName"),
        env_value("ISTIO_META_INTERCEPTION_MODE", inputs.mode.as_str()),
    ];
    if !inputs.network.is_empty() {
        env.push(env_value("ISTIO_META_NETWORK", &inputs.network));
    }
    let workload_name = inputs
        .labels
        .get("service.istio.io/workload-name")
        .cloned()
        .unwrap_or_else(|| inputs.workload.name.clone());
    env.push(env_value("ISTIO_META_WORKLOAD_NAME", &workload_name));
    env.push(env_value("ISTIO_META_OWNER", &owner));
    if inputs.ann(ann::BOOTSTRAP_OVERRIDE).is_some() {
        env.push(env_value(
            "ISTIO_BOOTSTRAP_OVERRIDE",
            "/etc/istio/custom-bootstrap/custom_bootstrap.json",
        ));
    }
    env.push(env_value(
        "ISTIO_META_MESH_ID",
        c.mesh_id.as_deref().unwrap_or(&c.trust_domain),
    ));
    env.push(env_value("TRUST_DOMAIN", &c.trust_domain));
    for (k, v) in inputs.proxy_metadata() {
        set_env(&mut env, &k, &v);
    }
    for (k, v) in &inputs.proxy_env_extra {
        set_env(&mut env, k, v);
    }

    let mut proxy = json!({
        "name": PROXY_NAME,
        "image": inputs.image(),
        "ports": [{"containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom"}],
        "args": args,
        "env": env,
    });
    if inputs.podrun() {
        proxy["command"] = json!([c.podrun_path, "proxy"]);
    }
    if inputs.native {
        proxy["restartPolicy"] = json!("Always");
    }
    let mut lifecycle = Map::new();
    if inputs.hold_application && !inputs.native {
        lifecycle.insert(
            "postStart".into(),
            json!({"exec": {"command": inputs.agent(&["wait"])}}),
        );
    } else if inputs.native {
        // Beyond Istio: with podrun the postStart hook blocks the kubelet until the proxy is
        // ready, so the next container starts within milliseconds instead of the next probe.
        if inputs.podrun() {
            lifecycle.insert(
                "postStart".into(),
                json!({"exec": {"command": inputs.agent(&["wait"])}}),
            );
        }
        // Istio emits the drain hook even for status port 0, where it can only fail (§5.15).
        if inputs.status_port != 0 {
            let port = format!("--debug-port={}", inputs.status_port);
            lifecycle.insert(
                "preStop".into(),
                json!({"exec": {"command": inputs.agent(&["request", &port, "POST", "drain"])}}),
            );
        }
    }
    if !lifecycle.is_empty() {
        proxy["lifecycle"] = Value::Object(lifecycle);
    }
    if let Some(p) = &c.image_pull_policy {
        proxy["imagePullPolicy"] = json!(p);
    }
    if inputs.status_port != 0 {
        let num = |key: &str, default: u32| -> u32 {
            // Validated earlier; an unparsable value cannot reach here.
            inputs
                .ann(key)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        proxy["readinessProbe"] = json!({
            "httpGet": {"path": "/healthz/ready", "port": HEALTH_PORT},
            "initialDelaySeconds": num(ann::READINESS_INITIAL_DELAY, 0),
            "periodSeconds": num(ann::READINESS_PERIOD, 15),
            "timeoutSeconds": 3,
            "failureThreshold": num(ann::READINESS_FAILURE_THRESHOLD, 4),
        });
        if c.startup_probe_enabled {
            proxy["startupProbe"] = json!({
                "httpGet": {"path": "/healthz/ready", "port": HEALTH_PORT},
                "initialDelaySeconds": 0,
                "periodSeconds": 1,
                "timeoutSeconds": 3,
                "failureThreshold": c.startup_probe_failure_threshold,
            });
        }
    }
    if resources.as_object().is_some_and(|m| !m.is_empty()) {
        proxy["resources"] = resources.clone();
    }
    let net_bind = inputs
        .ann(ann::CAP_NET_BIND_SERVICE)
        .and_then(parse_bool)
        .unwrap_or(false);
    proxy["securityContext"] = if inputs.mode == InterceptionMode::Tproxy || net_bind {
        let mut add = Vec::new();
        if inputs.mode == InterceptionMode::Tproxy {
            add.push("NET_ADMIN");
        }
        if net_bind {
            add.push("NET_BIND_SERVICE");
        }
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"add": add, "drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsGroup": 1337,
            "runAsNonRoot": false,
            "runAsUser": 0,
        })
    } else {
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsGroup": 1337,
            "runAsNonRoot": true,
            "runAsUser": 1337,
        })
    };
    let mut mounts = vec![
        json!({"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"}),
        json!({"name": "credential-socket", "mountPath": "/var/run/secrets/credential-uds"}),
        json!({"name": "workload-certs", "mountPath": "/var/run/secrets/workload-spiffe-credentials"}),
        json!({"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"}),
        json!({"name": "istio-ca-crl", "mountPath": "/var/run/secrets/istio/crl"}),
        json!({"name": "istio-data", "mountPath": "/var/lib/istio/data"}),
    ];
    if inputs.ann(ann::BOOTSTRAP_OVERRIDE).is_some() {
        mounts.push(
            json!({"name": "custom-bootstrap-volume", "mountPath": "/etc/istio/custom-bootstrap"}),
        );
    }
    mounts.push(json!({"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}));
    mounts.push(json!({"name": "istio-token", "mountPath": "/var/run/secrets/tokens"}));
    mounts.push(json!({"name": "istio-podinfo", "mountPath": "/etc/istio/pod"}));
    if let Some(user) = inputs.ann(ann::USER_VOLUME_MOUNT) {
        let map: Map<String, Value> = serde_json::from_str(user)
            .map_err(|e| InjectError::annotation(ann::USER_VOLUME_MOUNT, e.to_string()))?;
        for (name, mut mount) in map {
            let Some(obj) = mount.as_object_mut() else {
                return Err(InjectError::annotation(
                    ann::USER_VOLUME_MOUNT,
                    format!("mount {name:?} must be an object"),
                ));
            };
            obj.insert("name".into(), json!(name));
            mounts.push(mount);
        }
    }
    proxy["volumeMounts"] = Value::Array(mounts);
    Ok(proxy)
}

fn render_volumes(inputs: &Inputs<'_>) -> Result<Vec<Value>, InjectError> {
    let mut vols = vec![
        json!({"name": "workload-socket", "emptyDir": {}}),
        json!({"name": "credential-socket", "emptyDir": {}}),
        json!({"name": "workload-certs", "emptyDir": {}}),
        json!({"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}),
        json!({"name": "istio-data", "emptyDir": {}}),
        json!({"name": "istio-podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        ]}}),
        json!({"name": "istio-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}},
        ]}}),
        json!({"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}}),
        json!({"name": "istio-ca-crl", "configMap": {"name": "istio-ca-crl", "optional": true}}),
    ];
    if let Some(cm) = inputs.ann(ann::BOOTSTRAP_OVERRIDE) {
        vols.push(json!({"name": "custom-bootstrap-volume", "configMap": {"name": cm}}));
    }
    if let Some(user) = inputs.ann(ann::USER_VOLUME) {
        let map: Map<String, Value> = serde_json::from_str(user)
            .map_err(|e| InjectError::annotation(ann::USER_VOLUME, e.to_string()))?;
        for (name, mut vol) in map {
            let Some(obj) = vol.as_object_mut() else {
                return Err(InjectError::annotation(
                    ann::USER_VOLUME,
                    format!("volume {name:?} must be an object"),
                ));
            };
            obj.insert("name".into(), json!(name));
            vols.push(vol);
        }
    }
    Ok(vols)
}

// === user overrides (strategic merge) ===

/// Merge keys of the container lists a user may customise.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "env" | "ports_by_name" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

fn strategic_merge(base: &mut Value, patch: &Value) {
    let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) else {
        *base = patch.clone();
        return;
    };
    for (key, pv) in p {
        if key == "image" && pv.as_str() == Some("auto") {
            continue;
        }
        match (b.get_mut(key), pv) {
            (Some(bv @ Value::Object(_)), Value::Object(_)) => strategic_merge(bv, pv),
            (Some(Value::Array(ba)), Value::Array(pa)) if merge_key(key).is_some() => {
                let mk = merge_key(key).unwrap_or("name");
                for item in pa {
                    let id = item.get(mk);
                    match ba.iter_mut().find(|x| id.is_some() && x.get(mk) == id) {
                        Some(existing) => strategic_merge(existing, item),
                        None => ba.push(item.clone()),
                    }
                }
            }
            _ => {
                b.insert(key.clone(), pv.clone());
            }
        }
    }
}

// === Job quit wrapper ===

fn job_wrapper_script(inputs: &Inputs<'_>) -> String {
    let quit = if inputs.podrun() {
        format!(
            "'{}' proxy request --debug-port={} POST quitquitquit",
            inputs.config.podrun_path.replace('\'', r"'\''"),
            inputs.status_port
        )
    } else {
        format!(
            "curl -fsS -X POST http://127.0.0.1:{}/quitquitquit",
            inputs.status_port
        )
    };
    format!("\"$@\"; rc=$?; {quit} >/dev/null 2>&1; exit $rc")
}

/// Wraps an app container of a Job so that the proxy is told to quit when the app exits.
/// Returns false when the container has no `command` (the image entrypoint is unknown).
fn wrap_for_job(container: &mut Value, script: &str) -> bool {
    let already = container
        .pointer("/command/3")
        .and_then(Value::as_str)
        .is_some_and(|s| s == JOB_WRAPPER_MARK);
    if already {
        return true;
    }
    let Some(Value::Array(command)) = container.get("command").cloned() else {
        return false;
    };
    let mut args = command;
    if let Some(Value::Array(a)) = container.get("args") {
        args.extend(a.iter().cloned());
    }
    container["command"] = json!(["/bin/sh", "-c", script, JOB_WRAPPER_MARK]);
    container["args"] = Value::Array(args);
    true
}

// === main entry ===

fn array(pod: &Value, ptr: &str) -> Result<Vec<Value>, InjectError> {
    match pod.pointer(ptr) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => {
            for (i, c) in a.iter().enumerate() {
                if !c.is_object() {
                    return Err(InjectError::invalid(format!("{ptr}/{i} must be an object")));
                }
            }
            Ok(a.clone())
        }
        Some(_) => Err(InjectError::invalid(format!("{ptr} must be a list"))),
    }
}

fn check_container_names(list: &[Value], field: &str) -> Result<(), InjectError> {
    for (i, c) in list.iter().enumerate() {
        if container_name(c).is_none_or(str::is_empty) {
            return Err(InjectError::invalid(format!(
                "spec.{field}[{i}].name: Required value"
            )));
        }
    }
    Ok(())
}

/// The old injection record, as written in `sidecar.istio.io/status`.
#[derive(Default)]
struct OldStatus {
    init_containers: Vec<String>,
    containers: Vec<String>,
    volumes: Vec<String>,
    image_pull_secrets: Vec<String>,
}

fn parse_status(text: &str) -> Result<OldStatus, InjectError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| InjectError::annotation(ann::STATUS, format!("not JSON: {e}")))?;
    let list = |key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(OldStatus {
        init_containers: list("initContainers"),
        containers: list("containers"),
        volumes: list("volumes"),
        image_pull_secrets: list("imagePullSecrets"),
    })
}

fn status_json(
    init: &[&str],
    containers: &[&str],
    volumes: &[String],
    secrets: &[String],
    rev: &str,
) -> String {
    let list = |items: Vec<String>| -> String {
        if items.is_empty() {
            "null".into()
        } else {
            Value::Array(items.into_iter().map(Value::String).collect()).to_string()
        }
    };
    format!(
        "{{\"initContainers\":{},\"containers\":{},\"volumes\":{},\"imagePullSecrets\":{},\"revision\":{}}}",
        list(init.iter().map(|s| (*s).to_owned()).collect()),
        list(containers.iter().map(|s| (*s).to_owned()).collect()),
        list(volumes.to_vec()),
        list(secrets.to_vec()),
        Value::String(rev.to_owned())
    )
}

fn prometheus_scrape_disabled(annotations: &BTreeMap<String, String>) -> bool {
    annotations.iter().any(|(k, v)| {
        let sanitized: String = k
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        sanitized == "prometheus_io_scrape" && parse_bool(v) == Some(false)
    })
}

fn canonical_name(labels: &BTreeMap<String, String>, workload: &str) -> String {
    let raw = [
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ]
    .iter()
    .filter_map(|k| labels.get(*k))
    .find(|v| !v.is_empty())
    .map(String::as_str)
    .unwrap_or(workload);
    let cut: String = raw.chars().take(63).collect();
    cut.trim_matches(|c| c == '-' || c == '_' || c == '.')
        .to_owned()
}

/// The pod's lists and maps as the injection edits them.
struct Draft {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    containers: Vec<Value>,
    init_containers: Vec<Value>,
    volumes: Vec<Value>,
    pull_secrets: Vec<Value>,
}

/// What a previous injection and the user's own `istio-proxy` / `istio-init` hand on.
#[derive(Default)]
struct Carried {
    /// App probers the previous proxy already served.
    probers: Probers,
    /// The previous proxy's `ISTIO_PROMETHEUS_ANNOTATIONS`.
    prometheus: Option<String>,
    /// User-defined injected containers found in `spec.containers`.
    containers: Vec<Value>,
    /// User-defined injected containers found in `spec.initContainers`.
    init_containers: Vec<Value>,
}

/// The rendered injected containers.
struct Sidecars {
    proxy: Value,
    /// `istio-init`, absent when interception is off.
    init: Option<Value>,
}

/// Where placement put things, for the status and default-container annotations.
struct Placement {
    status_init: Vec<&'static str>,
    status_containers: Vec<&'static str>,
    volume_names: Vec<String>,
    injected_secrets: Vec<String>,
    default_container: Option<String>,
}

/// Injects the sidecar into `pod` (a Pod or a pod template: an object with `metadata` and
/// `spec`). Pure: no clock, no I/O.
pub fn inject(pod: &Value, ctx: &PodContext, config: &MeshConfig) -> Result<Outcome, InjectError> {
    check_shape(pod)?;
    let meta = pod.get("metadata");
    let labels = string_map(meta, "labels");
    let annotations = string_map(meta, "annotations");
    let namespace = get_str(pod, "/metadata/namespace")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .or_else(|| ctx.namespace.clone())
        .unwrap_or_else(|| "default".to_owned());
    let mut warnings = Vec::new();
    if let Some(skip) = decide(
        pod,
        &labels,
        &annotations,
        &namespace,
        config,
        &mut warnings,
    ) {
        return Ok(Outcome::Skipped(skip));
    }
    ann::validate(&annotations).map_err(|(k, m)| InjectError::annotation(&k, m))?;
    if let Some(policy) = get_str(pod, "/spec/dnsPolicy")
        && policy != "ClusterFirst"
    {
        warnings.push(format!(
            "dnsPolicy {policy} is not ClusterFirst; the proxy may not resolve cluster names"
        ));
    }
    let mut draft = read_draft(pod, labels, annotations)?;
    let mut carried = strip_previous_injection(&mut draft, config)?;
    take_user_injected(&mut draft, &mut carried);
    let native = decide_native(
        &draft.annotations,
        config,
        ctx.kubelet_versions.as_deref(),
        &mut warnings,
    );
    if draft.containers.is_empty() {
        return Err(InjectError::invalid(if native {
            "the pod has no application containers besides istio-proxy; native injection would leave spec.containers empty"
        } else {
            "spec.containers: Required value"
        }));
    }
    let inputs = Inputs::new(pod, ctx, config, &draft, namespace, native)?;

    let mut sidecars = render_sidecars(&inputs, &draft.containers)?;
    let saved = apply_overrides(&mut sidecars, &carried, inputs.mode);
    rewrite_app_probes(&mut draft, &mut sidecars.proxy, carried.probers, &inputs);
    merge_prometheus(
        &mut draft.annotations,
        &mut sidecars.proxy,
        carried.prometheus,
        config,
    );
    wrap_job_containers(&mut draft.containers, &inputs, &mut warnings);
    let placement = place(&mut draft, sidecars, &inputs)?;
    write_metadata(&mut draft, &inputs, &placement, saved);

    let out = write_back(pod, draft)?;
    let patch = crate::patch::diff(pod, &out);
    Ok(Outcome::Injected(Injected {
        pod: out,
        patch,
        mode: if native {
            SidecarMode::Native
        } else {
            SidecarMode::Classic
        },
        warnings,
    }))
}

/// Refuses what is not a pod: a non-object, a non-object `metadata`, a missing `spec`.
fn check_shape(pod: &Value) -> Result<(), InjectError> {
    if !pod.is_object() {
        return Err(InjectError::invalid("the pod must be an object"));
    }
    if !matches!(
        pod.get("metadata"),
        None | Some(Value::Null) | Some(Value::Object(_))
    ) {
        return Err(InjectError::invalid("metadata must be an object"));
    }
    if !pod.get("spec").is_some_and(Value::is_object) {
        return Err(InjectError::invalid("spec: Required value"));
    }
    Ok(())
}

/// The pod's container, volume and pull-secret lists, checked for shape and names.
fn read_draft(
    pod: &Value,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> Result<Draft, InjectError> {
    let draft = Draft {
        labels,
        annotations,
        containers: array(pod, "/spec/containers")?,
        init_containers: array(pod, "/spec/initContainers")?,
        volumes: array(pod, "/spec/volumes")?,
        pull_secrets: array(pod, "/spec/imagePullSecrets")?,
    };
    check_container_names(&draft.containers, "containers")?;
    check_container_names(&draft.init_containers, "initContainers")?;
    Ok(draft)
}

/// Strips a previous injection (§1.10) recorded in `sidecar.istio.io/status`, remembering
/// what must carry over: the old proxy's probers and Prometheus record, and the overrides
/// it saved.
fn strip_previous_injection(
    draft: &mut Draft,
    config: &MeshConfig,
) -> Result<Carried, InjectError> {
    let mut carried = Carried::default();
    let Some(status) = draft.annotations.get(ann::STATUS).cloned() else {
        return Ok(carried);
    };
    let old = parse_status(&status)?;
    for c in draft.containers.iter().chain(draft.init_containers.iter()) {
        if container_name(c) == Some(PROXY_NAME) {
            if let Some(p) = read_env(c, "ISTIO_KUBE_APP_PROBERS")
                && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(p)
            {
                carried.probers.extend(m);
            }
            carried.prometheus = read_env(c, "ISTIO_PROMETHEUS_ANNOTATIONS").map(str::to_owned);
        }
    }
    draft.containers.retain(not_named_in(&old.containers));
    draft
        .init_containers
        .retain(not_named_in(&old.init_containers));
    draft.volumes.retain(not_named_in(&old.volumes));
    draft
        .pull_secrets
        .retain(not_named_in(&old.image_pull_secrets));
    if let Some(saved) = draft.annotations.get(ann::OVERRIDES) {
        let saved: Value = serde_json::from_str(saved)
            .map_err(|e| InjectError::annotation(ann::OVERRIDES, format!("not JSON: {e}")))?;
        for (key, target) in [
            ("containers", &mut draft.containers),
            ("initContainers", &mut draft.init_containers),
        ] {
            if let Some(Value::Array(list)) = saved.get(key) {
                for c in list {
                    let name = container_name(c);
                    if name.is_some() && !target.iter().any(|t| container_name(t) == name) {
                        target.push(c.clone());
                    }
                }
            }
        }
    }
    let annotations = &mut draft.annotations;
    annotations.remove(ann::STATUS);
    if annotations.get("prometheus.io/port").map(String::as_str)
        == Some(config.status_port.to_string().as_str())
    {
        annotations.remove("prometheus.io/port");
        annotations.remove("prometheus.io/path");
        annotations.remove("prometheus.io/scrape");
    }
    Ok(carried)
}

/// Keeps an entry unless its `name` is one of `names`.
fn not_named_in(names: &[String]) -> impl Fn(&Value) -> bool + '_ {
    move |v| !container_name(v).is_some_and(|n| names.iter().any(|o| o == n))
}

/// User-defined `istio-proxy` / `istio-init` containers leave the pod and become overrides.
fn take_user_injected(draft: &mut Draft, carried: &mut Carried) {
    let is_injected = |c: &Value| matches!(container_name(c), Some(PROXY_NAME | INIT_NAME));
    carried
        .containers
        .extend(draft.containers.iter().filter(|c| is_injected(c)).cloned());
    carried.init_containers.extend(
        draft
            .init_containers
            .iter()
            .filter(|c| is_injected(c))
            .cloned(),
    );
    draft.containers.retain(|c| !is_injected(c));
    draft.init_containers.retain(|c| !is_injected(c));
}

impl<'a> Inputs<'a> {
    /// The template inputs: per-pod annotations over the mesh defaults, and the
    /// webhook path's parameters.
    fn new(
        pod: &Value,
        ctx: &PodContext,
        config: &'a MeshConfig,
        draft: &Draft,
        namespace: String,
        native: bool,
    ) -> Result<Self, InjectError> {
        let annotations = &draft.annotations;
        let mode = annotations
            .get(ann::INTERCEPTION_MODE)
            .and_then(|m| InterceptionMode::parse(m))
            .unwrap_or(config.interception_mode);
        let status_port = annotations
            .get(ann::STATUS_PORT)
            .and_then(|p| p.parse().ok())
            .unwrap_or(config.status_port);
        let mut proxy_config = config.default_proxy_config.clone();
        if let Some(text) = annotations.get(ann::PROXY_CONFIG) {
            let per_pod = ann::parse_proxy_config(text)
                .map_err(|m| InjectError::annotation(ann::PROXY_CONFIG, m))?;
            proxy_config.extend(per_pod);
        }
        let hold_application = proxy_config
            .get("holdApplicationUntilProxyStarts")
            .and_then(Value::as_bool)
            .unwrap_or(config.hold_application_until_proxy_starts);
        let mut proxy_env_extra = BTreeMap::new();
        let mut network = config.network.clone();
        let mut cluster_id = config.cluster_name.clone();
        for (k, v) in &ctx.path_params {
            match k.as_str() {
                "cluster" => cluster_id = v.clone(),
                "net" => network = v.clone(),
                other => {
                    proxy_env_extra.insert(other.to_uppercase(), v.clone());
                }
            }
        }
        let workload = ctx
            .workload
            .clone()
            .unwrap_or_else(|| workload_from_pod(pod, &draft.labels));
        Ok(Inputs {
            config,
            annotations: annotations.clone(),
            labels: draft.labels.clone(),
            namespace,
            workload,
            native,
            mode,
            status_port,
            proxy_config,
            hold_application,
            proxy_env_extra,
            network,
            cluster_id,
        })
    }
}

/// Renders `istio-proxy` and, unless interception is off, `istio-init`.
fn render_sidecars(inputs: &Inputs<'_>, app_containers: &[Value]) -> Result<Sidecars, InjectError> {
    let res = resources(inputs)?;
    let app_refs: Vec<&Value> = app_containers.iter().collect();
    let proxy = render_proxy(inputs, &res, &app_refs)?;
    let init = (inputs.mode != InterceptionMode::None).then(|| render_init(inputs, &res));
    Ok(Sidecars { proxy, init })
}

/// Lays the user's own `istio-proxy` / `istio-init` over the rendered ones and returns
/// what `sidecar.istio.io/overrides` must remember. A proxy user id carries into
/// `istio-init`'s `-u` (or becomes root under TPROXY).
fn apply_overrides(
    sidecars: &mut Sidecars,
    carried: &Carried,
    mode: InterceptionMode,
) -> Map<String, Value> {
    let find = |list: &[Value], name: &str| {
        list.iter()
            .find(|c| container_name(c) == Some(name))
            .cloned()
    };
    let (overrides_c, overrides_i) = (&carried.containers, &carried.init_containers);
    let user_proxy = find(overrides_c, PROXY_NAME).or_else(|| find(overrides_i, PROXY_NAME));
    let user_init = find(overrides_i, INIT_NAME).or_else(|| find(overrides_c, INIT_NAME));
    let Sidecars { proxy, init } = sidecars;
    if let Some(u) = &user_proxy {
        strategic_merge(proxy, u);
    }
    if let (Some(i), Some(u)) = (init.as_mut(), &user_init) {
        strategic_merge(i, u);
    }
    let mut saved = Map::new();
    if !overrides_c.is_empty() {
        saved.insert("containers".into(), Value::Array(overrides_c.clone()));
    }
    if !overrides_i.is_empty() {
        saved.insert("initContainers".into(), Value::Array(overrides_i.clone()));
    }
    if let Some(uid) = proxy
        .pointer("/securityContext/runAsUser")
        .and_then(Value::as_u64)
    {
        if mode == InterceptionMode::Tproxy {
            proxy["securityContext"]["runAsUser"] = json!(0);
        } else if uid != 0
            && let Some(Value::Array(args)) = init.as_mut().and_then(|i| i.get_mut("args"))
            && let Some(pos) = args.iter().position(|a| a.as_str() == Some("-u"))
            && pos + 1 < args.len()
        {
            args[pos + 1] = json!(uid.to_string());
        }
    }
    saved
}

/// Points the app's HTTP probes at the proxy's status port and hands the proxy the
/// original probers (with those a previous injection already rewrote).
fn rewrite_app_probes(
    draft: &mut Draft,
    proxy: &mut Value,
    mut probers: Probers,
    inputs: &Inputs<'_>,
) {
    let status_port = inputs.status_port;
    let rewrite = inputs.config.rewrite_app_http_probe
        && draft
            .annotations
            .get(ann::REWRITE_APP_HTTP_PROBERS)
            .and_then(|v| parse_bool(v))
            != Some(false)
        && status_port != 0;
    if rewrite {
        for c in draft
            .containers
            .iter_mut()
            .chain(draft.init_containers.iter_mut())
        {
            probes::rewrite_container(c, status_port, &mut probers);
        }
    }
    if !probers.is_empty() {
        let text = canonical_json(&Value::Object(probers.into_iter().collect()));
        if let Some(Value::Array(env)) = proxy.get_mut("env") {
            set_env(env, "ISTIO_KUBE_APP_PROBERS", &text);
        }
    }
}

/// Prometheus merge: the pod's scrape annotations point at the proxy's merged metrics
/// endpoint, and the app's own scrape settings go to the proxy as
/// `ISTIO_PROMETHEUS_ANNOTATIONS`.
fn merge_prometheus(
    annotations: &mut BTreeMap<String, String>,
    proxy: &mut Value,
    old_record: Option<String>,
    config: &MeshConfig,
) {
    let merge_enabled = annotations
        .get(ann::MERGE_METRICS)
        .and_then(|v| parse_bool(v))
        != Some(false);
    if !merge_enabled || prometheus_scrape_disabled(annotations) || config.status_port == 0 {
        return;
    }
    let target = config.status_port.to_string();
    if annotations.get("prometheus.io/port") == Some(&target) {
        return;
    }
    let mut scrape = Map::new();
    for (k, field) in [
        ("prometheus.io/scrape", "scrape"),
        ("prometheus.io/path", "path"),
        ("prometheus.io/port", "port"),
    ] {
        if let Some(v) = annotations.get(k) {
            scrape.insert(field.into(), json!(v));
        }
    }
    if let Some(t) = annotations.get(ann::SCRAPE_TARGETS) {
        scrape.insert("targets".into(), json!(t));
    }
    let record = if scrape.is_empty() {
        old_record
    } else {
        // Field order of Istio's struct: scrape, path, port, targets.
        let parts: Vec<String> = ["scrape", "path", "port", "targets"]
            .iter()
            .filter_map(|f| scrape.get(*f).map(|v| format!("\"{f}\":{v}")))
            .collect();
        Some(format!("{{{}}}", parts.join(",")))
    };
    annotations.insert("prometheus.io/port".into(), target);
    annotations.insert("prometheus.io/path".into(), "/stats/prometheus".into());
    annotations.insert("prometheus.io/scrape".into(), "true".into());
    if let Some(r) = record
        && let Some(Value::Array(env)) = proxy.get_mut("env")
    {
        set_env(env, "ISTIO_PROMETHEUS_ANNOTATIONS", &r);
    }
}

/// Jobs in classic mode: wraps each app command so the proxy quits when the app exits;
/// a container without a command cannot be wrapped and is warned about.
fn wrap_job_containers(containers: &mut [Value], inputs: &Inputs<'_>, warnings: &mut Vec<String>) {
    let status_port = inputs.status_port;
    let is_job = matches!(inputs.workload.kind.as_str(), "Job" | "CronJob");
    if !is_job || inputs.native || status_port == 0 {
        return;
    }
    let script = job_wrapper_script(inputs);
    for c in containers.iter_mut() {
        if !wrap_for_job(c, &script) {
            warnings.push(format!(
                "container {:?} has no command, so it cannot be wrapped; it must POST localhost:{status_port}/quitquitquit itself or the Job never completes",
                container_name(c).unwrap_or_default()
            ));
        }
    }
}

/// Places the injected containers (native: first init containers; classic: an init
/// container and a regular one, first when the app waits for the proxy), the injected
/// volumes and the mesh's pull secrets.
fn place(
    draft: &mut Draft,
    sidecars: Sidecars,
    inputs: &Inputs<'_>,
) -> Result<Placement, InjectError> {
    let default_container = draft
        .containers
        .first()
        .and_then(|c| container_name(c))
        .map(str::to_owned);
    let mut status_init = Vec::new();
    let mut status_containers = Vec::new();
    let Sidecars { proxy, init } = sidecars;
    if inputs.native {
        let mut front = Vec::new();
        if let Some(i) = init {
            front.push(i);
            status_init.push(INIT_NAME);
        }
        front.push(proxy);
        status_init.push(PROXY_NAME);
        front.append(&mut draft.init_containers);
        draft.init_containers = front;
    } else {
        if let Some(i) = init {
            draft.init_containers.push(i);
            status_init.push(INIT_NAME);
        }
        if inputs.hold_application {
            draft.containers.insert(0, proxy);
        } else {
            draft.containers.push(proxy);
        }
        status_containers.push(PROXY_NAME);
    }
    let volume_names = place_volumes(&mut draft.volumes, inputs)?;
    let injected_secrets = inputs.config.image_pull_secrets.clone();
    let mut secrets: Vec<Value> = injected_secrets
        .iter()
        .map(|s| json!({"name": s}))
        .collect();
    for s in std::mem::take(&mut draft.pull_secrets) {
        if !secrets.iter().any(|x| x.get("name") == s.get("name")) {
            secrets.push(s);
        }
    }
    draft.pull_secrets = secrets;
    Ok(Placement {
        status_init,
        status_containers,
        volume_names,
        injected_secrets,
        default_container,
    })
}

/// Replaces the pod's volumes of the injected names with the rendered ones; returns
/// their names.
fn place_volumes(
    volumes: &mut Vec<Value>,
    inputs: &Inputs<'_>,
) -> Result<Vec<String>, InjectError> {
    let new_volumes = render_volumes(inputs)?;
    let volume_names: Vec<String> = new_volumes
        .iter()
        .filter_map(|v| container_name(v).map(str::to_owned))
        .collect();
    debug_assert!(
        VOLUME_NAMES
            .iter()
            .all(|n| volume_names.iter().any(|v| v == n))
    );
    volumes.retain(|v| !container_name(v).is_some_and(|n| volume_names.iter().any(|o| o == n)));
    volumes.extend(new_volumes);
    Ok(volume_names)
}

/// The injected labels (mTLS mode, canonical service name and revision, network, HBONE
/// tunnel) and annotations (revision, default container, injection status, overrides).
fn write_metadata(
    draft: &mut Draft,
    inputs: &Inputs<'_>,
    placement: &Placement,
    saved: Map<String, Value>,
) {
    let labels = &mut draft.labels;
    labels
        .entry("security.istio.io/tlsMode".into())
        .or_insert_with(|| "istio".into());
    let cname = canonical_name(labels, &inputs.workload.name);
    labels.insert("service.istio.io/canonical-name".into(), cname);
    let crev = [
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ]
    .iter()
    .filter_map(|k| labels.get(*k))
    .find(|v| !v.is_empty())
    .cloned()
    .unwrap_or_else(|| "latest".into());
    labels.insert("service.istio.io/canonical-revision".into(), crev);
    if !inputs.network.is_empty() {
        labels
            .entry("topology.istio.io/network".into())
            .or_insert_with(|| inputs.network.clone());
    }
    if inputs
        .proxy_metadata()
        .get("ISTIO_META_ENABLE_HBONE")
        .map(String::as_str)
        == Some("true")
    {
        labels.insert("networking.istio.io/tunnel".into(), "http".into());
    }
    let annotations = &mut draft.annotations;
    let revision = &inputs.config.revision;
    annotations.insert(ann::REVISION.into(), revision.clone());
    if let Some(dc) = &placement.default_container {
        annotations
            .entry("kubectl.kubernetes.io/default-container".into())
            .or_insert_with(|| dc.clone());
        annotations
            .entry("kubectl.kubernetes.io/default-logs-container".into())
            .or_insert_with(|| dc.clone());
    }
    annotations.insert(
        ann::STATUS.into(),
        status_json(
            &placement.status_init,
            &placement.status_containers,
            &placement.volume_names,
            &placement.injected_secrets,
            revision,
        ),
    );
    if saved.is_empty() {
        annotations.remove(ann::OVERRIDES);
    } else {
        annotations.insert(ann::OVERRIDES.into(), canonical_json(&Value::Object(saved)));
    }
}

/// Writes the draft back onto a copy of `pod`, touching only what injection owns.
fn write_back(pod: &Value, draft: Draft) -> Result<Value, InjectError> {
    let mut out = pod.clone();
    let obj = out
        .as_object_mut()
        .ok_or_else(|| InjectError::invalid("the pod must be an object"))?;
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if meta.is_null() {
        *meta = Value::Object(Map::new());
    }
    let to_map = |m: BTreeMap<String, String>| -> Value {
        Value::Object(m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
    };
    merge_string_map(meta, "labels", to_map(draft.labels));
    merge_string_map(meta, "annotations", to_map(draft.annotations));
    let spec = &mut out["spec"];
    spec["containers"] = Value::Array(draft.containers);
    if !draft.init_containers.is_empty() || spec.get("initContainers").is_some() {
        spec["initContainers"] = Value::Array(draft.init_containers);
    }
    spec["volumes"] = Value::Array(draft.volumes);
    if draft.pull_secrets.is_empty() {
        if let Some(s) = spec.as_object_mut() {
            s.remove("imagePullSecrets");
        }
    } else {
        spec["imagePullSecrets"] = Value::Array(draft.pull_secrets);
    }
    Ok(out)
}

/// Replaces the string entries of `meta[field]`, keeping any non-string entries as they were.
fn merge_string_map(meta: &mut Value, field: &str, strings: Value) {
    let Value::Object(strings) = strings else {
        return;
    };
    let mut merged = meta
        .get(field)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_string())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<String, Value>>()
        })
        .unwrap_or_default();
    merged.extend(strings);
    meta[field] = Value::Object(merged);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_versions() {
        assert!(kubelet_supports_native("v1.33.0"));
        assert!(kubelet_supports_native("v1.34.1-gke.100"));
        assert!(!kubelet_supports_native("v1.32.9"));
        assert!(!kubelet_supports_native("garbage"));
    }

    #[test]
    fn deploy_meta_from_replicaset_and_job() {
        let pod = json!({"metadata": {"generateName": "web-6d8f7c9b54-",
            "labels": {"pod-template-hash": "6d8f7c9b54"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-6d8f7c9b54", "controller": true}]}});
        let labels = string_map(pod.get("metadata"), "labels");
        let w = workload_from_pod(&pod, &labels);
        assert_eq!(
            (w.name.as_str(), w.kind.as_str(), w.api_version.as_str()),
            ("web", "Deployment", "apps/v1")
        );
        let pod = json!({"metadata": {"generateName": "backup-29001234-",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "backup-29001234", "controller": true}]}});
        let w = workload_from_pod(&pod, &BTreeMap::new());
        assert_eq!((w.name.as_str(), w.kind.as_str()), ("backup", "CronJob"));
    }

    #[test]
    fn canonical_name_is_trimmed() {
        let labels = BTreeMap::from([("app".to_owned(), "-my.app_".to_owned())]);
        assert_eq!(canonical_name(&labels, "x"), "my.app");
        assert_eq!(canonical_name(&BTreeMap::new(), "wl"), "wl");
    }
}
