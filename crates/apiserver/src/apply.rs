//! Server-side apply and field ownership: `metadata.managedFields` (`FieldsV1` sets per
//! field manager and operation), conflicts between managers, `force`, and the removal of
//! fields a manager applied before and no longer applies.
//!
//! Field paths follow `FieldsV1`: `f:<field>` for a map or struct field, `k:{"name":"x"}`
//! for an element of a list with a merge key, `v:<json>` for an element of a set of
//! scalars, and `.` for the element or map itself. List merge keys come from the same
//! OpenAPI extensions as strategic merge patch.
//!
//! Pure: time comes in as a string.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::openapi;
use crate::patch::{self, PatchError};

/// One field path, as `FieldsV1` segments.
pub type FieldPath = Vec<String>;

/// Fields the server owns or that identify the object; never tracked.
const UNTRACKED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The leaf paths of `value` (every scalar, every list element's `.`, every atomic list),
/// `status` left out when the kind has a status subresource.
pub fn field_paths(value: &Value, schema: &str, skip_status: bool) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let node = openapi::definitions().get(schema);
    if let Value::Object(m) = value {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" || (skip_status && k == "status") {
                continue;
            }
            if k == "metadata" {
                let Value::Object(meta) = v else { continue };
                let meta_node = patch::field_meta(node, "metadata", false).child;
                for (mk, mv) in meta {
                    if UNTRACKED_META.contains(&mk.as_str()) {
                        continue;
                    }
                    let mut path = vec!["f:metadata".to_owned(), format!("f:{mk}")];
                    walk(
                        mv,
                        patch::field_meta(meta_node, mk, mv.is_array()),
                        &mut path,
                        &mut out,
                    );
                }
                continue;
            }
            let mut path = vec![format!("f:{k}")];
            walk(
                v,
                patch::field_meta(node, k, v.is_array()),
                &mut path,
                &mut out,
            );
        }
    }
    out
}

fn walk(
    v: &Value,
    meta: patch::FieldMeta<'_>,
    path: &mut FieldPath,
    out: &mut BTreeSet<FieldPath>,
) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(format!("f:{k}"));
                walk(
                    child,
                    patch::field_meta(meta.child, k, child.is_array()),
                    path,
                    out,
                );
                path.pop();
            }
        }
        Value::Array(items) if !meta.merge_key.is_empty() => {
            for item in items {
                let Some(key) = element_key(item, &meta.merge_key) else {
                    out.insert(path.clone());
                    continue;
                };
                path.push(key);
                let mut dot = path.clone();
                dot.push(".".into());
                out.insert(dot);
                if let Value::Object(m) = item {
                    for (k, child) in m {
                        path.push(format!("f:{k}"));
                        walk(
                            child,
                            patch::field_meta(meta.child, k, child.is_array()),
                            path,
                            out,
                        );
                        path.pop();
                    }
                }
                path.pop();
            }
        }
        Value::Array(items)
            if meta.strategy.contains("merge") && items.iter().all(|i| !i.is_object()) =>
        {
            for item in items {
                path.push(format!("v:{item}"));
                out.insert(path.clone());
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

fn element_key(item: &Value, merge_key: &str) -> Option<String> {
    let v = item.get(merge_key)?;
    let mut m = Map::new();
    m.insert(merge_key.to_owned(), v.clone());
    Some(format!("k:{}", Value::Object(m)))
}

/// The node at `path` in `value`, if there is one.
pub fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut cur = value;
    for seg in path {
        cur = step(cur, seg)?;
    }
    Some(cur)
}

fn step<'v>(cur: &'v Value, seg: &str) -> Option<&'v Value> {
    if seg == "." {
        return Some(cur);
    }
    if let Some(f) = seg.strip_prefix("f:") {
        return cur.get(f);
    }
    if let Some(k) = seg.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        return cur
            .as_array()?
            .iter()
            .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)));
    }
    if let Some(v) = seg.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        return cur.as_array()?.iter().find(|i| **i == want);
    }
    None
}

/// Removes the node at `path` (a map key or a list element); `false` if it was not there.
pub fn remove(value: &mut Value, path: &[String]) -> bool {
    let path: Vec<&String> = path.iter().filter(|s| *s != ".").collect();
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        let next = match (seg.strip_prefix("f:"), seg.strip_prefix("k:")) {
            (Some(f), _) => cur.get_mut(f),
            (_, Some(k)) => {
                let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                    return false;
                };
                cur.as_array_mut().and_then(|a| {
                    a.iter_mut()
                        .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)))
                })
            }
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        return cur.as_object_mut().is_some_and(|m| m.remove(f).is_some());
    }
    let Some(items) = cur.as_array_mut() else {
        return false;
    };
    let before = items.len();
    if let Some(k) = last.strip_prefix("k:") {
        let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
            return false;
        };
        items.retain(|i| !key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)));
    } else if let Some(v) = last.strip_prefix("v:") {
        let Ok(want) = serde_json::from_str::<Value>(v) else {
            return false;
        };
        items.retain(|i| *i != want);
    }
    items.len() != before
}

/// A `FieldsV1` object from leaf paths (`.` marks an element or map that is owned itself).
pub fn to_fields_v1(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for seg in p {
            cur = cur
                .entry(seg.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("field sets hold objects");
        }
    }
    Value::Object(root)
}

/// Leaf paths from a `FieldsV1` object.
pub fn from_fields_v1(v: &Value) -> BTreeSet<FieldPath> {
    fn go(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    go(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    /// `manager`.
    pub manager: String,
    /// `operation`: `Apply` or `Update`.
    pub operation: String,
    /// `apiVersion`.
    pub api_version: String,
    /// `time`.
    pub time: String,
    /// `subresource`, if any.
    pub subresource: Option<String>,
    /// The owned leaf paths.
    pub fields: BTreeSet<FieldPath>,
}

/// The `managedFields` of an object.
pub fn managed(obj: &Value) -> Vec<Managed> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Managed {
                    manager: e["manager"].as_str().unwrap_or_default().to_owned(),
                    operation: e["operation"].as_str().unwrap_or_default().to_owned(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
                    time: e["time"].as_str().unwrap_or_default().to_owned(),
                    subresource: e["subresource"].as_str().map(str::to_owned),
                    fields: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `entries` as the object's `managedFields` (entries that own nothing dropped).
pub fn set_managed(obj: &mut Value, entries: &[Managed]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut m = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(s) = &e.subresource {
                m["subresource"] = json!(s);
            }
            m
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Records an `Update` by `manager`: the fields whose value it changed (or added) from
/// `old` to `new` become its own and leave every other manager's set.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    schema: &str,
    skip_status: bool,
    time: &str,
) {
    let mut entries = old.map(managed).unwrap_or_default();
    let paths = field_paths(new, schema, skip_status);
    let changed: BTreeSet<FieldPath> = paths
        .iter()
        .filter(|p| match old {
            None => true,
            Some(o) => {
                let is_dot = p.last().is_some_and(|s| s == ".");
                match (lookup(o, p), lookup(new, p)) {
                    (None, _) => true,
                    (Some(_), _) if is_dot => false,
                    (a, b) => a != b,
                }
            }
        })
        .cloned()
        .collect();
    // Fields that are gone leave every set.
    for e in &mut entries {
        e.fields.retain(|p| paths.contains(p));
    }
    if !changed.is_empty() {
        for e in &mut entries {
            e.fields.retain(|p| !changed.contains(p));
        }
        match entries
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update" && e.subresource.is_none())
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = time.to_owned();
            }
            None => entries.push(Managed {
                manager: manager.to_owned(),
                operation: "Update".into(),
                api_version: api_version.to_owned(),
                time: time.to_owned(),
                subresource: None,
                fields: changed,
            }),
        }
    }
    set_managed(new, &entries);
}

/// A conflict of an apply: another manager owns a field the apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// Its entry's `apiVersion`.
    pub api_version: String,
    /// The field, as the API server prints it (`.spec.replicas`).
    pub field: String,
}

/// Why an apply failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyError {
    /// Other managers own fields the apply changes (and `force` was not given).
    Conflicts(Vec<Conflict>),
    /// The configuration could not be merged.
    Patch(PatchError),
}

/// Prints a path as the API server does in conflict messages (`.spec.containers[name="c"].image`).
pub fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for seg in path {
        if seg == "." {
            continue;
        } else if let Some(f) = seg.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let inner: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", inner.join(",")));
        } else if let Some(v) = seg.strip_prefix("v:") {
            s.push_str(&format!("[{v}]"));
        }
    }
    s
}

/// Server-side apply of `config` by `manager` over `live` (`None`: the object is
/// created). Answers the object to store, with its `managedFields`.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    api_version: &str,
    schema: &str,
    skip_status: bool,
    force: bool,
    time: &str,
) -> Result<Value, ApplyError> {
    let applied = field_paths(config, schema, skip_status);
    let Some(live) = live else {
        let mut obj = config.clone();
        set_managed(
            &mut obj,
            &[Managed {
                manager: manager.to_owned(),
                operation: "Apply".into(),
                api_version: api_version.to_owned(),
                time: time.to_owned(),
                subresource: None,
                fields: applied,
            }],
        );
        return Ok(obj);
    };
    let mut entries = managed(live);
    let mine = |e: &Managed| e.manager == manager && e.operation == "Apply";
    // Conflicts: another manager owns a field whose value the configuration changes.
    let mut conflicts = Vec::new();
    for e in entries
        .iter()
        .filter(|e| !mine(e) && e.subresource.is_none())
    {
        for p in e.fields.intersection(&applied) {
            if p.last().is_some_and(|s| s == ".") {
                continue;
            }
            if lookup(live, p) != lookup(config, p) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    api_version: e.api_version.clone(),
                    field: display_path(p),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    let previous: BTreeSet<FieldPath> = entries
        .iter()
        .filter(|e| mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    // Merge the configuration in, as a strategic merge without deletions.
    let mut strip = config.clone();
    if let Some(meta) = strip.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let body = serde_json::to_vec(&strip)
        .map_err(|e| ApplyError::Patch(PatchError::BadPatch(e.to_string())))?;
    let mut merged =
        patch::strategic_merge_patch(live, &body, schema).map_err(ApplyError::Patch)?;
    // Fields this manager applied before and no longer applies go, unless another
    // manager owns them too.
    let others: BTreeSet<&FieldPath> = entries
        .iter()
        .filter(|e| !mine(e))
        .flat_map(|e| e.fields.iter())
        .collect();
    for p in previous.difference(&applied) {
        if !others.contains(p) {
            remove(&mut merged, p);
        }
    }
    // Ownership: forced fields leave the other managers; this manager owns the set.
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        e.fields
            .retain(|p| !(applied.contains(p) && lookup(live, p) != lookup(config, p)));
    }
    entries.retain(|e| !mine(e));
    entries.push(Managed {
        manager: manager.to_owned(),
        operation: "Apply".into(),
        api_version: api_version.to_owned(),
        time: time.to_owned(),
        subresource: None,
        fields: applied,
    });
    set_managed(&mut merged, &entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOY: &str = "io.k8s.api.apps.v1.Deployment";

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "sleep", "labels": {"app": "sleep"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "sleep"}},
                "template": {"metadata": {"labels": {"app": "sleep"}},
                    "spec": {"containers": [{"name": "sleep", "image": image}]}}}})
    }

    #[test]
    fn field_sets_use_merge_keys() {
        let paths = field_paths(&deploy(1, "curl"), DEPLOY, true);
        let fields = to_fields_v1(&paths);
        assert_eq!(
            fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"sleep\"}"]["f:image"],
            json!({})
        );
        assert!(fields["f:metadata"].get("f:name").is_none());
        assert_eq!(from_fields_v1(&fields), paths);
    }

    #[test]
    fn apply_creates_then_conflicts_then_forces() {
        let t = "2026-12-07T19:00:00Z";
        let created = apply(
            None,
            &deploy(1, "curl"),
            "kubectl",
            "apps/v1",
            DEPLOY,
            true,
            false,
            t,
        )
        .unwrap();
        assert_eq!(managed(&created)[0].operation, "Apply");
        // Another manager changes the replicas through an update.
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(3);
        record_update(
            Some(&created),
            &mut scaled,
            "kubectl-scale",
            "apps/v1",
            DEPLOY,
            true,
            t,
        );
        let owners: Vec<String> = managed(&scaled).iter().map(|m| m.manager.clone()).collect();
        assert_eq!(owners, ["kubectl", "kubectl-scale"]);
        // Applying replicas: 1 again conflicts with kubectl-scale.
        let err = apply(
            Some(&scaled),
            &deploy(1, "curl"),
            "kubectl",
            "apps/v1",
            DEPLOY,
            true,
            false,
            t,
        )
        .unwrap_err();
        assert_eq!(
            err,
            ApplyError::Conflicts(vec![Conflict {
                manager: "kubectl-scale".into(),
                api_version: "apps/v1".into(),
                field: ".spec.replicas".into(),
            }])
        );
        // Forced, it wins and takes the field.
        let forced = apply(
            Some(&scaled),
            &deploy(1, "curl"),
            "kubectl",
            "apps/v1",
            DEPLOY,
            true,
            true,
            t,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 1);
        assert_eq!(managed(&forced).len(), 1);
        // A field no longer applied is removed.
        let mut less = deploy(1, "curl");
        less["metadata"].as_object_mut().unwrap().remove("labels");
        let out = apply(
            Some(&forced),
            &less,
            "kubectl",
            "apps/v1",
            DEPLOY,
            true,
            false,
            t,
        )
        .unwrap();
        assert!(out["metadata"]["labels"].get("app").is_none());
    }
}
