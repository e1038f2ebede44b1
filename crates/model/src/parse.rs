//! Manifest parsing: YAML streams and JSON into typed [`Object`]s, with
//! kubectl's and the API server's error wording.
//!
//! Every document goes through JSON first (as kubectl converts YAML to JSON
//! before decoding). Unknown fields are found the way strict decoding finds
//! them: whatever the typed value does not carry when serialised again was not
//! a field of the type.

use std::fmt;

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::object::Object;
use crate::quantity::{Quantity, QuantityError};

// === ParseError ===

/// Why a manifest could not be turned into objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The file name the text came from (`STDIN` for standard input).
    pub source: String,
    /// What went wrong (boxed to keep `Result`s small).
    pub kind: Box<ParseErrorKind>,
}

/// The specific failure inside a [`ParseError`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The text is not well-formed YAML or JSON.
    Syntax {
        /// `"YAML"` or `"JSON"`.
        format: &'static str,
        /// 1-based line of the error, when known.
        line: Option<u64>,
        /// 1-based column of the error, when known.
        column: Option<u64>,
        /// The parser's message.
        message: String,
    },
    /// A document is not a mapping (e.g. a bare list or scalar).
    NotAnObject {
        /// JSON type found instead: `array`, `string`, `number` or `bool`.
        found: &'static str,
    },
    /// A document has no `kind`.
    MissingKind {
        /// The document as compact JSON.
        document: String,
    },
    /// A document has no `apiVersion`.
    MissingApiVersion {
        /// The document as compact JSON.
        document: String,
    },
    /// The `apiVersion`/`kind` pair is not served.
    UnknownKind {
        /// The document's `apiVersion`.
        api_version: String,
        /// The document's `kind`.
        kind: String,
        /// `metadata.name` (empty if unset).
        name: String,
        /// `metadata.namespace` (empty if unset).
        namespace: String,
    },
    /// Strict decoding found fields the type does not have.
    UnknownFields {
        /// The document's `apiVersion`.
        api_version: String,
        /// The document's `kind`.
        kind: String,
        /// Every unknown field path, e.g. `spec.containers[0].imagee`.
        fields: Vec<String>,
    },
    /// A value the API server's decoder refuses (a resource quantity that does
    /// not parse, …).
    Value {
        /// The document's `apiVersion`.
        api_version: String,
        /// The document's `kind`.
        kind: String,
        /// The decoder's message.
        message: String,
    },
    /// A field has the wrong type (a string where a number belongs, …).
    Decode {
        /// The document's `apiVersion`.
        api_version: String,
        /// The document's `kind`.
        kind: String,
        /// Path of the offending field.
        path: String,
        /// The decoder's message.
        message: String,
    },
}

/// The version part of an apiVersion: `batch/v1` → `v1`.
fn version_part(api_version: &str) -> &str {
    api_version.rsplit('/').next().unwrap_or(api_version)
}

impl ParseError {
    fn new(source: &str, kind: ParseErrorKind) -> Self {
        ParseError {
            source: source.to_string(),
            kind: Box::new(kind),
        }
    }

    /// The API server's `Status.message` for errors the server reports
    /// (unknown fields, wrong field types); `None` for client-side errors.
    pub fn server_message(&self) -> Option<String> {
        match self.kind.as_ref() {
            ParseErrorKind::UnknownFields {
                api_version,
                kind,
                fields,
            } => {
                let list: Vec<String> = fields
                    .iter()
                    .map(|f| format!("unknown field {}", crate::field::quote(f)))
                    .collect();
                Some(format!(
                    "{kind} in version {} cannot be handled as a {kind}: strict decoding error: {}",
                    crate::field::quote(version_part(api_version)),
                    list.join(", ")
                ))
            }
            ParseErrorKind::Value {
                api_version,
                kind,
                message,
            } => Some(format!(
                "{kind} in version {} cannot be handled as a {kind}: {message}",
                crate::field::quote(version_part(api_version)),
            )),
            ParseErrorKind::Decode {
                api_version,
                kind,
                path,
                message,
            } => Some(format!(
                "{kind} in version {} cannot be handled as a {kind}: json: cannot decode field {}: {message}",
                crate::field::quote(version_part(api_version)),
                crate::field::quote(path),
            )),
            _ => None,
        }
    }

    /// Exactly what kubectl prints for this error, prefix included
    /// (`error: …` or `Error from server (BadRequest): …`).
    pub fn kubectl_message(&self) -> String {
        if self.server_message().is_some() {
            format!("Error from server (BadRequest): {self}")
        } else {
            format!("error: {self}")
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let src = &self.source;
        match self.kind.as_ref() {
            ParseErrorKind::Syntax {
                format: "YAML",
                line,
                column,
                message,
            } => {
                write!(
                    f,
                    "error parsing {src}: error converting YAML to JSON: yaml: "
                )?;
                match (line, column) {
                    (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {message}"),
                    (Some(l), None) => write!(f, "line {l}: {message}"),
                    _ => write!(f, "{message}"),
                }
            }
            ParseErrorKind::Syntax {
                line,
                column,
                message,
                ..
            } => {
                write!(f, "error parsing {src}: {message}")?;
                match (line, column) {
                    (Some(l), Some(c)) => write!(f, " (line {l}, column {c})"),
                    _ => Ok(()),
                }
            }
            ParseErrorKind::NotAnObject { found } => write!(
                f,
                "unable to decode {}: json: cannot unmarshal {found} into Go value of type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }}",
                crate::field::quote(src)
            ),
            ParseErrorKind::MissingKind { document } => {
                write!(
                    f,
                    "unable to decode {}: Object 'Kind' is missing in '{document}'",
                    crate::field::quote(src)
                )
            }
            ParseErrorKind::MissingApiVersion { document } => write!(
                f,
                "unable to decode {}: Object 'apiVersion' is missing in '{document}'",
                crate::field::quote(src)
            ),
            ParseErrorKind::UnknownKind {
                api_version,
                kind,
                name,
                namespace,
            } => write!(
                f,
                "resource mapping not found for name: {} namespace: {} from {}: no matches for kind {} in version {}\nensure CRDs are installed first",
                crate::field::quote(name),
                crate::field::quote(namespace),
                crate::field::quote(src),
                crate::field::quote(kind),
                crate::field::quote(api_version),
            ),
            ParseErrorKind::UnknownFields { .. }
            | ParseErrorKind::Decode { .. }
            | ParseErrorKind::Value { .. } => {
                let msg = self.server_message().unwrap_or_default();
                write!(f, "error when creating {}: {msg}", crate::field::quote(src))
            }
        }
    }
}

impl std::error::Error for ParseError {}

// === parsing ===

/// Parses one manifest file's text: multi-document YAML (empty documents
/// skipped), or JSON (a single object, a stream of objects, or a `v1` `List`
/// with `items`). `source` is the file name for messages.
pub fn parse_manifests(text: &str, source: &str) -> Result<Vec<Object>, ParseError> {
    let docs = if looks_like_json(text) {
        json_documents(text, source)?
    } else {
        yaml_documents(text, source)?
    };
    let mut out = Vec::new();
    for doc in docs {
        decode_into(doc, source, &mut out)?;
    }
    Ok(out)
}

/// [`parse_manifests`] for raw file bytes: text that is not UTF-8 gets the YAML
/// decoder's error (`invalid leading UTF-8 octet`) at the first bad byte's line and
/// column, as kubectl reports it.
pub fn parse_manifest_bytes(bytes: &[u8], source: &str) -> Result<Vec<Object>, ParseError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_manifests(text, source),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            let start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let column = (e.valid_up_to() - start) as u64 + 1;
            let message = if e.error_len().is_some() {
                "invalid leading UTF-8 octet"
            } else {
                "incomplete UTF-8 octet sequence"
            };
            Err(ParseError::new(
                source,
                ParseErrorKind::Syntax {
                    format: "YAML",
                    line: Some(line),
                    column: Some(column),
                    message: message.into(),
                },
            ))
        }
    }
}

/// Decodes one JSON document (as a request body or one manifest document) into
/// an object. A `List` is refused here: use [`parse_manifests`] for those.
pub fn decode_object(value: Value, source: &str) -> Result<Object, ParseError> {
    let (api_version, kind) = type_meta(&value, source)?;
    decode_typed(value, &api_version, &kind, source)
}

fn looks_like_json(text: &str) -> bool {
    // JSON documents start with `{` (YAML flow mappings do too, but those
    // are valid JSON often enough, and the JSON parser gives better messages
    // for real JSON).
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('{')
}

fn json_documents(text: &str, source: &str) -> Result<Vec<Value>, ParseError> {
    let text = text.trim_start_matches('\u{feff}');
    let mut docs = Vec::new();
    for item in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match item {
            Ok(v) => docs.push(v),
            Err(e) => {
                // A `{`-led document that is not JSON may still be YAML flow
                // style with unquoted keys: give YAML a chance before failing.
                if let Ok(v) = yaml_documents(text, source) {
                    return Ok(v);
                }
                return Err(ParseError::new(
                    source,
                    ParseErrorKind::Syntax {
                        format: "JSON",
                        line: Some(e.line() as u64),
                        column: Some(e.column() as u64),
                        message: strip_position(&e.to_string()),
                    },
                ));
            }
        }
    }
    Ok(docs)
}

fn yaml_documents(text: &str, source: &str) -> Result<Vec<Value>, ParseError> {
    match serde_saphyr::from_multiple::<Value>(text) {
        Ok(docs) => Ok(docs.into_iter().filter(|d| !d.is_null()).collect()),
        Err(e) => {
            let loc = e.location();
            Err(ParseError::new(
                source,
                ParseErrorKind::Syntax {
                    format: "YAML",
                    line: loc.map(|l| l.line()),
                    column: loc.map(|l| l.column()),
                    message: strip_position(&e.without_snippet().to_string()),
                },
            ))
        }
    }
}

/// Parsers append ` at line L, column C` (or `… column C`); the position is
/// reported separately, so drop it from the message.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_meta(doc: &Value, source: &str) -> Result<(String, String), ParseError> {
    let Value::Object(map) = doc else {
        return Err(ParseError::new(
            source,
            ParseErrorKind::NotAnObject {
                found: json_type_name(doc),
            },
        ));
    };
    let text = |k: &str| {
        map.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    // Upstream checks the kind before the version.
    let Some(kind) = text("kind") else {
        return Err(ParseError::new(
            source,
            ParseErrorKind::MissingKind {
                document: doc.to_string(),
            },
        ));
    };
    let Some(api_version) = text("apiVersion") else {
        return Err(ParseError::new(
            source,
            ParseErrorKind::MissingApiVersion {
                document: doc.to_string(),
            },
        ));
    };
    Ok((api_version, kind))
}

fn decode_into(doc: Value, source: &str, out: &mut Vec<Object>) -> Result<(), ParseError> {
    let (api_version, kind) = type_meta(&doc, source)?;
    // kubectl flattens `v1` `List` (and any `…List`) into its items.
    if api_version == "v1" && (kind == "List" || kind.ends_with("List")) {
        if let Some(Value::Array(items)) = doc.get("items") {
            for item in items.clone() {
                decode_into(item, source, out)?;
            }
            return Ok(());
        }
        if kind == "List" {
            return Ok(());
        }
    }
    out.push(decode_typed(doc, &api_version, &kind, source)?);
    Ok(())
}

fn decode_typed(
    doc: Value,
    api_version: &str,
    kind: &str,
    source: &str,
) -> Result<Object, ParseError> {
    fn typed<T: DeserializeOwned + serde::Serialize>(
        doc: Value,
        api_version: &str,
        kind: &str,
        source: &str,
    ) -> Result<Box<T>, ParseError> {
        let v: T = serde_path_to_error::deserialize(&doc).map_err(|e| {
            let path = e.path().to_string();
            ParseError::new(
                source,
                ParseErrorKind::Decode {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                    path: if path == "." { String::new() } else { path },
                    message: e.into_inner().to_string(),
                },
            )
        })?;
        // Serialising a derived k8s-openapi struct to a Value cannot fail.
        let back = serde_json::to_value(&v).unwrap_or(Value::Null);
        let mut unknown = Vec::new();
        unknown_fields(&doc, &back, "", &mut unknown);
        if !unknown.is_empty() {
            return Err(ParseError::new(
                source,
                ParseErrorKind::UnknownFields {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                    fields: unknown,
                },
            ));
        }
        if let Some(message) = first_bad_quantity(&back) {
            return Err(ParseError::new(
                source,
                ParseErrorKind::Value {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                    message: message.to_string(),
                },
            ));
        }
        Ok(Box::new(v))
    }

    let o = match (api_version, kind) {
        (Pod::API_VERSION, Pod::KIND) => Object::Pod(typed(doc, api_version, kind, source)?),
        (Job::API_VERSION, Job::KIND) => Object::Job(typed(doc, api_version, kind, source)?),
        (CronJob::API_VERSION, CronJob::KIND) => {
            Object::CronJob(typed(doc, api_version, kind, source)?)
        }
        (Service::API_VERSION, Service::KIND) => {
            Object::Service(typed(doc, api_version, kind, source)?)
        }
        (ServiceAccount::API_VERSION, ServiceAccount::KIND) => {
            Object::ServiceAccount(typed(doc, api_version, kind, source)?)
        }
        (Deployment::API_VERSION, Deployment::KIND) => {
            Object::Deployment(typed(doc, api_version, kind, source)?)
        }
        (ReplicaSet::API_VERSION, ReplicaSet::KIND) => {
            Object::ReplicaSet(typed(doc, api_version, kind, source)?)
        }
        (ConfigMap::API_VERSION, ConfigMap::KIND) => {
            Object::ConfigMap(typed(doc, api_version, kind, source)?)
        }
        (Secret::API_VERSION, Secret::KIND) => {
            Object::Secret(typed(doc, api_version, kind, source)?)
        }
        (Namespace::API_VERSION, Namespace::KIND) => {
            Object::Namespace(typed(doc, api_version, kind, source)?)
        }
        _ => {
            let meta = |k: &str| {
                doc.get("metadata")
                    .and_then(|m| m.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            return Err(ParseError::new(
                source,
                ParseErrorKind::UnknownKind {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                    name: meta("name"),
                    namespace: meta("namespace"),
                },
            ));
        }
    };
    Ok(o)
}

/// The decoder's message for the first resource quantity in `typed` (a typed
/// object serialised back, so every quantity is a string) that
/// `resource.ParseQuantity` refuses: container `resources` limits and
/// requests, pod `overhead`, and `emptyDir.sizeLimit`, at any depth.
fn first_bad_quantity(typed: &Value) -> Option<&'static str> {
    // Iterative, so no document nests deep enough to exhaust the stack.
    let mut stack = vec![typed];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let quantities: Vec<&Value> = match (k.as_str(), child) {
                        ("resources", Value::Object(r)) => ["limits", "requests"]
                            .iter()
                            .filter_map(|f| r.get(*f).and_then(Value::as_object))
                            .flat_map(|m| m.values())
                            .collect(),
                        ("overhead", Value::Object(m)) => m.values().collect(),
                        ("sizeLimit", q) => vec![q],
                        _ => Vec::new(),
                    };
                    for q in quantities {
                        if let Some(e) = q.as_str().and_then(quantity_error) {
                            return Some(e);
                        }
                    }
                    stack.push(child);
                }
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    None
}

/// Why `resource.ParseQuantity` refuses `text` (trimmed, as JSON decoding does), if it does.
pub(crate) fn quantity_error(text: &str) -> Option<&'static str> {
    Quantity::parse(text.trim())
        .err()
        .map(QuantityError::message)
}

/// What `podrun run` (like `kubectl apply`) says when the files held no
/// object at all: empty input, only comments, or a bare `---`.
pub fn no_objects_message(verb: &str) -> String {
    format!("error: no objects passed to {verb}")
}

/// Collects paths present (and not null) in `input` but absent from `typed`,
/// the typed value serialised back. Paths use the API server's notation:
/// `spec.containers[0].imagee`.
fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            for (k, v) in i {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, out),
                    // An explicit null decodes to "unset" and is not an error.
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (iv, tv)) in i.iter().zip(t.iter()).enumerate() {
                unknown_fields(iv, tv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}
