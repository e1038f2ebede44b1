//! Black-box HTTP/1.1 forwarding semantics of the sidecar, over raw TCP on both
//! sides: message framing (Content-Length, chunked, close-delimited, HEAD, 1xx, 204,
//! 304), connection management (keep-alive, pipelining, `Connection: close`,
//! HTTP/1.0), header handling (hop-by-hop, repeated fields, obs-text, request ids)
//! and request-smuggling defences.
//!
//! The upstreams here are hand-written TCP servers that parse what they receive as
//! RFC 9112 says and record every request, so tests assert what was forwarded; the
//! clients write exact bytes. The assertions are about what any correct HTTP/1.1
//! forwarding proxy (Envoy included) does, not about incidental encoder choices:
//! header names compare case-insensitively, header order only matters among fields
//! of one name, and bodies are compared after decoding their framing, whichever it
//! is. Every wait is bounded, so a broken proxy fails a test instead of hanging it.

mod support;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{TestProxy, config, field, tokens};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// The bound on any single wait for bytes.
const STEP: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------
// HTTP/1 message parsing, shared by the test clients and the test upstreams.
// ---------------------------------------------------------------------------------

/// A parsed message head: request line or status line, and the header fields in
/// the order they came, values as raw bytes (obs-text survives).
#[derive(Clone)]
struct Head {
    start: String,
    headers: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.start)?;
        for (k, v) in &self.headers {
            write!(f, " | {k}: {}", v.escape_ascii())?;
        }
        Ok(())
    }
}

impl Head {
    fn parse(raw: &[u8]) -> Head {
        let text = &raw[..raw.len() - 4]; // without the final CRLFCRLF
        let mut lines = text
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let start = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let colon = l
                    .iter()
                    .position(|b| *b == b':')
                    .unwrap_or_else(|| panic!("header line without a colon: {:?}", lossy(l)));
                let name = String::from_utf8_lossy(&l[..colon]).into_owned();
                let value = l[colon + 1..].trim_ascii().to_vec();
                (name, value)
            })
            .collect();
        Head { start, headers }
    }

    /// Every value of the field `name`, in order.
    fn all(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The single value of `name` as text (panics when the field is repeated).
    fn get(&self, name: &str) -> Option<String> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} repeated: {self:?}");
        all.first().map(|v| lossy(v))
    }

    fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }

    /// The comma-separated list elements of every `name` field, lower-cased.
    fn tokens(&self, name: &str) -> Vec<String> {
        self.all(name)
            .iter()
            .flat_map(|v| {
                lossy(v)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .filter(|t| !t.is_empty())
            .collect()
    }

    fn part(&self, i: usize) -> &str {
        self.start.split(' ').nth(i).unwrap_or("")
    }

    fn method(&self) -> &str {
        self.part(0)
    }

    fn target(&self) -> &str {
        self.part(1)
    }

    fn status(&self) -> u16 {
        self.part(1)
            .parse()
            .unwrap_or_else(|_| panic!("not a status line: {:?}", self.start))
    }

    /// Transfer-Encoding's final coding is chunked.
    fn chunked(&self) -> bool {
        self.tokens("transfer-encoding")
            .last()
            .is_some_and(|t| t == "chunked")
    }

    /// The message's Content-Length (identical repeated values are one length).
    fn content_length(&self) -> Option<usize> {
        let values = self.tokens("content-length");
        let first = values.first()?;
        assert!(
            values.iter().all(|v| v == first),
            "conflicting content-length: {self:?}"
        );
        Some(
            first
                .parse()
                .unwrap_or_else(|_| panic!("bad content-length: {self:?}")),
        )
    }

    /// RFC 9112 §6.3 / §6.1: a message must not carry both framings.
    fn assert_single_framing(&self) {
        assert!(
            !(self.has("transfer-encoding") && self.has("content-length")),
            "message carries both transfer-encoding and content-length: {self:?}"
        );
    }
}

/// A response as the client saw it: interim (1xx) heads first, then the final one.
#[derive(Debug)]
struct Response {
    interim: Vec<Head>,
    head: Head,
    body: Vec<u8>,
}

impl Response {
    fn status(&self) -> u16 {
        self.head.status()
    }
}

/// A request as an upstream saw it.
#[derive(Debug, Clone)]
struct Seen {
    head: Head,
    body: Vec<u8>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every byte one connection has read so far.
type RawBytes = Arc<Mutex<Vec<u8>>>;

/// One side of a TCP connection with a read buffer, recording every byte read.
struct Wire {
    r: OwnedReadHalf,
    w: Option<OwnedWriteHalf>,
    buf: Vec<u8>,
    raw: RawBytes,
}

impl Wire {
    fn new(stream: TcpStream) -> Wire {
        let (r, w) = stream.into_split();
        Wire {
            r,
            w: Some(w),
            buf: Vec::new(),
            raw: Arc::default(),
        }
    }

    async fn connect(addr: SocketAddr) -> Wire {
        let s = tokio::time::timeout(STEP, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        Wire::new(s)
    }

    async fn send(&mut self, bytes: &[u8]) {
        let w = self.w.as_mut().expect("writer was taken");
        tokio::time::timeout(STEP, w.write_all(bytes))
            .await
            .expect("write timed out")
            .expect("write");
    }

    /// Reads once more into the buffer; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = tokio::time::timeout(STEP, self.r.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timed out"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        self.raw.lock().unwrap().extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn eof(what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("end of stream {what}"),
        )
    }

    /// The next message head; `None` if the stream ends cleanly before one starts.
    async fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            // Tolerate empty lines before a message (RFC 9112 §2.2).
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..i + 4).collect();
                return Ok(Some(Head::parse(&raw)));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Wire::eof("in a message head"))
                };
            }
        }
    }

    async fn read_exact_body(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(Wire::eof("in a content-length body"));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(line[..i].to_vec());
            }
            if self.fill().await? == 0 {
                return Err(Wire::eof("in a chunked body"));
            }
        }
    }

    /// Decodes a chunked body, extensions and trailers included (both dropped).
    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = lossy(&self.read_line().await?);
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size line {line:?}"),
                )
            })?;
            if size == 0 {
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact_body(size).await?);
            if !self.read_line().await?.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk not followed by CRLF",
                ));
            }
        }
    }

    async fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        while self.fill().await? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// The body of a request with `head` (RFC 9112 §6.3: chunked wins over length).
    async fn read_request_body(&mut self, head: &Head) -> io::Result<Vec<u8>> {
        if head.chunked() {
            self.read_chunked().await
        } else if let Some(n) = head.content_length() {
            self.read_exact_body(n).await
        } else {
            Ok(Vec::new())
        }
    }

    /// Reads the next request and its body; `None` at a clean end of stream.
    async fn read_request(&mut self) -> io::Result<Option<Seen>> {
        let Some(head) = self.read_head().await? else {
            return Ok(None);
        };
        let body = self.read_request_body(&head).await?;
        Ok(Some(Seen { head, body }))
    }

    /// Reads one response to a `method` request, interim 1xx heads included, and
    /// decodes its body by whatever framing it has.
    async fn try_read_response(&mut self, method: &str) -> io::Result<Response> {
        let mut interim = Vec::new();
        loop {
            let head = self
                .read_head()
                .await?
                .ok_or_else(|| Wire::eof("before a response"))?;
            let status = head.status();
            if (100..200).contains(&status) && status != 101 {
                interim.push(head);
                continue;
            }
            let body = if method == "HEAD" || status == 204 || status == 304 || status == 101 {
                Vec::new()
            } else if head.chunked() {
                self.read_chunked().await?
            } else if let Some(n) = head.content_length() {
                self.read_exact_body(n).await?
            } else {
                self.read_to_end().await?
            };
            return Ok(Response {
                interim,
                head,
                body,
            });
        }
    }

    async fn read_response(&mut self, method: &str) -> Response {
        match self.try_read_response(method).await {
            Ok(r) => r,
            Err(e) => panic!(
                "reading a response failed: {e}; bytes so far: {:?}",
                lossy(&self.raw.lock().unwrap())
            ),
        }
    }

    /// Sends `raw` and reads the response to it.
    async fn exchange(&mut self, method: &str, raw: &[u8]) -> Response {
        self.send(raw).await;
        self.read_response(method).await
    }

    /// Asserts that the peer closes the connection (without sending anything more).
    async fn expect_closed(&mut self) {
        match self.fill().await {
            Ok(0) => {}
            // A reset is a close too.
            Err(e) if e.kind() != io::ErrorKind::TimedOut => {}
            Ok(_) => panic!(
                "expected the connection to close, got more bytes: {:?}",
                lossy(&self.buf)
            ),
            Err(e) => panic!("the connection was not closed: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------
// Raw upstream servers.
// ---------------------------------------------------------------------------------

/// What a raw upstream saw: accepted connections, parsed requests, raw bytes.
#[derive(Clone, Default)]
struct Record {
    accepts: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Seen>>>,
    raw: Arc<Mutex<Vec<RawBytes>>>,
}

impl Record {
    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }

    fn push(&self, seen: &Seen) {
        self.requests.lock().unwrap().push(seen.clone());
    }

    /// Every byte each connection received, for failure messages.
    fn raw_text(&self) -> Vec<String> {
        self.raw
            .lock()
            .unwrap()
            .iter()
            .map(|r| lossy(&r.lock().unwrap()))
            .collect()
    }
}

struct RawUpstream {
    addr: SocketAddr,
    rec: Record,
}

/// An upstream running `handler` on every accepted connection.
async fn upstream_with<F, Fut>(handler: F) -> RawUpstream
where
    F: Fn(Wire, Record) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rec = Record::default();
    let r = rec.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            r.accepts.fetch_add(1, Ordering::SeqCst);
            let wire = Wire::new(stream);
            r.raw.lock().unwrap().push(wire.raw.clone());
            tokio::spawn(handler(wire, r.clone()));
        }
    });
    RawUpstream { addr, rec }
}

/// The bytes an upstream answers one request with.
struct Reply {
    bytes: Vec<u8>,
    /// Close the connection after writing (gracefully: see [`close_gracefully`]).
    close: bool,
    /// Wait this long before answering.
    delay: Option<Duration>,
}

impl Reply {
    fn new(bytes: Vec<u8>) -> Reply {
        Reply {
            bytes,
            close: false,
            delay: None,
        }
    }

    fn then_close(mut self) -> Reply {
        self.close = true;
        self
    }

    fn after(mut self, d: Duration) -> Reply {
        self.delay = Some(d);
        self
    }
}

/// A response with a Content-Length body; `extra` holds whole header lines.
fn with_len(status: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A chunked response of `pieces`, each chunk with an extension; `extra` as above.
fn chunked_response(status: &str, extra: &str, pieces: &[&[u8]]) -> Vec<u8> {
    let mut out =
        format!("HTTP/1.1 {status}\r\n{extra}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
    out.extend(chunked_body(pieces));
    out
}

/// `pieces` as a chunked body, with chunk extensions, ending in the last chunk.
fn chunked_body(pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        out.extend(format!("{:x};ext{i}=v;flag\r\n", p.len()).into_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Half-closes, then reads (and drops) whatever the peer still sends for a bounded
/// time before closing, so the reply is not destroyed by a reset that unread data
/// would otherwise cause (what well-behaved servers do: a "lingering close").
async fn close_gracefully(mut wire: Wire) {
    if let Some(mut w) = wire.w.take() {
        let _ = w.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while let Ok(n) = wire.fill().await {
                wire.buf.clear();
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

/// An upstream serving keep-alive connections: each request is recorded, then
/// answered with `reply(&request)`.
async fn upstream_replying<F>(reply: F) -> RawUpstream
where
    F: Fn(&Seen) -> Reply + Send + Sync + 'static,
{
    let reply = Arc::new(reply);
    upstream_with(move |mut wire, rec| {
        let reply = reply.clone();
        async move {
            while let Ok(Some(seen)) = wire.read_request().await {
                rec.push(&seen);
                let r = reply(&seen);
                if let Some(d) = r.delay {
                    tokio::time::sleep(d).await;
                }
                wire.send(&r.bytes).await;
                if r.close {
                    close_gracefully(wire).await;
                    return;
                }
            }
        }
    })
    .await
}

/// An upstream answering `200` with the request target as the body.
async fn upstream_echoing_target() -> RawUpstream {
    upstream_replying(|seen| Reply::new(with_len("200 OK", "", seen.head.target().as_bytes())))
        .await
}

/// `n` bytes of every value, CR and LF included, starting at `seed`.
fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n)
        .map(|i| ((i * 31 + i / 251 + seed) % 256) as u8)
        .collect()
}

fn assert_same_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} bytes, expected {}; first difference at byte {at}",
            got.len(),
            want.len()
        );
    }
}

/// A chunked request head for `target` (the body follows separately).
fn chunked_post_head(target: &str) -> String {
    format!("POST {target} HTTP/1.1\r\nHost: svc.test\r\nTransfer-Encoding: chunked\r\n\r\n")
}

/// Sends a chunked POST of `pieces` over `client` one chunk per write, and reads the
/// chunked response back, checking both bodies and the access-log line `line`.
async fn chunked_round_trip(p: &TestProxy, client: &mut Wire, up: &RawUpstream, line: usize) {
    let pieces_up: Vec<Vec<u8>> = [1usize, 10, 4096, 20_000, 3]
        .iter()
        .enumerate()
        .map(|(i, n)| pattern(*n, i))
        .collect();
    let want_up: Vec<u8> = pieces_up.concat();
    client.send(chunked_post_head("/chunked").as_bytes()).await;
    for (i, piece) in pieces_up.iter().enumerate() {
        let mut chunk = format!("{:x};name{i}=\"quoted value\";bare\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(piece);
        chunk.extend_from_slice(b"\r\n");
        client.send(&chunk).await;
    }
    client.send(b"0\r\n\r\n").await;
    let r = client.read_response("POST").await;
    assert_eq!(r.status(), 200, "{r:?}");
    r.head.assert_single_framing();
    let want_down: Vec<u8> = response_pieces().concat();
    assert_same_bytes("response body", &r.body, &want_down);

    let seen = up.rec.requests();
    let seen = seen.last().expect("upstream saw the request");
    assert_eq!(seen.head.method(), "POST");
    assert_eq!(seen.head.target(), "/chunked");
    seen.head.assert_single_framing();
    assert_same_bytes("request body upstream", &seen.body, &want_up);

    let t = tokens(&p.lines(line + 1).await[line]);
    assert_eq!(t[field::CODE], "200");
    assert_eq!(t[field::BYTES_RECEIVED], want_up.len().to_string());
    assert_eq!(t[field::BYTES_SENT], want_down.len().to_string());
}

/// The chunks of the response [`upstream_chunked`] sends.
fn response_pieces() -> Vec<Vec<u8>> {
    [7usize, 30_000, 1, 5000]
        .iter()
        .enumerate()
        .map(|(i, n)| pattern(*n, 100 + i))
        .collect()
}

/// An upstream answering every request with the fixed chunked response
/// [`chunked_round_trip`] expects.
async fn upstream_chunked() -> RawUpstream {
    upstream_replying(|_| {
        let pieces = response_pieces();
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        Reply::new(chunked_response(
            "200 OK",
            "Content-Type: application/octet-stream\r\n",
            &refs,
        ))
    })
    .await
}

// ---------------------------------------------------------------------------------
// 1. Content-Length bodies.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn content_length_bodies_arrive_intact_both_ways_and_are_counted_in_the_access_log() {
    const UP: usize = 300_000;
    const DOWN: usize = 1_000_000;
    let up = upstream_replying(|_| {
        Reply::new(with_len(
            "200 OK",
            "Content-Type: application/octet-stream\r\n",
            &pattern(DOWN, 7),
        ))
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);

    let body = pattern(UP, 1);
    let mut c = Wire::connect(p.addrs.outbound).await;
    let mut req =
        format!("POST /upload HTTP/1.1\r\nHost: svc.test\r\nContent-Length: {UP}\r\n\r\n")
            .into_bytes();
    req.extend_from_slice(&body);
    let r = c.exchange("POST", &req).await;
    assert_eq!(r.status(), 200, "{:?}", r.head);
    // The length is kept: clients show progress and check truncation with it.
    assert_eq!(r.head.get("content-length"), Some(DOWN.to_string()));
    assert!(!r.head.has("transfer-encoding"), "{:?}", r.head);
    assert_same_bytes("response body", &r.body, &pattern(DOWN, 7));

    let seen = up.rec.requests();
    assert_eq!(seen.len(), 1);
    // Many app servers cannot take a chunked request body: the length is kept.
    assert_eq!(seen[0].head.get("content-length"), Some(UP.to_string()));
    assert!(!seen[0].head.has("transfer-encoding"), "{:?}", seen[0].head);
    assert_same_bytes("request body upstream", &seen[0].body, &body);

    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::REQUEST], "POST /upload HTTP/1.1");
    assert_eq!(t[field::CODE], "200");
    assert_eq!(t[field::BYTES_RECEIVED], UP.to_string());
    assert_eq!(t[field::BYTES_SENT], DOWN.to_string());
}

// ---------------------------------------------------------------------------------
// 2. Chunked bodies.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn chunked_bodies_with_extensions_are_decoded_identically_on_the_other_side() {
    let up = upstream_chunked().await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    chunked_round_trip(&p, &mut c, &up, 0).await;
    // The connection is still in sync: a second exchange on it works the same.
    chunked_round_trip(&p, &mut c, &up, 1).await;
    assert_eq!(up.rec.requests().len(), 2);
}

// ---------------------------------------------------------------------------------
// 3. Close-delimited responses.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn close_delimited_response_reaches_the_client_in_full() {
    const N: usize = 200_000;
    let up = upstream_replying(|_| {
        let mut bytes =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
        bytes.extend(pattern(N, 5));
        Reply::new(bytes).then_close()
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    let r = c
        .exchange("GET", b"GET /stream HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.head);
    r.head.assert_single_framing();
    assert_same_bytes("close-delimited body", &r.body, &pattern(N, 5));
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::BYTES_SENT], N.to_string());
}

// ---------------------------------------------------------------------------------
// 4. HEAD.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn head_response_keeps_its_content_length_and_the_connection_stays_usable() {
    let up = upstream_replying(|seen| {
        if seen.head.method() == "HEAD" {
            // The length the GET would have; no body follows a HEAD response.
            Reply::new(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n"
                    .to_vec(),
            )
        } else {
            Reply::new(with_len("200 OK", "", seen.head.target().as_bytes()))
        }
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    let r = c
        .exchange("HEAD", b"HEAD /resource HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.head);
    assert_eq!(
        r.head.get("content-length").as_deref(),
        Some("1234"),
        "{:?}",
        r.head
    );
    assert!(!r.head.has("transfer-encoding"), "{:?}", r.head);

    let r = c
        .exchange("GET", b"GET /after-head HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.head);
    assert_eq!(r.body, b"/after-head");
    let seen = up.rec.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].head.method(), "HEAD", "HEAD is forwarded as HEAD");
    assert_eq!(seen[1].head.target(), "/after-head");
    let lines = p.lines(2).await;
    assert_eq!(tokens(&lines[0])[field::REQUEST], "HEAD /resource HTTP/1.1");
    assert_eq!(tokens(&lines[0])[field::BYTES_SENT], "0");
}

// ---------------------------------------------------------------------------------
// 5. 204 and 304.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn bodiless_204_and_304_responses_leave_the_connection_usable() {
    let up = upstream_replying(|seen| match seen.head.target() {
        "/no-content" => Reply::new(b"HTTP/1.1 204 No Content\r\nx-kind: nc\r\n\r\n".to_vec()),
        "/not-modified" => {
            Reply::new(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nx-kind: nm\r\n\r\n".to_vec())
        }
        t => Reply::new(with_len("200 OK", "", t.as_bytes())),
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;

    let r = c
        .exchange("GET", b"GET /no-content HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!(r.status(), 204, "{:?}", r.head);
    assert_eq!(r.head.get("x-kind").as_deref(), Some("nc"));
    assert!(
        !r.head.has("transfer-encoding"),
        "204 must not be chunked: {:?}",
        r.head
    );
    assert!(
        matches!(r.head.get("content-length").as_deref(), None | Some("0")),
        "{:?}",
        r.head
    );
    let r = c
        .exchange("GET", b"GET /after-204 HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"/after-204"[..]));

    let r = c
        .exchange(
            "GET",
            b"GET /not-modified HTTP/1.1\r\nHost: svc.test\r\nIf-None-Match: \"v1\"\r\n\r\n",
        )
        .await;
    assert_eq!(r.status(), 304, "{:?}", r.head);
    assert_eq!(r.head.get("etag").as_deref(), Some("\"v1\""));
    assert!(
        !r.head.has("transfer-encoding"),
        "304 must not be chunked: {:?}",
        r.head
    );
    let r = c
        .exchange("GET", b"GET /after-304 HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"/after-304"[..]));

    let seen = up.rec.requests();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[2].head.get("if-none-match").as_deref(), Some("\"v1\""));
}

// ---------------------------------------------------------------------------------
// 6. Expect: 100-continue.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn expect_100_continue_client_gets_100_before_sending_the_body_then_the_final_200() {
    const N: usize = 50_000;
    // An upstream that says 100 Continue after the head (whether or not the proxy
    // passed the expectation on), then reads the body and reports its length.
    let up = upstream_with(|mut wire, rec| async move {
        let Ok(Some(head)) = wire.read_head().await else {
            return;
        };
        wire.send(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        let Ok(body) = wire.read_request_body(&head).await else {
            return;
        };
        let seen = Seen { head, body };
        rec.push(&seen);
        wire.send(&with_len(
            "200 OK",
            "",
            seen.body.len().to_string().as_bytes(),
        ))
        .await;
        close_gracefully(wire).await;
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    c.send(
        format!(
            "POST /expect HTTP/1.1\r\nHost: svc.test\r\nExpect: 100-continue\r\nContent-Length: {N}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    // The body is held back until the interim response arrives (bounded wait).
    let interim = c
        .read_head()
        .await
        .expect("waiting for 100 Continue")
        .expect("connection closed instead of 100 Continue");
    assert_eq!(interim.status(), 100, "{interim:?}");
    c.send(&pattern(N, 9)).await;
    let r = c.read_response("POST").await;
    // Further interim responses (e.g. the upstream's own 100) may precede the final.
    assert!(
        r.interim.iter().all(|h| h.status() == 100),
        "{:?}",
        r.interim
    );
    assert_eq!(r.status(), 200, "{:?}", r.head);
    assert_eq!(r.body, N.to_string().as_bytes());
    let seen = up.rec.requests();
    assert_eq!(seen.len(), 1);
    assert_same_bytes("request body upstream", &seen[0].body, &pattern(N, 9));
}

// ---------------------------------------------------------------------------------
// 7. Pipelining.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn pipelined_requests_in_one_write_get_their_responses_in_order() {
    // The first answer comes late, so a proxy that handled the requests in parallel
    // would have the later ones ready first: it must still answer in order.
    let up = upstream_replying(|seen| {
        let body = format!(
            "{} {} {}",
            seen.head.method(),
            seen.head.target(),
            lossy(&seen.body)
        );
        let r = Reply::new(with_len("200 OK", "", body.as_bytes()));
        if seen.head.target() == "/first" {
            r.after(Duration::from_millis(200))
        } else {
            r
        }
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    c.send(
        b"GET /first HTTP/1.1\r\nHost: svc.test\r\n\r\n\
          POST /second HTTP/1.1\r\nHost: svc.test\r\nContent-Length: 3\r\n\r\nabc\
          GET /third HTTP/1.1\r\nHost: svc.test\r\n\r\n",
    )
    .await;
    for want in ["GET /first ", "POST /second abc", "GET /third "] {
        let r = c.read_response(want.split(' ').next().unwrap()).await;
        assert_eq!(r.status(), 200, "{:?}", r.head);
        assert_eq!(lossy(&r.body), want);
    }
    let targets: Vec<String> = up
        .rec
        .requests()
        .iter()
        .map(|s| s.head.target().to_string())
        .collect();
    assert_eq!(targets.len(), 3, "{targets:?}");
    let lines = p.lines(3).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
}

// ---------------------------------------------------------------------------------
// 8. Closing the client connection when asked to.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn http10_is_refused_with_426_unless_enabled_as_in_istio() {
    let up = upstream_echoing_target().await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    let r = c
        .exchange("GET", b"GET /ten HTTP/1.0\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!(r.status(), 426, "{:?}", r.head);
    c.expect_closed().await;
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(
        (
            t[field::CODE].as_str(),
            t[field::FLAGS].as_str(),
            t[field::DETAILS].as_str()
        ),
        ("426", "DPE", "low_version")
    );
    assert!(up.rec.requests().is_empty());
}

/// A proxy that accepts HTTP/1.0 (`ISTIO_META_HTTP10`).
fn http10_config() -> podrun_proxy::ProxyConfig {
    let mut c = config();
    c.accept_http10 = true;
    c
}

#[tokio::test]
async fn http10_request_without_keep_alive_is_answered_then_the_connection_closes() {
    let up = upstream_echoing_target().await;
    let p = TestProxy::start(http10_config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    let r = c
        .exchange("GET", b"GET /ten HTTP/1.0\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.head);
    assert!(
        !r.head.chunked(),
        "an HTTP/1.0 client cannot decode chunked: {:?}",
        r.head
    );
    assert_eq!(r.body, b"/ten");
    c.expect_closed().await;
    assert_eq!(up.rec.requests().len(), 1);
}

#[tokio::test]
async fn http10_client_gets_an_unchunked_body_when_the_upstream_chunks() {
    let up = upstream_chunked().await;
    let p = TestProxy::start(http10_config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    let r = c
        .exchange("GET", b"GET /ten HTTP/1.0\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.head);
    assert!(
        !r.head.chunked(),
        "an HTTP/1.0 client cannot decode chunked: {:?}",
        r.head
    );
    let want: Vec<u8> = response_pieces().concat();
    assert_same_bytes("body for the HTTP/1.0 client", &r.body, &want);
    if r.head.content_length().is_some() {
        // A length-delimited body leaves the close still to come.
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn http11_request_with_connection_close_is_answered_then_the_connection_closes() {
    let up = upstream_echoing_target().await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    let r = c
        .exchange(
            "GET",
            b"GET /bye HTTP/1.1\r\nHost: svc.test\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.head);
    assert_eq!(r.body, b"/bye");
    c.expect_closed().await;
    assert_eq!(up.rec.requests().len(), 1);
}

// ---------------------------------------------------------------------------------
// 9. Upstream closing its connection.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn upstream_connection_close_keeps_the_client_connection_and_opens_a_new_upstream() {
    let up = upstream_replying(|seen| {
        Reply::new(with_len(
            "200 OK",
            "Connection: close\r\n",
            seen.head.target().as_bytes(),
        ))
        .then_close()
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    let r = c
        .exchange("GET", b"GET /one HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"/one"[..]));
    assert!(
        !r.head.tokens("connection").contains(&"close".to_string()),
        "the upstream's Connection: close is hop-by-hop: {:?}",
        r.head
    );
    let r = c
        .exchange("GET", b"GET /two HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"/two"[..]));
    assert_eq!(up.rec.accepts(), 2, "{:?}", up.rec.raw_text());
    assert_eq!(up.rec.requests().len(), 2);
}

// ---------------------------------------------------------------------------------
// 10. Hop-by-hop headers, x-request-id, x-envoy-upstream-service-time.
// ---------------------------------------------------------------------------------

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    s.len() == 36
        && parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_and_request_id_and_upstream_time_are_set() {
    let up = upstream_replying(|seen| {
        Reply::new(with_len(
            "200 OK",
            "Connection: x-resp-hop\r\nx-resp-hop: 1\r\nKeep-Alive: timeout=5\r\nx-resp-end: 3\r\n",
            seen.head.target().as_bytes(),
        ))
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    let r = c
        .exchange(
            "GET",
            b"GET /hop HTTP/1.1\r\nHost: svc.test\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\n\
              Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\nx-end: 2\r\n\r\n",
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.head);
    let ust = r
        .head
        .get("x-envoy-upstream-service-time")
        .expect("x-envoy-upstream-service-time");
    assert!(ust.parse::<u64>().is_ok(), "not an integer: {ust:?}");
    assert!(!r.head.has("x-resp-hop"), "{:?}", r.head);
    assert!(!r.head.has("keep-alive"), "{:?}", r.head);
    assert_eq!(r.head.get("x-resp-end").as_deref(), Some("3"));

    let r = c
        .exchange(
            "GET",
            b"GET /rid HTTP/1.1\r\nHost: svc.test\r\nx-request-id: abc\r\nTE: trailers\r\n\r\n",
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.head);
    assert!(
        r.head
            .get("x-envoy-upstream-service-time")
            .is_some_and(|v| v.parse::<u64>().is_ok())
    );

    let seen = up.rec.requests();
    assert_eq!(seen.len(), 2);
    let h = &seen[0].head;
    for gone in ["x-hop", "keep-alive", "proxy-connection", "te"] {
        assert!(!h.has(gone), "{gone} was forwarded: {h:?}");
    }
    assert!(
        !h.tokens("connection").contains(&"x-hop".to_string()),
        "{h:?}"
    );
    // As Envoy: `TE: trailers` (which gRPC needs) passes, any other TE does not.
    assert_eq!(seen[1].head.get("te").as_deref(), Some("trailers"));
    assert_eq!(h.get("x-end").as_deref(), Some("2"));
    assert_eq!(h.get("host").as_deref(), Some("svc.test"));
    let rid = h.get("x-request-id").expect("generated x-request-id");
    assert!(is_uuid(&rid), "x-request-id is not a UUID: {rid:?}");
    assert_eq!(
        seen[1].head.all("x-request-id"),
        [b"abc"],
        "{:?}",
        seen[1].head
    );

    let lines = p.lines(2).await;
    assert_eq!(tokens(&lines[0])[field::REQUEST_ID], rid);
    assert_eq!(tokens(&lines[1])[field::REQUEST_ID], "abc");
}

// ---------------------------------------------------------------------------------
// 11. Repeated header fields.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn repeated_header_fields_keep_every_value_in_order_both_ways() {
    const COOKIE_A: &str = "a=1; Path=/; Expires=Wed, 21 Oct 2099 07:28:00 GMT";
    const COOKIE_B: &str = "b=2; Path=/x; HttpOnly";
    let up = upstream_replying(|_| {
        Reply::new(with_len(
            "200 OK",
            &format!("Set-Cookie: {COOKIE_A}\r\nx-between: z\r\nSet-Cookie: {COOKIE_B}\r\n"),
            b"ok",
        ))
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    let r = c
        .exchange(
            "GET",
            b"GET /multi HTTP/1.1\r\nHost: svc.test\r\nx-multi: a\r\nx-other: z\r\nx-multi: b\r\n\r\n",
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.head);
    // Set-Cookie cannot be folded into one line (RFC 9110 §5.3): two lines, in order.
    let cookies: Vec<String> = r.head.all("set-cookie").iter().map(|v| lossy(v)).collect();
    assert_eq!(cookies, [COOKIE_A, COOKIE_B], "{:?}", r.head);

    let seen = up.rec.requests();
    // Either two lines or one folded list, but both values, in order.
    assert_eq!(
        seen[0].head.tokens("x-multi"),
        ["a", "b"],
        "{:?}",
        seen[0].head
    );
    assert_eq!(seen[0].head.get("x-other").as_deref(), Some("z"));
}

// ---------------------------------------------------------------------------------
// 12. Early responses.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn early_413_from_the_upstream_reaches_a_client_still_sending_its_body() {
    const N: usize = 1 << 20;
    // Reads only the head, refuses, and closes (lingering, as real servers do).
    let up = upstream_with(|mut wire, rec| async move {
        let Ok(Some(head)) = wire.read_head().await else {
            return;
        };
        rec.push(&Seen {
            head,
            body: Vec::new(),
        });
        wire.send(&with_len(
            "413 Payload Too Large",
            "Connection: close\r\n",
            b"too large",
        ))
        .await;
        close_gracefully(wire).await;
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    c.send(
        format!("POST /big-upload HTTP/1.1\r\nHost: svc.test\r\nContent-Length: {N}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let mut w = c.w.take().unwrap();
    // The body goes out in the background, errors ignored: the proxy may stop
    // reading it, or reset the connection, once the answer is known.
    tokio::spawn(async move {
        for piece in pattern(N, 2).chunks(16 * 1024) {
            if !matches!(
                tokio::time::timeout(STEP, w.write_all(piece)).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
    });
    let r = c.read_response("POST").await;
    assert_eq!(r.status(), 413, "{:?}", r.head);
    assert_eq!(r.body, b"too large");
    assert_eq!(up.rec.requests()[0].head.target(), "/big-upload");
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::CODE], "413");
}

// ---------------------------------------------------------------------------------
// 13. Request smuggling.
// ---------------------------------------------------------------------------------

/// Reads whatever responses the client gets until the connection closes or stays
/// quiet (bounded), returning their statuses and whether the connection closed.
async fn drain_responses(c: &mut Wire, method: &str) -> (Vec<u16>, bool) {
    let mut statuses = Vec::new();
    loop {
        match c.try_read_response(method).await {
            Ok(r) => statuses.push(r.status()),
            // End of stream or reset: closed. Quiet for a whole step: left open.
            Err(e) => return (statuses, e.kind() != io::ErrorKind::TimedOut),
        }
    }
}

#[tokio::test]
async fn transfer_encoding_with_content_length_never_reaches_the_upstream_as_two_requests() {
    let up = upstream_echoing_target().await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    // TE.CL: chunked framing carries a request-looking chunk; Content-Length covers
    // only the chunk-size line. A proxy framing by the length would forward the
    // chunk's content as a second request of its own.
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: svc.test\r\n\r\n";
    let size_line = format!("{:x}\r\n", smuggled.len());
    let mut req = format!(
        "POST /first HTTP/1.1\r\nHost: svc.test\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        size_line.len()
    )
    .into_bytes();
    req.extend_from_slice(size_line.as_bytes());
    req.extend_from_slice(smuggled);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut c = Wire::connect(p.addrs.outbound).await;
    c.send(&req).await;
    let (statuses, closed) = drain_responses(&mut c, "POST").await;
    assert!(
        statuses == [400] || statuses == [200],
        "expected one 400 or one proper response, got {statuses:?}"
    );
    // RFC 9112 §6.1: whether it rejects or processes such a request, the server
    // MUST close the connection after responding.
    assert!(closed, "the connection stayed open after {statuses:?}");

    // Everything the upstream got from that connection arrived before the proxy
    // answered it; a fresh, valid request marks the end.
    let mut c2 = Wire::connect(p.addrs.outbound).await;
    let r = c2
        .exchange("GET", b"GET /marker HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!(r.status(), 200);
    let seen = up.rec.requests();
    let targets: Vec<&str> = seen.iter().map(|s| s.head.target()).collect();
    assert!(
        !targets.contains(&"/smuggled"),
        "smuggled: {targets:?} {:?}",
        up.rec.raw_text()
    );
    let before_marker: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.head.target() != "/marker")
        .collect();
    assert!(
        before_marker.len() <= 1,
        "{targets:?} {:?}",
        up.rec.raw_text()
    );
    if statuses == [200] {
        // Forwarded as chunked, the request-looking chunk being its body.
        let first = before_marker
            .first()
            .expect("the answered request reached the upstream");
        assert_eq!(first.head.target(), "/first");
        first.head.assert_single_framing();
        assert_eq!(first.body, smuggled);
    }
}

#[tokio::test]
async fn invalid_content_length_gets_400_and_never_reaches_the_upstream() {
    let up = upstream_echoing_target().await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    for bad in [
        "POST /bad-abc HTTP/1.1\r\nHost: svc.test\r\nContent-Length: abc\r\n\r\nhello",
        "POST /bad-two HTTP/1.1\r\nHost: svc.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST /bad-list HTTP/1.1\r\nHost: svc.test\r\nContent-Length: 5, 6\r\n\r\nhello!",
        "POST /bad-neg HTTP/1.1\r\nHost: svc.test\r\nContent-Length: -5\r\n\r\nhello",
    ] {
        let mut c = Wire::connect(p.addrs.outbound).await;
        let r = c.exchange("POST", bad.as_bytes()).await;
        assert_eq!(r.status(), 400, "{bad:?} got {:?}", r.head);
    }
    let mut c = Wire::connect(p.addrs.outbound).await;
    let r = c
        .exchange("GET", b"GET /valid HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        .await;
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"/valid"[..]));
    let targets: Vec<String> = up
        .rec
        .requests()
        .iter()
        .map(|s| s.head.target().to_string())
        .collect();
    assert_eq!(targets, ["/valid"], "{:?}", up.rec.raw_text());
}

// ---------------------------------------------------------------------------------
// 14. Bytes that must pass unchanged.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn obs_text_header_values_and_escaped_paths_with_queries_pass_unchanged() {
    const TARGET: &str = "/caf%C3%A9/a%2Fb%20c/~x?q=a%26b&e=%E2%82%AC&flag&sp=%20";
    let obs: &[u8] = b"caf\xe9 \xff\x80 end";
    let up = upstream_replying(move |seen| {
        let body = seen.head.target().as_bytes();
        let mut bytes = b"HTTP/1.1 200 OK\r\nx-obs: ".to_vec();
        bytes.extend_from_slice(obs);
        bytes.extend(format!("\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes());
        bytes.extend_from_slice(body);
        Reply::new(bytes)
    })
    .await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.outbound).await;
    let mut req = format!("GET {TARGET} HTTP/1.1\r\nHost: svc.test\r\nx-req-obs: ").into_bytes();
    req.extend_from_slice(b"\xe9t\xe9\r\n\r\n");
    let r = c.exchange("GET", &req).await;
    assert_eq!(r.status(), 200, "{:?}", r.head);
    assert_eq!(r.head.all("x-obs"), [obs], "{:?}", r.head);
    assert_eq!(r.body, TARGET.as_bytes());

    let seen = up.rec.requests();
    assert_eq!(seen[0].head.target(), TARGET);
    assert_eq!(seen[0].head.all("x-req-obs"), [b"\xe9t\xe9"]);
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::REQUEST], format!("GET {TARGET} HTTP/1.1"));
}

// ---------------------------------------------------------------------------------
// 15. Inbound.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn inbound_forwards_a_chunked_post_the_same_way() {
    let up = upstream_chunked().await;
    let mut cfg = config();
    cfg.pod_ports.insert(up.addr.port());
    let p = TestProxy::start(cfg).await;
    p.inbound_to(up.addr);
    let mut c = Wire::connect(p.addrs.inbound).await;
    chunked_round_trip(&p, &mut c, &up, 0).await;
    let t = tokens(&p.lines(1).await[0]);
    assert_eq!(t[field::CLUSTER], format!("inbound|{}||", up.addr.port()));
}
