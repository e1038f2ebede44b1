//! Admission: what the API server does to an object between decoding and storing it.
//! Defaulting and validation come from `podrun-model` (the API server's messages and
//! field paths, as a 422 `Invalid` with causes); pods created in a namespace that asks for
//! it get the mesh sidecar from `podrun-inject`, selected as Istio's webhooks select.
//!
//! Pure: the caller passes the namespace's labels and the mesh configuration.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podrun_inject::{MeshConfig, Outcome, PodContext};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::catalogue::Resource;
use crate::status::{ApiError, StatusCause, StatusDetails};

/// The operation being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A create (sidecar injection applies).
    Create,
    /// An update or patch of the main resource.
    Update,
}

/// The namespace label that turns injection on (`enabled`) or off (`disabled`).
pub const INJECTION_LABEL: &str = "istio-injection";
/// The namespace label of a revision-based injection.
pub const REVISION_LABEL: &str = "istio.io/rev";
/// The pod label (or annotation) that opts a pod in or out.
pub const POD_INJECT: &str = "sidecar.istio.io/inject";

/// The Service CIDR cluster IPs come from (`198.19.0.0/16`).
pub const SERVICE_CIDR: (std::net::Ipv4Addr, u8) = (std::net::Ipv4Addr::new(198, 19, 0, 0), 16);

/// The first free cluster IP of [`SERVICE_CIDR`] (the network address and the
/// broadcast address are never handed out), or `None` when the range is full.
pub fn allocate_cluster_ip(
    used: &std::collections::BTreeSet<std::net::Ipv4Addr>,
) -> Option<std::net::Ipv4Addr> {
    let base = u32::from(SERVICE_CIDR.0);
    let size = 1u32 << (32 - SERVICE_CIDR.1);
    (1..size - 1)
        .map(|i| std::net::Ipv4Addr::from(base + i))
        .find(|ip| !used.contains(ip))
}

/// Whether a Service needs a cluster IP allocated: not `ExternalName`, and no
/// `spec.clusterIP` given (`None` is headless and keeps it).
pub fn needs_cluster_ip(svc: &Value) -> bool {
    svc.pointer("/spec/type").and_then(Value::as_str) != Some("ExternalName")
        && svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
}

/// Whether Istio's webhooks would be called for a pod with these labels in a namespace
/// with these labels: the namespace selector (`istio-injection=enabled`, or
/// `istio.io/rev` without `istio-injection`) unless the pod says
/// `sidecar.istio.io/inject=false`, or the object selector (`sidecar.istio.io/inject=true`)
/// in a namespace without either label. The injector itself then honours the
/// `sidecar.istio.io/inject` annotation.
pub fn webhook_selects(
    namespace_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
) -> bool {
    let pod = pod_labels.get(POD_INJECT).map(String::as_str);
    match namespace_labels.get(INJECTION_LABEL).map(String::as_str) {
        Some("enabled") => pod != Some("false"),
        Some(_) => false,
        None if namespace_labels.contains_key(REVISION_LABEL) => pod != Some("false"),
        None => pod == Some("true"),
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The labels of an object (`metadata.labels`).
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(obj.pointer("/metadata/labels"))
}

/// A `podrun-model` validation failure as the API server's 422.
fn invalid(resource: &Resource, e: podrun_model::Invalid) -> ApiError {
    let causes = e
        .errors
        .iter()
        .map(|f| StatusCause {
            reason: f.kind.reason().into(),
            message: f.body(),
            field: f.path.clone(),
        })
        .collect();
    ApiError {
        code: 422,
        reason: "Invalid",
        message: e.to_string(),
        details: Some(Box::new(StatusDetails {
            name: e.name.clone(),
            group: resource.gvk.group.into(),
            kind: resource.gvk.kind.into(),
            causes,
            ..Default::default()
        })),
    }
}

fn typed<T: DeserializeOwned>(resource: &Resource, obj: &Value) -> Result<T, ApiError> {
    serde_json::from_value(obj.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {e}",
            kind = resource.gvk.kind,
            version = resource.gvk.version,
        ))
    })
}

/// Writes a typed object back over the JSON one, keeping fields the type does not know.
fn untyped<T: Serialize>(obj: &mut Value, t: &T) -> Result<(), ApiError> {
    let v = serde_json::to_value(t).map_err(ApiError::internal)?;
    if let (Value::Object(dst), Value::Object(src)) = (obj, v) {
        for (k, v) in src {
            dst.insert(k, v);
        }
    }
    Ok(())
}

fn default_template(t: &mut PodTemplateSpec) {
    if let Some(spec) = t.spec.as_mut() {
        podrun_model::default_pod_spec(spec);
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            podrun_model::default_container(c);
        }
    }
}

fn default_deployment(d: &mut Deployment) {
    let spec = &mut d.spec;
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    let strategy = spec.strategy.get_or_insert_with(Default::default);
    let kind = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
    if kind == "RollingUpdate" {
        let ru = strategy.rolling_update.get_or_insert_with(Default::default);
        ru.max_surge
            .get_or_insert(IntOrString::String("25%".into()));
        ru.max_unavailable
            .get_or_insert(IntOrString::String("25%".into()));
    }
    default_template(&mut spec.template);
}

/// Volumes an Istio control plane provides (the mesh CA's root certificate and CRL, a
/// projected token for it). podrun's proxy talks to no control plane, so with the podrun
/// runtime they are left out rather than failing to mount.
const CONTROL_PLANE_VOLUMES: [&str; 3] = ["istio-token", "istiod-ca-cert", "istio-ca-crl"];

fn without_control_plane_volumes(obj: &mut Value, mesh: &MeshConfig, spec: &str) {
    if mesh.runtime != podrun_inject::Runtime::Podrun {
        return;
    }
    let Some(spec) = obj.pointer_mut(spec) else {
        return;
    };
    let keep = |v: &Value| {
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
        !CONTROL_PLANE_VOLUMES.contains(&name)
    };
    if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        volumes.retain(keep);
    }
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(mounts) = c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                mounts.retain(keep);
            }
        }
    }
}

/// Defaults and validates `obj` for `resource`, injecting the sidecar into a created
/// pod when the namespace asks for it. `uid` is the uid the object will be stored with
/// (a Job's generated selector names it). Answers the object to store and warnings.
pub fn admit(
    resource: &Resource,
    obj: Value,
    operation: Operation,
    namespace_labels: &BTreeMap<String, String>,
    mesh: &MeshConfig,
    uid: &str,
    host_rootfs: HostRootfs,
) -> Result<(Value, Vec<String>), ApiError> {
    let template = match (resource.gvk.group, resource.plural) {
        ("apps", "deployments" | "replicasets") | ("batch", "jobs") => Some("/spec/template"),
        ("batch", "cronjobs") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    };
    let (mut obj, warnings) = admit_inner(
        resource,
        obj,
        operation,
        namespace_labels,
        mesh,
        uid,
        template,
    )?;
    // After injection, so the injected mesh containers that run the podrun binary are
    // listed too.
    if operation == Operation::Create {
        let pod = match (resource.gvk.group, resource.plural) {
            ("", "pods") => Some(&mut obj),
            _ => template.and_then(|t| obj.pointer_mut(t)),
        };
        if let Some(pod) = pod {
            podrun_model::stamp_host_rootfs(pod, host_rootfs.all, &mesh.podrun_path);
        }
    }
    Ok((obj, warnings))
}

/// Host-filesystem mode at admission: with `all` (`podrun server --host-rootfs`), created
/// pods and pod templates that lack the `podrun.io/host-rootfs` annotation get `"*"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostRootfs {
    /// Stamp `"*"` on pods and templates without the annotation.
    pub all: bool,
}

fn admit_inner(
    resource: &Resource,
    mut obj: Value,
    operation: Operation,
    namespace_labels: &BTreeMap<String, String>,
    mesh: &MeshConfig,
    uid: &str,
    template: Option<&str>,
) -> Result<(Value, Vec<String>), ApiError> {
    let mut warnings = Vec::new();
    // The controllers create their pods in the store directly, past this admission, so
    // a workload's pod template is injected here, as `istioctl kube-inject` does; the
    // injector's status annotation makes this idempotent across updates.
    if let Some(template) = template {
        let template_labels = string_map(obj.pointer(&format!("{template}/metadata/labels")));
        if webhook_selects(namespace_labels, &template_labels) {
            match podrun_inject::inject_object(&obj, mesh, 0, &mut warnings) {
                Ok(podrun_inject::ObjectOutcome::Injected(v)) => {
                    obj = v;
                    without_control_plane_volumes(&mut obj, mesh, &format!("{template}/spec"));
                }
                Ok(podrun_inject::ObjectOutcome::Unchanged) => {}
                Err(e) => {
                    return Err(ApiError::bad_request(format!(
                        "admission webhook \"namespace.sidecar-injector.istio.io\" denied the request: {e}"
                    )));
                }
            }
        }
    }
    match (resource.gvk.group, resource.plural) {
        ("", "pods") => {
            if operation == Operation::Create && webhook_selects(namespace_labels, &labels(&obj)) {
                let ctx = PodContext {
                    namespace: obj
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    ..Default::default()
                };
                match podrun_inject::inject(&obj, &ctx, mesh) {
                    Ok(Outcome::Injected(out)) => {
                        warnings.extend(out.warnings);
                        obj = out.pod;
                        without_control_plane_volumes(&mut obj, mesh, "/spec");
                    }
                    Ok(Outcome::Skipped(_)) => {}
                    Err(e) => {
                        // As the API server reports a webhook's refusal.
                        return Err(ApiError::bad_request(format!(
                            "admission webhook \"namespace.sidecar-injector.istio.io\" denied the request: {e}"
                        )));
                    }
                }
            }
            let pod: Pod = typed(resource, &obj)?;
            let pod = podrun_model::admit_pod(pod).map_err(|e| invalid(resource, e))?;
            untyped(&mut obj, &pod)?;
        }
        ("", "services") => {
            let svc: Service = typed(resource, &obj)?;
            let svc = podrun_model::admit_service(svc).map_err(|e| invalid(resource, e))?;
            untyped(&mut obj, &svc)?;
        }
        ("batch", "jobs") => {
            let mut job: Job = typed(resource, &obj)?;
            if operation == Operation::Create {
                podrun_model::generate_job_selector(&mut job, uid);
            }
            let job = podrun_model::admit_job(job).map_err(|e| invalid(resource, e))?;
            untyped(&mut obj, &job)?;
        }
        ("batch", "cronjobs") => {
            let mut cj: CronJob = typed(resource, &obj)?;
            {
                let spec = &mut cj.spec;
                podrun_model::default_cron_job_spec(spec);
                if let Some(t) = spec.job_template.spec.as_mut() {
                    default_template(&mut t.template);
                }
            }
            untyped(&mut obj, &cj)?;
        }
        ("apps", "deployments") => {
            let mut d: Deployment = typed(resource, &obj)?;
            default_deployment(&mut d);
            untyped(&mut obj, &d)?;
        }
        ("apps", "replicasets") => {
            let mut rs: ReplicaSet = typed(resource, &obj)?;
            {
                let spec = &mut rs.spec;
                spec.replicas.get_or_insert(1);
                if let Some(t) = spec.template.as_mut() {
                    default_template(t);
                }
            }
            untyped(&mut obj, &rs)?;
        }
        _ => {}
    }
    Ok((obj, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn cluster_ips_are_the_first_free_of_the_range() {
        let mut used = std::collections::BTreeSet::new();
        assert_eq!(
            allocate_cluster_ip(&used),
            Some("198.19.0.1".parse().unwrap())
        );
        used.insert("198.19.0.1".parse().unwrap());
        assert_eq!(
            allocate_cluster_ip(&used),
            Some("198.19.0.2".parse().unwrap())
        );
        assert!(needs_cluster_ip(&json!({"spec": {}})));
        assert!(!needs_cluster_ip(&json!({"spec": {"clusterIP": "None"}})));
        assert!(!needs_cluster_ip(
            &json!({"spec": {"type": "ExternalName"}})
        ));
    }

    #[test]
    fn webhook_selectors_as_istio() {
        let enabled = map(&[("istio-injection", "enabled")]);
        let disabled = map(&[("istio-injection", "disabled")]);
        let rev = map(&[("istio.io/rev", "canary")]);
        let none = map(&[]);
        let opt_in = map(&[("sidecar.istio.io/inject", "true")]);
        let opt_out = map(&[("sidecar.istio.io/inject", "false")]);
        assert!(webhook_selects(&enabled, &none));
        assert!(!webhook_selects(&enabled, &opt_out));
        assert!(!webhook_selects(&disabled, &opt_in));
        assert!(webhook_selects(&rev, &none));
        assert!(!webhook_selects(&rev, &opt_out));
        assert!(!webhook_selects(&none, &none));
        assert!(webhook_selects(&none, &opt_in));
    }

    fn pods() -> &'static Resource {
        crate::catalogue::lookup("", "v1", "pods").unwrap()
    }

    #[test]
    fn pods_are_defaulted_validated_and_injected() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "sleep", "namespace": "default"},
            "spec": {"containers": [{"name": "sleep", "image": "curlimages/curl"}]}});
        let mesh = MeshConfig {
            native_sidecars: podrun_inject::NativeSidecars::True,
            ..MeshConfig::default()
        };
        let (plain, _) = admit(
            pods(),
            pod.clone(),
            Operation::Create,
            &map(&[]),
            &mesh,
            "u",
            HostRootfs::default(),
        )
        .unwrap();
        assert_eq!(plain["spec"]["restartPolicy"], "Always");
        assert_eq!(plain["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert!(plain["spec"].get("initContainers").is_none());
        let ns = map(&[("istio-injection", "enabled")]);
        let (injected, _) = admit(
            pods(),
            pod.clone(),
            Operation::Create,
            &ns,
            &mesh,
            "u",
            HostRootfs::default(),
        )
        .unwrap();
        let names: Vec<&str> = injected["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["istio-init", "istio-proxy"]);
        // Updates are never injected.
        let (updated, _) = admit(
            pods(),
            pod,
            Operation::Update,
            &ns,
            &mesh,
            "u",
            HostRootfs::default(),
        )
        .unwrap();
        assert!(updated["spec"].get("initContainers").is_none());
    }

    #[test]
    fn invalid_pods_are_422_with_causes() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "bad", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}]}});
        let e = admit(
            pods(),
            pod,
            Operation::Create,
            &map(&[]),
            &MeshConfig::default(),
            "u",
            HostRootfs::default(),
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Pod \"bad\" is invalid: spec.containers[0].image: Required value"
        );
        let causes = &e.details.unwrap().causes;
        assert_eq!(causes[0].field, "spec.containers[0].image");
        assert_eq!(causes[0].reason, "FieldValueRequired");
    }
}
