//! The pure half of the Service driver: which pods back which Service port (ready pods
//! matching the selector, `targetPort` resolved per pod), and what cluster DNS says.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podrun_netplan::service::{Endpoint, PortRules, Protocol, ServiceRules};

use crate::dns::DnsView;

/// The rules for every Service with a ClusterIP, and the DNS names of all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Input to `podrun_netplan::service::restore_text`.
    pub rules: Vec<ServiceRules>,
    /// Names for the cluster DNS.
    pub dns: DnsView,
}

/// Whether the pod can receive Service traffic: Running, not being deleted, with an IPv4
/// pod IP and the `Ready` condition true (as the EndpointSlice controller decides).
pub fn pod_ready_ip(pod: &Pod) -> Option<Ipv4Addr> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

/// Whether every selector label is on the pod. A Service without a selector selects
/// nothing (its endpoints would be managed by hand).
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if selector.is_empty()
        || service.metadata.namespace.as_deref().unwrap_or("default")
            != pod.metadata.namespace.as_deref().unwrap_or("default")
    {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The container port a Service port's `targetPort` means for this pod: a number as is
/// (the Service port when unset), a name looked up among the pod's container ports of the
/// same protocol; `None` if the pod has no port of that name.
pub fn resolve_target_port(
    target: Option<&IntOrString>,
    port: i32,
    protocol: &str,
    pod: &Pod,
) -> Option<u16> {
    match target {
        None => u16::try_from(port).ok(),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|p| *p != 0),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<u16>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .and_then(|p| u16::try_from(p.container_port).ok())
        }
    }
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The plan for `services` over `pods`. Pods are matched in a stable (namespace, name)
/// order, so the same inputs always give the same rules.
pub fn plan<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    pods: impl IntoIterator<Item = &'a Pod> + Clone,
) -> Plan {
    let mut out = Plan::default();
    let mut sorted_pods: Vec<&Pod> = pods.into_iter().collect();
    // hostNetwork pods have the host's address, which no podrun can claim as its own.
    out.dns.clients = sorted_pods
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.host_network) != Some(true))
        .filter_map(|p| p.status.as_ref()?.pod_ip.as_deref()?.parse().ok())
        .collect();
    sorted_pods.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    for svc in services {
        let ns = svc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = svc.metadata.name.clone().unwrap_or_default();
        let ready: Vec<(&Pod, Ipv4Addr)> = sorted_pods
            .iter()
            .filter(|p| selects(svc, p))
            .filter_map(|p| pod_ready_ip(p).map(|ip| (*p, ip)))
            .collect();
        let spec = svc.spec.clone().unwrap_or_default();
        if is_headless(svc) {
            let mut ips: Vec<Ipv4Addr> = ready.iter().map(|(_, ip)| *ip).collect();
            ips.dedup();
            out.dns.services.insert((ns.clone(), name.clone()), ips);
            for (pod, ip) in &ready {
                let pspec = pod.spec.as_ref();
                let host = pspec.and_then(|s| s.hostname.as_deref());
                let sub = pspec.and_then(|s| s.subdomain.as_deref());
                if let (Some(host), Some(sub)) = (host, sub)
                    && sub == name
                {
                    out.dns
                        .hostnames
                        .insert((ns.clone(), sub.to_string(), host.to_string()), *ip);
                }
            }
            continue;
        }
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        out.dns
            .services
            .insert((ns.clone(), name.clone()), vec![cluster_ip]);
        let mut ports = Vec::new();
        for p in spec.ports.iter().flatten() {
            let protocol_word = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let (Some(protocol), Ok(port)) =
                (Protocol::parse(Some(&protocol_word)), u16::try_from(p.port))
            else {
                continue;
            };
            let mut endpoints: Vec<Endpoint> = ready
                .iter()
                .filter_map(|(pod, ip)| {
                    resolve_target_port(p.target_port.as_ref(), p.port, &protocol_word, pod)
                        .map(|port| Endpoint { ip: *ip, port })
                })
                .collect();
            endpoints.sort();
            endpoints.dedup();
            ports.push(PortRules {
                name: p.name.clone().unwrap_or_default(),
                protocol,
                port,
                endpoints,
            });
        }
        out.rules.push(ServiceRules {
            namespace: ns,
            name,
            cluster_ip,
            ports,
        });
    }
    out
}
