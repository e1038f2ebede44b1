//! In-process proxy tests over loopback with a mock original destination: HTTP/1.1,
//! h2c, TCP, access-log lines field by field, metrics, readiness, drain, bad input.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use podrun_proxy::AccessLogFormat;
use podrun_proxy::ExitReason;
use podrun_proxy::metrics::sample_sum;
use support::{field, *};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GET: &str = "GET /hello?x=1 HTTP/1.1\r\nHost: svc.test:8000\r\nUser-Agent: probe/1.0\r\n\r\n";

#[tokio::test]
async fn http1_outbound_request_is_proxied_and_logged_field_by_field() {
    let up = upstream_http(false).await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let (resp, s) = roundtrip(p.addrs.outbound, GET).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello from upstream");
    let ust: u64 = resp
        .header("x-envoy-upstream-service-time")
        .expect("x-envoy-upstream-service-time")
        .parse()
        .unwrap();
    let rid = resp.header("x-seen-request-id").unwrap().to_string();
    assert_eq!(rid.len(), 36, "generated x-request-id is a UUID: {rid}");
    assert_eq!(resp.header("x-seen-host"), Some("svc.test:8000"));
    let client = s.local_addr().unwrap();

    let lines = p.lines(1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let t = tokens(&lines[0]);
    assert_eq!(t.len(), field::COUNT, "{t:?}");
    assert!(
        t[field::START].ends_with('Z') && t[field::START].len() == 24,
        "{}",
        t[0]
    );
    assert_eq!(t[field::REQUEST], "GET /hello?x=1 HTTP/1.1");
    assert_eq!(t[field::CODE], "200");
    assert_eq!(t[field::FLAGS], "-");
    assert_eq!(t[field::DETAILS], "via_upstream");
    assert_eq!(t[field::TERMINATION], "-");
    assert_eq!(t[field::TRANSPORT_FAILURE], "-");
    assert_eq!(t[field::BYTES_RECEIVED], "0");
    assert_eq!(t[field::BYTES_SENT], "19");
    assert!(t[field::DURATION].parse::<u64>().is_ok());
    assert_eq!(t[field::UPSTREAM_TIME], ust.to_string());
    assert_eq!(t[field::XFF], "-");
    assert_eq!(t[field::USER_AGENT], "probe/1.0");
    assert_eq!(t[field::REQUEST_ID], rid);
    assert_eq!(t[field::AUTHORITY], "svc.test:8000");
    assert_eq!(t[field::UPSTREAM_HOST], up.addr.to_string());
    assert_eq!(t[field::CLUSTER], "PassthroughCluster");
    assert!(
        t[field::UPSTREAM_LOCAL].starts_with("127.0.0.1:"),
        "{}",
        t[17]
    );
    assert_eq!(t[field::DOWNSTREAM_LOCAL], up.addr.to_string());
    assert_eq!(t[field::DOWNSTREAM_REMOTE], client.to_string());
    assert_eq!(t[field::SNI], "-");
    assert_eq!(t[field::ROUTE], "allow_any");
    // The raw line keeps Istio's quoting exactly.
    assert!(lines[0].contains("\"GET /hello?x=1 HTTP/1.1\" 200 - via_upstream - \"-\" 0 19 "));
}

#[tokio::test]
async fn keep_alive_reuses_one_upstream_connection_and_keeps_request_id() {
    let up = upstream_http(false).await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut s = TcpStream::connect(p.addrs.outbound).await.unwrap();
    for i in 0..3 {
        let req = format!(
            "POST /echo HTTP/1.1\r\nHost: a\r\nx-request-id: fixed-{i}\r\nx-forwarded-for: 198.18.9.9\r\ncontent-length: 5\r\n\r\nhello"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let r = read_response(&mut s).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello");
        assert_eq!(
            r.header("x-seen-request-id"),
            Some(format!("fixed-{i}").as_str())
        );
        assert_eq!(
            r.header("connection"),
            None,
            "outbound is never told to close"
        );
    }
    let lines = p.lines(3).await;
    for (i, l) in lines.iter().enumerate() {
        let t = tokens(l);
        assert_eq!(t[field::REQUEST_ID], format!("fixed-{i}"));
        assert_eq!(t[field::BYTES_RECEIVED], "5");
        assert_eq!(t[field::BYTES_SENT], "5");
        assert_eq!(t[field::XFF], "198.18.9.9");
    }
    assert_eq!(
        up.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "upstream pool reuse"
    );
}

#[tokio::test]
async fn h2c_prior_knowledge_is_proxied_over_http2() {
    let up = upstream_http(true).await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let stream = TcpStream::connect(p.addrs.outbound).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..2 {
        let req = hyper::Request::get("http://grpc.test:9000/h2path")
            .header("user-agent", "h2-client")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-seen-host"], "grpc.test:9000");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello from upstream");
    }
    let lines = p.lines(2).await;
    let t = tokens(&lines[0]);
    assert_eq!(t[field::REQUEST], "GET /h2path HTTP/2");
    assert_eq!(t[field::AUTHORITY], "grpc.test:9000");
    assert_eq!(t[field::USER_AGENT], "h2-client");
    assert_eq!(t[field::CODE], "200");
    assert_eq!(
        up.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one multiplexed upstream"
    );
}

#[tokio::test]
async fn tcp_echo_relays_both_ways_with_half_close() {
    let echo = upstream_echo().await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(echo);
    let mut s = TcpStream::connect(p.addrs.outbound).await.unwrap();
    s.write_all(b"ping-1\n").await.unwrap();
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping-1\n");
    s.write_all(b"tail").await.unwrap();
    s.shutdown().await.unwrap(); // half-close: we still read the echo
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, b"tail");
    let lines = p.lines(1).await;
    let t = tokens(&lines[0]);
    assert_eq!(t[field::REQUEST], "- - -");
    assert_eq!(t[field::CODE], "0");
    assert_eq!(t[field::FLAGS], "-");
    assert_eq!(t[field::BYTES_RECEIVED], "11");
    assert_eq!(t[field::BYTES_SENT], "11");
    assert_eq!(t[field::UPSTREAM_TIME], "-");
    assert_eq!(t[field::REQUEST_ID], "-");
    assert_eq!(t[field::CLUSTER], "PassthroughCluster");
    assert_eq!(t[field::ROUTE], "-");
    let metrics = p.handle.metrics_text();
    assert_eq!(
        sample_sum(&metrics, "istio_tcp_received_bytes_total", &[]),
        11.0
    );
    assert_eq!(
        sample_sum(&metrics, "istio_tcp_connections_closed_total", &[]),
        1.0
    );
}

#[tokio::test]
async fn server_first_port_does_not_wait_for_the_client() {
    // Port 3306 is always TCP: the proxy connects at once, so a server greeting
    // reaches a client that sends nothing. We fake the port by listening on 3306 if
    // free; otherwise declare the upstream's port as TCP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"220 greeting\r\n").await.unwrap();
    });
    let mut c = config();
    c.tcp_ports.insert(addr.port());
    c.detection_timeout = None; // would wait forever if we sniffed
    let p = TestProxy::start(c).await;
    p.outbound_to(addr);
    let mut s = TcpStream::connect(p.addrs.outbound).await.unwrap();
    let mut buf = [0u8; 14];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut buf))
        .await
        .expect("greeting arrives without client bytes")
        .unwrap();
    assert_eq!(&buf, b"220 greeting\r\n");
}

#[tokio::test]
async fn tls_client_hello_is_relayed_as_tcp_with_sni_logged() {
    let echo = upstream_echo().await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(echo);
    let hello = client_hello("api.example.test");
    let mut s = TcpStream::connect(p.addrs.outbound).await.unwrap();
    s.write_all(&hello).await.unwrap();
    let mut back = vec![0u8; hello.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, hello);
    drop(s);
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::REQUEST], "- - -");
    assert_eq!(t[field::SNI], "api.example.test");
}

fn client_hello(name: &str) -> Vec<u8> {
    let n = name.as_bytes();
    let mut ext = vec![0x00, 0x00];
    ext.extend_from_slice(&((n.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(n.len() as u16).to_be_bytes());
    ext.extend_from_slice(n);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[1u8; 32]);
    body.extend_from_slice(&[0, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01, 0, 0, 0];
    hs[1..4].copy_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[tokio::test]
async fn refused_upstream_gives_503_uf_urx_for_http_and_tcp() {
    let dead = refused_addr().await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(dead);
    let (resp, _s) = roundtrip(p.addrs.outbound, GET).await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert!(
        String::from_utf8_lossy(&resp.body)
            .starts_with("upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"),
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::CODE], "503");
    // Tried three times (Istio's outbound `connect-failure` retries), hence `URX`.
    assert_eq!(t[field::FLAGS], "UF,URX");
    assert!(
        t[field::DETAILS].starts_with("upstream_reset_before_response_started{"),
        "{}",
        t[4]
    );
    assert_eq!(
        t[field::TRANSPORT_FAILURE],
        "delayed_connect_error:_Connection_refused"
    );
    assert_eq!(t[field::UPSTREAM_HOST], dead.to_string());
    assert_eq!(t[field::UPSTREAM_TIME], "-");

    let mut s = TcpStream::connect(p.addrs.outbound).await.unwrap();
    s.write_all(b"opaque bytes").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf))
        .await
        .unwrap();
    let t = tokens(&p.lines(2).await[1]);
    assert_eq!(t[field::REQUEST], "- - -");
    assert_eq!(t[field::FLAGS], "UF,URX");
    assert_eq!(
        t[field::TRANSPORT_FAILURE],
        "delayed_connect_error:_Connection_refused"
    );
    assert_eq!(t[field::UPSTREAM_LOCAL], "-");
}

#[tokio::test]
async fn upstream_closing_before_headers_gives_503_uc() {
    let slam = upstream_slammer().await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(slam);
    let (resp, _s) = roundtrip(p.addrs.outbound, GET).await;
    assert_eq!(resp.status, 503);
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::FLAGS], "UC");
    assert!(t[field::DETAILS].starts_with("upstream_reset_before_response_started{"));
}

#[tokio::test]
async fn slow_upstream_hits_request_timeout_with_504_ut() {
    let up = upstream_http(false).await;
    let mut c = config();
    c.limits.request_timeout = Some(Duration::from_millis(150));
    let p = TestProxy::start(c).await;
    p.outbound_to(up.addr);
    let (resp, _s) = roundtrip(p.addrs.outbound, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(resp.status, 504);
    assert_eq!(resp.body, b"upstream request timeout");
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(
        (t[field::CODE].as_str(), t[field::FLAGS].as_str()),
        ("504", "UT")
    );
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_400_and_431_and_the_proxy_survives() {
    let up = upstream_http(false).await;
    let mut c = config();
    c.limits.max_request_header_bytes = 1024;
    let p = TestProxy::start(c).await;
    p.outbound_to(up.addr);
    let (bad, _s) = roundtrip(p.addrs.outbound, "GET / HTTP/1.1\r\nHost a\r\n\r\n").await;
    assert_eq!(bad.status, 400);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nx-big: {}\r\n\r\n",
        "y".repeat(4000)
    );
    let (too_big, _s) = roundtrip(p.addrs.outbound, &big).await;
    assert_eq!(too_big.status, 431);
    let lines = p.lines(2).await;
    let codes: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let t = tokens(l);
            (t[field::CODE].clone(), t[field::FLAGS].clone())
        })
        .collect();
    assert!(codes.contains(&("400".into(), "DPE".into())), "{codes:?}");
    assert!(codes.contains(&("431".into(), "DPE".into())), "{codes:?}");
    // Still serving.
    let (ok, _s) = roundtrip(p.addrs.outbound, GET).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn slow_client_gets_408_after_header_read_timeout() {
    let up = upstream_http(false).await;
    let mut c = config();
    c.limits.header_read_timeout = Duration::from_millis(200);
    let p = TestProxy::start(c).await;
    p.outbound_to(up.addr);
    let mut s = TcpStream::connect(p.addrs.outbound).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap(); // never finishes
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 408);
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::CODE], "408");
    assert_eq!(t[field::DETAILS], "request_header_timeout");
}

#[tokio::test]
async fn client_leaving_before_the_response_is_logged_dc() {
    let up = upstream_http(false).await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut s = TcpStream::connect(p.addrs.outbound).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::CODE], "0");
    assert_eq!(t[field::FLAGS], "DC");
    assert_eq!(t[field::DETAILS], "downstream_remote_disconnect");
}

#[tokio::test]
async fn connection_to_the_capture_port_itself_is_closed() {
    let p = TestProxy::start(config()).await;
    p.outbound_to(p.addrs.outbound);
    let mut s = TcpStream::connect(p.addrs.outbound).await.unwrap();
    let _ = s.write_all(GET.as_bytes()).await;
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        n.is_err() || buf.is_empty(),
        "loop connection must be closed, got {buf:?}"
    );
    assert!(p.log.lines().is_empty());
}

#[tokio::test]
async fn inbound_delivers_from_127_0_0_6_and_names_declared_ports() {
    let up = upstream_http(false).await;
    let mut c = config();
    c.pod_ports.insert(up.addr.port());
    let p = TestProxy::start(c).await;
    p.inbound_to(up.addr);
    let (resp, _s) = roundtrip(p.addrs.inbound, GET).await;
    assert_eq!(resp.status, 200);
    let peer = resp.header("x-seen-peer").unwrap();
    assert!(
        peer.starts_with("127.0.0.6:"),
        "app sees 127.0.0.6, got {peer}"
    );
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::CLUSTER], format!("inbound|{}||", up.addr.port()));
    assert_eq!(t[field::UPSTREAM_LOCAL], peer);
    assert_eq!(t[field::ROUTE], "default");
    let metrics = p.handle.metrics_text();
    assert_eq!(
        sample_sum(
            &metrics,
            "istio_requests_total",
            &[("reporter", "destination"), ("response_code", "200")]
        ),
        1.0
    );
}

#[tokio::test]
async fn registry_only_refuses_unknown_http_with_502_nr() {
    let up = upstream_http(false).await;
    let mut c = config();
    c.outbound_policy = podrun_proxy::config::OutboundPolicy::RegistryOnly;
    let p = TestProxy::start(c).await;
    p.outbound_to(up.addr);
    let (resp, _s) = roundtrip(p.addrs.outbound, GET).await;
    assert_eq!(resp.status, 502);
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::FLAGS], "NR");
    assert_eq!(t[field::CLUSTER], "BlackHoleCluster");
    assert_eq!(t[field::ROUTE], "block_all");
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn json_access_log_lines_parse() {
    let up = upstream_http(false).await;
    let p = TestProxy::start_with_format(config(), AccessLogFormat::Json).await;
    p.outbound_to(up.addr);
    let _ = roundtrip(p.addrs.outbound, GET).await;
    let v: serde_json::Value = serde_json::from_str(&p.lines(1).await[0]).unwrap();
    assert_eq!(v["response_code"], 200);
    assert_eq!(v["path"], "/hello?x=1");
    assert_eq!(v["upstream_cluster"], "PassthroughCluster");
}

#[tokio::test]
async fn stats_health_and_admin_endpoints() {
    let up = upstream_http(false).await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let _ = roundtrip(p.addrs.outbound, GET).await;
    let _ = roundtrip(
        p.addrs.outbound,
        "GET /status/404 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    let _ = p.lines(2).await;
    let (r, _) = roundtrip(
        p.addrs.stats,
        "GET /stats/prometheus HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(
        sample_sum(
            &text,
            "istio_requests_total",
            &[("response_code", "200"), ("reporter", "source")]
        ),
        1.0
    );
    assert_eq!(
        sample_sum(&text, "istio_requests_total", &[("response_code", "404")]),
        1.0
    );
    assert_eq!(
        sample_sum(&text, "istio_request_duration_milliseconds_count", &[]),
        2.0
    );
    assert!(text.contains("podrun_proxy_downstream_cx_active"));

    let (r, _) = roundtrip(
        p.addrs.health,
        "GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let admin = p.addrs.admin.unwrap();
    let (r, _) = roundtrip(admin, "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"LIVE\n"[..]));
    let (r, _) = roundtrip(admin, "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&r.body).contains("server.state: 0"));
    let (r, _) = roundtrip(admin, "GET /quitquitquit HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(r.status, 405);

    // Drain through the admin API: readiness flips to 503.
    let (r, _) = roundtrip(admin, "POST /drain_listeners?inboundonly&graceful HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n").await;
    assert_eq!(r.status, 200);
    let (r, _) = roundtrip(
        p.addrs.health,
        "GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 503);

    let status = p.addrs.status.unwrap();
    let (r, _) = roundtrip(
        status,
        "POST /quitquitquit HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"OK"[..]));
    let reason = tokio::time::timeout(Duration::from_secs(3), p.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, ExitReason::Quit);
    assert!(
        TcpStream::connect(p.addrs.outbound).await.is_err(),
        "listeners closed after exit"
    );
}

#[tokio::test]
async fn sigterm_drain_finishes_in_flight_refuses_new_inbound_and_exits_on_zero() {
    let up = upstream_http(false).await;
    let mut c = config();
    c.drain.exit_on_zero_active_connections = true;
    let p = TestProxy::start(c).await;
    p.inbound_to(up.addr);
    p.outbound_to(up.addr);

    // An idle keep-alive inbound connection and an in-flight slow request.
    let (warm, mut idle) = roundtrip(p.addrs.inbound, GET).await;
    assert_eq!(warm.status, 200);
    let mut slow = TcpStream::connect(p.addrs.inbound).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    p.handle.terminate();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Readiness fails, new inbound connections are refused.
    let (r, _) = roundtrip(
        p.addrs.health,
        "GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 503);
    assert!(
        TcpStream::connect(p.addrs.inbound).await.is_err(),
        "inbound refused after drain"
    );
    // Outbound still works during the drain, without Connection: close.
    let (out, out_conn) = roundtrip(p.addrs.outbound, GET).await;
    assert_eq!(out.status, 200);
    assert_eq!(out.header("connection"), None);
    drop(out_conn);
    // The idle keep-alive connection is closed by the proxy.
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(3), idle.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(n.is_err() || buf.is_empty());
    // The in-flight request completes, told to close.
    let done = read_response(&mut slow).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.body, b"slow done");
    assert_eq!(done.header("connection"), Some("close"));
    drop(slow);
    let reason = tokio::time::timeout(Duration::from_secs(5), p.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, ExitReason::ZeroActiveConnections);
}

#[tokio::test]
async fn sigterm_without_exit_on_zero_waits_the_termination_drain_duration() {
    let p = TestProxy::start(config()).await;
    let t0 = tokio::time::Instant::now();
    p.handle.terminate();
    let reason = tokio::time::timeout(Duration::from_secs(5), p.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, ExitReason::DrainPeriodElapsed);
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(1400), "waited {waited:?}");
}

#[tokio::test]
async fn sigterm_after_drain_exits_at_once_and_drain_keeps_accepting() {
    let up = upstream_http(false).await;
    let p = TestProxy::start(config()).await;
    p.inbound_to(up.addr);
    let status = p.addrs.status.unwrap();
    let (r, _) = roundtrip(
        status,
        "POST /drain HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    // Native-mode drain: inbound still accepts but tells clients to close.
    let (resp, _s) = roundtrip(p.addrs.inbound, GET).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    let t0 = tokio::time::Instant::now();
    p.handle.terminate();
    let reason = tokio::time::timeout(Duration::from_secs(3), p.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, ExitReason::TerminatedAfterDrain);
    // Well before the 1.5 s termination drain duration would have elapsed.
    assert!(t0.elapsed() < Duration::from_millis(1400));
}

#[tokio::test]
async fn websocket_upgrade_becomes_a_tunnel() {
    // An upstream that accepts the upgrade and then echoes raw bytes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
            }
        }
    });
    let p = TestProxy::start(config()).await;
    p.outbound_to(addr);
    let mut s = TcpStream::connect(p.addrs.outbound).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ws\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(b"frame").await.unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"frame");
    drop(s);
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::CODE], "101");
    assert_eq!(t[field::BYTES_RECEIVED], "5");
    assert_eq!(t[field::BYTES_SENT], "5");
}

#[tokio::test]
async fn wait_ready_client_sees_readiness() {
    let p = TestProxy::start(config()).await;
    podrun_proxy::client::wait_ready(
        p.addrs.health,
        Duration::from_secs(2),
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    p.handle.drain();
    let err = podrun_proxy::client::wait_ready(
        p.addrs.health,
        Duration::from_millis(300),
        Duration::from_millis(100),
    )
    .await
    .unwrap_err();
    assert!(err.contains("503"), "{err}");
}

/// A client that stops after a prefix the sniffer cannot classify yet ("GE") and
/// half-closes is relayed as TCP, not held in the detection loop (found by fuzzing).
#[tokio::test]
async fn partial_prefix_then_half_close_is_relayed_not_held() {
    let up = upstream_http(false).await;
    let mut c = config();
    // No detection timeout: only the half-close can end detection.
    c.detection_timeout = None;
    let p = TestProxy::start(c).await;
    p.outbound_to(up.addr);
    let mut s = TcpStream::connect(p.addrs.outbound).await.unwrap();
    s.write_all(b"GE").await.unwrap();
    s.shutdown().await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the proxy held the connection open");
    // The upstream got "GE" and end of stream as a TCP relay: an HTTP server answers
    // that with 400 or just closes.
    let text = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}
