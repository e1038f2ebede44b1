//! Container environment and command line as the kubelet builds them
//! (`makeEnvironmentVariables`, `ExpandContainerCommandAndArgs`, and the
//! `$(VAR)` expansion of `third_party/forked/golang/expansion`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod};

use crate::names::split_subscript;

/// The key a [`container_env`] lookup receives when the whole object is
/// wanted (for `envFrom`): the answer is its keys, one per line. An empty
/// key can never be a real ConfigMap or Secret key, so there is no clash.
pub const ALL_KEYS: &str = "";

/// The `kind` a lookup receives for `env[].valueFrom.fileKeyRef` (EnvFiles): `name` is
/// `<volumeName>/<path>`, the file holds `KEY=value` lines (see [`parse_env_file`]).
pub const ENV_FILE_KIND: &str = "EnvFile";

/// An env file may hold at most this many bytes (KEP-3721).
pub const ENV_FILE_MAX_BYTES: usize = 64 * 1024;

/// Parses an env file as EnvFiles reads it: one `KEY=value` per line; blank lines and
/// lines starting with `#` are skipped; a value wrapped in single quotes loses them
/// (`K='v'` is `v`). A later line for the same key wins.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        let value = value.trim_end();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(value);
        match out.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_owned(),
            None => out.push((key.to_owned(), value.to_owned())),
        }
    }
    out
}

/// A source of ConfigMap and Secret data for [`container_env`].
pub trait EnvSource {
    /// The value of `key` in the `kind` (`ConfigMap` or `Secret`) named
    /// `name` in the pod's namespace; `None` if the object or key is missing.
    /// Secret values are returned decoded.
    fn value(&self, kind: &str, name: &str, key: &str) -> Option<String>;
    /// All `(key, value)` pairs of the object, sorted by key; `None` if the
    /// object does not exist.
    fn entries(&self, kind: &str, name: &str) -> Option<Vec<(String, String)>>;
}

/// Adapts a plain lookup closure: [`ALL_KEYS`] lists keys one per line.
struct ClosureSource<'a>(&'a dyn Fn(&str, &str, &str) -> Option<String>);

impl EnvSource for ClosureSource<'_> {
    fn value(&self, kind: &str, name: &str, key: &str) -> Option<String> {
        if key == ALL_KEYS {
            return None;
        }
        (self.0)(kind, name, key)
    }

    fn entries(&self, kind: &str, name: &str) -> Option<Vec<(String, String)>> {
        let keys = (self.0)(kind, name, ALL_KEYS)?;
        let mut out: Vec<(String, String)> = keys
            .lines()
            .filter(|k| !k.is_empty())
            .filter_map(|k| (self.0)(kind, name, k).map(|v| (k.to_string(), v)))
            .collect();
        out.sort();
        Some(out)
    }
}

/// Environment of a container as the kubelet builds it: `envFrom` sources
/// first, then `env` in order, a later definition of a name replacing the
/// earlier value in place.
///
/// `env[].value` may refer to earlier variables as `$(VAR)` (`$$` escapes a
/// `$`; unknown references stay as written). `valueFrom.fieldRef` supports
/// `metadata.name`, `metadata.namespace`, `metadata.uid`,
/// `metadata.labels['k']`, `metadata.annotations['k']`, `metadata.labels`,
/// `metadata.annotations`, `spec.nodeName`, `spec.serviceAccountName`,
/// `status.podIP`, `status.podIPs`, `status.hostIP`, `status.hostIPs`.
/// ConfigMap and Secret references go through `lookup(kind, name, key)`;
/// for `envFrom`, `lookup(kind, name, ALL_KEYS)` must return the object's
/// keys one per line (or `None` if it does not exist).
///
/// Returns the kubelet's message for a missing, non-optional reference, e.g.
/// `configmap "cfg" not found` or `couldn't find key k in ConfigMap ns/cfg`.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    lookup: &dyn Fn(&str, &str, &str) -> Option<String>,
) -> Result<Vec<(String, String)>, String> {
    container_env_from(pod, container, &ClosureSource(lookup))
}

/// [`container_env`] over an [`EnvSource`].
pub fn container_env_from(
    pod: &Pod,
    container: &Container,
    source: &dyn EnvSource,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = EnvList::default();

    for ef in container.env_from.iter().flatten() {
        let prefix = ef.prefix.as_deref().unwrap_or("");
        let (kind, name, optional) = if let Some(r) = &ef.config_map_ref {
            ("ConfigMap", r.name.as_str(), r.optional.unwrap_or(false))
        } else if let Some(r) = &ef.secret_ref {
            ("Secret", r.name.as_str(), r.optional.unwrap_or(false))
        } else {
            continue;
        };
        match source.entries(kind, name) {
            Some(entries) => {
                for (k, v) in entries {
                    env.set(format!("{prefix}{k}"), v);
                }
            }
            None if optional => {}
            None => return Err(not_found(kind, name)),
        }
    }

    for ev in container.env.iter().flatten() {
        let literal = ev.value.as_deref().unwrap_or("");
        let value = if !literal.is_empty() {
            let map = env.map();
            expand(literal, &|name| map.get(name).cloned())
        } else if let Some(vf) = &ev.value_from {
            // A configMapKeyRef or a secretKeyRef: the object's kind, name, key and optional.
            let object_key = (vf.config_map_key_ref.as_ref())
                .map(|r| ("ConfigMap", &r.name, &r.key, r.optional))
                .or_else(|| {
                    (vf.secret_key_ref.as_ref()).map(|r| ("Secret", &r.name, &r.key, r.optional))
                });
            if let Some(fr) = &vf.field_ref {
                field_ref_value(pod, fr)?
            } else if let Some((kind, name, key, optional)) = object_key {
                match key_ref(
                    source,
                    kind,
                    name,
                    key,
                    optional.unwrap_or(false),
                    namespace,
                )? {
                    Some(v) => v,
                    None => continue,
                }
            } else if let Some(r) = &vf.file_key_ref {
                let name = format!("{}/{}", r.volume_name, r.path);
                match source.value(ENV_FILE_KIND, &name, &r.key) {
                    Some(v) => v,
                    None if r.optional.unwrap_or(false) => continue,
                    None if source.entries(ENV_FILE_KIND, &name).is_none() => {
                        return Err(format!(
                            "couldn't read env file {} in volume {}",
                            r.path, r.volume_name
                        ));
                    }
                    None => {
                        return Err(format!(
                            "couldn't find key {} in env file {} in volume {}",
                            r.key, r.path, r.volume_name
                        ));
                    }
                }
            } else if let Some(rf) = &vf.resource_field_ref {
                resource_field_value(container, &rf.resource)?
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(ev.name.clone(), value);
    }
    Ok(env.items)
}

fn not_found(kind: &str, name: &str) -> String {
    format!("{} \"{name}\" not found", kind.to_lowercase())
}

/// Resolves a configMapKeyRef / secretKeyRef. `Ok(None)` means "optional and
/// missing: leave the variable out".
fn key_ref(
    source: &dyn EnvSource,
    kind: &str,
    name: &str,
    key: &str,
    optional: bool,
    namespace: &str,
) -> Result<Option<String>, String> {
    if let Some(v) = source.value(kind, name, key) {
        return Ok(Some(v));
    }
    if optional {
        return Ok(None);
    }
    if source.entries(kind, name).is_none() {
        return Err(not_found(kind, name));
    }
    Err(format!(
        "couldn't find key {key} in {kind} {namespace}/{name}"
    ))
}

fn field_ref_value(pod: &Pod, fr: &ObjectFieldSelector) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let path = fr.field_path.as_str();
    if let Some((base, key)) = split_subscript(path) {
        let map = match base {
            "metadata.labels" => &meta.labels,
            "metadata.annotations" => &meta.annotations,
            _ => return Err(format!("unsupported fieldPath: {path}")),
        };
        return Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let s = |o: Option<&String>| o.cloned().unwrap_or_default();
    Ok(match path {
        "metadata.name" => s(meta.name.as_ref()),
        "metadata.namespace" => s(meta.namespace.as_ref()),
        "metadata.uid" => s(meta.uid.as_ref()),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" | "spec.host" => s(spec.and_then(|x| x.node_name.as_ref())),
        "spec.serviceAccountName" => s(spec.and_then(|x| x.service_account_name.as_ref())),
        "status.podIP" => s(status.and_then(|x| x.pod_ip.as_ref())),
        "status.hostIP" => s(status.and_then(|x| x.host_ip.as_ref())),
        "status.podIPs" => status
            .and_then(|x| x.pod_ips.as_ref())
            .map(|ips| join_ips(ips.iter().map(|i| i.ip.as_str())))
            .unwrap_or_default(),
        "status.hostIPs" => status
            .and_then(|x| x.host_ips.as_ref())
            .map(|ips| join_ips(ips.iter().map(|i| i.ip.as_str())))
            .unwrap_or_default(),
        other => return Err(format!("unsupported fieldPath: {other}")),
    })
}

fn join_ips<'a>(ips: impl Iterator<Item = &'a str>) -> String {
    ips.collect::<Vec<_>>().join(",")
}

/// Upstream `fieldpath.FormatMap`, what a `metadata.labels` or `metadata.annotations`
/// fieldRef renders to in an env var and in a downward API volume file: one
/// `key="value"` line per entry (the value Go-quoted), sorted by key, joined by
/// newlines with none after the last.
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    let lines: Vec<String> = m
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", crate::field::quote(v)))
        .collect();
    lines.join("\n")
}

/// `resourceFieldRef` without a node to report allocatable: the container's
/// own limit or request, as written.
fn resource_field_value(c: &Container, resource: &str) -> Result<String, String> {
    let (which, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource: {resource}"))?;
    let res = c.resources.as_ref();
    let list = match which {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported container resource: {resource}")),
    };
    Ok(list
        .and_then(|l| l.get(name))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "0".to_string()))
}

/// An ordered environment where redefining a name replaces its value in place.
#[derive(Default)]
struct EnvList {
    items: Vec<(String, String)>,
}

impl EnvList {
    fn set(&mut self, name: String, value: String) {
        match self.items.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.items.push((name, value)),
        }
    }

    fn map(&self) -> BTreeMap<String, String> {
        self.items.iter().cloned().collect()
    }
}

/// `command` + `args` with `$(VAR)` expanded from `env` as the kubelet does
/// (unknown variables left as written, `$$` → `$`).
pub fn container_argv(container: &Container, env: &[(String, String)]) -> Vec<String> {
    let map: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = |name: &str| map.get(name).map(|v| v.to_string());
    container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|s| expand(s, &lookup))
        .collect()
}

/// Kubernetes `$(VAR)` expansion. `mapping` returns `None` for an unknown
/// name, which keeps the reference as written.
pub fn expand(input: &str, mapping: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let Some(next) = after.chars().next() else {
            // A trailing `$` is copied as is.
            out.push('$');
            rest = after;
            break;
        };
        match next {
            '$' => {
                out.push('$');
                rest = &after[1..];
            }
            '(' => match after[1..].find(')') {
                Some(close) => {
                    let name = &after[1..1 + close];
                    match mapping(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 2..];
                }
                None => {
                    // Unterminated reference: emitted literally.
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            c => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_matches_upstream_cases() {
        let cases = [
            ("$(A)", "a"),
            ("x$(A)y", "xay"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$a"),
            ("$(B)", "$(B)"),
            ("$(A", "$(A"),
            ("$A", "$A"),
            ("$", "$"),
            ("a$", "a$"),
            ("$(EMPTY)x", "x"),
            ("$()", "$()"),
            ("é$(A)ü$é", "éaü$é"),
            ("$(A)$(A)", "aa"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &m), want, "input {input:?}");
        }
    }
}
