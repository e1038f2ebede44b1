//! The HTTPS server: TLS accept, HTTP/1.1 and HTTP/2, routing to `/inject`, `/healthz` and
//! `/metrics`, a request body limit, and counters. All decisions are in [`crate::review`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use podrun_inject::MeshConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::review::{FailurePolicy, Verdict, handle_inject};

/// Default request body limit: the API server caps objects near 3 MiB, so anything larger is
/// not a real admission request.
pub const DEFAULT_MAX_BODY: usize = 3 * 1024 * 1024;
/// Oversized bodies up to this size are read and discarded before answering 413.
const DRAIN_CAP: usize = 16 * 1024 * 1024;
/// Bound on the time spent discarding an oversized body.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads and discards a body, bounded in bytes and time.
async fn drain(body: Incoming) {
    let limited = Limited::new(body, DRAIN_CAP);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, limited.collect()).await;
}

/// A client that has not finished the TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Injection settings shared by all connections.
#[derive(Debug)]
pub struct Webhook {
    config: MeshConfig,
    failure_policy: FailurePolicy,
    max_body: usize,
    stats: Stats,
}

#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    success: AtomicU64,
    skip: AtomicU64,
    failure: AtomicU64,
}

impl Webhook {
    /// A webhook with the given injector config and failure policy.
    pub fn new(config: MeshConfig, failure_policy: FailurePolicy) -> Self {
        Self {
            config,
            failure_policy,
            max_body: DEFAULT_MAX_BODY,
            stats: Stats::default(),
        }
    }

    /// Sets the request body limit in bytes.
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    fn metrics(&self) -> String {
        let s = &self.stats;
        let mut out = String::new();
        for (name, help, v) in [
            (
                "sidecar_injection_requests_total",
                "Injection requests.",
                &s.requests,
            ),
            (
                "sidecar_injection_success_total",
                "Successful injections.",
                &s.success,
            ),
            (
                "sidecar_injection_skip_total",
                "Requests skipped by policy.",
                &s.skip,
            ),
            (
                "sidecar_injection_failure_total",
                "Failed injections and bad requests.",
                &s.failure,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        out
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let reply = |status: StatusCode, ctype: &str, body: Vec<u8>| {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            if let Ok(v) = header::HeaderValue::from_str(ctype) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        };
        let text = "text/plain; charset=utf-8";
        match path.as_str() {
            "/healthz" | "/ready" => return reply(StatusCode::OK, text, b"ok\n".to_vec()),
            "/metrics" => {
                return reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.metrics().into_bytes(),
                );
            }
            _ => {}
        }
        if crate::review::path_params(&path).is_none() {
            return reply(
                StatusCode::NOT_FOUND,
                text,
                format!("no such endpoint {path}\n").into_bytes(),
            );
        }
        if req.method() != Method::POST {
            return reply(StatusCode::METHOD_NOT_ALLOWED, text, b"use POST\n".to_vec());
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            && len > self.max_body
        {
            self.stats.failure.fetch_add(1, Ordering::Relaxed);
            // Read (and discard) a moderately oversized body so the client sees the 413
            // instead of a reset while it is still writing; huge ones are cut off at once.
            if len <= DRAIN_CAP {
                drain(req.into_body()).await;
            }
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                text,
                format!(
                    "request body of {len} bytes exceeds the limit of {} bytes\n",
                    self.max_body
                )
                .into_bytes(),
            );
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match Limited::new(req.into_body(), self.max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                self.stats.failure.fetch_add(1, Ordering::Relaxed);
                let too_big = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                return if too_big {
                    reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        text,
                        format!(
                            "request body exceeds the limit of {} bytes\n",
                            self.max_body
                        )
                        .into_bytes(),
                    )
                } else {
                    reply(
                        StatusCode::BAD_REQUEST,
                        text,
                        format!("could not read body: {e}\n").into_bytes(),
                    )
                };
            }
        };
        let (r, verdict) = handle_inject(
            &path,
            content_type.as_deref(),
            &body,
            &self.config,
            self.failure_policy,
        );
        let counter = match verdict {
            Verdict::Success => &self.stats.success,
            Verdict::Skip => &self.stats.skip,
            Verdict::Failure | Verdict::BadRequest => &self.stats.failure,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        reply(
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            r.content_type,
            r.body,
        )
    }
}

/// Serves HTTPS on `listener` until `shutdown` completes. Each connection runs in its own
/// task; a failed handshake or a broken connection only ends that connection.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    webhook: Arc<Webhook>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let webhook = webhook.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = service_fn(move |req| {
                let webhook = webhook.clone();
                async move { Ok::<_, Infallible>(webhook.handle(req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
