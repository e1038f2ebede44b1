//! What files a `configMap`, `secret`, `downwardAPI` or `projected` volume holds, decided
//! as data: the kubelet's "payload" (relative path, content, mode) for each volume type.
//!
//! Pure: the ConfigMap/Secret data, the pod and the node's allocatable resources come in
//! as arguments, so every rule (items, optional, modes, field paths, divisors) is tested
//! without a file system.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, ConfigMapVolumeSource, DownwardAPIVolumeFile, KeyToPath, Pod,
    ProjectedVolumeSource, ResourceFieldSelector, SecretProjection, SecretVolumeSource,
};

use crate::cgroup::quantity;

/// The kubelet's default file mode for these volumes (0644).
pub const DEFAULT_MODE: u32 = 0o644;

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the volume root.
    pub path: String,
    /// Content.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// The node's allocatable resources: what `resourceFieldRef` reports for a limit the
/// container does not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

/// Looks up a whole ConfigMap (`kind` = "ConfigMap") or Secret of the pod's namespace.
pub type ObjectLookup<'a> = &'a dyn Fn(&str, &str) -> Option<BTreeMap<String, Vec<u8>>>;

/// Checks a volume file path as the API server does: relative, no `..` element, not
/// starting with `..`.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(format!("{path:?}: must be a relative path"));
    }
    if path.starts_with("..") || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("{path:?}: must not contain '..'"));
    }
    Ok(())
}

fn mode_of(mode: Option<i32>, default: u32) -> Result<u32, String> {
    match mode {
        None => Ok(default),
        Some(m) if (0..=0o777).contains(&m) => Ok(m as u32),
        Some(m) => Err(format!(
            "invalid file mode {m}: must be between 0 and 0777 (511)"
        )),
    }
}

/// Files of keyed data (`items` selects and renames keys; without items every key is a
/// file). `what` names the object in errors (`configmap`, `secret`).
fn keyed_payload(
    what: &str,
    name: &str,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    default_mode: u32,
) -> Result<Vec<FileEntry>, String> {
    let Some(data) = data else {
        if optional {
            return Ok(Vec::new());
        }
        return Err(format!("{what} {name:?} not found"));
    };
    let mut out = Vec::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                check_relative_path(&k)?;
                out.push(FileEntry {
                    path: k,
                    data: v,
                    mode: default_mode,
                });
            }
        }
        Some(items) => {
            for item in items {
                check_relative_path(&item.path)?;
                let Some(v) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!(
                        "{what} references non-existent config key: {}",
                        item.key
                    ));
                };
                out.push(FileEntry {
                    path: item.path.clone(),
                    data: v.clone(),
                    mode: mode_of(item.mode, default_mode)?,
                });
            }
        }
    }
    Ok(out)
}

/// A `configMap` volume's files.
pub fn config_map(
    src: &ConfigMapVolumeSource,
    lookup: ObjectLookup<'_>,
) -> Result<Vec<FileEntry>, String> {
    let mode = mode_of(src.default_mode, DEFAULT_MODE)?;
    keyed_payload(
        "configmap",
        &src.name,
        lookup("ConfigMap", &src.name),
        src.items.as_ref(),
        src.optional.unwrap_or(false),
        mode,
    )
}

/// A `secret` volume's files.
pub fn secret(
    src: &SecretVolumeSource,
    lookup: ObjectLookup<'_>,
) -> Result<Vec<FileEntry>, String> {
    let name = src.secret_name.clone().unwrap_or_default();
    let mode = mode_of(src.default_mode, DEFAULT_MODE)?;
    keyed_payload(
        "secret",
        &name,
        lookup("Secret", &name),
        src.items.as_ref(),
        src.optional.unwrap_or(false),
        mode,
    )
}

/// A `downwardAPI` volume's files.
pub fn downward_api(
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    pod: &Pod,
    node: Allocatable,
) -> Result<Vec<FileEntry>, String> {
    let default_mode = mode_of(default_mode, DEFAULT_MODE)?;
    let mut out = Vec::new();
    for item in items {
        check_relative_path(&item.path)?;
        let value = if let Some(fr) = &item.field_ref {
            field_value(pod, &fr.field_path)?
        } else if let Some(rf) = &item.resource_field_ref {
            resource_value(pod, rf, node)?
        } else {
            return Err(format!(
                "downwardAPI item {:?}: fieldRef or resourceFieldRef is required",
                item.path
            ));
        };
        out.push(FileEntry {
            path: item.path.clone(),
            data: value.into_bytes(),
            mode: mode_of(item.mode, default_mode)?,
        });
    }
    Ok(out)
}

/// A `projected` volume's files: its sources merged in order.
pub fn projected(
    src: &ProjectedVolumeSource,
    pod: &Pod,
    lookup: ObjectLookup<'_>,
    node: Allocatable,
) -> Result<Vec<FileEntry>, String> {
    let default_mode = src.default_mode;
    let mut out: Vec<FileEntry> = Vec::new();
    for source in src.sources.iter().flatten() {
        let files = if let Some(ConfigMapProjection {
            name,
            items,
            optional,
        }) = &source.config_map
        {
            keyed_payload(
                "configmap",
                name,
                lookup("ConfigMap", name),
                items.as_ref(),
                optional.unwrap_or(false),
                mode_of(default_mode, DEFAULT_MODE)?,
            )?
        } else if let Some(SecretProjection {
            name,
            items,
            optional,
        }) = &source.secret
        {
            keyed_payload(
                "secret",
                name,
                lookup("Secret", name),
                items.as_ref(),
                optional.unwrap_or(false),
                mode_of(default_mode, DEFAULT_MODE)?,
            )?
        } else if let Some(d) = &source.downward_api {
            downward_api(
                d.items.as_deref().unwrap_or_default(),
                default_mode,
                pod,
                node,
            )?
        } else if source.service_account_token.is_some() {
            return Err(
                "projected volume source serviceAccountToken is not supported by this node: \
                 there is no token issuer"
                    .into(),
            );
        } else {
            return Err("projected volume source is not supported by this node: only configMap, secret and downwardAPI are".into());
        };
        for f in files {
            if out.iter().any(|o| o.path == f.path) {
                return Err(format!("projected volume: conflicting path {:?}", f.path));
            }
            out.push(f);
        }
    }
    Ok(out)
}

/// The text of a `fieldRef` in a downward API volume.
fn field_value(pod: &Pod, path: &str) -> Result<String, String> {
    let m = &pod.metadata;
    if let Some(rest) = path.strip_suffix("']") {
        let (base, key) = rest
            .split_once("['")
            .ok_or_else(|| format!("unsupported fieldPath: {path}"))?;
        let map = match base {
            "metadata.labels" => &m.labels,
            "metadata.annotations" => &m.annotations,
            _ => return Err(format!("unsupported fieldPath: {path}")),
        };
        return Ok(map
            .as_ref()
            .and_then(|x| x.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    Ok(match path {
        "metadata.name" => s(&m.name),
        "metadata.namespace" => s(&m.namespace),
        "metadata.uid" => s(&m.uid),
        "metadata.labels" => podrun_model::format_map(m.labels.as_ref()),
        "metadata.annotations" => podrun_model::format_map(m.annotations.as_ref()),
        other => return Err(format!("unsupported fieldPath: {other}")),
    })
}

/// A `resourceFieldRef`: the container's limit (the node's allocatable when unset) or
/// request, divided by `divisor` and rounded up, as the kubelet reports it.
fn resource_value(
    pod: &Pod,
    rf: &ResourceFieldSelector,
    node: Allocatable,
) -> Result<String, String> {
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    let name = rf.container_name.as_deref().unwrap_or_default();
    let c = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .ok_or_else(|| format!("resourceFieldRef: container {name:?} not found"))?;
    let (which, res) = rf
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource: {}", rf.resource))?;
    let r = c.resources.as_ref();
    let list = match which {
        "limits" => r.and_then(|r| r.limits.as_ref()),
        "requests" => r.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported container resource: {}", rf.resource)),
    };
    let set = list.and_then(|l| l.get(res)).map(|q| q.0.as_str());
    let divisor = rf.divisor.as_ref().map(|d| d.0.as_str());
    match res {
        "cpu" => {
            let v = match set {
                Some(q) => quantity::millicores(q)?,
                None if which == "limits" => node.cpu_millis,
                None => 0,
            };
            let d = quantity::millicores(divisor.unwrap_or("1"))?;
            if d == 0 {
                return Err("resourceFieldRef: divisor must be positive".into());
            }
            Ok(v.div_ceil(d).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let v = match set {
                Some(q) => quantity::bytes(q)?,
                None if which == "limits" && res == "memory" => node.memory_bytes,
                None => 0,
            };
            let d = quantity::bytes(divisor.unwrap_or("1"))?;
            if d == 0 {
                return Err("resourceFieldRef: divisor must be positive".into());
            }
            Ok(v.div_ceil(d).to_string())
        }
        _ => Err(format!("unsupported container resource: {}", rf.resource)),
    }
}

#[cfg(test)]
mod tests;
