//! The OCI distribution client: registry hosts (containerd's `hosts.toml`), HTTP and HTTPS over
//! hyper and rustls, Bearer-token and Basic authentication, manifests and blobs.
//!
//! Plain HTTP is used for hosts configured with an `http://` URL, and as a fallback for loopback
//! registries (`localhost`, `127.0.0.0/8`, `::1`) and hosts marked insecure when they answer a
//! TLS handshake with plain HTTP, as containerd does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::auth::Credentials;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: usize = 10;
/// A registry that sends nothing for this long fails the request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The next frame of a body, failing when the registry stays silent for [`IDLE_TIMEOUT`].
pub async fn next_frame(
    body: &mut Incoming,
) -> Result<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>, String> {
    tokio::time::timeout(IDLE_TIMEOUT, body.frame())
        .await
        .map_err(|_| format!("no data from the registry for {}s", IDLE_TIMEOUT.as_secs()))
}

/// One place to pull from: a mirror or the registry itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub host: String,
    /// The API root, `/v2` by default.
    pub path: String,
    /// Accept any certificate.
    pub skip_verify: bool,
    /// On a TLS failure, try plain HTTP (loopback and insecure hosts).
    pub http_fallback: bool,
}

/// Where each registry is reached: containerd's `hosts.toml` directory and insecure hosts.
#[derive(Debug, Clone, Default)]
pub struct HostsConfig {
    /// A directory of `<host>/hosts.toml` and `_default/hosts.toml`, as containerd's `config_path`.
    pub dir: Option<PathBuf>,
    /// Hosts reached over plain HTTP if TLS fails, with certificates not verified.
    pub insecure: Vec<String>,
}

#[derive(serde::Deserialize, Default)]
struct HostsToml {
    server: Option<String>,
    #[serde(default)]
    host: toml::Table,
}

#[derive(serde::Deserialize, Default)]
struct HostEntry {
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    override_path: Option<bool>,
}

/// Whether `host` (`name[:port]`) is a loopback address or `localhost`.
pub fn is_loopback(host: &str) -> bool {
    let h = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host
            .rsplit_once(':')
            .map(|(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    host
                }
            })
            .unwrap_or(host),
    };
    h == "localhost"
        || h.parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

impl HostsConfig {
    /// The endpoints for `domain`, in the order they are tried.
    pub fn endpoints(&self, domain: &str) -> Result<Vec<Endpoint>, String> {
        let insecure = self.insecure.iter().any(|h| h == domain);
        // containerd's defaults: a loopback registry not on port 443 gets TLS without
        // verification and falls back to plain HTTP; port 80 is plain HTTP.
        let loopback = is_loopback(domain) && !domain.ends_with(":443");
        let fallback = insecure || loopback;
        let default = || {
            let host = if domain == crate::reference::DEFAULT_DOMAIN {
                format!("registry-1.{}", crate::reference::DEFAULT_DOMAIN)
            } else {
                domain.to_owned()
            };
            Endpoint {
                scheme: if domain.ends_with(":80") {
                    "http"
                } else {
                    "https"
                }
                .into(),
                host,
                path: "/v2".into(),
                skip_verify: insecure || loopback,
                http_fallback: fallback,
            }
        };
        let Some(dir) = &self.dir else {
            return Ok(vec![default()]);
        };
        // `localhost:<port>` and `127.0.0.1:<port>` name the same registry.
        let alias = match domain.split_once(':') {
            Some(("localhost", p)) => Some(format!("127.0.0.1:{p}")),
            Some(("127.0.0.1", p)) => Some(format!("localhost:{p}")),
            _ => None,
        };
        let mut file = dir.join(domain.replace(['[', ']'], "")).join("hosts.toml");
        if let Some(a) = alias
            && !file.exists()
        {
            file = dir.join(a).join("hosts.toml");
        }
        if !file.exists() {
            file = dir.join("_default").join("hosts.toml");
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![default()]),
            Err(e) => return Err(format!("read {}: {e}", file.display())),
        };
        let parsed: HostsToml =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut out = Vec::new();
        for (url, v) in &parsed.host {
            let entry: HostEntry = v
                .clone()
                .try_into()
                .map_err(|e| format!("{}: host {url}: {e}", file.display()))?;
            if let Some(caps) = &entry.capabilities
                && !caps.iter().any(|c| c == "pull")
            {
                continue;
            }
            out.push(endpoint_from_url(
                url,
                entry.override_path.unwrap_or(false),
                entry.skip_verify.unwrap_or(false),
                insecure,
            )?);
        }
        match &parsed.server {
            Some(s) => out.push(endpoint_from_url(s, false, false, insecure)?),
            None => out.push(default()),
        }
        Ok(out)
    }
}

fn endpoint_from_url(
    url: &str,
    override_path: bool,
    skip_verify: bool,
    insecure: bool,
) -> Result<Endpoint, String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    if scheme != "http" && scheme != "https" {
        return Err(format!("invalid host URL {url:?}"));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let path = if override_path {
        path.to_owned()
    } else if path.is_empty() || path.ends_with("/v2") {
        if path.is_empty() {
            "/v2".to_owned()
        } else {
            path.to_owned()
        }
    } else {
        format!("{path}/v2")
    };
    Ok(Endpoint {
        scheme: scheme.to_owned(),
        host: host.to_owned(),
        path,
        skip_verify: skip_verify || insecure,
        http_fallback: scheme == "https" && (insecure || is_loopback(host)),
    })
}

/// A request failure, worded as containerd's.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The transport failed.
    #[error("failed to do request: {method} {url:?}: {message}")]
    Transport {
        /// `Head`, `Get`.
        method: String,
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The registry refused the credentials (or there were none).
    #[error("pull access denied, repository does not exist or may require authorization: {0}")]
    AccessDenied(String),
    /// Fetching a token failed.
    #[error("failed to authorize: {0}")]
    Authorize(String),
    /// Anything else the registry answered.
    #[error("unexpected status from {method} request to {url}: {status}")]
    Status {
        /// `HEAD`, `GET`.
        method: String,
        /// The URL.
        url: String,
        /// The status line.
        status: String,
    },
}

/// A response with its final URL.
pub struct Fetched {
    /// The response.
    pub response: Response<Incoming>,
    /// The URL that answered.
    pub url: String,
}

/// The distribution client for one pull: endpoints, TLS, and the tokens it obtained.
pub struct Client {
    tokens: Mutex<HashMap<String, String>>,
    plain_http: Mutex<HashMap<String, bool>>,
    credentials: Option<Credentials>,
}

impl Client {
    /// A client that authenticates with `credentials` when a registry asks.
    pub fn new(credentials: Option<Credentials>) -> Self {
        Self {
            tokens: Mutex::new(HashMap::new()),
            plain_http: Mutex::new(HashMap::new()),
            credentials,
        }
    }

    /// `HEAD` or `GET` on `<endpoint>/<repo>/<kind>/<object>`, authenticating as asked.
    pub async fn fetch(
        &self,
        ep: &Endpoint,
        repo: &str,
        method: Method,
        kind: &str,
        object: &str,
        accept: Option<&str>,
    ) -> Result<Fetched, ClientError> {
        let path = format!("{}/{repo}/{kind}/{object}", ep.path);
        let scope = format!("repository:{repo}:pull");
        let token_key = format!("{}|{scope}", ep.host);
        for attempt in 0..2 {
            let mut headers = HeaderMap::new();
            if let Some(a) = accept {
                headers.insert(
                    http::header::ACCEPT,
                    a.parse().expect("static accept header"),
                );
            }
            if let Some(t) = self.tokens.lock().expect("token lock").get(&token_key) {
                headers.insert(
                    http::header::AUTHORIZATION,
                    t.parse()
                        .map_err(|_| ClientError::Authorize("invalid token".into()))?,
                );
            }
            let fetched = self.request(ep, method.clone(), &path, headers).await?;
            if fetched.response.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                if fetched.response.status() == StatusCode::UNAUTHORIZED {
                    return Err(ClientError::AccessDenied("authorization failed".into()));
                }
                return Ok(fetched);
            }
            let challenge = fetched
                .response
                .headers()
                .get(http::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let header = self.authorize(&challenge, &scope).await?;
            self.tokens
                .lock()
                .expect("token lock")
                .insert(token_key.clone(), header);
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn authorize(&self, challenge: &str, scope: &str) -> Result<String, ClientError> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let params = parse_challenge(params);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => match &self.credentials {
                Some(c) => Ok(c.basic_header()),
                None => Err(ClientError::AccessDenied(
                    "authorization failed: no basic auth credentials".into(),
                )),
            },
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| ClientError::Authorize("no realm in challenge".into()))?;
                let mut url = format!("{realm}?scope={}", percent(scope));
                if let Some(s) = params.get("service") {
                    url.push_str(&format!("&service={}", percent(s)));
                }
                let mut headers = HeaderMap::new();
                if let Some(c) = &self.credentials {
                    headers.insert(
                        http::header::AUTHORIZATION,
                        c.basic_header()
                            .parse()
                            .map_err(|_| ClientError::Authorize("invalid credentials".into()))?,
                    );
                }
                let fetched = self
                    .get_url(&url, headers)
                    .await
                    .map_err(|e| ClientError::Authorize(format!("failed to fetch token: {e}")))?;
                let status = fetched.response.status();
                if !status.is_success() {
                    let what = if self.credentials.is_some() {
                        "oauth token"
                    } else {
                        "anonymous token"
                    };
                    return Err(ClientError::Authorize(format!(
                        "failed to fetch {what}: unexpected status from GET request to {url}: {}",
                        status_text(status)
                    )));
                }
                let body = read_limited(fetched.response, 1 << 20)
                    .await
                    .map_err(|e| ClientError::Authorize(format!("failed to fetch token: {e}")))?;
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token = serde_json::from_slice(&body).map_err(|e| {
                    ClientError::Authorize(format!("failed to decode token response: {e}"))
                })?;
                let token = t.token.or(t.access_token).filter(|t| !t.is_empty());
                token
                    .map(|t| format!("Bearer {t}"))
                    .ok_or_else(|| ClientError::Authorize("no token in token response".into()))
            }
            _ => Err(ClientError::AccessDenied(format!(
                "authorization failed: unsupported challenge {challenge:?}"
            ))),
        }
    }

    /// GET an absolute URL (a token realm or a redirect), following redirects.
    pub async fn get_url(&self, url: &str, headers: HeaderMap) -> Result<Fetched, ClientError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| ClientError::Transport {
                method: "Get".into(),
                url: url.into(),
                message: "unsupported URL".into(),
            })?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let ep = Endpoint {
            scheme: scheme.into(),
            host: host.into(),
            path: String::new(),
            skip_verify: false,
            http_fallback: false,
        };
        self.request(&ep, Method::GET, path, headers).await
    }

    async fn request(
        &self,
        ep: &Endpoint,
        method: Method,
        path: &str,
        headers: HeaderMap,
    ) -> Result<Fetched, ClientError> {
        let mut ep = ep.clone();
        let mut path = path.to_owned();
        let mut headers = headers;
        for _ in 0..=MAX_REDIRECTS {
            let fetched = self
                .request_once(&ep, method.clone(), &path, headers.clone())
                .await?;
            let status = fetched.response.status();
            if !status.is_redirection() {
                return Ok(fetched);
            }
            let Some(loc) = fetched
                .response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Ok(fetched);
            };
            if let Some((scheme, rest)) = loc.split_once("://") {
                let (host, p) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, "/"),
                };
                if host != ep.host {
                    // Credentials never go to another host (blob storage behind a redirect).
                    headers.remove(http::header::AUTHORIZATION);
                    ep = Endpoint {
                        scheme: scheme.into(),
                        host: host.into(),
                        path: String::new(),
                        skip_verify: false,
                        http_fallback: false,
                    };
                } else {
                    ep.scheme = scheme.into();
                }
                path = p.to_owned();
            } else {
                path = loc.to_owned();
            }
        }
        Err(ClientError::Transport {
            method: go_method(&method),
            url: format!("{}://{}{path}", ep.scheme, ep.host),
            message: format!("stopped after {MAX_REDIRECTS} redirects"),
        })
    }

    async fn request_once(
        &self,
        ep: &Endpoint,
        method: Method,
        path: &str,
        headers: HeaderMap,
    ) -> Result<Fetched, ClientError> {
        let plain = ep.scheme == "http"
            || self
                .plain_http
                .lock()
                .expect("scheme lock")
                .get(&ep.host)
                .copied()
                .unwrap_or(false);
        let scheme = if plain { "http" } else { "https" };
        let url = format!("{scheme}://{}{path}", ep.host);
        match self.send(ep, plain, &method, path, &headers).await {
            Ok(response) => Ok(Fetched { response, url }),
            Err(SendError::Tls(msg)) if ep.http_fallback && !plain => {
                tracing::debug!(host = %ep.host, "TLS failed ({msg}); trying plain HTTP");
                self.plain_http
                    .lock()
                    .expect("scheme lock")
                    .insert(ep.host.clone(), true);
                let url = format!("http://{}{path}", ep.host);
                match self.send(ep, true, &method, path, &headers).await {
                    Ok(response) => Ok(Fetched { response, url }),
                    Err(e) => Err(ClientError::Transport {
                        method: go_method(&method),
                        url,
                        message: e.to_string(),
                    }),
                }
            }
            Err(e) => Err(ClientError::Transport {
                method: go_method(&method),
                url,
                message: e.to_string(),
            }),
        }
    }

    async fn send(
        &self,
        ep: &Endpoint,
        plain: bool,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Response<Incoming>, SendError> {
        let default_port = if plain { 80 } else { 443 };
        let (host_only, port) = split_host_port(&ep.host, default_port);
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host_only.as_str(), port))
            .await
            .map_err(|e| {
                SendError::Other(format!("dial tcp: lookup {host_only}: {}", go_errno(&e)))
            })?
            .collect();
        let addr = *addrs.first().ok_or_else(|| {
            SendError::Other(format!("dial tcp: lookup {host_only}: no such host"))
        })?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| SendError::Other(format!("dial tcp {addr}: i/o timeout")))?
            .map_err(|e| SendError::Other(format!("dial tcp {addr}: connect: {}", go_errno(&e))))?;
        let _ = tcp.set_nodelay(true);
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::HOST, ep.host.as_str())
            .header(
                http::header::USER_AGENT,
                concat!("podrun/", env!("CARGO_PKG_VERSION")),
            );
        let mut req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| SendError::Other(e.to_string()))?;
        req.headers_mut().extend(headers.clone());
        if plain {
            send_on(tcp, req).await
        } else {
            let config = tls_config(ep.skip_verify);
            let name = rustls::pki_types::ServerName::try_from(host_only.clone())
                .map_err(|e| SendError::Other(format!("invalid server name {host_only}: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| SendError::Tls(format!("tls: {e}")))?;
            send_on(tls, req).await
        }
    }
}

/// TLS settings, built once per process: the system's roots, or (for insecure hosts) none.
fn tls_config(skip_verify: bool) -> Arc<rustls::ClientConfig> {
    static VERIFIED: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    static INSECURE: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    if skip_verify {
        return INSECURE
            .get_or_init(|| {
                let p = provider();
                Arc::new(
                    rustls::ClientConfig::builder_with_provider(p.clone())
                        .with_safe_default_protocol_versions()
                        .expect("ring supports the default protocol versions")
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(AcceptAny(p)))
                        .with_no_client_auth(),
                )
            })
            .clone();
    }
    VERIFIED
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        })
        .clone()
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Other(String),
}

async fn send_on<S>(io: S, req: Request<Empty<Bytes>>) -> Result<Response<Incoming>, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| SendError::Other(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    tokio::time::timeout(IDLE_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| {
            SendError::Other(format!(
                "no response from the registry in {}s",
                IDLE_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| SendError::Other(e.to_string()))
}

/// Reads a whole body, refusing more than `limit` bytes.
pub async fn read_limited(resp: Response<Incoming>, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = next_frame(&mut body).await? {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(d) = frame.data_ref() {
            if out.len() + d.len() > limit {
                return Err(format!("response larger than {limit} bytes"));
            }
            out.extend_from_slice(d);
        }
    }
    Ok(out)
}

fn split_host_port(host: &str, default: u16) -> (String, u16) {
    if let Some(rest) = host.strip_prefix('[') {
        let (h, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default);
        return (h.to_owned(), port);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => {
            (h.to_owned(), p.parse().unwrap_or(default))
        }
        _ => (host.to_owned(), default),
    }
}

fn parse_challenge(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(i) => (&q[..i], &q[i + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        out.insert(k, v.to_owned());
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `404 Not Found`.
pub fn status_text(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
}

/// Go's method spelling in `failed to do request: Head "…"`.
fn go_method(m: &Method) -> String {
    let s = m.as_str();
    let mut out = s[..1].to_owned();
    out.push_str(&s[1..].to_ascii_lowercase());
    out
}

/// An OS error in Go's words: `connection refused`.
fn go_errno(e: &std::io::Error) -> String {
    crate::layer::os_text(e)
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_toml_mirrors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docker.io")).unwrap();
        std::fs::write(
            dir.path().join("docker.io/hosts.toml"),
            "server = \"https://upstream.invalid\"\n[host.\"http://127.0.0.1:5999\"]\ncapabilities = [\"pull\", \"resolve\"]\n[host.\"https://push.invalid\"]\ncapabilities = [\"push\"]\n",
        )
        .unwrap();
        let cfg = HostsConfig {
            dir: Some(dir.path().into()),
            insecure: vec![],
        };
        let eps = cfg.endpoints("docker.io").unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(
            (
                eps[0].scheme.as_str(),
                eps[0].host.as_str(),
                eps[0].path.as_str()
            ),
            ("http", "127.0.0.1:5999", "/v2")
        );
        assert_eq!(eps[1].host, "upstream.invalid");
        let other = cfg.endpoints("localhost:5000").unwrap();
        assert_eq!(other.len(), 1);
        assert!(other[0].http_fallback);
        std::fs::create_dir_all(dir.path().join("127.0.0.1:5000")).unwrap();
        std::fs::write(
            dir.path().join("127.0.0.1:5000/hosts.toml"),
            "server = \"http://127.0.0.1:5001\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg.endpoints("localhost:5000").unwrap()[0].host,
            "127.0.0.1:5001"
        );
        assert!(
            is_loopback("127.0.0.1:5000")
                && is_loopback("[::1]:1")
                && !is_loopback("10.0.0.1:5000")
        );
    }

    #[test]
    fn challenges_parse() {
        let p = parse_challenge(
            r#"realm="http://127.0.0.1:1/token",service="reg",scope="repository:a:pull""#,
        );
        assert_eq!(p["realm"], "http://127.0.0.1:1/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(go_method(&Method::HEAD), "Head");
        assert_eq!(status_text(StatusCode::UNAUTHORIZED), "401 Unauthorized");
    }
}
