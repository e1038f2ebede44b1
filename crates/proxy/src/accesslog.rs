//! Access log: one line per HTTP request or per TCP connection, in Istio's default
//! `TEXT` format field by field (spec §3.5), or as JSON lines.
//!
//! [`AccessLogEntry`] is plain data and its rendering is pure (the start time is a
//! field, never read from a clock here). [`AccessLog`] is the sink: lines collect in
//! a buffer that is written out every flush interval, like Envoy's
//! `--file-flush-interval-msec`, or at once when the interval is zero.

use std::borrow::Cow;
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use jiff::Timestamp;
use jiff::tz::Offset;

use crate::config::AccessLogFormat;
use crate::route::ResponseFlags;

/// Request-line fields, present only for HTTP entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFields {
    /// `%REQ(:METHOD)%`.
    pub method: Cow<'static, str>,
    /// `%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`, including the query.
    pub path: String,
    /// `%PROTOCOL%`: `HTTP/1.1`, `HTTP/1.0` or `HTTP/2`.
    pub protocol: &'static str,
    /// `%REQ(X-FORWARDED-FOR)%`.
    pub x_forwarded_for: Option<HeaderValue>,
    /// `%REQ(USER-AGENT)%`.
    pub user_agent: Option<HeaderValue>,
    /// `%REQ(X-REQUEST-ID)%`.
    pub request_id: Option<HeaderValue>,
    /// `%REQ(:AUTHORITY)%`.
    pub authority: Option<HeaderValue>,
    /// `%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%` in ms.
    pub upstream_service_time_ms: Option<u64>,
}

/// One access-log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// `%START_TIME%`: request start (HTTP) or connection start (TCP).
    pub start_time: SystemTime,
    /// HTTP fields; `None` renders a TCP line.
    pub http: Option<HttpFields>,
    /// `%RESPONSE_CODE%`; 0 when no response was sent (and always for TCP).
    pub response_code: u16,
    /// `%RESPONSE_FLAGS%`.
    pub flags: ResponseFlags,
    /// `%RESPONSE_CODE_DETAILS%`.
    pub details: Option<Cow<'static, str>>,
    /// `%CONNECTION_TERMINATION_DETAILS%`.
    pub termination_details: Option<String>,
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    pub transport_failure: Option<String>,
    /// `%BYTES_RECEIVED%`.
    pub bytes_received: u64,
    /// `%BYTES_SENT%`.
    pub bytes_sent: u64,
    /// `%DURATION%` in ms.
    pub duration_ms: u64,
    /// `%UPSTREAM_HOST%`.
    pub upstream_host: Option<SocketAddr>,
    /// `%UPSTREAM_CLUSTER_RAW%`.
    pub upstream_cluster: Option<Arc<str>>,
    /// `%UPSTREAM_LOCAL_ADDRESS%`.
    pub upstream_local: Option<SocketAddr>,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`: the original destination.
    pub downstream_local: SocketAddr,
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`.
    pub downstream_remote: SocketAddr,
    /// `%REQUESTED_SERVER_NAME%`.
    pub sni: Option<String>,
    /// `%ROUTE_NAME%`.
    pub route_name: Option<&'static str>,
}

/// A request header's value as the log prints it: visible ASCII, else unset. Header
/// values are kept as they arrived (a reference-counted slice of the request), not
/// copied into strings, until the line is written.
fn header_text(v: &HeaderValue) -> Option<&str> {
    v.to_str().ok()
}

/// `-` for an unset or empty value, as Envoy prints it.
fn dash(v: Option<&str>) -> &str {
    match v {
        Some(s) if !s.is_empty() => s,
        _ => "-",
    }
}

/// Formats a time as UTC ISO-8601 with milliseconds and `Z`, e.g. `2025-03-04T10:15:22.481Z`.
pub fn format_start_time(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(24);
    LineWriter(&mut out).time(t, &mut TextCache::default());
    String::from_utf8_lossy(&out).into_owned()
}

/// Text that consecutive lines share: the start time up to its seconds
/// (`2025-03-04T10:15:22.`) and recently written IPv4 socket addresses. A proxy's lines
/// repeat the same few addresses (its listener, the upstream, each keep-alive
/// client), so most are copied instead of formatted.
#[derive(Debug, Default)]
pub struct TextCache {
    secs: Option<u64>,
    text: Vec<u8>,
    addrs: Vec<Option<(SocketAddrV4, AddrText)>>,
}

/// `255.255.255.255:65535` at most: 21 bytes.
#[derive(Debug, Clone, Copy)]
struct AddrText {
    len: u8,
    bytes: [u8; 21],
}

/// Slots of the address cache (direct-mapped; 8 KB): room for a few hundred
/// keep-alive clients and upstream connections before they evict each other.
const ADDR_SLOTS: usize = 256;

/// Appends access-log tokens to a byte buffer.
struct LineWriter<'a>(&'a mut Vec<u8>);

impl LineWriter<'_> {
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// A value, or `-` when unset or empty.
    fn text(&mut self, v: Option<&str>) {
        self.raw(dash(v));
    }

    fn num(&mut self, n: u64) {
        self.raw(itoa::Buffer::new().format(n));
    }

    /// An IPv4 octet in decimal, without a general-purpose integer formatter.
    fn octet(&mut self, n: u8) {
        let (h, t, o) = (n / 100, n / 10 % 10, n % 10);
        if h > 0 {
            self.0.extend_from_slice(&[b'0' + h, b'0' + t, b'0' + o]);
        } else if t > 0 {
            self.0.extend_from_slice(&[b'0' + t, b'0' + o]);
        } else {
            self.0.push(b'0' + o);
        }
    }

    /// `n` with leading zeros to `width` digits.
    fn padded(&mut self, n: u64, width: usize) {
        let mut buf = itoa::Buffer::new();
        let digits = buf.format(n);
        for _ in digits.len()..width {
            self.0.push(b'0');
        }
        self.raw(digits);
    }

    fn flags(&mut self, flags: ResponseFlags) {
        if flags.is_empty() {
            self.raw("-");
        } else {
            // Rare: a failed request. Writing into a Vec cannot fail.
            let _ = write!(self.0, "{flags}");
        }
    }

    fn addr(&mut self, addr: Option<SocketAddr>, cache: &mut TextCache) {
        match addr {
            None => self.raw("-"),
            Some(SocketAddr::V4(a)) => {
                if cache.addrs.is_empty() {
                    cache.addrs = vec![None; ADDR_SLOTS];
                }
                let key = u32::from(*a.ip()) ^ u32::from(a.port()).rotate_left(16);
                let slot = &mut cache.addrs[(key.wrapping_mul(0x9e37_79b9) >> 24) as usize];
                match slot {
                    Some((cached, text)) if *cached == a => {
                        self.0
                            .extend_from_slice(&text.bytes[..usize::from(text.len)]);
                    }
                    _ => {
                        let start = self.0.len();
                        self.addr_v4(a);
                        let written = &self.0[start..];
                        let mut text = AddrText {
                            len: written.len() as u8,
                            bytes: [0; 21],
                        };
                        text.bytes[..written.len()].copy_from_slice(written);
                        *slot = Some((a, text));
                    }
                }
            }
            // Writing into a Vec cannot fail.
            Some(a) => {
                let _ = write!(self.0, "{a}");
            }
        }
    }

    fn addr_v4(&mut self, a: SocketAddrV4) {
        for (i, octet) in a.ip().octets().into_iter().enumerate() {
            if i > 0 {
                self.0.push(b'.');
            }
            self.octet(octet);
        }
        self.0.push(b':');
        self.num(u64::from(a.port()));
    }

    /// UTC ISO-8601 with milliseconds and `Z`; `cache` keeps the text up to the
    /// seconds, which lines written in the same second share.
    fn time(&mut self, t: SystemTime, cache: &mut TextCache) {
        // Times before 1970 cannot occur for a live connection; clamp rather than fail.
        let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = since.as_secs();
        if cache.secs != Some(secs) {
            let mut text = Vec::with_capacity(20);
            let mut w = LineWriter(&mut text);
            let at = i64::try_from(secs)
                .ok()
                .and_then(|s| Timestamp::from_second(s).ok())
                .unwrap_or(Timestamp::MAX);
            let dt = Offset::UTC.to_datetime(at);
            let part = |v: i8| v.unsigned_abs().into();
            w.padded(dt.year().unsigned_abs().into(), 4);
            w.0.push(b'-');
            w.padded(part(dt.month()), 2);
            w.0.push(b'-');
            w.padded(part(dt.day()), 2);
            w.0.push(b'T');
            w.padded(part(dt.hour()), 2);
            w.0.push(b':');
            w.padded(part(dt.minute()), 2);
            w.0.push(b':');
            w.padded(part(dt.second()), 2);
            w.0.push(b'.');
            cache.secs = Some(secs);
            cache.text = text;
        }
        self.0.extend_from_slice(&cache.text);
        self.padded(u64::from(since.subsec_millis()), 3);
        self.0.push(b'Z');
    }
}

impl AccessLogEntry {
    /// Renders Istio's default TEXT format (`EnvoyTextLogFormat`), with the trailing newline.
    pub fn render_text(&self) -> String {
        let mut out = Vec::with_capacity(320);
        self.write_text(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Appends the TEXT line to `out`. Written byte by byte rather than through
    /// `format!`: this runs once per request, and generic formatting of four socket
    /// addresses and a timestamp used to cost more than parsing the request.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        self.write_text_with(out, &mut TextCache::default());
    }

    /// [`Self::write_text`] reusing text of earlier lines: the start time's up to its
    /// seconds, and socket addresses.
    pub fn write_text_with(&self, out: &mut Vec<u8>, cache: &mut TextCache) {
        let h = self.http.as_ref();
        let (method, path, protocol) = match h {
            Some(h) => (&*h.method, h.path.as_str(), h.protocol),
            None => ("-", "-", "-"),
        };
        let mut w = LineWriter(out);
        w.raw("[");
        w.time(self.start_time, cache);
        w.raw("] \"");
        w.text(Some(method));
        w.raw(" ");
        w.text(Some(path));
        w.raw(" ");
        w.text(Some(protocol));
        w.raw("\" ");
        w.num(u64::from(self.response_code));
        w.raw(" ");
        w.flags(self.flags);
        w.raw(" ");
        w.text(self.details.as_deref());
        w.raw(" ");
        w.text(self.termination_details.as_deref());
        w.raw(" \"");
        w.text(self.transport_failure.as_deref());
        w.raw("\" ");
        w.num(self.bytes_received);
        w.raw(" ");
        w.num(self.bytes_sent);
        w.raw(" ");
        w.num(self.duration_ms);
        w.raw(" ");
        match h.and_then(|h| h.upstream_service_time_ms) {
            Some(ms) => w.num(ms),
            None => w.raw("-"),
        }
        w.raw(" \"");
        w.text(h.and_then(|h| h.x_forwarded_for.as_ref().and_then(header_text)));
        w.raw("\" \"");
        w.text(h.and_then(|h| h.user_agent.as_ref().and_then(header_text)));
        w.raw("\" \"");
        w.text(h.and_then(|h| h.request_id.as_ref().and_then(header_text)));
        w.raw("\" \"");
        w.text(h.and_then(|h| h.authority.as_ref().and_then(header_text)));
        w.raw("\" \"");
        w.addr(self.upstream_host, cache);
        w.raw("\" ");
        w.text(self.upstream_cluster.as_deref());
        w.raw(" ");
        w.addr(self.upstream_local, cache);
        w.raw(" ");
        w.addr(Some(self.downstream_local), cache);
        w.raw(" ");
        w.addr(Some(self.downstream_remote), cache);
        w.raw(" ");
        w.text(self.sni.as_deref());
        w.raw(" ");
        w.text(self.route_name);
        w.raw("\n");
    }

    /// Renders one JSON object (Istio's JSON access-log field names) plus newline.
    /// Unset values are `null`, as Envoy prints them.
    pub fn render_json(&self) -> String {
        use serde_json::{Map, Value};
        let h = self.http.as_ref();
        let s = |v: Option<&str>| match v {
            Some(v) if !v.is_empty() => Value::String(v.to_string()),
            _ => Value::Null,
        };
        let a = |v: Option<SocketAddr>| v.map_or(Value::Null, |a| Value::String(a.to_string()));
        let mut m = Map::new();
        m.insert(
            "start_time".into(),
            format_start_time(self.start_time).into(),
        );
        m.insert("method".into(), s(h.map(|h| &*h.method)));
        m.insert("path".into(), s(h.map(|h| h.path.as_str())));
        m.insert("protocol".into(), s(h.map(|h| h.protocol)));
        m.insert("response_code".into(), self.response_code.into());
        m.insert(
            "response_flags".into(),
            if self.flags.is_empty() {
                Value::Null
            } else {
                self.flags.to_string().into()
            },
        );
        m.insert("response_code_details".into(), s(self.details.as_deref()));
        m.insert(
            "connection_termination_details".into(),
            s(self.termination_details.as_deref()),
        );
        m.insert(
            "upstream_transport_failure_reason".into(),
            s(self.transport_failure.as_deref()),
        );
        m.insert("bytes_received".into(), self.bytes_received.into());
        m.insert("bytes_sent".into(), self.bytes_sent.into());
        m.insert("duration".into(), self.duration_ms.into());
        m.insert(
            "upstream_service_time".into(),
            h.and_then(|h| h.upstream_service_time_ms)
                .map_or(Value::Null, |v| v.to_string().into()),
        );
        m.insert(
            "x_forwarded_for".into(),
            s(h.and_then(|h| h.x_forwarded_for.as_ref().and_then(header_text))),
        );
        m.insert(
            "user_agent".into(),
            s(h.and_then(|h| h.user_agent.as_ref().and_then(header_text))),
        );
        m.insert(
            "request_id".into(),
            s(h.and_then(|h| h.request_id.as_ref().and_then(header_text))),
        );
        m.insert(
            "authority".into(),
            s(h.and_then(|h| h.authority.as_ref().and_then(header_text))),
        );
        m.insert("upstream_host".into(), a(self.upstream_host));
        m.insert(
            "upstream_cluster".into(),
            s(self.upstream_cluster.as_deref()),
        );
        m.insert("upstream_local_address".into(), a(self.upstream_local));
        m.insert(
            "downstream_local_address".into(),
            self.downstream_local.to_string().into(),
        );
        m.insert(
            "downstream_remote_address".into(),
            self.downstream_remote.to_string().into(),
        );
        m.insert("requested_server_name".into(), s(self.sni.as_deref()));
        m.insert("route_name".into(), s(self.route_name));
        let mut line = Value::Object(m).to_string();
        line.push('\n');
        line
    }
}

struct Inner {
    second: TextCache,
    buf: Vec<u8>,
    out: Box<dyn Write + Send>,
}

/// Buffered lines are written out once they reach this size, before the flush interval
/// ends (Envoy's file access log does the same at 64 KiB): under load a flush stays one
/// short write instead of a second's worth of lines that stalls every connection.
const FLUSH_SIZE: usize = 64 * 1024;

/// The access-log sink shared by all connections.
#[derive(Clone)]
pub struct AccessLog {
    format: AccessLogFormat,
    flush_each_line: bool,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// Lines captured by an in-memory access log (see [`AccessLog::memory`]).
#[derive(Clone, Debug, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    /// All lines written so far.
    pub fn lines(&self) -> Vec<String> {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AccessLog {
    /// A log writing to `out`, buffered for `flush_interval` (zero: write every line).
    pub fn new(
        format: AccessLogFormat,
        flush_interval: Duration,
        out: Box<dyn Write + Send>,
    ) -> Self {
        AccessLog {
            format,
            flush_each_line: flush_interval.is_zero(),
            inner: Arc::new(Mutex::new(Inner {
                buf: Vec::with_capacity(1024),
                second: TextCache::default(),
                out,
            })),
        }
    }

    /// A log writing to the process's stdout.
    pub fn stdout(format: AccessLogFormat, flush_interval: Duration) -> Self {
        Self::new(format, flush_interval, Box::new(std::io::stdout()))
    }

    /// A log kept in memory, for tests; every line is written at once.
    pub fn memory(format: AccessLogFormat) -> (Self, CapturedLog) {
        let captured = CapturedLog::default();
        let log = Self::new(
            format,
            Duration::ZERO,
            Box::new(CaptureWriter(captured.0.clone())),
        );
        (log, captured)
    }

    /// Records one entry.
    pub fn record(&self, entry: &AccessLogEntry) {
        if self.format == AccessLogFormat::Off {
            return;
        }
        // A poisoned lock only means another thread panicked mid-write; the buffer is
        // still a valid byte vector, so keep logging.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match self.format {
            AccessLogFormat::Off => {}
            AccessLogFormat::Text => {
                let Inner { buf, second, .. } = &mut *inner;
                entry.write_text_with(buf, second);
            }
            AccessLogFormat::Json => inner.buf.extend_from_slice(entry.render_json().as_bytes()),
        }
        if self.flush_each_line || inner.buf.len() >= FLUSH_SIZE {
            Self::write_out(&mut inner);
        }
    }

    /// Writes buffered lines out now.
    pub fn flush(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Self::write_out(&mut inner);
    }

    fn write_out(inner: &mut Inner) {
        if inner.buf.is_empty() {
            return;
        }
        let Inner { buf, out, .. } = inner;
        // A closed stdout must not take the proxy down: drop the lines and go on.
        if let Err(err) = out.write_all(buf).and_then(|()| out.flush()) {
            tracing::debug!(%err, "access log write failed");
        }
        // Keep room for as much as this flush wrote: under steady load the buffer is
        // not regrown (and copied) every interval; once load drops, it shrinks.
        let written = buf.len();
        buf.clear();
        if buf.capacity() > 64 * 1024 && buf.capacity() > 2 * written {
            buf.shrink_to(written.max(1024));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn start_time_format() {
        assert_eq!(format_start_time(t(0)), "1970-01-01T00:00:00.000Z");
        // 2025-03-04T10:15:22.481Z
        assert_eq!(
            format_start_time(t(1_741_083_322_481)),
            "2025-03-04T10:15:22.481Z"
        );
        // Leap day.
        assert_eq!(
            format_start_time(t(1_709_164_800_000)),
            "2024-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_start_time(t(4_102_444_799_999)),
            "2099-12-31T23:59:59.999Z"
        );
    }

    pub(crate) fn http_entry() -> AccessLogEntry {
        AccessLogEntry {
            start_time: t(1_741_083_322_481),
            http: Some(HttpFields {
                method: "GET".into(),
                path: "/headers".into(),
                protocol: "HTTP/1.1",
                x_forwarded_for: None,
                user_agent: Some(HeaderValue::from_static("curl/8.16.0")),
                request_id: Some(HeaderValue::from_static(
                    "0f6b1c2e-8d7a-4a51-9d0e-3c1f2b7a9e10",
                )),
                authority: Some(HeaderValue::from_static("httpbin:8000")),
                upstream_service_time_ms: Some(5),
            }),
            response_code: 200,
            flags: ResponseFlags::empty(),
            details: Some("via_upstream".into()),
            termination_details: None,
            transport_failure: None,
            bytes_received: 0,
            bytes_sent: 512,
            duration_ms: 6,
            upstream_host: Some("10.244.1.7:8080".parse().unwrap()),
            upstream_cluster: Some("outbound|8000||httpbin.default.svc.cluster.local".into()),
            upstream_local: Some("10.244.2.5:40412".parse().unwrap()),
            downstream_local: "10.96.12.34:8000".parse().unwrap(),
            downstream_remote: "10.244.2.5:53318".parse().unwrap(),
            sni: None,
            route_name: Some("default"),
        }
    }

    #[test]
    fn lines_sharing_a_text_cache_match_lines_written_alone() {
        let mut cache = TextCache::default();
        // Same second twice, the next second, then back (a late line), and octets of
        // every width; then the same again in reverse, so addresses come from the cache.
        let times = [
            1_741_083_322_481,
            1_741_083_322_999,
            1_741_083_323_000,
            1_741_083_322_001,
        ];
        let addrs = [
            "0.9.10.255:0",
            "198.18.0.7:65535",
            "100.1.20.3:80",
            "10.244.2.5:53318",
        ];
        let once = times.into_iter().zip(addrs);
        for (ms, addr) in once.clone().chain(once.rev()) {
            let mut e = http_entry();
            e.start_time = t(ms);
            e.downstream_remote = addr.parse().unwrap();
            let mut shared = Vec::new();
            e.write_text_with(&mut shared, &mut cache);
            assert_eq!(String::from_utf8(shared).unwrap(), e.render_text());
            assert!(e.render_text().contains(&format!(" {addr} ")));
            assert!(
                e.render_text()
                    .starts_with(&format!("[{}]", format_start_time(t(ms))))
            );
        }
    }

    #[test]
    fn http_line_matches_istio_example_exactly() {
        assert_eq!(
            http_entry().render_text(),
            "[2025-03-04T10:15:22.481Z] \"GET /headers HTTP/1.1\" 200 - via_upstream - \"-\" 0 512 6 5 \"-\" \"curl/8.16.0\" \"0f6b1c2e-8d7a-4a51-9d0e-3c1f2b7a9e10\" \"httpbin:8000\" \"10.244.1.7:8080\" outbound|8000||httpbin.default.svc.cluster.local 10.244.2.5:40412 10.96.12.34:8000 10.244.2.5:53318 - default\n"
        );
    }

    #[test]
    fn tcp_line_matches_istio_example_exactly() {
        let e = AccessLogEntry {
            start_time: t(1_741_083_601_007),
            http: None,
            response_code: 0,
            flags: ResponseFlags::empty(),
            details: None,
            termination_details: None,
            transport_failure: None,
            bytes_received: 921,
            bytes_sent: 5410,
            duration_ms: 141,
            upstream_host: Some("93.184.215.14:443".parse().unwrap()),
            upstream_cluster: Some("PassthroughCluster".into()),
            upstream_local: Some("10.244.2.5:38810".parse().unwrap()),
            downstream_local: "93.184.215.14:443".parse().unwrap(),
            downstream_remote: "10.244.2.5:38802".parse().unwrap(),
            sni: Some("example.com".into()),
            route_name: None,
        };
        assert_eq!(
            e.render_text(),
            "[2025-03-04T10:20:01.007Z] \"- - -\" 0 - - - \"-\" 921 5410 141 - \"-\" \"-\" \"-\" \"-\" \"93.184.215.14:443\" PassthroughCluster 10.244.2.5:38810 93.184.215.14:443 10.244.2.5:38802 example.com -\n"
        );
    }

    #[test]
    fn json_line_has_istio_keys_and_nulls() {
        let v: serde_json::Value = serde_json::from_str(&http_entry().render_json()).unwrap();
        assert_eq!(v["method"], "GET");
        assert_eq!(v["response_code"], 200);
        assert_eq!(v["response_flags"], serde_json::Value::Null);
        assert_eq!(
            v["upstream_cluster"],
            "outbound|8000||httpbin.default.svc.cluster.local"
        );
        assert_eq!(v["upstream_service_time"], "5");
        assert_eq!(v["x_forwarded_for"], serde_json::Value::Null);
        assert_eq!(v["start_time"], "2025-03-04T10:15:22.481Z");
        assert_eq!(v.as_object().unwrap().len(), 24);
    }

    #[test]
    fn buffered_log_writes_on_flush_only() {
        let captured = CapturedLog::default();
        let log = AccessLog::new(
            AccessLogFormat::Text,
            Duration::from_secs(1),
            Box::new(CaptureWriter(captured.0.clone())),
        );
        log.record(&http_entry());
        assert!(captured.lines().is_empty());
        log.flush();
        assert_eq!(captured.lines().len(), 1);
        // A full buffer goes out before the interval ends, whole lines only.
        let line = http_entry().render_text().len();
        let mut recorded = 1;
        while (recorded - 1) * line < FLUSH_SIZE {
            log.record(&http_entry());
            recorded += 1;
        }
        assert_eq!(captured.lines().len(), recorded);
        log.record(&http_entry());
        assert_eq!(captured.lines().len(), recorded);
        let (off, cap) = AccessLog::memory(AccessLogFormat::Off);
        off.record(&http_entry());
        assert!(cap.lines().is_empty());
    }
}
