//! ConfigMap and Secret validation (upstream `ValidateConfigMap` and
//! `ValidateSecret` in `pkg/apis/core/validation`): names, keys, the 1 MiB
//! size cap, and the keys each Secret type requires.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use crate::field::{ErrorKind, FieldError, Invalid, Path};
use crate::names;
use crate::validation::meta::{NameRule, validate_object_meta};

/// Most bytes of data a ConfigMap or Secret may hold (`core.MaxSecretSize`).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// `Too long: must have at most N bytes` on `path`.
pub(crate) fn too_long(path: impl Into<String>, max: usize) -> FieldError {
    FieldError {
        path: path.into(),
        kind: ErrorKind::TooLong,
        value: None,
        detail: format!("must have at most {max} bytes"),
    }
}

/// Defaults (namespace) then validates a ConfigMap, as the API server does on
/// create.
pub fn admit_config_map(mut cm: ConfigMap) -> Result<ConfigMap, Invalid> {
    cm.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    validate_config_map(&cm)?;
    Ok(cm)
}

/// Validates a ConfigMap.
pub fn validate_config_map(cm: &ConfigMap) -> Result<(), Invalid> {
    let mut errs = validate_object_meta(&cm.metadata, NameRule::Subdomain, &Path::new("metadata"));
    let data = Path::new("data");
    let binary = cm.binary_data.clone().unwrap_or_default();
    let mut total = 0usize;
    for (k, v) in cm.data.iter().flatten() {
        for m in names::is_config_map_key(k) {
            errs.push(FieldError::invalid_str(data.key(k), k, m));
        }
        if binary.contains_key(k) {
            errs.push(FieldError::invalid_str(
                data.key(k),
                k,
                "duplicate of key present in binaryData",
            ));
        }
        total = total.saturating_add(v.len());
    }
    for (k, v) in &binary {
        for m in names::is_config_map_key(k) {
            errs.push(FieldError::invalid_str(
                Path::new("binaryData").key(k),
                k,
                m,
            ));
        }
        total = total.saturating_add(v.0.len());
    }
    if total > MAX_DATA_BYTES {
        // Upstream names the whole object with an empty path, printed `[]`.
        errs.push(too_long("[]", MAX_DATA_BYTES));
    }
    finish("ConfigMap", &cm.metadata.name, errs)
}

/// Defaults (namespace, type `Opaque`) then validates a Secret, as the API
/// server does on create; `stringData` counts as `data`, as after the API
/// server's conversion.
pub fn admit_secret(mut s: Secret) -> Result<Secret, Invalid> {
    s.metadata.namespace.get_or_insert_with(|| "default".into());
    s.type_.get_or_insert_with(|| "Opaque".into());
    validate_secret(&s)?;
    Ok(s)
}

/// Validates a Secret.
pub fn validate_secret(s: &Secret) -> Result<(), Invalid> {
    let mut errs = validate_object_meta(&s.metadata, NameRule::Subdomain, &Path::new("metadata"));
    let data_path = Path::new("data");
    let mut data: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, v) in s.data.iter().flatten() {
        data.insert(k, v.0.len());
    }
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k, v.len());
    }
    let mut total = 0usize;
    for (k, len) in &data {
        for m in names::is_config_map_key(k) {
            errs.push(FieldError::invalid_str(data_path.key(k), k, m));
        }
        total = total.saturating_add(*len);
    }
    if total > MAX_DATA_BYTES {
        errs.push(too_long(&data_path, MAX_DATA_BYTES));
    }
    let has = |k: &str| data.contains_key(k);
    let required = |k: &str| FieldError::required(data_path.key(k), "");
    match s.type_.as_deref().unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let key = "kubernetes.io/service-account.name";
            let named = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .is_some_and(|v| !v.is_empty());
            if !named {
                errs.push(FieldError::required(
                    Path::new("metadata").child("annotations").key(key),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => errs.push(required(".dockercfg")),
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(required(".dockerconfigjson"))
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("username"));
            errs.push(required("password"));
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(|n| *n == 0) => {
            errs.push(required("ssh-privatekey"))
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    errs.push(required(k));
                }
            }
        }
        _ => {}
    }
    finish("Secret", &s.metadata.name, errs)
}

fn finish(kind: &str, name: &Option<String>, errs: Vec<FieldError>) -> Result<(), Invalid> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Invalid::new(kind, name.clone().unwrap_or_default(), errs))
    }
}
