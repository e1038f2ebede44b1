//! Probe and hook handlers against real local servers on 127.0.0.1: an HTTP/1.1 server, the
//! same over TLS with a self-signed certificate, a TCP listener, a gRPC health server over
//! h2c, and exec in a real container (root).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{
    ContainerPort, ExecAction, GRPCAction, HTTPGetAction, HTTPHeader, LifecycleHandler, Probe,
    SleepAction, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podrun_node::handler::{HandlerOutcome, run_hook, run_probe, run_probe_with_ports};
use podrun_node::runtime::{ContainerLaunch, ContainerProcess, PodIdentity, isolation_available};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The test HTTP service: the path picks the answer.
async fn answer(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Body>, Infallible> {
    let full = |s: u16, b: &str| {
        Ok(http::Response::builder()
            .status(s)
            .body(Full::new(Bytes::from(b.to_string())).boxed())
            .expect("response"))
    };
    match req.uri().path() {
        "/ok" => full(200, "ok"),
        "/fail" => full(500, "boom"),
        "/redirect" => Ok(http::Response::builder()
            .status(302)
            .header("location", "http://198.18.0.1/elsewhere")
            .body(Full::new(Bytes::new()).boxed())
            .expect("response")),
        // Redirects on the same host, which probes follow.
        "/to-fail" | "/to-ok" | "/loop" => Ok(http::Response::builder()
            .status(if req.uri().path() == "/loop" {
                307
            } else {
                302
            })
            .header(
                "location",
                match req.uri().path() {
                    "/to-fail" => "fail",
                    "/to-ok" => "/ok?from=redirect",
                    _ => "/loop",
                },
            )
            .body(Full::new(Bytes::new()).boxed())
            .expect("response")),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            full(200, "late")
        }
        "/headers" => {
            let ua = req
                .headers()
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let custom = req
                .headers()
                .get("x-custom")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let host = req
                .headers()
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if ua == "kube-probe/1.34" && custom == "v" && host.starts_with("127.0.0.1:") {
                full(200, "headers ok")
            } else {
                full(400, &format!("ua={ua} custom={custom} host={host}"))
            }
        }
        _ => full(404, "not found"),
    }
}

async fn http_server(tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(answer);
                match tls {
                    Some(acc) => {
                        if let Ok(s) = acc.accept(tcp).await {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(s), svc)
                                .await;
                        }
                    }
                    None => {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), svc)
                            .await;
                    }
                }
            });
        }
    });
    addr
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// A gRPC health server: service "" is SERVING, "down" NOT_SERVING, anything else NOT_FOUND.
async fn grpc_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                        assert_eq!(
                            req.headers().get("content-type").map(|v| v.as_bytes()),
                            Some(&b"application/grpc"[..])
                        );
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        // Frame: 5-byte prefix, then optional field 1 (service).
                        let msg = body.get(5..).unwrap_or(&[]);
                        let service = if msg.len() > 2 {
                            String::from_utf8_lossy(&msg[2..]).into_owned()
                        } else {
                            String::new()
                        };
                        let mut trailers = http::HeaderMap::new();
                        let frames: Vec<Result<Frame<Bytes>, Infallible>> = match service.as_str() {
                            "" | "down" => {
                                let status = if service.is_empty() { 1u8 } else { 2 };
                                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                                vec![
                                    Ok(Frame::data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))),
                                    Ok(Frame::trailers(trailers)),
                                ]
                            }
                            _ => {
                                trailers.insert("grpc-status", http::HeaderValue::from_static("5"));
                                trailers.insert(
                                    "grpc-message",
                                    http::HeaderValue::from_static("unknown%20service"),
                                );
                                vec![Ok(Frame::trailers(trailers))]
                            }
                        };
                        let body = StreamBody::new(futures::stream::iter(frames));
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .expect("response"),
                        )
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// A port on 127.0.0.1 with nothing listening.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind((LOCALHOST, 0))
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

fn http_probe(port: u16, path: &str, scheme: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(port as i32),
            path: Some(path.into()),
            scheme: Some(scheme.into()),
            ..Default::default()
        }),
        timeout_seconds: Some(1),
        ..Default::default()
    }
}

/// Probes that need no container still take one: a short-lived `sleep`.
fn container() -> ContainerProcess {
    assert!(
        isolation_available(),
        "these tests need root (containers with namespaces)"
    );
    let dir = std::env::temp_dir().join(format!("podrun-handler-{}", std::process::id()));
    let launch = ContainerLaunch {
        pod: PodIdentity {
            namespace: "default".into(),
            name: "h".into(),
            uid: "u3".into(),
        },
        container_name: "c".into(),
        restart_count: 0,
        argv: vec!["sleep".into(), "60".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: None,
        mounts: Vec::new(),
        log_path: dir.join(format!("{}.log", rand_id())),
        termination_message: None,
        hostname: None,
        ..Default::default()
    };
    ContainerProcess::spawn(&launch).expect("spawn container")
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn failure(o: HandlerOutcome) -> String {
    match o {
        HandlerOutcome::Failure(m) => m,
        HandlerOutcome::Success => panic!("expected a failure"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_probe_status_headers_redirects_and_timeouts() {
    let c = container();
    let addr = http_server(None).await;
    let p = addr.port();
    assert_eq!(
        run_probe(&http_probe(p, "/ok", "HTTP"), &c, &[], LOCALHOST).await,
        HandlerOutcome::Success
    );
    assert_eq!(
        failure(run_probe(&http_probe(p, "/fail", "HTTP"), &c, &[], LOCALHOST).await),
        "HTTP probe failed with statuscode: 500"
    );
    assert_eq!(
        failure(run_probe(&http_probe(p, "/nope", "HTTP"), &c, &[], LOCALHOST).await),
        "HTTP probe failed with statuscode: 404"
    );
    // A redirect to another host is success and is not followed (the Location points
    // nowhere reachable); one on the same host is followed, at most 10 times.
    assert_eq!(
        failure(run_probe(&http_probe(p, "/to-fail", "HTTP"), &c, &[], LOCALHOST).await),
        "HTTP probe failed with statuscode: 500"
    );
    assert_eq!(
        run_probe(&http_probe(p, "/to-ok", "HTTP"), &c, &[], LOCALHOST).await,
        HandlerOutcome::Success
    );
    let looping = failure(run_probe(&http_probe(p, "/loop", "HTTP"), &c, &[], LOCALHOST).await);
    assert!(looping.ends_with("stopped after 10 redirects"), "{looping}");
    assert_eq!(
        run_probe(&http_probe(p, "/redirect", "HTTP"), &c, &[], LOCALHOST).await,
        HandlerOutcome::Success
    );
    let mut with_headers = http_probe(p, "/headers", "HTTP");
    if let Some(h) = with_headers.http_get.as_mut() {
        h.http_headers = Some(vec![HTTPHeader {
            name: "X-Custom".into(),
            value: "v".into(),
        }]);
    }
    assert_eq!(
        run_probe(&with_headers, &c, &[], LOCALHOST).await,
        HandlerOutcome::Success
    );

    let started = Instant::now();
    let msg = failure(run_probe(&http_probe(p, "/slow", "HTTP"), &c, &[], LOCALHOST).await);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "timeoutSeconds not applied"
    );
    assert_eq!(
        msg,
        format!(
            "Get \"http://{addr}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )
    );
    let closed = closed_port().await;
    assert_eq!(
        failure(run_probe(&http_probe(closed, "/ok", "HTTP"), &c, &[], LOCALHOST).await),
        format!(
            "Get \"http://127.0.0.1:{closed}/ok\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_probe_skips_certificate_verification_and_named_ports_resolve() {
    let c = container();
    let addr = http_server(Some(tls_acceptor())).await;
    let ports = vec![ContainerPort {
        name: Some("https".into()),
        container_port: addr.port() as i32,
        ..Default::default()
    }];
    let mut probe = http_probe(0, "/ok", "HTTPS");
    if let Some(h) = probe.http_get.as_mut() {
        h.port = IntOrString::String("https".into());
    }
    assert_eq!(
        run_probe_with_ports(&probe, &c, &[], LOCALHOST, &ports).await,
        HandlerOutcome::Success
    );
    assert_eq!(
        failure(
            run_probe_with_ports(
                &http_probe(addr.port(), "/fail", "HTTPS"),
                &c,
                &[],
                LOCALHOST,
                &ports
            )
            .await
        ),
        "HTTP probe failed with statuscode: 500"
    );
    assert_eq!(
        failure(run_probe(&probe, &c, &[], LOCALHOST).await),
        "couldn't find port: https in container"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_socket_probe_connects_or_reports_refusal() {
    let c = container();
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0))
        .await
        .expect("bind");
    let open = listener.local_addr().expect("addr").port();
    let tcp = |port: u16| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port as i32),
            host: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        run_probe(&tcp(open), &c, &[], LOCALHOST).await,
        HandlerOutcome::Success
    );
    let closed = closed_port().await;
    assert_eq!(
        failure(run_probe(&tcp(closed), &c, &[], LOCALHOST).await),
        format!("dial tcp 127.0.0.1:{closed}: connect: connection refused")
    );
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_probe_reads_the_health_status() {
    let c = container();
    let addr = grpc_server().await;
    let grpc = |service: Option<&str>, port: u16| Probe {
        grpc: Some(GRPCAction {
            port: port as i32,
            service: service.map(Into::into),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        run_probe(&grpc(None, addr.port()), &c, &[], LOCALHOST).await,
        HandlerOutcome::Success
    );
    assert_eq!(
        failure(run_probe(&grpc(Some("down"), addr.port()), &c, &[], LOCALHOST).await),
        "service unhealthy (responded with \"NOT_SERVING\")"
    );
    assert_eq!(
        failure(run_probe(&grpc(Some("other"), addr.port()), &c, &[], LOCALHOST).await),
        "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
    );
    let closed = closed_port().await;
    assert_eq!(
        failure(run_probe(&grpc(None, closed), &c, &[], LOCALHOST).await),
        format!(
            "timeout: failed to connect service \"127.0.0.1:{closed}\" within 1s: dial tcp 127.0.0.1:{closed}: connect: connection refused"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_probe_uses_exit_code_output_and_timeout() {
    let c = container();
    let env = vec![("PATH".to_string(), "/usr/bin:/bin".to_string())];
    let exec = |cmd: &str, timeout: i32| Probe {
        exec: Some(ExecAction {
            command: Some(vec!["sh".into(), "-c".into(), cmd.into()]),
        }),
        timeout_seconds: Some(timeout),
        ..Default::default()
    };
    assert_eq!(
        run_probe(&exec("exit 0", 1), &c, &env, LOCALHOST).await,
        HandlerOutcome::Success
    );
    assert_eq!(
        failure(run_probe(&exec("echo not ready; exit 1", 1), &c, &env, LOCALHOST).await),
        "not ready\n"
    );
    let started = Instant::now();
    assert_eq!(
        failure(run_probe(&exec("sleep 10", 1), &c, &env, LOCALHOST).await),
        "command \"sh -c sleep 10\" timed out"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_exec_http_and_sleep_and_refuse_tcp() {
    let c = container();
    let env = vec![("PATH".to_string(), "/usr/bin:/bin".to_string())];
    let addr = http_server(None).await;
    let exec = |cmd: &str| LifecycleHandler {
        exec: Some(ExecAction {
            command: Some(vec!["sh".into(), "-c".into(), cmd.into()]),
        }),
        ..Default::default()
    };
    assert_eq!(
        run_hook(&exec("true"), &c, &env, LOCALHOST).await,
        HandlerOutcome::Success
    );
    assert_eq!(
        failure(run_hook(&exec("echo bad; exit 3"), &c, &env, LOCALHOST).await),
        "command 'sh -c echo bad; exit 3' exited with 3: bad\n"
    );
    let http = |path: &str, port: u16| LifecycleHandler {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(port as i32),
            path: Some(path.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    // As in the kubelet, any HTTP response completes an httpGet hook.
    assert_eq!(
        run_hook(&http("/fail", addr.port()), &c, &env, LOCALHOST).await,
        HandlerOutcome::Success
    );
    let closed = closed_port().await;
    assert!(
        failure(run_hook(&http("/x", closed), &c, &env, LOCALHOST).await)
            .contains("connection refused")
    );
    let sleep = LifecycleHandler {
        sleep: Some(SleepAction { seconds: 1 }),
        ..Default::default()
    };
    let started = Instant::now();
    assert_eq!(
        run_hook(&sleep, &c, &env, LOCALHOST).await,
        HandlerOutcome::Success
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    let tcp = LifecycleHandler {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(80),
            host: None,
        }),
        ..Default::default()
    };
    assert!(
        failure(run_hook(&tcp, &c, &env, LOCALHOST).await)
            .starts_with("Cannot run handler: invalid handler")
    );
    // A hook bounded by dropping its future: it returns control at once.
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_millis(200),
        run_hook(&exec("sleep 30"), &c, &env, LOCALHOST),
    )
    .await;
    assert!(r.is_err() && started.elapsed() < Duration::from_secs(2));
}
