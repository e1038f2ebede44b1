//! Retries, in process: a kept upstream connection the app closed just as the next
//! request came is replaced before the request goes out; a request the app may have
//! read is not sent twice; connect failures and upstream `503`s are retried as
//! Istio's default outbound policy says, and only outbound.
//!
//! The tests run on one thread, so an upstream's "answer, then close" happens in one
//! step the proxy cannot interleave with: the race is reproduced every time.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{field, *};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted upstream does with the `n`th connection (from 0).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    /// Answers every request `200` with the connection number as body.
    Serve,
    /// Answers one request `200`, then closes at once, in the same step.
    ServeOnceThenClose,
    /// Reads the request, then resets the connection (`SO_LINGER` 0).
    ResetAfterRead,
    /// Answers every request `503`.
    Unavailable,
}

struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

/// An upstream whose `n`th connection does `script(n)`.
async fn scripted(script: fn(usize) -> Act) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s, n, script(n)));
        }
    });
    Scripted { addr, connections }
}

async fn serve(mut s: TcpStream, n: usize, act: Act) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request head (the tests send no bodies).
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        buf.drain(..end);
        let (status, body) = match act {
            Act::ResetAfterRead => {
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                return;
            }
            Act::Unavailable => ("503 Service Unavailable", "no".to_string()),
            Act::Serve | Act::ServeOnceThenClose => ("200 OK", n.to_string()),
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        if act == Act::ServeOnceThenClose {
            // Closed with the answer: the proxy runs only after both.
            return;
        }
    }
}

/// Reads `n` responses (status and body, each with a `content-length`) that may
/// arrive together.
async fn read_pipelined(s: &mut TcpStream, n: usize) -> Vec<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut out = Vec::new();
        let mut rest = &buf[..];
        while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
            let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if rest.len() < end + 4 + len {
                break;
            }
            out.push((status, rest[end + 4..end + 4 + len].to_vec()));
            rest = &rest[end + 4 + len..];
        }
        if out.len() >= n {
            return out;
        }
        let k = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("responses timed out")
            .expect("read");
        assert!(k > 0, "closed after {out:?}");
        buf.extend_from_slice(&chunk[..k]);
    }
}

const REQ: &str = "GET /who HTTP/1.1\r\nHost: svc.test\r\n\r\n";

#[tokio::test]
async fn a_kept_connection_closed_as_the_next_request_comes_gets_no_request() {
    let up = scripted(|n| {
        if n == 0 {
            Act::ServeOnceThenClose
        } else {
            Act::Serve
        }
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    // Two pipelined requests: the second is read with the first, so the proxy takes it
    // up at once, on the connection the app has just closed after the first answer.
    let mut s = TcpStream::connect(p.addrs.outbound).await.unwrap();
    s.write_all(format!("{REQ}{REQ}").as_bytes()).await.unwrap();
    let answers = read_pipelined(&mut s, 2).await;
    assert_eq!(
        answers,
        [(200, b"0".to_vec()), (200, b"1".to_vec())],
        "{answers:?}"
    );
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    let lines = p.lines(2).await;
    for line in &lines {
        let t = tokens(line);
        assert_eq!(t[field::CODE], "200", "{line}");
        assert_eq!(t[field::FLAGS], "-", "{line}");
        assert_eq!(t[field::DETAILS], "via_upstream", "{line}");
        assert_eq!(t[field::UPSTREAM_HOST], up.addr.to_string(), "{line}");
    }
    // Each logged the connection it went out on.
    assert_ne!(
        tokens(&lines[0])[field::UPSTREAM_LOCAL],
        tokens(&lines[1])[field::UPSTREAM_LOCAL]
    );
}

#[tokio::test]
async fn a_pooled_connection_closed_while_idle_gets_no_request() {
    let up = scripted(|n| {
        if n == 0 {
            Act::ServeOnceThenClose
        } else {
            Act::Serve
        }
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    // The first client leaves: its upstream connection goes to the pool, where the
    // app's close is already waiting when the second client comes.
    let (first, s) = roundtrip(p.addrs.outbound, REQ).await;
    drop(s);
    p.lines(1).await;
    let (second, _s) = roundtrip(p.addrs.outbound, REQ).await;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(second.body, b"1");
    assert_eq!(tokens(&p.lines(2).await[1])[field::FLAGS], "-");
}

#[tokio::test]
async fn a_request_the_app_read_before_resetting_is_not_sent_again() {
    let up = scripted(|_| Act::ResetAfterRead).await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let (resp, _s) = roundtrip(p.addrs.outbound, REQ).await;
    assert_eq!(resp.status, 503);
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::FLAGS], "UC");
    assert_eq!(
        t[field::DETAILS],
        "upstream_reset_before_response_started{connection_termination}"
    );
}

#[tokio::test]
async fn an_upstream_503_is_retried_outbound_on_a_new_connection() {
    let up = scripted(|n| if n == 0 { Act::Unavailable } else { Act::Serve }).await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let (resp, _s) = roundtrip(p.addrs.outbound, REQ).await;
    assert_eq!((resp.status, &resp.body[..]), (200, &b"1"[..]));
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::FLAGS], "-");
    assert_eq!(p.log.lines().len(), 1, "one request, one line");
}

#[tokio::test]
async fn an_upstream_503_every_time_is_relayed_after_two_retries_with_urx() {
    let up = scripted(|_| Act::Unavailable).await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let (resp, _s) = roundtrip(p.addrs.outbound, REQ).await;
    assert_eq!((resp.status, &resp.body[..]), (503, &b"no"[..]));
    assert_eq!(up.connections.load(Ordering::SeqCst), 3);
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::CODE], "503");
    assert_eq!(t[field::FLAGS], "URX");
    assert_eq!(t[field::DETAILS], "via_upstream");
}

#[tokio::test]
async fn inbound_has_no_retry_policy() {
    let up = scripted(|_| Act::Unavailable).await;
    let p = TestProxy::start(config()).await;
    p.inbound_to(up.addr);
    let (resp, _s) = roundtrip(p.addrs.inbound, REQ).await;
    assert_eq!(resp.status, 503);
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    assert_eq!(tokens(&p.lines(1).await[0])[field::FLAGS], "-");

    let dead = refused_addr().await;
    p.inbound_to(dead);
    let (resp, _s) = roundtrip(p.addrs.inbound, REQ).await;
    assert_eq!(resp.status, 503);
    assert_eq!(tokens(&p.lines(2).await[1])[field::FLAGS], "UF");
}

#[tokio::test]
async fn a_connect_failure_is_retried_and_reaches_an_upstream_that_comes_up() {
    // Nothing listens at first; the upstream binds the port 2 ms later, within the
    // retries' backoff (each below 25 ms, then 75 ms).
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let p = TestProxy::start(config()).await;
    p.outbound_to(addr);
    let mut s = TcpStream::connect(p.addrs.outbound).await.unwrap();
    s.write_all(REQ.as_bytes()).await.unwrap();
    // The first attempt fails at once (nothing listens); the upstream is there for
    // the second or the third.
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s, n, Act::Serve));
        }
    });
    let resp = read_response(&mut s).await;
    assert_eq!(resp.status, 200);
    assert_eq!(served.load(Ordering::SeqCst), 1);
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::FLAGS], "-");
}
