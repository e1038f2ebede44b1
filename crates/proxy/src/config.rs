//! Proxy configuration: ports, limits, timeouts and the small static knowledge
//! (declared pod ports, known Services) that routing decisions read.
//!
//! Everything here is plain data. The `podrun proxy` subcommand builds a
//! [`ProxyConfig`] from flags and environment variables; tests build one with
//! [`ProxyConfig::for_tests`], which binds every listener to an ephemeral
//! loopback port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::app_probe::AppProbers;

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The outbound capture listener (15001): the app dialled something remote.
    Outbound,
    /// The inbound capture listener (15006): a client dialled this pod.
    Inbound,
}

impl Direction {
    /// Istio's `reporter` label value for metrics recorded on this side.
    pub fn reporter(self) -> &'static str {
        match self {
            Direction::Outbound => "source",
            Direction::Inbound => "destination",
        }
    }
}

/// What to do with outbound traffic to destinations not in the service table
/// (Istio's mesh `outboundTrafficPolicy.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutboundPolicy {
    /// Pass unknown destinations through (`PassthroughCluster`), Istio's default.
    #[default]
    AllowAny,
    /// Refuse unknown destinations (`BlackHoleCluster` for TCP, 502 `block_all` for HTTP).
    RegistryOnly,
}

/// Access log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// Istio's default `TEXT` format, field by field.
    #[default]
    Text,
    /// One JSON object per line with Istio's JSON field names.
    Json,
    /// No access log.
    Off,
}

/// Where each listener binds. Port 0 asks the kernel for an ephemeral port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddrs {
    /// Outbound capture listener (Istio 15001).
    pub outbound: SocketAddr,
    /// Inbound capture listener (Istio 15006).
    pub inbound: SocketAddr,
    /// Health listener serving `GET /healthz/ready` (Istio 15021).
    pub health: SocketAddr,
    /// Agent status listener: readiness, `/quitquitquit`, `/drain`, merged metrics (Istio 15020).
    /// `None` disables it.
    pub status: Option<SocketAddr>,
    /// Prometheus stats listener serving `/stats/prometheus` (Istio 15090).
    pub stats: SocketAddr,
    /// Admin listener (Istio's Envoy admin, 15000); must be loopback.
    pub admin: Option<SocketAddr>,
}

impl Default for ListenAddrs {
    fn default() -> Self {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        ListenAddrs {
            outbound: SocketAddr::new(any, 15001),
            inbound: SocketAddr::new(any, 15006),
            health: SocketAddr::new(any, 15021),
            status: Some(SocketAddr::new(any, 15020)),
            stats: SocketAddr::new(any, 15090),
            admin: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15000)),
        }
    }
}

/// Limits that protect the proxy from bad or slow peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted HTTP/1 request head (request line + headers), in bytes.
    /// Larger heads get `431`. Envoy's default is 60 KiB.
    pub max_request_header_bytes: usize,
    /// Largest number of request headers.
    pub max_request_headers: usize,
    /// How long a client may take to send a complete request head.
    pub header_read_timeout: Duration,
    /// Upstream TCP connect timeout (Istio `connectTimeout`, 10 s).
    pub connect_timeout: Duration,
    /// Time allowed from sending a request upstream to receiving response headers.
    /// `None` = no limit, Istio's default route timeout.
    pub request_timeout: Option<Duration>,
    /// A proxied TCP connection with no bytes in either direction for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Idle upstream HTTP connections are closed after this long.
    pub upstream_idle_timeout: Duration,
    /// Idle upstream HTTP/1 connections kept per destination.
    pub max_idle_per_upstream: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_header_bytes: 60 * 1024,
            max_request_headers: 100,
            header_read_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
            tcp_idle_timeout: Duration::from_secs(3600),
            upstream_idle_timeout: Duration::from_secs(60),
            max_idle_per_upstream: 64,
        }
    }
}

/// Drain and shutdown timings (spec §3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainSettings {
    /// Classic mode: time between SIGTERM and exit (`terminationDrainDuration`, 5 s).
    pub termination_drain_duration: Duration,
    /// `EXIT_ON_ZERO_ACTIVE_CONNECTIONS`: exit once no downstream connection is left.
    pub exit_on_zero_active_connections: bool,
    /// `MINIMUM_DRAIN_DURATION`: always wait this long first (5 s).
    pub minimum_drain_duration: Duration,
    /// How often active connections are counted while waiting for zero (1 s in Istio).
    pub poll_interval: Duration,
    /// How long an inbound HTTP/1.1 connection that was kept alive when the drain began
    /// may stay idle before the proxy closes it (the HTTP connection manager's
    /// `drain_timeout`, 5 s). Until then it is told to close by its next response.
    pub drain_timeout: Duration,
}

impl Default for DrainSettings {
    fn default() -> Self {
        DrainSettings {
            termination_drain_duration: Duration::from_secs(5),
            exit_on_zero_active_connections: false,
            minimum_drain_duration: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Declared protocol of a port, from a Service port name prefix or `appProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredProtocol {
    /// `tcp`, `tls`, `mysql`, `mongo`, `redis`…: never sniff, relay bytes.
    Tcp,
    /// `http`, `http2`, `grpc`…: sniff (the request still tells HTTP/1 from HTTP/2).
    Http,
}

/// A Service known to the proxy (a static stand-in for xDS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownService {
    /// The Service's fully-qualified name, e.g. `httpbin.default.svc.cluster.local`.
    pub fqdn: String,
    /// Declared protocol of the port, if any.
    pub protocol: Option<DeclaredProtocol>,
}

/// Everything the proxy needs to run.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Listener addresses.
    pub listen: ListenAddrs,
    /// Ports the pod's containers declare (`ISTIO_META_POD_PORTS`): inbound traffic to
    /// these gets the cluster `inbound|<port>||`.
    pub pod_ports: BTreeSet<u16>,
    /// Known Services by `ip:port` (ClusterIP or endpoint).
    pub services: BTreeMap<SocketAddr, KnownService>,
    /// Ports treated as TCP without sniffing, on top of the always-TCP server-first ports.
    pub tcp_ports: BTreeSet<u16>,
    /// Outbound policy for unknown destinations.
    pub outbound_policy: OutboundPolicy,
    /// How long to wait for the client's first bytes before falling back to TCP.
    /// `None` waits forever (Istio's `protocolDetectionTimeout: 0s`).
    pub detection_timeout: Option<Duration>,
    /// Source address for inbound deliveries to the app over IPv4 (`127.0.0.6`).
    pub inbound_source_v4: Ipv4Addr,
    /// Source address for inbound deliveries to the app over IPv6 (`::6`).
    pub inbound_source_v6: Ipv6Addr,
    /// `SO_MARK` set on upstream sockets so capture rules can skip them; needs
    /// `CAP_NET_ADMIN`, skipped with a warning without it (UID 1337 still exempts them).
    pub upstream_mark: Option<u32>,
    /// Protection limits.
    pub limits: Limits,
    /// Drain timings.
    pub drain: DrainSettings,
    /// Access log format.
    pub access_log_format: AccessLogFormat,
    /// Access log flush interval; zero flushes every line.
    pub access_log_flush_interval: Duration,
    /// Workload name for metric labels (`POD_NAME`), `unknown` when not set.
    pub workload: String,
    /// App probes and hooks the injector moved onto the status port
    /// (`ISTIO_KUBE_APP_PROBERS`), keyed by `/app-health/…` and `/app-lifecycle/…` path.
    pub app_probers: AppProbers,
    /// Where app probes are sent: the pod IP (`INSTANCE_IP`); `None` sends them to 127.0.0.1.
    pub app_probe_destination: Option<IpAddr>,
    /// Accept HTTP/1.0 requests (`ISTIO_META_HTTP10`). Off, as in Istio: they get
    /// `426 Upgrade Required`.
    pub accept_http10: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: ListenAddrs::default(),
            pod_ports: BTreeSet::new(),
            services: BTreeMap::new(),
            tcp_ports: BTreeSet::new(),
            outbound_policy: OutboundPolicy::AllowAny,
            detection_timeout: Some(Duration::from_millis(100)),
            inbound_source_v4: Ipv4Addr::new(127, 0, 0, 6),
            inbound_source_v6: Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6),
            upstream_mark: Some(1337),
            limits: Limits::default(),
            drain: DrainSettings::default(),
            access_log_format: AccessLogFormat::Text,
            access_log_flush_interval: Duration::from_secs(1),
            workload: "unknown".to_string(),
            app_probers: AppProbers::default(),
            app_probe_destination: None,
            accept_http10: false,
        }
    }
}

impl ProxyConfig {
    /// A configuration whose listeners all bind ephemeral ports on 127.0.0.1, with no
    /// upstream mark and per-line access-log flushing; for in-process tests.
    pub fn for_tests() -> Self {
        let lo = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        ProxyConfig {
            listen: ListenAddrs {
                outbound: lo(0),
                inbound: lo(0),
                health: lo(0),
                status: Some(lo(0)),
                stats: lo(0),
                admin: Some(lo(0)),
            },
            upstream_mark: None,
            access_log_flush_interval: Duration::ZERO,
            ..ProxyConfig::default()
        }
    }
}

/// Error parsing `ISTIO_META_POD_PORTS` or a service entry.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `ISTIO_META_POD_PORTS` is not a JSON array of objects with `containerPort`.
    #[error("invalid ISTIO_META_POD_PORTS: {0}")]
    PodPorts(String),
    /// A `--service` entry is not `IP:PORT=FQDN[/PROTOCOL]`.
    #[error("invalid service entry {entry:?}: expected IP:PORT=FQDN[/tcp|/http]")]
    Service {
        /// The offending entry.
        entry: String,
    },
}

/// Parses `ISTIO_META_POD_PORTS` (a JSON array like `[{"name":"http","containerPort":80}]`).
pub fn parse_pod_ports(json: &str) -> Result<BTreeSet<u16>, ConfigError> {
    let trimmed = json.trim();
    if trimmed.is_empty() {
        return Ok(BTreeSet::new());
    }
    let value: serde_json::Value =
        serde_json::from_str(trimmed).map_err(|e| ConfigError::PodPorts(e.to_string()))?;
    let items = value
        .as_array()
        .ok_or_else(|| ConfigError::PodPorts("not a JSON array".into()))?;
    let mut ports = BTreeSet::new();
    for item in items {
        let port = item
            .get("containerPort")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| ConfigError::PodPorts(format!("entry without containerPort: {item}")))?;
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| ConfigError::PodPorts(format!("containerPort out of range: {port}")))?;
        ports.insert(port);
    }
    Ok(ports)
}

/// Parses a `--service` entry `IP:PORT=FQDN[/tcp|/http]`.
pub fn parse_service(entry: &str) -> Result<(SocketAddr, KnownService), ConfigError> {
    let err = || ConfigError::Service {
        entry: entry.to_string(),
    };
    let (addr, rest) = entry.split_once('=').ok_or_else(err)?;
    let addr: SocketAddr = addr.trim().parse().map_err(|_| err())?;
    let (fqdn, protocol) = match rest.split_once('/') {
        Some((fqdn, "tcp")) => (fqdn, Some(DeclaredProtocol::Tcp)),
        Some((fqdn, "http")) => (fqdn, Some(DeclaredProtocol::Http)),
        Some(_) => return Err(err()),
        None => (rest, None),
    };
    if fqdn.is_empty() || fqdn.contains(char::is_whitespace) {
        return Err(err());
    }
    Ok((
        addr,
        KnownService {
            fqdn: fqdn.to_string(),
            protocol,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ports_parse_istio_rendering() {
        let ports =
            parse_pod_ports("[\n    {\"name\":\"http\",\"containerPort\":80}\n,{\"containerPort\":8080,\"protocol\":\"TCP\"}]")
                .unwrap();
        assert_eq!(ports.into_iter().collect::<Vec<_>>(), vec![80, 8080]);
        assert!(parse_pod_ports("").unwrap().is_empty());
    }

    #[test]
    fn pod_ports_reject_garbage() {
        assert!(parse_pod_ports("{").is_err());
        assert!(parse_pod_ports("{}").is_err());
        assert!(parse_pod_ports("[{\"name\":\"x\"}]").is_err());
        assert!(parse_pod_ports("[{\"containerPort\":70000}]").is_err());
        assert!(parse_pod_ports("[{\"containerPort\":0}]").is_err());
    }

    #[test]
    fn service_entries_parse() {
        let (addr, svc) =
            parse_service("198.18.0.10:8000=httpbin.default.svc.cluster.local").unwrap();
        assert_eq!(addr, "198.18.0.10:8000".parse().unwrap());
        assert_eq!(svc.fqdn, "httpbin.default.svc.cluster.local");
        assert_eq!(svc.protocol, None);
        let (_, svc) = parse_service("198.18.0.11:3306=db.default.svc.cluster.local/tcp").unwrap();
        assert_eq!(svc.protocol, Some(DeclaredProtocol::Tcp));
        for bad in [
            "",
            "1.2.3.4=x",
            "1.2.3.4:80",
            "1.2.3.4:80=",
            "1.2.3.4:80=a/udp",
            "x:80=a",
        ] {
            assert!(parse_service(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
