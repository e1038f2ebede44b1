//! API-server defaulting: upstream `pkg/apis/core/v1/defaults.go`,
//! `pkg/apis/batch/v1/defaults.go`, plus the default admission plugins whose
//! effect is visible on every created Pod (ServiceAccount, Priority,
//! DefaultTolerationSeconds).
//!
//! `k8s-openapi` models every optional scalar as `Option`, so upstream's
//! "zero value means unset" becomes "`None` or `Some(0)`" here.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, Lifecycle, LifecycleHandler, Pod,
    PodSecurityContext, PodSpec, Probe, Service, Toleration, Volume,
};

/// `terminationGracePeriodSeconds` when the manifest leaves it unset.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// `terminationMessagePath` default.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// `schedulerName` default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// File mode for Secret/ConfigMap/downwardAPI/projected volumes (0644).
pub const DEFAULT_VOLUME_MODE: i32 = 0o644;
/// `tolerationSeconds` added by DefaultTolerationSeconds admission.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

fn set_if_empty(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_string());
    }
}

fn set_if_zero<T: Default + PartialEq + Copy>(field: &mut Option<T>, value: T) {
    if field.is_none_or(|v| v == T::default()) {
        *field = Some(value);
    }
}

/// The image pull policy the API server picks when none is given: `Always`
/// for `:latest` or untagged (and undigested) images, else `IfNotPresent`.
pub fn default_image_pull_policy(image: &str) -> &'static str {
    // A digest pins the content; with a digest and no tag, upstream's parser
    // reports no tag at all, so the result is IfNotPresent.
    let (name, has_digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let tag = name[last_slash..].rsplit_once(':').map(|(_, t)| t);
    match tag {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if has_digest => "IfNotPresent",
        None => "Always",
    }
}

// === Pod ===

/// Applies the API server's defaults to a Pod being created: everything in
/// [`default_pod_spec`], namespace `default`, requests copied from limits,
/// `enableServiceLinks`, the `default` ServiceAccount, priority 0 and the
/// not-ready/unreachable tolerations.
pub fn default_pod(pod: &mut Pod) {
    set_if_empty(&mut pod.metadata.namespace, "default");
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    default_pod_spec(spec);

    // SetDefaults_Pod: requests default to limits (only on Pods, never on
    // templates, so that a template round-trips unchanged).
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        if let Some(res) = c.resources.as_mut()
            && let Some(limits) = res.limits.clone()
        {
            let requests = res.requests.get_or_insert_with(Default::default);
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
    if spec.enable_service_links.is_none() {
        spec.enable_service_links = Some(true);
    }
    if spec.host_network == Some(true) {
        default_host_network_ports(&mut spec.containers);
        default_host_network_ports(spec.init_containers.get_or_insert_with(Vec::new));
        if spec.init_containers.as_ref().is_some_and(Vec::is_empty) {
            spec.init_containers = None;
        }
    }

    // ServiceAccount admission: every Pod runs as some ServiceAccount.
    set_if_empty(&mut spec.service_account_name, "default");
    spec.service_account = spec.service_account_name.clone();

    // Priority admission: no priorityClassName means priority 0.
    if spec.priority.is_none() {
        spec.priority = Some(0);
    }
    set_if_empty(&mut spec.preemption_policy, "PreemptLowerPriority");

    // DefaultTolerationSeconds admission.
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let present = tolerations.iter().any(|t| {
            t.key.as_deref() == Some(key)
                && matches!(t.effect.as_deref(), Some("NoExecute") | None | Some(""))
        });
        if !present {
            tolerations.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some("NoExecute".to_string()),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
}

fn default_host_network_ports(containers: &mut [Container]) {
    for c in containers {
        for p in c.ports.iter_mut().flatten() {
            if p.host_port.is_none_or(|h| h == 0) {
                p.host_port = Some(p.container_port);
            }
        }
    }
}

/// `SetDefaults_PodSpec` and everything below it (containers, probes,
/// handlers, volumes, env field references). Used for Pods and for the
/// templates inside Jobs, Deployments and ReplicaSets.
pub fn default_pod_spec(spec: &mut PodSpec) {
    set_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_if_empty(&mut spec.restart_policy, "Always");
    if spec.security_context.is_none() {
        spec.security_context = Some(PodSecurityContext::default());
    }
    if spec.termination_grace_period_seconds.is_none() {
        spec.termination_grace_period_seconds = Some(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    }
    set_if_empty(&mut spec.scheduler_name, DEFAULT_SCHEDULER_NAME);
    // The v1 <-> internal conversion keeps the deprecated `serviceAccount`
    // and `serviceAccountName` in step.
    if spec
        .service_account_name
        .as_deref()
        .is_none_or(str::is_empty)
        && spec
            .service_account
            .as_deref()
            .is_some_and(|s| !s.is_empty())
    {
        spec.service_account_name = spec.service_account.clone();
    }
    if spec
        .service_account_name
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        spec.service_account = spec.service_account_name.clone();
    }

    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(c);
    }
    for ec in spec.ephemeral_containers.iter_mut().flatten() {
        set_if_empty(
            &mut ec.termination_message_path,
            DEFAULT_TERMINATION_MESSAGE_PATH,
        );
        set_if_empty(&mut ec.termination_message_policy, "File");
        if ec.image_pull_policy.as_deref().is_none_or(str::is_empty) {
            ec.image_pull_policy =
                Some(default_image_pull_policy(ec.image.as_deref().unwrap_or("")).to_string());
        }
    }
    for v in spec.volumes.iter_mut().flatten() {
        default_volume(v);
    }
}

/// `SetDefaults_Container` plus its ports, probes, lifecycle handlers and env.
pub fn default_container(c: &mut Container) {
    if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        c.image_pull_policy =
            Some(default_image_pull_policy(c.image.as_deref().unwrap_or("")).to_string());
    }
    set_if_empty(
        &mut c.termination_message_path,
        DEFAULT_TERMINATION_MESSAGE_PATH,
    );
    set_if_empty(&mut c.termination_message_policy, "File");
    for p in c.ports.iter_mut().flatten() {
        default_container_port(p);
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    if let Some(lc) = c.lifecycle.as_mut() {
        default_lifecycle(lc);
    }
    for e in c.env.iter_mut().flatten() {
        default_env_var(e);
    }
}

fn default_container_port(p: &mut ContainerPort) {
    set_if_empty(&mut p.protocol, "TCP");
}

/// `SetDefaults_Probe`: zero or unset timing fields take their defaults
/// (timeout 1, period 10, success 1, failure 3); `httpGet` gets path `/`
/// and scheme `HTTP`.
pub fn default_probe(p: &mut Probe) {
    set_if_zero(&mut p.timeout_seconds, 1);
    set_if_zero(&mut p.period_seconds, 10);
    set_if_zero(&mut p.success_threshold, 1);
    set_if_zero(&mut p.failure_threshold, 3);
    if let Some(h) = p.http_get.as_mut() {
        default_http_get(h);
    }
}

fn default_lifecycle(lc: &mut Lifecycle) {
    for h in [&mut lc.post_start, &mut lc.pre_stop].into_iter().flatten() {
        default_lifecycle_handler(h);
    }
}

fn default_lifecycle_handler(h: &mut LifecycleHandler) {
    if let Some(g) = h.http_get.as_mut() {
        default_http_get(g);
    }
}

fn default_http_get(h: &mut HTTPGetAction) {
    set_if_empty(&mut h.path, "/");
    set_if_empty(&mut h.scheme, "HTTP");
}

fn default_env_var(e: &mut EnvVar) {
    if let Some(fr) = e.value_from.as_mut().and_then(|vf| vf.field_ref.as_mut()) {
        set_if_empty(&mut fr.api_version, "v1");
    }
}

/// `SetDefaults_Volume` and the per-source defaults: a volume with no source
/// becomes an `emptyDir`; projected files get mode 0644.
pub fn default_volume(v: &mut Volume) {
    let has_source = serde_json::to_value(&*v)
        .ok()
        .and_then(|j| {
            j.as_object()
                .map(|m| m.iter().any(|(k, val)| k != "name" && !val.is_null()))
        })
        .unwrap_or(false);
    if !has_source {
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = v.secret.as_mut() {
        set_if_zero_mode(&mut s.default_mode);
    }
    if let Some(s) = v.config_map.as_mut() {
        set_if_zero_mode(&mut s.default_mode);
    }
    if let Some(s) = v.downward_api.as_mut() {
        set_if_zero_mode(&mut s.default_mode);
        for item in s.items.iter_mut().flatten() {
            if let Some(fr) = item.field_ref.as_mut() {
                set_if_empty(&mut fr.api_version, "v1");
            }
        }
    }
    if let Some(s) = v.projected.as_mut() {
        set_if_zero_mode(&mut s.default_mode);
    }
    if let Some(h) = v.host_path.as_mut()
        && h.type_.is_none()
    {
        h.type_ = Some(String::new());
    }
}

fn set_if_zero_mode(mode: &mut Option<i32>) {
    // Only an absent mode is defaulted: 0 is a legal (if odd) file mode.
    if mode.is_none() {
        *mode = Some(DEFAULT_VOLUME_MODE);
    }
}

// === Job ===

/// `SetDefaults_Job` plus [`default_pod_spec`] on the template: completions
/// and parallelism 1 (when both are unset), backoffLimit 6, completionMode
/// `NonIndexed`, suspend false, podReplacementPolicy, and Job labels copied
/// from the template when the Job has none.
pub fn default_job(job: &mut Job) {
    set_if_empty(&mut job.metadata.namespace, "default");
    let spec = job.spec.get_or_insert_with(Default::default);
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
        spec.parallelism = Some(1);
    }
    if spec.parallelism.is_none() {
        spec.parallelism = Some(1);
    }
    if spec.backoff_limit.is_none() {
        // With a per-index limit the global limit is effectively disabled.
        spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            6
        });
    }
    set_if_empty(&mut spec.completion_mode, "NonIndexed");
    if spec.suspend.is_none() {
        spec.suspend = Some(false);
    }
    if spec.pod_replacement_policy.is_none() {
        let policy = if spec.pod_failure_policy.is_some() {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        spec.pod_replacement_policy = Some(policy.to_string());
    }
    // `manualSelector` stays unset, as upstream: the selector is generated
    // from the UID by `generate_job_selector`.
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    if let Some(labels) = template_labels
        && job.metadata.labels.as_ref().is_none_or(|l| l.is_empty())
    {
        job.metadata.labels = Some(labels);
    }
    let pod_spec = spec.template.spec.get_or_insert_with(PodSpec::default);
    default_pod_spec(pod_spec);
}

/// What the Job registry strategy does on create when `manualSelector` is
/// not true: label the template with the controller UID and Job name, and
/// select on the UID. Needs the UID the store assigned, hence separate from
/// [`default_job`].
pub fn generate_job_selector(job: &mut Job, uid: &str) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    if spec.manual_selector == Some(true) {
        return;
    }
    let meta = spec.template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.insert("batch.kubernetes.io/controller-uid".into(), uid.into());
    labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
    labels.insert("controller-uid".into(), uid.into());
    labels.insert("job-name".into(), name);
    let mut match_labels = std::collections::BTreeMap::new();
    match_labels.insert(
        "batch.kubernetes.io/controller-uid".to_string(),
        uid.to_string(),
    );
    spec.selector = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some(match_labels),
            match_expressions: None,
        },
    );
}

// === Service ===

/// `SetDefaults_Service`: type `ClusterIP`, sessionAffinity `None`, port
/// protocol `TCP`, targetPort = port, traffic policies `Cluster`.
pub fn default_service(svc: &mut Service) {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    set_if_empty(&mut svc.metadata.namespace, "default");
    let spec = svc.spec.get_or_insert_with(Default::default);
    set_if_empty(&mut spec.session_affinity, "None");
    if spec.session_affinity.as_deref() == Some("None") {
        spec.session_affinity_config = None;
    }
    set_if_empty(&mut spec.type_, "ClusterIP");
    for p in spec.ports.iter_mut().flatten() {
        set_if_empty(&mut p.protocol, "TCP");
        let unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
    let ty = spec.type_.clone().unwrap_or_default();
    let externally_accessible = ty == "LoadBalancer"
        || ty == "NodePort"
        || (ty == "ClusterIP" && spec.external_ips.as_ref().is_some_and(|v| !v.is_empty()));
    if externally_accessible {
        set_if_empty(&mut spec.external_traffic_policy, "Cluster");
    }
    if spec.internal_traffic_policy.is_none()
        && matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer")
    {
        spec.internal_traffic_policy = Some("Cluster".into());
    }
    if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        spec.allocate_load_balancer_node_ports = Some(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_pull_policy_follows_tag() {
        assert_eq!(default_image_pull_policy("busybox"), "Always");
        assert_eq!(default_image_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_image_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(
            default_image_pull_policy("localhost:5000/busybox"),
            "Always"
        );
        assert_eq!(
            default_image_pull_policy("localhost:5000/busybox:v1"),
            "IfNotPresent"
        );
        assert_eq!(
            default_image_pull_policy("busybox@sha256:abcd"),
            "IfNotPresent"
        );
        assert_eq!(
            default_image_pull_policy("busybox:latest@sha256:abcd"),
            "Always"
        );
    }
}
