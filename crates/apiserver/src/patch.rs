//! Patches: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch,
//! whose merge keys and strategies are read from the OpenAPI schema extensions
//! (`x-kubernetes-patch-merge-key`, `x-kubernetes-patch-strategy`), with the directives
//! `$patch` (`replace`, `delete`, `merge`), `$retainKeys`, `$deleteFromPrimitiveList/<list>`
//! and `$setElementOrder/<list>`, as apimachinery's `strategicpatch` applies them on the
//! server (parallel lists merged, unmatched `null`s ignored).

use serde_json::{Map, Value};

use crate::openapi;

/// The patch types a PATCH request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// Every accepted patch content type.
    pub const CONTENT_TYPES: &'static [&'static str] = &[
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];

    /// The patch type of a `Content-Type` value (parameters ignored).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::StrategicMerge),
            "application/apply-patch+yaml" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// A patch that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is not valid for its type.
    #[error("{0}")]
    BadPatch(String),
    /// The patch is valid but cannot be applied to this object.
    #[error("{0}")]
    Apply(String),
}

/// Applies an RFC 6902 JSON patch.
pub fn json_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_slice(patch)
        .map_err(|e| PatchError::BadPatch(format!("error decoding patch: {e}")))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| PatchError::Apply(e.to_string()))?;
    Ok(doc)
}

/// Applies an RFC 7386 JSON merge patch.
pub fn merge_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let p: Value = serde_json::from_slice(patch)
        .map_err(|e| PatchError::BadPatch(format!("error decoding patch: {e}")))?;
    let mut doc = original.clone();
    json_patch::merge(&mut doc, &p);
    Ok(doc)
}

/// Applies a strategic merge patch to an object whose OpenAPI schema is `schema`
/// (`io.k8s.api.core.v1.Pod`). A schema name podrun does not know merges every map and
/// replaces every list, as for fields without patch metadata.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &[u8],
    schema: &str,
) -> Result<Value, PatchError> {
    let p: Value = serde_json::from_slice(patch)
        .map_err(|e| PatchError::BadPatch(format!("error decoding patch: {e}")))?;
    let Value::Object(p) = p else {
        return Err(PatchError::BadPatch(
            "strategic merge patch must be a JSON object".into(),
        ));
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::Apply("the object is not a JSON object".into())),
    };
    let node = openapi::definitions().get(schema);
    merge_map(original, p, node).map(Value::Object)
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// Patch metadata of one field, read from its schema.
#[derive(Debug, Default, Clone)]
pub(crate) struct FieldMeta<'a> {
    /// `merge`, `replace` or empty (retainKeys removed).
    pub(crate) strategy: String,
    pub(crate) merge_key: String,
    /// The schema of the field's value (maps) or of its items (lists).
    pub(crate) child: Option<&'a Value>,
}

pub(crate) fn field_meta<'a>(parent: Option<&'a Value>, key: &str, list: bool) -> FieldMeta<'a> {
    let Some(parent) = parent.map(openapi::resolve) else {
        return FieldMeta::default();
    };
    let prop = parent
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| parent.get("additionalProperties").filter(|a| a.is_object()));
    let Some(prop) = prop else {
        return FieldMeta::default();
    };
    let strategy = prop
        .get("x-kubernetes-patch-strategy")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|s| *s != "retainKeys" && !s.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    let merge_key = prop
        .get("x-kubernetes-patch-merge-key")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let resolved = openapi::resolve(prop);
    let child = if list {
        resolved.get("items")
    } else {
        Some(resolved)
    };
    FieldMeta {
        strategy,
        merge_key,
        child,
    }
}

fn bad(msg: impl Into<String>) -> PatchError {
    PatchError::BadPatch(msg.into())
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Option<&Value>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                discard_nulls_map(&mut patch);
                Ok(patch)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(bad(format!(
                "Unknown patch type: {directive}, in map: {}",
                Value::Object(patch)
            ))),
        };
    }
    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        let Value::Array(keys) = retain else {
            return Err(bad("invalid patch: $retainKeys must be a list of strings"));
        };
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        if keep.len() != keys.len() {
            return Err(bad("invalid patch: $retainKeys must be a list of strings"));
        }
        // Every field the patch sets must be one the directive keeps.
        let outside = patch.iter().any(|(k, v)| {
            !v.is_null()
                && !k.starts_with(DELETE_FROM_PRIMITIVE)
                && !k.starts_with(SET_ORDER)
                && k != DIRECTIVE
                && !keep.contains(&k.as_str())
        });
        if outside {
            return Err(bad("invalid patch format of retainKeys"));
        }
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    // `$setElementOrder/<list>`: merge that list now and order it as the directive says.
    let order_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER))
        .cloned()
        .collect();
    for directive_key in order_keys {
        let order = patch.remove(&directive_key).unwrap_or(Value::Null);
        let key = &directive_key[SET_ORDER.len()..];
        let Value::Array(order) = order else {
            return Err(bad(format!(
                "invalid patch: {directive_key} must be a list"
            )));
        };
        let meta = field_meta(schema, key, true);
        let original_list = match original.remove(key) {
            Some(Value::Array(a)) => Some(a),
            None => None,
            Some(other) => {
                return Err(bad(format!(
                    "invalid patch: {key} in the object is not a list: {other}"
                )));
            }
        };
        let patch_list = match patch.remove(key) {
            Some(Value::Array(a)) => Some(a),
            None => None,
            Some(other) => {
                return Err(bad(format!("invalid patch: {key} must be a list: {other}")));
            }
        };
        check_order(
            patch_list.as_deref().unwrap_or(&[]),
            &order,
            &meta.merge_key,
        )?;
        let merged = match (&original_list, patch_list) {
            (None, None) => continue,
            (Some(o), None) => o.clone(),
            (None, Some(p)) => p,
            (Some(o), Some(p)) if meta.strategy == "merge" => {
                merge_list(o.clone(), p, &meta, false)?
            }
            (Some(_), Some(p)) => p,
        };
        let original_list = original_list.unwrap_or_default();
        let (in_order, server_only): (Vec<Value>, Vec<Value>) = merged
            .into_iter()
            .partition(|item| index_of(&order, item, &meta.merge_key).is_some());
        let in_order = sort_by(in_order, &order, &meta.merge_key);
        let server_only = sort_by(server_only, &original_list, &meta.merge_key);
        let all = merge_sorted(server_only, in_order, &original_list, &meta.merge_key);
        original.insert(key.to_owned(), Value::Array(all));
    }
    for (k, patch_value) in patch {
        let (key, delete_list) = match k.strip_prefix(DELETE_FROM_PRIMITIVE) {
            Some(rest) => (rest.to_owned(), true),
            None => (k, false),
        };
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let Some(current) = original.get_mut(&key) else {
            if !delete_list {
                let mut v = patch_value;
                discard_nulls(&mut v);
                original.insert(key, v);
            }
            continue;
        };
        match (current, patch_value) {
            (Value::Object(cur), Value::Object(p)) => {
                let meta = field_meta(schema, &key, false);
                let cur = std::mem::take(cur);
                let merged = if meta.strategy == "replace" {
                    let mut p = p;
                    discard_nulls_map(&mut p);
                    p
                } else {
                    merge_map(cur, p, meta.child)?
                };
                original.insert(key, Value::Object(merged));
            }
            (Value::Array(cur), Value::Array(p)) => {
                let meta = field_meta(schema, &key, true);
                let cur = std::mem::take(cur);
                let merged = if meta.strategy == "merge" {
                    merge_list(cur, p, &meta, delete_list)?
                } else if delete_list {
                    cur
                } else {
                    p
                };
                original.insert(key, Value::Array(merged));
            }
            (_, mut p) => {
                if !delete_list {
                    discard_nulls(&mut p);
                    original.insert(key, p);
                }
            }
        }
    }
    Ok(original)
}

/// The patch list's items (without `$patch` directives) must appear in the
/// `$setElementOrder` list in the same relative order.
fn check_order(patch_list: &[Value], order: &[Value], merge_key: &str) -> Result<(), PatchError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = patch_list
        .iter()
        .filter(|v| v.get(DIRECTIVE).is_none())
        .collect();
    let same = |a: &Value, b: &Value| {
        if merge_key.is_empty() || !a.is_object() {
            a == b
        } else {
            key_of(a, merge_key).is_some() && key_of(a, merge_key) == key_of(b, merge_key)
        }
    };
    let (mut i, mut j) = (0, 0);
    while i < items.len() && j < order.len() {
        if same(items[i], &order[j]) {
            i += 1;
        }
        j += 1;
    }
    if i < items.len() {
        return Err(bad(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}",
            Value::Array(patch_list.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

fn discard_nulls_map(m: &mut Map<String, Value>) {
    m.retain(|_, v| !v.is_null());
    for v in m.values_mut() {
        discard_nulls(v);
    }
}

fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => discard_nulls_map(m),
        Value::Array(a) => a.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

fn key_of<'v>(item: &'v Value, merge_key: &str) -> Option<&'v Value> {
    item.as_object().and_then(|m| m.get(merge_key))
}

fn index_of(list: &[Value], item: &Value, merge_key: &str) -> Option<usize> {
    if merge_key.is_empty() || !item.is_object() {
        return list.iter().position(|x| x == item);
    }
    let k = key_of(item, merge_key)?;
    list.iter().position(|x| key_of(x, merge_key) == Some(k))
}

fn sort_by(mut items: Vec<Value>, order: &[Value], merge_key: &str) -> Vec<Value> {
    items.sort_by_key(|x| index_of(order, x, merge_key).unwrap_or(usize::MAX));
    items
}

/// Merges two sorted lists; where both heads are in `server_order` the earlier one goes
/// first, otherwise the patch item does.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut l = left.into_iter().peekable();
    let mut r = right.into_iter().peekable();
    loop {
        match (l.peek(), r.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(l.next()),
            (None, Some(_)) => out.extend(r.next()),
            (Some(a), Some(b)) => {
                let ia = index_of(server_order, a, merge_key);
                let ib = index_of(server_order, b, merge_key);
                match (ia, ib) {
                    (Some(ia), Some(ib)) if ia < ib => out.extend(l.next()),
                    _ => out.extend(r.next()),
                }
            }
        }
    }
    out
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta<'_>,
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let maps = original.iter().chain(patch.iter()).any(Value::is_object);
    let patch_order = patch.clone();
    let (server_order, merged) = if !maps {
        if delete_list {
            return Ok(original
                .into_iter()
                .filter(|x| !patch.contains(x))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::new();
        for x in original.iter().chain(patch.iter()) {
            if !merged.contains(x) {
                merged.push(x.clone());
            }
        }
        (original, merged)
    } else {
        let key = meta.merge_key.as_str();
        if key.is_empty() {
            return Err(bad("cannot merge lists without merge key"));
        }
        let mut original = original;
        let mut rest = Vec::new();
        let mut replace = false;
        for item in patch {
            let Value::Object(m) = &item else {
                return Err(bad(format!(
                    "invalid patch: list item is not an object: {item}"
                )));
            };
            match m.get(DIRECTIVE).map(|d| d.as_str()) {
                None => rest.push(item),
                Some(Some("delete")) => {
                    let Some(k) = m.get(key) else {
                        return Err(bad(format!(
                            "map: {item} does not contain declared merge key: {key}"
                        )));
                    };
                    original.retain(|x| key_of(x, key) != Some(k));
                }
                Some(Some("replace")) => replace = true,
                Some(Some("merge")) => {
                    return Err(bad("merging lists cannot yet be specified in the patch"));
                }
                Some(_) => {
                    return Err(bad(format!(
                        "Unknown patch type: {}, in map: {item}",
                        m[DIRECTIVE]
                    )));
                }
            }
        }
        if replace {
            let mut rest = rest;
            rest.iter_mut().for_each(discard_nulls);
            return Ok(rest);
        }
        let server_order = original.clone();
        for item in rest {
            let Some(k) = key_of(&item, key).cloned() else {
                return Err(bad(format!(
                    "map: {item} does not contain declared merge key: {key}"
                )));
            };
            match original.iter().position(|x| key_of(x, key) == Some(&k)) {
                Some(i) => {
                    let cur = std::mem::take(&mut original[i]);
                    let (Value::Object(cur), Value::Object(p)) = (cur, item) else {
                        unreachable!("both are maps: checked above")
                    };
                    original[i] = Value::Object(merge_map(cur, p, meta.child)?);
                }
                None => {
                    let mut item = item;
                    discard_nulls(&mut item);
                    original.push(item);
                }
            }
        }
        (server_order, original)
    };
    let key = if maps { meta.merge_key.as_str() } else { "" };
    let (from_patch, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|x| index_of(&patch_order, x, key).is_some());
    let from_patch = sort_by(from_patch, &patch_order, key);
    let server_only = sort_by(server_only, &server_order, key);
    Ok(merge_sorted(server_only, from_patch, &server_order, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POD: &str = "io.k8s.api.core.v1.Pod";
    const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

    fn smp(original: Value, patch: Value, schema: &str) -> Value {
        strategic_merge_patch(&original, patch.to_string().as_bytes(), schema).unwrap()
    }

    fn pod(containers: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "a", "tier": "web"}},
               "spec": {"containers": containers}})
    }

    #[test]
    fn containers_merge_by_name_and_keep_unmentioned_fields() {
        let orig = pod(json!([
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "proxy", "image": "proxy:1"}
        ]));
        let out = smp(
            orig,
            json!({"spec": {"containers": [
                {"name": "proxy", "image": "proxy:2"},
                {"name": "app", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}
            ]}}),
            POD,
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([
                {"name": "proxy", "image": "proxy:2"},
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}
            ])
        );
    }

    #[test]
    fn set_element_order_reorders_and_appends() {
        // As kubectl apply sends it when a sidecar and an init container are added.
        let orig = pod(json!([{"name": "sleep", "image": "curl"}]));
        let out = smp(
            orig,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "sleep"}, {"name": "istio-proxy"}],
                "$setElementOrder/initContainers": [{"name": "istio-init"}],
                "containers": [{"image": "proxyv2:1.25.0", "name": "istio-proxy"}],
                "initContainers": [{"image": "proxyv2:1.25.0", "name": "istio-init"}]
            }}),
            POD,
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([
                {"name": "sleep", "image": "curl"}, {"name": "istio-proxy", "image": "proxyv2:1.25.0"}
            ])
        );
        assert_eq!(
            out["spec"]["initContainers"],
            json!([{"name": "istio-init", "image": "proxyv2:1.25.0"}])
        );
        // The order directive alone moves existing elements.
        let orig = pod(json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]));
        let out = smp(
            orig,
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
            POD,
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "b", "image": "2"}, {"name": "a", "image": "1"}])
        );
    }

    /// New elements without a `$setElementOrder` go before the server's, as upstream orders
    /// them (patch items first where the server order cannot compare them).
    #[test]
    fn delete_directive_and_null_remove() {
        let orig = pod(
            json!([{"name": "a", "image": "1", "ports": [{"containerPort": 80}, {"containerPort": 443}]}, {"name": "b", "image": "2"}]),
        );
        let out = smp(
            orig,
            json!({
                "metadata": {"labels": {"tier": null, "new": "x"}},
                "spec": {"containers": [
                    {"name": "b", "$patch": "delete"},
                    {"name": "a", "ports": [{"containerPort": 443, "$patch": "delete"}, {"containerPort": 8080}]}
                ]}
            }),
            POD,
        );
        assert_eq!(out["metadata"]["labels"], json!({"app": "a", "new": "x"}));
        assert_eq!(
            out["spec"]["containers"],
            json!([
                {"name": "a", "image": "1", "ports": [{"containerPort": 8080}, {"containerPort": 80}]}
            ])
        );
    }

    #[test]
    fn replace_directives() {
        let orig = pod(json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]));
        let out = smp(
            orig.clone(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "3"}]}}),
            POD,
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "c", "image": "3"}])
        );
        let out = smp(
            orig,
            json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}),
            POD,
        );
        assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
    }

    #[test]
    fn lists_without_strategy_are_replaced_and_primitive_merge_lists_union() {
        let orig = json!({"metadata": {"name": "p", "finalizers": ["a", "b"]},
                          "spec": {"containers": [{"name": "a", "args": ["x", "y"]}]}});
        let out = smp(
            orig.clone(),
            json!({"spec": {"containers": [{"name": "a", "args": ["z"]}]}}),
            POD,
        );
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["z"]));
        let out = smp(
            orig.clone(),
            json!({"metadata": {"finalizers": ["c", "a"]}}),
            POD,
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
        let out = smp(
            orig,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            POD,
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn retain_keys_on_deployment_strategy_and_volumes() {
        let orig = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"spec": {"containers": [{"name": "a", "image": "1"}],
                "volumes": [{"name": "v", "emptyDir": {}}]}}}});
        let out = smp(
            orig,
            json!({"spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                "template": {"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "configMap"], "configMap": {"name": "cm"}}]}}
            }}),
            DEPLOYMENT,
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "v", "configMap": {"name": "cm"}}])
        );
    }

    #[test]
    fn apply_second_time_shape() {
        // `kubectl apply` after replicas and serviceAccountName changed.
        let orig = json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sleep"}},
            "template": {"spec": {"serviceAccountName": "sleep", "containers": [{"name": "sleep", "image": "curl"}]}}}});
        let out = smp(
            orig,
            json!({"spec": {"replicas": 2, "template": {"spec": {"serviceAccountName": null}}}}),
            DEPLOYMENT,
        );
        assert_eq!(out["spec"]["replicas"], 2);
        assert!(
            out["spec"]["template"]["spec"]
                .get("serviceAccountName")
                .is_none()
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["image"],
            "curl"
        );
    }

    #[test]
    fn new_elements_lose_their_nulls_and_bad_patches_are_errors() {
        let orig = pod(json!([{"name": "a"}]));
        let out = smp(
            orig.clone(),
            json!({"spec": {"containers": [{"name": "b", "image": null, "env": [{"name": "X", "value": null}]}]}}),
            POD,
        );
        assert_eq!(
            out["spec"]["containers"][0],
            json!({"name": "b", "env": [{"name": "X"}]})
        );
        for (patch, want) in [
            (
                json!({"spec": {"containers": [{"image": "x"}]}}),
                "does not contain declared merge key: name",
            ),
            (json!({"spec": {"$patch": "explode"}}), "Unknown patch type"),
            (
                json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
                "merging lists cannot yet be specified",
            ),
            (
                json!({"spec": {"$retainKeys": "containers"}}),
                "$retainKeys must be a list",
            ),
        ] {
            let err = strategic_merge_patch(&orig, patch.to_string().as_bytes(), POD).unwrap_err();
            assert!(err.to_string().contains(want), "{err} !~ {want}");
        }
        assert!(matches!(
            strategic_merge_patch(&orig, b"[1]", POD),
            Err(PatchError::BadPatch(_))
        ));
    }

    #[test]
    fn json_and_merge_patch() {
        let orig = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}});
        let out = merge_patch(
            &orig,
            br#"{"metadata":{"labels":{"a":null,"b":"2"}},"spec":{"list":[3]}}"#,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"list": [3]}})
        );
        let out = json_patch(&orig, br#"[{"op":"add","path":"/spec/list/-","value":9},{"op":"test","path":"/metadata/labels/a","value":"1"}]"#).unwrap();
        assert_eq!(out["spec"]["list"], json!([1, 2, 9]));
        assert!(matches!(
            json_patch(&orig, br#"[{"op":"remove","path":"/nope"}]"#),
            Err(PatchError::Apply(_))
        ));
        assert!(matches!(
            json_patch(&orig, b"{}"),
            Err(PatchError::BadPatch(_))
        ));
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json; charset=utf-8"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }
}
