//! Small accessors on JSON objects (`metadata.name`, `metadata.finalizers`, …) used by
//! every kind alike.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// `metadata.<field>` as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata`, created empty when absent (the object must be a JSON object).
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let map = obj
        .as_object_mut()
        .expect("objects are checked to be JSON objects on entry");
    let m = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut().expect("made an object just above")
}

/// `metadata.name`.
pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// `metadata.uid`.
pub fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid").unwrap_or("")
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<&str> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Is `metadata.deletionTimestamp` set?
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// The object without `metadata` and `status`, `kind` and `apiVersion`: what
/// `metadata.generation` tracks.
pub fn spec_part(obj: &Value) -> Map<String, Value> {
    let mut m = obj.as_object().cloned().unwrap_or_default();
    for k in ["metadata", "status", "kind", "apiVersion"] {
        m.remove(k);
    }
    m
}

/// Sets `metadata.resourceVersion` to a revision.
pub fn set_revision(obj: &mut Value, revision: u64) {
    if obj.is_object() {
        meta_mut(obj).insert("resourceVersion".into(), revision.to_string().into());
    }
}

/// The stored JSON `json` of one object with `metadata.resourceVersion` set to `revision`,
/// as [`set_revision`] sets it on a decoded object, without decoding the rest: the
/// top-level fields and `metadata`'s are only delimited, and everything else is copied
/// as it is. Fails if `json` is not a JSON object (or its `metadata` is neither an object
/// nor `null`).
pub fn encoded_with_revision(json: &[u8], revision: u64) -> serde_json::Result<Box<RawValue>> {
    let mut top: BTreeMap<String, &RawValue> = serde_json::from_slice(json)?;
    let mut meta: BTreeMap<String, &RawValue> = match top.get("metadata") {
        Some(m) if m.get() != "null" => serde_json::from_str(m.get())?,
        _ => BTreeMap::new(),
    };
    let rv = RawValue::from_string(format!("\"{revision}\""))?;
    meta.insert("resourceVersion".into(), &rv);
    let meta = serde_json::value::to_raw_value(&meta)?;
    top.insert("metadata".into(), &meta);
    serde_json::value::to_raw_value(&top)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn encoded_with_revision_is_set_revision_on_the_stored_json() {
        for obj in [
            json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "3", "labels": {"x": "y"}},
                   "spec": {"containers": [{"name": "c", "args": ["\"q\"", "\u{e9}"]}]}, "status": {}}),
            json!({"metadata": {"name": "b"}}),
            json!({"metadata": null, "data": {"k": "v"}}),
            json!({"data": {"z": 1.5, "a": [null, true]}}),
        ] {
            let bytes = serde_json::to_vec(&obj).unwrap();
            let raw = encoded_with_revision(&bytes, 42).unwrap();
            let mut want = obj.clone();
            set_revision(&mut want, 42);
            assert_eq!(raw.get(), serde_json::to_string(&want).unwrap());
        }
        // A row written by hand may be spaced out.
        let raw = encoded_with_revision(
            b" { \"metadata\" : { \"name\" : \"c\" }, \"s\": { \"k\" : 1 } } ",
            7,
        )
        .unwrap();
        let got: Value = serde_json::from_str(raw.get()).unwrap();
        assert_eq!(
            got,
            json!({"metadata": {"name": "c", "resourceVersion": "7"}, "s": {"k": 1}})
        );
        assert!(encoded_with_revision(b"[1]", 1).is_err());
        assert!(encoded_with_revision(b"{\"metadata\": 3}", 1).is_err());
        assert!(encoded_with_revision(b"{\"a\": ", 1).is_err());
    }
}
