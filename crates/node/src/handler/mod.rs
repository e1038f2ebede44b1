//! Probe and lifecycle-hook handlers: exec, httpGet, tcpSocket, grpc, sleep.
//!
//! Each handler returns a [`HandlerOutcome`] whose failure text is worded like the kubelet's,
//! so events and conditions read the same as on a real node. Handlers never decide what a
//! result means (restart, readiness): the lifecycle engine does.

mod grpc;
mod http;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::runtime::{ContainerProcess, ExecError, exec_in};

/// The kubelet's probe `User-Agent`.
pub const USER_AGENT: &str = "kube-probe/1.34";

/// Default `timeoutSeconds` of a probe.
const DEFAULT_TIMEOUT_SECONDS: i32 = 1;

/// Hooks have no timeout of their own; the engine cancels them by dropping the future.
const NO_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The result of running a handler once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerOutcome {
    /// The handler succeeded.
    Success,
    /// It failed; the message is worded as the kubelet words it.
    Failure(String),
}

impl HandlerOutcome {
    /// Whether this is a success.
    pub fn is_success(&self) -> bool {
        matches!(self, HandlerOutcome::Success)
    }
}

/// Runs a probe handler (exec, httpGet, tcpSocket or grpc) against `container`. `pod_ip` is
/// the address used when the handler names no host. Named ports cannot be resolved without
/// the container's ports: use [`run_probe_with_ports`] for those.
pub async fn run_probe(
    probe: &Probe,
    container: &ContainerProcess,
    env: &[(String, String)],
    pod_ip: IpAddr,
) -> HandlerOutcome {
    run_probe_with_ports(probe, container, env, pod_ip, &[]).await
}

/// [`run_probe`] with the container's `ports`, used to resolve named ports.
pub async fn run_probe_with_ports(
    probe: &Probe,
    container: &ContainerProcess,
    env: &[(String, String)],
    pod_ip: IpAddr,
    ports: &[ContainerPort],
) -> HandlerOutcome {
    let secs = probe
        .timeout_seconds
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
        .max(1);
    let timeout = Duration::from_secs(secs as u64);
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        return match exec_in(container, &command, env, timeout).await {
            Ok(out) if out.exit_code == 0 => HandlerOutcome::Success,
            // The kubelet reports the command's output as the failure message.
            Ok(out) => HandlerOutcome::Failure(out.text()),
            Err(e) => HandlerOutcome::Failure(e.to_string()),
        };
    }
    if let Some(action) = &probe.http_get {
        let port = match resolve_port(&action.port, ports) {
            Ok(p) => p,
            Err(msg) => return HandlerOutcome::Failure(msg),
        };
        let target = http::HttpTarget::from_action(action, pod_ip, port);
        return http::probe(&target, timeout).await;
    }
    if let Some(action) = &probe.tcp_socket {
        let port = match resolve_port(&action.port, ports) {
            Ok(p) => p,
            Err(msg) => return HandlerOutcome::Failure(msg),
        };
        return tcp_probe(action.host.as_deref(), pod_ip, port, timeout).await;
    }
    if let Some(action) = &probe.grpc {
        let Ok(port) = u16::try_from(action.port) else {
            return HandlerOutcome::Failure(format!("invalid port number: {}", action.port));
        };
        return grpc::probe(
            SocketAddr::new(pod_ip, port),
            action.service.as_deref().unwrap_or(""),
            timeout,
        )
        .await;
    }
    HandlerOutcome::Failure("missing probe handler".into())
}

/// Runs a lifecycle hook handler (exec, httpGet, sleep). It has no timeout of its own: the
/// engine bounds it by dropping the future, which also kills an exec'd command.
pub async fn run_hook(
    handler: &LifecycleHandler,
    container: &ContainerProcess,
    env: &[(String, String)],
    pod_ip: IpAddr,
) -> HandlerOutcome {
    run_hook_with_ports(handler, container, env, pod_ip, &[]).await
}

/// [`run_hook`] with the container's `ports`, used to resolve named ports.
pub async fn run_hook_with_ports(
    handler: &LifecycleHandler,
    container: &ContainerProcess,
    env: &[(String, String)],
    pod_ip: IpAddr,
    ports: &[ContainerPort],
) -> HandlerOutcome {
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        return match exec_in(container, &command, env, NO_TIMEOUT).await {
            Ok(out) if out.exit_code == 0 => HandlerOutcome::Success,
            Ok(out) => HandlerOutcome::Failure(format!(
                "command '{}' exited with {}: {}",
                command.join(" "),
                out.exit_code,
                out.text()
            )),
            Err(ExecError::Timeout { command }) => {
                HandlerOutcome::Failure(format!("command \"{command}\" timed out"))
            }
            Err(e) => HandlerOutcome::Failure(e.to_string()),
        };
    }
    if let Some(action) = &handler.http_get {
        let port = match resolve_port(&action.port, ports) {
            Ok(p) => p,
            Err(msg) => return HandlerOutcome::Failure(msg),
        };
        let target = http::HttpTarget::from_action(action, pod_ip, port);
        return http::hook(&target).await;
    }
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
        return HandlerOutcome::Success;
    }
    if handler.tcp_socket.is_some() {
        // The kubelet keeps tcpSocket in the type only for compatibility and refuses to run it.
        return HandlerOutcome::Failure(
            "Cannot run handler: invalid handler: tcpSocket is not supported as a lifecycle handler".into(),
        );
    }
    HandlerOutcome::Failure("Cannot run handler: invalid handler: no action set".into())
}

/// Resolves a probe port: a number, or a name looked up in the container's ports.
fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port: {name} in container"))?,
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {n}"))
}

/// Resolves the host of an httpGet/tcpSocket action (default: the pod IP).
async fn resolve_host(host: Option<&str>, pod_ip: IpAddr, port: u16) -> Result<SocketAddr, String> {
    match host.filter(|h| !h.is_empty()) {
        None => Ok(SocketAddr::new(pod_ip, port)),
        Some(h) => {
            if let Ok(ip) = h
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                return Ok(SocketAddr::new(ip, port));
            }
            let mut addrs = tokio::net::lookup_host((h, port))
                .await
                .map_err(|_| format!("dial tcp: lookup {h}: no such host"))?;
            addrs
                .next()
                .ok_or_else(|| format!("dial tcp: lookup {h}: no such host"))
        }
    }
}

/// Dials `addr` within `timeout`; errors read like Go's `net.Dial`.
async fn dial(addr: SocketAddr, timeout: Duration) -> Result<tokio::net::TcpStream, String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {}", go_errno_text(&e))),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

fn go_errno_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

async fn tcp_probe(
    host: Option<&str>,
    pod_ip: IpAddr,
    port: u16,
    timeout: Duration,
) -> HandlerOutcome {
    let addr = match resolve_host(host, pod_ip, port).await {
        Ok(a) => a,
        Err(e) => return HandlerOutcome::Failure(e),
    };
    match dial(addr, timeout).await {
        Ok(_) => HandlerOutcome::Success,
        Err(e) => HandlerOutcome::Failure(e),
    }
}

/// Go's `time.Duration` text for whole seconds (`1s`, `1m30s`).
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s / 60) % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_resolve_by_number_or_name() {
        let ports = vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }];
        assert_eq!(resolve_port(&IntOrString::Int(80), &ports), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &ports),
            Ok(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("9090".into()), &ports),
            Ok(9090)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("metrics".into()), &ports),
            Err("couldn't find port: metrics in container".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(70000), &ports),
            Err("invalid port number: 70000".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(0), &ports),
            Err("invalid port number: 0".into())
        );
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3661)), "1h1m1s");
    }
}
