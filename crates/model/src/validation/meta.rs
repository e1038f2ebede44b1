//! `ObjectMeta` validation (upstream `ValidateObjectMeta`) and label maps.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::field::{FieldError, Path};
use crate::names;

/// How a kind validates its names.
#[derive(Clone, Copy)]
pub(crate) enum NameRule {
    /// DNS-1123 subdomain (Pod, Job, ConfigMap, …).
    Subdomain,
    /// DNS-1035 label (Service).
    Dns1035,
}

fn check_name(rule: NameRule, name: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => names::is_dns1123_subdomain(name),
        NameRule::Dns1035 => names::is_dns1035_label(name),
    }
}

/// Validates `metadata` of a namespaced object.
pub(crate) fn validate_object_meta(
    meta: &ObjectMeta,
    rule: NameRule,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = meta.name.as_deref().unwrap_or("");
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        // A generated name gets a random suffix, so a trailing dash is fine.
        let masked = mask_trailing_dash(generate_name);
        for m in check_name(rule, &masked) {
            errs.push(FieldError::invalid_str(
                path.child("generateName"),
                generate_name,
                m,
            ));
        }
    }
    if name.is_empty() {
        // The store fills the name from generateName before validating.
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        for m in check_name(rule, name) {
            errs.push(FieldError::invalid_str(path.child("name"), name, m));
        }
    }
    match meta.namespace.as_deref() {
        None | Some("") => errs.push(FieldError::required(path.child("namespace"), "")),
        Some(ns) => {
            for m in names::is_dns1123_label(ns) {
                errs.push(FieldError::invalid_str(path.child("namespace"), ns, m));
            }
        }
    }
    if let Some(g) = meta.generation
        && g < 0
    {
        errs.push(FieldError::invalid_num(
            path.child("generation"),
            g,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(labels) = &meta.labels {
        errs.extend(validate_labels(labels, &path.child("labels")));
    }
    if let Some(annotations) = &meta.annotations {
        let p = path.child("annotations");
        for k in annotations.keys() {
            for m in names::is_qualified_name(&k.to_lowercase()) {
                errs.push(FieldError::invalid_str(&p, k, m));
            }
        }
        errs.extend(annotations_size(annotations, &p));
    }
    errs
}

/// Most bytes all annotations of an object may hold, keys and values together
/// (upstream `TotalAnnotationSizeLimitB`).
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

/// Upstream `ValidateAnnotationsSize`: the total of every key and value.
pub(crate) fn annotations_size(
    annotations: &BTreeMap<String, String>,
    path: &Path,
) -> Option<FieldError> {
    let total = annotations.iter().fold(0usize, |n, (k, v)| {
        n.saturating_add(k.len()).saturating_add(v.len())
    });
    (total > MAX_ANNOTATION_BYTES)
        .then(|| crate::validation::config::too_long(path, MAX_ANNOTATION_BYTES))
}

/// Upstream `maskTrailingDash`: replaces a final `-` with `a` so that a
/// generateName prefix validates like the name it will become.
fn mask_trailing_dash(s: &str) -> String {
    match s.strip_suffix('-') {
        Some(head) if !head.is_empty() => format!("{head}a"),
        _ => s.to_string(),
    }
}

/// Upstream `ValidateLabels`: key errors on the map's path, value errors on
/// `path[key]`.
pub(crate) fn validate_labels(labels: &BTreeMap<String, String>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        for m in names::is_qualified_name(k) {
            errs.push(FieldError::invalid_str(path, k, m));
        }
        for m in names::is_valid_label_value(v) {
            errs.push(FieldError::invalid_str(path.key(k), v, m));
        }
    }
    errs
}

/// A DNS-1123 subdomain check for names that refer to other objects
/// (ConfigMaps, Secrets). `prefix` allows a trailing dash.
pub(crate) fn subdomain_ref(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        names::is_dns1123_subdomain(&mask_trailing_dash(name))
    } else {
        names::is_dns1123_subdomain(name)
    }
}
