//! OpenAPI v3: the `/openapi/v3` index and one document per group-version, carrying the real
//! Kubernetes 1.37 schemas of the served kinds (with their `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-patch-strategy`, `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`
//! extensions) and the operations of every path, so that kubectl's default
//! `--validate=strict` finds each kind's PATCH operation and sends `fieldValidation=Strict`.
//!
//! The schemas come from `openapi/definitions.json.gz`, produced by `openapi/generate.py` from
//! the JSON-schema rendering of Kubernetes' OpenAPI document shipped in the PyPI package
//! `kubernetes-validate` 1.37.0. They keep upstream's descriptions, which `kubectl explain`
//! prints; the file is embedded gzip-compressed (about 85 KiB for 410 KiB of JSON) and
//! decompressed once, on first use.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::catalogue::{self, RESOURCES, Resource};

static DEFINITIONS_GZ: &[u8] = include_bytes!("../openapi/definitions.json.gz");

/// Every schema podrun knows, by OpenAPI name (`io.k8s.api.core.v1.Pod`).
pub fn definitions() -> &'static Map<String, Value> {
    static DEFS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFS.get_or_init(|| {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(DEFINITIONS_GZ)
            .read_to_end(&mut json)
            .expect("openapi/definitions.json.gz is a gzip stream");
        serde_json::from_slice(&json).expect("openapi/definitions.json.gz holds valid JSON")
    })
}

/// The schema name a `$ref` (or an `allOf` holding one) points to.
pub fn ref_name(schema: &Value) -> Option<&str> {
    let r = schema.get("$ref").or_else(|| {
        schema
            .get("allOf")
            .and_then(|a| a.get(0))
            .and_then(|a| a.get("$ref"))
    })?;
    r.as_str()?.rsplit('/').next()
}

/// Follows references until a schema with content.
pub fn resolve(schema: &Value) -> &Value {
    let mut cur = schema;
    for _ in 0..8 {
        match ref_name(cur).and_then(|n| definitions().get(n)) {
            Some(next) => cur = next,
            None => break,
        }
    }
    cur
}

/// A group-version as OpenAPI v3 names it: `api/v1`, `apis/apps/v1`.
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The served group-versions, in catalogue order.
pub(crate) fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.gvk.group, r.gvk.version)) {
            out.push((r.gvk.group, r.gvk.version));
        }
    }
    out
}

/// A stable content hash (FNV-1a, 64 bits) in upper-case hex: the `hash` cache key.
fn content_hash(doc: &Value) -> String {
    let bytes = serde_json::to_vec(doc).expect("documents serialise");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// `GET /openapi/v3`.
pub fn index() -> Value {
    let mut paths = Map::new();
    for (group, version) in group_versions() {
        let path = group_version_path(group, version);
        let doc = document(group, version).expect("served group-versions have documents");
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", content_hash(&doc))}),
        );
    }
    json!({"paths": paths})
}

/// The serialised documents, built once: the index, then each group-version's.
struct Served {
    index: Vec<u8>,
    documents: Vec<((&'static str, &'static str), Vec<u8>)>,
}

fn served() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(|| Served {
        index: serde_json::to_vec(&index()).expect("serialises"),
        documents: group_versions()
            .into_iter()
            .map(|(g, v)| {
                let doc = document(g, v).expect("served group-versions have documents");
                ((g, v), serde_json::to_vec(&doc).expect("serialises"))
            })
            .collect(),
    })
}

/// The index as served (serialised once).
pub fn index_bytes() -> &'static [u8] {
    &served().index
}

/// A group-version's document as served (serialised once), or `None`.
pub fn document_bytes(group: &str, version: &str) -> Option<&'static [u8]> {
    served()
        .documents
        .iter()
        .find(|((g, v), _)| *g == group && *v == version)
        .map(|(_, d)| d.as_slice())
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn param(name: &str, location: &str, required: bool) -> Value {
    json!({"name": name, "in": location, "required": required, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &Resource, action: &str, op_id: String, sub: Option<&str>) -> Value {
    let kind_schema = match sub {
        Some("scale") => "io.k8s.api.autoscaling.v1.Scale".to_owned(),
        _ => r.schema.to_owned(),
    };
    let mut params = vec![];
    let json_types = [
        "application/json",
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
    ];
    let mut op = json!({
        "operationId": op_id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.gvk.group, "version": r.gvk.version, "kind": r.gvk.kind},
    });
    let ok_body = |schema: Value| {
        let mut content = Map::new();
        for t in json_types {
            content.insert(t.into(), json!({"schema": schema.clone()}));
        }
        json!({"description": "OK", "content": content})
    };
    match action {
        "list" | "watchlist" => {
            for p in [
                "allowWatchBookmarks",
                "continue",
                "fieldSelector",
                "labelSelector",
                "limit",
                "resourceVersion",
                "resourceVersionMatch",
                "sendInitialEvents",
                "timeoutSeconds",
                "watch",
            ] {
                params.push(param(p, "query", false));
            }
            op["responses"] = json!({"200": ok_body(schema_ref(&format!("{}List", r.schema)))});
        }
        "post" | "put" => {
            for p in ["dryRun", "fieldManager", "fieldValidation"] {
                params.push(param(p, "query", false));
            }
            let mut content = Map::new();
            for t in json_types {
                content.insert(t.into(), json!({"schema": schema_ref(&kind_schema)}));
            }
            op["requestBody"] = json!({"content": content, "required": true});
            op["responses"] = json!({"200": ok_body(schema_ref(&kind_schema)), "201": ok_body(schema_ref(&kind_schema))});
        }
        "patch" => {
            for p in ["dryRun", "fieldManager", "fieldValidation", "force"] {
                params.push(param(p, "query", false));
            }
            let patch = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Patch");
            op["requestBody"] = json!({"content": {
                "application/apply-patch+yaml": {"schema": patch.clone()},
                "application/json-patch+json": {"schema": patch.clone()},
                "application/merge-patch+json": {"schema": patch.clone()},
                "application/strategic-merge-patch+json": {"schema": patch},
            }, "required": true});
            op["responses"] = json!({"200": ok_body(schema_ref(&kind_schema)), "201": ok_body(schema_ref(&kind_schema))});
        }
        "delete" | "deletecollection" => {
            for p in ["dryRun", "gracePeriodSeconds", "propagationPolicy"] {
                params.push(param(p, "query", false));
            }
            op["requestBody"] = json!({"content": {"application/json": {"schema": schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")}}});
            op["responses"] =
                json!({"200": ok_body(schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Status"))});
        }
        _ => {
            op["responses"] = json!({"200": ok_body(schema_ref(&kind_schema))});
        }
    }
    op["parameters"] = Value::Array(params);
    op
}

fn paths_for(r: &Resource, paths: &mut Map<String, Value>) {
    let prefix = format!("/{}", group_version_path(r.gvk.group, r.gvk.version));
    let collection = if r.namespaced() {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let kind = r.gvk.kind;
    let ns = if r.namespaced() { "Namespaced" } else { "" };
    let id = |verb: &str, suffix: &str| format!("{verb}{ns}{kind}{suffix}");
    let mut coll = json!({
        "get": operation(r, "list", id("list", ""), None),
        "post": operation(r, "post", id("create", ""), None),
    });
    if r.supports("deletecollection") {
        coll["delete"] = operation(r, "deletecollection", id("deleteCollection", ""), None);
    }
    if r.namespaced() {
        coll["parameters"] = json!([param("namespace", "path", true)]);
    }
    paths.insert(collection.clone(), coll);
    let mut item_params = vec![param("name", "path", true)];
    if r.namespaced() {
        item_params.push(param("namespace", "path", true));
    }
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({
            "get": operation(r, "get", id("read", ""), None),
            "put": operation(r, "put", id("replace", ""), None),
            "patch": operation(r, "patch", id("patch", ""), None),
            "delete": operation(r, "delete", id("delete", ""), None),
            "parameters": item_params.clone(),
        }),
    );
    for s in r.subresources {
        let cap: String = s.name[..1].to_uppercase() + &s.name[1..];
        let mut entry = Map::new();
        if s.verbs.contains(&"get") {
            entry.insert(
                "get".into(),
                operation(r, "get", id("read", &cap), Some(s.name)),
            );
        }
        if s.verbs.contains(&"update") {
            entry.insert(
                "put".into(),
                operation(r, "put", id("replace", &cap), Some(s.name)),
            );
        }
        if s.verbs.contains(&"patch") {
            entry.insert(
                "patch".into(),
                operation(r, "patch", id("patch", &cap), Some(s.name)),
            );
        }
        if s.verbs.contains(&"create") {
            entry.insert(
                "post".into(),
                operation(r, "connect", id("connectPost", &cap), Some(s.name)),
            );
        }
        entry.insert("parameters".into(), Value::Array(item_params.clone()));
        paths.insert(
            format!("{collection}/{{name}}/{}", s.name),
            Value::Object(entry),
        );
    }
}

fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(name) = x.as_str().and_then(|s| s.rsplit('/').next()) {
                        out.insert(name.to_owned());
                    }
                } else {
                    collect_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// `GET /openapi/v3/api/v1`, `/openapi/v3/apis/apps/v1`, …, or `None` for an unknown one.
pub fn document(group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    for r in catalogue::in_group_version(group, version) {
        paths_for(r, &mut paths);
    }
    if paths.is_empty() {
        return None;
    }
    let mut wanted = BTreeSet::new();
    collect_refs(&Value::Object(paths.clone()), &mut wanted);
    let defs = definitions();
    let mut schemas = Map::new();
    let mut todo: Vec<String> = wanted.into_iter().collect();
    while let Some(name) = todo.pop() {
        if schemas.contains_key(&name) {
            continue;
        }
        let Some(schema) = defs.get(&name) else {
            continue;
        };
        let mut more = BTreeSet::new();
        collect_refs(schema, &mut more);
        todo.extend(more.into_iter().filter(|n| !schemas.contains_key(n)));
        schemas.insert(name, schema.clone());
    }
    let title = if group.is_empty() {
        format!("Kubernetes /api/{version}")
    } else {
        format!("Kubernetes /apis/{group}/{version}")
    };
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": title, "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// Parses `api/v1` or `apis/apps/v1` (the part after `/openapi/v3/`).
pub fn parse_group_version(path: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["api", version] => Some(("", version)),
        ["apis", group, version] => Some((group, version)),
        _ => None,
    }
}

/// Field paths in `value` that the schema `schema` (an OpenAPI name) does not declare, as
/// strict field validation reports them (`spec.containers[0].foo`). With `prune`, they are
/// also removed from `value`.
pub fn unknown_fields(schema: &str, value: &mut Value, prune: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = definitions().get(schema) {
        walk_unknown(s, value, "", prune, &mut out);
    }
    out
}

/// Every field of a JSON document in document order, as (path, whether this occurrence
/// repeats a key of the same object). Invalid JSON yields what was read before the error:
/// decoding reports the error itself.
pub fn scan_fields(json: &[u8]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(json);
    let _ = serde::de::DeserializeSeed::deserialize(
        DupWalker {
            path: String::new(),
            out: &mut out,
        },
        &mut de,
    );
    out
}

/// Field paths a JSON document gives more than once (`metadata.name`), in document order.
pub fn duplicate_fields(json: &[u8]) -> Vec<String> {
    scan_fields(json)
        .into_iter()
        .filter_map(|(path, dup)| dup.then_some(path))
        .collect()
}

/// Strict-decoding messages for `duplicates` and `unknown` field paths, in the order the
/// fields appear in `scan` (fields `scan` does not hold go last): `duplicate field "a"`,
/// `unknown field "b"`.
pub fn strict_messages(scan: &[(String, bool)], unknown: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for (path, dup) in scan {
        if *dup {
            out.push(format!("duplicate field {path:?}"));
        } else if unknown.contains(path) && reported.insert(path) {
            out.push(format!("unknown field {path:?}"));
        }
    }
    for path in unknown {
        if !reported.contains(path.as_str()) && !scan.iter().any(|(p, _)| p == path) {
            out.push(format!("unknown field {path:?}"));
        }
    }
    out
}

struct DupWalker<'a> {
    path: String,
    out: &'a mut Vec<(String, bool)>,
}

impl<'de> serde::de::DeserializeSeed<'de> for DupWalker<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DupWalker<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let child = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            let repeated = !seen.insert(key);
            self.out.push((child.clone(), repeated));
            map.next_value_seed(DupWalker {
                path: child,
                out: self.out,
            })?;
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(DupWalker {
                path: format!("{}[{i}]", self.path),
                out: self.out,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

fn walk_unknown(schema: &Value, value: &mut Value, path: &str, prune: bool, out: &mut Vec<String>) {
    let schema = resolve(schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let mut unknown = Vec::new();
                for (k, v) in map.iter_mut() {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match props.get(k) {
                        Some(p) => walk_unknown(p, v, &child, prune, out),
                        None => {
                            out.push(child);
                            unknown.push(k.clone());
                        }
                    }
                }
                if prune {
                    for k in unknown {
                        map.remove(&k);
                    }
                }
            } else if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (k, v) in map.iter_mut() {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk_unknown(extra, v, &child, prune, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    walk_unknown(item_schema, v, &format!("{path}[{i}]"), prune, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lists_every_group_version_with_a_stable_hash() {
        let a = index();
        let b = index();
        assert_eq!(a, b);
        let paths = a["paths"].as_object().unwrap();
        let keys: Vec<&str> = paths.keys().map(String::as_str).collect();
        for gv in [
            "api/v1",
            "apis/apps/v1",
            "apis/batch/v1",
            "apis/discovery.k8s.io/v1",
            "apis/events.k8s.io/v1",
        ] {
            assert!(keys.contains(&gv), "{keys:?}");
        }
        let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
    }

    #[test]
    fn documents_carry_patch_operations_and_real_schemas() {
        let doc = document("", "v1").unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(doc["paths"]["/api/v1/namespaces/{name}"]["patch"].is_object());
        let containers =
            &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        // Every reference inside the document resolves inside it.
        let mut refs = BTreeSet::new();
        collect_refs(&doc, &mut refs);
        for r in refs {
            assert!(
                doc["components"]["schemas"].get(&r).is_some(),
                "{r} dangling"
            );
        }
        let apps = document("apps", "v1").unwrap();
        assert!(
            apps["components"]["schemas"]
                .get("io.k8s.api.core.v1.Pod")
                .is_none()
        );
        assert!(
            apps["components"]["schemas"]
                .get("io.k8s.api.core.v1.PodSpec")
                .is_some()
        );
        assert!(document("apps", "v2").is_none());
    }

    #[test]
    fn schemas_keep_upstream_descriptions() {
        let defs = definitions();
        assert_eq!(defs.len(), 258);
        assert_eq!(
            defs["io.k8s.api.core.v1.PodSpec"]["description"],
            "PodSpec is a description of a pod."
        );
        let restart = &defs["io.k8s.api.core.v1.Container"]["properties"]["restartPolicy"];
        assert!(
            restart["description"].as_str().unwrap().starts_with(
                "RestartPolicy defines the restart behavior of individual containers in a pod."
            ),
            "{restart}"
        );
        // A described reference sits inside allOf and still resolves.
        let meta = &defs["io.k8s.api.core.v1.Pod"]["properties"]["metadata"];
        assert_eq!(
            ref_name(meta),
            Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        );
        assert!(meta["description"].is_string());
        assert!(resolve(meta)["properties"]["name"].is_object());
    }

    #[test]
    fn unknown_fields_are_found_and_pruned() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"any": "thing"}, "bogus": 1},
            "spec": {"containers": [{"name": "a", "image": "i", "imagePullPolicy": "Never", "colour": "red",
                                     "resources": {"limits": {"cpu": "1"}}}], "foo": true}});
        let found = unknown_fields("io.k8s.api.core.v1.Pod", &mut pod.clone(), false);
        assert_eq!(
            found,
            ["metadata.bogus", "spec.containers[0].colour", "spec.foo"]
        );
        unknown_fields("io.k8s.api.core.v1.Pod", &mut pod, true);
        assert!(unknown_fields("io.k8s.api.core.v1.Pod", &mut pod, false).is_empty());
        assert_eq!(pod["metadata"]["labels"]["any"], "thing");
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
    }

    #[test]
    fn duplicate_fields_in_document_order() {
        let doc = br#"{"metadata": {"name": "a", "labels": {"x": "1", "x": "2"}, "name": "b"},
                      "spec": {"containers": [{"name": "c", "image": "i", "image": "j"}], "paused": true, "paused": false}}"#;
        assert_eq!(
            duplicate_fields(doc),
            [
                "metadata.labels.x",
                "metadata.name",
                "spec.containers[0].image",
                "spec.paused"
            ]
        );
        assert!(duplicate_fields(br#"{"a": [1, {"b": 2}], "c": null}"#).is_empty());
        assert!(duplicate_fields(b"{not json").is_empty());
        let doc = br#"{"metadata": {"name": "a", "name": "b", "bogus": 1}, "spec": {"zzz": 1, "paused": true, "paused": false}}"#;
        let unknown = vec![
            "metadata.bogus".to_owned(),
            "spec.zzz".to_owned(),
            "status.x".to_owned(),
        ];
        assert_eq!(
            strict_messages(&scan_fields(doc), &unknown),
            [
                "duplicate field \"metadata.name\"",
                "unknown field \"metadata.bogus\"",
                "unknown field \"spec.zzz\"",
                "duplicate field \"spec.paused\"",
                "unknown field \"status.x\"",
            ]
        );
    }

    #[test]
    fn served_bytes_are_the_documents() {
        let idx: Value = serde_json::from_slice(index_bytes()).unwrap();
        assert_eq!(idx, index());
        let doc: Value = serde_json::from_slice(document_bytes("batch", "v1").unwrap()).unwrap();
        assert_eq!(doc, document("batch", "v1").unwrap());
        assert!(document_bytes("batch", "v2").is_none());
    }

    #[test]
    fn group_version_paths_parse() {
        assert_eq!(parse_group_version("api/v1"), Some(("", "v1")));
        assert_eq!(parse_group_version("apis/apps/v1"), Some(("apps", "v1")));
        assert_eq!(parse_group_version("apis/apps"), None);
    }
}
