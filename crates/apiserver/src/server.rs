//! The HTTPS server: TLS (rustls, ALPN `h2` and `http/1.1`), bearer-token authentication,
//! discovery, `/version` and OpenAPI answered from the catalogue, and resource requests
//! answered through a [`Backend`] with content negotiation, Table output and streamed
//! watches. Every refusal is a `Status` whose `code` is the HTTP status.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::backend::{
    Backend, CollectionRef, DEFAULT_WATCH_TIMEOUT, DeleteOptions, Deleted, EventType,
    FieldValidation, GetOptions, ListOptions, LogOptions, ObjectRef, PatchRequest, WatchEvent,
    WatchOptions, WriteOptions,
};
use crate::negotiate::{self, BodyType, Output};
use crate::patch::PatchType;
use crate::router::{Query, ResourceRequest, Route, Verb, route};
use crate::status::{self, ApiError};
use crate::table::{self, IncludeObject};
use crate::tls::Credentials;
use crate::{discovery, openapi, protobuf};

/// The time Table cells are computed at.
fn wall_clock() -> Timestamp {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::new(
        since_epoch.as_secs() as i64,
        since_epoch.subsec_nanos() as i32,
    )
    .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A response body: whole or streamed.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Request bodies above this size are refused with 413 (the API server's limit is 3 MiB).
pub const DEFAULT_MAX_BODY: usize = 3 * 1024 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The API server: a backend, the credentials clients must present, and podrun's version.
pub struct ApiServer<B> {
    backend: Arc<B>,
    credentials: Credentials,
    build: String,
    max_body: usize,
}

impl<B> std::fmt::Debug for ApiServer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("build", &self.build)
            .finish_non_exhaustive()
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn respond(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    r
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    respond(
        code,
        "application/json",
        serde_json::to_vec(value).expect("JSON values serialise"),
    )
}

/// `GET /openapi/v2`: JSON or protobuf as `Accept` asks (406 for neither), with the
/// document's `ETag`, and `304 Not Modified` when `If-None-Match` names it.
fn openapi_v2_response(accept: Option<&str>, if_none_match: Option<&str>) -> Response<Body> {
    use crate::openapi_v2::{self, Format};
    let Some(format) = openapi_v2::negotiate(accept) else {
        return error_response(&ApiError::not_acceptable(&[
            "application/json",
            openapi_v2::PROTOBUF_MEDIA_TYPE,
        ]));
    };
    let served = openapi_v2::served();
    let mut r = if openapi_v2::not_modified(if_none_match, &served.etag) {
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        match format {
            Format::Json => respond(StatusCode::OK, "application/json", served.json.clone()),
            Format::Protobuf => respond(
                StatusCode::OK,
                openapi_v2::PROTOBUF_CONTENT_TYPE,
                served.protobuf.clone(),
            ),
        }
    };
    let headers = r.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&served.etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

/// The `Status` response for an error.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(code, "application/json", e.to_json())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn wants_aggregated(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|r| {
            negotiate::is_media_type(
                r,
                "application/json",
                &[
                    ("g", "apidiscovery.k8s.io"),
                    ("v", "v2"),
                    ("as", "APIGroupDiscoveryList"),
                ],
            )
        })
    })
}

fn field_validation(q: &Query) -> FieldValidation {
    match q.field_validation.as_deref() {
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        _ => FieldValidation::Warn,
    }
}

fn write_options(q: &Query) -> WriteOptions {
    WriteOptions {
        dry_run: q.dry_run.iter().any(|d| d == "All"),
        field_manager: q.field_manager.clone(),
        field_validation: field_validation(q),
        force: q.force.unwrap_or(false),
    }
}

fn list_options(q: &Query) -> ListOptions {
    ListOptions {
        label_selector: q.label_selector.clone(),
        field_selector: q.field_selector.clone(),
        resource_version: q.resource_version.clone(),
        resource_version_match: q.resource_version_match.clone(),
        limit: q.limit,
        continue_token: q.continue_token.clone(),
    }
}

fn other<'a>(q: &'a Query, name: &str) -> Option<&'a str> {
    q.other
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn other_bool(q: &Query, name: &str) -> Result<bool, ApiError> {
    other(q, name).map_or(Ok(false), |v| crate::router::parse_bool(name, v))
}

fn other_int(q: &Query, name: &str) -> Result<Option<i64>, ApiError> {
    other(q, name)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "{name}: Invalid value: {v:?}: strconv.ParseInt: parsing {v:?}: invalid syntax"
                ))
            })
        })
        .transpose()
}

fn log_options(q: &Query) -> Result<LogOptions, ApiError> {
    Ok(LogOptions {
        container: other(q, "container").map(str::to_owned),
        follow: other_bool(q, "follow")?,
        previous: other_bool(q, "previous")?,
        tail_lines: other_int(q, "tailLines")?,
        since_seconds: other_int(q, "sinceSeconds")?,
        since_time: other(q, "sinceTime").map(str::to_owned),
        timestamps: other_bool(q, "timestamps")?,
        limit_bytes: other_int(q, "limitBytes")?,
        stream: other(q, "stream").map(str::to_owned),
    })
}

/// Decodes a create or update body into a JSON object, with the paths of any fields a
/// JSON body gives twice (the last one counts, as in the API server).
fn decode_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(Value, Vec<(String, bool)>), ApiError> {
    let mut duplicates = Vec::new();
    let value = match negotiate::body_type(content_type)? {
        BodyType::Json => {
            duplicates = openapi::scan_fields(body);
            serde_json::from_slice::<Value>(body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the object provided is unrecognized (must be of type JSON): {e}"
                ))
            })?
        }
        BodyType::Yaml => {
            let text = std::str::from_utf8(body)
                .map_err(|e| ApiError::bad_request(format!("YAML body is not UTF-8: {e}")))?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
        }
        BodyType::Protobuf => protobuf::decode(body)?,
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the object provided is unrecognized (must be of type JSON object)",
        ));
    }
    Ok((value, duplicates))
}

/// Checks `kind`/`apiVersion` and the namespace of a body against the request, filling
/// the ones left out; applies field validation.
fn admit_body(
    req: &ResourceRequest,
    body: &mut Value,
    scan: &[(String, bool)],
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let gvk = match req.subresource {
        Some(s) if s.name == "scale" => s.kind,
        _ => req.resource.gvk,
    };
    let api_version = gvk.api_version();
    match body.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => body["apiVersion"] = json!(api_version),
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match body.get("kind").and_then(Value::as_str) {
        None | Some("") => body["kind"] = json!(gvk.kind),
        Some(k) if k == gvk.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                gvk.kind
            )));
        }
    }
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = json!({});
    }
    if !req.resource.namespaced()
        && let Some(meta) = body["metadata"].as_object_mut()
    {
        // A cluster-scoped object has no namespace, whatever the body says.
        meta.remove("namespace");
    }
    if req.resource.namespaced() {
        let ns = req.namespace.clone().unwrap_or_default();
        match body["metadata"].get("namespace").and_then(Value::as_str) {
            None | Some("") => body["metadata"]["namespace"] = json!(ns),
            Some(n) if n == ns => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    if let Some(name) = &req.name
        && req.subresource.is_none()
    {
        match body["metadata"].get("name").and_then(Value::as_str) {
            None | Some("") => body["metadata"]["name"] = json!(name),
            Some(n) if n == name => {}
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
    }
    let schema = match req.subresource {
        Some(s) if s.name == "scale" => "io.k8s.api.autoscaling.v1.Scale",
        _ => req.resource.schema,
    };
    let validation = field_validation(&req.query);
    let unknown = openapi::unknown_fields(schema, body, validation != FieldValidation::Strict);
    let list = openapi::strict_messages(scan, &unknown);
    if !list.is_empty() {
        match validation {
            FieldValidation::Strict => {
                // As the API server words a strict decoding failure.
                return Err(ApiError::bad_request(format!(
                    "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
                    list.join(", "),
                    kind = gvk.kind,
                    version = gvk.version,
                )));
            }
            FieldValidation::Warn => warnings.extend(list),
            FieldValidation::Ignore => {}
        }
    }
    Ok(())
}

fn with_kind(resource: &crate::catalogue::Resource, mut object: Value) -> Value {
    if let Value::Object(m) = &mut object {
        m.entry("kind").or_insert_with(|| json!(resource.gvk.kind));
        m.entry("apiVersion")
            .or_insert_with(|| json!(resource.gvk.api_version()));
    }
    object
}

/// Renders one object as `output` asks.
fn render_object(
    req: &ResourceRequest,
    output: Output,
    object: Value,
    code: StatusCode,
    now: Timestamp,
) -> Result<Response<Body>, ApiError> {
    let object = with_kind(req.resource, object);
    match output {
        Output::Json => Ok(json_response(code, &object)),
        Output::PartialObjectMetadata(_) => Ok(json_response(
            code,
            &table::partial_object_metadata(&object),
        )),
        Output::Table(_) if req.subresource.is_some() => Ok(json_response(code, &object)),
        Output::Table(_) => {
            let include = IncludeObject::parse(req.query.include_object.as_deref())?;
            let rv = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let t = table::table(req.resource, &[object], &rv, None, include, now)?;
            Ok(respond(
                code,
                &output.content_type(),
                serde_json::to_vec(&t).expect("serialises"),
            ))
        }
    }
}

/// A list's `metadata`, the fields in the order of their JSON names.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    r#continue: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining_item_count: Option<i64>,
    resource_version: &'a str,
}

/// A `<Kind>List` or `PartialObjectMetadataList`, serialised at once.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListBody<'a, T> {
    api_version: &'a str,
    items: T,
    kind: &'a str,
    metadata: ListMeta<'a>,
}

/// Only its `metadata`: an item of a `PartialObjectMetadataList`.
#[derive(serde::Serialize)]
struct MetadataItem<'a> {
    metadata: &'a serde_json::value::RawValue,
}

fn render_list(
    req: &ResourceRequest,
    output: Output,
    list: crate::backend::ObjectList,
    now: Timestamp,
) -> Result<Response<Body>, ApiError> {
    let continue_token = list.continue_token.as_deref().filter(|c| !c.is_empty());
    let metadata = ListMeta {
        r#continue: continue_token,
        remaining_item_count: list.remaining_item_count,
        resource_version: &list.resource_version,
    };
    let serialised = |body: Result<Vec<u8>, serde_json::Error>| {
        body.map_err(|e| ApiError::internal(format!("cannot encode the list: {e}")))
    };
    match output {
        // The items are copied as the store holds them.
        Output::Json => {
            let body = serialised(serde_json::to_vec(&ListBody {
                api_version: &req.resource.gvk.api_version(),
                items: &list.items,
                kind: &format!("{}List", req.resource.gvk.kind),
                metadata,
            }))?;
            Ok(respond(StatusCode::OK, "application/json", body))
        }
        Output::PartialObjectMetadata(v) => {
            let empty = serde_json::value::RawValue::from_string("{}".into())
                .map_err(ApiError::internal)?;
            let items = list
                .items
                .iter()
                .map(|o| {
                    Ok(MetadataItem {
                        metadata: table::encoded_metadata(o)?.unwrap_or(&empty),
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            let body = serialised(serde_json::to_vec(&ListBody {
                api_version: &format!("meta.k8s.io/{v}"),
                items,
                kind: "PartialObjectMetadataList",
                metadata,
            }))?;
            Ok(respond(StatusCode::OK, "application/json", body))
        }
        Output::Table(_) => {
            let include = IncludeObject::parse(req.query.include_object.as_deref())?;
            let body = table::table_encoded(
                req.resource,
                &list.items,
                &list.resource_version,
                continue_token,
                include,
                now,
            )?;
            Ok(respond(StatusCode::OK, &output.content_type(), body))
        }
    }
}

/// One watch event as a line of the stream, in the representation the client accepted.
pub fn encode_watch_event(
    req: &ResourceRequest,
    output: Output,
    include: IncludeObject,
    event: &WatchEvent,
    first: bool,
    now: Timestamp,
) -> Result<Vec<u8>, ApiError> {
    let value = match (output, event.event_type) {
        (Output::Table(_), EventType::Added | EventType::Modified | EventType::Deleted) => {
            table::watch_event(
                req.resource,
                event.event_type.as_str(),
                &event.object,
                first,
                include,
                now,
            )?
        }
        (
            Output::PartialObjectMetadata(_),
            EventType::Added | EventType::Modified | EventType::Deleted,
        ) => {
            json!({"type": event.event_type.as_str(), "object": table::partial_object_metadata(&event.object)})
        }
        _ => json!({"type": event.event_type.as_str(), "object": event.object}),
    };
    let mut line = serde_json::to_vec(&value).expect("serialises");
    line.push(b'\n');
    Ok(line)
}

impl<B: Backend> ApiServer<B> {
    /// A server answering through `backend`, accepting `credentials`' token.
    pub fn new(backend: Arc<B>, credentials: Credentials, build: impl Into<String>) -> Self {
        Self {
            backend,
            credentials,
            build: build.into(),
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>, local: SocketAddr) -> Response<Body> {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let response = match self.answer(req, local).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
        response
    }

    async fn answer(
        &self,
        req: Request<Incoming>,
        local: SocketAddr,
    ) -> Result<Response<Body>, ApiError> {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if !self.credentials.authorizes(auth) {
            return Err(ApiError::unauthorized());
        }
        let query = req.uri().query().unwrap_or("").to_owned();
        let accept = header_str(req.headers(), header::ACCEPT).map(str::to_owned);
        let r = route(req.method(), req.uri().path(), &query)?;
        let not_found = ApiError::path_not_found;
        match r {
            Route::Version => Ok(json_response(
                StatusCode::OK,
                &discovery::version_info(&self.build),
            )),
            Route::Health => Ok(respond(StatusCode::OK, "text/plain; charset=utf-8", "ok")),
            Route::CoreDiscovery => Ok(if wants_aggregated(accept.as_deref()) {
                respond(
                    StatusCode::OK,
                    discovery::AGGREGATED_CONTENT_TYPE,
                    serde_json::to_vec(&discovery::aggregated_core()).expect("serialises"),
                )
            } else {
                json_response(StatusCode::OK, &discovery::api_versions(&local.to_string()))
            }),
            Route::GroupDiscovery => Ok(if wants_aggregated(accept.as_deref()) {
                respond(
                    StatusCode::OK,
                    discovery::AGGREGATED_CONTENT_TYPE,
                    serde_json::to_vec(&discovery::aggregated_groups()).expect("serialises"),
                )
            } else {
                json_response(StatusCode::OK, &discovery::api_group_list())
            }),
            Route::Group(g) => discovery::api_group_document(&g)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(not_found),
            Route::ResourceList { group, version } => {
                discovery::api_resource_list(&group, &version)
                    .map(|d| json_response(StatusCode::OK, &d))
                    .ok_or_else(not_found)
            }
            Route::OpenApiIndex => Ok(respond(
                StatusCode::OK,
                "application/json",
                Bytes::from_static(openapi::index_bytes()),
            )),
            Route::OpenApiV2 => {
                let if_none_match = header_str(req.headers(), header::IF_NONE_MATCH);
                Ok(openapi_v2_response(accept.as_deref(), if_none_match))
            }
            Route::OpenApiDocument { group, version } => openapi::document_bytes(&group, &version)
                .map(|d| respond(StatusCode::OK, "application/json", Bytes::from_static(d)))
                .ok_or_else(not_found),
            Route::Resource(rr) => {
                let deprecated = deprecation_warning(rr.resource);
                let mut r = self.resource(*rr, req, accept.as_deref()).await?;
                if let Some(w) = deprecated {
                    add_warnings(&mut r, &[w.to_owned()]);
                }
                Ok(r)
            }
        }
    }

    async fn read_body(&self, body: Incoming) -> Result<Bytes, ApiError> {
        match Limited::new(body, self.max_body).collect().await {
            Ok(b) => Ok(b.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(ApiError::request_entity_too_large(self.max_body))
            }
            Err(e) => Err(ApiError::bad_request(format!(
                "error reading the request body: {e}"
            ))),
        }
    }

    async fn resource(
        &self,
        rr: ResourceRequest,
        req: Request<Incoming>,
        accept: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let now = wall_clock();
        let list = matches!(rr.verb, Verb::List | Verb::Watch | Verb::DeleteCollection);
        let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_owned);
        let sub = rr.subresource.map(|s| s.name);
        let object_ref = |rr: &ResourceRequest| ObjectRef {
            resource: rr.resource,
            namespace: rr.namespace.clone(),
            name: rr.name.clone().unwrap_or_default(),
            subresource: rr.subresource.map(|s| s.name),
        };
        let collection = CollectionRef {
            resource: rr.resource,
            namespace: rr.namespace.clone(),
        };
        match (rr.verb, sub) {
            (_, Some("log")) => {
                let stream = self
                    .backend
                    .log(object_ref(&rr), log_options(&rr.query)?)
                    .await?;
                let body = StreamBody::new(stream.map(|b| Ok::<_, Infallible>(Frame::data(b))));
                let mut r = Response::new(body.boxed_unsync());
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                Ok(r)
            }
            (_, Some("exec")) => crate::exec::serve(self.backend.clone(), &rr, req).await,
            (Verb::Get, _) => {
                let output = negotiate::output(accept, false)?;
                let options = GetOptions {
                    resource_version: rr.query.resource_version.clone(),
                };
                let object = self.backend.get(object_ref(&rr), options).await?;
                render_object(&rr, output, object, StatusCode::OK, now)
            }
            (Verb::List, _) => {
                let output = negotiate::output(accept, true)?;
                let list = self
                    .backend
                    .list(collection, list_options(&rr.query))
                    .await?;
                render_list(&rr, output, list, now)
            }
            (Verb::Watch, _) => self.watch(rr, collection, accept).await,
            (Verb::Create, _) => {
                let output = negotiate::output(accept, list)?;
                let bytes = self.read_body(req.into_body()).await?;
                let (mut body, duplicates) = decode_body(content_type.as_deref(), &bytes)?;
                let mut warnings = Vec::new();
                admit_body(&rr, &mut body, &duplicates, &mut warnings)?;
                let created = self
                    .backend
                    .create(collection, body, write_options(&rr.query))
                    .await?;
                let mut r = render_object(&rr, output, created, StatusCode::CREATED, now)?;
                add_warnings(&mut r, &warnings);
                Ok(r)
            }
            (Verb::Update, _) => {
                let output = negotiate::output(accept, false)?;
                let bytes = self.read_body(req.into_body()).await?;
                let (mut body, duplicates) = decode_body(content_type.as_deref(), &bytes)?;
                let mut warnings = Vec::new();
                admit_body(&rr, &mut body, &duplicates, &mut warnings)?;
                let updated = self
                    .backend
                    .update(object_ref(&rr), body, write_options(&rr.query))
                    .await?;
                let mut r = render_object(&rr, output, updated, StatusCode::OK, now)?;
                add_warnings(&mut r, &warnings);
                Ok(r)
            }
            (Verb::Patch, _) => {
                let output = negotiate::output(accept, false)?;
                let patch_type = content_type
                    .as_deref()
                    .and_then(PatchType::from_content_type)
                    .ok_or_else(|| ApiError::unsupported_media_type(PatchType::CONTENT_TYPES))?;
                let body = self.read_body(req.into_body()).await?;
                let patched = self
                    .backend
                    .patch(
                        object_ref(&rr),
                        PatchRequest { patch_type, body },
                        write_options(&rr.query),
                    )
                    .await?;
                let code = if patched.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                render_object(&rr, output, patched.object, code, now)
            }
            (Verb::Delete, _) => {
                let output = negotiate::output(accept, false)?;
                let bytes = self.read_body(req.into_body()).await?;
                let options = delete_options(&rr.query, &bytes)?;
                match self.backend.delete(object_ref(&rr), options).await? {
                    Deleted::Gone { uid } => Ok(respond(
                        StatusCode::OK,
                        "application/json",
                        status::delete_success(rr.resource, rr.name.as_deref().unwrap_or(""), &uid),
                    )),
                    Deleted::Object(o) => render_object(&rr, output, o, StatusCode::OK, now),
                }
            }
            (Verb::DeleteCollection, _) => {
                let output = negotiate::output(accept, true)?;
                let bytes = self.read_body(req.into_body()).await?;
                let options = delete_options(&rr.query, &bytes)?;
                let list = self
                    .backend
                    .delete_collection(collection, list_options(&rr.query), options)
                    .await?;
                render_list(&rr, output, list, now)
            }
        }
    }

    async fn watch(
        &self,
        rr: ResourceRequest,
        collection: CollectionRef,
        accept: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let output = negotiate::output(accept, true)?;
        let include = IncludeObject::parse(rr.query.include_object.as_deref())?;
        let q = &rr.query;
        let options = WatchOptions {
            label_selector: q.label_selector.clone(),
            field_selector: q.field_selector.clone(),
            resource_version: q.resource_version.clone(),
            resource_version_match: q.resource_version_match.clone(),
            allow_bookmarks: q.allow_watch_bookmarks,
            send_initial_events: q.send_initial_events,
        };
        let timeout = q
            .timeout_seconds
            .filter(|t| *t > 0)
            .map_or(DEFAULT_WATCH_TIMEOUT, |t| Duration::from_secs(t as u64));
        let events = self.backend.watch(collection, options).await?;
        let deadline = tokio::time::sleep(timeout);
        let mut first = true;
        let lines = events.take_until(deadline).map(move |event| {
            let line = match encode_watch_event(&rr, output, include, &event, first, wall_clock()) {
                Ok(l) => l,
                Err(e) => {
                    let mut l =
                        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_value()}))
                            .expect("serialises");
                    l.push(b'\n');
                    l
                }
            };
            if matches!(
                event.event_type,
                EventType::Added | EventType::Modified | EventType::Deleted
            ) {
                first = false;
            }
            Ok::<_, Infallible>(Frame::data(Bytes::from(line)))
        });
        let mut r = Response::new(StreamBody::new(lines).boxed_unsync());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&output.content_type()).expect("media types are valid headers"),
        );
        Ok(r)
    }
}

/// The API server's warning for a deprecated kind, sent with every answer on it.
fn deprecation_warning(resource: &crate::catalogue::Resource) -> Option<&'static str> {
    (resource.gvk.group.is_empty() && resource.plural == "endpoints")
        .then_some("v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice")
}

fn add_warnings(r: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let text = format!(
            "299 - {}",
            serde_json::to_string(w).expect("strings serialise")
        );
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append("Warning", v);
        }
    }
}

fn delete_options(q: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
        o.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        o.propagation_policy = v
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_owned);
        o.precondition_uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        o.precondition_resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned);
        o.dry_run = v
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|d| d == "All"));
    }
    if let Some(g) = q.grace_period_seconds {
        o.grace_period_seconds = Some(g);
    }
    if let Some(p) = &q.propagation_policy {
        o.propagation_policy = Some(p.clone());
    }
    if q.dry_run.iter().any(|d| d == "All") {
        o.dry_run = true;
    }
    if let Some(p) = o.propagation_policy.as_deref()
        && !matches!(p, "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    Ok(o)
}

/// Where the server listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 6443);

/// A bound listener with the credentials and kubeconfig that reach it.
#[derive(Debug)]
pub struct Bound {
    /// The socket, ready for [`serve`].
    pub listener: TcpListener,
    /// The address it is bound to (the port is known even when 0 was asked for).
    pub addr: SocketAddr,
    /// CA, serving certificate and token from the state directory.
    pub credentials: Credentials,
    /// The kubeconfig written for this address.
    pub kubeconfig: std::path::PathBuf,
}

/// Loads or creates the credentials in `state_dir`, binds `listen` and writes the
/// kubeconfig for the bound address. An address other than loopback is allowed but warned
/// about: the API then answers, with a token, to every host that can reach it.
pub async fn bind(
    state_dir: &std::path::Path,
    listen: SocketAddr,
) -> Result<Bound, crate::tls::CredentialsError> {
    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "the API server listens beyond loopback; anyone who can reach it and holds the token controls this node");
    }
    let extra: Vec<String> = if listen.ip().is_unspecified() || listen.ip().is_loopback() {
        Vec::new()
    } else {
        vec![listen.ip().to_string()]
    };
    let credentials = Credentials::load_or_create(state_dir, &extra)?;
    let io = |source: std::io::Error| crate::tls::CredentialsError::Io {
        path: state_dir.to_owned(),
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let kubeconfig = credentials.write_kubeconfig(&format!("https://{host}:{}", addr.port()))?;
    Ok(Bound {
        listener,
        addr,
        credentials,
        kubeconfig,
    })
}

/// Serves HTTPS on `listener` until `shutdown` completes: TLS with `tls`, then HTTP/1.1 or
/// HTTP/2 as ALPN chose, each request answered by `server`.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<ApiServer<B>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let local = listener.local_addr()?;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = service_fn(move |req: Request<Incoming>| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(req, local).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A client that does not finish a request head in time is dropped.
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Route;

    fn request(method: http::Method, path: &str, query: &str) -> ResourceRequest {
        match route(&method, path, query).unwrap() {
            Route::Resource(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bodies_are_checked_against_the_path() {
        let create = request(
            http::Method::POST,
            "/apis/apps/v1/namespaces/default/deployments",
            "fieldValidation=Strict",
        );
        let mut w = Vec::new();
        let mut body =
            json!({"metadata": {"name": "web"}, "spec": {"selector": {}, "template": {}}});
        admit_body(&create, &mut body, &[], &mut w).unwrap();
        assert_eq!(body["apiVersion"], "apps/v1");
        assert_eq!(body["kind"], "Deployment");
        assert_eq!(body["metadata"]["namespace"], "default");
        let cases = [
            (
                json!({"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "web"}}),
                "the API version in the data (v1) does not match the expected API version (apps/v1)",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"}}),
                "the kind in the data (ReplicaSet) does not match the expected kind (Deployment)",
            ),
            (
                json!({"metadata": {"name": "web", "namespace": "other"}}),
                "the namespace of the provided object does not match the namespace sent on the request",
            ),
            (
                json!({"metadata": {"name": "web"}, "spec": {"replica": 2}}),
                "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replica\"",
            ),
        ];
        for (mut body, want) in cases {
            let e = admit_body(&create, &mut body, &[], &mut w).unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (400, want));
        }
        let update = request(http::Method::PUT, "/api/v1/namespaces/web", "");
        let mut body = json!({"metadata": {"name": "other"}});
        let e = admit_body(&update, &mut body, &[], &mut w).unwrap_err();
        assert_eq!(
            e.message,
            "the name of the object (other) does not match the name on the URL (web)"
        );
        let mut body = json!({"metadata": {"name": "web", "namespace": "stray"}, "bogus": 1});
        admit_body(&update, &mut body, &[], &mut w).unwrap();
        assert!(body["metadata"].get("namespace").is_none());
        assert!(body.get("bogus").is_none(), "Warn drops unknown fields");
        assert_eq!(w, ["unknown field \"bogus\""]);
        let scale = request(
            http::Method::PUT,
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
            "",
        );
        let mut body = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3}});
        admit_body(&scale, &mut body, &[], &mut Vec::new()).unwrap();
        assert_eq!(
            (body["apiVersion"].as_str(), body["kind"].as_str()),
            (Some("autoscaling/v1"), Some("Scale"))
        );
    }

    #[test]
    fn duplicate_fields_are_strict_errors_and_warnings() {
        let body = br#"{"metadata": {"name": "a", "name": "b"}, "data": {"k": "1"}, "dta": 1}"#;
        let (mut value, dups) = decode_body(Some("application/json"), body).unwrap();
        assert!(dups.contains(&("metadata.name".to_owned(), true)));
        assert_eq!(value["metadata"]["name"], "b");
        let strict = request(
            http::Method::POST,
            "/api/v1/namespaces/default/configmaps",
            "fieldValidation=Strict",
        );
        let e = admit_body(&strict, &mut value.clone(), &dups, &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.message,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"metadata.name\", unknown field \"dta\""
        );
        let warn = request(
            http::Method::POST,
            "/api/v1/namespaces/default/configmaps",
            "",
        );
        let mut w = Vec::new();
        admit_body(&warn, &mut value, &dups, &mut w).unwrap();
        assert_eq!(
            w,
            ["duplicate field \"metadata.name\"", "unknown field \"dta\""]
        );
    }

    #[test]
    fn log_options_from_the_query() {
        let r = request(
            http::Method::GET,
            "/api/v1/namespaces/default/pods/sleep/log",
            "container=istio-proxy&follow=true&previous=1&tailLines=10&sinceSeconds=60&timestamps=true&limitBytes=500&stream=Stderr",
        );
        let o = log_options(&r.query).unwrap();
        assert_eq!(
            o,
            LogOptions {
                container: Some("istio-proxy".into()),
                follow: true,
                previous: true,
                tail_lines: Some(10),
                since_seconds: Some(60),
                since_time: None,
                timestamps: true,
                limit_bytes: Some(500),
                stream: Some("Stderr".into()),
            }
        );
        let bad = request(
            http::Method::GET,
            "/api/v1/namespaces/default/pods/sleep/log",
            "tailLines=ten",
        );
        assert_eq!(log_options(&bad.query).unwrap_err().code, 400);
        let bad = request(
            http::Method::GET,
            "/api/v1/namespaces/default/pods/sleep/log",
            "follow=yes",
        );
        assert_eq!(log_options(&bad.query).unwrap_err().code, 400);
    }

    #[test]
    fn delete_options_from_body_and_query() {
        let (q, _) = crate::router::parse_query("gracePeriodSeconds=0").unwrap();
        let o = delete_options(&q, br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground","gracePeriodSeconds":30,"preconditions":{"uid":"u1"},"dryRun":["All"]}"#).unwrap();
        assert_eq!(o.grace_period_seconds, Some(0));
        assert_eq!(o.propagation_policy.as_deref(), Some("Foreground"));
        assert_eq!(o.precondition_uid.as_deref(), Some("u1"));
        assert!(o.dry_run);
        assert_eq!(
            delete_options(&Query::default(), b"  ").unwrap(),
            DeleteOptions::default()
        );
        let (q, _) = crate::router::parse_query("propagationPolicy=Later").unwrap();
        assert_eq!(delete_options(&q, b"").unwrap_err().code, 400);
        assert_eq!(
            delete_options(&Query::default(), b"{").unwrap_err().code,
            400
        );
    }

    #[test]
    fn aggregated_discovery_is_chosen_by_accept() {
        assert!(wants_aggregated(Some(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        )));
        assert!(!wants_aggregated(Some(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        )));
        assert!(!wants_aggregated(Some("application/json, */*")));
        assert!(!wants_aggregated(None));
    }

    #[test]
    fn watch_lines_in_each_representation() {
        let r = request(
            http::Method::GET,
            "/api/v1/namespaces/default/pods",
            "watch=true",
        );
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "resourceVersion": "5"}, "spec": {"containers": []}});
        let now = Timestamp::UNIX_EPOCH;
        let ev = WatchEvent {
            event_type: EventType::Modified,
            object: pod.clone(),
        };
        let line =
            encode_watch_event(&r, Output::Json, IncludeObject::Metadata, &ev, true, now).unwrap();
        assert!(line.ends_with(b"\n"));
        assert_eq!(
            serde_json::from_slice::<Value>(&line).unwrap(),
            json!({"type": "MODIFIED", "object": pod})
        );
        let line = encode_watch_event(
            &r,
            Output::Table("v1"),
            IncludeObject::Metadata,
            &ev,
            false,
            now,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["object"]["kind"], "Table");
        assert_eq!(v["object"]["columnDefinitions"], Value::Null);
        let bookmark = WatchEvent {
            event_type: EventType::Bookmark,
            object: json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}}),
        };
        let line = encode_watch_event(
            &r,
            Output::Table("v1"),
            IncludeObject::Metadata,
            &bookmark,
            false,
            now,
        )
        .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&line).unwrap()["object"]["kind"],
            "Pod"
        );
        let line = encode_watch_event(
            &r,
            Output::PartialObjectMetadata("v1"),
            IncludeObject::Metadata,
            &ev,
            true,
            now,
        )
        .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&line).unwrap()["object"]["kind"],
            "PartialObjectMetadata"
        );
    }

    #[tokio::test]
    async fn bind_writes_a_kubeconfig_for_the_bound_port() {
        let dir = tempfile::tempdir().unwrap();
        let b = bind(dir.path(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        assert_ne!(b.addr.port(), 0);
        let text = std::fs::read_to_string(&b.kubeconfig).unwrap();
        assert!(
            text.contains(&format!("server: \"https://127.0.0.1:{}\"", b.addr.port())),
            "{text}"
        );
        drop(b);
        // All interfaces: clients are pointed at loopback; the credentials are kept.
        let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
        let b = bind(dir.path(), "0.0.0.0:0".parse().unwrap())
            .await
            .unwrap();
        let text = std::fs::read_to_string(&b.kubeconfig).unwrap();
        assert!(
            text.contains(&format!("server: \"https://127.0.0.1:{}\"", b.addr.port())),
            "{text}"
        );
        assert_eq!(format!("{}\n", b.credentials.token), token);
        assert_eq!(DEFAULT_LISTEN.to_string(), "127.0.0.1:6443");
    }
}
