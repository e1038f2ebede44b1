//! httpGet handlers: an HTTP/1.1 GET per run, over plain TCP or TLS without certificate
//! verification, following redirects that stay on the same host (as the kubelet does).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::HTTPGetAction;
use podrun_prober::redirect;
use rustls::pki_types::ServerName;

use super::{HandlerOutcome, USER_AGENT, dial, resolve_host};

/// Where and what to GET.
#[derive(Debug, Clone)]
pub(super) struct HttpTarget {
    host: Option<String>,
    pod_ip: IpAddr,
    port: u16,
    path: String,
    https: bool,
    headers: Vec<(String, String)>,
}

impl HttpTarget {
    pub(super) fn from_action(action: &HTTPGetAction, pod_ip: IpAddr, port: u16) -> HttpTarget {
        let path = action
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        HttpTarget {
            host: action.host.clone().filter(|h| !h.is_empty()),
            pod_ip,
            port,
            path: if path.starts_with('/') {
                path
            } else {
                format!("/{path}")
            },
            https: action
                .scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")),
            headers: action
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        }
    }

    /// The URL's host name, without brackets.
    fn hostname(&self) -> String {
        self.host.clone().unwrap_or_else(|| self.pod_ip.to_string())
    }

    fn url_host(&self) -> String {
        let h = self.hostname();
        if h.contains(':') && !h.starts_with('[') {
            format!("[{h}]:{}", self.port)
        } else {
            format!("{h}:{}", self.port)
        }
    }

    fn url(&self) -> String {
        format!(
            "{}://{}{}",
            if self.https { "https" } else { "http" },
            self.url_host(),
            self.path
        )
    }
}

/// A probe: success iff 200 ≤ status < 400, within `timeout`.
pub(super) async fn probe(target: &HttpTarget, timeout: Duration) -> HandlerOutcome {
    match tokio::time::timeout(timeout, get(target, timeout)).await {
        Ok(Ok(status)) if (200..400).contains(&status) => HandlerOutcome::Success,
        Ok(Ok(status)) => {
            HandlerOutcome::Failure(format!("HTTP probe failed with statuscode: {status}"))
        }
        Ok(Err(e)) => HandlerOutcome::Failure(format!("Get \"{}\": {e}", target.url())),
        Err(_) => HandlerOutcome::Failure(format!(
            "Get \"{}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            target.url()
        )),
    }
}

/// A hook: like the kubelet, any HTTP response counts as done; only failing to get one fails.
pub(super) async fn hook(target: &HttpTarget) -> HandlerOutcome {
    match get(target, super::NO_TIMEOUT).await {
        Ok(_) => HandlerOutcome::Success,
        Err(e) => HandlerOutcome::Failure(format!("Get \"{}\": {e}", target.url())),
    }
}

/// Sends the GET, following same-host redirects, and returns the final status code; the
/// error text is Go-like.
async fn get(target: &HttpTarget, dial_timeout: Duration) -> Result<u16, String> {
    let first = redirect::Url {
        https: target.https,
        host: target.hostname(),
        port: target.port,
        path: target.path.clone(),
    };
    // A redirect to another host is the answer ("Probe terminated redirects").
    redirect::follow(first, |url: redirect::Url| async move {
        let hop = HttpTarget {
            https: url.https,
            port: url.port,
            path: url.path.clone(),
            ..target.clone()
        };
        let (status, location) = get_once(&hop, dial_timeout).await?;
        Ok((status, location, status))
    })
    .await
}

/// One GET: the status code and the `Location` header.
async fn get_once(
    target: &HttpTarget,
    dial_timeout: Duration,
) -> Result<(u16, Option<String>), String> {
    let addr = resolve_host(target.host.as_deref(), target.pod_ip, target.port).await?;
    let tcp = dial(addr, dial_timeout).await?;
    let _ = tcp.set_nodelay(true);
    let mut req = http::Request::get(target.path.as_str());
    let mut has_ua = false;
    let mut has_accept = false;
    let mut has_host = false;
    for (k, v) in &target.headers {
        has_ua |= k.eq_ignore_ascii_case("user-agent");
        has_accept |= k.eq_ignore_ascii_case("accept");
        has_host |= k.eq_ignore_ascii_case("host");
        req = req.header(k.as_str(), v.as_str());
    }
    if !has_host {
        req = req.header(http::header::HOST, target.url_host());
    }
    if !has_ua {
        req = req.header(http::header::USER_AGENT, USER_AGENT);
    }
    if !has_accept {
        req = req.header(http::header::ACCEPT, "*/*");
    }
    req = req.header(http::header::CONNECTION, "close");
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid request: {e}"))?;
    if target.https {
        let server_name = match addr.ip() {
            ip if target.host.is_none() => ServerName::IpAddress(ip.into()),
            ip => target
                .host
                .as_deref()
                .and_then(|h| ServerName::try_from(h.to_string()).ok())
                .unwrap_or(ServerName::IpAddress(ip.into())),
        };
        let tls = tokio_rustls::TlsConnector::from(podrun_prober::tls::client_config())
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        send(TokioIo::new(tls), req, addr).await
    } else {
        send(TokioIo::new(tcp), req, addr).await
    }
}

async fn send<T>(
    io: T,
    req: http::Request<Empty<Bytes>>,
    addr: SocketAddr,
) -> Result<(u16, Option<String>), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("dial tcp {addr}: {e}"))?;
    let conn = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| format!("{e}"));
    let out = match resp {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            // Drain (a bounded amount of) the body so the server sees a clean close.
            let _ =
                tokio::time::timeout(Duration::from_millis(100), resp.into_body().collect()).await;
            Ok((status, location))
        }
        Err(e) => Err(e),
    };
    conn.abort();
    out
}
