//! Capture settings to rules: the steps of spec §2.2 (REDIRECT mode), in `istio-iptables`'
//! order, for one address family at a time.

use std::net::IpAddr;

use crate::config::{
    CaptureConfig, Cidr, DNS_PROXY_PORT, DnsCapture, IPV6_LOOPBACK, InboundPorts, OutboundRanges,
    OwnerGroups, host_cidr,
};
use crate::rules::{Family, RuleSet, Table, chain};

const ISTIO_INBOUND: &str = chain::ISTIO_INBOUND;
const ISTIO_REDIRECT: &str = chain::ISTIO_REDIRECT;
const ISTIO_IN_REDIRECT: &str = chain::ISTIO_IN_REDIRECT;
const ISTIO_OUTPUT: &str = chain::ISTIO_OUTPUT;
const ISTIO_OUTPUT_DNS: &str = chain::ISTIO_OUTPUT_DNS;
const ISTIO_DROP: &str = chain::ISTIO_DROP;

/// Source address the proxy uses for inbound forwarding (never captured).
const INBOUND_SOURCE_V4: &str = "127.0.0.6/32";
const INBOUND_SOURCE_V6: &str = "::6/128";

/// Builds the IPv4 rules, and the IPv6 rules when the config enables IPv6.
pub fn build_all(cfg: &CaptureConfig) -> Vec<RuleSet> {
    let mut sets = vec![build(cfg, Family::V4)];
    if cfg.ipv6 {
        sets.push(build(cfg, Family::V6));
    }
    sets
}

/// Builds the rules for one family, step by step in `istio-iptables`' order.
pub fn build(cfg: &CaptureConfig, family: Family) -> RuleSet {
    let mut rs = RuleSet::new(family);
    let loopback = match family {
        Family::V4 => cfg.ipv4_loopback.to_string(),
        Family::V6 => IPV6_LOOPBACK.to_string(),
    };
    let tunnel = cfg.inbound_tunnel_port.to_string();
    skip_interfaces(&mut rs, cfg);
    drop_invalid_packets(&mut rs, cfg);
    redirect_chains(&mut rs, cfg, &tunnel);
    inbound_capture(&mut rs, &cfg.inbound);
    output_entry(&mut rs, cfg, family);
    proxy_own_traffic(&mut rs, cfg, &loopback, &tunnel);
    owner_group_filter(&mut rs, &cfg.owner_groups);
    // 14. DNS capture.
    if dns_active(cfg) {
        dns_rules(&mut rs, cfg, family);
    }
    outbound_exceptions(&mut rs, cfg, family, &loopback);
    outbound_capture(&mut rs, cfg, family);
    rs
}

/// Appends `-p <proto> --dport <port> -j <target>` to the nat table's `chain`.
fn append_port_jump(rs: &mut RuleSet, chain: &str, proto: &str, port: &str, target: &str) {
    rs.append(
        Table::Nat,
        chain,
        &["-p", proto, "--dport", port, "-j", target],
    );
}

/// Does `cidr` belong to `family`?
fn in_family(family: Family) -> impl Fn(&&Cidr) -> bool {
    move |c| c.is_ipv6() == (family == Family::V6)
}

/// Steps 1 and 2: interfaces whose traffic is not captured.
fn skip_interfaces(rs: &mut RuleSet, cfg: &CaptureConfig) {
    // 1. Excluded interfaces: nothing on them is captured, either way.
    for ifname in &cfg.exclude_interfaces {
        rs.append(
            Table::Nat,
            "PREROUTING",
            &["-i", ifname.as_str(), "-j", "RETURN"],
        );
        rs.append(
            Table::Nat,
            "OUTPUT",
            &["-o", ifname.as_str(), "-j", "RETURN"],
        );
    }
    // 2. Virtual interfaces: their traffic skips inbound capture (step 18 reroutes it outbound).
    for ifname in &cfg.reroute_virtual_interfaces {
        rs.insert(
            Table::Nat,
            "PREROUTING",
            1,
            &["-i", ifname.as_str(), "-j", "RETURN"],
        );
    }
}

/// Step 3: out-of-window packets are dropped.
fn drop_invalid_packets(rs: &mut RuleSet, cfg: &CaptureConfig) {
    // 3. Drop out-of-window packets instead of letting the kernel reset the connection.
    if cfg.drop_invalid {
        rs.append(
            Table::Mangle,
            "PREROUTING",
            &["-m", "conntrack", "--ctstate", "INVALID", "-j", ISTIO_DROP],
        );
        rs.append(Table::Mangle, ISTIO_DROP, &["-j", "DROP"]);
    }
}

/// Steps 4 to 6: the tunnel port exception and the two redirect chains.
fn redirect_chains(rs: &mut RuleSet, cfg: &CaptureConfig, tunnel: &str) {
    // 4. The tunnel port is always left to whoever listens on it.
    append_port_jump(rs, ISTIO_INBOUND, "tcp", tunnel, "RETURN");
    // 5, 6. The two redirect chains.
    let proxy_port = cfg.proxy_port.to_string();
    let inbound_port = cfg.inbound_capture_port.to_string();
    rs.append(
        Table::Nat,
        ISTIO_REDIRECT,
        &["-p", "tcp", "-j", "REDIRECT", "--to-ports", &proxy_port],
    );
    rs.append(
        Table::Nat,
        ISTIO_IN_REDIRECT,
        &["-p", "tcp", "-j", "REDIRECT", "--to-ports", &inbound_port],
    );
}

/// Step 7: inbound capture, of all ports but some or of some only.
fn inbound_capture(rs: &mut RuleSet, inbound: &InboundPorts) {
    // 7. Inbound.
    match inbound {
        InboundPorts::None => {}
        InboundPorts::AllExcept(excluded) => {
            rs.append(
                Table::Nat,
                "PREROUTING",
                &["-p", "tcp", "-j", ISTIO_INBOUND],
            );
            for port in excluded {
                let port = port.to_string();
                append_port_jump(rs, ISTIO_INBOUND, "tcp", &port, "RETURN");
            }
            rs.append(
                Table::Nat,
                ISTIO_INBOUND,
                &["-p", "tcp", "-j", ISTIO_IN_REDIRECT],
            );
        }
        InboundPorts::Only(ports) => {
            rs.append(
                Table::Nat,
                "PREROUTING",
                &["-p", "tcp", "-j", ISTIO_INBOUND],
            );
            for port in ports {
                let port = port.to_string();
                append_port_jump(rs, ISTIO_INBOUND, "tcp", &port, ISTIO_IN_REDIRECT);
            }
        }
    }
}

/// Steps 8 to 10: local traffic enters `ISTIO_OUTPUT`, where excluded ports and the
/// proxy's inbound leg to the app leave first.
fn output_entry(rs: &mut RuleSet, cfg: &CaptureConfig, family: Family) {
    let inbound_source = match family {
        Family::V4 => INBOUND_SOURCE_V4,
        Family::V6 => INBOUND_SOURCE_V6,
    };
    // 8. Every locally generated packet goes through ISTIO_OUTPUT (UDP is sorted out there).
    rs.append(Table::Nat, "OUTPUT", &["-j", ISTIO_OUTPUT]);
    // 9. Outbound port exclusions come before the loopback handling.
    for port in &cfg.outbound_ports_exclude {
        let port = port.to_string();
        append_port_jump(rs, ISTIO_OUTPUT, "tcp", &port, "RETURN");
        append_port_jump(rs, ISTIO_OUTPUT, "udp", &port, "RETURN");
    }
    // 10. The proxy's inbound leg to the app (from 127.0.0.6) must reach the app.
    rs.append(
        Table::Nat,
        ISTIO_OUTPUT,
        &["-o", "lo", "-s", inbound_source, "-j", "RETURN"],
    );
}

/// Steps 11 and 12: the proxy's own traffic goes back into the pod through the inbound
/// side when it is addressed there, and otherwise leaves uncaptured.
fn proxy_own_traffic(rs: &mut RuleSet, cfg: &CaptureConfig, loopback: &str, tunnel: &str) {
    let dns_on = dns_active(cfg);
    // "Unless an include CIDR is itself loopback", looking at both families as Istio does.
    let include_has_loopback = match &cfg.outbound_include {
        OutboundRanges::All => false,
        OutboundRanges::Only(cidrs) => cidrs.iter().any(Cidr::is_loopback),
    };
    let not_tunnel_or_dns = format!("53,{tunnel}");
    // 11, 12. The proxy's own traffic: back into the pod via the inbound side, otherwise out.
    for (flag, ids, dns_multiport) in [
        ("--uid-owner", &cfg.proxy_uids, dns_on),
        // The GID form never uses the DNS multiport match (as Istio).
        ("--gid-owner", &cfg.proxy_gids, false),
    ] {
        for id in ids {
            let id = id.as_str();
            if dns_multiport {
                rs.append(
                    Table::Nat,
                    ISTIO_OUTPUT,
                    &[
                        "-o",
                        "lo",
                        "!",
                        "-d",
                        loopback,
                        "-p",
                        "tcp",
                        "-m",
                        "multiport",
                        "!",
                        "--dports",
                        &not_tunnel_or_dns,
                        "-m",
                        "owner",
                        flag,
                        id,
                        "-j",
                        ISTIO_IN_REDIRECT,
                    ],
                );
            } else {
                rs.append(
                    Table::Nat,
                    ISTIO_OUTPUT,
                    &[
                        "-o",
                        "lo",
                        "!",
                        "-d",
                        loopback,
                        "-p",
                        "tcp",
                        "!",
                        "--dport",
                        tunnel,
                        "-m",
                        "owner",
                        flag,
                        id,
                        "-j",
                        ISTIO_IN_REDIRECT,
                    ],
                );
            }
            if !include_has_loopback {
                if dns_on {
                    // A localhost DNS server must still be reachable through the capture of
                    // port 53, so app → lo:53 over TCP is not short-circuited here.
                    rs.append(
                        Table::Nat,
                        ISTIO_OUTPUT,
                        &[
                            "-o", "lo", "-p", "tcp", "!", "--dport", "53", "-m", "owner", "!",
                            flag, id, "-j", "RETURN",
                        ],
                    );
                } else {
                    rs.append(
                        Table::Nat,
                        ISTIO_OUTPUT,
                        &["-o", "lo", "-m", "owner", "!", flag, id, "-j", "RETURN"],
                    );
                }
            }
            // Everything else the proxy sends leaves untouched: this prevents loops.
            rs.append(
                Table::Nat,
                ISTIO_OUTPUT,
                &["-m", "owner", flag, id, "-j", "RETURN"],
            );
        }
    }
}

/// Step 13: the owner-group filter.
fn owner_group_filter(rs: &mut RuleSet, owner_groups: &OwnerGroups) {
    // 13. Owner-group filter.
    match owner_groups {
        OwnerGroups::All => {}
        OwnerGroups::AllExcept(groups) => {
            for group in groups {
                rs.append(
                    Table::Nat,
                    ISTIO_OUTPUT,
                    &["-m", "owner", "--gid-owner", group.as_str(), "-j", "RETURN"],
                );
            }
        }
        OwnerGroups::Only(groups) => {
            let mut spec: Vec<&str> = Vec::new();
            for group in groups {
                spec.extend(["-m", "owner", "!", "--gid-owner", group.as_str()]);
            }
            spec.extend(["-j", "RETURN"]);
            rs.append(Table::Nat, ISTIO_OUTPUT, &spec);
        }
    }
}

/// Steps 15 to 17: loopback destinations and excluded CIDRs leave, always-captured ports
/// are redirected.
fn outbound_exceptions(rs: &mut RuleSet, cfg: &CaptureConfig, family: Family, loopback: &str) {
    // 15. Loopback destinations (app → its own sidecar's admin port, localhost peers).
    rs.append(Table::Nat, ISTIO_OUTPUT, &["-d", loopback, "-j", "RETURN"]);
    // 16. Excluded CIDRs, before the inclusions.
    for cidr in cfg.outbound_exclude.iter().filter(in_family(family)) {
        let cidr = cidr.to_string();
        rs.append(Table::Nat, ISTIO_OUTPUT, &["-d", &cidr, "-j", "RETURN"]);
    }
    // 17. Ports always captured.
    for port in &cfg.outbound_ports_include {
        let port = port.to_string();
        append_port_jump(rs, ISTIO_OUTPUT, "tcp", &port, ISTIO_REDIRECT);
    }
}

/// Step 18: the included CIDRs (or everything) are redirected to the proxy.
fn outbound_capture(rs: &mut RuleSet, cfg: &CaptureConfig, family: Family) {
    // 18. Included CIDRs; traffic from virtual interfaces is treated as outbound.
    match &cfg.outbound_include {
        OutboundRanges::All => {
            rs.append(Table::Nat, ISTIO_OUTPUT, &["-j", ISTIO_REDIRECT]);
            for ifname in &cfg.reroute_virtual_interfaces {
                rs.insert(
                    Table::Nat,
                    "PREROUTING",
                    1,
                    &["-i", ifname.as_str(), "-j", ISTIO_REDIRECT],
                );
            }
        }
        OutboundRanges::Only(cidrs) => {
            for cidr in cidrs.iter().filter(in_family(family)) {
                let cidr = cidr.to_string();
                for ifname in &cfg.reroute_virtual_interfaces {
                    rs.insert(
                        Table::Nat,
                        "PREROUTING",
                        1,
                        &["-i", ifname.as_str(), "-d", &cidr, "-j", ISTIO_REDIRECT],
                    );
                }
                rs.append(
                    Table::Nat,
                    ISTIO_OUTPUT,
                    &["-d", &cidr, "-j", ISTIO_REDIRECT],
                );
            }
        }
    }
}

/// DNS capture is on and has something to capture.
fn dns_active(cfg: &CaptureConfig) -> bool {
    match &cfg.dns {
        DnsCapture::Off => false,
        DnsCapture::All => true,
        DnsCapture::Servers(servers) => !servers.is_empty(),
    }
}

/// Step 14: redirect DNS to the agent and split its UDP flows into two conntrack zones, so the
/// app ↔ agent and agent ↔ upstream legs of one query never collide in conntrack.
fn dns_rules(rs: &mut RuleSet, cfg: &CaptureConfig, family: Family) {
    let dns_port = DNS_PROXY_PORT.to_string();
    let servers: Vec<String> = match &cfg.dns {
        DnsCapture::Servers(servers) => servers
            .iter()
            .filter(|s| {
                matches!(
                    (s, family),
                    (IpAddr::V4(_), Family::V4) | (IpAddr::V6(_), Family::V6)
                )
            })
            .map(|s| host_cidr(*s).to_string())
            .collect(),
        DnsCapture::All | DnsCapture::Off => Vec::new(),
    };
    let all = cfg.dns == DnsCapture::All;

    rs.append(Table::Raw, "OUTPUT", &["-j", ISTIO_OUTPUT_DNS]);
    if all || !servers.is_empty() {
        rs.append(Table::Nat, ISTIO_OUTPUT, &["-j", ISTIO_OUTPUT_DNS]);
    }
    if all {
        rs.append(
            Table::Nat,
            ISTIO_OUTPUT_DNS,
            &[
                "-p",
                "tcp",
                "--dport",
                "53",
                "-j",
                "REDIRECT",
                "--to-ports",
                &dns_port,
            ],
        );
        rs.append(
            Table::Nat,
            ISTIO_OUTPUT_DNS,
            &[
                "-p",
                "udp",
                "--dport",
                "53",
                "-j",
                "REDIRECT",
                "--to-port",
                &dns_port,
            ],
        );
    } else {
        for server in &servers {
            rs.append(
                Table::Nat,
                ISTIO_OUTPUT_DNS,
                &[
                    "-p",
                    "tcp",
                    "--dport",
                    "53",
                    "-d",
                    server,
                    "-j",
                    "REDIRECT",
                    "--to-ports",
                    &dns_port,
                ],
            );
        }
        for server in &servers {
            rs.append(
                Table::Nat,
                ISTIO_OUTPUT_DNS,
                &[
                    "-p",
                    "udp",
                    "--dport",
                    "53",
                    "-d",
                    server,
                    "-j",
                    "REDIRECT",
                    "--to-port",
                    &dns_port,
                ],
            );
        }
    }
    // Zone 1: proxy ↔ upstream resolvers; zone 2: app ↔ agent.
    for (flag, ids) in [
        ("--uid-owner", &cfg.proxy_uids),
        ("--gid-owner", &cfg.proxy_gids),
    ] {
        for id in ids {
            let id = id.as_str();
            rs.append(
                Table::Raw,
                ISTIO_OUTPUT_DNS,
                &[
                    "-p", "udp", "--dport", "53", "-m", "owner", flag, id, "-j", "CT", "--zone",
                    "1",
                ],
            );
            rs.append(
                Table::Raw,
                ISTIO_OUTPUT_DNS,
                &[
                    "-p", "udp", "--sport", &dns_port, "-m", "owner", flag, id, "-j", "CT",
                    "--zone", "2",
                ],
            );
        }
    }
    if all {
        rs.append(Table::Raw, "PREROUTING", &["-j", ISTIO_INBOUND]);
        rs.append(
            Table::Raw,
            ISTIO_OUTPUT_DNS,
            &["-p", "udp", "--dport", "53", "-j", "CT", "--zone", "2"],
        );
        rs.append(
            Table::Raw,
            ISTIO_INBOUND,
            &["-p", "udp", "--sport", "53", "-j", "CT", "--zone", "1"],
        );
    } else {
        if !servers.is_empty() {
            rs.append(Table::Raw, "PREROUTING", &["-j", ISTIO_INBOUND]);
        }
        for server in &servers {
            rs.append(
                Table::Raw,
                ISTIO_OUTPUT_DNS,
                &[
                    "-p", "udp", "--dport", "53", "-d", server, "-j", "CT", "--zone", "2",
                ],
            );
            rs.append(
                Table::Raw,
                ISTIO_INBOUND,
                &[
                    "-p", "udp", "--sport", "53", "-s", server, "-j", "CT", "--zone", "1",
                ],
            );
        }
    }
}
