//! Wiring: bind every listener, run the capture accept loops and the endpoint
//! servers, and carry out the shutdown plan. Each accepted connection is looked up
//! (original destination), decided ([`route::plan_connection`], [`route::sniff`]) and
//! then handed to the HTTP or TCP path.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::accesslog::{AccessLog, AccessLogEntry};
use crate::admin::{self, Endpoint};
use crate::config::{Direction, ProxyConfig};
use crate::drain::{Control, Phase, ShutdownPlan, plan_shutdown};
use crate::http::{self, DownstreamHttp, HttpConn};
use crate::metrics::{Metrics, TcpLabels};
use crate::orig_dst::OrigDst;
use crate::route::{self, Cluster, ConnectionPlan, Detection, ResponseFlags, Sni, Sniffed};
use crate::tcp;
use crate::upstream::{Connector, Pool};

/// State shared by every task of one proxy.
pub struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) pool: Arc<Pool>,
    pub(crate) log: AccessLog,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) control: Arc<Control>,
    orig_dst: Arc<dyn OrigDst>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The addresses the listeners actually bound (ephemeral ports resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundAddrs {
    /// Outbound capture listener.
    pub outbound: SocketAddr,
    /// Inbound capture listener.
    pub inbound: SocketAddr,
    /// Health listener (`/healthz/ready`).
    pub health: SocketAddr,
    /// Agent status listener, if enabled.
    pub status: Option<SocketAddr>,
    /// Prometheus stats listener.
    pub stats: SocketAddr,
    /// Admin listener, if enabled.
    pub admin: Option<SocketAddr>,
}

/// Failure to start the proxy.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        /// Listener role.
        listener: &'static str,
        /// Address asked for.
        addr: SocketAddr,
        /// OS error.
        source: io::Error,
    },
    /// The admin listener must be loopback-only.
    #[error("admin listener {0} must be a loopback address")]
    AdminNotLoopback(SocketAddr),
}

/// Why the proxy stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// `/quitquitquit`.
    Quit,
    /// SIGTERM after a drain: exited at once.
    TerminatedAfterDrain,
    /// SIGTERM: the classic drain period elapsed.
    DrainPeriodElapsed,
    /// SIGTERM with `EXIT_ON_ZERO_ACTIVE_CONNECTIONS`: the last connection closed.
    ZeroActiveConnections,
}

/// Controls a running proxy from outside (signals, tests).
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    control: Arc<Control>,
    metrics: Arc<Metrics>,
}

impl ProxyHandle {
    /// What SIGTERM/SIGINT do.
    pub fn terminate(&self) {
        self.control.terminate();
    }
    /// What `POST /drain` does.
    pub fn drain(&self) {
        self.control.drain();
    }
    /// What `POST /quitquitquit` does.
    pub fn quit(&self) {
        self.control.quit();
    }
    /// Whether `/healthz/ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.control.is_ready()
    }
    /// The current lifecycle phase.
    pub fn phase(&self) -> Phase {
        self.control.phase()
    }
    /// Active downstream connections on the capture listeners.
    pub fn active_connections(&self) -> i64 {
        self.metrics.active_downstream()
    }
    /// The Prometheus text the stats port serves.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }
}

struct Listeners {
    outbound: std::net::TcpListener,
    inbound: std::net::TcpListener,
    health: std::net::TcpListener,
    status: Option<std::net::TcpListener>,
    stats: std::net::TcpListener,
    admin: Option<std::net::TcpListener>,
}

/// A proxy whose listeners are bound but not yet serving.
pub struct Proxy {
    shared: Arc<Shared>,
    addrs: BoundAddrs,
    listeners: Listeners,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

fn bind(listener: &'static str, addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    let err = |source| StartError::Bind {
        listener,
        addr,
        source,
    };
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `[::]` means dual-stack, as the capture listeners need for IPv4 pods too.
        s.set_only_v6(false).map_err(err)?;
    }
    s.bind(&addr.into()).map_err(err)?;
    s.listen(1024).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    Ok(s.into())
}

fn local(l: &std::net::TcpListener) -> SocketAddr {
    // A bound listening socket always has a local address; fall back to unspecified
    // only to avoid a panic path.
    l.local_addr()
        .unwrap_or_else(|_| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0))
}

impl Proxy {
    /// Binds every listener. Must be called inside a tokio runtime only for
    /// [`Proxy::run`]; binding itself is synchronous.
    pub fn bind(
        config: ProxyConfig,
        orig_dst: Arc<dyn OrigDst>,
        log: AccessLog,
    ) -> Result<Proxy, StartError> {
        if let Some(a) = config.listen.admin
            && !a.ip().is_loopback()
        {
            return Err(StartError::AdminNotLoopback(a));
        }
        let l = &config.listen;
        let listeners = Listeners {
            outbound: bind("outbound", l.outbound)?,
            inbound: bind("inbound", l.inbound)?,
            health: bind("health", l.health)?,
            status: l.status.map(|a| bind("status", a)).transpose()?,
            stats: bind("stats", l.stats)?,
            admin: l.admin.map(|a| bind("admin", a)).transpose()?,
        };
        let addrs = BoundAddrs {
            outbound: local(&listeners.outbound),
            inbound: local(&listeners.inbound),
            health: local(&listeners.health),
            status: listeners.status.as_ref().map(local),
            stats: local(&listeners.stats),
            admin: listeners.admin.as_ref().map(local),
        };
        let connector = Connector::new(config.upstream_mark, config.limits.connect_timeout);
        let pool = Arc::new(Pool::new(
            connector,
            config.limits.upstream_idle_timeout,
            config.limits.max_idle_per_upstream,
        ));
        let shared = Arc::new(Shared {
            config,
            pool,
            log,
            metrics: Arc::new(Metrics::new()),
            control: Arc::new(Control::new()),
            orig_dst,
        });
        Ok(Proxy {
            shared,
            addrs,
            listeners,
        })
    }

    /// The bound addresses.
    pub fn addrs(&self) -> &BoundAddrs {
        &self.addrs
    }

    /// A handle to drive the lifecycle.
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            control: self.shared.control.clone(),
            metrics: self.shared.metrics.clone(),
        }
    }

    /// Serves until `/quitquitquit` or SIGTERM (via [`ProxyHandle::terminate`]) and
    /// the shutdown plan says to exit. Every task of the proxy is stopped on return.
    pub async fn run(self) -> Result<ExitReason, StartError> {
        let shared = self.shared;
        let to_tokio = |listener: &'static str, addr, l| {
            TcpListener::from_std(l).map_err(|source| StartError::Bind {
                listener,
                addr,
                source,
            })
        };
        let a = &self.addrs;
        let outbound = to_tokio("outbound", a.outbound, self.listeners.outbound)?;
        let inbound = to_tokio("inbound", a.inbound, self.listeners.inbound)?;
        let health = to_tokio("health", a.health, self.listeners.health)?;
        let stats = to_tokio("stats", a.stats, self.listeners.stats)?;
        let status = match (self.listeners.status, a.status) {
            (Some(l), Some(addr)) => Some(to_tokio("status", addr, l)?),
            _ => None,
        };
        let admin_l = match (self.listeners.admin, a.admin) {
            (Some(l), Some(addr)) => Some(to_tokio("admin", addr, l)?),
            _ => None,
        };

        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(outbound, Direction::Outbound, shared.clone()));
        tasks.spawn(accept_loop(inbound, Direction::Inbound, shared.clone()));
        tasks.spawn(admin::serve(health, Endpoint::Health, shared.clone()));
        tasks.spawn(admin::serve(stats, Endpoint::Stats, shared.clone()));
        if let Some(l) = status {
            tasks.spawn(admin::serve(l, Endpoint::Status, shared.clone()));
        }
        if let Some(l) = admin_l {
            tasks.spawn(admin::serve(l, Endpoint::Admin, shared.clone()));
        }
        let interval = shared.config.access_log_flush_interval;
        if !interval.is_zero() {
            let log = shared.log.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(interval);
                loop {
                    tick.tick().await;
                    log.flush();
                }
            });
        }
        let pool = shared.pool.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                pool.sweep(Instant::now());
            }
        });
        shared.control.set_live();
        tracing::info!(addrs = ?a, "proxy ready");

        let control = shared.control.clone();
        let reason = tokio::select! {
            () = control.quit_requested() => ExitReason::Quit,
            reason = async {
                control.sigterm_received().await;
                run_shutdown_plan(&shared).await
            } => reason,
        };
        tracing::info!(?reason, "proxy exiting");
        control.set_exited();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        shared.log.flush();
        Ok(reason)
    }
}

async fn run_shutdown_plan(shared: &Shared) -> ExitReason {
    let plan = plan_shutdown(&shared.config.drain, shared.control.drained_before());
    tracing::info!(?plan, "SIGTERM received");
    match plan {
        ShutdownPlan::ExitNow => ExitReason::TerminatedAfterDrain,
        ShutdownPlan::WaitFor(d) => {
            tokio::time::sleep(d).await;
            ExitReason::DrainPeriodElapsed
        }
        ShutdownPlan::WaitForZero { minimum, poll } => {
            tokio::time::sleep(minimum).await;
            loop {
                let active = shared.metrics.active_downstream();
                if active <= 0 {
                    return ExitReason::ZeroActiveConnections;
                }
                tracing::info!(active, "waiting for active connections to close");
                tokio::time::sleep(poll).await;
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, direction: Direction, shared: Arc<Shared>) {
    let local = listener.local_addr().ok();
    let Some(local) = local else { return };
    let control = shared.control.clone();
    let mut phase = control.subscribe();
    loop {
        let stop = async {
            // Only inbound stops accepting on SIGTERM: new inbound connections are
            // refused so clients go elsewhere; outbound serves the app until exit.
            if direction == Direction::Inbound {
                let _ = phase.wait_for(|p| *p >= Phase::Terminating).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let exited = shared.control.clone();
                        tokio::select! {
                            () = handle_connection(stream, peer, direction, local, shared) => {}
                            () = exited.exited() => {}
                        }
                    });
                }
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%err, ?direction, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            () = stop => {
                tracing::info!("inbound listener closed for shutdown");
                return;
            }
        }
    }
}

/// What the first bytes said.
enum Detected {
    Http(DownstreamHttp),
    Tcp { sni: Option<String> },
}

/// Peeks at the client's first bytes (without consuming them) until they show a
/// protocol, the detection timeout passes, or the client closes.
async fn detect(stream: &TcpStream, timeout: Option<Duration>) -> Detected {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut buf = [0u8; 2048];
    let mut backoff = Duration::from_millis(1);
    loop {
        let peeked = match deadline {
            // `peek` is ready at once while any byte is buffered, so the deadline has
            // to be checked here too or a client that stops after a partial prefix
            // would keep this loop spinning forever.
            Some(d) if Instant::now() >= d => return Detected::Tcp { sni: None },
            Some(d) => match tokio::time::timeout_at(d, stream.peek(&mut buf)).await {
                Ok(r) => r,
                Err(_) => return Detected::Tcp { sni: None },
            },
            None => stream.peek(&mut buf).await,
        };
        let n = match peeked {
            Ok(0) | Err(_) => return Detected::Tcp { sni: None },
            Ok(n) => n,
        };
        match route::sniff(&buf[..n]) {
            Sniffed::Http1 => return Detected::Http(DownstreamHttp::Http1),
            Sniffed::Http2 => return Detected::Http(DownstreamHttp::Http2),
            Sniffed::Opaque => return Detected::Tcp { sni: None },
            Sniffed::Tls => match route::parse_sni(&buf[..n]) {
                Sni::Found(name) => return Detected::Tcp { sni: Some(name) },
                Sni::NeedMore if n < buf.len() => {}
                _ => return Detected::Tcp { sni: None },
            },
            Sniffed::NeedMore => {}
        }
        // A client that half-closed after a partial prefix sends nothing more: relay
        // what it sent rather than wait for bytes that cannot come.
        if let Ok(ready) = stream.ready(tokio::io::Interest::READABLE).await
            && ready.is_read_closed()
        {
            return Detected::Tcp { sni: None };
        }
        // `peek` returns at once while any byte is buffered, so wait a little for the
        // rest of the first segment instead of spinning.
        let nap = tokio::time::sleep(backoff);
        match deadline {
            Some(d) if Instant::now() + backoff >= d => {
                tokio::time::sleep_until(d).await;
            }
            _ => nap.await,
        }
        backoff = (backoff * 2).min(Duration::from_millis(20));
    }
}

async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    direction: Direction,
    listener: SocketAddr,
    shared: Arc<Shared>,
) {
    let _active = shared.metrics.track_downstream(direction);
    let start_time = SystemTime::now();
    let start = Instant::now();
    let orig_dst = match shared.orig_dst.original_dst(&stream, direction) {
        Ok(a) => a,
        Err(err) => {
            tracing::debug!(%err, %peer, "no original destination; closing");
            return;
        }
    };
    let (cluster, detection) = match route::plan_connection(
        &shared.config,
        direction,
        listener,
        orig_dst,
    ) {
        ConnectionPlan::Close(reason) => {
            tracing::debug!(?reason, %peer, %orig_dst, "closing connection to the capture port");
            return;
        }
        ConnectionPlan::Proxy { cluster, detection } => (cluster, detection),
    };
    let _ = stream.set_nodelay(true);
    let source = match direction {
        Direction::Outbound => None,
        Direction::Inbound => Some(if orig_dst.is_ipv4() {
            IpAddr::V4(shared.config.inbound_source_v4)
        } else {
            IpAddr::V6(shared.config.inbound_source_v6)
        }),
    };
    let detected = match detection {
        Detection::Tcp => Detected::Tcp { sni: None },
        Detection::Sniff => detect(&stream, shared.config.detection_timeout).await,
    };
    match detected {
        Detected::Http(version) => {
            let conn = Arc::new(HttpConn {
                shared: shared.clone(),
                direction,
                cluster_name: cluster.to_string().into(),
                series: std::sync::Mutex::new(None),
                upstream_h2: std::sync::Mutex::new(None),
                upstream_h2_set: tokio::sync::Notify::new(),
                cluster,
                orig_dst,
                peer,
                source,
                version,
            });
            http::serve(stream, conn).await;
        }
        Detected::Tcp { sni } => {
            let tcp = TcpConn {
                shared: &shared,
                direction,
                cluster,
                orig_dst,
                peer,
                source,
                sni,
                start_time,
                start,
            };
            tcp.proxy(stream).await;
        }
    }
}

struct TcpConn<'a> {
    shared: &'a Shared,
    direction: Direction,
    cluster: Cluster,
    orig_dst: SocketAddr,
    peer: SocketAddr,
    source: Option<IpAddr>,
    sni: Option<String>,
    start_time: SystemTime,
    start: Instant,
}

impl TcpConn<'_> {
    async fn proxy(self, down: TcpStream) {
        let labels = |flags: ResponseFlags| TcpLabels {
            reporter: self.direction.reporter(),
            source_workload: self.shared.config.workload.clone(),
            destination_service: self.cluster.destination_service(self.orig_dst),
            destination_cluster: self.cluster.to_string(),
            response_flags: flags.to_string(),
        };
        if self.cluster == Cluster::BlackHole {
            drop(down);
            let flags = ResponseFlags::NO_HEALTHY_UPSTREAM;
            self.shared
                .metrics
                .tcp_closed
                .get_or_create(&labels(flags))
                .inc();
            self.log(flags, None, None, 0, 0);
            return;
        }
        let up = match self
            .shared
            .pool
            .connector()
            .connect(self.orig_dst, self.source)
            .await
        {
            Ok(up) => up,
            Err(failure) => {
                drop(down);
                let (flags, reason) = route::tcp_connect_failure(&failure);
                self.shared
                    .metrics
                    .tcp_closed
                    .get_or_create(&labels(flags))
                    .inc();
                self.log(flags, reason, None, 0, 0);
                return;
            }
        };
        let upstream_local = up.local_addr().ok();
        let flags = ResponseFlags::empty();
        self.shared
            .metrics
            .tcp_opened
            .get_or_create(&labels(flags))
            .inc();
        let stats = tcp::relay(down, up, self.shared.config.limits.tcp_idle_timeout).await;
        let l = labels(flags);
        let m = &self.shared.metrics;
        m.tcp_closed.get_or_create(&l).inc();
        m.tcp_sent.get_or_create(&l).inc_by(stats.sent);
        m.tcp_received.get_or_create(&l).inc_by(stats.received);
        self.log(flags, None, upstream_local, stats.received, stats.sent);
    }

    fn log(
        &self,
        flags: ResponseFlags,
        transport_failure: Option<String>,
        upstream_local: Option<SocketAddr>,
        received: u64,
        sent: u64,
    ) {
        self.shared.log.record(&AccessLogEntry {
            start_time: self.start_time,
            http: None,
            response_code: 0,
            flags,
            details: None,
            termination_details: None,
            transport_failure,
            bytes_received: received,
            bytes_sent: sent,
            duration_ms: self.start.elapsed().as_millis() as u64,
            upstream_host: (self.cluster != Cluster::BlackHole).then_some(self.orig_dst),
            upstream_cluster: Some(self.cluster.to_string().into()),
            upstream_local,
            downstream_local: self.orig_dst,
            downstream_remote: self.peer,
            sni: self.sni.clone(),
            route_name: None,
        });
    }
}
