//! Shared fixtures for the in-process proxy tests: a proxy on ephemeral loopback
//! ports with a mock original destination, small upstream servers, a raw HTTP
//! client, and an access-log tokenizer.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use podrun_proxy::config::Direction;
use podrun_proxy::{
    AccessLog, AccessLogFormat, BoundAddrs, CapturedLog, ExitReason, MockOrigDst, Proxy,
    ProxyConfig, ProxyHandle,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running in-process proxy.
pub struct TestProxy {
    pub addrs: BoundAddrs,
    pub handle: ProxyHandle,
    pub log: CapturedLog,
    pub orig: Arc<MockOrigDst>,
    pub task: JoinHandle<ExitReason>,
}

impl TestProxy {
    pub async fn start(config: ProxyConfig) -> TestProxy {
        Self::start_with_format(config, AccessLogFormat::Text).await
    }

    pub async fn start_with_format(config: ProxyConfig, format: AccessLogFormat) -> TestProxy {
        let (log, captured) = AccessLog::memory(format);
        let orig = Arc::new(MockOrigDst::new());
        let proxy = Proxy::bind(config, orig.clone(), log).expect("bind proxy");
        let addrs = proxy.addrs().clone();
        let handle = proxy.handle();
        let task = tokio::spawn(async move { proxy.run().await.expect("proxy run") });
        // `run` marks the proxy live right after spawning its listeners.
        for _ in 0..200 {
            if handle.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(handle.is_ready(), "proxy did not become ready");
        TestProxy {
            addrs,
            handle,
            log: captured,
            orig,
            task,
        }
    }

    /// Points outbound captured connections at `dst`.
    pub fn outbound_to(&self, dst: SocketAddr) {
        self.orig.set(Direction::Outbound, dst);
    }

    /// Points inbound captured connections at `dst`.
    pub fn inbound_to(&self, dst: SocketAddr) {
        self.orig.set(Direction::Inbound, dst);
    }

    /// Waits until at least `n` access-log lines exist and returns them.
    pub async fn lines(&self, n: usize) -> Vec<String> {
        for _ in 0..400 {
            let lines = self.log.lines();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("expected {n} access-log lines, got {:?}", self.log.lines());
    }
}

/// An HTTP/1 + h2 upstream that answers `200 hello from upstream` and echoes what it
/// saw in headers: `x-seen-request-id`, `x-seen-peer`, `x-seen-host`. Paths:
/// `/slow` waits 600 ms, `/big` sends 100 000 bytes, `/status/NNN` answers NNN.
pub struct Upstream {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

pub async fn upstream_http(h2: bool) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    let rid = req
                        .headers()
                        .get("x-request-id")
                        .cloned()
                        .unwrap_or_else(|| "none".parse().unwrap());
                    let host = req
                        .headers()
                        .get("host")
                        .map(|h| h.to_str().unwrap_or("").to_string())
                        .or_else(|| req.uri().authority().map(|a| a.to_string()))
                        .unwrap_or_default();
                    let path = req.uri().path().to_string();
                    let body_in = req.into_body().collect().await?.to_bytes();
                    let mut status = 200u16;
                    let body: Bytes = if path == "/slow" {
                        tokio::time::sleep(Duration::from_millis(600)).await;
                        Bytes::from_static(b"slow done")
                    } else if path == "/big" {
                        Bytes::from(vec![b'x'; 100_000])
                    } else if let Some(code) = path.strip_prefix("/status/") {
                        status = code.parse().unwrap_or(500);
                        Bytes::new()
                    } else if path == "/echo" {
                        body_in
                    } else {
                        Bytes::from_static(b"hello from upstream")
                    };
                    let mut resp = Response::new(Full::new(body));
                    *resp.status_mut() = status.try_into().unwrap();
                    let h = resp.headers_mut();
                    h.insert("x-seen-request-id", rid);
                    h.insert("x-seen-peer", peer.to_string().parse().unwrap());
                    h.insert("x-seen-host", host.parse().unwrap());
                    Ok::<_, hyper::Error>(resp)
                });
                let io = TokioIo::new(stream);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                }
            });
        }
    });
    Upstream { addr, connections }
}

/// A TCP echo server that echoes until the client half-closes, then closes too.
pub async fn upstream_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A server that accepts and immediately closes every connection.
pub async fn upstream_slammer() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            drop(s);
        }
    });
    addr
}

/// A loopback address nothing listens on.
pub async fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// A parsed raw HTTP/1 response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1 response with a content-length body (or to EOF without one).
pub async fn read_response(s: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("response head timed out")
            .expect("read");
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let mut body = buf[head_end..].to_vec();
    match len {
        Some(len) => {
            while body.len() < len {
                let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                    .await
                    .expect("body timed out")
                    .expect("read");
                assert!(n > 0, "closed mid-body");
                body.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut body)).await;
        }
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

/// Sends `raw` on a new connection to `addr` and reads one response.
pub async fn roundtrip(addr: SocketAddr, raw: &str) -> (RawResponse, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let r = read_response(&mut s).await;
    (r, s)
}

/// Splits an access-log line into its fields, keeping `[...]` and `"..."` groups
/// whole (quotes removed), as the spec's acceptance tests should.
pub fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim_end_matches('\n');
    while !rest.is_empty() {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        let (tok, next) = if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').expect("unclosed [");
            (r[..end].to_string(), &r[end + 1..])
        } else if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').expect("unclosed quote");
            (r[..end].to_string(), &r[end + 1..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        };
        out.push(tok);
        rest = next;
    }
    out
}

/// Field indexes of the default TEXT format after [`tokens`].
pub mod field {
    pub const START: usize = 0;
    pub const REQUEST: usize = 1;
    pub const CODE: usize = 2;
    pub const FLAGS: usize = 3;
    pub const DETAILS: usize = 4;
    pub const TERMINATION: usize = 5;
    pub const TRANSPORT_FAILURE: usize = 6;
    pub const BYTES_RECEIVED: usize = 7;
    pub const BYTES_SENT: usize = 8;
    pub const DURATION: usize = 9;
    pub const UPSTREAM_TIME: usize = 10;
    pub const XFF: usize = 11;
    pub const USER_AGENT: usize = 12;
    pub const REQUEST_ID: usize = 13;
    pub const AUTHORITY: usize = 14;
    pub const UPSTREAM_HOST: usize = 15;
    pub const CLUSTER: usize = 16;
    pub const UPSTREAM_LOCAL: usize = 17;
    pub const DOWNSTREAM_LOCAL: usize = 18;
    pub const DOWNSTREAM_REMOTE: usize = 19;
    pub const SNI: usize = 20;
    pub const ROUTE: usize = 21;
    pub const COUNT: usize = 22;
}

/// Test-friendly config: ephemeral loopback ports, short drain timings.
pub fn config() -> ProxyConfig {
    let mut c = ProxyConfig::for_tests();
    c.drain.termination_drain_duration = Duration::from_millis(1500);
    c.drain.minimum_drain_duration = Duration::from_millis(100);
    c.drain.poll_interval = Duration::from_millis(50);
    c
}
