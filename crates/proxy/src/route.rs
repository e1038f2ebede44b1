//! Pure decisions: what to do with a captured connection, which protocol its first
//! bytes show, which cluster and route name it is logged under, and which local reply
//! and response flags an upstream failure turns into.
//!
//! Nothing here performs I/O or reads a clock; the listeners call these functions and
//! then carry out the answer ("decide, then do"). Every function has table tests.

use std::fmt;
use std::net::SocketAddr;

use crate::config::{DeclaredProtocol, Direction, OutboundPolicy, ProxyConfig};

/// Ports of server-first protocols (SMTP, DNS, MySQL, MongoDB) that are never sniffed:
/// the client waits for the server to speak first, so sniffing would only add delay.
pub const SERVER_FIRST_PORTS: [u16; 4] = [25, 53, 3306, 27017];

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/1 method tokens recognised by detection, each followed by a space.
const H1_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// The upstream cluster a connection or request is attributed to (`%UPSTREAM_CLUSTER_RAW%`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cluster {
    /// `outbound|<port>||<fqdn>`: a known Service.
    Outbound {
        /// Service port.
        port: u16,
        /// Service FQDN.
        fqdn: String,
    },
    /// `PassthroughCluster`: unknown outbound destination under `ALLOW_ANY`.
    Passthrough,
    /// `inbound|<port>||`: a port the pod declares.
    Inbound {
        /// Declared container port.
        port: u16,
    },
    /// `InboundPassthroughCluster`: an inbound port the pod does not declare.
    InboundPassthrough,
    /// `BlackHoleCluster`: unknown outbound destination under `REGISTRY_ONLY`.
    BlackHole,
}

impl fmt::Display for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cluster::Outbound { port, fqdn } => write!(f, "outbound|{port}||{fqdn}"),
            Cluster::Passthrough => f.write_str("PassthroughCluster"),
            Cluster::Inbound { port } => write!(f, "inbound|{port}||"),
            Cluster::InboundPassthrough => f.write_str("InboundPassthroughCluster"),
            Cluster::BlackHole => f.write_str("BlackHoleCluster"),
        }
    }
}

impl Cluster {
    /// The HTTP route name Istio gives requests to this cluster (`%ROUTE_NAME%`).
    pub fn route_name(&self) -> &'static str {
        match self {
            Cluster::Outbound { .. } | Cluster::Inbound { .. } | Cluster::InboundPassthrough => {
                "default"
            }
            Cluster::Passthrough => "allow_any",
            Cluster::BlackHole => "block_all",
        }
    }

    /// The `destination_service` metric label: the FQDN when known, else the address.
    pub fn destination_service(&self, dst: SocketAddr) -> String {
        match self {
            Cluster::Outbound { fqdn, .. } => fqdn.clone(),
            _ => dst.to_string(),
        }
    }
}

/// How the first bytes of a connection are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// Peek at the first bytes and decide between HTTP/1, HTTP/2 and TCP.
    Sniff,
    /// Connect upstream at once and relay bytes (server-first or declared TCP).
    Tcp,
}

/// Why a connection is closed without proxying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client connected to the capture listener itself (Istio's `*-blackhole` chain).
    ListenerLoop,
}

/// What to do with a newly accepted captured connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionPlan {
    /// Close the connection at once.
    Close(CloseReason),
    /// Proxy it to the original destination.
    Proxy {
        /// Cluster the traffic is attributed to.
        cluster: Cluster,
        /// Whether to sniff the protocol.
        detection: Detection,
    },
}

/// Decides what to do with a connection accepted on `direction`'s listener bound to
/// `listener`, whose original destination is `orig_dst`.
pub fn plan_connection(
    config: &ProxyConfig,
    direction: Direction,
    listener: SocketAddr,
    orig_dst: SocketAddr,
) -> ConnectionPlan {
    // A connection whose original destination is the capture port itself was not
    // redirected: someone dialled the listener directly. Proxying it would connect
    // back to ourselves forever, so Istio drops it, and so do we.
    if orig_dst.port() == listener.port() {
        return ConnectionPlan::Close(CloseReason::ListenerLoop);
    }
    let port = orig_dst.port();
    let mut declared = None;
    let cluster = match direction {
        Direction::Outbound => match config.services.get(&orig_dst) {
            Some(svc) => {
                declared = svc.protocol;
                Cluster::Outbound {
                    port,
                    fqdn: svc.fqdn.clone(),
                }
            }
            None => match config.outbound_policy {
                OutboundPolicy::AllowAny => Cluster::Passthrough,
                OutboundPolicy::RegistryOnly => Cluster::BlackHole,
            },
        },
        Direction::Inbound if config.pod_ports.contains(&port) => Cluster::Inbound { port },
        Direction::Inbound => Cluster::InboundPassthrough,
    };
    let tcp = SERVER_FIRST_PORTS.contains(&port)
        || config.tcp_ports.contains(&port)
        || declared == Some(DeclaredProtocol::Tcp);
    ConnectionPlan::Proxy {
        cluster,
        detection: if tcp {
            Detection::Tcp
        } else {
            Detection::Sniff
        },
    }
}

/// What the first bytes of a connection look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// Not enough bytes to tell yet.
    NeedMore,
    /// HTTP/1.x request line.
    Http1,
    /// HTTP/2 prior-knowledge preface (h2c).
    Http2,
    /// TLS record header: relay as TCP, but read the SNI.
    Tls,
    /// Anything else: relay as TCP.
    Opaque,
}

/// Classifies the first bytes of a client connection (spec §3.4).
pub fn sniff(buf: &[u8]) -> Sniffed {
    if buf.is_empty() {
        return Sniffed::NeedMore;
    }
    let h2 = prefix_match(buf, H2_PREFACE);
    if h2 == Match::Full {
        return Sniffed::Http2;
    }
    let mut partial = h2 == Match::Partial;
    for method in H1_METHODS {
        match prefix_match(buf, method) {
            Match::Full => return Sniffed::Http1,
            Match::Partial => partial = true,
            Match::No => {}
        }
    }
    if buf[0] == 0x16 {
        match buf.get(1) {
            None => return Sniffed::NeedMore,
            Some(0x03) => return Sniffed::Tls,
            Some(_) => {}
        }
    }
    if partial {
        Sniffed::NeedMore
    } else {
        Sniffed::Opaque
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Match {
    Full,
    Partial,
    No,
}

/// Whether `buf` starts with `pattern` (Full), is a strict prefix of it (Partial), or neither.
fn prefix_match(buf: &[u8], pattern: &[u8]) -> Match {
    if buf.len() >= pattern.len() {
        if buf.starts_with(pattern) {
            Match::Full
        } else {
            Match::No
        }
    } else if pattern.starts_with(buf) {
        Match::Partial
    } else {
        Match::No
    }
}

/// Result of looking for the server name in a TLS ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// The ClientHello names this server.
    Found(String),
    /// A complete ClientHello without a server name.
    Absent,
    /// The ClientHello is not complete yet.
    NeedMore,
    /// Not a well-formed ClientHello.
    Invalid,
}

/// Extracts the SNI host name from the first TLS record of a connection.
pub fn parse_sni(buf: &[u8]) -> Sni {
    // TLS record header: type(1)=22 handshake, version(2), length(2).
    if buf.len() < 5 {
        return Sni::NeedMore;
    }
    if buf[0] != 0x16 {
        return Sni::Invalid;
    }
    let record_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if buf.len() < 5 + record_len {
        return Sni::NeedMore;
    }
    let mut r = Reader(&buf[5..5 + record_len]);
    parse_client_hello(&mut r).unwrap_or(Sni::Invalid)
}

/// A bounds-checked cursor: every read returns `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

fn parse_client_hello(r: &mut Reader<'_>) -> Option<Sni> {
    if r.u8()? != 1 {
        return Some(Sni::Invalid); // not a ClientHello
    }
    let len = r.u24()?;
    // A ClientHello split over several records is legal but rare; we only read the
    // first record and report no name rather than buffering more.
    let Some(body) = r.take(len) else {
        return Some(Sni::Absent);
    };
    let mut r = Reader(body);
    r.take(2 + 32)?; // client_version, random
    let sid = usize::from(r.u8()?);
    r.take(sid)?;
    let suites = r.u16()?;
    r.take(suites)?;
    let comp = usize::from(r.u8()?);
    r.take(comp)?;
    if r.0.is_empty() {
        return Some(Sni::Absent);
    }
    let ext_len = r.u16()?;
    let mut exts = Reader(r.take(ext_len)?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let len = exts.u16()?;
        let data = exts.take(len)?;
        if ty != 0 {
            continue;
        }
        let mut d = Reader(data);
        let list_len = d.u16()?;
        let mut list = Reader(d.take(list_len)?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name_len = list.u16()?;
            let name = list.take(name_len)?;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?;
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                    return Some(Sni::Invalid);
                }
                return Some(Sni::Found(name.to_ascii_lowercase()));
            }
        }
        return Some(Sni::Absent);
    }
    Some(Sni::Absent)
}

/// Envoy response flags (`%RESPONSE_FLAGS%`), rendered in Envoy's canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResponseFlags(u32);

impl ResponseFlags {
    /// `UH`: no healthy upstream (black-holed TCP).
    pub const NO_HEALTHY_UPSTREAM: Self = Self(1 << 1);
    /// `UT`: upstream request timeout.
    pub const UPSTREAM_REQUEST_TIMEOUT: Self = Self(1 << 2);
    /// `UR`: upstream remote reset.
    pub const UPSTREAM_REMOTE_RESET: Self = Self(1 << 4);
    /// `UF`: upstream connection failure.
    pub const UPSTREAM_CONNECTION_FAILURE: Self = Self(1 << 5);
    /// `UC`: upstream connection termination.
    pub const UPSTREAM_CONNECTION_TERMINATION: Self = Self(1 << 6);
    /// `NR`: no route found.
    pub const NO_ROUTE_FOUND: Self = Self(1 << 8);
    /// `DC`: downstream connection termination.
    pub const DOWNSTREAM_CONNECTION_TERMINATION: Self = Self(1 << 14);
    /// `URX`: upstream retry / connect-attempt limit exceeded.
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: Self = Self(1 << 15);
    /// `DPE`: downstream protocol error.
    pub const DOWNSTREAM_PROTOCOL_ERROR: Self = Self(1 << 18);
    /// `DT`: duration timeout (connection or request exceeded its time limit).
    pub const DURATION_TIMEOUT: Self = Self(1 << 22);
    /// `UPE`: upstream protocol error.
    pub const UPSTREAM_PROTOCOL_ERROR: Self = Self(1 << 23);

    /// Envoy's order and short names (`ResponseFlagUtils`), indexed by bit.
    const NAMES: [(u32, &'static str); 11] = [
        (1 << 1, "UH"),
        (1 << 2, "UT"),
        (1 << 4, "UR"),
        (1 << 5, "UF"),
        (1 << 6, "UC"),
        (1 << 8, "NR"),
        (1 << 14, "DC"),
        (1 << 15, "URX"),
        (1 << 18, "DPE"),
        (1 << 22, "DT"),
        (1 << 23, "UPE"),
    ];

    /// No flag set.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (bit, name) in Self::NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Why the proxy could not get a response from upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The connect failed; `message` is the OS error text (strerror), e.g. `Connection refused`.
    ConnectFailed {
        /// OS error text.
        message: String,
    },
    /// The connect did not finish within the connect timeout.
    ConnectTimeout,
    /// The upstream closed or reset the connection before response headers.
    ResetBeforeHeaders,
    /// Response headers did not arrive within the request timeout.
    ResponseTimeout,
    /// The upstream sent something that is not valid HTTP.
    ProtocolError,
    /// `REGISTRY_ONLY` and the destination is not a known Service.
    NoRoute,
}

/// A response the proxy generates itself, with the access-log fields that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// `%RESPONSE_FLAGS%`.
    pub flags: ResponseFlags,
    /// `%RESPONSE_CODE_DETAILS%` (no spaces).
    pub details: String,
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`, if any (no spaces).
    pub transport_failure: Option<String>,
    /// `text/plain` body.
    pub body: String,
}

/// Envoy turns spaces into `_` in details and failure reasons so a log line stays tokenisable.
fn underscore(s: &str) -> String {
    s.replace(' ', "_")
}

/// Maps an upstream failure to the local reply Envoy would send (spec §3.4).
pub fn local_reply(failure: &UpstreamFailure) -> LocalReply {
    let reset = |reason: &str, failure: Option<String>, flags: ResponseFlags| {
        let body = match &failure {
            Some(f) => format!(
                "upstream connect error or disconnect/reset before headers. reset reason: {reason}, transport failure reason: {f}"
            ),
            None => format!(
                "upstream connect error or disconnect/reset before headers. reset reason: {reason}"
            ),
        };
        let details = match &failure {
            Some(f) => format!(
                "upstream_reset_before_response_started{{{}|{}}}",
                underscore(reason),
                underscore(f)
            ),
            None => format!(
                "upstream_reset_before_response_started{{{}}}",
                underscore(reason)
            ),
        };
        LocalReply {
            status: 503,
            flags,
            details,
            transport_failure: failure.map(|f| underscore(&f)),
            body,
        }
    };
    match failure {
        UpstreamFailure::ConnectFailed { message } => reset(
            "remote connection failure",
            Some(format!("delayed connect error: {message}")),
            ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
        ),
        UpstreamFailure::ConnectTimeout => reset(
            "connection timeout",
            None,
            ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
        ),
        UpstreamFailure::ResetBeforeHeaders => reset(
            "connection termination",
            None,
            ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
        ),
        UpstreamFailure::ProtocolError => LocalReply {
            status: 502,
            flags: ResponseFlags::UPSTREAM_PROTOCOL_ERROR,
            details: "upstream_reset_before_response_started{protocol_error}".into(),
            transport_failure: None,
            body: "upstream connect error or disconnect/reset before headers. reset reason: protocol error".into(),
        },
        UpstreamFailure::ResponseTimeout => LocalReply {
            status: 504,
            flags: ResponseFlags::UPSTREAM_REQUEST_TIMEOUT,
            details: "response_timeout".into(),
            transport_failure: None,
            body: "upstream request timeout".into(),
        },
        UpstreamFailure::NoRoute => LocalReply {
            status: 502,
            flags: ResponseFlags::NO_ROUTE_FOUND,
            details: "direct_response".into(),
            transport_failure: None,
            body: String::new(),
        },
    }
}

/// Access-log fields for a TCP connection whose upstream connect failed.
pub fn tcp_connect_failure(failure: &UpstreamFailure) -> (ResponseFlags, Option<String>) {
    // Envoy's tcp_proxy makes one connect attempt by default; when it fails the
    // attempt budget is exhausted too, hence `UF,URX`.
    let flags =
        ResponseFlags::UPSTREAM_CONNECTION_FAILURE | ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
    let reason = match failure {
        UpstreamFailure::ConnectFailed { message } => {
            Some(underscore(&format!("delayed connect error: {message}")))
        }
        _ => None,
    };
    (flags, reason)
}

#[cfg(test)]
mod tests;
