//! Pod and PodSpec validation (upstream `ValidatePodCreate`,
//! `ValidatePodSpec`, `validateContainers`, `validateInitContainers`, …).
//!
//! Functions mirror upstream's one to one, in the same order, so that the
//! error list comes out in the order the API server reports it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, FileKeySelector, HTTPGetAction, Lifecycle,
    LifecycleHandler, Pod, PodSpec, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::defaults::default_pod;
use crate::field::{FieldError, Invalid, Path};
use crate::names;
use crate::quantity::Quantity;
use crate::validation::meta::{NameRule, subdomain_ref, validate_labels, validate_object_meta};

type Errs = Vec<FieldError>;

const NEGATIVE: &str = "must be greater than or equal to 0";
const INIT_FORBIDDEN: &str = "may not be set for init containers without restartPolicy=Always";

/// Defaults then validates a Pod, as the API server does on create.
pub fn admit_pod(mut pod: Pod) -> Result<Pod, Invalid> {
    default_pod(&mut pod);
    validate_pod(&pod)?;
    // PodObservedGenerationTracking (GA 1.35): a new pod's generation is 1, whatever
    // the client sent.
    pod.metadata.generation = Some(1);
    Ok(pod)
}

/// Validates a Pod that has already been defaulted (see
/// [`crate::default_pod`]). Errors come in upstream's order.
pub fn validate_pod(pod: &Pod) -> Result<(), Invalid> {
    let errs = pod_errors(pod);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Invalid::new(
            "Pod",
            pod.metadata.name.clone().unwrap_or_default(),
            errs,
        ))
    }
}

fn pod_errors(pod: &Pod) -> Errs {
    let meta_path = Path::new("metadata");
    let spec_path = Path::new("spec");
    let mut errs = validate_object_meta(&pod.metadata, NameRule::Subdomain, &meta_path);
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    errs.extend(validate_pod_spec(spec, &spec_path, true));
    // Checks that apply to Pods but not to Pod templates.
    for (list, name) in [
        (Some(&spec.containers), "containers"),
        (spec.init_containers.as_ref(), "initContainers"),
    ] {
        for (i, c) in list.into_iter().flatten().enumerate() {
            let image = c.image.as_deref().unwrap_or("");
            if image.len() != image.trim().len() {
                errs.push(FieldError::invalid_str(
                    spec_path.child(name).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            spec_path.child("ephemeralContainers"),
            "cannot be set on create",
        ));
    }
    errs
}

/// Validates a PodSpec found at `path` (`spec` for Pods,
/// `spec.template.spec` for Jobs). `is_pod` enables the Pod-only rules.
pub fn validate_pod_spec_at(spec: &PodSpec, path: &str, is_pod: bool) -> Vec<FieldError> {
    validate_pod_spec(spec, &Path::new(path), is_pod)
}

pub(crate) fn validate_pod_spec(spec: &PodSpec, path: &Path, is_pod: bool) -> Errs {
    let mut errs = Errs::new();
    let grace = spec.termination_grace_period_seconds;
    match grace {
        None => errs.push(FieldError::required(
            path.child("terminationGracePeriodSeconds"),
            "",
        )),
        Some(g) if g < 0 => errs.push(FieldError::invalid_num(
            path.child("terminationGracePeriodSeconds"),
            g,
            NEGATIVE,
        )),
        Some(_) => {}
    }
    let (volumes, verrs) = validate_volumes(
        spec.volumes.as_deref().unwrap_or(&[]),
        &path.child("volumes"),
    );
    errs.extend(verrs);
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("");
    errs.extend(validate_containers(
        &spec.containers,
        &volumes,
        grace,
        &path.child("containers"),
        restart_policy,
    ));
    errs.extend(validate_init_containers(
        spec.init_containers.as_deref().unwrap_or(&[]),
        &spec.containers,
        &volumes,
        grace,
        &path.child("initContainers"),
        restart_policy,
    ));
    if spec.host_network == Some(true) {
        let cpath = path.child("containers");
        for (i, c) in spec.containers.iter().enumerate() {
            for (j, p) in c.ports.iter().flatten().enumerate() {
                let hp = p.host_port.unwrap_or(0);
                if (is_pod || hp != 0) && hp != p.container_port {
                    errs.push(FieldError::invalid_num(
                        cpath.index(i).child("ports").index(j).child("hostPort"),
                        hp.into(),
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
    errs.extend(validate_restart_policy(
        restart_policy,
        &path.child("restartPolicy"),
    ));
    errs.extend(validate_dns_policy(
        spec.dns_policy.as_deref().unwrap_or(""),
        &path.child("dnsPolicy"),
    ));
    if let Some(sel) = &spec.node_selector {
        errs.extend(validate_labels(sel, &path.child("nodeSelector")));
    }
    if let Some(sa) = spec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        for m in subdomain_ref(sa, false) {
            errs.push(FieldError::invalid_str(
                path.child("serviceAccountName"),
                sa,
                m,
            ));
        }
    }
    if let Some(node) = spec.node_name.as_deref().filter(|s| !s.is_empty()) {
        for m in subdomain_ref(node, false) {
            errs.push(FieldError::invalid_str(path.child("nodeName"), node, m));
        }
    }
    if let Some(ads) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&ads)
    {
        errs.push(FieldError::invalid_num(
            path.child("activeDeadlineSeconds"),
            ads,
            names::inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    if let Some(h) = spec.hostname.as_deref().filter(|s| !s.is_empty()) {
        for m in names::is_dns1123_label(h) {
            errs.push(FieldError::invalid_str(path.child("hostname"), h, m));
        }
    }
    if let Some(s) = spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        for m in names::is_dns1123_label(s) {
            errs.push(FieldError::invalid_str(path.child("subdomain"), s, m));
        }
    }
    if let Some(pp) = spec.preemption_policy.as_deref() {
        match pp {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(FieldError::required(path.child("preemptionPolicy"), "")),
            other => errs.push(FieldError::not_supported(
                path.child("preemptionPolicy"),
                other,
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    errs.extend(super::pod_ids::validate_security_ids(spec, path));
    errs
}

fn validate_restart_policy(policy: &str, path: &Path) -> Errs {
    match policy {
        "Always" | "OnFailure" | "Never" => vec![],
        "" => vec![FieldError::required(path, "")],
        other => vec![FieldError::not_supported(
            path,
            other,
            &["Always", "OnFailure", "Never"],
        )],
    }
}

fn validate_dns_policy(policy: &str, path: &Path) -> Errs {
    match policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => vec![],
        "" => vec![FieldError::required(path, "")],
        other => vec![FieldError::not_supported(
            path,
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )],
    }
}

// === volumes ===

/// Volume sources in the order upstream's `validateVolumeSource` checks them,
/// which decides which source gets the "more than 1 volume type" error.
const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "quobyte",
    "cinder",
    "cephfs",
    "downwardAPI",
    "fc",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "scaleIO",
    "configMap",
    "flexVolume",
    "projected",
    "csi",
    "ephemeral",
    "image",
];

/// Returns the valid volumes by name (invalid ones are left out, so that
/// mounts of them are also reported, as upstream does) and the errors.
fn validate_volumes(volumes: &[Volume], path: &Path) -> (BTreeMap<String, Volume>, Errs) {
    let mut errs = Errs::new();
    let mut valid = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let idx = path.index(i);
        let name_path = idx.child("name");
        let mut el = validate_volume_source(v, &idx);
        if v.name.is_empty() {
            el.push(FieldError::required(&name_path, ""));
        } else {
            for m in names::is_dns1123_label(&v.name) {
                el.push(FieldError::invalid_str(&name_path, &v.name, m));
            }
        }
        if seen.contains(&v.name) {
            el.push(FieldError::duplicate(&name_path, &v.name));
        }
        if el.is_empty() {
            seen.insert(v.name.clone());
            valid.insert(v.name.clone(), v.clone());
        } else {
            errs.extend(el);
        }
    }
    (valid, errs)
}

fn validate_volume_source(v: &Volume, path: &Path) -> Errs {
    let mut errs = Errs::new();
    // Serialising a derived struct to a Value cannot fail.
    let json = serde_json::to_value(v).unwrap_or_default();
    let mut count = 0;
    for src in VOLUME_SOURCES {
        if json.get(*src).is_none_or(serde_json::Value::is_null) {
            continue;
        }
        if count > 0 {
            errs.push(FieldError::forbidden(
                path.child(src),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        let p = path.child(src);
        match *src {
            "hostPath" => {
                if let Some(h) = &v.host_path {
                    if h.path.is_empty() {
                        errs.push(FieldError::required(p.child("path"), ""));
                    } else {
                        errs.extend(no_backsteps(&h.path, &p.child("path")));
                    }
                    let ty = h.type_.as_deref().unwrap_or("");
                    const TYPES: &[&str] = &[
                        "",
                        "BlockDevice",
                        "CharDevice",
                        "Directory",
                        "DirectoryOrCreate",
                        "File",
                        "FileOrCreate",
                        "Socket",
                    ];
                    if !TYPES.contains(&ty) {
                        errs.push(FieldError::not_supported(p.child("type"), ty, TYPES));
                    }
                }
            }
            "secret" => {
                if let Some(s) = &v.secret {
                    if s.secret_name.as_deref().unwrap_or("").is_empty() {
                        errs.push(FieldError::required(p.child("secretName"), ""));
                    }
                    errs.extend(file_mode(s.default_mode, &p.child("defaultMode")));
                }
            }
            "configMap" => {
                if let Some(c) = &v.config_map {
                    if c.name.is_empty() {
                        errs.push(FieldError::required(p.child("name"), ""));
                    }
                    errs.extend(file_mode(c.default_mode, &p.child("defaultMode")));
                }
            }
            "persistentVolumeClaim" => {
                if let Some(c) = &v.persistent_volume_claim
                    && c.claim_name.is_empty()
                {
                    errs.push(FieldError::required(p.child("claimName"), ""));
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a volume type"));
    }
    errs
}

fn file_mode(mode: Option<i32>, path: &Path) -> Errs {
    match mode {
        Some(m) if !(0..=0o777).contains(&m) => vec![FieldError::invalid_num(
            path,
            m.into(),
            "must be a number between 0 and 0777 (octal), both inclusive",
        )],
        _ => vec![],
    }
}

fn no_backsteps(target: &str, path: &Path) -> Errs {
    if target.split('/').any(|p| p == "..") {
        vec![FieldError::invalid_str(
            path,
            target,
            "must not contain '..'",
        )]
    } else {
        vec![]
    }
}

// === containers ===

fn validate_containers(
    containers: &[Container],
    volumes: &BTreeMap<String, Volume>,
    grace: Option<i64>,
    path: &Path,
    pod_restart_policy: &str,
) -> Errs {
    let mut errs = Errs::new();
    if containers.is_empty() {
        errs.push(FieldError::required(path, ""));
        return errs;
    }
    let mut names = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = path.index(i);
        errs.extend(validate_container_common(
            c,
            volumes,
            &p,
            pod_restart_policy,
        ));
        // Collisions with init containers are reported on the init container.
        if !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(p.child("name"), &c.name));
        }
        errs.extend(validate_hooks_and_probes(c, grace, &p));
        errs.extend(validate_container_restart_policy(c, &p));
    }
    // Regular containers run together, so their host ports must not clash.
    errs.extend(host_port_conflicts(containers, path, 0));
    errs
}

fn validate_init_containers(
    containers: &[Container],
    regular: &[Container],
    volumes: &BTreeMap<String, Volume>,
    grace: Option<i64>,
    path: &Path,
    pod_restart_policy: &str,
) -> Errs {
    let mut errs = Errs::new();
    let mut names: BTreeSet<&str> = regular.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in containers.iter().enumerate() {
        let p = path.index(i);
        errs.extend(validate_container_common(
            c,
            volumes,
            &p,
            pod_restart_policy,
        ));
        // With ContainerRestartRules and RestartAllContainersOnContainerExits on (the
        // 1.37 defaults) init containers take the same policy and rules as regular
        // ones; `Always` makes a sidecar, which may carry rules too.
        errs.extend(validate_container_restart_policy(c, &p));
        let restart_always = crate::is_sidecar(c);
        if names.contains(c.name.as_str()) {
            errs.push(FieldError::duplicate(p.child("name"), &c.name));
        } else if !c.name.is_empty() {
            names.insert(c.name.as_str());
        }
        // Init containers run one at a time, so each is checked on its own.
        // Upstream passes a one-element list, so the reported index is always
        // 0; kept so the message matches.
        errs.extend(host_port_conflicts(std::slice::from_ref(c), path, 0));
        if restart_always {
            errs.extend(validate_hooks_and_probes(c, grace, &p));
        } else {
            if c.lifecycle.is_some() {
                errs.push(FieldError::forbidden(p.child("lifecycle"), INIT_FORBIDDEN));
            }
            if c.liveness_probe.is_some() {
                errs.push(FieldError::forbidden(
                    p.child("livenessProbe"),
                    INIT_FORBIDDEN,
                ));
            }
            if c.readiness_probe.is_some() {
                errs.push(FieldError::forbidden(
                    p.child("readinessProbe"),
                    INIT_FORBIDDEN,
                ));
            }
            if c.startup_probe.is_some() {
                errs.push(FieldError::forbidden(
                    p.child("startupProbe"),
                    INIT_FORBIDDEN,
                ));
            }
        }
    }
    errs
}

/// Container `restartPolicy` values, as the API server lists them.
const CONTAINER_RESTART_POLICIES: &[&str] = &["Always", "Never", "OnFailure"];
/// `restartPolicyRules[].action` values (RestartAllContainersOnContainerExits on).
const RESTART_RULE_ACTIONS: &[&str] = &["Restart", "RestartAllContainers"];
/// `restartPolicyRules[].exitCodes.operator` values.
const EXIT_CODE_OPERATORS: &[&str] = &["In", "NotIn"];
/// At most this many `restartPolicyRules` per container.
pub const MAX_RESTART_RULES: usize = 20;
/// At most this many `exitCodes.values` per rule.
pub const MAX_EXIT_CODE_VALUES: usize = 255;

/// Upstream `validateContainerRestartPolicy` (KEP-5307, KEP-5532): a container's own
/// `restartPolicy` and its `restartPolicyRules`, for regular and init containers.
fn validate_container_restart_policy(c: &Container, path: &Path) -> Errs {
    let mut errs = Errs::new();
    let rules = c.restart_policy_rules.as_deref().unwrap_or_default();
    let Some(policy) = c.restart_policy.as_deref() else {
        if !rules.is_empty() {
            errs.push(FieldError::required(
                path.child("restartPolicy"),
                "must specify restartPolicy when restart rules are used",
            ));
        }
        return errs;
    };
    if !CONTAINER_RESTART_POLICIES.contains(&policy) {
        errs.push(FieldError::not_supported(
            path.child("restartPolicy"),
            policy,
            CONTAINER_RESTART_POLICIES,
        ));
    }
    let rules_path = path.child("restartPolicyRules");
    if rules.len() > MAX_RESTART_RULES {
        errs.push(FieldError::too_many(
            &rules_path,
            rules.len(),
            MAX_RESTART_RULES,
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = rules_path.index(i);
        if !RESTART_RULE_ACTIONS.contains(&rule.action.as_str()) {
            errs.push(FieldError::not_supported(
                rp.child("action"),
                &rule.action,
                RESTART_RULE_ACTIONS,
            ));
        }
        let Some(codes) = &rule.exit_codes else {
            errs.push(FieldError::required(
                rp.child("exitCodes"),
                "must be specified",
            ));
            continue;
        };
        let cp = rp.child("exitCodes");
        if !EXIT_CODE_OPERATORS.contains(&codes.operator.as_str()) {
            errs.push(FieldError::not_supported(
                cp.child("operator"),
                &codes.operator,
                EXIT_CODE_OPERATORS,
            ));
        }
        let values = codes.values.as_deref().unwrap_or_default();
        if values.len() > MAX_EXIT_CODE_VALUES {
            errs.push(FieldError::too_many(
                cp.child("values"),
                values.len(),
                MAX_EXIT_CODE_VALUES,
            ));
        }
    }
    errs
}

/// Upstream `AccumulateUniqueHostPorts`. `offset` is the index of the first
/// container in `containers` within the list at `path`.
fn host_port_conflicts(containers: &[Container], path: &Path, offset: usize) -> Errs {
    let mut errs = Errs::new();
    let mut seen = BTreeSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let hp = p.host_port.unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{}",
                p.protocol.as_deref().unwrap_or(""),
                p.host_ip.as_deref().unwrap_or(""),
                hp
            );
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    path.index(offset + ci)
                        .child("ports")
                        .index(pi)
                        .child("hostPort"),
                    &key,
                ));
            }
        }
    }
    errs
}

fn validate_container_common(
    c: &Container,
    volumes: &BTreeMap<String, Volume>,
    path: &Path,
    pod_restart_policy: &str,
) -> Errs {
    let mut errs = Errs::new();
    let name_path = path.child("name");
    if c.name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else {
        for m in names::is_dns1123_label(&c.name) {
            errs.push(FieldError::invalid_str(&name_path, &c.name, m));
        }
    }
    if c.image.as_deref().unwrap_or("").is_empty() {
        errs.push(FieldError::required(path.child("image"), ""));
    }
    match c.termination_message_policy.as_deref().unwrap_or("") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(
            path.child("terminationMessagePolicy"),
            "",
        )),
        other => errs.push(FieldError::not_supported(
            path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    errs.extend(validate_container_ports(
        c.ports.as_deref().unwrap_or(&[]),
        &path.child("ports"),
    ));
    errs.extend(validate_env(
        volumes,
        c.env.as_deref().unwrap_or(&[]),
        &path.child("env"),
    ));
    errs.extend(validate_env_from(
        c.env_from.as_deref().unwrap_or(&[]),
        &path.child("envFrom"),
    ));
    errs.extend(validate_volume_mounts(
        c,
        volumes,
        &path.child("volumeMounts"),
    ));
    match c.image_pull_policy.as_deref().unwrap_or("") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(path.child("imagePullPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    errs.extend(validate_resources(c, &path.child("resources")));
    errs.extend(validate_resize_policy(
        c,
        &path.child("resizePolicy"),
        pod_restart_policy,
    ));
    errs
}

/// Requests may not exceed limits (upstream
/// `ValidateContainerResourceRequirements`, the comparison part).
fn validate_resources(c: &Container, path: &Path) -> Errs {
    let mut errs = Errs::new();
    let Some(res) = &c.resources else { return errs };
    for (list, name) in [(&res.limits, "limits"), (&res.requests, "requests")] {
        for (k, q) in list.iter().flatten() {
            if parse_quantity(&q.0).is_some_and(|v| v.is_negative()) {
                errs.push(FieldError::invalid_str(
                    path.child(name).key(k),
                    &q.0,
                    NEGATIVE,
                ));
            }
        }
    }
    let (Some(limits), Some(requests)) = (&res.limits, &res.requests) else {
        return errs;
    };
    for (k, req) in requests {
        let Some(lim) = limits.get(k) else { continue };
        if let (Some(r), Some(l)) = (parse_quantity(&req.0), parse_quantity(&lim.0))
            && r > l
        {
            errs.push(FieldError::invalid_str(
                path.child("requests").key(k),
                &req.0,
                format!("must be less than or equal to {k} limit of {}", lim.0),
            ));
        }
    }
    errs
}

/// A resource quantity as the API decoder reads it (surrounding space trimmed);
/// `None` if it is not a quantity.
pub(crate) fn parse_quantity(s: &str) -> Option<Quantity> {
    Quantity::parse(s.trim()).ok()
}

fn validate_container_ports(ports: &[ContainerPort], path: &Path) -> Errs {
    let mut errs = Errs::new();
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = path.index(i);
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = names::is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid_str(idx.child("name"), name, m));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(idx.child("name"), name));
            }
        }
        if p.container_port == 0 {
            errs.push(FieldError::required(idx.child("containerPort"), ""));
        } else {
            for m in names::is_valid_port_num(p.container_port.into()) {
                errs.push(FieldError::invalid_num(
                    idx.child("containerPort"),
                    p.container_port.into(),
                    m,
                ));
            }
        }
        if let Some(hp) = p.host_port.filter(|h| *h != 0) {
            for m in names::is_valid_port_num(hp.into()) {
                errs.push(FieldError::invalid_num(idx.child("hostPort"), hp.into(), m));
            }
        }
        match p.protocol.as_deref().unwrap_or("") {
            "" => errs.push(FieldError::required(idx.child("protocol"), "")),
            "TCP" | "UDP" | "SCTP" => {}
            other => errs.push(FieldError::not_supported(
                idx.child("protocol"),
                other,
                &["SCTP", "TCP", "UDP"],
            )),
        }
    }
    errs
}

/// Field paths a `fieldRef` may use in an env var (sorted, as upstream lists them).
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Every label the downward API converter knows (upstream
/// `ConvertDownwardAPIFieldLabel`); anything else fails conversion.
const DOWNWARD_LABELS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn validate_env(volumes: &BTreeMap<String, Volume>, vars: &[EnvVar], path: &Path) -> Errs {
    let mut errs = Errs::new();
    for (i, ev) in vars.iter().enumerate() {
        let idx = path.index(i);
        if ev.name.is_empty() {
            errs.push(FieldError::required(idx.child("name"), ""));
        } else {
            for m in names::is_env_var_name(&ev.name) {
                errs.push(FieldError::invalid_str(idx.child("name"), &ev.name, m));
            }
        }
        errs.extend(validate_env_value_from(
            volumes,
            ev,
            &idx.child("valueFrom"),
        ));
    }
    errs
}

fn validate_env_value_from(volumes: &BTreeMap<String, Volume>, ev: &EnvVar, path: &Path) -> Errs {
    let mut errs = Errs::new();
    let Some(vf) = &ev.value_from else {
        return errs;
    };
    let mut sources = 0;
    if let Some(fr) = &vf.field_ref {
        sources += 1;
        let p = path.child("fieldRef");
        let api_version = fr.api_version.as_deref().unwrap_or("");
        if api_version.is_empty() {
            errs.push(FieldError::required(p.child("apiVersion"), ""));
        } else if fr.field_path.is_empty() {
            errs.push(FieldError::required(p.child("fieldPath"), ""));
        } else {
            errs.extend(validate_field_selector(api_version, &fr.field_path, &p));
        }
    }
    if let Some(rf) = &vf.resource_field_ref {
        sources += 1;
        if rf.resource.is_empty() {
            errs.push(FieldError::required(
                path.child("resourceFieldRef").child("resource"),
                "",
            ));
        }
    }
    if let Some(r) = &vf.config_map_key_ref {
        sources += 1;
        errs.extend(key_selector(
            &r.name,
            &r.key,
            &path.child("configMapKeyRef"),
        ));
    }
    if let Some(r) = &vf.secret_key_ref {
        sources += 1;
        errs.extend(key_selector(&r.name, &r.key, &path.child("secretKeyRef")));
    }
    if let Some(r) = &vf.file_key_ref {
        sources += 1;
        errs.extend(validate_file_key_ref(volumes, r, &path.child("fileKeyRef")));
    }
    if sources == 0 {
        errs.push(FieldError::invalid_str(
            path,
            "",
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if ev.value.as_deref().is_some_and(|v| !v.is_empty()) {
        errs.push(FieldError::invalid_str(
            path,
            "",
            "may not be specified when `value` is not empty",
        ));
    } else if sources > 1 {
        errs.push(FieldError::invalid_str(
            path,
            "",
            "may not have more than one field specified at a time",
        ));
    }
    errs
}

/// `env[].valueFrom.fileKeyRef` (EnvFiles, beta and on since 1.35): a `KEY=value` file
/// in an emptyDir volume of the pod.
fn validate_file_key_ref(
    volumes: &BTreeMap<String, Volume>,
    r: &FileKeySelector,
    path: &Path,
) -> Errs {
    let mut errs = Errs::new();
    let vp = path.child("volumeName");
    if r.volume_name.is_empty() {
        errs.push(FieldError::required(&vp, ""));
    } else {
        for m in names::is_dns1123_label(&r.volume_name) {
            errs.push(FieldError::invalid_str(&vp, &r.volume_name, m));
        }
        match volumes.get(&r.volume_name) {
            None => errs.push(FieldError::not_found(&vp, &r.volume_name)),
            Some(v) if v.empty_dir.is_none() => errs.push(FieldError::invalid_str(
                &vp,
                &r.volume_name,
                "referenced volume must be of type emptyDir",
            )),
            Some(_) => {}
        }
    }
    let pp = path.child("path");
    if r.path.is_empty() {
        errs.push(FieldError::required(&pp, ""));
    } else {
        errs.extend(local_descending_path(&r.path, &pp));
    }
    let kp = path.child("key");
    if r.key.is_empty() {
        errs.push(FieldError::required(&kp, ""));
    } else {
        for m in names::is_env_var_name(&r.key) {
            errs.push(FieldError::invalid_str(&kp, &r.key, m));
        }
    }
    errs
}

fn validate_field_selector(api_version: &str, field_path: &str, path: &Path) -> Errs {
    let mut errs = Errs::new();
    // Upstream converts the label first and reports conversion errors as-is.
    let conversion_error = if api_version != "v1" {
        Some(format!("unsupported pod version: {api_version}"))
    } else if let Some((base, _)) = names::split_subscript(field_path) {
        (!matches!(base, "metadata.annotations" | "metadata.labels"))
            .then(|| format!("field label does not support subscript: {field_path}"))
    } else if DOWNWARD_LABELS.contains(&field_path) || field_path == "spec.host" {
        None
    } else {
        Some(format!("field label not supported: {field_path}"))
    };
    if let Some(e) = conversion_error {
        errs.push(FieldError::invalid_str(
            path.child("fieldPath"),
            field_path,
            format!("error converting fieldPath: {e}"),
        ));
        return errs;
    }
    let internal = if field_path == "spec.host" {
        "spec.nodeName"
    } else {
        field_path
    };
    if let Some((base, key)) = names::split_subscript(internal) {
        let key = if base == "metadata.annotations" {
            key.to_lowercase()
        } else {
            key.to_string()
        };
        for m in names::is_qualified_name(&key) {
            errs.push(FieldError::invalid_str(path, &key, m));
        }
    } else if !ENV_FIELD_PATHS.contains(&internal) {
        errs.push(FieldError::not_supported(
            path.child("fieldPath"),
            internal,
            ENV_FIELD_PATHS,
        ));
    }
    errs
}

fn key_selector(name: &str, key: &str, path: &Path) -> Errs {
    let mut errs = Errs::new();
    for m in subdomain_ref(name, false) {
        errs.push(FieldError::invalid_str(path.child("name"), name, m));
    }
    if key.is_empty() {
        errs.push(FieldError::required(path.child("key"), ""));
    } else {
        for m in names::is_config_map_key(key) {
            errs.push(FieldError::invalid_str(path.child("key"), key, m));
        }
    }
    errs
}

fn validate_env_from(sources: &[EnvFromSource], path: &Path) -> Errs {
    let mut errs = Errs::new();
    for (i, ef) in sources.iter().enumerate() {
        let idx = path.index(i);
        if let Some(prefix) = ef.prefix.as_deref().filter(|p| !p.is_empty()) {
            for m in names::is_env_var_name(prefix) {
                errs.push(FieldError::invalid_str(idx.child("prefix"), prefix, m));
            }
        }
        let mut n = 0;
        for (name, field) in [
            (
                ef.config_map_ref.as_ref().map(|r| r.name.as_str()),
                "configMapRef",
            ),
            (ef.secret_ref.as_ref().map(|r| r.name.as_str()), "secretRef"),
        ] {
            let Some(name) = name else { continue };
            n += 1;
            let p = idx.child(field).child("name");
            if name.is_empty() {
                errs.push(FieldError::required(&p, ""));
            } else {
                for m in subdomain_ref(name, true) {
                    errs.push(FieldError::invalid_str(&p, name, m));
                }
            }
        }
        if n == 0 {
            errs.push(FieldError::invalid_str(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if n > 1 {
            errs.push(FieldError::invalid_str(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

fn validate_volume_mounts(c: &Container, volumes: &BTreeMap<String, Volume>, path: &Path) -> Errs {
    let mut errs = Errs::new();
    let mounts: &[VolumeMount] = c.volume_mounts.as_deref().unwrap_or(&[]);
    let mut mount_points = BTreeSet::new();
    let privileged = c
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    for (i, m) in mounts.iter().enumerate() {
        let idx = path.index(i);
        if m.name.is_empty() {
            errs.push(FieldError::required(idx.child("name"), ""));
        }
        if !volumes.contains_key(&m.name) {
            errs.push(FieldError::not_found(idx.child("name"), &m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(idx.child("mountPath"), ""));
        }
        if !mount_points.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid_str(
                idx.child("mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
        let sub_path = m.sub_path.as_deref().unwrap_or("");
        let sub_path_expr = m.sub_path_expr.as_deref().unwrap_or("");
        // Upstream reports sub-path errors on `volumeMounts.subPath`, without
        // the index; kept for identical messages.
        if !sub_path.is_empty() {
            errs.extend(local_descending_path(sub_path, &path.child("subPath")));
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(FieldError::invalid_str(
                    idx.child("subPathExpr"),
                    sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(local_descending_path(
                sub_path_expr,
                &path.child("subPathExpr"),
            ));
        }
        if let Some(mp) = m.mount_propagation.as_deref() {
            let p = path.child("mountPropagation");
            match mp {
                "Bidirectional" if !privileged => errs.push(FieldError::forbidden(
                    &p,
                    "Bidirectional mount propagation is available only to privileged containers",
                )),
                "Bidirectional" | "HostToContainer" | "None" => {}
                other => errs.push(FieldError::not_supported(
                    &p,
                    other,
                    &["Bidirectional", "HostToContainer", "None"],
                )),
            }
        }
    }
    errs
}

fn local_descending_path(target: &str, path: &Path) -> Errs {
    let mut errs = Errs::new();
    if target.starts_with('/') {
        errs.push(FieldError::invalid_str(
            path,
            target,
            "must be a relative path",
        ));
    }
    errs.extend(no_backsteps(target, path));
    errs
}

fn validate_resize_policy(c: &Container, path: &Path, pod_restart_policy: &str) -> Errs {
    let mut errs = Errs::new();
    let mut seen = BTreeSet::new();
    for (i, p) in c.resize_policy.iter().flatten().enumerate() {
        if !seen.insert(p.resource_name.as_str()) {
            errs.push(FieldError::duplicate(path.index(i), &p.resource_name));
        }
        match p.resource_name.as_str() {
            "cpu" | "memory" => {}
            "" => errs.push(FieldError::required(path, "")),
            other => errs.push(FieldError::not_supported(path, other, &["cpu", "memory"])),
        }
        match p.restart_policy.as_str() {
            "NotRequired" | "RestartContainer" => {}
            "" => errs.push(FieldError::required(path, "")),
            other => errs.push(FieldError::not_supported(
                path,
                other,
                &["NotRequired", "RestartContainer"],
            )),
        }
        if pod_restart_policy == "Never" && p.restart_policy != "NotRequired" {
            errs.push(FieldError::invalid_str(
                path,
                &p.restart_policy,
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            ));
        }
    }
    errs
}

// === probes and handlers ===

fn validate_liveness_probe(probe: Option<&Probe>, grace: Option<i64>, path: &Path) -> Errs {
    let Some(p) = probe else { return vec![] };
    let mut errs = validate_probe(p, grace, path);
    let st = p.success_threshold.unwrap_or(0);
    if st != 1 {
        errs.push(FieldError::invalid_num(
            path.child("successThreshold"),
            st.into(),
            "must be 1",
        ));
    }
    errs
}

fn validate_readiness_probe(probe: Option<&Probe>, grace: Option<i64>, path: &Path) -> Errs {
    let Some(p) = probe else { return vec![] };
    let mut errs = validate_probe(p, grace, path);
    if let Some(t) = p.termination_grace_period_seconds {
        errs.push(FieldError::invalid_num(
            path.child("terminationGracePeriodSeconds"),
            t,
            "must not be set for readinessProbes",
        ));
    }
    errs
}

/// The lifecycle hooks and the three probes of a regular container or a sidecar.
fn validate_hooks_and_probes(c: &Container, grace: Option<i64>, p: &Path) -> Errs {
    let mut errs = Errs::new();
    if let Some(lc) = &c.lifecycle {
        errs.extend(validate_lifecycle(lc, grace, &p.child("lifecycle")));
    }
    errs.extend(validate_liveness_probe(
        c.liveness_probe.as_ref(),
        grace,
        &p.child("livenessProbe"),
    ));
    errs.extend(validate_readiness_probe(
        c.readiness_probe.as_ref(),
        grace,
        &p.child("readinessProbe"),
    ));
    errs.extend(validate_startup_probe(
        c.startup_probe.as_ref(),
        grace,
        &p.child("startupProbe"),
    ));
    errs
}

fn validate_startup_probe(probe: Option<&Probe>, grace: Option<i64>, path: &Path) -> Errs {
    // Same rules as liveness: a startup probe's success must be definitive.
    validate_liveness_probe(probe, grace, path)
}

fn validate_probe(p: &Probe, grace: Option<i64>, path: &Path) -> Errs {
    let handler = Handler {
        exec: p
            .exec
            .as_ref()
            .map(|e| e.command.as_deref().unwrap_or(&[]).is_empty()),
        http_get: p.http_get.as_ref(),
        tcp_port: p.tcp_socket.as_ref().map(|t| &t.port),
        grpc_port: p.grpc.as_ref().map(|g| g.port),
        sleep: None,
    };
    let mut errs = validate_handler(&handler, grace, path);
    for (v, name) in [
        (p.initial_delay_seconds, "initialDelaySeconds"),
        (p.timeout_seconds, "timeoutSeconds"),
        (p.period_seconds, "periodSeconds"),
        (p.success_threshold, "successThreshold"),
        (p.failure_threshold, "failureThreshold"),
    ] {
        let v = v.unwrap_or(0);
        if v < 0 {
            errs.push(FieldError::invalid_num(
                path.child(name),
                v.into(),
                NEGATIVE,
            ));
        }
    }
    if let Some(t) = p.termination_grace_period_seconds
        && t <= 0
    {
        errs.push(FieldError::invalid_num(
            path.child("terminationGracePeriodSeconds"),
            t,
            "must be greater than 0",
        ));
    }
    errs
}

/// Upstream `commonHandler`: the handler fields of a probe or a lifecycle
/// hook. `exec` holds "is the command empty".
struct Handler<'a> {
    exec: Option<bool>,
    http_get: Option<&'a HTTPGetAction>,
    tcp_port: Option<&'a IntOrString>,
    grpc_port: Option<i32>,
    sleep: Option<i64>,
}

fn validate_handler(h: &Handler<'_>, grace: Option<i64>, path: &Path) -> Errs {
    const MORE_THAN_ONE: &str = "may not specify more than 1 handler type";
    let mut errs = Errs::new();
    let mut n = 0;
    if let Some(empty_command) = h.exec {
        n += 1;
        if empty_command {
            errs.push(FieldError::required(
                path.child("exec").child("command"),
                "",
            ));
        }
    }
    if let Some(g) = h.http_get {
        if n > 0 {
            errs.push(FieldError::forbidden(path.child("httpGet"), MORE_THAN_ONE));
        } else {
            n += 1;
            errs.extend(validate_http_get(g, &path.child("httpGet")));
        }
    }
    if let Some(port) = h.tcp_port {
        if n > 0 {
            errs.push(FieldError::forbidden(
                path.child("tcpSocket"),
                MORE_THAN_ONE,
            ));
        } else {
            n += 1;
            errs.extend(port_num_or_name(
                port,
                &path.child("tcpSocket").child("port"),
            ));
        }
    }
    if let Some(port) = h.grpc_port {
        if n > 0 {
            errs.push(FieldError::forbidden(path.child("grpc"), MORE_THAN_ONE));
        } else {
            n += 1;
            errs.extend(port_num_or_name(
                &IntOrString::Int(port),
                &path.child("grpc").child("port"),
            ));
        }
    }
    if let Some(seconds) = h.sleep {
        if n > 0 {
            errs.push(FieldError::forbidden(path.child("sleep"), MORE_THAN_ONE));
        } else {
            n += 1;
            // PodLifecycleSleepActionAllowZero is GA in 1.34: 0 is allowed.
            if let Some(g) = grace
                && (seconds < 0 || seconds > g)
            {
                errs.push(FieldError::invalid_num(
                    path.child("sleep"),
                    seconds,
                    format!(
                        "must be non-negative and less than terminationGracePeriodSeconds ({g})"
                    ),
                ));
            }
        }
    }
    if n == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
    errs
}

fn validate_http_get(g: &HTTPGetAction, path: &Path) -> Errs {
    let mut errs = Errs::new();
    if g.path.as_deref().unwrap_or("").is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    errs.extend(port_num_or_name(&g.port, &path.child("port")));
    let scheme = g.scheme.as_deref().unwrap_or("");
    if scheme != "HTTP" && scheme != "HTTPS" {
        errs.push(FieldError::not_supported(
            path.child("scheme"),
            scheme,
            &["HTTP", "HTTPS"],
        ));
    }
    for h in g.http_headers.iter().flatten() {
        let ok = !h.name.is_empty()
            && h.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            errs.push(FieldError::invalid_str(
                path.child("httpHeaders"),
                &h.name,
                "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
            ));
        }
    }
    errs
}

fn port_num_or_name(port: &IntOrString, path: &Path) -> Errs {
    match port {
        IntOrString::Int(n) => names::is_valid_port_num((*n).into())
            .into_iter()
            .map(|m| FieldError::invalid_num(path, (*n).into(), m))
            .collect(),
        IntOrString::String(s) => names::is_valid_port_name(s)
            .into_iter()
            .map(|m| FieldError::invalid_str(path, s, m))
            .collect(),
    }
}

fn validate_lifecycle(lc: &Lifecycle, grace: Option<i64>, path: &Path) -> Errs {
    let mut errs = Errs::new();
    for (h, name) in [(&lc.post_start, "postStart"), (&lc.pre_stop, "preStop")] {
        if let Some(h) = h {
            errs.extend(validate_handler(
                &lifecycle_handler(h),
                grace,
                &path.child(name),
            ));
        }
    }
    errs
}

fn lifecycle_handler(h: &LifecycleHandler) -> Handler<'_> {
    Handler {
        exec: h
            .exec
            .as_ref()
            .map(|e| e.command.as_deref().unwrap_or(&[]).is_empty()),
        http_get: h.http_get.as_ref(),
        tcp_port: h.tcp_socket.as_ref().map(|t| &t.port),
        grpc_port: None,
        sleep: h.sleep.as_ref().map(|s| s.seconds),
    }
}
