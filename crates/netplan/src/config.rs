//! Capture settings: the raw strings `istio-iptables` takes as flags or environment variables
//! ([`CaptureInput`]), and the validated [`CaptureConfig`] the rule builder works from.
//!
//! Parsing is pure: environment variables are read through a caller-supplied lookup function and
//! facts about the host (pod addresses, resolv.conf servers) arrive as [`HostFacts`], so every
//! case can be tested without touching the process environment.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Environment variable names, as `istio-iptables` reads them. A flag given on the command line
/// wins over its variable; where two names are listed, the first set one wins.
pub mod env {
    /// Outbound capture port (`-p`). Older `istio-iptables` releases read it.
    pub const ENVOY_PORT: &str = "ENVOY_PORT";
    /// Inbound capture port (`-z`).
    pub const INBOUND_CAPTURE_PORT: &str = "INBOUND_CAPTURE_PORT";
    /// Inbound tunnel (HBONE) port (`-e`).
    pub const INBOUND_TUNNEL_PORT: &str = "INBOUND_TUNNEL_PORT";
    /// Proxy UIDs (`-u`).
    pub const PROXY_UID: &str = "PROXY_UID";
    /// Proxy GIDs (`-g`).
    pub const PROXY_GID: &str = "PROXY_GID";
    /// User whose UID is the default for `-u`.
    pub const ENVOY_USER: &str = "ENVOY_USER";
    /// Interception mode (`-m`).
    pub const ISTIO_INBOUND_INTERCEPTION_MODE: &str = "ISTIO_INBOUND_INTERCEPTION_MODE";
    /// Interception mode, second spelling.
    pub const INBOUND_INTERCEPTION_MODE: &str = "INBOUND_INTERCEPTION_MODE";
    /// TPROXY mark (`-t`).
    pub const ISTIO_INBOUND_TPROXY_MARK: &str = "ISTIO_INBOUND_TPROXY_MARK";
    /// TPROXY mark, second spelling.
    pub const INBOUND_TPROXY_MARK: &str = "INBOUND_TPROXY_MARK";
    /// TPROXY route table (`-r`).
    pub const ISTIO_INBOUND_TPROXY_ROUTE_TABLE: &str = "ISTIO_INBOUND_TPROXY_ROUTE_TABLE";
    /// Inbound ports to capture (`-b`).
    pub const ISTIO_INBOUND_PORTS: &str = "ISTIO_INBOUND_PORTS";
    /// Inbound ports to leave alone (`-d`).
    pub const ISTIO_LOCAL_EXCLUDE_PORTS: &str = "ISTIO_LOCAL_EXCLUDE_PORTS";
    /// Interfaces excluded from all capture (`-c`).
    pub const ISTIO_EXCLUDE_INTERFACES: &str = "ISTIO_EXCLUDE_INTERFACES";
    /// Outbound CIDRs to capture (`-i`).
    pub const ISTIO_SERVICE_CIDR: &str = "ISTIO_SERVICE_CIDR";
    /// Outbound CIDRs to leave alone (`-x`).
    pub const ISTIO_SERVICE_EXCLUDE_CIDR: &str = "ISTIO_SERVICE_EXCLUDE_CIDR";
    /// Outbound ports always captured (`-q`).
    pub const ISTIO_OUTBOUND_PORTS: &str = "ISTIO_OUTBOUND_PORTS";
    /// Outbound ports never captured (`-o`).
    pub const ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE: &str = "ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE";
    /// Virtual interfaces whose inbound traffic counts as outbound (`-k`).
    pub const KUBE_VIRT_INTERFACES: &str = "KUBE_VIRT_INTERFACES";
    /// DNS capture (`--redirect-dns`).
    pub const REDIRECT_DNS: &str = "REDIRECT_DNS";
    /// DNS capture, the proxy-metadata spelling the injector passes.
    pub const ISTIO_META_DNS_CAPTURE: &str = "ISTIO_META_DNS_CAPTURE";
    /// Capture all port-53 traffic (`--capture-all-dns`).
    pub const CAPTURE_ALL_DNS: &str = "CAPTURE_ALL_DNS";
    /// Drop conntrack-INVALID packets (`--drop-invalid`).
    pub const DROP_INVALID: &str = "DROP_INVALID";
    /// Drop conntrack-INVALID packets, older spelling.
    pub const INVALID_DROP: &str = "INVALID_DROP";
    /// Dual-stack (`--dual-stack`).
    pub const DUAL_STACK: &str = "DUAL_STACK";
    /// Dual-stack, agent spelling.
    pub const ISTIO_DUAL_STACK: &str = "ISTIO_DUAL_STACK";
    /// Dual-stack, older agent spelling.
    pub const ISTIO_AGENT_DUAL_STACK: &str = "ISTIO_AGENT_DUAL_STACK";
    /// What counts as an IPv4 loopback destination (env only).
    pub const ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: &str = "ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR";
    /// Capture only traffic of these groups (env only).
    pub const ISTIO_OUTBOUND_OWNER_GROUPS: &str = "ISTIO_OUTBOUND_OWNER_GROUPS";
    /// Capture traffic of all groups but these (env only).
    pub const ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: &str = "ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE";
}

/// Default outbound capture port (`-p`).
pub const DEFAULT_PROXY_PORT: u16 = 15001;
/// Default inbound capture port (`-z`).
pub const DEFAULT_INBOUND_CAPTURE_PORT: u16 = 15006;
/// Default inbound tunnel (HBONE) port (`-e`), always exempt from inbound capture.
pub const DEFAULT_INBOUND_TUNNEL_PORT: u16 = 15008;
/// Default proxy UID and GID.
pub const DEFAULT_PROXY_ID: &str = "1337";
/// Port the agent's DNS proxy listens on when DNS capture is on.
pub const DNS_PROXY_PORT: u16 = 15053;
/// At most this many include owner groups: they become one rule with one match each, and
/// kernels limit the matches per rule.
pub const MAX_OWNER_GROUPS_INCLUDE: usize = 64;

/// The raw settings as typed: one optional string per `istio-iptables` flag. `None` means "not
/// given"; [`CaptureInput::fill_from_env`] then looks at the environment, and
/// [`CaptureConfig::parse`] applies the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureInput {
    /// `-p`: outbound capture port.
    pub proxy_port: Option<String>,
    /// `-z`: inbound capture port.
    pub inbound_capture_port: Option<String>,
    /// `-e`: inbound tunnel port.
    pub inbound_tunnel_port: Option<String>,
    /// `-u`: proxy UIDs, comma separated.
    pub proxy_uid: Option<String>,
    /// `-g`: proxy GIDs, comma separated (default: the UIDs).
    pub proxy_gid: Option<String>,
    /// `-m`: `REDIRECT` or `TPROXY`.
    pub interception_mode: Option<String>,
    /// `-t`: TPROXY mark.
    pub tproxy_mark: Option<String>,
    /// `-r`: TPROXY route table.
    pub tproxy_route_table: Option<String>,
    /// `-b`: inbound ports to capture (`*` = all, empty = none).
    pub inbound_ports_include: Option<String>,
    /// `-d`: inbound ports to leave alone (only with `-b *`).
    pub inbound_ports_exclude: Option<String>,
    /// `-i`: outbound CIDRs to capture (`*` = all, empty = none).
    pub outbound_ip_ranges_include: Option<String>,
    /// `-x`: outbound CIDRs to leave alone.
    pub outbound_ip_ranges_exclude: Option<String>,
    /// `-q`: outbound ports always captured.
    pub outbound_ports_include: Option<String>,
    /// `-o`: outbound ports never captured.
    pub outbound_ports_exclude: Option<String>,
    /// `-k`: virtual interfaces whose inbound traffic counts as outbound.
    pub reroute_virtual_interfaces: Option<String>,
    /// `-c`: interfaces excluded from all capture.
    pub exclude_interfaces: Option<String>,
    /// `--redirect-dns`: capture DNS to the agent.
    pub redirect_dns: Option<bool>,
    /// `--capture-all-dns`: capture all port-53 traffic, not only to resolv.conf servers.
    pub capture_all_dns: Option<bool>,
    /// `--drop-invalid`: drop conntrack-INVALID packets.
    pub drop_invalid: Option<bool>,
    /// `--dual-stack`: write IPv6 rules too.
    pub dual_stack: Option<bool>,
    /// `ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR`.
    pub ipv4_loopback_cidr: Option<String>,
    /// `ISTIO_OUTBOUND_OWNER_GROUPS`.
    pub owner_groups_include: Option<String>,
    /// `ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE`.
    pub owner_groups_exclude: Option<String>,
}

/// Facts about the pod's network namespace that the rules depend on, found by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The pod's first non-loopback, non-link-local address is IPv6 (or, with dual-stack, any is).
    pub ipv6: bool,
    /// Name servers from the pod's resolv.conf (only needed for DNS capture).
    pub dns_servers: Vec<IpAddr>,
    /// Numeric UID of the `ENVOY_USER` user (default `istio-proxy`), if that user exists; the
    /// default for `-u` when it is not given.
    pub envoy_user_uid: Option<u32>,
}

/// How inbound connections reach the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterceptionMode {
    /// nat-table `REDIRECT` to the inbound capture port (the only mode built here).
    Redirect,
}

/// One port or an inclusive `first:last` range, as iptables' `--dport` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortSpec {
    /// First port.
    pub first: u16,
    /// Last port (equal to `first` for a single port).
    pub last: u16,
}

/// A CIDR as written (`10.0.0.1/8` stays as is, like Istio prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Address part.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

/// A network interface name, checked to be a token iptables accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface(String);

/// A user or group as `--uid-owner`/`--gid-owner` takes it: a number or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner(String);

/// Which inbound ports are captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundPorts {
    /// No inbound capture (`-b ""`).
    None,
    /// All ports but these (`-b '*' -d …`).
    AllExcept(Vec<PortSpec>),
    /// Only these ports.
    Only(Vec<PortSpec>),
}

/// Which outbound destinations are captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundRanges {
    /// Everything (`-i '*'`).
    All,
    /// Only these CIDRs; empty means no outbound capture.
    Only(Vec<Cidr>),
}

/// Whose outbound traffic is captured, by the sending process's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerGroups {
    /// Every group (the default `*`).
    All,
    /// Every group except these.
    AllExcept(Vec<Owner>),
    /// Only these groups.
    Only(Vec<Owner>),
}

/// DNS capture to the agent on [`DNS_PROXY_PORT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsCapture {
    /// Off (the default).
    Off,
    /// Only traffic to these name servers.
    Servers(Vec<IpAddr>),
    /// All port-53 traffic.
    All,
}

/// Validated capture settings. Build with [`CaptureConfig::parse`]; [`CaptureConfig::default`]
/// gives the settings of the spec's worked example (default injection arguments, IPv4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Outbound capture port (`ISTIO_REDIRECT` target).
    pub proxy_port: u16,
    /// Inbound capture port (`ISTIO_IN_REDIRECT` target).
    pub inbound_capture_port: u16,
    /// Tunnel port, always exempt from inbound capture.
    pub inbound_tunnel_port: u16,
    /// Processes with these UIDs are never captured.
    pub proxy_uids: Vec<Owner>,
    /// Processes with these GIDs are never captured.
    pub proxy_gids: Vec<Owner>,
    /// Inbound interception mode.
    pub mode: InterceptionMode,
    /// Inbound capture.
    pub inbound: InboundPorts,
    /// Outbound destinations captured.
    pub outbound_include: OutboundRanges,
    /// Outbound destinations never captured.
    pub outbound_exclude: Vec<Cidr>,
    /// Outbound ports always captured.
    pub outbound_ports_include: Vec<PortSpec>,
    /// Outbound ports never captured.
    pub outbound_ports_exclude: Vec<PortSpec>,
    /// Virtual interfaces whose inbound traffic counts as outbound.
    pub reroute_virtual_interfaces: Vec<Interface>,
    /// Interfaces excluded from all capture.
    pub exclude_interfaces: Vec<Interface>,
    /// DNS capture.
    pub dns: DnsCapture,
    /// Drop conntrack-INVALID packets in the mangle table.
    pub drop_invalid: bool,
    /// Also write IPv6 rules.
    pub ipv6: bool,
    /// What counts as an IPv4 loopback destination.
    pub ipv4_loopback: Cidr,
    /// Owner-group filter for outbound capture.
    pub owner_groups: OwnerGroups,
}

/// A setting that cannot be used, with the flag and the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A port is not a number in 1..=65535 (or a `first:last` range of them).
    #[error(
        "invalid port {value:?} for {setting}: expected a number 1-65535 or a range FIRST:LAST"
    )]
    Port {
        /// Flag or variable.
        setting: &'static str,
        /// Offending value.
        value: String,
    },
    /// A CIDR does not parse.
    #[error("invalid CIDR {value:?} for {setting}: expected ADDRESS/PREFIX, e.g. 10.96.0.0/12")]
    Cidr {
        /// Flag or variable.
        setting: &'static str,
        /// Offending value.
        value: String,
    },
    /// `-x '*'`.
    #[error(
        "invalid value \"*\" for {setting}: excluding every outbound range is not allowed; use -i \"\" to disable outbound capture"
    )]
    ExcludeAll {
        /// Flag or variable.
        setting: &'static str,
    },
    /// Interface name not usable by iptables.
    #[error(
        "invalid interface name {value:?} for {setting}: 1-15 characters, no spaces, '/' or ','"
    )]
    Interface {
        /// Flag or variable.
        setting: &'static str,
        /// Offending value.
        value: String,
    },
    /// A UID/GID/group that is neither a number nor a plain name.
    #[error("invalid user or group {value:?} for {setting}: expected a number or a name")]
    Owner {
        /// Flag or variable.
        setting: &'static str,
        /// Offending value.
        value: String,
    },
    /// No proxy UID at all.
    #[error(
        "{setting} must list at least one id: traffic of the proxy itself must never be captured"
    )]
    NoProxyId {
        /// Flag or variable.
        setting: &'static str,
    },
    /// Unknown interception mode.
    #[error("invalid interception mode {value:?} for -m: expected REDIRECT or TPROXY")]
    Mode {
        /// Offending value.
        value: String,
    },
    /// TPROXY asked for.
    #[error(
        "interception mode TPROXY is not supported: only REDIRECT is built (use -m REDIRECT or annotation sidecar.istio.io/interceptionMode: REDIRECT)"
    )]
    TproxyUnsupported,
    /// Not a number where one is needed.
    #[error("invalid number {value:?} for {setting}")]
    Number {
        /// Flag or variable.
        setting: &'static str,
        /// Offending value.
        value: String,
    },
    /// Not a boolean.
    #[error("invalid boolean {value:?} for {setting}: expected true or false")]
    Bool {
        /// Flag or variable.
        setting: &'static str,
        /// Offending value.
        value: String,
    },
    /// Loopback CIDR that is not IPv4 loopback or has a mask outside 8..=32.
    #[error(
        "invalid {setting} {value:?}: expected an IPv4 loopback CIDR with a prefix of 8-32, e.g. 127.0.0.1/32"
    )]
    LoopbackCidr {
        /// Flag or variable.
        setting: &'static str,
        /// Offending value.
        value: String,
    },
    /// Both owner-group lists set.
    #[error(
        "ISTIO_OUTBOUND_OWNER_GROUPS ({include:?}) and ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE ({exclude:?}) cannot both be set: the exclude list only applies when all groups (\"*\") are captured"
    )]
    OwnerGroupsConflict {
        /// Include list.
        include: String,
        /// Exclude list.
        exclude: String,
    },
    /// Too many include groups.
    #[error(
        "ISTIO_OUTBOUND_OWNER_GROUPS lists {count} groups; at most {MAX_OWNER_GROUPS_INCLUDE} are allowed"
    )]
    TooManyOwnerGroups {
        /// How many were given.
        count: usize,
    },
}

// === impl CaptureInput ===

impl CaptureInput {
    /// Fills every setting not given as a flag from the environment, read through `lookup`
    /// (pass `|name| std::env::var(name).ok()` in a real process).
    pub fn fill_from_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let first = |names: &[&str]| names.iter().find_map(|name| lookup(name));
        let fill = |slot: &mut Option<String>, names: &[&str]| {
            if slot.is_none() {
                *slot = first(names);
            }
        };
        fill(&mut self.proxy_port, &[env::ENVOY_PORT]);
        fill(&mut self.inbound_capture_port, &[env::INBOUND_CAPTURE_PORT]);
        fill(&mut self.inbound_tunnel_port, &[env::INBOUND_TUNNEL_PORT]);
        fill(&mut self.proxy_uid, &[env::PROXY_UID]);
        fill(&mut self.proxy_gid, &[env::PROXY_GID]);
        fill(
            &mut self.interception_mode,
            &[
                env::ISTIO_INBOUND_INTERCEPTION_MODE,
                env::INBOUND_INTERCEPTION_MODE,
            ],
        );
        fill(
            &mut self.tproxy_mark,
            &[env::ISTIO_INBOUND_TPROXY_MARK, env::INBOUND_TPROXY_MARK],
        );
        fill(
            &mut self.tproxy_route_table,
            &[env::ISTIO_INBOUND_TPROXY_ROUTE_TABLE],
        );
        fill(&mut self.inbound_ports_include, &[env::ISTIO_INBOUND_PORTS]);
        fill(
            &mut self.inbound_ports_exclude,
            &[env::ISTIO_LOCAL_EXCLUDE_PORTS],
        );
        fill(
            &mut self.outbound_ip_ranges_include,
            &[env::ISTIO_SERVICE_CIDR],
        );
        fill(
            &mut self.outbound_ip_ranges_exclude,
            &[env::ISTIO_SERVICE_EXCLUDE_CIDR],
        );
        fill(
            &mut self.outbound_ports_include,
            &[env::ISTIO_OUTBOUND_PORTS],
        );
        fill(
            &mut self.outbound_ports_exclude,
            &[env::ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE],
        );
        fill(
            &mut self.reroute_virtual_interfaces,
            &[env::KUBE_VIRT_INTERFACES],
        );
        fill(
            &mut self.exclude_interfaces,
            &[env::ISTIO_EXCLUDE_INTERFACES],
        );
        fill(
            &mut self.ipv4_loopback_cidr,
            &[env::ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR],
        );
        fill(
            &mut self.owner_groups_include,
            &[env::ISTIO_OUTBOUND_OWNER_GROUPS],
        );
        fill(
            &mut self.owner_groups_exclude,
            &[env::ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE],
        );
        let fill_bool =
            |slot: &mut Option<bool>, names: &[&'static str]| -> Result<(), ConfigError> {
                if slot.is_some() {
                    return Ok(());
                }
                for name in names {
                    if let Some(value) = lookup(name) {
                        *slot = Some(parse_bool(name, &value)?);
                        return Ok(());
                    }
                }
                Ok(())
            };
        fill_bool(
            &mut self.redirect_dns,
            &[env::REDIRECT_DNS, env::ISTIO_META_DNS_CAPTURE],
        )?;
        fill_bool(&mut self.capture_all_dns, &[env::CAPTURE_ALL_DNS])?;
        fill_bool(
            &mut self.drop_invalid,
            &[env::DROP_INVALID, env::INVALID_DROP],
        )?;
        fill_bool(
            &mut self.dual_stack,
            &[
                env::DUAL_STACK,
                env::ISTIO_DUAL_STACK,
                env::ISTIO_AGENT_DUAL_STACK,
            ],
        )?;
        Ok(())
    }
}

/// Parses a boolean the way Go's `strconv.ParseBool` does (what `istio-iptables` uses).
pub fn parse_bool(setting: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(false),
        _ => Err(ConfigError::Bool {
            setting,
            value: value.to_owned(),
        }),
    }
}

// === impl CaptureConfig ===

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            proxy_port: DEFAULT_PROXY_PORT,
            inbound_capture_port: DEFAULT_INBOUND_CAPTURE_PORT,
            inbound_tunnel_port: DEFAULT_INBOUND_TUNNEL_PORT,
            proxy_uids: vec![Owner(DEFAULT_PROXY_ID.to_owned())],
            proxy_gids: vec![Owner(DEFAULT_PROXY_ID.to_owned())],
            mode: InterceptionMode::Redirect,
            inbound: InboundPorts::AllExcept(
                [15090, 15021, 15020]
                    .into_iter()
                    .map(PortSpec::single)
                    .collect(),
            ),
            outbound_include: OutboundRanges::All,
            outbound_exclude: Vec::new(),
            outbound_ports_include: Vec::new(),
            outbound_ports_exclude: Vec::new(),
            reroute_virtual_interfaces: Vec::new(),
            exclude_interfaces: Vec::new(),
            dns: DnsCapture::Off,
            drop_invalid: false,
            ipv6: false,
            ipv4_loopback: Cidr {
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                prefix: 32,
            },
            owner_groups: OwnerGroups::All,
        }
    }
}

impl CaptureConfig {
    /// Validates the raw settings and applies `istio-iptables`' defaults.
    pub fn parse(input: &CaptureInput, host: &HostFacts) -> Result<Self, ConfigError> {
        let port = |setting: &'static str, value: &Option<String>, default: u16| match value {
            None => Ok(default),
            Some(v) if v.trim().is_empty() => Ok(default),
            Some(v) => parse_single_port(setting, v),
        };
        let proxy_port = port("-p", &input.proxy_port, DEFAULT_PROXY_PORT)?;
        let inbound_capture_port = port(
            "-z",
            &input.inbound_capture_port,
            DEFAULT_INBOUND_CAPTURE_PORT,
        )?;
        let inbound_tunnel_port = port(
            "-e",
            &input.inbound_tunnel_port,
            DEFAULT_INBOUND_TUNNEL_PORT,
        )?;

        let uid_text = match input.proxy_uid.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => v.to_owned(),
            _ => host
                .envoy_user_uid
                .map_or_else(|| DEFAULT_PROXY_ID.to_owned(), |u| u.to_string()),
        };
        let proxy_uids = parse_owners("-u", &uid_text)?;
        if proxy_uids.is_empty() {
            return Err(ConfigError::NoProxyId { setting: "-u" });
        }
        // Istio: "GID = UID" when -g is not given.
        let proxy_gids = match input.proxy_gid.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => parse_owners("-g", v)?,
            _ => proxy_uids.clone(),
        };

        let mode = match input.interception_mode.as_deref().map(str::trim) {
            None | Some("") | Some("REDIRECT") => InterceptionMode::Redirect,
            Some("TPROXY") => return Err(ConfigError::TproxyUnsupported),
            Some(other) => {
                return Err(ConfigError::Mode {
                    value: other.to_owned(),
                });
            }
        };
        // Only meaningful with TPROXY, but a typo should still be reported.
        if let Some(v) = input
            .tproxy_mark
            .as_deref()
            .filter(|v| !v.trim().is_empty())
        {
            parse_number("-t", v)?;
        }
        if let Some(v) = input
            .tproxy_route_table
            .as_deref()
            .filter(|v| !v.trim().is_empty())
        {
            parse_number("-r", v)?;
        }

        let include = input.inbound_ports_include.as_deref().unwrap_or("").trim();
        let exclude_ports =
            parse_ports("-d", input.inbound_ports_exclude.as_deref().unwrap_or(""))?;
        let inbound = if include.is_empty() {
            InboundPorts::None
        } else if include == "*" {
            InboundPorts::AllExcept(exclude_ports)
        } else {
            InboundPorts::Only(parse_ports("-b", include)?)
        };

        let include = input
            .outbound_ip_ranges_include
            .as_deref()
            .unwrap_or("")
            .trim();
        let outbound_include = if include == "*" {
            OutboundRanges::All
        } else {
            OutboundRanges::Only(parse_cidrs("-i", include)?)
        };
        let exclude = input
            .outbound_ip_ranges_exclude
            .as_deref()
            .unwrap_or("")
            .trim();
        if exclude == "*" {
            return Err(ConfigError::ExcludeAll { setting: "-x" });
        }
        let outbound_exclude = parse_cidrs("-x", exclude)?;

        let outbound_ports_include =
            parse_ports("-q", input.outbound_ports_include.as_deref().unwrap_or(""))?;
        let outbound_ports_exclude =
            parse_ports("-o", input.outbound_ports_exclude.as_deref().unwrap_or(""))?;
        let reroute_virtual_interfaces = parse_interfaces(
            "-k",
            input.reroute_virtual_interfaces.as_deref().unwrap_or(""),
        )?;
        let exclude_interfaces =
            parse_interfaces("-c", input.exclude_interfaces.as_deref().unwrap_or(""))?;

        let dns = if input.redirect_dns.unwrap_or(false) {
            if input.capture_all_dns.unwrap_or(false) {
                DnsCapture::All
            } else if host.dns_servers.is_empty() {
                // As Istio: asked for, but nothing to capture, so capture stays off.
                DnsCapture::Off
            } else {
                DnsCapture::Servers(host.dns_servers.clone())
            }
        } else {
            DnsCapture::Off
        };

        let loopback_text = input
            .ipv4_loopback_cidr
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or("127.0.0.1/32");
        let ipv4_loopback = parse_loopback_cidr(loopback_text)?;

        let owner_groups = parse_owner_groups(
            input.owner_groups_include.as_deref(),
            input.owner_groups_exclude.as_deref(),
        )?;

        Ok(CaptureConfig {
            proxy_port,
            inbound_capture_port,
            inbound_tunnel_port,
            proxy_uids,
            proxy_gids,
            mode,
            inbound,
            outbound_include,
            outbound_exclude,
            outbound_ports_include,
            outbound_ports_exclude,
            reroute_virtual_interfaces,
            exclude_interfaces,
            dns,
            drop_invalid: input.drop_invalid.unwrap_or(false),
            ipv6: host.ipv6,
            ipv4_loopback,
            owner_groups,
        })
    }
}

/// Splits a comma list the way `istio-iptables` does: empty items are dropped. Items are also
/// trimmed, so `"80, 443"` works.
fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_number(setting: &'static str, value: &str) -> Result<u32, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Number {
        setting,
        value: value.to_owned(),
    })
}

fn parse_single_port(setting: &'static str, value: &str) -> Result<u16, ConfigError> {
    match value.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ConfigError::Port {
            setting,
            value: value.to_owned(),
        }),
    }
}

fn parse_ports(setting: &'static str, list: &str) -> Result<Vec<PortSpec>, ConfigError> {
    split(list)
        .map(|item| PortSpec::parse(setting, item))
        .collect()
}

fn parse_cidrs(setting: &'static str, list: &str) -> Result<Vec<Cidr>, ConfigError> {
    split(list)
        .map(|item| {
            item.parse::<Cidr>().map_err(|()| ConfigError::Cidr {
                setting,
                value: item.to_owned(),
            })
        })
        .collect()
}

fn parse_interfaces(setting: &'static str, list: &str) -> Result<Vec<Interface>, ConfigError> {
    split(list)
        .map(|item| Interface::parse(setting, item))
        .collect()
}

fn parse_owners(setting: &'static str, list: &str) -> Result<Vec<Owner>, ConfigError> {
    split(list)
        .map(|item| Owner::parse(setting, item))
        .collect()
}

fn parse_loopback_cidr(value: &str) -> Result<Cidr, ConfigError> {
    let err = || ConfigError::LoopbackCidr {
        setting: env::ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR,
        value: value.to_owned(),
    };
    let cidr: Cidr = value.parse().map_err(|()| err())?;
    match cidr.addr {
        IpAddr::V4(a) if a.is_loopback() && (8..=32).contains(&cidr.prefix) => Ok(cidr),
        _ => Err(err()),
    }
}

fn parse_owner_groups(
    include: Option<&str>,
    exclude: Option<&str>,
) -> Result<OwnerGroups, ConfigError> {
    let include = include
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or("*");
    let exclude = exclude.map(str::trim).unwrap_or("");
    if include == "*" {
        let groups = parse_owners(env::ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE, exclude)?;
        return Ok(if groups.is_empty() {
            OwnerGroups::All
        } else {
            OwnerGroups::AllExcept(groups)
        });
    }
    if !exclude.is_empty() {
        return Err(ConfigError::OwnerGroupsConflict {
            include: include.to_owned(),
            exclude: exclude.to_owned(),
        });
    }
    let groups = parse_owners(env::ISTIO_OUTBOUND_OWNER_GROUPS, include)?;
    if groups.len() > MAX_OWNER_GROUPS_INCLUDE {
        return Err(ConfigError::TooManyOwnerGroups {
            count: groups.len(),
        });
    }
    Ok(OwnerGroups::Only(groups))
}

// === impl PortSpec ===

impl PortSpec {
    /// One port.
    pub fn single(port: u16) -> Self {
        PortSpec {
            first: port,
            last: port,
        }
    }

    fn parse(setting: &'static str, item: &str) -> Result<Self, ConfigError> {
        let err = || ConfigError::Port {
            setting,
            value: item.to_owned(),
        };
        let one = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(err)
        };
        match item.split_once(':') {
            None => Ok(PortSpec::single(one(item)?)),
            Some((a, b)) => {
                let (first, last) = (one(a)?, one(b)?);
                if first > last {
                    return Err(err());
                }
                Ok(PortSpec { first, last })
            }
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

// === impl Cidr ===

impl Cidr {
    /// Whether the address part is a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.addr.is_loopback()
    }

    /// Whether this is an IPv6 CIDR.
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }
}

impl FromStr for Cidr {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (addr, prefix) = s.trim().split_once('/').ok_or(())?;
        let addr: IpAddr = addr.parse().map_err(|_| ())?;
        // A leading zero or sign would be accepted by `parse` but not by Go's ParsePrefix.
        if prefix.is_empty()
            || !prefix.bytes().all(|b| b.is_ascii_digit())
            || (prefix.len() > 1 && prefix.starts_with('0'))
        {
            return Err(());
        }
        let prefix: u8 = prefix.parse().map_err(|_| ())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `addr/32` or `addr/128`: a single host.
pub fn host_cidr(addr: IpAddr) -> Cidr {
    let prefix = if addr.is_ipv4() { 32 } else { 128 };
    Cidr { addr, prefix }
}

/// `::1/128`, the IPv6 loopback destination.
pub const IPV6_LOOPBACK: Cidr = Cidr {
    addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
    prefix: 128,
};

// === impl Interface ===

impl Interface {
    fn parse(setting: &'static str, item: &str) -> Result<Self, ConfigError> {
        // IFNAMSIZ is 16 including the NUL; iptables also accepts a trailing `+` wildcard.
        let ok = !item.is_empty()
            && item.len() <= 15
            && item
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b',' && b != b'"' && b != b'\'');
        if ok {
            Ok(Interface(item.to_owned()))
        } else {
            Err(ConfigError::Interface {
                setting,
                value: item.to_owned(),
            })
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl Owner ===

impl Owner {
    fn parse(setting: &'static str, item: &str) -> Result<Self, ConfigError> {
        let ok = !item.is_empty()
            && item.len() <= 64
            && item
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && !item.starts_with('-');
        if ok {
            Ok(Owner(item.to_owned()))
        } else {
            Err(ConfigError::Owner {
                setting,
                value: item.to_owned(),
            })
        }
    }

    /// The id or name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
