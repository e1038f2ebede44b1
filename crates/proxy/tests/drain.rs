//! The inbound drain's order, in process: a keep-alive connection a client holds when
//! the drain begins is not closed under it. Its next request is answered, with
//! `Connection: close`, and only then does the proxy close it; one that stays idle is
//! closed after the drain timeout, or at SIGTERM.
//!
//! The client here writes its next request without looking whether the proxy closed
//! the connection meanwhile, as a client whose request is already on the wire when a
//! close goes out: had the drain closed the idle connection, that request would meet
//! a closed socket every time.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const GET: &str = "GET /who HTTP/1.1\r\nHost: svc.test\r\n\r\n";

/// Whether the proxy closed `s` (end of stream or reset), within `wait`.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 64];
    match tokio::time::timeout(wait, s.read(&mut b)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&b[..n])),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_kept_connection_gets_its_next_request_answered_with_close_after_the_drain_began() {
    let up = upstream_http(false).await;
    let p = TestProxy::start(config()).await;
    p.inbound_to(up.addr);
    let (first, mut s) = roundtrip(p.addrs.inbound, GET).await;
    assert_eq!((first.status, first.header("connection")), (200, None));

    p.handle.drain();
    // The proxy has seen the drain (its connection tasks run while this one sleeps).
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(GET.as_bytes()).await.unwrap();
    let second = read_response(&mut s).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("connection"), Some("close"));
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    // Both went to the app, on the one connection the client opened.
    let lines = p.lines(2).await;
    assert!(
        lines.iter().all(|l| tokens(l)[field::CODE] == "200"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_drain_timeout() {
    let up = upstream_http(false).await;
    let mut c = config();
    c.drain.drain_timeout = Duration::from_millis(400);
    let p = TestProxy::start(c).await;
    p.inbound_to(up.addr);
    let (first, mut s) = roundtrip(p.addrs.inbound, GET).await;
    assert_eq!(first.status, 200);

    let t0 = Instant::now();
    p.handle.drain();
    assert!(
        !closed_within(&mut s, Duration::from_millis(200)).await,
        "closed as the drain began"
    );
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn sigterm_after_the_drain_closes_idle_connections_at_once() {
    let up = upstream_http(false).await;
    let p = TestProxy::start(config()).await;
    p.inbound_to(up.addr);
    let (first, mut s) = roundtrip(p.addrs.inbound, GET).await;
    assert_eq!(first.status, 200);
    p.handle.drain();
    assert!(!closed_within(&mut s, Duration::from_millis(100)).await);
    // Native mode: SIGTERM comes once the app has exited; the 5 s timeout is not
    // waited for.
    let t0 = Instant::now();
    p.handle.terminate();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn outbound_connections_are_not_drained() {
    let up = upstream_http(false).await;
    let mut c = config();
    c.drain.drain_timeout = Duration::from_millis(100);
    let p = TestProxy::start(c).await;
    p.outbound_to(up.addr);
    let (first, mut s) = roundtrip(p.addrs.outbound, GET).await;
    assert_eq!(first.status, 200);
    p.handle.drain();
    assert!(!closed_within(&mut s, Duration::from_millis(300)).await);
    s.write_all(GET.as_bytes()).await.unwrap();
    let second = read_response(&mut s).await;
    assert_eq!((second.status, second.header("connection")), (200, None));
}
