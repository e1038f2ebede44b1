//! `podrun proxy`: the mesh sidecar proxy (capture listeners, access log, stats,
//! readiness, admin, drain), plus `podrun proxy wait` for `postStart` hooks and
//! `podrun proxy request` for the native `preStop` drain hook.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::ArgAction;
use podrun_proxy::app_probe::parse_app_probers;
use podrun_proxy::config::{
    AccessLogFormat, DrainSettings, Limits, ListenAddrs, OutboundPolicy, ProxyConfig,
    parse_pod_ports, parse_service,
};
use podrun_proxy::{AccessLog, Proxy, SoOriginalDst};

use crate::Global;

/// Arguments of `podrun proxy`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<ProxyCommand>,
    // Boxed: the flags are many, and the subcommand enum stays small.
    #[command(flatten)]
    run: Box<RunArgs>,
}

#[derive(Debug, clap::Subcommand)]
enum ProxyCommand {
    /// Wait until the local proxy answers ready on its health port (use as a postStart hook).
    Wait(WaitArgs),
    /// Send one request to a local proxy port, e.g. `request POST drain` (preStop hook).
    Request(RequestArgs),
    /// Istio-compatible spelling (`proxy sidecar …`): run the proxy.
    Sidecar(Box<RunArgs>),
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Flags of the proxy itself.
#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// Address the capture, health, status and stats listeners bind.
    #[arg(long, default_value = "0.0.0.0")]
    listen_ip: IpAddr,
    /// Outbound capture port (iptables REDIRECT target for outbound traffic).
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    /// Inbound capture port (iptables REDIRECT target for inbound traffic).
    #[arg(long, default_value_t = 15006)]
    inbound_port: u16,
    /// Health port serving `GET /healthz/ready`.
    #[arg(long, default_value_t = 15021)]
    health_port: u16,
    /// Agent status port (`/healthz/ready`, `/quitquitquit`, `/drain`, metrics); 0 disables it.
    #[arg(long, default_value_t = 15020)]
    status_port: u16,
    /// Prometheus stats port (`/stats/prometheus`).
    #[arg(long, default_value_t = 15090)]
    stats_port: u16,
    /// Admin port on 127.0.0.1 (`/quitquitquit`, `/drain_listeners`, `/ready`, `/stats`); 0 disables it.
    #[arg(long, default_value_t = 15000)]
    admin_port: u16,
    /// Ports the pod declares, as Istio renders them (JSON list of `{"containerPort":N}`).
    #[arg(long, env = "ISTIO_META_POD_PORTS", default_value = "")]
    pod_ports: String,
    /// A known Service: `IP:PORT=FQDN[/tcp|/http]` (repeatable).
    #[arg(long = "service")]
    services: Vec<String>,
    /// Ports always relayed as TCP without protocol detection (repeatable).
    #[arg(long = "tcp-port")]
    tcp_ports: Vec<u16>,
    /// Unknown outbound destinations: `allow-any` (passthrough) or `registry-only` (refused).
    #[arg(long, default_value = "allow-any", value_parser = ["allow-any", "registry-only"])]
    outbound_policy: String,
    /// Wait at most this long for the client's first bytes; 0 waits forever.
    #[arg(long, default_value = "100ms", value_parser = duration)]
    detection_timeout: Duration,
    /// SO_MARK for upstream sockets (needs CAP_NET_ADMIN; skipped with a warning without it); 0 disables.
    #[arg(long, default_value_t = 1337)]
    upstream_mark: u32,
    /// Largest accepted HTTP/1 request head in bytes (larger gets 431).
    #[arg(long, default_value_t = 60 * 1024)]
    max_request_header_bytes: usize,
    /// Largest number of request headers.
    #[arg(long, default_value_t = 100)]
    max_request_headers: usize,
    /// Time a client has to send a complete request head (slower gets 408).
    #[arg(long, default_value = "30s", value_parser = duration)]
    header_read_timeout: Duration,
    /// Upstream connect timeout.
    #[arg(long, default_value = "10s", value_parser = duration)]
    connect_timeout: Duration,
    /// Time allowed for upstream response headers (504 after it); 0 = no limit.
    #[arg(long, default_value = "0s", value_parser = duration)]
    request_timeout: Duration,
    /// Close proxied TCP connections idle for this long.
    #[arg(long, default_value = "1h", value_parser = duration)]
    tcp_idle_timeout: Duration,
    /// Close idle upstream HTTP connections after this long.
    #[arg(long, default_value = "60s", value_parser = duration)]
    upstream_idle_timeout: Duration,
    /// Classic mode: time between SIGTERM and exit (`terminationDrainDuration`).
    /// Default: `terminationDrainDuration` from PROXY_CONFIG, else 5s.
    #[arg(long, env = "TERMINATION_DRAIN_DURATION", value_parser = duration)]
    termination_drain_duration: Option<Duration>,
    /// After SIGTERM, exit as soon as no downstream connection is active.
    #[arg(long, env = "EXIT_ON_ZERO_ACTIVE_CONNECTIONS", action = ArgAction::Set,
          num_args = 0..=1, default_value_t = false, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    exit_on_zero_active_connections: bool,
    /// With the above: always wait this long first.
    #[arg(long, env = "MINIMUM_DRAIN_DURATION", default_value = "5s", value_parser = duration)]
    minimum_drain_duration: Duration,
    /// Accept HTTP/1.0 requests; without it they get `426 Upgrade Required`, as in Istio.
    #[arg(long = "http10", env = "ISTIO_META_HTTP10", action = ArgAction::Set,
          num_args = 0..=1, default_value_t = false, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    accept_http10: bool,
    /// Effective ProxyConfig JSON (as injected); `terminationDrainDuration` is read from it.
    #[arg(long, env = "PROXY_CONFIG", hide = true)]
    proxy_config: Option<String>,
    /// Access log format on stdout: `text` (Istio default TEXT), `json`, or `off`.
    #[arg(long, default_value = "text", value_parser = ["text", "json", "off"])]
    access_log_format: String,
    /// How often buffered access-log lines are written; 0 writes every line at once.
    #[arg(long, default_value = "1s", value_parser = duration)]
    access_log_flush_interval: Duration,
    /// Worker threads; 1 runs everything on one thread (smallest footprint).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Workload name for metric labels.
    #[arg(long, env = "POD_NAME", default_value = "unknown")]
    workload: String,
    /// App probes and hooks the injector moved onto the status port, as it records them
    /// (JSON object keyed by `/app-health/<container>/<probe>` path).
    #[arg(long, env = "ISTIO_KUBE_APP_PROBERS", default_value = "", hide = true)]
    app_probers: String,
    /// The pod's IP, where app probes are sent; empty sends them to 127.0.0.1.
    #[arg(long, env = "INSTANCE_IP", default_value = "")]
    instance_ip: String,
    /// Send app probes to loopback instead of the pod's IP (Istio's legacy behaviour).
    #[arg(long, env = "REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION", action = ArgAction::Set,
          num_args = 0..=1, default_value_t = false, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    rewrite_probe_legacy_localhost_destination: bool,
    /// Treat every outbound connection as addressed to this `IP:PORT` instead of
    /// reading SO_ORIGINAL_DST: lets benchmarks and debugging run without capture rules.
    #[arg(long, hide = true)]
    fixed_original_dst: Option<SocketAddr>,
    /// Accepted for Istio argument compatibility; ignored.
    #[arg(long, hide = true)]
    domain: Option<String>,
    /// Accepted for Istio argument compatibility; ignored.
    #[arg(long = "proxyLogLevel", hide = true)]
    proxy_log_level: Option<String>,
    /// Accepted for Istio argument compatibility; ignored.
    #[arg(long = "proxyComponentLogLevel", hide = true)]
    proxy_component_log_level: Option<String>,
    /// Accepted for Istio argument compatibility; ignored.
    #[arg(long = "log_output_level", hide = true)]
    log_output_level: Option<String>,
}

#[derive(Debug, clap::Args)]
struct WaitArgs {
    /// Give up after this long (exit 1).
    #[arg(long, default_value = "60s", value_parser = duration)]
    timeout: Duration,
    /// Poll period, also the per-request timeout.
    #[arg(long, default_value = "500ms", value_parser = duration)]
    period: Duration,
    /// Health port to poll.
    #[arg(long, default_value_t = 15021)]
    port: u16,
    /// Host to poll.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
}

#[derive(Debug, clap::Args)]
struct RequestArgs {
    /// HTTP method, e.g. POST.
    method: String,
    /// Path, e.g. `drain` or `/quitquitquit`.
    path: String,
    /// Local port to send to.
    #[arg(long, default_value_t = 15020)]
    debug_port: u16,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = duration)]
    timeout: Duration,
}

impl RunArgs {
    fn to_config(&self) -> anyhow::Result<ProxyConfig> {
        let ip = self.listen_ip;
        let at = |port| SocketAddr::new(ip, port);
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.admin_port);
        let mut services = std::collections::BTreeMap::new();
        for entry in &self.services {
            let (addr, svc) = parse_service(entry)?;
            services.insert(addr, svc);
        }
        let termination_drain_duration = match self.termination_drain_duration {
            Some(d) => d,
            None => termination_drain_from_proxy_config(self.proxy_config.as_deref())?
                .unwrap_or(Duration::from_secs(5)),
        };
        if self.concurrency == 0 {
            anyhow::bail!("--concurrency must be at least 1");
        }
        let app_probers = parse_app_probers(&self.app_probers)?;
        let app_probe_destination = app_probe_destination(
            &self.instance_ip,
            self.rewrite_probe_legacy_localhost_destination,
        )?;
        Ok(ProxyConfig {
            listen: ListenAddrs {
                outbound: at(self.outbound_port),
                inbound: at(self.inbound_port),
                health: at(self.health_port),
                status: (self.status_port != 0).then(|| at(self.status_port)),
                stats: at(self.stats_port),
                admin: (self.admin_port != 0).then_some(loopback),
            },
            pod_ports: parse_pod_ports(&self.pod_ports)?,
            services,
            tcp_ports: self.tcp_ports.iter().copied().collect(),
            outbound_policy: match self.outbound_policy.as_str() {
                "registry-only" => OutboundPolicy::RegistryOnly,
                _ => OutboundPolicy::AllowAny,
            },
            detection_timeout: (!self.detection_timeout.is_zero())
                .then_some(self.detection_timeout),
            inbound_source_v4: Ipv4Addr::new(127, 0, 0, 6),
            inbound_source_v6: "::6".parse().context("parse ::6")?,
            upstream_mark: (self.upstream_mark != 0).then_some(self.upstream_mark),
            limits: Limits {
                max_request_header_bytes: self.max_request_header_bytes,
                max_request_headers: self.max_request_headers,
                header_read_timeout: self.header_read_timeout,
                connect_timeout: self.connect_timeout,
                request_timeout: (!self.request_timeout.is_zero()).then_some(self.request_timeout),
                tcp_idle_timeout: self.tcp_idle_timeout,
                upstream_idle_timeout: self.upstream_idle_timeout,
                ..Limits::default()
            },
            drain: DrainSettings {
                termination_drain_duration,
                exit_on_zero_active_connections: self.exit_on_zero_active_connections,
                minimum_drain_duration: self.minimum_drain_duration,
                ..DrainSettings::default()
            },
            access_log_format: match self.access_log_format.as_str() {
                "json" => AccessLogFormat::Json,
                "off" => AccessLogFormat::Off,
                _ => AccessLogFormat::Text,
            },
            access_log_flush_interval: self.access_log_flush_interval,
            workload: self.workload.clone(),
            app_probers,
            app_probe_destination,
            accept_http10: self.accept_http10,
        })
    }
}

/// Where app probes go: the pod IP from `INSTANCE_IP`, or loopback (of the pod IP's
/// family) in legacy mode; `None` (127.0.0.1) when the IP is unknown.
fn app_probe_destination(
    instance_ip: &str,
    legacy_localhost: bool,
) -> anyhow::Result<Option<IpAddr>> {
    let text = instance_ip.trim();
    let ip = if text.is_empty() {
        None
    } else {
        Some(
            text.parse::<IpAddr>()
                .with_context(|| format!("INSTANCE_IP {text:?} is not an IP address"))?,
        )
    };
    Ok(match (ip, legacy_localhost) {
        (Some(IpAddr::V6(_)), true) => Some(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
        (_, true) => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        (ip, false) => ip,
    })
}

/// Reads `terminationDrainDuration` (a protobuf duration string like `"5s"`) from the
/// injected `PROXY_CONFIG` JSON.
fn termination_drain_from_proxy_config(json: Option<&str>) -> anyhow::Result<Option<Duration>> {
    let Some(json) = json.map(str::trim).filter(|j| !j.is_empty()) else {
        return Ok(None);
    };
    let v: serde_json::Value =
        serde_json::from_str(json).context("PROXY_CONFIG is not valid JSON")?;
    match v.get("terminationDrainDuration") {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => {
            Ok(Some(duration(s).map_err(|e| {
                anyhow::anyhow!("PROXY_CONFIG terminationDrainDuration: {e}")
            })?))
        }
        Some(other) => {
            anyhow::bail!("PROXY_CONFIG terminationDrainDuration must be a string, got {other}")
        }
    }
}

/// Runs `podrun proxy`.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<u8> {
    match args.command {
        None => run_proxy(&args.run),
        Some(ProxyCommand::Sidecar(run)) => run_proxy(&run),
        Some(ProxyCommand::Wait(w)) => run_wait(&w),
        Some(ProxyCommand::Request(r)) => run_request(&r),
    }
}

fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start runtime")
}

fn run_proxy(args: &RunArgs) -> anyhow::Result<u8> {
    let config = args.to_config()?;
    let runtime = if args.concurrency <= 1 {
        small_runtime()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.concurrency)
            .enable_all()
            .build()
            .context("start runtime")?
    };
    runtime.block_on(async move {
        let log = AccessLog::stdout(config.access_log_format, config.access_log_flush_interval);
        let orig_dst: Arc<dyn podrun_proxy::OrigDst> = match args.fixed_original_dst {
            Some(dst) => {
                let fixed = podrun_proxy::MockOrigDst::new();
                fixed.set(podrun_proxy::Direction::Outbound, dst);
                Arc::new(fixed)
            }
            None => Arc::new(SoOriginalDst),
        };
        let proxy = Proxy::bind(config, orig_dst, log)?;
        let handle = proxy.handle();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install SIGTERM handler")?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("install SIGINT handler")?;
        // Signals work from the first moment, even before readiness (spec §5.11).
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                handle.terminate();
            }
        });
        let reason = proxy.run().await?;
        tracing::info!(?reason, "proxy stopped");
        Ok(0)
    })
}

fn run_wait(args: &WaitArgs) -> anyhow::Result<u8> {
    let addr = SocketAddr::new(args.host, args.port);
    let result = small_runtime()?.block_on(podrun_proxy::client::wait_ready(
        addr,
        args.timeout,
        args.period,
    ));
    match result {
        Ok(()) => Ok(0),
        Err(last) => {
            eprintln!(
                "proxy at {addr} not ready after {}: {last}",
                humantime::format_duration(args.timeout)
            );
            Ok(1)
        }
    }
}

fn run_request(args: &RequestArgs) -> anyhow::Result<u8> {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.debug_port);
    let (status, body) = small_runtime()?.block_on(podrun_proxy::client::request(
        &args.method,
        addr,
        &args.path,
        args.timeout,
    ))?;
    print!("{body}");
    if status.is_success() {
        Ok(0)
    } else {
        eprintln!("{} {} returned {status}", args.method, args.path);
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn defaults_are_istio_ports() {
        let cli = Cli::try_parse_from(["proxy"]).unwrap();
        let c = cli.args.run.to_config().unwrap();
        assert_eq!(c.listen.outbound.port(), 15001);
        assert_eq!(c.listen.inbound.port(), 15006);
        assert_eq!(c.listen.health.port(), 15021);
        assert_eq!(c.listen.status.map(|a| a.port()), Some(15020));
        assert_eq!(c.listen.stats.port(), 15090);
        assert_eq!(c.listen.admin, Some("127.0.0.1:15000".parse().unwrap()));
        assert_eq!(c.detection_timeout, Some(Duration::from_millis(100)));
        assert_eq!(c.drain.termination_drain_duration, Duration::from_secs(5));
    }

    #[test]
    fn subcommands_and_istio_spelling_parse() {
        let cli = Cli::try_parse_from(["proxy", "wait", "--timeout", "2s"]).unwrap();
        assert!(
            matches!(cli.args.command, Some(ProxyCommand::Wait(ref w)) if w.timeout == Duration::from_secs(2))
        );
        let cli =
            Cli::try_parse_from(["proxy", "request", "POST", "drain", "--debug-port", "15020"])
                .unwrap();
        assert!(
            matches!(cli.args.command, Some(ProxyCommand::Request(ref r)) if r.path == "drain")
        );
        let cli = Cli::try_parse_from([
            "proxy",
            "sidecar",
            "--domain",
            "default.svc.cluster.local",
            "--proxyLogLevel=warning",
        ])
        .unwrap();
        assert!(matches!(cli.args.command, Some(ProxyCommand::Sidecar(_))));
        let cli = Cli::try_parse_from([
            "proxy",
            "--exit-on-zero-active-connections",
            "--status-port",
            "0",
        ])
        .unwrap();
        let c = cli.args.run.to_config().unwrap();
        assert!(c.drain.exit_on_zero_active_connections);
        assert_eq!(c.listen.status, None);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Cli::try_parse_from(["proxy", "--detection-timeout", "soon"]).is_err());
        let cli = Cli::try_parse_from(["proxy", "--service", "nope"]).unwrap();
        assert!(cli.args.run.to_config().is_err());
        let cli =
            Cli::try_parse_from(["proxy", "--pod-ports", "[{\"containerPort\":\"x\"}]"]).unwrap();
        assert!(cli.args.run.to_config().is_err());
        let cli = Cli::try_parse_from(["proxy", "--concurrency", "0"]).unwrap();
        assert!(cli.args.run.to_config().is_err());
    }

    #[test]
    fn http10_is_off_unless_asked_for() {
        let off = Cli::try_parse_from(["proxy"]).unwrap();
        assert!(!off.args.run.to_config().unwrap().accept_http10);
        for on in [&["proxy", "--http10"][..], &["proxy", "--http10", "1"]] {
            let cli = Cli::try_parse_from(on).unwrap();
            assert!(cli.args.run.to_config().unwrap().accept_http10, "{on:?}");
        }
    }

    #[test]
    fn app_probers_and_instance_ip() {
        let cli = Cli::try_parse_from([
            "proxy",
            "--app-probers",
            r#"{"/app-health/web/readyz":{"httpGet":{"path":"/ready","port":8080}}}"#,
            "--instance-ip",
            "198.18.0.7",
        ])
        .unwrap();
        let c = cli.args.run.to_config().unwrap();
        assert_eq!(c.app_probers.len(), 1);
        assert!(c.app_probers.get("/app-health/web/readyz").is_some());
        assert_eq!(c.app_probe_destination, Some("198.18.0.7".parse().unwrap()));

        let cli = Cli::try_parse_from(["proxy", "--app-probers", "{\"/app-health/web/readyz\":"])
            .unwrap();
        let err = cli.args.run.to_config().unwrap_err().to_string();
        assert!(err.contains("ISTIO_KUBE_APP_PROBERS"), "{err}");
        let cli = Cli::try_parse_from(["proxy", "--instance-ip", "pod"]).unwrap();
        assert!(cli.args.run.to_config().is_err());

        assert_eq!(app_probe_destination("", false).unwrap(), None);
        assert_eq!(
            app_probe_destination("fd00::7", true).unwrap(),
            Some("::1".parse().unwrap())
        );
        assert_eq!(
            app_probe_destination("198.18.0.7", true).unwrap(),
            Some("127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn proxy_config_drain_duration() {
        assert_eq!(
            termination_drain_from_proxy_config(Some("{\"terminationDrainDuration\":\"23s\"}\n"))
                .unwrap(),
            Some(Duration::from_secs(23))
        );
        assert_eq!(
            termination_drain_from_proxy_config(Some("{}")).unwrap(),
            None
        );
        assert_eq!(termination_drain_from_proxy_config(None).unwrap(), None);
        assert!(termination_drain_from_proxy_config(Some("{")).is_err());
        assert!(
            termination_drain_from_proxy_config(Some("{\"terminationDrainDuration\":5}")).is_err()
        );
    }
}
