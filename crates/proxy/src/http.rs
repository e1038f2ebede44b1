//! HTTP/1.1 and HTTP/2 (h2c) proxying of a sniffed connection: each request goes to
//! the original destination over a pooled upstream connection, with `x-request-id`,
//! `x-envoy-upstream-service-time`, local replies for upstream failures, and one
//! access-log line per request.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::accesslog::{AccessLogEntry, HttpFields};
use crate::body::{Counted, Ending, Finish, ResponseBody};
use crate::config::Direction;
use crate::drain::Phase;
use crate::metrics::{RequestLabels, RequestSeries};
use crate::proxy::Shared;
use crate::retry::{self, Attempt, Decision, Failure};
use crate::route::{Cluster, LocalReply, ResponseFlags, UpstreamFailure, local_reply};
use crate::upstream::Checkout;

/// The downstream HTTP version, as detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownstreamHttp {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 prior knowledge.
    Http2,
}

/// Per-connection facts every request on it shares.
#[derive(Debug)]
pub struct HttpConn {
    pub(crate) shared: Arc<Shared>,
    pub(crate) direction: Direction,
    pub(crate) cluster: Cluster,
    pub(crate) orig_dst: SocketAddr,
    pub(crate) peer: SocketAddr,
    pub(crate) source: Option<IpAddr>,
    pub(crate) version: DownstreamHttp,
    /// `cluster` as the access log and metrics print it.
    pub(crate) cluster_name: Arc<str>,
    /// The metric series the last request on this connection went to, by
    /// (response code, flags, gRPC): most requests on a connection end alike.
    pub(crate) series: Mutex<Option<(SeriesKey, RequestSeries)>>,
    /// Inbound HTTP/2: the end of the app's connection this client's requests went to.
    /// When the app closes it gracefully (GOAWAY), the client gets a GOAWAY too
    /// instead of being moved silently to a new connection.
    pub(crate) upstream_h2: Mutex<Option<watch::Receiver<bool>>>,
    /// Wakes `serve` when `upstream_h2` is set.
    pub(crate) upstream_h2_set: Notify,
}

/// What tells a request's metric series apart on one connection.
type SeriesKey = (u16, ResponseFlags, bool);

impl HttpConn {
    /// Follows the app's HTTP/2 connection `closed` for an inbound HTTP/2 client.
    fn watch_upstream_h2(&self, closed: Option<&watch::Receiver<bool>>) {
        let Some(closed) = closed else { return };
        if self.direction != Direction::Inbound || self.version != DownstreamHttp::Http2 {
            return;
        }
        let mut slot = self.upstream_h2.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|w| w.same_channel(closed)) {
            return;
        }
        *slot = Some(closed.clone());
        self.upstream_h2_set.notify_one();
    }

    /// Resolves once the app's HTTP/2 connection (the latest one this client's requests
    /// used) has ended.
    async fn upstream_h2_ended(&self) {
        loop {
            let watched = self
                .upstream_h2
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            match watched {
                Some(mut closed) => {
                    tokio::select! {
                        // An error means the pool's task is gone: ended too.
                        _ = closed.wait_for(|c| *c) => return,
                        () = self.upstream_h2_set.notified() => {}
                    }
                }
                None => self.upstream_h2_set.notified().await,
            }
        }
    }

    pub(crate) fn request_labels(
        &self,
        grpc: bool,
        status: u16,
        flags: ResponseFlags,
    ) -> RequestLabels {
        RequestLabels {
            reporter: self.direction.reporter(),
            source_workload: self.shared.config.workload.clone(),
            destination_service: self.cluster.destination_service(self.orig_dst),
            destination_cluster: self.cluster_name.to_string(),
            request_protocol: if grpc { "grpc" } else { "http" },
            response_code: status,
            response_flags: flags.to_string(),
        }
    }

    /// Counts one finished request in its metric series.
    pub(crate) fn record_request(
        &self,
        grpc: bool,
        status: u16,
        flags: ResponseFlags,
        sizes: (u64, u64),
        duration_ms: u64,
    ) {
        let key = (status, flags, grpc);
        let mut cache = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let series = match &mut *cache {
            Some((k, series)) if *k == key => series,
            slot => {
                let labels = self.request_labels(grpc, status, flags);
                &mut slot
                    .insert((key, self.shared.metrics.request_series(&labels)))
                    .1
            }
        };
        series.record(duration_ms, sizes.0, sizes.1);
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_UPSTREAM_TIME: HeaderName = HeaderName::from_static("x-envoy-upstream-service-time");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// A random UUID v4, as Envoy generates for `x-request-id`.
pub(crate) fn uuid_v4() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Request ids need uniqueness, not secrecy: a per-thread xoshiro generator,
    // seeded from the OS, is enough and costs a few instructions per id.
    thread_local! {
        static RNG: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(rand::SeedableRng::from_os_rng());
    }
    // One 128-bit draw (two generator steps), not sixteen byte-sized ones.
    let n: u128 = RNG.with(|r| rand::Rng::random(&mut *r.borrow_mut()));
    let mut b = n.to_le_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut text = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    // Hex digits and dashes: always a valid header value.
    HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static(""))
}

/// A request method as the access log prints it; standard methods without allocating.
pub(crate) fn method_text(m: &str) -> Cow<'static, str> {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    match STANDARD.iter().find(|s| **s == m) {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(m.to_string()),
    }
}

fn protocol_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), which HTTP/2 does not carry.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the names instead of a hash
    // look-up per hop-by-hop header.
    let hop_by_hop = |n: &HeaderName| {
        n == header::CONNECTION
            || n == header::UPGRADE
            || n == KEEP_ALIVE
            || n == PROXY_CONNECTION
            || n == header::PROXY_AUTHORIZATION
            || n == header::TE
            || n == header::TRAILER
    };
    if !h.keys().any(hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    h.remove(header::CONNECTION);
    h.remove(header::UPGRADE);
    h.remove(&KEEP_ALIVE);
    h.remove(&PROXY_CONNECTION);
    h.remove(header::PROXY_AUTHORIZATION);
    h.remove(header::TE);
    h.remove(header::TRAILER);
}

/// Everything needed to write one request's access-log line; writes a "client went
/// away" line if dropped before [`RequestLog::emit`].
pub(crate) struct RequestLog {
    pub(crate) conn: Arc<HttpConn>,
    pub(crate) start_time: SystemTime,
    pub(crate) start: Instant,
    pub(crate) fields: HttpFields,
    pub(crate) grpc: bool,
    pub(crate) req_bytes: Arc<AtomicU64>,
    pub(crate) status: u16,
    pub(crate) flags: ResponseFlags,
    pub(crate) details: Option<Cow<'static, str>>,
    pub(crate) transport_failure: Option<String>,
    pub(crate) upstream_host: Option<SocketAddr>,
    pub(crate) upstream_local: Option<SocketAddr>,
    pub(crate) armed: bool,
}

impl RequestLog {
    /// The record of a request that starts now, with its logged request fields.
    pub(crate) fn new(conn: Arc<HttpConn>, fields: HttpFields, grpc: bool) -> Self {
        RequestLog {
            conn,
            start_time: SystemTime::now(),
            start: Instant::now(),
            fields,
            grpc,
            req_bytes: Arc::new(AtomicU64::new(0)),
            status: 0,
            flags: ResponseFlags::empty(),
            details: None,
            transport_failure: None,
            upstream_host: None,
            upstream_local: None,
            armed: true,
        }
    }

    /// Records that the proxy answers with `reply`; returns the reply's status and body.
    pub(crate) fn answered_locally(&mut self, reply: LocalReply) -> (u16, String) {
        self.status = reply.status;
        self.flags.insert(reply.flags);
        self.details = Some(reply.details.into());
        self.transport_failure = reply.transport_failure;
        (reply.status, reply.body)
    }

    pub(crate) fn emit(&mut self, bytes_sent: u64, ending: Ending) {
        if !self.armed {
            return;
        }
        self.armed = false;
        match ending {
            Ending::Complete => {}
            Ending::UpstreamError => self
                .flags
                .insert(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION),
            Ending::DownstreamGone => self
                .flags
                .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION),
        }
        let shared = &self.conn.shared;
        let duration_ms = self.start.elapsed().as_millis() as u64;
        let bytes_received = self.req_bytes.load(Ordering::Relaxed);
        self.conn.record_request(
            self.grpc,
            self.status,
            self.flags,
            (bytes_received, bytes_sent),
            duration_ms,
        );
        shared.log.record(&AccessLogEntry {
            start_time: self.start_time,
            // Emitted once (`armed`), so the fields can move into the entry.
            http: Some(std::mem::replace(
                &mut self.fields,
                HttpFields {
                    method: Cow::Borrowed(""),
                    path: String::new(),
                    protocol: "",
                    x_forwarded_for: None,
                    user_agent: None,
                    request_id: None,
                    authority: None,
                    upstream_service_time_ms: None,
                },
            )),
            response_code: self.status,
            flags: self.flags,
            details: self.details.take(),
            termination_details: None,
            transport_failure: self.transport_failure.take(),
            bytes_received,
            bytes_sent,
            duration_ms,
            upstream_host: self.upstream_host,
            upstream_cluster: Some(self.conn.cluster_name.clone()),
            upstream_local: self.upstream_local,
            downstream_local: self.conn.orig_dst,
            downstream_remote: self.conn.peer,
            sni: None,
            route_name: Some(self.conn.cluster.route_name()),
        });
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        if self.armed {
            // The request future was dropped before a response started: the client
            // closed or reset the connection.
            self.status = 0;
            self.details = Some("downstream_remote_disconnect".into());
            self.emit(0, Ending::DownstreamGone);
        }
    }
}

impl Finish for RequestLog {
    fn finish(mut self: Box<Self>, bytes_sent: u64, ending: Ending) {
        self.emit(bytes_sent, ending);
    }
}

/// What ends or drains a connection from outside.
enum Signal {
    /// The proxy drains (inbound only).
    Drain,
    /// The proxy exits.
    Exit,
    /// Inbound HTTP/2: the app closed its connection gracefully.
    AppGone,
}

/// Serves one sniffed HTTP connection until it closes or the proxy exits.
pub async fn serve(stream: TcpStream, conn: Arc<HttpConn>) {
    match conn.version {
        DownstreamHttp::Http1 => crate::h1::serve(stream, conn).await,
        DownstreamHttp::Http2 => serve_h2(stream, conn).await,
    }
}

/// Serves an HTTP/2 (h2c) connection with hyper.
async fn serve_h2(stream: TcpStream, conn: Arc<HttpConn>) {
    let shared = conn.shared.clone();
    let io = TokioIo::new(stream);
    let inbound = conn.direction == Direction::Inbound;
    let mut phase = shared.control.subscribe();
    let limits = &shared.config.limits;
    let svc_conn = conn.clone();
    let svc = service_fn(move |req| {
        let c = svc_conn.clone();
        // Boxed: the request future is large, and hyper moves the future it holds.
        let fut = Box::pin(handle(c, req));
        async move { Ok::<_, Infallible>(fut.await) }
    });
    // A connection accepted while already draining gets GOAWAY only on SIGTERM:
    // shutting it down at once would race its first request.
    let accepted_draining = shared.control.phase() >= Phase::Draining;
    let drain_wait = async move {
        // Only the inbound side drains (spec §5.5): outbound never sees GOAWAY until
        // the process exits.
        if !inbound {
            return std::future::pending::<()>().await;
        }
        let trigger = if accepted_draining {
            Phase::Terminating
        } else {
            Phase::Draining
        };
        let _ = phase.wait_for(|p| *p >= trigger).await;
    };
    // The connection's rare signals. Inside `select!` they would be polled again on
    // every wake of the connection's task, each poll taking the lock of a watch
    // channel; `FuturesUnordered` polls only those that were woken.
    let mut signals: FuturesUnordered<Pin<Box<dyn Future<Output = Signal> + Send + '_>>> =
        FuturesUnordered::new();
    signals.push(Box::pin(async move {
        drain_wait.await;
        Signal::Drain
    }));
    signals.push(Box::pin(async {
        shared.control.exited().await;
        Signal::Exit
    }));
    // The app closed its connection: pass the GOAWAY on.
    signals.push(Box::pin(async {
        conn.upstream_h2_ended().await;
        Signal::AppGone
    }));
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_request_header_bytes).unwrap_or(u32::MAX));
    let c = b.serve_connection(io, svc);
    tokio::pin!(c);
    let mut draining = false;
    let result = loop {
        tokio::select! {
            biased;
            r = c.as_mut() => break r,
            Some(signal) = signals.next() => match signal {
                Signal::Exit => return,
                Signal::Drain | Signal::AppGone => if !draining {
                    draining = true;
                    c.as_mut().graceful_shutdown();
                },
            },
        }
    };
    drop(signals);
    if let Err(err) = result {
        tracing::debug!(%err, "downstream h2 connection ended with an error");
    }
}

/// Counts and logs a request the proxy answered without reading it whole (`400`,
/// `431`, `408`), or a client too slow to be answered (`status` 0).
pub(crate) fn log_rejected(conn: &HttpConn, status: u16, details: &'static str) {
    let flags = if status == 408 || status == 0 {
        ResponseFlags::empty()
    } else {
        ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR
    };
    let shared = &conn.shared;
    shared
        .metrics
        .record_request(&conn.request_labels(false, status, flags), 0, 0, 0);
    shared.log.record(&AccessLogEntry {
        start_time: SystemTime::now(),
        http: Some(HttpFields {
            method: "-".into(),
            path: "-".into(),
            protocol: "HTTP/1.1",
            x_forwarded_for: None,
            user_agent: None,
            request_id: None,
            authority: None,
            upstream_service_time_ms: None,
        }),
        response_code: status,
        flags,
        details: Some(details.into()),
        termination_details: None,
        transport_failure: None,
        bytes_received: 0,
        bytes_sent: 0,
        duration_ms: 0,
        upstream_host: None,
        upstream_cluster: Some(conn.cluster_name.clone()),
        upstream_local: None,
        downstream_local: conn.orig_dst,
        downstream_remote: conn.peer,
        sni: None,
        route_name: None,
    });
}

async fn handle(conn: Arc<HttpConn>, mut req: Request<Incoming>) -> Response<ResponseBody> {
    let shared = conn.shared.clone();
    let request_id = match req.headers().get(&X_REQUEST_ID) {
        Some(id) if !id.is_empty() => id.clone(),
        _ => {
            let id = uuid_v4();
            req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    };
    let authority = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    let path = if req.method() == Method::CONNECT {
        authority
            .as_ref()
            .and_then(|a| a.to_str().ok())
            .unwrap_or_default()
            .to_string()
    } else {
        req.uri()
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.to_string())
    };
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    let mut log = RequestLog::new(
        conn.clone(),
        HttpFields {
            method: method_text(req.method().as_str()),
            path,
            protocol: protocol_str(req.version()),
            x_forwarded_for: req.headers().get(&X_FORWARDED_FOR).cloned(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            request_id: Some(request_id),
            authority: authority.clone(),
            upstream_service_time_ms: None,
        },
        grpc,
    );
    let req_bytes = log.req_bytes.clone();

    if conn.cluster == Cluster::BlackHole {
        return local_response(log, local_reply(&UpstreamFailure::NoRoute));
    }
    log.upstream_host = Some(conn.orig_dst);

    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let auth = authority
        .as_ref()
        .and_then(|a| a.to_str().ok())
        .map_or_else(|| conn.orig_dst.to_string(), str::to_string);
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{auth}{pq}")
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/"));
    let mut upstream_req = Request::from_parts(parts, Counted::new(body, req_bytes));

    // Retried as `retry::decide` says: a connect failure (outbound), and a request
    // hyper hands back unsent (a stale connection or a refused stream). A response is
    // streamed as it comes, so an upstream `503` is not retried on this path.
    let mut fresh_only = false;
    let mut retries = 0;
    let (response, sent_at) = loop {
        let checkout = shared
            .pool
            .checkout_http2(conn.orig_dst, conn.source, fresh_only)
            .await;
        let Checkout {
            mut sender,
            local,
            reused,
            closed,
        } = match checkout {
            Ok(c) => c,
            Err(failure) => {
                let attempt = Attempt {
                    failure: Failure::ConnectFailure,
                    direction: conn.direction,
                    reused: false,
                    retries,
                    replayable: true,
                };
                match retry::decide(&attempt, retry::jitter()) {
                    Decision::Retry { backoff, counted } => {
                        retries += u32::from(counted);
                        tokio::time::sleep(backoff).await;
                        fresh_only = true;
                        continue;
                    }
                    Decision::Answer { retries_exhausted } => {
                        if retries_exhausted {
                            log.flags
                                .insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
                        }
                        return local_response(log, local_reply(&failure));
                    }
                }
            }
        };
        conn.watch_upstream_h2(closed.as_ref());
        log.upstream_local = Some(local);
        let sent_at = Instant::now();
        let fut = sender.try_send_request(upstream_req);
        let result = match shared.config.limits.request_timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => {
                    return local_response(log, local_reply(&UpstreamFailure::ResponseTimeout));
                }
            },
            None => fut.await,
        };
        match result {
            Ok(resp) => break (resp, sent_at),
            Err(mut e) => {
                let unsent = Attempt {
                    failure: Failure::Unsent,
                    direction: conn.direction,
                    reused: reused && !fresh_only,
                    retries,
                    replayable: true,
                };
                if let Decision::Retry { backoff, counted } =
                    retry::decide(&unsent, retry::jitter())
                    && let Some(back) = e.take_message()
                {
                    retries += u32::from(counted);
                    tokio::time::sleep(backoff).await;
                    upstream_req = back;
                    fresh_only = true;
                    continue;
                }
                let err = e.into_error();
                let failure = if err.is_parse() || err.is_parse_status() {
                    UpstreamFailure::ProtocolError
                } else {
                    UpstreamFailure::ResetBeforeHeaders
                };
                return local_response(log, local_reply(&failure));
            }
        }
    };
    let service_ms = sent_at.elapsed().as_millis() as u64;
    log.fields.upstream_service_time_ms = Some(service_ms);
    log.status = response.status().as_u16();
    log.details = Some(Cow::Borrowed("via_upstream"));
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(X_UPSTREAM_TIME.clone(), HeaderValue::from(service_ms));
    Response::from_parts(parts, ResponseBody::upstream(body, Some(Box::new(log))))
}

fn local_response(mut log: RequestLog, reply: LocalReply) -> Response<ResponseBody> {
    let (status, body) = log.answered_locally(reply);
    let body = Bytes::from(body);
    let mut resp = Response::new(ResponseBody::local(body.clone(), None));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if !body.is_empty() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, ResponseBody::local(body, Some(Box::new(log))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = uuid_v4();
        let id = id.to_str().unwrap();
        assert_eq!(id.len(), 36);
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(uuid_v4(), id);
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::HOST, HeaderValue::from_static("a"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }
}
