//! App probes on the agent status port: the proxy runs the handlers stored in
//! `ISTIO_KUBE_APP_PROBERS` against a real app server on loopback, as the kubelet's
//! rewritten probes ask it to.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use podrun_proxy::app_probe::parse_app_probers;
use support::{TestProxy, config, refused_addr, roundtrip};
use tokio::net::TcpListener;

/// What the app saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    peer: SocketAddr,
    headers: HeaderMap,
}

/// An HTTP/1 app: `/ok` → 200 `ready`, `/status/NNN` → NNN `status NNN`, `/redirect[/P]`
/// → 302 to another host (to `P` on this one), `/big` → 100 000 bytes, `/hang` → never
/// answers. It records every request it receives.
struct App {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl App {
    async fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<Incoming>| {
                        let record = record.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            record.lock().unwrap().push(Seen {
                                path: req
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                peer,
                                headers: req.headers().clone(),
                            });
                            let mut status = 200;
                            let mut location = None;
                            let body = if path == "/ok" {
                                Bytes::from_static(b"ready")
                            } else if let Some(code) = path.strip_prefix("/status/") {
                                status = code.parse().unwrap();
                                Bytes::from(format!("status {code}"))
                            } else if let Some(to) = path.strip_prefix("/redirect") {
                                // `/redirect` leaves the host; `/redirect/ok` and
                                // `/redirect/status/NNN` stay on it.
                                status = 302;
                                location = Some(if to.is_empty() {
                                    "http://elsewhere.example/".to_string()
                                } else {
                                    to.to_string()
                                });
                                Bytes::new()
                            } else if path == "/big" {
                                Bytes::from(vec![b'x'; 100_000])
                            } else if path == "/hang" {
                                std::future::pending::<()>().await;
                                unreachable!()
                            } else {
                                status = 404;
                                Bytes::new()
                            };
                            let mut resp = Response::new(Full::new(body));
                            *resp.status_mut() = status.try_into().unwrap();
                            if let Some(location) = location {
                                resp.headers_mut()
                                    .insert("location", HeaderValue::from_str(&location).unwrap());
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        App { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A gRPC server implementing `grpc.health.v1.Health/Check` over h2c: service `""` and
/// `"up"` are SERVING, anything else NOT_SERVING; other methods are UNIMPLEMENTED.
async fn grpc_health_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<Incoming>| async move {
                    let path = req.uri().path().to_string();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    // Request: 5-byte prefix, then optionally field 1 (service name).
                    let service = if body.len() > 7 {
                        String::from_utf8_lossy(&body[7..]).into_owned()
                    } else {
                        String::new()
                    };
                    let mut trailers = HeaderMap::new();
                    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
                        if path == "/grpc.health.v1.Health/Check" {
                            let status = if service.is_empty() || service == "up" {
                                1
                            } else {
                                2
                            };
                            trailers.insert("grpc-status", HeaderValue::from_static("0"));
                            vec![
                                Ok(Frame::data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))),
                                Ok(Frame::trailers(trailers)),
                            ]
                        } else {
                            trailers.insert("grpc-status", HeaderValue::from_static("12"));
                            vec![Ok(Frame::trailers(trailers))]
                        };
                    let mut resp = Response::new(StreamBody::new(futures::stream::iter(frames)));
                    resp.headers_mut()
                        .insert("content-type", HeaderValue::from_static("application/grpc"));
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A proxy whose `ISTIO_KUBE_APP_PROBERS` is `probers`.
async fn proxy_with(probers: &str) -> (TestProxy, SocketAddr) {
    let mut c = config();
    c.app_probers = parse_app_probers(probers).expect("valid probers");
    let p = TestProxy::start(c).await;
    let status = p.addrs.status.expect("status listener");
    (p, status)
}

fn get(path: &str, status: SocketAddr) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {status}\r\nUser-Agent: kube-probe/1.34\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn http_probe_passes_the_apps_status_and_body_through() {
    let app = App::start().await;
    let port = app.addr.port();
    let (_p, status) = proxy_with(&format!(
        r#"{{"/app-health/web/readyz":{{"httpGet":{{"path":"/ok","port":{port}}}}},
            "/app-health/web/livez":{{"httpGet":{{"path":"/status/503","port":{port}}}}},
            "/app-health/web/startupz":{{"httpGet":{{"path":"/status/404","port":{port}}}}}}}"#
    ))
    .await;
    let (r, _) = roundtrip(status, &get("/app-health/web/readyz", status)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ready");
    let (r, _) = roundtrip(status, &get("/app-health/web/livez", status)).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, b"status 503");
    let (r, _) = roundtrip(status, &get("/app-health/web/startupz", status)).await;
    assert_eq!(r.status, 404);
    let paths: Vec<String> = app.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/ok", "/status/503", "/status/404"]);
}

#[tokio::test]
async fn redirects_are_followed_on_the_same_host_and_answer_200_elsewhere() {
    let app = App::start().await;
    let port = app.addr.port();
    let (_p, status) = proxy_with(&format!(
        r#"{{"/app-health/web/readyz":{{"httpGet":{{"path":"/redirect","port":{port}}}}},
            "/app-health/web/livez":{{"httpGet":{{"path":"/redirect/ok","port":{port}}}}},
            "/app-health/web/startupz":{{"httpGet":{{"path":"/redirect/status/503","port":{port}}}}}}}"#
    ))
    .await;
    // Another host: not followed, a plain 200 without the Location.
    let (r, _) = roundtrip(status, &get("/app-health/web/readyz", status)).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert!(r.header("location").is_none());
    assert_eq!(app.seen().len(), 1);
    // The same host: followed, and the final answer counts.
    let (r, _) = roundtrip(status, &get("/app-health/web/livez", status)).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ready"[..]));
    let (r, _) = roundtrip(status, &get("/app-health/web/startupz", status)).await;
    assert_eq!(r.status, 503);
    let paths: Vec<String> = app.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "/redirect",
            "/redirect/ok",
            "/ok",
            "/redirect/status/503",
            "/status/503"
        ]
    );
}

#[tokio::test]
async fn kubelet_headers_are_forwarded_from_127_0_0_6_with_the_app_port_in_host() {
    let app = App::start().await;
    let port = app.addr.port();
    let (_p, status) = proxy_with(&format!(
        r#"{{"/app-health/web/readyz":{{"httpGet":{{"path":"/ok?deep=1","port":{port},
            "httpHeaders":[{{"name":"X-Probe-Token","value":"s3cret"}}]}}}}}}"#
    ))
    .await;
    let raw = format!(
        "GET /app-health/web/readyz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: kube-probe/1.34\r\nAccept: */*\r\nX-Custom: kubelet-sent\r\nConnection: close\r\n\r\n",
        status.port()
    );
    let (r, _) = roundtrip(status, &raw).await;
    assert_eq!(r.status, 200);
    let seen = app.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.path, "/ok?deep=1");
    assert_eq!(
        s.peer.ip().to_string(),
        "127.0.0.6",
        "probes leave from the capture-exempt source"
    );
    assert_eq!(s.headers["host"], format!("127.0.0.1:{port}").as_str());
    assert_eq!(s.headers["user-agent"], "kube-probe/1.34");
    assert_eq!(s.headers["accept"], "*/*");
    assert_eq!(s.headers["x-custom"], "kubelet-sent");
    assert_eq!(s.headers["x-probe-token"], "s3cret");

    // A Host naming something other than the status port is passed on unchanged.
    let raw = "GET /app-health/web/readyz HTTP/1.1\r\nHost: web.example:8443\r\nConnection: close\r\n\r\n";
    let (r, _) = roundtrip(status, raw).await;
    assert_eq!(r.status, 200);
    assert_eq!(app.seen()[1].headers["host"], "web.example:8443");
}

#[tokio::test]
async fn unreachable_app_is_500_and_unknown_paths_are_400() {
    let closed = refused_addr().await.port();
    let (_p, status) = proxy_with(&format!(
        r#"{{"/app-health/web/readyz":{{"httpGet":{{"path":"/ok","port":{closed}}}}}}}"#
    ))
    .await;
    let (r, _) = roundtrip(status, &get("/app-health/web/readyz", status)).await;
    assert_eq!(r.status, 500);
    let why = String::from_utf8_lossy(&r.body);
    assert!(why.contains("refused"), "{why}");
    for path in [
        "/app-health/web/livez",
        "/app-health/other/readyz",
        "/app-lifecycle/web/prestopz",
        "/app-health/web",
    ] {
        let (r, _) = roundtrip(status, &get(path, status)).await;
        assert_eq!(r.status, 400, "{path}");
        assert!(
            String::from_utf8_lossy(&r.body).contains(path),
            "{path}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // The status port's own endpoints are untouched.
    let (r, _) = roundtrip(status, &get("/healthz/ready", status)).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn tcp_probe_is_200_when_the_port_accepts_and_500_when_not() {
    let app = App::start().await;
    let closed = refused_addr().await.port();
    let (_p, status) = proxy_with(&format!(
        r#"{{"/app-health/web/livez":{{"tcpSocket":{{"port":{}}}}},
            "/app-health/web/readyz":{{"tcpSocket":{{"port":{closed}}},"timeoutSeconds":2}}}}"#,
        app.addr.port()
    ))
    .await;
    let (r, _) = roundtrip(status, &get("/app-health/web/livez", status)).await;
    assert_eq!(r.status, 200);
    let (r, _) = roundtrip(status, &get("/app-health/web/readyz", status)).await;
    assert_eq!(r.status, 500);
    assert!(String::from_utf8_lossy(&r.body).contains("refused"));
}

#[tokio::test]
async fn lifecycle_hooks_run_like_probes() {
    let app = App::start().await;
    let port = app.addr.port();
    let (_p, status) = proxy_with(&format!(
        r#"{{"/app-lifecycle/web/prestopz":{{"httpGet":{{"path":"/ok","port":{port}}}}},
            "/app-lifecycle/web/poststartz":{{"tcpSocket":{{"port":{port}}}}}}}"#
    ))
    .await;
    let (r, _) = roundtrip(status, &get("/app-lifecycle/web/prestopz", status)).await;
    assert_eq!(r.status, 200);
    let (r, _) = roundtrip(status, &get("/app-lifecycle/web/poststartz", status)).await;
    assert_eq!(r.status, 200);
    assert_eq!(app.seen()[0].path, "/ok");
}

#[tokio::test]
async fn body_is_bounded_and_a_silent_app_times_out() {
    let app = App::start().await;
    let port = app.addr.port();
    let (_p, status) = proxy_with(&format!(
        r#"{{"/app-health/web/readyz":{{"httpGet":{{"path":"/big","port":{port}}}}},
            "/app-health/web/livez":{{"httpGet":{{"path":"/hang","port":{port}}},"timeoutSeconds":1}}}}"#
    ))
    .await;
    let (r, _) = roundtrip(status, &get("/app-health/web/readyz", status)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), podrun_proxy::app_probe::MAX_BODY);
    let (r, _) = roundtrip(status, &get("/app-health/web/livez", status)).await;
    assert_eq!(r.status, 500);
    assert!(String::from_utf8_lossy(&r.body).contains("within 1s"));
}

/// An HTTPS app with a self-signed certificate: `/ok` → 200 `secure`, anything else 404.
async fn https_app() -> SocketAddr {
    let ck = rcgen::generate_simple_self_signed(vec!["app.local".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|req: http::Request<Incoming>| async move {
                    let ok = req.uri().path() == "/ok";
                    let mut resp = Response::new(Full::new(Bytes::from_static(if ok {
                        b"secure"
                    } else {
                        b""
                    })));
                    if !ok {
                        *resp.status_mut() = http::StatusCode::NOT_FOUND;
                    }
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_probe_speaks_tls_to_an_app_with_a_self_signed_certificate() {
    let tls_port = https_app().await.port();
    let plain = App::start().await;
    let (_p, status) = proxy_with(&format!(
        r#"{{"/app-health/web/readyz":{{"httpGet":{{"path":"/ok","port":{tls_port},"scheme":"HTTPS"}}}},
            "/app-health/web/livez":{{"httpGet":{{"path":"/missing","port":{tls_port},"scheme":"HTTPS"}}}},
            "/app-health/web/startupz":{{"httpGet":{{"path":"/ok","port":{},"scheme":"HTTPS"}}}}}}"#,
        plain.addr.port()
    ))
    .await;
    let (r, _) = roundtrip(status, &get("/app-health/web/readyz", status)).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"secure"[..]));
    let (r, _) = roundtrip(status, &get("/app-health/web/livez", status)).await;
    assert_eq!(r.status, 404);
    // An app that speaks plain HTTP on an HTTPS probe's port fails the handshake.
    let (r, _) = roundtrip(status, &get("/app-health/web/startupz", status)).await;
    assert_eq!(r.status, 500);
    assert!(
        String::from_utf8_lossy(&r.body).contains("TLS handshake"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

#[tokio::test]
async fn grpc_probe_checks_health() {
    let grpc = grpc_health_app().await;
    let app = App::start().await;
    let port = grpc.port();
    let (_p, status) = proxy_with(&format!(
        r#"{{"/app-health/web/readyz":{{"grpc":{{"port":{port}}}}},
            "/app-health/web/livez":{{"grpc":{{"port":{port},"service":"up"}}}},
            "/app-health/web/startupz":{{"grpc":{{"port":{port},"service":"down"}}}},
            "/app-health/side/readyz":{{"grpc":{{"port":{}}}}}}}"#,
        app.addr.port()
    ))
    .await;
    for (path, want) in [
        ("/app-health/web/readyz", 200),
        ("/app-health/web/livez", 200),
        ("/app-health/web/startupz", 500),
        // An HTTP/1-only server cannot answer a gRPC health check.
        ("/app-health/side/readyz", 500),
    ] {
        let (r, _) = roundtrip(status, &get(path, status)).await;
        assert_eq!(
            r.status,
            want,
            "{path}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
}
