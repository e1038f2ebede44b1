//! The small HTTP endpoints: health (15021), agent status (15020), Prometheus stats
//! (15090) and admin (15000). Routing is a pure function of endpoint, method, path
//! and peer; the server around it is a plain HTTP/1.1 accept loop. The status port
//! also runs the app probes the injector moved onto it ([`crate::app_probe`]).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::app_probe::{self, ProbeTarget};
use crate::drain::Phase;
use crate::proxy::Shared;

/// Which endpoint a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// 15021: `GET /healthz/ready` only.
    Health,
    /// 15020: readiness, `/quitquitquit`, `/drain`, merged metrics, app probes.
    Status,
    /// 15090: `/stats/prometheus`.
    Stats,
    /// 15000 (loopback): `/quitquitquit`, `/drain_listeners`, `/ready`, `/stats`.
    Admin,
}

/// What a request to an endpoint asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAction {
    /// Answer readiness (`/healthz/ready`).
    Readiness,
    /// Answer Envoy's server state (`/ready` on admin).
    ServerState,
    /// Serve Prometheus metrics.
    Metrics,
    /// Serve Envoy-style `name: value` stats.
    Stats,
    /// Start the inbound drain.
    Drain,
    /// Exit now.
    Quit,
    /// Run the stored app probe or hook for the request path (`/app-health/…`,
    /// `/app-lifecycle/…`); a path without one gets 400.
    AppProbe,
    /// Reply with this status and text.
    Reply(u16, &'static str),
}

/// Routes a request (pure).
pub fn route_admin(
    endpoint: Endpoint,
    method: &Method,
    path: &str,
    peer_loopback: bool,
) -> AdminAction {
    let get = method == Method::GET || method == Method::HEAD;
    // Actions that stop or drain the proxy: POST only (405), loopback only (403).
    let guarded = |action: AdminAction| {
        if method != Method::POST {
            AdminAction::Reply(405, "method not allowed\n")
        } else if !peer_loopback {
            AdminAction::Reply(403, "forbidden\n")
        } else {
            action
        }
    };
    let read = |action: AdminAction| {
        if get {
            action
        } else {
            AdminAction::Reply(405, "method not allowed\n")
        }
    };
    match (endpoint, path) {
        (Endpoint::Health | Endpoint::Status, "/healthz/ready") => read(AdminAction::Readiness),
        (Endpoint::Status, "/stats/prometheus" | "/metrics") => read(AdminAction::Metrics),
        (Endpoint::Status | Endpoint::Admin, "/quitquitquit") => guarded(AdminAction::Quit),
        (Endpoint::Status, "/drain") => guarded(AdminAction::Drain),
        // Any method, as Istio's agent: the kubelet only ever sends GET.
        (Endpoint::Status, p)
            if p.starts_with("/app-health/") || p.starts_with("/app-lifecycle/") =>
        {
            AdminAction::AppProbe
        }
        (Endpoint::Stats, "/stats/prometheus" | "/metrics") => read(AdminAction::Metrics),
        (Endpoint::Admin, "/drain_listeners") => guarded(AdminAction::Drain),
        (Endpoint::Admin, "/ready") => read(AdminAction::ServerState),
        (Endpoint::Admin, "/stats") => read(AdminAction::Stats),
        (Endpoint::Admin, "/stats/prometheus") => read(AdminAction::Metrics),
        _ => AdminAction::Reply(404, "not found\n"),
    }
}

fn text(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Envoy-style `name: value` lines from the Prometheus registry.
fn envoy_stats(shared: &Shared) -> String {
    let mut out = String::new();
    let state = match shared.control.phase() {
        Phase::Starting => 2,
        Phase::Live => 0,
        Phase::Draining | Phase::Terminating => 1,
    };
    out.push_str(&format!("server.state: {state}\n"));
    for line in shared.metrics.encode().lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some((series, value)) = line.rsplit_once(' ') {
            out.push_str(series);
            out.push_str(": ");
            out.push_str(value);
            out.push('\n');
        }
    }
    out
}

async fn respond(
    shared: &Shared,
    req: &Request<Incoming>,
    peer: SocketAddr,
    endpoint: Endpoint,
    local_port: u16,
) -> Response<Full<Bytes>> {
    let action = route_admin(
        endpoint,
        req.method(),
        req.uri().path(),
        peer.ip().is_loopback() || peer.ip().to_canonical().is_loopback(),
    );
    match action {
        AdminAction::AppProbe => app_probe_reply(shared, req, local_port).await,
        AdminAction::Readiness => {
            if shared.control.is_ready() {
                text(200, Bytes::new())
            } else {
                let why = match shared.control.phase() {
                    Phase::Starting => "listeners not ready\n",
                    _ => "server is terminated\n",
                };
                text(503, why)
            }
        }
        AdminAction::ServerState => match shared.control.phase() {
            Phase::Live => text(200, "LIVE\n"),
            Phase::Starting => text(503, "INITIALIZING\n"),
            Phase::Draining | Phase::Terminating => text(503, "DRAINING\n"),
        },
        AdminAction::Metrics => {
            let mut r = text(200, shared.metrics.encode());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        AdminAction::Stats => text(200, envoy_stats(shared)),
        AdminAction::Drain => {
            tracing::info!("inbound drain requested");
            shared.control.drain();
            text(200, "OK")
        }
        AdminAction::Quit => {
            tracing::info!("quit requested");
            shared.control.quit();
            text(200, "OK")
        }
        AdminAction::Reply(status, body) => text(status, body),
    }
}

/// Runs the stored app probe for the request's path.
async fn app_probe_reply(
    shared: &Shared,
    req: &Request<Incoming>,
    local_port: u16,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let Some(probe) = shared.config.app_probers.get(path) else {
        tracing::info!(path, "no app prober for this path");
        return text(
            400,
            format!("app prober config does not exist for {path}\n"),
        );
    };
    let target = ProbeTarget {
        destination: shared
            .config
            .app_probe_destination
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        source_v4: shared.config.inbound_source_v4,
        source_v6: shared.config.inbound_source_v6,
        status_port: local_port,
    };
    let reply = app_probe::run(probe, &target, req.headers()).await;
    if reply.status.is_success() {
        tracing::debug!(path, status = reply.status.as_u16(), "app probe");
    } else {
        tracing::info!(
            path,
            status = reply.status.as_u16(),
            body = %String::from_utf8_lossy(&reply.body).trim_end(),
            "app probe failed"
        );
    }
    text(reply.status.as_u16(), reply.body)
}

/// Serves `endpoint` on `listener` until the proxy exits.
pub async fn serve(listener: TcpListener, endpoint: Endpoint, shared: Arc<Shared>) {
    // The port the kubelet dialled; a probe's `Host` naming it is rewritten to the app's.
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(err) => {
                tracing::warn!(%err, ?endpoint, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc_shared = shared.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let shared = svc_shared.clone();
                async move {
                    let r = respond(&shared, &req, peer, endpoint, local_port).await;
                    Ok::<_, Infallible>(r)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                () = shared.control.exited() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_routing_table() {
        use AdminAction::*;
        let cases = [
            (
                Endpoint::Health,
                Method::GET,
                "/healthz/ready",
                true,
                Readiness,
            ),
            (
                Endpoint::Health,
                Method::GET,
                "/healthz/ready",
                false,
                Readiness,
            ),
            (
                Endpoint::Health,
                Method::POST,
                "/healthz/ready",
                true,
                Reply(405, "method not allowed\n"),
            ),
            (
                Endpoint::Health,
                Method::POST,
                "/quitquitquit",
                true,
                Reply(404, "not found\n"),
            ),
            (Endpoint::Status, Method::POST, "/quitquitquit", true, Quit),
            (
                Endpoint::Status,
                Method::POST,
                "/quitquitquit",
                false,
                Reply(403, "forbidden\n"),
            ),
            (
                Endpoint::Status,
                Method::GET,
                "/quitquitquit",
                true,
                Reply(405, "method not allowed\n"),
            ),
            (Endpoint::Status, Method::POST, "/drain", true, Drain),
            (
                Endpoint::Status,
                Method::GET,
                "/stats/prometheus",
                false,
                Metrics,
            ),
            (
                Endpoint::Stats,
                Method::GET,
                "/stats/prometheus",
                false,
                Metrics,
            ),
            (
                Endpoint::Stats,
                Method::POST,
                "/quitquitquit",
                true,
                Reply(404, "not found\n"),
            ),
            (Endpoint::Admin, Method::POST, "/quitquitquit", true, Quit),
            (
                Endpoint::Admin,
                Method::POST,
                "/drain_listeners",
                true,
                Drain,
            ),
            (
                Endpoint::Status,
                Method::GET,
                "/app-health/web/readyz",
                false,
                AppProbe,
            ),
            (
                Endpoint::Status,
                Method::GET,
                "/app-lifecycle/web/prestopz",
                false,
                AppProbe,
            ),
            (
                Endpoint::Status,
                Method::GET,
                "/app-health/unknown",
                false,
                AppProbe,
            ),
            (
                Endpoint::Health,
                Method::GET,
                "/app-health/web/readyz",
                false,
                Reply(404, "not found\n"),
            ),
            (Endpoint::Admin, Method::GET, "/ready", true, ServerState),
            (Endpoint::Admin, Method::GET, "/stats", true, Stats),
            (
                Endpoint::Admin,
                Method::GET,
                "/nope",
                true,
                Reply(404, "not found\n"),
            ),
        ];
        for (ep, m, path, lo, want) in cases {
            assert_eq!(
                route_admin(ep, &m, path, lo),
                want,
                "{ep:?} {m} {path} loopback={lo}"
            );
        }
    }
}
