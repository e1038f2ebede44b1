//! Cluster DNS for sandboxed pods: the records (`<svc>.<ns>.svc.cluster.local`,
//! `<a-b-c-d>.<ns>.pod.cluster.local`, `<hostname>.<subdomain>.<ns>.svc.cluster.local`),
//! an embedded server that answers them and forwards every other name to the host's
//! resolvers, and the per-pod `/etc/resolv.conf` and `/etc/hosts` in the kubelet's
//! format.
//!
//! The decisions are pure: [`pod_files`] renders the two files from the pod, its IP and
//! the host's resolver settings; [`DnsView::lookup`] decides the answer for a name. The
//! [`server`] module only moves bytes.

pub mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

pub use server::DnsServer;

/// The cluster domain, as kubelet's `--cluster-domain` defaults in kubeadm clusters.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Most nameservers a resolv.conf may list (glibc's `MAXNS`); kubelet enforces the same.
const MAX_NAMESERVERS: usize = 3;

/// Most search domains kubelet passes on.
const MAX_SEARCHES: usize = 32;

/// What a pod's DNS files are made from, besides the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// Where the embedded server listens (the bridge IP).
    pub nameserver: Ipv4Addr,
    /// The host's `/etc/resolv.conf`, for `dnsPolicy: Default` and for the host's search
    /// domains.
    pub host_resolv_conf: String,
}

/// A pod's `/etc/hosts` and `/etc/resolv.conf` contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDnsFiles {
    /// `/etc/hosts`.
    pub hosts: String,
    /// `/etc/resolv.conf`.
    pub resolv: String,
}

/// Resolver settings as a resolv.conf holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<String>,
    /// `search` (or `domain`) words.
    pub searches: Vec<String>,
    /// `options` words, e.g. `ndots:5`.
    pub options: Vec<String>,
}

/// The names the cluster DNS knows, kept current by the Service driver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsView {
    /// `(namespace, service)` → its ClusterIP, or the ready pod IPs of a headless Service.
    pub services: BTreeMap<(String, String), Vec<Ipv4Addr>>,
    /// `(namespace, subdomain, hostname)` → the pod's IP, for pods whose `subdomain`
    /// names a headless Service that selects them.
    pub hostnames: BTreeMap<(String, String, String), Ipv4Addr>,
    /// The IPs of this node's pods. Every podrun on the host serves the DNS port, so a
    /// query may reach another podrun's server; it is answered from the view of the
    /// podrun whose pod asked, as each podrun is a cluster of its own.
    pub clients: BTreeSet<Ipv4Addr>,
}

/// What the cluster DNS says about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The name exists with these addresses (possibly none: NOERROR without answers).
    Found(Vec<Ipv4Addr>),
    /// The name is under the cluster domain and does not exist.
    NxDomain,
    /// Not a cluster name: ask the host's resolvers.
    Forward,
}

// === impl ResolvConf ===

impl ResolvConf {
    /// Parses resolv.conf text; unknown lines are ignored as the resolver does.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => out.nameservers.extend(words.next().map(String::from)),
                // The last search or domain line wins, as in glibc.
                Some("search") | Some("domain") => {
                    out.searches = words.map(String::from).collect();
                }
                Some("options") => out.options.extend(words.map(String::from)),
                _ => {}
            }
        }
        out
    }

    /// The nameservers that parse as IP addresses.
    pub fn nameserver_ips(&self) -> Vec<IpAddr> {
        self.nameservers
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    /// Renders resolv.conf text (search, nameserver, options), as the container runtime
    /// writes it for the kubelet.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// The pod's `/etc/resolv.conf` and `/etc/hosts`, as the kubelet would write them for a
/// pod with its own network namespace at `pod_ip`.
pub fn pod_files(pod: &Pod, pod_ip: Ipv4Addr, cluster: &ClusterDns) -> Result<PodDnsFiles, String> {
    Ok(PodDnsFiles {
        hosts: hosts_file(pod, pod_ip, &cluster.domain),
        resolv: resolv_conf(pod, cluster)?.render(),
    })
}

/// The pod-directory file that becomes the pod's `/etc/hosts`.
pub fn hosts_path(pod_dir: &Path) -> PathBuf {
    pod_dir.join("etc-hosts")
}

/// The pod-directory file that becomes the pod's `/etc/resolv.conf`.
pub fn resolv_path(pod_dir: &Path) -> PathBuf {
    pod_dir.join("etc-resolv.conf")
}

/// Writes the pod's `/etc/hosts` and `/etc/resolv.conf` into its pod directory, for a
/// pod with its own network namespace at `pod_ip` whose cluster DNS listens on
/// `nameserver` (the bridge IP). The host's resolver settings come from its
/// `/etc/resolv.conf`.
pub fn write_pod_files(
    pod: &Pod,
    pod_ip: Ipv4Addr,
    nameserver: Ipv4Addr,
    pod_dir: &Path,
) -> Result<(), String> {
    let cluster = ClusterDns {
        domain: CLUSTER_DOMAIN.into(),
        nameserver,
        host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    let files = pod_files(pod, pod_ip, &cluster)?;
    for (path, text) in [
        (hosts_path(pod_dir), files.hosts),
        (resolv_path(pod_dir), files.resolv),
    ] {
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The files [`write_pod_files`] wrote as (host file, path in the container), to be
/// bind-mounted read-write into every container of the pod; none when they were not
/// written (the pod shares the host's network).
pub fn pod_file_mounts(pod_dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    [
        (hosts_path(pod_dir), "/etc/hosts"),
        (resolv_path(pod_dir), "/etc/resolv.conf"),
    ]
    .into_iter()
    .filter(|(source, _)| source.is_file())
    .map(|(source, target)| (source, PathBuf::from(target)))
    .collect()
}

/// The pod's hostname: `spec.hostname`, else its name cut to 63 characters (a DNS label).
pub fn pod_hostname(pod: &Pod) -> String {
    let spec_host = pod.spec.as_ref().and_then(|s| s.hostname.clone());
    let name = spec_host.unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let cut = name.chars().take(63).collect::<String>();
    cut.trim_end_matches(['-', '.']).to_string()
}

/// kubelet's managed hosts file: localhost lines, the pod's own line (FQDN first when it
/// has a subdomain), then the `hostAliases`.
fn hosts_file(pod: &Pod, pod_ip: Ipv4Addr, domain: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let hostname = pod_hostname(pod);
    let mut out = String::from("# Kubernetes-managed hosts file.\n");
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => {
            out.push_str(&format!(
                "{pod_ip}\t{hostname}.{sub}.{ns}.svc.{domain}\t{hostname}\n"
            ));
        }
        None => out.push_str(&format!("{pod_ip}\t{hostname}\n")),
    }
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.unwrap_or_default();
            out.push_str(&format!("{}\t{}\n", alias.ip, names.join("\t")));
        }
    }
    out
}

/// The resolver settings `dnsPolicy` and `dnsConfig` ask for.
pub fn resolv_conf(pod: &Pod, cluster: &ClusterDns) -> Result<ResolvConf, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host = ResolvConf::parse(&cluster.host_resolv_conf);
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let mut conf = match policy {
        // A hostNetwork pod with ClusterFirst falls back to Default, as the kubelet does.
        "ClusterFirst" if host_network => host.clone(),
        "ClusterFirst" | "ClusterFirstWithHostNet" => {
            let d = &cluster.domain;
            let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            searches.extend(host.searches.iter().cloned());
            ResolvConf {
                nameservers: vec![cluster.nameserver.to_string()],
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        "Default" => host.clone(),
        "None" => ResolvConf::default(),
        other => {
            return Err(format!(
                "spec.dnsPolicy: Unsupported value: {other:?}: supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\""
            ));
        }
    };
    if let Some(dc) = &spec.dns_config {
        for n in dc.nameservers.iter().flatten() {
            if !conf.nameservers.contains(n) {
                conf.nameservers.push(n.clone());
            }
        }
        for s in dc.searches.iter().flatten() {
            if !conf.searches.contains(s) {
                conf.searches.push(s.clone());
            }
        }
        for o in dc.options.iter().flatten() {
            let word = match &o.value {
                Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            // An option from dnsConfig replaces one of the same name.
            let key = o.name.clone().unwrap_or_default();
            conf.options
                .retain(|w| w.split(':').next().unwrap_or_default() != key);
            conf.options.push(word);
        }
    }
    if policy == "None" && conf.nameservers.is_empty() {
        return Err(
            "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"
                .into(),
        );
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches.truncate(MAX_SEARCHES);
    Ok(conf)
}

// === impl DnsView ===

impl DnsView {
    /// Whether the view has nothing to say (no names, no pods).
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.hostnames.is_empty() && self.clients.is_empty()
    }

    /// The view as text, one entry a line (`svc <ns> <name> <ip,…>`,
    /// `host <ns> <subdomain> <hostname> <ip>` and `client <ip>`), for other podruns on
    /// the host to read.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for ((ns, name), ips) in &self.services {
            let ips: Vec<String> = ips.iter().map(Ipv4Addr::to_string).collect();
            out.push_str(&format!("svc {ns} {name} {}\n", ips.join(",")));
        }
        for ((ns, sub, host), ip) in &self.hostnames {
            out.push_str(&format!("host {ns} {sub} {host} {ip}\n"));
        }
        for ip in &self.clients {
            out.push_str(&format!("client {ip}\n"));
        }
        out
    }

    /// Parses [`DnsView::render`] output; lines that do not parse are skipped.
    pub fn parse(text: &str) -> Self {
        let mut view = Self::default();
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["svc", ns, name, ips] => {
                    let ips = ips.split(',').filter_map(|ip| ip.parse().ok()).collect();
                    view.services
                        .insert((ns.to_string(), name.to_string()), ips);
                }
                ["client", ip] => view.clients.extend(ip.parse::<Ipv4Addr>().ok()),
                ["host", ns, sub, host, ip] => {
                    if let Ok(ip) = ip.parse() {
                        view.hostnames
                            .insert((ns.to_string(), sub.to_string(), host.to_string()), ip);
                    }
                }
                _ => {}
            }
        }
        view
    }

    /// The answer for `name` (any case, with or without the trailing dot) under the
    /// cluster domain `domain`.
    pub fn lookup(&self, name: &str, domain: &str) -> Lookup {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let Some(rest) = name.strip_suffix(domain.as_str()).and_then(|r| {
            if r.is_empty() {
                Some(r)
            } else {
                r.strip_suffix('.')
            }
        }) else {
            return Lookup::Forward;
        };
        let labels: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('.').collect()
        };
        match labels.as_slice() {
            // The zone itself and its structural names exist without addresses.
            [] | ["svc"] | ["pod"] | [_, "svc"] | [_, "pod"] => Lookup::Found(Vec::new()),
            [svc, ns, "svc"] => match self.services.get(&(ns.to_string(), svc.to_string())) {
                Some(ips) => Lookup::Found(ips.clone()),
                None => Lookup::NxDomain,
            },
            [host, sub, ns, "svc"] => {
                let key = (ns.to_string(), sub.to_string(), host.to_string());
                match self.hostnames.get(&key) {
                    Some(ip) => Lookup::Found(vec![*ip]),
                    None => Lookup::NxDomain,
                }
            }
            // CoreDNS's `pods insecure`: the name is the address, dashes for dots.
            [dashed, _ns, "pod"] => match dashed.replace('-', ".").parse::<Ipv4Addr>() {
                Ok(ip) => Lookup::Found(vec![ip]),
                Err(_) => Lookup::NxDomain,
            },
            _ => Lookup::NxDomain,
        }
    }
}

#[cfg(test)]
mod tests;
