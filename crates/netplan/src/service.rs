//! Service load balancing as kube-proxy's iptables mode does it, as data and as
//! `iptables-restore` text, plus ClusterIP allocation from a service CIDR.
//!
//! The shape follows kube-proxy: a `SERVICES` chain matched from `PREROUTING` (traffic
//! from pods arriving over the bridge) and `OUTPUT` (host traffic) sends each
//! ClusterIP:port to a `SVC-<hash>` chain, which picks one `SEP-<hash>` chain per endpoint
//! with `statistic --mode random --probability 1/n` (the last one unconditionally), and
//! the `SEP` chain DNATs to the endpoint. Traffic that must be source-NATed is marked in
//! `MARK-MASQ` and masqueraded in `POSTROUTING`: traffic from outside the pod CIDR (the
//! host), and hairpin traffic (a pod reaching its own Service and landing on itself,
//! which without SNAT would see a reply from itself to itself and drop it). A Service
//! port without endpoints is rejected in the filter table, so clients fail fast instead of
//! sending into the void.
//!
//! Every chain name starts with [`ProxyConfig::prefix`] (`PODRUN-`, or `PODRUN<pid>-` for
//! one podrun process, where kube-proxy writes `KUBE-`), so the rules of one owner can be
//! found, replaced and deleted without touching anyone else's. Nothing here runs a process or reads a file:
//! the node gathers the live chain names, runs `iptables-restore --noflush` with
//! [`restore_text`] and ensures the [`jump_rules`] with `iptables -C`/`-I`.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;
use std::str::FromStr;

/// kube-proxy's mark for "masquerade this packet".
pub const MASQ_MARK: &str = "0x4000";

/// The default chain-name prefix.
pub const DEFAULT_PREFIX: &str = "PODRUN-";

/// Length of the hash in `SVC-`/`SEP-` chain names.
const HASH_LEN: usize = 10;

/// The longest prefix that still leaves room for `SVC-` plus the hash within iptables'
/// 28-character chain-name limit (room for a per-instance prefix such as
/// `PODRUN4194304-`).
pub const MAX_PREFIX_LEN: usize = 28 - 4 - HASH_LEN;

/// Errors of service planning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// A CIDR that does not parse.
    #[error("invalid CIDR {0:?}: want an IPv4 address and a prefix length, e.g. 198.19.0.0/16")]
    InvalidCidr(String),
    /// A chain prefix iptables would not accept.
    #[error(
        "invalid chain prefix {0:?}: want 1 to {MAX_PREFIX_LEN} characters of A-Z, 0-9, '-' or '_'"
    )]
    InvalidPrefix(String),
    /// A requested ClusterIP outside the service CIDR.
    #[error(
        "failed to allocate IP {ip}: provided IP is not in the valid range. The range of valid IPs is {cidr}"
    )]
    OutOfRange {
        /// Requested address.
        ip: Ipv4Addr,
        /// The service CIDR.
        cidr: Ipv4Cidr,
    },
    /// A requested ClusterIP already in use.
    #[error("failed to allocate IP {0}: provided IP is already allocated")]
    AlreadyAllocated(Ipv4Addr),
    /// Every address is taken.
    #[error("failed to allocate a serviceIP: range is full ({0})")]
    RangeFull(Ipv4Cidr),
}

/// An IPv4 network: address with its host bits cleared, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

/// Transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// One backend of a Service port: a ready pod's IP and the resolved target port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// Pod IP.
    pub ip: Ipv4Addr,
    /// Container port (the Service port's `targetPort`, resolved for this pod).
    pub port: u16,
}

/// One port of a Service with a ClusterIP, and where it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRules {
    /// The port's name (empty for a single unnamed port).
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The Service port.
    pub port: u16,
    /// Ready endpoints, in a stable order.
    pub endpoints: Vec<Endpoint>,
}

/// A Service with a ClusterIP, as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRules {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The allocated ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// Its ports.
    pub ports: Vec<PortRules>,
}

/// Where the rules live and what counts as "from a pod".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Prefix of every chain (`PODRUN-`, `PODRUN<pid>-`).
    pub prefix: String,
    /// The pod CIDR: sources outside it (the host) are masqueraded.
    pub pod_cidr: Ipv4Cidr,
    /// The host bridge pods send through; `PREROUTING` only looks at traffic from it.
    pub bridge: String,
}

/// A rule that must exist once in a built-in chain, ensured outside `iptables-restore`
/// because `--noflush` would append a duplicate on every run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpRule {
    /// `nat` or `filter`.
    pub table: &'static str,
    /// Built-in chain.
    pub chain: &'static str,
    /// Match and target words.
    pub spec: Vec<String>,
}

// === impl Ipv4Cidr ===

impl Ipv4Cidr {
    /// The network `addr/prefix` with host bits cleared; `None` when `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self {
            network: Ipv4Addr::from(u32::from(addr) & Self::mask_of(prefix)),
            prefix,
        })
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.prefix) == u32::from(self.network)
    }

    /// The broadcast (last) address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !Self::mask_of(self.prefix))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ServiceError::InvalidCidr(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Self::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

// === impl Protocol ===

impl Protocol {
    /// From a Service port's `protocol` (`TCP` when unset, as the API server defaults).
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The word iptables' `-p` and `-m` take.
    pub fn iptables_word(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

// === impl ProxyConfig ===

impl ProxyConfig {
    /// A config with a checked prefix.
    pub fn new(
        prefix: &str,
        pod_cidr: Ipv4Cidr,
        bridge: impl Into<String>,
    ) -> Result<Self, ServiceError> {
        let ok = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(ServiceError::InvalidPrefix(prefix.to_string()));
        }
        Ok(Self {
            prefix: prefix.to_string(),
            pod_cidr,
            bridge: bridge.into(),
        })
    }

    /// `<prefix>SERVICES`: the entry chain (nat and filter).
    pub fn services_chain(&self) -> String {
        format!("{}SERVICES", self.prefix)
    }

    /// `<prefix>MARK-MASQ`.
    pub fn mark_masq_chain(&self) -> String {
        format!("{}MARK-MASQ", self.prefix)
    }

    /// `<prefix>POSTROUTING`.
    pub fn postrouting_chain(&self) -> String {
        format!("{}POSTROUTING", self.prefix)
    }

    /// `<prefix>SVC-<hash>` of one Service port.
    pub fn svc_chain(&self, namespace: &str, name: &str, port: &PortRules) -> String {
        let key = format!(
            "{namespace}/{name}:{}{}",
            port.name,
            port.protocol.iptables_word()
        );
        format!("{}SVC-{}", self.prefix, hash_name(&key))
    }

    /// `<prefix>SEP-<hash>` of one endpoint of a Service port.
    pub fn sep_chain(&self, namespace: &str, name: &str, port: &PortRules, ep: Endpoint) -> String {
        let key = format!(
            "{namespace}/{name}:{}{}{}:{}",
            port.name,
            port.protocol.iptables_word(),
            ep.ip,
            ep.port
        );
        format!("{}SEP-{}", self.prefix, hash_name(&key))
    }

    /// Whether a chain name is one of ours. Only the exact shapes we create count, so
    /// other chains that happen to share the prefix are never flushed or deleted.
    pub fn owns_chain(&self, chain: &str) -> bool {
        let Some(rest) = chain.strip_prefix(&self.prefix) else {
            return false;
        };
        matches!(rest, "SERVICES" | "MARK-MASQ" | "POSTROUTING")
            || rest
                .strip_prefix("SVC-")
                .or_else(|| rest.strip_prefix("SEP-"))
                .is_some_and(|h| {
                    h.len() == HASH_LEN
                        && h.bytes()
                            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
                })
    }
}

/// kube-proxy names chains after a hash of the service port (base32 of SHA-256, 16
/// characters); 50 bits of a 64-bit FNV-1a in base32 are as stable and leave room for a
/// longer prefix.
fn hash_name(key: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..HASH_LEN)
        .map(|i| ALPHABET[((h >> (64 - 5 * (i as u32 + 1))) & 0x1f) as usize] as char)
        .collect()
}

/// The first free address of `cidr` for a new ClusterIP, or the `requested` one if it is
/// in range and free. The network and broadcast addresses are never handed out.
pub fn allocate_cluster_ip(
    cidr: Ipv4Cidr,
    used: &BTreeSet<Ipv4Addr>,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, ServiceError> {
    if let Some(ip) = requested {
        if !cidr.contains(ip) || ip == cidr.network() || ip == cidr.broadcast() {
            return Err(ServiceError::OutOfRange { ip, cidr });
        }
        if used.contains(&ip) {
            return Err(ServiceError::AlreadyAllocated(ip));
        }
        return Ok(ip);
    }
    let first = u32::from(cidr.network()).saturating_add(1);
    let last = u32::from(cidr.broadcast()).saturating_sub(1);
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
        .ok_or(ServiceError::RangeFull(cidr))
}

/// The rules in built-in chains that lead to ours: `PREROUTING` (from the bridge) and
/// `OUTPUT` to `SERVICES`, `POSTROUTING` to our masquerade chain, and the filter table's
/// `FORWARD`/`OUTPUT` to the reject rules of Services without endpoints.
pub fn jump_rules(config: &ProxyConfig) -> Vec<JumpRule> {
    let comment = |c: &str| ["-m", "comment", "--comment", c].map(String::from).to_vec();
    let mut out = Vec::new();
    let services = config.services_chain();
    let mut from_bridge = comment("podrun service portals");
    from_bridge.extend(["-i", &config.bridge, "-j", &services].map(String::from));
    out.push(JumpRule {
        table: "nat",
        chain: "PREROUTING",
        spec: from_bridge,
    });
    let mut host = comment("podrun service portals");
    host.extend(["-j", &services].map(String::from));
    out.push(JumpRule {
        table: "nat",
        chain: "OUTPUT",
        spec: host,
    });
    let mut post = comment("podrun postrouting rules");
    post.extend(["-j".to_string(), config.postrouting_chain()]);
    out.push(JumpRule {
        table: "nat",
        chain: "POSTROUTING",
        spec: post,
    });
    for chain in ["FORWARD", "OUTPUT"] {
        let mut spec = comment("podrun service portals");
        spec.extend(["-m", "conntrack", "--ctstate", "NEW", "-j", &services].map(String::from));
        out.push(JumpRule {
            table: "filter",
            chain,
            spec,
        });
    }
    out
}

/// The `iptables-restore --noflush` input that makes our chains exactly what `services`
/// need. `live_chains` are the names of our chains that exist now (from `iptables-save`):
/// those no longer needed are flushed and deleted in the same atomic call.
pub fn restore_text(
    config: &ProxyConfig,
    services: &[ServiceRules],
    live_chains: &BTreeSet<String>,
) -> String {
    let svc_chain = config.services_chain();
    let masq = config.mark_masq_chain();
    let post = config.postrouting_chain();
    let pod_cidr = config.pod_cidr.to_string();

    let mut nat_chains: Vec<String> = vec![svc_chain.clone(), masq.clone(), post.clone()];
    let mut nat_rules: Vec<String> = vec![
        format!("-A {post} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
        // Clear the mark so a packet that is re-routed is not masqueraded twice.
        format!("-A {post} -j MARK --xor-mark {MASQ_MARK}"),
        format!(
            "-A {post} -m comment --comment \"podrun service traffic requiring SNAT\" -j MASQUERADE --random-fully"
        ),
        format!("-A {masq} -j MARK --or-mark {MASQ_MARK}"),
    ];
    let mut filter_rules: Vec<String> = Vec::new();

    let mut sorted: Vec<&ServiceRules> = services.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for svc in sorted {
        for port in &svc.ports {
            let port_name = if port.name.is_empty() {
                format!("{}/{}", svc.namespace, svc.name)
            } else {
                format!("{}/{}:{}", svc.namespace, svc.name, port.name)
            };
            let proto = port.protocol.iptables_word();
            let dest = format!(
                "-d {}/32 -p {proto} -m {proto} --dport {}",
                svc.cluster_ip, port.port
            );
            if port.endpoints.is_empty() {
                filter_rules.push(format!(
                    "-A {svc_chain} -m comment --comment \"{port_name} has no endpoints\" {dest} -j REJECT --reject-with icmp-port-unreachable"
                ));
                continue;
            }
            let chain = config.svc_chain(&svc.namespace, &svc.name, port);
            nat_chains.push(chain.clone());
            nat_rules.push(format!(
                "-A {svc_chain} -m comment --comment \"{port_name} cluster IP\" {dest} -j {chain}"
            ));
            nat_rules.push(format!(
                "-A {chain} -m comment --comment \"{port_name} cluster IP\" ! -s {pod_cidr} {dest} -j {masq}"
            ));
            let n = port.endpoints.len();
            for (i, ep) in port.endpoints.iter().enumerate() {
                let sep = config.sep_chain(&svc.namespace, &svc.name, port, *ep);
                nat_chains.push(sep.clone());
                let mut rule = format!(
                    "-A {chain} -m comment --comment \"{port_name} -> {}:{}\"",
                    ep.ip, ep.port
                );
                let remaining = n - i;
                if remaining > 1 {
                    let _ = write!(
                        rule,
                        " -m statistic --mode random --probability {:.10}",
                        1.0 / remaining as f64
                    );
                }
                let _ = write!(rule, " -j {sep}");
                nat_rules.push(rule);
                nat_rules.push(format!(
                    "-A {sep} -m comment --comment \"{port_name}\" -s {}/32 -j {masq}",
                    ep.ip
                ));
                nat_rules.push(format!(
                    "-A {sep} -m comment --comment \"{port_name}\" -p {proto} -m {proto} -j DNAT --to-destination {}:{}",
                    ep.ip, ep.port
                ));
            }
        }
    }

    let wanted: BTreeSet<&String> = nat_chains.iter().collect();
    // The filter table holds only SERVICES; every other live chain of ours is nat.
    let stale: Vec<&String> = live_chains
        .iter()
        .filter(|c| config.owns_chain(c) && !wanted.contains(c))
        .collect();

    let mut out = String::new();
    out.push_str("*nat\n");
    for c in nat_chains.iter().chain(stale.iter().copied()) {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    for r in &nat_rules {
        let _ = writeln!(out, "{r}");
    }
    for c in &stale {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n*filter\n");
    let _ = writeln!(out, ":{svc_chain} - [0:0]");
    for r in &filter_rules {
        let _ = writeln!(out, "{r}");
    }
    out.push_str("COMMIT\n");
    out
}

/// The `iptables-restore --noflush` input that empties and deletes our chains (after the
/// [`jump_rules`] were removed). `nat_chains` are our live nat chains; the filter table
/// only ever holds `SERVICES`.
pub fn cleanup_text(
    config: &ProxyConfig,
    nat_chains: &BTreeSet<String>,
    filter_has_services: bool,
) -> String {
    let mut out = String::new();
    let ours: Vec<&String> = nat_chains.iter().filter(|c| config.owns_chain(c)).collect();
    if !ours.is_empty() {
        out.push_str("*nat\n");
        for c in &ours {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for c in &ours {
            let _ = writeln!(out, "-X {c}");
        }
        out.push_str("COMMIT\n");
    }
    if filter_has_services {
        let c = config.services_chain();
        let _ = write!(out, "*filter\n:{c} - [0:0]\n-X {c}\nCOMMIT\n");
    }
    out
}

/// Names of the chains in one table of `iptables-save` output that `config` owns.
pub fn own_chains_in_save(config: &ProxyConfig, save: &str, table: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_table = false;
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            in_table = t.trim() == table;
        } else if in_table && let Some(rest) = line.strip_prefix(':') {
            let name = rest.split_whitespace().next().unwrap_or_default();
            if config.owns_chain(name) {
                out.insert(name.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
