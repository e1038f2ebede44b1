//! Fuzzes the proxy's downstream side end to end: the real proxy runs in this process
//! on loopback, and every input is written as the first bytes of a client connection
//! to both capture listeners (outbound and inbound), then the client half-closes and
//! reads whatever comes back. That drives protocol sniffing, hyper's HTTP/1.1 and h2
//! server parsing inside `http::serve`, request forwarding to an upstream, and the TCP
//! relay for anything that is not HTTP.
//!
//! A panic anywhere in the process (libFuzzer's hook turns it into an abort, also on
//! tokio worker threads) is a crash, and so is a downstream connection that the proxy
//! keeps open long after its client left. Every `CHECK_EVERY` inputs the target also
//! checks that the proxy still serves a well-formed request with 200 on both listeners.

#![no_main]

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use libfuzzer_sys::fuzz_target;
use podrun_proxy::config::Direction;
use podrun_proxy::{
    AccessLog, AccessLogFormat, ExitReason, MockOrigDst, Proxy, ProxyConfig, ProxyHandle,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};

/// How long one fuzz connection may take to be answered and closed by the proxy. A
/// connection still open then is dropped with a reset; that is not a failure by itself
/// (`wait_for_no_connections` catches connections the proxy never lets go of).
const EXCHANGE_BOUND: Duration = Duration::from_millis(250);
/// Most reply bytes read per connection; the rest is discarded unread.
const MAX_REPLY: usize = 64 * 1024;
/// Inputs between two liveness checks.
const CHECK_EVERY: u64 = 128;
/// Generous bound for a well-formed request to get its 200 during a liveness check.
const ALIVE_BOUND: Duration = Duration::from_secs(5);
/// How long a downstream connection may outlive its client before it counts as
/// leaked: well past every proxy timeout set in `config()`.
const LEAK_BOUND: Duration = Duration::from_secs(10);
/// Largest request body the upstream reads before answering 413.
const UPSTREAM_BODY_LIMIT: usize = 64 * 1024;

/// The in-process proxy and upstream, started once per fuzzing process.
struct Harness {
    rt: Runtime,
    outbound: SocketAddr,
    inbound: SocketAddr,
    handle: ProxyHandle,
    task: JoinHandle<ExitReason>,
    inputs: AtomicU64,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

fn harness() -> &'static Harness {
    HARNESS.get_or_init(start)
}

/// Proxy settings for fuzzing: test listeners on ephemeral loopback ports, no access
/// log, and every timeout short so no input can hold a connection for long. The header
/// limits are small so the "too large" paths are reachable with small inputs.
fn config() -> ProxyConfig {
    let mut c = ProxyConfig::for_tests();
    c.detection_timeout = Some(Duration::from_millis(10));
    c.limits.max_request_header_bytes = 2048;
    c.limits.max_request_headers = 16;
    c.limits.header_read_timeout = Duration::from_secs(1);
    c.limits.connect_timeout = Duration::from_secs(1);
    c.limits.request_timeout = Some(Duration::from_secs(1));
    c.limits.tcp_idle_timeout = Duration::from_secs(1);
    c.limits.upstream_idle_timeout = Duration::from_secs(2);
    c.access_log_format = AccessLogFormat::Off;
    c
}

fn start() -> Harness {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let upstream = rt.block_on(upstream());
    let orig = Arc::new(MockOrigDst::new());
    orig.set(Direction::Outbound, upstream);
    orig.set(Direction::Inbound, upstream);
    let log = AccessLog::new(
        AccessLogFormat::Off,
        Duration::ZERO,
        Box::new(std::io::sink()),
    );
    let proxy = {
        // `Proxy::run` turns the bound listeners into tokio ones, so bind in the runtime.
        let _guard = rt.enter();
        Proxy::bind(config(), orig, log).expect("bind proxy")
    };
    let addrs = proxy.addrs().clone();
    let handle = proxy.handle();
    let task = rt.spawn(async move { proxy.run().await.expect("proxy run") });
    rt.block_on(async {
        let deadline = Instant::now() + ALIVE_BOUND;
        while !handle.is_ready() {
            assert!(Instant::now() < deadline, "proxy did not become ready");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let h = Harness {
        rt,
        outbound: addrs.outbound,
        inbound: addrs.inbound,
        handle,
        task,
        inputs: AtomicU64::new(0),
    };
    h.rt.block_on(check_alive(&h));
    h
}

/// An HTTP/1.1 + h2 upstream on 127.0.0.1 that reads the request body (up to a limit)
/// and answers 200 with a short body.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let status = match Limited::new(req.into_body(), UPSTREAM_BODY_LIMIT)
                        .collect()
                        .await
                    {
                        Ok(_) => StatusCode::OK,
                        Err(_) => StatusCode::PAYLOAD_TOO_LARGE,
                    };
                    let mut resp = Response::new(Full::new(Bytes::from_static(b"upstream ok")));
                    *resp.status_mut() = status;
                    Ok::<_, Infallible>(resp)
                });
                let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                b.http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(1));
                b.http2().timer(TokioTimer::new());
                let _ = b
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Writes `data` as a client's first bytes, half-closes, and reads the reply until the
/// proxy closes the connection or `EXCHANGE_BOUND` passes.
async fn exchange(to: SocketAddr, data: &[u8]) {
    let stream = timeout(ALIVE_BOUND, TcpStream::connect(to))
        .await
        .unwrap_or_else(|_| panic!("connecting to the proxy at {to} timed out"))
        .unwrap_or_else(|err| panic!("the proxy at {to} refused a connection: {err}"));
    // Close with a reset rather than a FIN so tens of thousands of short connections
    // leave no TIME_WAIT sockets behind.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    let mut stream = stream;
    let deadline = Instant::now() + EXCHANGE_BOUND;
    // The proxy may answer and close before reading everything (a 431, say): write and
    // shutdown errors are part of what is being fuzzed, not failures.
    let _ = async {
        timeout_at(deadline, stream.write_all(data)).await??;
        stream.shutdown().await
    }
    .await;
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    while total < MAX_REPLY {
        match timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => break,
        }
    }
}

/// Waits until the proxy has let go of every downstream connection; panics if one is
/// still open `LEAK_BOUND` after its client left, well past every proxy timeout.
async fn wait_for_no_connections(h: &Harness) {
    let start = Instant::now();
    loop {
        let active = h.handle.active_connections();
        if active == 0 {
            return;
        }
        let waited = start.elapsed();
        assert!(
            waited < LEAK_BOUND,
            "{active} downstream connection(s) still open {waited:?} after their clients left"
        );
        // The proxy's connection task ends just after it closes the socket: yield for
        // that short gap before falling back to a timer.
        if waited < Duration::from_millis(2) {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Sends a well-formed request through `to` and returns the status line.
async fn well_formed(to: SocketAddr) -> String {
    let mut s = TcpStream::connect(to).await.expect("connect for liveness");
    s.write_all(b"GET /alive HTTP/1.1\r\nHost: fuzz.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write liveness request");
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .await
        .expect("read liveness reply");
    let text = String::from_utf8_lossy(&reply);
    text.lines().next().unwrap_or("").to_string()
}

/// The proxy still answers a well-formed request with 200 on both listeners.
async fn check_alive(h: &Harness) {
    assert!(!h.task.is_finished(), "the proxy task stopped");
    for to in [h.outbound, h.inbound] {
        let status = timeout(ALIVE_BOUND, well_formed(to))
            .await
            .unwrap_or_else(|_| panic!("the proxy at {to} did not answer a well-formed request"));
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "the proxy at {to} answered a well-formed request with {status:?}"
        );
    }
    wait_for_no_connections(h).await;
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    h.rt.block_on(async {
        tokio::join!(exchange(h.outbound, data), exchange(h.inbound, data));
        // Each input's connections must be gone before the next input starts, so a
        // connection the proxy never closes is blamed on the input that opened it.
        wait_for_no_connections(h).await;
    });
    assert!(!h.task.is_finished(), "the proxy task stopped");
    let n = h.inputs.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_multiple_of(CHECK_EVERY) {
        h.rt.block_on(check_alive(h));
    }
});
