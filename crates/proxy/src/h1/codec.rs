//! HTTP/1.1 message heads and body framing, without I/O.
//!
//! [`parse_request`] and [`parse_response`] read a head with httparse and decide how
//! its body is delimited (RFC 9112 §6); [`Chunked`] finds where a chunked body ends;
//! [`write_request`] and [`write_response`] write the head that goes to the other
//! side: hop-by-hop fields dropped (RFC 9110 §7.6.1), the proxy's own fields added,
//! every other field copied byte for byte. A head is kept as offsets into the bytes
//! it was read from, so nothing is copied before it is written out.

use std::mem::MaybeUninit;
use std::ops::Range;

/// One header field: its name and value as byte ranges of the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name, as received.
    pub name: Range<usize>,
    /// The value, without surrounding whitespace.
    pub value: Range<usize>,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes (`Content-Length`, never 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// A head the proxy cannot accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than the limit, or more fields than allowed: `431` for requests.
    TooLarge,
    /// Not valid HTTP/1.x; the text is Envoy's response code detail.
    Invalid(&'static str),
}

const CODEC_ERROR: HeadError = HeadError::Invalid("http1.codec_error");

/// What every head has: fields and what the `Connection` field says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// Every field, in order.
    pub list: Vec<Field>,
    /// Field names listed in `Connection` (other than `close`, `keep-alive`, `upgrade`):
    /// hop-by-hop for this message.
    connection_names: Vec<Range<usize>>,
    close: bool,
    keep_alive: bool,
    /// Both a `Transfer-Encoding` and a `Content-Length` field.
    length_and_chunked: bool,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Length of the head, blank line included: the body starts here.
    pub len: usize,
    /// The method token.
    pub method: Range<usize>,
    /// The request target, as sent.
    pub target: Range<usize>,
    /// `HTTP/1.0` rather than `HTTP/1.1`.
    pub http10: bool,
    /// The fields.
    pub fields: Fields,
    /// How the body is delimited (never [`Framing::UntilClose`]).
    pub body: Framing,
    /// The client keeps the connection open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// `CONNECT`, or an `Upgrade` field: the connection may become a tunnel.
    pub upgrade: bool,
    /// Index of the `Host` field.
    pub host: Option<usize>,
    /// Index of the `User-Agent` field.
    pub user_agent: Option<usize>,
    /// Index of the `X-Forwarded-For` field.
    pub forwarded_for: Option<usize>,
    /// Index of a non-empty `X-Request-Id` field.
    pub request_id: Option<usize>,
    /// `Content-Type: application/grpc…`.
    pub grpc: bool,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Length of the head, blank line included.
    pub len: usize,
    /// The status code.
    pub status: u16,
    /// The reason phrase, as sent.
    pub reason: Range<usize>,
    /// The fields.
    pub fields: Fields,
    /// How the body is delimited.
    pub body: Framing,
    /// The upstream connection can carry another request after this body.
    pub reusable: bool,
}

/// Headers httparse parses on the stack; more are allowed only when configured.
const STACK_FIELDS: usize = 100;

/// Where `part`, a slice of `buf`, lies in it. httparse gives an empty reason phrase
/// that is not part of the input when the phrase is not UTF-8: that one is `0..0`.
fn range(buf: &[u8], part: &[u8]) -> Range<usize> {
    match (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize) {
        Some(start) if start + part.len() <= buf.len() => start..start + part.len(),
        _ => 0..0,
    }
}

/// Which field names the proxy looks at; one length check before comparing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Host,
    Expect,
    Upgrade,
    Connection,
    UserAgent,
    ContentType,
    RequestId,
    ContentLength,
    ForwardedFor,
    TransferEncoding,
    /// `TE`: hop-by-hop, but `TE: trailers` passes (as in Envoy; gRPC needs it).
    Te,
    /// Always hop-by-hop: `Keep-Alive`, `Proxy-Connection`, `Trailer`,
    /// `Proxy-Authorization`.
    HopByHop,
    Other,
}

fn known(name: &[u8]) -> Known {
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    match name.len() {
        2 if is("te") => Known::Te,
        4 if is("host") => Known::Host,
        6 if is("expect") => Known::Expect,
        7 if is("upgrade") => Known::Upgrade,
        7 if is("trailer") => Known::HopByHop,
        10 if is("connection") => Known::Connection,
        10 if is("user-agent") => Known::UserAgent,
        10 if is("keep-alive") => Known::HopByHop,
        12 if is("content-type") => Known::ContentType,
        12 if is("x-request-id") => Known::RequestId,
        14 if is("content-length") => Known::ContentLength,
        15 if is("x-forwarded-for") => Known::ForwardedFor,
        16 if is("proxy-connection") => Known::HopByHop,
        17 if is("transfer-encoding") => Known::TransferEncoding,
        19 if is("proxy-authorization") => Known::HopByHop,
        _ => Known::Other,
    }
}

/// Comma-separated list elements of a field value, trimmed, empty ones skipped.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|s| !s.is_empty())
}

/// A `Content-Length` value: digits only; a list of equal values counts as one.
fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for item in list_items(value) {
        if !item.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = item.iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// What the framing fields of one head say.
#[derive(Default)]
struct Framed {
    length: Option<u64>,
    bad_length: bool,
    transfer_encoding: bool,
    chunked_last: bool,
}

impl Framed {
    fn content_length(&mut self, value: &[u8]) {
        match (content_length(value), self.length) {
            (Some(n), None) => self.length = Some(n),
            (Some(n), Some(l)) if n == l => {}
            _ => self.bad_length = true,
        }
    }

    fn transfer_encoding(&mut self, value: &[u8]) {
        self.transfer_encoding = true;
        // Only the last coding of the last field decides; `chunked` earlier is invalid
        // (RFC 9112 §6.1) and leaves `chunked_last` false.
        let mut last = None;
        for item in list_items(value) {
            last = Some(item);
        }
        self.chunked_last = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
    }
}

fn connection(fields: &mut Fields, buf: &[u8], value: &[u8]) -> bool {
    let mut upgrade = false;
    for token in list_items(value) {
        if token.eq_ignore_ascii_case(b"close") {
            fields.close = true;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            fields.keep_alive = true;
        } else if token.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        } else {
            fields.connection_names.push(range(buf, token));
        }
    }
    upgrade
}

/// The length of a complete head from httparse's answer on `buf`: `None` while more
/// bytes may complete it, `TooLarge` past `max_len` bytes or the field limit.
fn head_len(
    parsed: httparse::Result<usize>,
    buf: &[u8],
    max_len: usize,
) -> Result<Option<usize>, HeadError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) if n <= max_len => Ok(Some(n)),
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_len => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(CODEC_ERROR),
    }
}

/// Parses a request head at the start of `buf`. `Ok(None)`: not complete yet.
pub fn parse_request(
    buf: &[u8],
    max_fields: usize,
    max_len: usize,
) -> Result<Option<RequestHead>, HeadError> {
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_FIELDS];
    let mut heap = Vec::new();
    let slots = if max_fields <= STACK_FIELDS {
        &mut stack[..max_fields]
    } else {
        heap.resize_with(max_fields, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    let Some(len) = head_len(req.parse_with_uninit_headers(buf, slots), buf, max_len)? else {
        return Ok(None);
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(CODEC_ERROR);
    };
    let http10 = version == 0;
    let mut head = RequestHead {
        len,
        method: range(buf, method.as_bytes()),
        target: range(buf, target.as_bytes()),
        http10,
        fields: Fields::default(),
        body: Framing::None,
        keep_alive: false,
        expect_continue: false,
        upgrade: method == "CONNECT",
        host: None,
        user_agent: None,
        forwarded_for: None,
        request_id: None,
        grpc: false,
    };
    let mut framed = Framed::default();
    head.fields.list.reserve(req.headers.len());
    for (i, h) in req.headers.iter().enumerate() {
        let value = h.value.trim_ascii();
        let name = h.name.as_bytes();
        match known(name) {
            Known::Host => head.host = Some(i),
            Known::UserAgent => head.user_agent = Some(i),
            Known::ForwardedFor => head.forwarded_for = Some(i),
            Known::RequestId if !value.is_empty() => head.request_id = Some(i),
            Known::ContentType => head.grpc |= value.starts_with(b"application/grpc"),
            Known::Expect => head.expect_continue = value.eq_ignore_ascii_case(b"100-continue"),
            Known::Upgrade => head.upgrade |= !http10,
            Known::Connection => {
                connection(&mut head.fields, buf, value);
            }
            Known::ContentLength => framed.content_length(value),
            Known::TransferEncoding => framed.transfer_encoding(value),
            Known::RequestId | Known::Te | Known::HopByHop | Known::Other => {}
        }
        head.fields.list.push(Field {
            name: range(buf, name),
            value: range(buf, value),
        });
    }
    head.body = if framed.transfer_encoding {
        if framed.length.is_some() || framed.bad_length {
            return Err(HeadError::Invalid(
                "http1.content_length_and_chunked_not_allowed",
            ));
        }
        if http10 || !framed.chunked_last {
            return Err(HeadError::Invalid("http1.invalid_transfer_encoding"));
        }
        Framing::Chunked
    } else if framed.bad_length {
        return Err(CODEC_ERROR);
    } else {
        match framed.length {
            None | Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
        }
    };
    head.keep_alive = if http10 {
        head.fields.keep_alive && !head.fields.close
    } else {
        !head.fields.close
    };
    head.expect_continue &= !http10;
    Ok(Some(head))
}

/// Parses a response head at the start of `buf`. `head_request` and `connect`: the
/// request it answers was a `HEAD` or a `CONNECT` (RFC 9112 §6.3).
pub fn parse_response(
    buf: &[u8],
    max_fields: usize,
    max_len: usize,
    head_request: bool,
    connect: bool,
) -> Result<Option<ResponseHead>, HeadError> {
    // httparse reads response fields only into initialised slots.
    let mut stack = [httparse::EMPTY_HEADER; STACK_FIELDS];
    let mut heap = Vec::new();
    let slots = if max_fields <= STACK_FIELDS {
        &mut stack[..max_fields]
    } else {
        heap.resize(max_fields, httparse::EMPTY_HEADER);
        &mut heap[..]
    };
    let mut resp = httparse::Response::new(slots);
    let Some(len) = head_len(resp.parse(buf), buf, max_len)? else {
        return Ok(None);
    };
    // Three digits, from 100 (as hyper and Envoy accept).
    let (Some(version), Some(status @ 100..)) = (resp.version, resp.code) else {
        return Err(CODEC_ERROR);
    };
    let reason = resp.reason.unwrap_or("");
    let mut fields = Fields::default();
    let mut framed = Framed::default();
    fields.list.reserve(resp.headers.len());
    for h in resp.headers.iter() {
        let value = h.value.trim_ascii();
        match known(h.name.as_bytes()) {
            Known::Connection => {
                connection(&mut fields, buf, value);
            }
            Known::ContentLength => framed.content_length(value),
            Known::TransferEncoding => framed.transfer_encoding(value),
            _ => {}
        }
        fields.list.push(Field {
            name: range(buf, h.name.as_bytes()),
            value: range(buf, value),
        });
    }
    let bodiless = (100..200).contains(&status)
        || status == 204
        || status == 304
        || head_request
        || (connect && (200..300).contains(&status));
    let body = if bodiless {
        Framing::None
    } else if framed.transfer_encoding {
        fields.length_and_chunked = framed.length.is_some() || framed.bad_length;
        if framed.chunked_last {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if framed.bad_length {
        return Err(CODEC_ERROR);
    } else {
        match framed.length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let persistent = if version == 0 {
        fields.keep_alive && !fields.close
    } else {
        !fields.close
    };
    Ok(Some(ResponseHead {
        len,
        status,
        reason: range(buf, reason.as_bytes()),
        fields,
        body,
        reusable: persistent && body != Framing::UntilClose,
    }))
}

/// Whether a field stays in the message forwarded to the other side.
fn forwarded(fields: &Fields, buf: &[u8], field: &Field, keep_upgrade: bool) -> bool {
    let name = &buf[field.name.clone()];
    match known(name) {
        Known::Connection | Known::HopByHop => false,
        Known::Te => buf[field.value.clone()].eq_ignore_ascii_case(b"trailers"),
        Known::Upgrade => keep_upgrade,
        // Framing is never hop-by-hop, whatever `Connection` lists: dropping it would
        // change where the body ends for the next hop.
        Known::ContentLength => !fields.length_and_chunked,
        Known::TransferEncoding => true,
        _ => !fields
            .connection_names
            .iter()
            .any(|n| buf[n.clone()].eq_ignore_ascii_case(name)),
    }
}

fn put_field(out: &mut Vec<u8>, buf: &[u8], f: &Field) {
    out.extend_from_slice(&buf[f.name.clone()]);
    out.extend_from_slice(b": ");
    out.extend_from_slice(&buf[f.value.clone()]);
    out.extend_from_slice(b"\r\n");
}

/// The origin-form of an absolute-form target (`http://a/b?c` → `/b?c`), or `None`
/// when the target is not absolute-form.
fn origin_form(target: &[u8]) -> Option<(&[u8], &[u8])> {
    let scheme_end = target.windows(3).position(|w| w == b"://")?;
    let scheme = &target[..scheme_end];
    if !(scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")) {
        return None;
    }
    let rest = &target[scheme_end + 3..];
    let path_at = rest
        .iter()
        .position(|b| *b == b'/' || *b == b'?')
        .unwrap_or(rest.len());
    Some((&rest[..path_at], &rest[path_at..]))
}

/// The request target as the access log prints it (`%REQ(:PATH)%`): origin-form,
/// the authority for `CONNECT`.
pub fn logged_path(buf: &[u8], head: &RequestHead) -> String {
    let target = &buf[head.target.clone()];
    match origin_form(target) {
        Some((_, path)) if !path.starts_with(b"/") => {
            format!("/{}", String::from_utf8_lossy(path))
        }
        Some((_, path)) => String::from_utf8_lossy(path).into_owned(),
        None => String::from_utf8_lossy(target).into_owned(),
    }
}

/// The authority of an absolute-form target, else of the `Host` field.
pub fn authority(buf: &[u8], head: &RequestHead) -> Option<Range<usize>> {
    let target = &buf[head.target.clone()];
    match origin_form(target) {
        Some((authority, _)) if !authority.is_empty() => Some(range(buf, authority)),
        _ if head.upgrade && &buf[head.method.clone()] == b"CONNECT" => Some(head.target.clone()),
        _ => head.host.map(|i| head.fields.list[i].value.clone()),
    }
}

/// Writes the request head forwarded upstream: origin-form target, hop-by-hop fields
/// dropped (`Upgrade` kept for an upgrade), `Expect: 100-continue` dropped (the proxy
/// answers it), and `x-request-id: {request_id}` added when given.
pub fn write_request(out: &mut Vec<u8>, buf: &[u8], head: &RequestHead, request_id: Option<&[u8]>) {
    let target = &buf[head.target.clone()];
    out.extend_from_slice(&buf[head.method.clone()]);
    out.push(b' ');
    let mut add_host = None;
    match origin_form(target) {
        Some((authority, path)) => {
            if !path.starts_with(b"/") {
                out.push(b'/');
            }
            out.extend_from_slice(path);
            if head.host.is_none() && !authority.is_empty() {
                add_host = Some(authority);
            }
        }
        None => out.extend_from_slice(target),
    }
    out.extend_from_slice(if head.http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for (i, f) in head.fields.list.iter().enumerate() {
        let drop = (head.expect_continue && known(&buf[f.name.clone()]) == Known::Expect)
            || (request_id.is_some() && known(&buf[f.name.clone()]) == Known::RequestId)
            || !forwarded(&head.fields, buf, f, head.upgrade);
        if !drop || head.request_id == Some(i) {
            put_field(out, buf, f);
        }
    }
    if let Some(authority) = add_host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(authority);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(id) = request_id {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(id);
        out.extend_from_slice(b"\r\n");
    }
    if head.upgrade && &buf[head.method.clone()] != b"CONNECT" {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What the `Connection` field of a response sent downstream says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// Nothing: HTTP/1.1 keeps the connection.
    Default,
    /// `connection: keep-alive`, for an HTTP/1.0 client that asked for it.
    KeepAlive,
    /// `connection: close`: the proxy closes after this response.
    Close,
    /// `connection: upgrade`: the connection becomes a tunnel.
    Upgrade,
}

/// Writes the response head sent downstream: an `HTTP/1.1` status line, hop-by-hop
/// fields dropped, `x-envoy-upstream-service-time` and the `Connection` field added.
/// `dechunk`: the body goes out decoded, delimited by the close (for an HTTP/1.0
/// client), so `Transfer-Encoding` is dropped too.
pub fn write_response(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    service_time_ms: u64,
    persist: Persist,
    dechunk: bool,
) {
    let mut code = itoa::Buffer::new();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(code.format(head.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(&buf[head.reason.clone()]);
    out.extend_from_slice(b"\r\n");
    for f in &head.fields.list {
        if dechunk && known(&buf[f.name.clone()]) == Known::TransferEncoding {
            continue;
        }
        if forwarded(&head.fields, buf, f, persist == Persist::Upgrade) {
            put_field(out, buf, f);
        }
    }
    out.extend_from_slice(b"x-envoy-upstream-service-time: ");
    out.extend_from_slice(itoa::Buffer::new().format(service_time_ms).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(match persist {
        Persist::Default => b"",
        Persist::KeepAlive => b"connection: keep-alive\r\n",
        Persist::Close => b"connection: close\r\n",
        Persist::Upgrade => b"connection: upgrade\r\n",
    });
    out.extend_from_slice(b"\r\n");
}

/// Writes a response the proxy makes itself (a `text/plain` body).
pub fn write_local(out: &mut Vec<u8>, status: u16, body: &[u8], persist: Persist) {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !body.is_empty() {
        out.extend_from_slice(b"content-type: text/plain\r\n");
    }
    out.extend_from_slice(match persist {
        Persist::Default | Persist::Upgrade => b"",
        Persist::KeepAlive => b"connection: keep-alive\r\n",
        Persist::Close => b"connection: close\r\n",
    });
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Longest chunk-size line (extensions included) or trailer section accepted.
const MAX_CHUNK_META: usize = 16 * 1024;

/// Where a chunked body is: tracks chunk boundaries so the bytes can be relayed as
/// they are while the proxy knows the payload size and where the message ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunked {
    state: ChunkState,
    /// Bytes of the current size line or of the trailer section so far.
    meta: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// At the start of a size line.
    SizeStart,
    /// In the hex digits.
    Size(u64),
    /// After the digits: whitespace or an extension, up to CR.
    SizeRest(u64),
    /// After the size line's CR.
    SizeLf(u64),
    /// In the data, with this many bytes left.
    Data(u64),
    /// Expecting the CR after data.
    DataCr,
    /// Expecting the LF after data.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// In a trailer line.
    Trailer,
    /// After a trailer line's CR.
    TrailerLf,
    /// After the final CR.
    EndLf,
    /// The message is complete.
    Done,
}

/// What one call of [`Chunked::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input that belong to this body (all, unless it ended).
    pub used: usize,
    /// Payload bytes among them.
    pub payload: u64,
    /// The body ended with them.
    pub done: bool,
}

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError;

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunked {
    /// At the start of a chunked body.
    pub fn new() -> Self {
        Chunked {
            state: ChunkState::SizeStart,
            meta: 0,
        }
    }

    /// Whether the whole body was seen.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Reads `input` up to the end of the body.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, ChunkError> {
        self.feed_with(input, |_| {})
    }

    /// Reads `input` up to the end of the body, handing each run of payload bytes to
    /// `data` (to decode the body rather than relay it as it is).
    pub fn feed_with(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<Fed, ChunkError> {
        use ChunkState::*;
        let mut at = 0;
        let mut payload = 0;
        while at < input.len() && self.state != Done {
            if let Data(left) = self.state {
                let take = left.min((input.len() - at) as u64);
                data(&input[at..at + take as usize]);
                at += take as usize;
                payload += take;
                self.state = if take == left {
                    DataCr
                } else {
                    Data(left - take)
                };
                continue;
            }
            let b = input[at];
            at += 1;
            // Every byte outside chunk data counts against the size-line/trailer limit.
            self.meta += 1;
            if self.meta > MAX_CHUNK_META {
                return Err(ChunkError);
            }
            self.state = match (self.state, b) {
                (SizeStart, _) => Size(u64::from(hex(b).ok_or(ChunkError)?)),
                (Size(n), _) if hex(b).is_some() => {
                    let d = u64::from(hex(b).unwrap_or(0));
                    Size(n.checked_mul(16).ok_or(ChunkError)? | d)
                }
                (Size(n) | SizeRest(n), b'\r') => SizeLf(n),
                (Size(n) | SizeRest(n), b' ' | b'\t' | b';') => SizeRest(n),
                (SizeRest(n), _) if b != b'\n' => SizeRest(n),
                (SizeLf(0), b'\n') => TrailerStart,
                (SizeLf(n), b'\n') => {
                    self.meta = 0;
                    Data(n)
                }
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => SizeStart,
                (TrailerStart, b'\r') => EndLf,
                (Trailer, b'\r') => TrailerLf,
                (TrailerStart | Trailer, b'\n') => return Err(ChunkError),
                (TrailerStart | Trailer, _) => Trailer,
                (TrailerLf, b'\n') => TrailerStart,
                (EndLf, b'\n') => Done,
                _ => return Err(ChunkError),
            };
        }
        Ok(Fed {
            used: at,
            payload,
            done: self.state == Done,
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
