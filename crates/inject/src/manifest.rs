//! `kube-inject` over a multi-document YAML stream: find the pod template of each workload
//! kind, inject it, and pass every other document through untouched and in order.
//!
//! Documents that are not changed are emitted as their original text, so comments and
//! formatting of Services, ConfigMaps and skipped workloads survive.

use serde_json::{Map, Value};

use crate::{InjectError, MeshConfig, Outcome, PodContext, Workload, inject};

/// The injected stream plus what the CLI should print on stderr.
#[derive(Debug, Clone, Default)]
pub struct ManifestOutput {
    /// YAML documents separated by `---` lines.
    pub yaml: String,
    /// Skip notices and warnings, one line each.
    pub messages: Vec<String>,
    /// How many objects were injected.
    pub injected: usize,
}

/// A document could not be parsed or injected.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML.
    #[error("document {index}: invalid YAML: {message}")]
    Yaml {
        /// 1-based document number.
        index: usize,
        /// Parser message (with line and column).
        message: String,
    },
    /// Injection refused.
    #[error("document {index}: {kind} {name:?}: {source}")]
    Inject {
        /// 1-based document number.
        index: usize,
        /// Object kind.
        kind: String,
        /// Object name.
        name: String,
        /// The refusal.
        source: InjectError,
    },
    /// A workload without a pod template.
    #[error("document {index}: {kind} {name:?}: {path}: Required value")]
    MissingTemplate {
        /// 1-based document number.
        index: usize,
        /// Object kind.
        kind: String,
        /// Object name.
        name: String,
        /// Where the template should be.
        path: &'static str,
    },
}

/// Splits a YAML stream into document texts at `---` marker lines. A `---` at column 0
/// always starts a document in YAML, even inside a block scalar, so a line split is exact.
fn split_documents(input: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in input.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = bare == "---"
            || bare.starts_with("--- ")
            || bare.starts_with("---\t")
            || bare.starts_with("--- #");
        if is_marker {
            docs.push(String::new());
            // Content after the marker on the same line belongs to the new document.
            let rest = bare[3..].trim();
            if !rest.is_empty()
                && !rest.starts_with('#')
                && let Some(d) = docs.last_mut()
            {
                d.push_str(rest);
                d.push('\n');
            }
        } else if bare == "..." {
            docs.push(String::new());
        } else if let Some(d) = docs.last_mut() {
            d.push_str(line);
        }
    }
    docs.into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// Result of injecting one object.
#[derive(Debug, Clone)]
pub enum ObjectOutcome {
    /// The object (or some List item) was injected; the new object.
    Injected(Value),
    /// Nothing to do: not a workload, or skipped.
    Unchanged,
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{key}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Template location of a workload kind (JSON pointer), or `None` for other kinds.
fn template_path(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController"
        | "DeploymentConfig" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Injects one Kubernetes object (Pod, a workload with a pod template, or a List of those).
/// `messages` receives skip notices and warnings; `index` is used in errors.
pub fn inject_object(
    obj: &Value,
    config: &MeshConfig,
    index: usize,
    messages: &mut Vec<String>,
) -> Result<ObjectOutcome, ManifestError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = meta_str(obj, "name");
    let namespace = meta_str(obj, "namespace");
    let display = || {
        format!(
            "{kind} \"{}/{name}\"",
            if namespace.is_empty() {
                "default"
            } else {
                namespace
            }
        )
    };
    let inject_err = |source| ManifestError::Inject {
        index,
        kind: kind.to_owned(),
        name: name.to_owned(),
        source,
    };
    if kind == "List" {
        let Some(items) = obj.get("items").and_then(Value::as_array) else {
            return Ok(ObjectOutcome::Unchanged);
        };
        let mut changed = false;
        let mut new_items = Vec::with_capacity(items.len());
        for item in items {
            match inject_object(item, config, index, messages)? {
                ObjectOutcome::Injected(v) => {
                    changed = true;
                    new_items.push(v);
                }
                ObjectOutcome::Unchanged => new_items.push(item.clone()),
            }
        }
        if !changed {
            return Ok(ObjectOutcome::Unchanged);
        }
        let mut out = obj.clone();
        out["items"] = Value::Array(new_items);
        return Ok(ObjectOutcome::Injected(out));
    }
    let ctx_ns = (!namespace.is_empty()).then(|| namespace.to_owned());
    let (template_ptr, ctx) = if kind == "Pod" {
        (
            "",
            PodContext {
                namespace: ctx_ns,
                ..PodContext::default()
            },
        )
    } else if let Some(path) = template_path(kind) {
        let workload = Workload {
            name: name.to_owned(),
            kind: kind.to_owned(),
            api_version: obj
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        };
        (
            path,
            PodContext {
                namespace: ctx_ns,
                workload: Some(workload),
                ..PodContext::default()
            },
        )
    } else {
        return Ok(ObjectOutcome::Unchanged);
    };
    let Some(template) = obj.pointer(template_ptr) else {
        return Err(ManifestError::MissingTemplate {
            index,
            kind: kind.to_owned(),
            name: name.to_owned(),
            path: match kind {
                "CronJob" => "spec.jobTemplate.spec.template",
                _ => "spec.template",
            },
        });
    };
    // Templates carry no namespace of their own; pass the object's so hostNetwork /
    // system-namespace rules and ISTIO_META_OWNER see it.
    let mut pod = template.clone();
    if pod.is_null() {
        pod = Value::Object(Map::new());
    }
    match inject(&pod, &ctx, config).map_err(inject_err)? {
        Outcome::Skipped(skip) => {
            messages.push(format!(
                "===> Skipping injection because {} {skip}",
                display()
            ));
            Ok(ObjectOutcome::Unchanged)
        }
        Outcome::Injected(done) => {
            for w in done.warnings {
                messages.push(format!("warning: {}: {w}", display()));
            }
            let mut out = obj.clone();
            if template_ptr.is_empty() {
                out = done.pod;
            } else if let Some(slot) = out.pointer_mut(template_ptr) {
                *slot = done.pod;
            }
            Ok(ObjectOutcome::Injected(out))
        }
    }
}

/// Volumes an Istio control plane provides to the injected containers: the mesh CA's
/// root certificate and CRL, and a projected service-account token for it.
pub const CONTROL_PLANE_VOLUMES: [&str; 3] = ["istio-token", "istiod-ca-cert", "istio-ca-crl"];

/// Removes the [`CONTROL_PLANE_VOLUMES`] and every container's mounts of them from a pod
/// spec: podrun's proxy talks to no control plane, so where podrun runs the pod they
/// are left out rather than failing to mount.
pub fn drop_control_plane_volumes(pod_spec: &mut Value) {
    let keep = |v: &Value| {
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
        !CONTROL_PLANE_VOLUMES.contains(&name)
    };
    if let Some(volumes) = pod_spec.get_mut("volumes").and_then(Value::as_array_mut) {
        volumes.retain(keep);
    }
    for list in ["initContainers", "containers"] {
        let containers = pod_spec.get_mut(list).and_then(Value::as_array_mut);
        for c in containers.into_iter().flatten() {
            if let Some(mounts) = c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                mounts.retain(keep);
            }
        }
    }
}

/// Injects every workload in a multi-document YAML stream.
pub fn inject_manifests(input: &str, config: &MeshConfig) -> Result<ManifestOutput, ManifestError> {
    let mut out = ManifestOutput::default();
    let mut pieces: Vec<String> = Vec::new();
    for (i, text) in split_documents(input).into_iter().enumerate() {
        let index = i + 1;
        let value: Value = serde_saphyr::from_str(&text).map_err(|e| ManifestError::Yaml {
            index,
            message: e.to_string(),
        })?;
        let outcome = if value.is_object() {
            inject_object(&value, config, index, &mut out.messages)?
        } else {
            ObjectOutcome::Unchanged
        };
        match outcome {
            ObjectOutcome::Unchanged => pieces.push(text.trim_end().to_owned()),
            ObjectOutcome::Injected(v) => {
                out.injected += 1;
                let yaml = serde_saphyr::to_string(&v).map_err(|e| ManifestError::Yaml {
                    index,
                    message: format!("cannot serialise: {e}"),
                })?;
                pieces.push(yaml.trim_end().to_owned());
            }
        }
    }
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            out.yaml.push_str("---\n");
        }
        out.yaml.push_str(p);
        out.yaml.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_plane_volumes_and_their_mounts_are_dropped() {
        let mut spec = json!({
            "volumes": [{"name": "istio-token"}, {"name": "istio-envoy"}, {"name": "istio-ca-crl"}],
            "initContainers": [{"name": "istio-proxy", "volumeMounts": [
                {"name": "istiod-ca-cert"}, {"name": "istio-envoy"}]}],
            "containers": [{"name": "app", "volumeMounts": [{"name": "istio-token"}]}]
        });
        drop_control_plane_volumes(&mut spec);
        assert_eq!(spec["volumes"], json!([{"name": "istio-envoy"}]));
        assert_eq!(
            spec["initContainers"][0]["volumeMounts"],
            json!([{"name": "istio-envoy"}])
        );
        assert_eq!(spec["containers"][0]["volumeMounts"], json!([]));
    }

    #[test]
    fn a_cron_jobs_template_is_its_job_templates_pod_template() {
        assert_eq!(
            template_path("CronJob"),
            Some("/spec/jobTemplate/spec/template")
        );
        assert_eq!(template_path("Job"), Some("/spec/template"));
        assert_eq!(template_path("Pod"), None);
        let cron_job = json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox"}]
            }}}}}
        });
        let mut messages = Vec::new();
        let ObjectOutcome::Injected(out) =
            inject_object(&cron_job, &MeshConfig::default(), 0, &mut messages).unwrap()
        else {
            panic!("a CronJob's pod template is injected: {messages:?}");
        };
        let pod = &out["spec"]["jobTemplate"]["spec"]["template"];
        let names: Vec<&str> = pod["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(pod["spec"]["initContainers"].as_array().unwrap())
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(names.contains(&"istio-proxy"), "{names:?}");
        assert!(names.contains(&"main"), "{names:?}");
    }

    #[test]
    fn documents_split_on_markers_only() {
        let docs =
            split_documents("a: 1\n---\n# only a comment\n---\nb: |\n  ---x\n...\n--- c: 3\n");
        assert_eq!(docs, vec!["a: 1\n", "b: |\n  ---x\n", "c: 3\n"]);
    }

    #[test]
    fn other_documents_pass_through_verbatim_and_in_order() {
        let input = "# svc\napiVersion: v1\nkind: Service\nmetadata: {name: s}  # keep me\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: app, image: x}]\n---\nkind: ConfigMap\ndata: {k: v}\n";
        let out = inject_manifests(input, &MeshConfig::default()).unwrap();
        let docs: Vec<&str> = out.yaml.split("---\n").collect();
        assert_eq!(docs.len(), 3);
        assert_eq!(
            docs[0],
            "# svc\napiVersion: v1\nkind: Service\nmetadata: {name: s}  # keep me\n"
        );
        assert!(docs[1].contains("istio-proxy"));
        assert_eq!(docs[2], "kind: ConfigMap\ndata: {k: v}\n");
        assert_eq!(out.injected, 1);
    }

    #[test]
    fn bad_yaml_names_the_document() {
        let err = inject_manifests("a: 1\n---\nkind: Pod\nspec: [\n", &MeshConfig::default())
            .unwrap_err();
        assert!(
            err.to_string().starts_with("document 2: invalid YAML"),
            "{err}"
        );
    }
}
