//! The HTTP/1.1 path.
//!
//! One task per downstream connection reads a request head, sends it upstream together
//! with the body bytes that came with it in one write, and relays the response back,
//! parsing only heads and chunk boundaries ([`codec`]): no request or response objects,
//! no header maps, no second task per connection. While it waits for the response it
//! keeps reading the client: the rest of the request body goes upstream, and a client
//! that leaves is noticed at once (`DC`). The upstream connection stays with the
//! downstream one for its next request and goes to the pool when the client leaves.
//! HTTP/2 stays with hyper ([`crate::http`]).

pub mod codec;

use std::future::Future;
use std::ops::Range;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::time::Instant;

use crate::accesslog::HttpFields;
use crate::body::Ending;
use crate::config::Direction;
use crate::drain::Phase;
use crate::http::{HttpConn, RequestLog, log_rejected, method_text, uuid_v4};
use crate::retry::{self, Attempt, Decision, Failure};
use crate::route::{Cluster, LocalReply, ResponseFlags, UpstreamFailure, local_reply};
use crate::upstream::{H1Conn, idle_and_open};
use codec::{Chunked, Framing, HeadError, Persist, RequestHead, ResponseHead};

/// Envoy's default idle timeout of an HTTP connection with no request in flight.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// How much a read buffer grows by when it is (nearly) full.
const READ_CHUNK: usize = 8 * 1024;
/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 96 * 1024;
/// Most response header fields accepted from an upstream (hyper's client default).
const MAX_RESPONSE_FIELDS: usize = 100;
/// Body bytes that go out in the same write as the head instead of separately.
const COALESCE: usize = 16 * 1024;

/// Makes room for a read.
fn room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_CHUNK);
    }
}

/// What ended a wait for the next request head.
enum Idle {
    Read,
    Closed,
    TimedOut,
    Drained,
    UpstreamEvent,
}

/// Serves one HTTP/1 connection until it closes or the proxy exits.
pub async fn serve(mut stream: TcpStream, conn: Arc<HttpConn>) {
    let shared = conn.shared.clone();
    let limits = &shared.config.limits;
    let mut phase = shared.control.subscribe();
    let inbound = conn.direction == Direction::Inbound;
    // Only the inbound side drains (spec §5.5), and never by closing a connection a
    // client may be writing its next request on (see `drain_closes_idle`).
    let accepted_draining = shared.control.phase() >= Phase::Draining;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut ubuf = BytesMut::new();
    let mut out = Vec::with_capacity(1024);
    let mut upstream: Option<H1Conn> = None;
    // The first head is timed from the accept, later ones from their first byte.
    let mut deadline = Some(Instant::now() + limits.header_read_timeout);
    loop {
        let head = loop {
            if !buf.is_empty() {
                match codec::parse_request(
                    &buf,
                    limits.max_request_headers,
                    limits.max_request_header_bytes,
                ) {
                    Ok(Some(head)) => break head,
                    Ok(None) => {}
                    Err(HeadError::TooLarge) => {
                        reject(&mut stream, &conn, 431, "http1.headers_too_large").await;
                        return release(&conn, upstream);
                    }
                    Err(HeadError::Invalid(details)) => {
                        reject(&mut stream, &conn, 400, details).await;
                        return release(&conn, upstream);
                    }
                }
                deadline.get_or_insert_with(|| Instant::now() + limits.header_read_timeout);
            }
            let until = deadline.unwrap_or_else(|| Instant::now() + IDLE_TIMEOUT);
            room(&mut buf);
            let idle = buf.is_empty();
            let event = tokio::select! {
                biased;
                r = tokio::time::timeout_at(until, stream.read_buf(&mut buf)) => match r {
                    Ok(Ok(0) | Err(_)) => Idle::Closed,
                    Ok(Ok(_)) => Idle::Read,
                    Err(_) => Idle::TimedOut,
                },
                () = drain_closes_idle(&mut phase, &shared, accepted_draining), if inbound && idle => {
                    Idle::Drained
                }
                () = readable(upstream.as_ref()), if idle => Idle::UpstreamEvent,
            };
            match event {
                Idle::Read => {}
                Idle::Closed | Idle::Drained => return release(&conn, upstream),
                Idle::TimedOut => {
                    if deadline.is_some() {
                        request_timeout(&stream, &conn);
                    }
                    return release(&conn, upstream);
                }
                Idle::UpstreamEvent => {
                    // The app closed its idle connection (or spoke out of turn).
                    if upstream.as_ref().is_some_and(|u| !idle_and_open(&u.stream)) {
                        upstream = None;
                    }
                }
            }
        };
        deadline = None;
        if head.http10 && !shared.config.accept_http10 {
            // As Envoy without `accept_http_10` (Istio's default).
            reject(&mut stream, &conn, 426, "low_version").await;
            return release(&conn, upstream);
        }
        let keep = exchange(
            &mut stream,
            &mut buf,
            &mut ubuf,
            &mut out,
            &mut upstream,
            &conn,
            head,
        )
        .await;
        if !keep {
            return release(&conn, upstream);
        }
    }
}

/// Resolves when the drain closes an idle inbound connection.
///
/// Closing an idle keep-alive connection is a race with the client's next request:
/// the request may already be on its way when the close goes out (the more so on a
/// loaded host, where the close can wait in the network stack for milliseconds), and
/// a request that reaches a closed socket is reset after the client sent it, which no
/// proxy may safely send again. So the drain does what Envoy's HTTP connection
/// manager does for HTTP/1.1 (Istio drains with `--drain-strategy immediate`): the
/// next response on the connection says `Connection: close`, after which the client
/// opens a new one, which the Service rules, updated meanwhile, send elsewhere; a
/// connection that stays idle is closed only `drain_timeout` after the drain began,
/// long after the endpoint left every Service. A connection accepted while already
/// draining, and every one at SIGTERM, is closed then (in native mode SIGTERM comes
/// once the app has exited, so nothing is left to serve).
async fn drain_closes_idle(
    phase: &mut tokio::sync::watch::Receiver<Phase>,
    shared: &crate::proxy::Shared,
    accepted_draining: bool,
) {
    if !accepted_draining && phase.wait_for(|p| *p >= Phase::Draining).await.is_ok() {
        // A SIGTERM without a drain before it (classic mode) has no grace here.
        if let Some(since) = shared.control.draining_since() {
            let grace = tokio::time::sleep_until(since + shared.config.drain.drain_timeout);
            tokio::select! {
                () = grace => return,
                _ = phase.wait_for(|p| *p >= Phase::Terminating) => return,
            }
        }
    }
    let _ = phase.wait_for(|p| *p >= Phase::Terminating).await;
}

/// Resolves when the kept upstream connection has something to say (or never).
async fn readable(upstream: Option<&H1Conn>) {
    match upstream {
        Some(u) => {
            let _ = u.stream.readable().await;
        }
        None => std::future::pending().await,
    }
}

/// Gives a cleanly finished upstream connection to the pool.
fn release(conn: &HttpConn, upstream: Option<H1Conn>) {
    if let Some(up) = upstream {
        conn.shared
            .pool
            .release_http1(conn.orig_dst, conn.source, up);
    }
}

/// Answers a request head the proxy does not accept with `status` and closes, and
/// logs it.
async fn reject(stream: &mut TcpStream, conn: &HttpConn, status: u16, details: &'static str) {
    let mut out = Vec::with_capacity(128);
    codec::write_local(&mut out, status, b"", Persist::Close);
    let sent = stream.write_all(&out).await.is_ok();
    log_rejected(conn, if sent { status } else { 0 }, details);
}

/// Answers `408` to a client too slow to send its request head, if it reads.
fn request_timeout(stream: &TcpStream, conn: &HttpConn) {
    let mut out = Vec::with_capacity(128);
    codec::write_local(&mut out, 408, b"", Persist::Close);
    // One try: a client that is not reading gets nothing.
    let status = match stream.try_write(&out) {
        Ok(n) if n == out.len() => 408,
        _ => 0,
    };
    log_rejected(conn, status, "request_header_timeout");
}

/// Where a request body is.
enum BodyLeft {
    Done,
    Length(u64),
    Chunked(Chunked),
}

impl BodyLeft {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::None | Framing::UntilClose => BodyLeft::Done,
            Framing::Length(n) => BodyLeft::Length(n),
            Framing::Chunked => BodyLeft::Chunked(Chunked::new()),
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, BodyLeft::Done)
    }

    /// How many bytes at the start of `input` belong to the body, and the payload
    /// bytes among them.
    fn take(&mut self, input: &[u8]) -> Result<(usize, u64), codec::ChunkError> {
        match self {
            BodyLeft::Done => Ok((0, 0)),
            BodyLeft::Length(left) => {
                let n = (*left).min(input.len() as u64);
                *left -= n;
                if *left == 0 {
                    *self = BodyLeft::Done;
                }
                Ok((n as usize, n))
            }
            BodyLeft::Chunked(c) => {
                let fed = c.feed(input)?;
                if fed.done {
                    *self = BodyLeft::Done;
                }
                Ok((fed.used, fed.payload))
            }
        }
    }
}

/// How an exchange went.
enum Outcome {
    /// The attempt failed in a way the retry policy retries: a new connection after
    /// `backoff`; `counted`: it spends one of the route's retries.
    Retry { backoff: Duration, counted: bool },
    /// No response: answer locally.
    Failed(UpstreamFailure),
    /// The client left before the response started.
    ClientGone,
    /// The request body was malformed.
    BadBody,
    /// The response was relayed (or its relay ended early).
    Relayed {
        ending: Ending,
        sent: u64,
        reusable: bool,
        keep: bool,
    },
    /// The response switched protocols: the connection becomes a tunnel.
    Switched { sent: u64 },
}

/// What the client side reported while the response was awaited.
enum Downstream {
    Gone,
    BadBody,
    UpstreamWriteFailed,
}

/// Forwards the rest of the request body upstream, then watches for the client
/// leaving, reading ahead (a pipelined next request) up to `max_ahead` bytes.
async fn downstream_side(
    dr: &mut ReadHalf<'_>,
    buf: &mut BytesMut,
    uw: &mut WriteHalf<'_>,
    body: &mut BodyLeft,
    req_bytes: &AtomicU64,
    body_done: &AtomicBool,
    max_ahead: usize,
) -> Downstream {
    while !body.is_done() {
        if buf.is_empty() {
            room(buf);
            match dr.read_buf(buf).await {
                Ok(0) | Err(_) => return Downstream::Gone,
                Ok(_) => {}
            }
        }
        let Ok((n, payload)) = body.take(buf) else {
            return Downstream::BadBody;
        };
        if uw.write_all(&buf[..n]).await.is_err() {
            return Downstream::UpstreamWriteFailed;
        }
        buf.advance(n);
        req_bytes.fetch_add(payload, Ordering::Relaxed);
    }
    body_done.store(true, Ordering::Relaxed);
    loop {
        if buf.len() >= max_ahead {
            return std::future::pending().await;
        }
        room(buf);
        match dr.read_buf(buf).await {
            Ok(0) | Err(_) => return Downstream::Gone,
            Ok(_) => {}
        }
    }
}

/// Why no response head came.
enum HeadFailure {
    /// Closed or reset.
    Closed,
    Protocol,
    Timeout,
}

/// Reads the final response head into `ubuf` (interim `1xx` heads are dropped: the
/// proxy answered `Expect` itself).
async fn read_response_head(
    ur: &mut ReadHalf<'_>,
    ubuf: &mut BytesMut,
    head_request: bool,
    connect: bool,
) -> Result<ResponseHead, HeadFailure> {
    loop {
        if !ubuf.is_empty() {
            match codec::parse_response(
                ubuf,
                MAX_RESPONSE_FIELDS,
                MAX_RESPONSE_HEAD,
                head_request,
                connect,
            ) {
                Ok(Some(h)) if (100..200).contains(&h.status) && h.status != 101 => {
                    ubuf.advance(h.len);
                    continue;
                }
                Ok(Some(h)) => return Ok(h),
                Ok(None) => {}
                Err(_) => return Err(HeadFailure::Protocol),
            }
        }
        room(ubuf);
        match ur.read_buf(ubuf).await {
            Ok(0) | Err(_) => return Err(HeadFailure::Closed),
            Ok(_) => {}
        }
    }
}

/// How a response body goes downstream.
enum Relay {
    /// As it came, delimited as it came.
    As(Framing),
    /// Chunked upstream, decoded downstream.
    Dechunk(Chunked),
}

/// Relays a response body (its first bytes already in `ubuf`) after `out`, which
/// holds the response head. Counts the payload bytes sent in `sent`; the error is
/// how it ended early.
async fn relay_response(
    ur: &mut ReadHalf<'_>,
    ubuf: &mut BytesMut,
    dw: &mut WriteHalf<'_>,
    out: &mut Vec<u8>,
    relay: Relay,
    sent: &AtomicU64,
) -> Result<(), Ending> {
    let (mut left, mut dechunk) = match relay {
        Relay::As(Framing::UntilClose) => (None, None),
        Relay::As(other) => (Some(BodyLeft::new(other)), None),
        Relay::Dechunk(c) => (None, Some(c)),
    };
    let mut first = true;
    loop {
        if !first {
            if left.as_ref().is_some_and(BodyLeft::is_done)
                || dechunk.as_ref().is_some_and(Chunked::is_done)
            {
                return Ok(());
            }
            if ubuf.is_empty() {
                room(ubuf);
                match ur.read_buf(ubuf).await {
                    Ok(0) if left.is_none() && dechunk.is_none() => return Ok(()),
                    Ok(0) | Err(_) => return Err(Ending::UpstreamError),
                    Ok(_) => {}
                }
            }
            out.clear();
        }
        // The head and the first body bytes go out in one write.
        let input = &ubuf[..ubuf.len().min(COALESCE)];
        let (n, payload) = match (&mut left, &mut dechunk) {
            (_, Some(c)) => {
                let fed = c
                    .feed_with(input, |d| out.extend_from_slice(d))
                    .map_err(|_| Ending::UpstreamError)?;
                (fed.used, fed.payload)
            }
            (Some(l), None) => l.take(input).map_err(|_| Ending::UpstreamError)?,
            (None, None) => (input.len(), input.len() as u64),
        };
        let relayed: &[u8] = if dechunk.is_some() {
            out
        } else if first {
            out.extend_from_slice(&input[..n]);
            out
        } else {
            &input[..n]
        };
        dw.write_all(relayed)
            .await
            .map_err(|_| Ending::DownstreamGone)?;
        ubuf.advance(n);
        sent.fetch_add(payload, Ordering::Relaxed);
        first = false;
    }
}

/// Everything one exchange needs besides the sockets.
struct Exchange<'a> {
    head: &'a RequestHead,
    /// The request is a `CONNECT`.
    connect: bool,
    /// Inbound: responses say `Connection: close` once the proxy drains.
    drains: Option<&'a crate::drain::Control>,
    sent_at: Instant,
}

impl Exchange<'_> {
    fn persist(&self, body_done: bool, framing: Framing) -> Persist {
        if !self.head.keep_alive
            || !body_done
            || framing == Framing::UntilClose
            || self.drains.is_some_and(|c| c.phase() >= Phase::Draining)
        {
            Persist::Close
        } else if self.head.http10 {
            Persist::KeepAlive
        } else {
            Persist::Default
        }
    }
}

/// Proxies one request whose head was just parsed. Returns whether the client
/// connection carries on with another request.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    ubuf: &mut BytesMut,
    out: &mut Vec<u8>,
    kept: &mut Option<H1Conn>,
    conn: &Arc<HttpConn>,
    head: RequestHead,
) -> bool {
    let shared = &conn.shared;
    let raw = buf.split_to(head.len).freeze();
    let method = std::str::from_utf8(&raw[head.method.clone()]).unwrap_or("-");
    let connect = method == "CONNECT";
    let mut log = request_log(conn, &raw, &head, method);
    let generated = head.request_id.is_none();
    let request_id = log.fields.request_id.clone();
    let req_bytes = log.req_bytes.clone();
    let mut body = BodyLeft::new(head.body);
    let mut x = Exchange {
        head: &head,
        connect,
        drains: (conn.direction == Direction::Inbound).then_some(&*shared.control),
        sent_at: Instant::now(),
    };

    // Envoy answers `Expect: 100-continue` itself and does not forward it.
    if head.expect_continue
        && !body.is_done()
        && buf.is_empty()
        && stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return false;
    }
    if conn.cluster == Cluster::BlackHole {
        let reply = local_reply(&UpstreamFailure::NoRoute);
        return answer_locally(
            stream,
            out,
            log,
            reply,
            x.persist(body.is_done(), Framing::None),
        )
        .await;
    }
    log.upstream_host = Some(conn.orig_dst);

    // The head, and the body bytes that came with it, go upstream in one write.
    out.clear();
    codec::write_request(
        out,
        &raw,
        &head,
        request_id
            .as_ref()
            .filter(|_| generated)
            .map(|id| id.as_bytes()),
    );
    match body.take(buf) {
        Ok((n, payload)) => {
            out.extend_from_slice(&buf[..n]);
            buf.advance(n);
            req_bytes.fetch_add(payload, Ordering::Relaxed);
        }
        Err(_) => return bad_body(stream, out, log).await,
    }
    let complete_at_send = body.is_done();
    let body_done = AtomicBool::new(complete_at_send);
    let sent = AtomicU64::new(0);
    let max_ahead = shared.config.limits.max_request_header_bytes;
    let head_request = method == "HEAD";
    let mut fresh = false;
    let mut retries = 0;
    let direction = conn.direction;
    let (mut up, outcome) = loop {
        let up = match kept.take() {
            Some(u) if !fresh => u,
            _ => match shared
                .pool
                .checkout_http1(conn.orig_dst, conn.source, fresh, Instant::now())
                .await
            {
                Ok(u) => u,
                Err(failure) => {
                    let attempt = Attempt {
                        failure: Failure::ConnectFailure,
                        direction,
                        reused: false,
                        retries,
                        // Nothing went out: the head and the body bytes taken so far
                        // are in `out`, the rest still in the client's socket.
                        replayable: true,
                    };
                    if let Some(backoff) = retry_or_answer(&attempt, &mut retries, &mut log) {
                        tokio::time::sleep(backoff).await;
                        fresh = true;
                        continue;
                    }
                    let persist = x.persist(body.is_done(), Framing::None);
                    return answer_locally(stream, out, log, local_reply(&failure), persist).await;
                }
            },
        };
        let mut up = up;
        log.upstream_local = Some(up.local);
        x.sent_at = Instant::now();
        // Decide-then-do: a reused connection the upstream has closed meanwhile (its
        // FIN already here) gets no request; one that refuses the write got none.
        let written =
            (!up.reused || idle_and_open(&up.stream)) && up.stream.write_all(out).await.is_ok();
        if !written {
            let attempt = Attempt {
                failure: Failure::Unsent,
                direction,
                reused: up.reused,
                retries,
                replayable: true,
            };
            if let Some(backoff) = retry_or_answer(&attempt, &mut retries, &mut log) {
                tokio::time::sleep(backoff).await;
                fresh = true;
                continue;
            }
            let persist = x.persist(body.is_done(), Framing::None);
            let reply = local_reply(&UpstreamFailure::ResetBeforeHeaders);
            return answer_locally(stream, out, log, reply, persist).await;
        }
        ubuf.clear();
        let outcome = {
            let (mut dr, mut dw) = stream.split();
            let (mut ur, mut uw) = up.stream.split();
            let mut down = pin!(downstream_side(
                &mut dr, buf, &mut uw, &mut body, &req_bytes, &body_done, max_ahead,
            ));
            let mut down_live = true;
            let timeout = shared.config.limits.request_timeout;
            let response = {
                let mut waiting = pin!(async {
                    let read = read_response_head(&mut ur, ubuf, head_request, connect);
                    match timeout {
                        Some(t) => tokio::time::timeout(t, read)
                            .await
                            .unwrap_or(Err(HeadFailure::Timeout)),
                        None => read.await,
                    }
                });
                loop {
                    tokio::select! {
                        biased;
                        r = &mut waiting => break Ok(r),
                        event = &mut down, if down_live => match event {
                            Downstream::Gone => break Err(Outcome::ClientGone),
                            Downstream::BadBody => break Err(Outcome::BadBody),
                            Downstream::UpstreamWriteFailed => down_live = false,
                        },
                    }
                }
            };
            match response {
                Err(outcome) => outcome,
                // The request went out: the upstream may have acted on it, and
                // Istio's policy does not retry a reset (`retry::decide`).
                Ok(Err(HeadFailure::Closed)) => {
                    Outcome::Failed(UpstreamFailure::ResetBeforeHeaders)
                }
                Ok(Err(HeadFailure::Protocol)) => Outcome::Failed(UpstreamFailure::ProtocolError),
                Ok(Err(HeadFailure::Timeout)) => Outcome::Failed(UpstreamFailure::ResponseTimeout),
                Ok(Ok(resp)) => {
                    let attempt = Attempt {
                        failure: Failure::Status(resp.status),
                        direction,
                        reused: up.reused,
                        retries,
                        // The whole request went in the first write.
                        replayable: complete_at_send,
                    };
                    match retry::decide(&attempt, retry::jitter()) {
                        Decision::Retry { backoff, counted } => Outcome::Retry { backoff, counted },
                        Decision::Answer { retries_exhausted } => {
                            if retries_exhausted {
                                log.flags
                                    .insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
                            }
                            let service_ms = x.sent_at.elapsed().as_millis() as u64;
                            log.fields.upstream_service_time_ms = Some(service_ms);
                            respond(
                                &x,
                                &resp,
                                service_ms,
                                (&mut ur, ubuf),
                                (&mut dw, out),
                                (&mut down, &mut down_live),
                                (&body_done, &sent),
                                &mut log,
                            )
                            .await
                        }
                    }
                }
            }
        };
        match outcome {
            Outcome::Retry { backoff, counted } => {
                // The answered connection is dropped with its unread response.
                retries += u32::from(counted);
                tokio::time::sleep(backoff).await;
                fresh = true;
                // The request goes out again, all of it in `out`.
                continue;
            }
            outcome => break (up, outcome),
        }
    };
    match outcome {
        Outcome::Retry { .. } => false,
        Outcome::ClientGone => false, // logged `DC` when `log` drops
        Outcome::BadBody => bad_body(stream, out, log).await,
        Outcome::Failed(failure) => {
            let persist = x.persist(body_done.load(Ordering::Relaxed), Framing::None);
            answer_locally(stream, out, log, local_reply(&failure), persist).await
        }
        Outcome::Relayed {
            ending,
            sent,
            reusable,
            keep,
        } => {
            log.emit(sent, ending);
            if reusable && ending == Ending::Complete {
                // Its next request may find it closed by the upstream meanwhile.
                up.reused = true;
                *kept = Some(up);
            }
            keep && ending == Ending::Complete
        }
        Outcome::Switched { sent } => {
            // Bytes the client sent after its request head belong to the tunnel.
            if !buf.is_empty() && up.stream.write_all(buf).await.is_err() {
                log.emit(sent, Ending::UpstreamError);
                return false;
            }
            req_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
            buf.clear();
            match tokio::io::copy_bidirectional(stream, &mut up.stream).await {
                Ok((from_down, from_up)) => {
                    req_bytes.fetch_add(from_down, Ordering::Relaxed);
                    log.emit(sent + from_up, Ending::Complete);
                }
                Err(_) => log.emit(sent, Ending::DownstreamGone),
            }
            false
        }
    }
}

/// The access-log record of a request whose head is `raw`: its logged fields are
/// shared slices of the head, and a request without an `x-request-id` gets one here.
fn request_log(conn: &Arc<HttpConn>, raw: &Bytes, head: &RequestHead, method: &str) -> RequestLog {
    let field =
        |r: Option<Range<usize>>| r.and_then(|r| HeaderValue::from_maybe_shared(raw.slice(r)).ok());
    let value = |i: Option<usize>| field(i.map(|i| head.fields.list[i].value.clone()));
    RequestLog::new(
        conn.clone(),
        HttpFields {
            method: method_text(method),
            path: codec::logged_path(raw, head),
            protocol: if head.http10 { "HTTP/1.0" } else { "HTTP/1.1" },
            x_forwarded_for: value(head.forwarded_for),
            user_agent: value(head.user_agent),
            request_id: match head.request_id {
                Some(i) => value(Some(i)),
                None => Some(uuid_v4()),
            },
            authority: field(codec::authority(raw, head)),
            upstream_service_time_ms: None,
        },
        head.grpc,
    )
}

/// Writes the response head and relays the body, still forwarding the request body
/// and watching the client (`down`) meanwhile.
#[allow(clippy::too_many_arguments)]
async fn respond<F>(
    x: &Exchange<'_>,
    resp: &ResponseHead,
    service_ms: u64,
    (ur, ubuf): (&mut ReadHalf<'_>, &mut BytesMut),
    (dw, out): (&mut WriteHalf<'_>, &mut Vec<u8>),
    (down, down_live): (&mut Pin<&mut F>, &mut bool),
    (body_done, sent): (&AtomicBool, &AtomicU64),
    log: &mut RequestLog,
) -> Outcome
where
    F: Future<Output = Downstream>,
{
    let connect = x.connect;
    let switching = x.head.upgrade
        && if connect {
            (200..300).contains(&resp.status)
        } else {
            resp.status == 101
        };
    if resp.status == 101 && !switching {
        return Outcome::Failed(UpstreamFailure::ProtocolError);
    }
    log.status = resp.status;
    log.details = Some("via_upstream".into());
    // An HTTP/1.0 client cannot read chunked encoding: it gets the body decoded,
    // ended by the close.
    let dechunk = x.head.http10 && resp.body == Framing::Chunked;
    let persist = if switching && !connect {
        Persist::Upgrade
    } else if switching {
        Persist::Default
    } else if dechunk {
        Persist::Close
    } else {
        x.persist(body_done.load(Ordering::Relaxed), resp.body)
    };
    out.clear();
    codec::write_response(out, ubuf, resp, service_ms, persist, dechunk);
    ubuf.advance(resp.len);
    if switching {
        // The app's first tunnel bytes may have come with its head.
        out.extend_from_slice(ubuf);
        let n = ubuf.len() as u64;
        ubuf.clear();
        return match dw.write_all(out).await {
            Ok(()) => Outcome::Switched { sent: n },
            Err(_) => Outcome::Relayed {
                ending: Ending::DownstreamGone,
                sent: 0,
                reusable: false,
                keep: false,
            },
        };
    }
    let ending = {
        let framing = if dechunk {
            Relay::Dechunk(Chunked::new())
        } else {
            Relay::As(resp.body)
        };
        let mut relay = pin!(relay_response(ur, ubuf, dw, out, framing, sent));
        loop {
            tokio::select! {
                biased;
                r = &mut relay => break r.err().unwrap_or(Ending::Complete),
                event = down.as_mut(), if *down_live => match event {
                    Downstream::Gone => break Ending::DownstreamGone,
                    // The app answered before reading the whole body: fine, the
                    // connection closes after this response.
                    Downstream::BadBody | Downstream::UpstreamWriteFailed => *down_live = false,
                },
            }
        }
    };
    let done = body_done.load(Ordering::Relaxed);
    Outcome::Relayed {
        ending,
        sent: sent.load(Ordering::Relaxed),
        reusable: resp.reusable && done && ubuf.is_empty(),
        keep: persist != Persist::Close && done,
    }
}

/// Applies [`retry::decide`] to a failed attempt: the backoff before the next attempt
/// (counting a retry of the route's), or `None` to answer, with `URX` logged when the
/// retries are spent.
fn retry_or_answer(attempt: &Attempt, retries: &mut u32, log: &mut RequestLog) -> Option<Duration> {
    match retry::decide(attempt, retry::jitter()) {
        Decision::Retry { backoff, counted } => {
            *retries += u32::from(counted);
            Some(backoff)
        }
        Decision::Answer { retries_exhausted } => {
            if retries_exhausted {
                log.flags
                    .insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
            }
            None
        }
    }
}

/// Sends a local reply and logs it. Returns whether the connection carries on.
async fn answer_locally(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    mut log: RequestLog,
    reply: LocalReply,
    persist: Persist,
) -> bool {
    let (status, body) = log.answered_locally(reply);
    out.clear();
    codec::write_local(out, status, body.as_bytes(), persist);
    if stream.write_all(out).await.is_err() {
        log.emit(0, Ending::DownstreamGone);
        return false;
    }
    log.emit(body.len() as u64, Ending::Complete);
    persist != Persist::Close
}

/// Answers a malformed request body with `400` and closes.
async fn bad_body(stream: &mut TcpStream, out: &mut Vec<u8>, log: RequestLog) -> bool {
    let reply = LocalReply {
        status: 400,
        flags: ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
        details: "http1.codec_error".into(),
        transport_failure: None,
        body: String::new(),
    };
    answer_locally(stream, out, log, reply, Persist::Close).await;
    false
}
