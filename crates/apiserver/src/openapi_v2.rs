//! OpenAPI v2: `GET /openapi/v2` as a Swagger 2.0 document for every served kind, in JSON
//! and in the protobuf form client-go asks for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`: the `openapi.v2.Document`
//! message of gnostic's `OpenAPIv2.proto`, which `kubectl explain
//! --output=plaintext-openapiv2` and kubectl's v2 fallbacks decode).
//!
//! The document is built from the same source as `/openapi/v3` (the per-group-version
//! documents of [`crate::openapi`]): paths with their operations, parameters, body and
//! responses, and every schema they reach under `definitions`, with the
//! `x-kubernetes-group-version-kind`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-patch-strategy` and list/map extensions kept. References become
//! `#/definitions/…`; a reference inside `allOf` becomes a plain `$ref` beside its
//! siblings, as Swagger 2.0 writes it; `IntOrString` and `Quantity` take their v2 shapes.
//! Vendor extension values and defaults travel in the protobuf `Any.yaml` field as JSON,
//! which is YAML.

use std::sync::OnceLock;

use prost::Message as _;
use serde_json::{Map, Value, json};

use crate::openapi;

/// The media type client-go asks for the protobuf form with.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The media type the protobuf form is answered with, also accepted in `Accept`: `@` is
/// not a token character, and Go's `mime.ParseMediaType` (which client-go runs on every
/// `Content-Type`) refuses the form with it, so the API server answers this one.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Which form of the document a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json` (also for `*/*` and no `Accept`).
    Json,
    /// [`PROTOBUF_MEDIA_TYPE`].
    Protobuf,
}

/// The form an `Accept` header asks for, in its order of preference, or `None` when it
/// names neither (406). `q=0` entries are refused entries.
pub fn negotiate(accept: Option<&str>) -> Option<Format> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Format::Json);
    };
    let mut best: Option<(f32, Format)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .filter_map(|q| q.parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        let format = match media.as_str() {
            PROTOBUF_MEDIA_TYPE | PROTOBUF_CONTENT_TYPE => Format::Protobuf,
            "application/json" | "application/*" | "*/*" => Format::Json,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, format));
        }
    }
    best.map(|(_, f)| f)
}

/// The Swagger 2.0 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for (group, version) in openapi::group_versions() {
        let Some(doc) = openapi::document(group, version) else {
            continue;
        };
        if let Some(p) = doc.get("paths").and_then(Value::as_object) {
            for (path, item) in p {
                paths.insert(path.clone(), path_item(item));
            }
        }
        if let Some(s) = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            for (name, schema) in s {
                definitions.insert(name.clone(), definition(name, schema));
            }
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey",
            },
        },
        "security": [{"BearerToken": []}],
    })
}

/// The document as served, built once: JSON, protobuf and their ETag.
pub struct Served {
    /// The JSON form.
    pub json: bytes::Bytes,
    /// The protobuf form.
    pub protobuf: bytes::Bytes,
    /// The entity tag, quoted, shared by both forms (they carry the same document).
    pub etag: String,
}

/// The served document (built and serialised on first use).
pub fn served() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(|| {
        let doc = document();
        let json = serde_json::to_vec(&doc).expect("documents serialise");
        let protobuf = to_protobuf(&doc).encode_to_vec();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in &json {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Served {
            json: json.into(),
            protobuf: protobuf.into(),
            etag: format!("\"{h:016X}\""),
        }
    })
}

/// Whether an `If-None-Match` header names `etag` (or is `*`).
pub fn not_modified(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|h| {
        h.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == etag || t.strip_prefix("W/").is_some_and(|w| w == etag))
    })
}

fn rewrite_ref(r: &str) -> String {
    match r.strip_prefix("#/components/schemas/") {
        Some(name) => format!("#/definitions/{name}"),
        None => r.to_owned(),
    }
}

fn definition(name: &str, schema: &Value) -> Value {
    match name {
        // Swagger 2.0 has no oneOf; the API server's v2 document gives these shapes.
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            json!({"type": "string", "format": "int-or-string"})
        }
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => json!({"type": "string"}),
        _ => schema_v2(schema),
    }
}

/// A v3 schema in its Swagger 2.0 form.
fn schema_v2(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match k.as_str() {
                    "$ref" => {
                        out.insert(
                            k.clone(),
                            Value::String(rewrite_ref(v.as_str().unwrap_or(""))),
                        );
                    }
                    "allOf" => match v.as_array().map(Vec::as_slice) {
                        Some([only]) if only.get("$ref").is_some() => {
                            let r = only["$ref"].as_str().unwrap_or("");
                            out.insert("$ref".into(), Value::String(rewrite_ref(r)));
                        }
                        _ => {
                            out.insert(k.clone(), schema_v2(v));
                        }
                    },
                    // No oneOf/anyOf/nullable in Swagger 2.0: the value is arbitrary.
                    "oneOf" | "anyOf" | "nullable" => {}
                    "properties" => {
                        let props = v
                            .as_object()
                            .map(|p| {
                                p.iter()
                                    .map(|(n, s)| (n.clone(), schema_v2(s)))
                                    .collect::<Map<_, _>>()
                            })
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    "items" | "additionalProperties" if v.is_object() => {
                        out.insert(k.clone(), schema_v2(v));
                    }
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(schema_v2).collect()),
        other => other.clone(),
    }
}

/// Copies the members of `from` named in `keys` that it has into `out`.
fn copy_keys(from: &Value, keys: &[&str], out: &mut Map<String, Value>) {
    for &key in keys {
        if let Some(v) = from.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
}

fn parameter_v2(p: &Value) -> Value {
    let mut out = Map::new();
    copy_keys(p, &["name", "in", "required", "description"], &mut out);
    if let Some(s) = p.get("schema").and_then(Value::as_object) {
        for (k, v) in s {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn parameters_v2(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().map(parameter_v2).collect())
        .unwrap_or_default()
}

fn operation_v2(op: &Value) -> Value {
    let mut out = Map::new();
    copy_keys(op, &["description", "operationId", "tags"], &mut out);
    let mut params = parameters_v2(op.get("parameters"));
    if let Some(content) = op
        .pointer("/requestBody/content")
        .and_then(Value::as_object)
    {
        out.insert(
            "consumes".into(),
            Value::Array(content.keys().cloned().map(Value::String).collect()),
        );
        if let Some(schema) = content.values().find_map(|c| c.get("schema")) {
            let required = op
                .pointer("/requestBody/required")
                .cloned()
                .unwrap_or(json!(false));
            params.insert(
                0,
                json!({"name": "body", "in": "body", "required": required, "schema": schema_v2(schema)}),
            );
        }
    }
    out.insert("parameters".into(), Value::Array(params));
    let mut produces: Vec<String> = Vec::new();
    let mut responses = Map::new();
    if let Some(rs) = op.get("responses").and_then(Value::as_object) {
        for (code, r) in rs {
            let mut resp = Map::new();
            resp.insert(
                "description".into(),
                r.get("description").cloned().unwrap_or(json!("OK")),
            );
            if let Some(content) = r.get("content").and_then(Value::as_object) {
                for t in content.keys() {
                    if !produces.contains(t) {
                        produces.push(t.clone());
                    }
                }
                if let Some(schema) = content.values().find_map(|c| c.get("schema")) {
                    resp.insert("schema".into(), schema_v2(schema));
                }
            }
            responses.insert(code.clone(), Value::Object(resp));
        }
    }
    out.insert("produces".into(), json!(produces));
    out.insert("responses".into(), Value::Object(responses));
    out.insert("schemes".into(), json!(["https"]));
    if let Some(m) = op.as_object() {
        for (k, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn path_item(item: &Value) -> Value {
    let mut out = Map::new();
    if let Some(m) = item.as_object() {
        for (k, v) in m {
            if k == "parameters" {
                out.insert(k.clone(), Value::Array(parameters_v2(Some(v))));
            } else {
                out.insert(k.clone(), operation_v2(v));
            }
        }
    }
    Value::Object(out)
}

// The messages of gnostic's `openapi.v2` package that the document uses, with their field
// numbers. Fields the document never sets are left out (protobuf skips unknown numbers).

/// `openapi.v2.Document`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbDocument {
    /// `swagger`.
    #[prost(string, tag = "1")]
    pub swagger: String,
    /// `info`.
    #[prost(message, optional, tag = "2")]
    pub info: Option<PbInfo>,
    /// `paths`.
    #[prost(message, optional, tag = "8")]
    pub paths: Option<PbPaths>,
    /// `definitions`.
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<PbDefinitions>,
    /// `security`.
    #[prost(message, repeated, tag = "12")]
    pub security: Vec<PbSecurityRequirement>,
    /// `securityDefinitions`.
    #[prost(message, optional, tag = "13")]
    pub security_definitions: Option<PbSecurityDefinitions>,
}

/// `openapi.v2.Info`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbInfo {
    /// `title`.
    #[prost(string, tag = "1")]
    pub title: String,
    /// `version`.
    #[prost(string, tag = "2")]
    pub version: String,
}

/// `openapi.v2.Any`: the value as YAML text.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbAny {
    /// `yaml`.
    #[prost(string, tag = "2")]
    pub yaml: String,
}

/// `openapi.v2.NamedAny`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbNamedAny {
    /// `name`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `value`.
    #[prost(message, optional, tag = "2")]
    pub value: Option<PbAny>,
}

/// `openapi.v2.Paths`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbPaths {
    /// `path`.
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<PbNamedPathItem>,
}

/// `openapi.v2.NamedPathItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbNamedPathItem {
    /// `name`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `value`.
    #[prost(message, optional, tag = "2")]
    pub value: Option<PbPathItem>,
}

/// `openapi.v2.PathItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbPathItem {
    /// `get`.
    #[prost(message, optional, tag = "2")]
    pub get: Option<PbOperation>,
    /// `put`.
    #[prost(message, optional, tag = "3")]
    pub put: Option<PbOperation>,
    /// `post`.
    #[prost(message, optional, tag = "4")]
    pub post: Option<PbOperation>,
    /// `delete`.
    #[prost(message, optional, tag = "5")]
    pub delete: Option<PbOperation>,
    /// `patch`.
    #[prost(message, optional, tag = "8")]
    pub patch: Option<PbOperation>,
    /// `parameters`.
    #[prost(message, repeated, tag = "9")]
    pub parameters: Vec<PbParametersItem>,
}

/// `openapi.v2.Operation`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbOperation {
    /// `tags`.
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    /// `description`.
    #[prost(string, tag = "3")]
    pub description: String,
    /// `operationId`.
    #[prost(string, tag = "5")]
    pub operation_id: String,
    /// `produces`.
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    /// `consumes`.
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    /// `parameters`.
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<PbParametersItem>,
    /// `responses`.
    #[prost(message, optional, tag = "9")]
    pub responses: Option<PbResponses>,
    /// `schemes`.
    #[prost(string, repeated, tag = "10")]
    pub schemes: Vec<String>,
    /// `x-…` extensions.
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<PbNamedAny>,
}

/// `openapi.v2.ParametersItem` (always a `Parameter` here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbParametersItem {
    /// `parameter`.
    #[prost(message, optional, tag = "1")]
    pub parameter: Option<PbParameter>,
}

/// `openapi.v2.Parameter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbParameter {
    /// The `oneof`.
    #[prost(oneof = "PbParameterKind", tags = "1, 2")]
    pub oneof: Option<PbParameterKind>,
}

/// The `oneof` of `openapi.v2.Parameter`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum PbParameterKind {
    /// `body_parameter`.
    #[prost(message, tag = "1")]
    Body(PbBodyParameter),
    /// `non_body_parameter`.
    #[prost(message, tag = "2")]
    NonBody(PbNonBodyParameter),
}

/// `openapi.v2.BodyParameter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbBodyParameter {
    /// `description`.
    #[prost(string, tag = "1")]
    pub description: String,
    /// `name`.
    #[prost(string, tag = "2")]
    pub name: String,
    /// `in`.
    #[prost(string, tag = "3")]
    pub r#in: String,
    /// `required`.
    #[prost(bool, tag = "4")]
    pub required: bool,
    /// `schema`.
    #[prost(message, optional, boxed, tag = "5")]
    pub schema: Option<Box<PbSchema>>,
}

/// `openapi.v2.NonBodyParameter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbNonBodyParameter {
    /// The `oneof`.
    #[prost(oneof = "PbNonBodyKind", tags = "3, 4")]
    pub oneof: Option<PbNonBodyKind>,
}

/// The `oneof` of `openapi.v2.NonBodyParameter`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum PbNonBodyKind {
    /// `query_parameter_sub_schema`.
    #[prost(message, tag = "3")]
    Query(PbQueryParameter),
    /// `path_parameter_sub_schema`.
    #[prost(message, tag = "4")]
    Path(PbPathParameter),
}

/// `openapi.v2.QueryParameterSubSchema`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbQueryParameter {
    /// `required`.
    #[prost(bool, tag = "1")]
    pub required: bool,
    /// `in`.
    #[prost(string, tag = "2")]
    pub r#in: String,
    /// `description`.
    #[prost(string, tag = "3")]
    pub description: String,
    /// `name`.
    #[prost(string, tag = "4")]
    pub name: String,
    /// `type`.
    #[prost(string, tag = "6")]
    pub r#type: String,
    /// `uniqueItems`.
    #[prost(bool, tag = "20")]
    pub unique_items: bool,
}

/// `openapi.v2.PathParameterSubSchema`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbPathParameter {
    /// `required`.
    #[prost(bool, tag = "1")]
    pub required: bool,
    /// `in`.
    #[prost(string, tag = "2")]
    pub r#in: String,
    /// `description`.
    #[prost(string, tag = "3")]
    pub description: String,
    /// `name`.
    #[prost(string, tag = "4")]
    pub name: String,
    /// `type`.
    #[prost(string, tag = "5")]
    pub r#type: String,
    /// `uniqueItems`.
    #[prost(bool, tag = "19")]
    pub unique_items: bool,
}

/// `openapi.v2.Responses`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbResponses {
    /// `response_code`.
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<PbNamedResponseValue>,
}

/// `openapi.v2.NamedResponseValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbNamedResponseValue {
    /// `name`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `value`.
    #[prost(message, optional, tag = "2")]
    pub value: Option<PbResponseValue>,
}

/// `openapi.v2.ResponseValue` (always a `Response` here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbResponseValue {
    /// `response`.
    #[prost(message, optional, tag = "1")]
    pub response: Option<PbResponse>,
}

/// `openapi.v2.Response`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbResponse {
    /// `description`.
    #[prost(string, tag = "1")]
    pub description: String,
    /// `schema`.
    #[prost(message, optional, tag = "2")]
    pub schema: Option<PbSchemaItem>,
}

/// `openapi.v2.SchemaItem` (always a `Schema` here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbSchemaItem {
    /// `schema`.
    #[prost(message, optional, tag = "1")]
    pub schema: Option<PbSchema>,
}

/// `openapi.v2.Definitions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbDefinitions {
    /// `additional_properties`.
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<PbNamedSchema>,
}

/// `openapi.v2.NamedSchema`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbNamedSchema {
    /// `name`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `value`.
    #[prost(message, optional, tag = "2")]
    pub value: Option<PbSchema>,
}

/// `openapi.v2.Properties`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbProperties {
    /// `additional_properties`.
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<PbNamedSchema>,
}

/// `openapi.v2.TypeItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbTypeItem {
    /// `value`.
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

/// `openapi.v2.ItemsItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbItemsItem {
    /// `schema`.
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<PbSchema>,
}

/// `openapi.v2.AdditionalPropertiesItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbAdditionalProperties {
    /// The `oneof`.
    #[prost(oneof = "PbAdditionalKind", tags = "1, 2")]
    pub oneof: Option<PbAdditionalKind>,
}

/// The `oneof` of `openapi.v2.AdditionalPropertiesItem`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum PbAdditionalKind {
    /// `schema`.
    #[prost(message, tag = "1")]
    Schema(Box<PbSchema>),
    /// `boolean`.
    #[prost(bool, tag = "2")]
    Boolean(bool),
}

/// `openapi.v2.Schema`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbSchema {
    /// `$ref`.
    #[prost(string, tag = "1")]
    pub r#ref: String,
    /// `format`.
    #[prost(string, tag = "2")]
    pub format: String,
    /// `title`.
    #[prost(string, tag = "3")]
    pub title: String,
    /// `description`.
    #[prost(string, tag = "4")]
    pub description: String,
    /// `default`.
    #[prost(message, optional, tag = "5")]
    pub default: Option<PbAny>,
    /// `required`.
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    /// `enum`.
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<PbAny>,
    /// `additionalProperties`.
    #[prost(message, optional, boxed, tag = "21")]
    pub additional_properties: Option<Box<PbAdditionalProperties>>,
    /// `type`.
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<PbTypeItem>,
    /// `items`.
    #[prost(message, optional, tag = "23")]
    pub items: Option<PbItemsItem>,
    /// `allOf`.
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<PbSchema>,
    /// `properties`.
    #[prost(message, optional, tag = "25")]
    pub properties: Option<PbProperties>,
    /// `readOnly`.
    #[prost(bool, tag = "27")]
    pub read_only: bool,
    /// `x-…` extensions.
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<PbNamedAny>,
}

/// `openapi.v2.SecurityDefinitions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbSecurityDefinitions {
    /// `additional_properties`.
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<PbNamedSecurityDefinition>,
}

/// `openapi.v2.NamedSecurityDefinitionsItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbNamedSecurityDefinition {
    /// `name`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `value`.
    #[prost(message, optional, tag = "2")]
    pub value: Option<PbSecurityDefinitionsItem>,
}

/// `openapi.v2.SecurityDefinitionsItem` (an API key here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbSecurityDefinitionsItem {
    /// `api_key_security`.
    #[prost(message, optional, tag = "2")]
    pub api_key_security: Option<PbApiKeySecurity>,
}

/// `openapi.v2.ApiKeySecurity`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbApiKeySecurity {
    /// `type`.
    #[prost(string, tag = "1")]
    pub r#type: String,
    /// `name`.
    #[prost(string, tag = "2")]
    pub name: String,
    /// `in`.
    #[prost(string, tag = "3")]
    pub r#in: String,
    /// `description`.
    #[prost(string, tag = "4")]
    pub description: String,
}

/// `openapi.v2.SecurityRequirement`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbSecurityRequirement {
    /// `additional_properties`.
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<PbNamedStringArray>,
}

/// `openapi.v2.NamedStringArray`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbNamedStringArray {
    /// `name`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `value`.
    #[prost(message, optional, tag = "2")]
    pub value: Option<PbStringArray>,
}

/// `openapi.v2.StringArray`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbStringArray {
    /// `value`.
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

fn s(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key).map(string_array).unwrap_or_default()
}

/// The strings of a JSON array (others skipped); empty for a non-array.
fn string_array(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// `f(name, value)` for each member of the object at `key`; `None` without one.
fn members<T>(v: &Value, key: &str, f: impl Fn(&str, &Value) -> T) -> Option<Vec<T>> {
    v.get(key)
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(name, x)| f(name, x)).collect())
}

fn any(v: &Value) -> PbAny {
    PbAny {
        yaml: serde_json::to_string(v).expect("JSON values serialise"),
    }
}

fn extensions(v: &Value) -> Vec<PbNamedAny> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with("x-"))
                .map(|(k, x)| PbNamedAny {
                    name: k.clone(),
                    value: Some(any(x)),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pb_schema(v: &Value) -> PbSchema {
    let r#type = match v.get("type") {
        Some(Value::String(t)) => Some(PbTypeItem {
            value: vec![t.clone()],
        }),
        Some(Value::Array(_)) => Some(PbTypeItem {
            value: strings(v, "type"),
        }),
        _ => None,
    };
    let items = match v.get("items") {
        Some(Value::Array(a)) => Some(PbItemsItem {
            schema: a.iter().map(pb_schema).collect(),
        }),
        Some(i @ Value::Object(_)) => Some(PbItemsItem {
            schema: vec![pb_schema(i)],
        }),
        _ => None,
    };
    let additional_properties = match v.get("additionalProperties") {
        Some(Value::Bool(b)) => Some(Box::new(PbAdditionalProperties {
            oneof: Some(PbAdditionalKind::Boolean(*b)),
        })),
        Some(a @ Value::Object(_)) => Some(Box::new(PbAdditionalProperties {
            oneof: Some(PbAdditionalKind::Schema(Box::new(pb_schema(a)))),
        })),
        _ => None,
    };
    PbSchema {
        r#ref: s(v, "$ref"),
        format: s(v, "format"),
        title: s(v, "title"),
        description: s(v, "description"),
        default: v.get("default").map(any),
        required: strings(v, "required"),
        r#enum: v
            .get("enum")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(any).collect())
            .unwrap_or_default(),
        additional_properties,
        r#type,
        items,
        all_of: v
            .get("allOf")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(pb_schema).collect())
            .unwrap_or_default(),
        properties: members(v, "properties", named_schema).map(|additional_properties| {
            PbProperties {
                additional_properties,
            }
        }),
        read_only: flag(v, "readOnly"),
        vendor_extension: extensions(v),
    }
}

fn named_schema(name: &str, v: &Value) -> PbNamedSchema {
    PbNamedSchema {
        name: name.to_owned(),
        value: Some(pb_schema(v)),
    }
}

fn pb_parameter(p: &Value) -> PbParametersItem {
    let kind = if s(p, "in") == "body" {
        PbParameterKind::Body(PbBodyParameter {
            description: s(p, "description"),
            name: s(p, "name"),
            r#in: "body".into(),
            required: flag(p, "required"),
            schema: p.get("schema").map(|x| Box::new(pb_schema(x))),
        })
    } else {
        let required = flag(p, "required");
        let unique_items = flag(p, "uniqueItems");
        let sub = if s(p, "in") == "path" {
            PbNonBodyKind::Path(PbPathParameter {
                required,
                r#in: "path".into(),
                description: s(p, "description"),
                name: s(p, "name"),
                r#type: s(p, "type"),
                unique_items,
            })
        } else {
            PbNonBodyKind::Query(PbQueryParameter {
                required,
                r#in: s(p, "in"),
                description: s(p, "description"),
                name: s(p, "name"),
                r#type: s(p, "type"),
                unique_items,
            })
        };
        PbParameterKind::NonBody(PbNonBodyParameter { oneof: Some(sub) })
    };
    PbParametersItem {
        parameter: Some(PbParameter { oneof: Some(kind) }),
    }
}

fn pb_parameters(v: &Value) -> Vec<PbParametersItem> {
    v.get("parameters")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(pb_parameter).collect())
        .unwrap_or_default()
}

fn pb_operation(op: &Value) -> PbOperation {
    PbOperation {
        tags: strings(op, "tags"),
        description: s(op, "description"),
        operation_id: s(op, "operationId"),
        produces: strings(op, "produces"),
        consumes: strings(op, "consumes"),
        parameters: pb_parameters(op),
        responses: members(op, "responses", |code, r| PbNamedResponseValue {
            name: code.to_owned(),
            value: Some(PbResponseValue {
                response: Some(PbResponse {
                    description: s(r, "description"),
                    schema: r.get("schema").map(|x| PbSchemaItem {
                        schema: Some(pb_schema(x)),
                    }),
                }),
            }),
        })
        .map(|response_code| PbResponses { response_code }),
        schemes: strings(op, "schemes"),
        vendor_extension: extensions(op),
    }
}

/// The protobuf message of a Swagger 2.0 document built by [`document`].
pub fn to_protobuf(doc: &Value) -> PbDocument {
    let op = |item: &Value, m: &str| item.get(m).map(pb_operation);
    PbDocument {
        swagger: s(doc, "swagger"),
        info: doc.get("info").map(|i| PbInfo {
            title: s(i, "title"),
            version: s(i, "version"),
        }),
        paths: members(doc, "paths", |name, item| PbNamedPathItem {
            name: name.to_owned(),
            value: Some(PbPathItem {
                get: op(item, "get"),
                put: op(item, "put"),
                post: op(item, "post"),
                delete: op(item, "delete"),
                patch: op(item, "patch"),
                parameters: pb_parameters(item),
            }),
        })
        .map(|path| PbPaths { path }),
        definitions: members(doc, "definitions", named_schema).map(|additional_properties| {
            PbDefinitions {
                additional_properties,
            }
        }),
        security: doc
            .get("security")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_object)
                    .map(|req| PbSecurityRequirement {
                        additional_properties: req
                            .iter()
                            .map(|(name, scopes)| PbNamedStringArray {
                                name: name.clone(),
                                value: Some(PbStringArray {
                                    value: string_array(scopes),
                                }),
                            })
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        security_definitions: members(doc, "securityDefinitions", |name, x| {
            PbNamedSecurityDefinition {
                name: name.to_owned(),
                value: Some(PbSecurityDefinitionsItem {
                    api_key_security: Some(PbApiKeySecurity {
                        r#type: s(x, "type"),
                        name: s(x, "name"),
                        r#in: s(x, "in"),
                        description: s(x, "description"),
                    }),
                }),
            }
        })
        .map(|additional_properties| PbSecurityDefinitions {
            additional_properties,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_kind_has_a_definition_with_its_group_version_kind() {
        let doc = document();
        let defs = doc["definitions"].as_object().unwrap();
        for r in crate::catalogue::RESOURCES {
            let d = defs
                .get(r.schema)
                .unwrap_or_else(|| panic!("{} has no definition", r.schema));
            let gvks = d["x-kubernetes-group-version-kind"].as_array().unwrap();
            assert!(
                gvks.iter().any(|g| g["kind"] == r.gvk.kind
                    && g["group"] == r.gvk.group
                    && g["version"] == r.gvk.version),
                "{}",
                r.schema
            );
        }
        assert_eq!(doc["swagger"], "2.0");
    }

    #[test]
    fn references_and_shapes_are_swagger_2() {
        let text = serde_json::to_string(&document()).unwrap();
        assert!(!text.contains("#/components/schemas/"));
        assert!(!text.contains("\"oneOf\""));
        assert!(!text.contains("\"requestBody\""));
        let doc = document();
        let defs = &doc["definitions"];
        assert_eq!(
            defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"],
            json!({"type": "string", "format": "int-or-string"})
        );
        let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(
            containers["items"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.Container"
        );
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-action"], "patch");
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        let params = patch["parameters"].as_array().unwrap();
        assert_eq!(params[0]["in"], "body");
        assert!(
            params.iter().any(|p| p["name"] == "fieldManager"
                && p["in"] == "query"
                && p["type"] == "string")
        );
        assert!(
            patch["consumes"]
                .as_array()
                .unwrap()
                .contains(&json!("application/strategic-merge-patch+json"))
        );
        assert_eq!(
            patch["responses"]["200"]["schema"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.Pod"
        );
    }

    #[test]
    fn protobuf_form_round_trips_and_carries_extensions_as_yaml() {
        let served = served();
        let doc = PbDocument::decode(served.protobuf.clone()).unwrap();
        assert_eq!(doc.swagger, "2.0");
        let defs = doc.definitions.unwrap().additional_properties;
        let pod = defs
            .iter()
            .find(|d| d.name == "io.k8s.api.core.v1.Pod")
            .and_then(|d| d.value.clone())
            .unwrap();
        let gvk = pod
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-group-version-kind")
            .unwrap();
        let parsed: Value = serde_json::from_str(&gvk.value.as_ref().unwrap().yaml).unwrap();
        assert_eq!(
            parsed,
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        let spec = pod
            .properties
            .unwrap()
            .additional_properties
            .into_iter()
            .find(|p| p.name == "spec")
            .and_then(|p| p.value)
            .unwrap();
        assert_eq!(spec.r#ref, "#/definitions/io.k8s.api.core.v1.PodSpec");
        assert!(doc.paths.unwrap().path.len() > 20);
    }

    #[test]
    fn accept_headers_choose_a_form() {
        assert_eq!(negotiate(None), Some(Format::Json));
        assert_eq!(negotiate(Some(PROTOBUF_MEDIA_TYPE)), Some(Format::Protobuf));
        assert_eq!(
            negotiate(Some(PROTOBUF_CONTENT_TYPE)),
            Some(Format::Protobuf)
        );
        assert_eq!(negotiate(Some("application/json, */*")), Some(Format::Json));
        assert_eq!(
            negotiate(Some(
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0.9, application/json;q=0.5"
            )),
            Some(Format::Protobuf)
        );
        assert_eq!(negotiate(Some("text/html")), None);
        let etag = &served().etag;
        assert!(not_modified(Some(etag), etag));
        assert!(not_modified(Some(&format!("\"x\", {etag}")), etag));
        assert!(!not_modified(Some("\"other\""), etag));
        assert!(!not_modified(None, etag));
    }
}
