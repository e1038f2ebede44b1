//! Application probes and lifecycle hooks served on the agent status port (15020).
//!
//! The injector rewrites the app containers' `httpGet`, `tcpSocket` and `grpc` probes and
//! hooks into `httpGet` calls to `/app-health/<container>/{readyz,livez,startupz}` and
//! `/app-lifecycle/<container>/{prestopz,poststartz}` on the status port, and records the
//! original handlers in `ISTIO_KUBE_APP_PROBERS` (spec `mesh-sidecar.md` §1.8.5, §3.6).
//! This module parses that record ([`parse_app_probers`]) and runs one stored handler
//! against the app when the kubelet calls its path ([`run`]).
//!
//! Every connection to the app leaves from `127.0.0.6` (`::6` for IPv6), the address the
//! capture rules let through untouched, so a probe reaches the app directly instead of
//! looping back into the inbound listener. Nothing is kept alive between probes, as the
//! kubelet keeps nothing alive either.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use podrun_prober::redirect;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};

/// The environment variable the injector stores the original handlers in.
pub const ENV_NAME: &str = "ISTIO_KUBE_APP_PROBERS";

/// Most bytes of the app's response body passed back to the kubelet (Istio's 10 KiB).
pub const MAX_BODY: usize = 10 * 1024;

/// Probe timeout when the record has no `timeoutSeconds` (Kubernetes' default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// Request headers that belong to one hop and are not forwarded to the app.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// What one stored handler does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// GET `path` on the app's `port`.
    Http(HttpProbe),
    /// Open a TCP connection to the app's `port`.
    Tcp {
        /// Container port.
        port: u16,
    },
    /// Call `grpc.health.v1.Health/Check` on the app's `port`.
    Grpc {
        /// Container port.
        port: u16,
        /// The `service` field of the health check request (empty = the server).
        service: String,
    },
}

/// A stored `httpGet` handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// Container port (named ports are resolved by the injector).
    pub port: u16,
    /// Path and query sent to the app.
    pub path: PathAndQuery,
    /// `scheme: HTTPS`: the app expects TLS.
    pub https: bool,
    /// The probe's own `httpHeaders`, applied over the kubelet's headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// One stored handler and its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppProbe {
    /// What to do.
    pub action: ProbeAction,
    /// How long the whole check may take (`timeoutSeconds`, default 1 s).
    pub timeout: Duration,
}

/// The parsed `ISTIO_KUBE_APP_PROBERS`: handlers keyed by their status-port path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppProbers {
    by_path: BTreeMap<String, AppProbe>,
}

impl AppProbers {
    /// The handler for a status-port path, e.g. `/app-health/web/readyz`.
    pub fn get(&self, path: &str) -> Option<&AppProbe> {
        self.by_path.get(path)
    }

    /// Number of stored handlers.
    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    /// Whether no handler is stored.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// Paths and handlers, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AppProbe)> {
        self.by_path.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// `ISTIO_KUBE_APP_PROBERS` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AppProbersError {
    /// Not JSON at all.
    #[error("{ENV_NAME} is not valid JSON: {0}")]
    Json(String),
    /// JSON, but not an object keyed by path.
    #[error("{ENV_NAME} must be a JSON object keyed by probe path")]
    NotObject,
    /// A key is not a status-port probe path.
    #[error(
        "{ENV_NAME}: invalid path {0:?}: expected /app-health/<container>/<readyz|livez|startupz> \
         or /app-lifecycle/<container>/<prestopz|poststartz>"
    )]
    Path(String),
    /// A handler is malformed.
    #[error("{ENV_NAME} entry {path:?}: {reason}")]
    Prober {
        /// The entry's path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Whether `path` has the shape Istio accepts for a stored handler:
/// `/<app-health|app-lifecycle>/<container>/<livez|readyz|startupz|prestopz|poststartz>`.
pub fn is_probe_path(path: &str) -> bool {
    let mut parts = path.split('/');
    let (Some(""), Some(kind), Some(container), Some(check), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    matches!(kind, "app-health" | "app-lifecycle")
        && !container.is_empty()
        && matches!(
            check,
            "livez" | "readyz" | "startupz" | "prestopz" | "poststartz"
        )
}

/// Parses `ISTIO_KUBE_APP_PROBERS`, e.g.
/// `{"/app-health/web/readyz":{"httpGet":{"path":"/ready","port":8080},"timeoutSeconds":2}}`.
/// Empty text means no handlers.
pub fn parse_app_probers(json: &str) -> Result<AppProbers, AppProbersError> {
    let trimmed = json.trim();
    if trimmed.is_empty() {
        return Ok(AppProbers::default());
    }
    let value: Value =
        serde_json::from_str(trimmed).map_err(|e| AppProbersError::Json(e.to_string()))?;
    let Value::Object(entries) = value else {
        return Err(AppProbersError::NotObject);
    };
    let mut by_path = BTreeMap::new();
    for (path, record) in entries {
        if !is_probe_path(&path) {
            return Err(AppProbersError::Path(path));
        }
        let probe = parse_record(&record).map_err(|reason| AppProbersError::Prober {
            path: path.clone(),
            reason,
        })?;
        by_path.insert(path, probe);
    }
    Ok(AppProbers { by_path })
}

fn parse_record(record: &Value) -> Result<AppProbe, String> {
    let obj = record.as_object().ok_or("not a JSON object")?;
    let kinds: Vec<&str> = ["httpGet", "tcpSocket", "grpc"]
        .into_iter()
        .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    let action = match kinds.as_slice() {
        ["httpGet"] => ProbeAction::Http(parse_http(&obj["httpGet"])?),
        ["tcpSocket"] => ProbeAction::Tcp {
            port: port_of(&obj["tcpSocket"])?,
        },
        ["grpc"] => {
            let grpc = &obj["grpc"];
            let service = match grpc.get("service") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => return Err(format!("grpc.service must be a string, got {other}")),
            };
            ProbeAction::Grpc {
                port: port_of(grpc)?,
                service,
            }
        }
        _ => return Err("must have exactly one of httpGet, tcpSocket or grpc".into()),
    };
    let timeout = match obj.get("timeoutSeconds") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT,
        Some(v) => match v.as_u64() {
            Some(0) => DEFAULT_TIMEOUT,
            Some(s) => Duration::from_secs(s),
            None => return Err(format!("timeoutSeconds must be a whole number, got {v}")),
        },
    };
    Ok(AppProbe { action, timeout })
}

/// The handler's `port`, which must be a number: the injector resolves named ports.
fn port_of(handler: &Value) -> Result<u16, String> {
    let port = handler.get("port").ok_or("missing port")?;
    port.as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port must be a number from 1 to 65535, got {port}"))
}

fn parse_http(handler: &Value) -> Result<HttpProbe, String> {
    let port = port_of(handler)?;
    let path = match handler.get("path") {
        None | Some(Value::Null) => "/".to_string(),
        Some(Value::String(p)) if p.is_empty() => "/".to_string(),
        Some(Value::String(p)) if p.starts_with('/') => p.clone(),
        Some(Value::String(p)) => format!("/{p}"),
        Some(other) => return Err(format!("httpGet.path must be a string, got {other}")),
    };
    let path = PathAndQuery::from_str(&path)
        .map_err(|e| format!("httpGet.path {path:?} is not a valid request path: {e}"))?;
    let https = match handler.get("scheme") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("HTTP") => false,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("HTTPS") => true,
        Some(other) => {
            return Err(format!("httpGet.scheme must be HTTP or HTTPS, got {other}"));
        }
    };
    let mut headers = Vec::new();
    if let Some(list) = handler.get("httpHeaders").filter(|v| !v.is_null()) {
        let list = list
            .as_array()
            .ok_or("httpGet.httpHeaders must be a list")?;
        for h in list {
            let name = h.get("name").and_then(Value::as_str).unwrap_or_default();
            let value = h.get("value").and_then(Value::as_str).unwrap_or_default();
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("httpGet.httpHeaders: invalid header name {name:?}"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("httpGet.httpHeaders: invalid value for {name}"))?;
            headers.push((name, value));
        }
    }
    Ok(HttpProbe {
        port,
        path,
        https,
        headers,
    })
}

/// Where probes go and where they come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The app's address: the pod IP (`INSTANCE_IP`), or loopback.
    pub destination: IpAddr,
    /// Source address for IPv4 destinations (`127.0.0.6`).
    pub source_v4: Ipv4Addr,
    /// Source address for IPv6 destinations (`::6`).
    pub source_v6: Ipv6Addr,
    /// The status port the kubelet called; a `Host` header naming it is pointed at the app.
    pub status_port: u16,
}

/// What the status port answers for one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReply {
    /// HTTP status for the kubelet.
    pub status: StatusCode,
    /// Body: the app's (bounded) body, or why the probe failed.
    pub body: Bytes,
}

impl ProbeReply {
    fn ok() -> Self {
        ProbeReply {
            status: StatusCode::OK,
            body: Bytes::new(),
        }
    }

    fn failed(why: String) -> Self {
        ProbeReply {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: Bytes::from(why + "\n"),
        }
    }
}

/// Runs one stored handler. `incoming` are the kubelet's request headers.
pub async fn run(probe: &AppProbe, target: &ProbeTarget, incoming: &HeaderMap) -> ProbeReply {
    let t = probe.timeout;
    let work = async {
        match &probe.action {
            ProbeAction::Http(http) => run_http(http, target, incoming).await,
            ProbeAction::Tcp { port } => match connect(target, *port).await {
                Ok(_) => Ok(ProbeReply::ok()),
                Err(e) => Err(e),
            },
            ProbeAction::Grpc { port, service } => run_grpc(*port, service, target, incoming).await,
        }
    };
    match tokio::time::timeout(t, work).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(why)) => ProbeReply::failed(why),
        Err(_) => ProbeReply::failed(format!(
            "app probe did not complete within {}s",
            t.as_secs_f64()
        )),
    }
}

/// Dials the app from the capture-exempt source address.
async fn connect(target: &ProbeTarget, port: u16) -> Result<TcpStream, String> {
    let dst = SocketAddr::new(target.destination, port);
    let fail = |e: io::Error| format!("connect {dst}: {}", strip_os_error(&e));
    let (socket, source) = match target.destination {
        IpAddr::V4(_) => (TcpSocket::new_v4(), IpAddr::V4(target.source_v4)),
        IpAddr::V6(_) => (TcpSocket::new_v6(), IpAddr::V6(target.source_v6)),
    };
    let socket = socket.map_err(fail)?;
    if source.is_ipv6() {
        // `::6` is not assigned to any interface; freebind allows binding it anyway.
        socket2::SockRef::from(&socket)
            .set_freebind_v6(true)
            .map_err(fail)?;
    }
    socket.bind(SocketAddr::new(source, 0)).map_err(fail)?;
    let stream = socket.connect(dst).await.map_err(fail)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn strip_os_error(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The `Host` header for the app: the kubelet's, with the status port swapped for the
/// app's port, or `destination:port` when the kubelet sent none.
fn app_host(incoming: Option<&HeaderValue>, target: &ProbeTarget, port: u16) -> HeaderValue {
    let fallback = || {
        let host = SocketAddr::new(target.destination, port).to_string();
        HeaderValue::from_str(&host).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
    };
    let Some(value) = incoming else {
        return fallback();
    };
    let Ok(text) = value.to_str() else {
        return value.clone();
    };
    match text.rsplit_once(':') {
        // `[v6]:port` or `name:port`; a bare IPv6 address has no brackets and no port.
        Some((host, p))
            if p.parse::<u16>().ok() == Some(target.status_port)
                && (host.ends_with(']') || !host.contains(':')) =>
        {
            HeaderValue::from_str(&format!("{host}:{port}")).unwrap_or_else(|_| value.clone())
        }
        _ => value.clone(),
    }
}

/// Builds the request the app receives.
fn app_request(
    http: &HttpProbe,
    target: &ProbeTarget,
    incoming: &HeaderMap,
) -> Request<Empty<Bytes>> {
    let mut req = Request::new(Empty::new());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = http::Uri::from(http.path.clone());
    // Headers the kubelet's `Connection` names are for that hop only, too.
    let listed: Vec<String> = incoming
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let headers = req.headers_mut();
    for (name, value) in incoming {
        let name_str = name.as_str();
        if name == header::HOST
            || HOP_BY_HOP.contains(&name_str)
            || listed.iter().any(|l| l == name_str)
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers.insert(
        header::HOST,
        app_host(incoming.get(header::HOST), target, http.port),
    );
    for (name, value) in &http.headers {
        headers.insert(name.clone(), value.clone());
    }
    // One connection per probe, as the kubelet does.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    req
}

async fn run_http(
    http: &HttpProbe,
    target: &ProbeTarget,
    incoming: &HeaderMap,
) -> Result<ProbeReply, String> {
    // Redirects are followed while they stay on the app's address, as Istio's prober
    // and the kubelet do; a redirect elsewhere answers the probe.
    let first = redirect::Url {
        https: http.https,
        host: target.destination.to_string(),
        port: http.port,
        path: http.path.to_string(),
    };
    let (status, body) = redirect::follow(first, |url: redirect::Url| async move {
        let hop = HttpProbe {
            https: url.https,
            port: url.port,
            path: url
                .path
                .parse()
                .map_err(|e| format!("redirect to {:?}: {e}", url.path))?,
            headers: http.headers.clone(),
        };
        let (status, location, body) = get_once(&hop, target, incoming).await?;
        Ok((status.as_u16(), location, (status, body)))
    })
    .await?;
    Ok(if status.is_redirection() {
        // A final 3xx is success, as for the kubelet; its Location means nothing to
        // the kubelet, so answer a plain 200.
        ProbeReply::ok()
    } else {
        ProbeReply { status, body }
    })
}

/// One GET to the app on its own connection: status, `Location`, and the start of
/// the body.
async fn get_once(
    http: &HttpProbe,
    target: &ProbeTarget,
    incoming: &HeaderMap,
) -> Result<(StatusCode, Option<String>, Bytes), String> {
    let req = app_request(http, target, incoming);
    let stream = connect(target, http.port).await?;
    if !http.https {
        return exchange(TokioIo::new(stream), req, http.port).await;
    }
    // `scheme: HTTPS`: TLS without certificate verification, as the kubelet and
    // Istio's prober connect (apps serve probes with self-signed certificates).
    let name = rustls::pki_types::ServerName::IpAddress(target.destination.into());
    let tls = tokio_rustls::TlsConnector::from(podrun_prober::tls::client_config())
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake with the app on port {}: {e}", http.port))?;
    exchange(TokioIo::new(tls), req, http.port).await
}

/// One HTTP/1.1 request over `io`.
async fn exchange<T>(
    io: T,
    req: Request<Empty<Bytes>>,
    port: u16,
) -> Result<(StatusCode, Option<String>, Bytes), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake with the app: {e}"))?;
    let conn = tokio::spawn(conn);
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request to the app on port {port}: {e}"))?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_bounded(resp.into_body(), MAX_BODY).await;
        Ok((status, location, body))
    }
    .await;
    conn.abort();
    result
}

/// Reads up to `limit` bytes of a body; a body that breaks off keeps what arrived.
async fn read_bounded(mut body: hyper::body::Incoming, limit: usize) -> Bytes {
    let mut out = BytesMut::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = limit - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    out.freeze()
}

// === gRPC health ===

/// `grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

async fn run_grpc(
    port: u16,
    service: &str,
    target: &ProbeTarget,
    incoming: &HeaderMap,
) -> Result<ProbeReply, String> {
    let stream = connect(target, port).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/2 handshake with the app: {e}"))?;
    let conn = tokio::spawn(conn);
    let authority = SocketAddr::new(target.destination, port);
    let mut req = Request::post(format!("http://{authority}/grpc.health.v1.Health/Check"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers");
    if let Some(agent) = incoming.get(header::USER_AGENT) {
        req = req.header(header::USER_AGENT, agent.clone());
    }
    let req = req
        .body(Full::new(grpc_frame(&health_request(service))))
        .map_err(|e| e.to_string())?;
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("gRPC health check: {e}"))?;
        let (parts, body) = resp.into_parts();
        if parts.status != StatusCode::OK {
            return Err(format!(
                "gRPC health check: HTTP status {}",
                parts.status.as_u16()
            ));
        }
        let collected = body
            .collect()
            .await
            .map_err(|e| format!("gRPC health check: {e}"))?;
        let trailers = collected.trailers().cloned();
        let data = collected.to_bytes();
        // A "trailers-only" reply carries grpc-status among the headers.
        let status_headers = trailers
            .as_ref()
            .filter(|t| t.contains_key("grpc-status"))
            .unwrap_or(&parts.headers);
        let code = status_headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or("gRPC health check: reply without grpc-status")?;
        if code != 0 {
            let message = status_headers
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            return Err(if code == 12 {
                format!(
                    "the app does not implement the gRPC health protocol (grpc.health.v1.Health): {message}"
                )
            } else {
                format!("gRPC health check failed with code {code}: {message}")
            });
        }
        let status = grpc_unframe(&data)
            .and_then(serving_status)
            .ok_or("gRPC health check: malformed HealthCheckResponse")?;
        if status == SERVING {
            Ok(ProbeReply::ok())
        } else {
            Err(format!("app is not serving (health status {status})"))
        }
    }
    .await;
    conn.abort();
    result
}

/// Encodes `HealthCheckRequest { string service = 1; }`.
fn health_request(service: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(service.len() + 3);
    if !service.is_empty() {
        out.push(0x0a); // field 1, length-delimited
        push_varint(&mut out, service.len() as u64);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

/// Prefixes a message with gRPC's uncompressed flag and big-endian length.
fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(msg.len() + 5);
    b.extend_from_slice(&[0]);
    b.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
    b.extend_from_slice(msg);
    b.freeze()
}

/// The first message of a gRPC body, if uncompressed and complete.
fn grpc_unframe(data: &[u8]) -> Option<&[u8]> {
    let (&flag, rest) = data.split_first()?;
    if flag != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    rest.get(4..4 + len)
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    while shift < 64 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
    None
}

/// Decodes `HealthCheckResponse { ServingStatus status = 1; }`, skipping unknown fields;
/// a missing status is `UNKNOWN` (0).
fn serving_status(mut buf: &[u8]) -> Option<u64> {
    let mut status = 0;
    while !buf.is_empty() {
        let key = take_varint(&mut buf)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = take_varint(&mut buf)?,
            (_, 0) => {
                take_varint(&mut buf)?;
            }
            (_, 1) => buf = buf.get(8..)?,
            (_, 2) => {
                let len = usize::try_from(take_varint(&mut buf)?).ok()?;
                buf = buf.get(len..)?;
            }
            (_, 5) => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_injector_writes() {
        // The shape `podrun-inject`'s probe rewriting records (named ports resolved).
        let probers = parse_app_probers(
            r#"{"/app-health/hello/livez":{"tcpSocket":{"port":9000},"timeoutSeconds":2},
                "/app-health/hello/readyz":{"httpGet":{"port":8080,"path":"/ready","scheme":"HTTPS",
                    "httpHeaders":[{"name":"X-Probe","value":"1"}]}},
                "/app-health/hello/startupz":{"grpc":{"port":9090,"service":"hello"}},
                "/app-lifecycle/hello/prestopz":{"httpGet":{"port":8080,"path":"stop?now=1"}}}"#,
        )
        .unwrap();
        assert_eq!(probers.len(), 4);
        assert_eq!(
            probers.get("/app-health/hello/livez"),
            Some(&AppProbe {
                action: ProbeAction::Tcp { port: 9000 },
                timeout: Duration::from_secs(2),
            })
        );
        let ready = probers.get("/app-health/hello/readyz").unwrap();
        assert_eq!(ready.timeout, DEFAULT_TIMEOUT);
        let ProbeAction::Http(http) = &ready.action else {
            panic!("{ready:?}")
        };
        assert_eq!(
            (http.port, http.path.as_str(), http.https),
            (8080, "/ready", true)
        );
        assert_eq!(http.headers.len(), 1);
        assert_eq!(http.headers[0].0, "x-probe");
        assert_eq!(
            probers.get("/app-health/hello/startupz").unwrap().action,
            ProbeAction::Grpc {
                port: 9090,
                service: "hello".into()
            }
        );
        let ProbeAction::Http(stop) = &probers.get("/app-lifecycle/hello/prestopz").unwrap().action
        else {
            panic!()
        };
        assert_eq!(stop.path.as_str(), "/stop?now=1");
        assert!(probers.get("/app-health/other/readyz").is_none());
        assert!(parse_app_probers("").unwrap().is_empty());
        assert!(parse_app_probers(" {} ").unwrap().is_empty());
    }

    #[test]
    fn malformed_records_are_errors() {
        let bad = [
            "{",
            "[]",
            r#"{"/healthz/ready":{"tcpSocket":{"port":1}}}"#,
            r#"{"/app-health//readyz":{"tcpSocket":{"port":1}}}"#,
            r#"{"/app-health/c/readyz/x":{"tcpSocket":{"port":1}}}"#,
            r#"{"/app-health/c/ready":{"tcpSocket":{"port":1}}}"#,
            r#"{"/app-health/c/readyz":{}}"#,
            r#"{"/app-health/c/readyz":{"tcpSocket":{"port":1},"httpGet":{"port":1}}}"#,
            r#"{"/app-health/c/readyz":{"httpGet":{"port":"http"}}}"#,
            r#"{"/app-health/c/readyz":{"httpGet":{"port":0}}}"#,
            r#"{"/app-health/c/readyz":{"httpGet":{"port":70000}}}"#,
            r#"{"/app-health/c/readyz":{"httpGet":{"port":80,"scheme":"FTP"}}}"#,
            r#"{"/app-health/c/readyz":{"httpGet":{"port":80,"path":"/a b"}}}"#,
            r#"{"/app-health/c/readyz":{"httpGet":{"port":80,"httpHeaders":[{"name":"a b","value":"x"}]}}}"#,
            r#"{"/app-health/c/readyz":{"tcpSocket":{"port":80},"timeoutSeconds":-1}}"#,
            r#"{"/app-health/c/readyz":{"grpc":{"port":80,"service":5}}}"#,
            r#"{"/app-health/c/readyz":"tcp"}"#,
        ];
        for text in bad {
            assert!(
                parse_app_probers(text).is_err(),
                "{text} should be rejected"
            );
        }
        let err = parse_app_probers(r#"{"/app-health/c/readyz":{"httpGet":{"port":"http"}}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/app-health/c/readyz") && err.contains("port"),
            "{err}"
        );
    }

    #[test]
    fn probe_paths_follow_istio_pattern() {
        assert!(is_probe_path("/app-health/web/readyz"));
        assert!(is_probe_path("/app-lifecycle/web/poststartz"));
        assert!(!is_probe_path("/app-health/web/readyz/"));
        assert!(!is_probe_path("app-health/web/readyz"));
        assert!(!is_probe_path("/app-health/web"));
        assert!(!is_probe_path("/app-status/web/readyz"));
    }

    #[test]
    fn host_header_points_at_the_app_port() {
        let target = ProbeTarget {
            destination: "198.18.0.5".parse().unwrap(),
            source_v4: Ipv4Addr::new(127, 0, 0, 6),
            source_v6: Ipv6Addr::LOCALHOST,
            status_port: 15020,
        };
        let host = |h: Option<&str>| {
            let v = h.map(|h| HeaderValue::from_str(h).unwrap());
            app_host(v.as_ref(), &target, 8080)
        };
        assert_eq!(host(Some("198.18.0.5:15020")), "198.18.0.5:8080");
        assert_eq!(host(Some("[fd00::5]:15020")), "[fd00::5]:8080");
        assert_eq!(host(Some("web.example:15020")), "web.example:8080");
        assert_eq!(host(Some("web.example:9999")), "web.example:9999");
        assert_eq!(host(Some("web.example")), "web.example");
        assert_eq!(host(Some("fd00::15020")), "fd00::15020");
        assert_eq!(host(None), "198.18.0.5:8080");
    }

    #[test]
    fn request_forwards_headers_but_not_hop_by_hop_ones() {
        let target = ProbeTarget {
            destination: IpAddr::V4(Ipv4Addr::LOCALHOST),
            source_v4: Ipv4Addr::new(127, 0, 0, 6),
            source_v6: Ipv6Addr::LOCALHOST,
            status_port: 15020,
        };
        let probe = HttpProbe {
            port: 8080,
            path: PathAndQuery::from_static("/ready?deep=1"),
            https: false,
            headers: vec![(
                HeaderName::from_static("x-custom"),
                HeaderValue::from_static("probe"),
            )],
        };
        let mut incoming = HeaderMap::new();
        incoming.insert(header::HOST, HeaderValue::from_static("127.0.0.1:15020"));
        incoming.insert(
            header::USER_AGENT,
            HeaderValue::from_static("kube-probe/1.34"),
        );
        incoming.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        incoming.insert("x-custom", HeaderValue::from_static("kubelet"));
        incoming.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-drop"),
        );
        incoming.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        incoming.insert("x-drop", HeaderValue::from_static("1"));
        let req = app_request(&probe, &target, &incoming);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "/ready?deep=1");
        let h = req.headers();
        assert_eq!(h[header::HOST], "127.0.0.1:8080");
        assert_eq!(h[header::USER_AGENT], "kube-probe/1.34");
        assert_eq!(h[header::ACCEPT], "*/*");
        assert_eq!(h["x-custom"], "probe");
        assert_eq!(h[header::CONNECTION], "close");
        assert!(!h.contains_key(header::TRANSFER_ENCODING));
        assert!(!h.contains_key("x-drop"));
    }

    #[test]
    fn grpc_messages_by_hand() {
        assert_eq!(health_request(""), Vec::<u8>::new());
        assert_eq!(health_request("ab"), vec![0x0a, 2, b'a', b'b']);
        let framed = grpc_frame(&[0x08, 0x01]);
        assert_eq!(&framed[..], &[0, 0, 0, 0, 2, 0x08, 0x01]);
        assert_eq!(grpc_unframe(&framed).and_then(serving_status), Some(1));
        assert_eq!(grpc_unframe(&[0, 0, 0, 0, 9, 1]), None);
        assert_eq!(grpc_unframe(&[1, 0, 0, 0, 0]), None);
        // Unknown fields are skipped; an absent status is UNKNOWN.
        assert_eq!(serving_status(&[0x12, 0x01, b'x', 0x08, 0x02]), Some(2));
        assert_eq!(serving_status(&[]), Some(0));
        assert_eq!(serving_status(&[0x08]), None);
        let mut v = Vec::new();
        push_varint(&mut v, 300);
        assert_eq!(v, vec![0xac, 0x02]);
        assert_eq!(take_varint(&mut v.as_slice()), Some(300));
    }
}
