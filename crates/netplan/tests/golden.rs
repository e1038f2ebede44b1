//! Golden tests: the exact `iptables-restore` text for each capture setting (spec §2.2), one
//! insta snapshot per setting, and the worked example of spec §2.3 verbatim.

use std::net::IpAddr;

use podrun_netplan::{CaptureConfig, CaptureInput, Family, HostFacts, Table, build, build_all};

/// The injector's default `istio-init` arguments (spec §1.7).
fn default_args() -> CaptureInput {
    CaptureInput {
        proxy_port: Some("15001".into()),
        inbound_capture_port: Some("15006".into()),
        proxy_uid: Some("1337".into()),
        interception_mode: Some("REDIRECT".into()),
        outbound_ip_ranges_include: Some("*".into()),
        outbound_ip_ranges_exclude: Some(String::new()),
        inbound_ports_include: Some("*".into()),
        inbound_ports_exclude: Some("15090,15021,15020".into()),
        ..CaptureInput::default()
    }
}

fn render(input: &CaptureInput, host: &HostFacts) -> String {
    let cfg = CaptureConfig::parse(input, host).expect("valid settings");
    let mut out = String::new();
    for set in build_all(&cfg) {
        out.push_str(&format!("# {}\n", set.family.restore_command()));
        out.push_str(&set.restore_text());
    }
    out
}

fn v4(input: CaptureInput) -> String {
    render(&input, &HostFacts::default())
}

const WORKED_EXAMPLE: &str = "\
* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
";

#[test]
fn worked_example_default_injection_arguments_matches_spec_verbatim() {
    let cfg = CaptureConfig::parse(&default_args(), &HostFacts::default()).expect("valid");
    assert_eq!(build(&cfg, Family::V4).restore_text(), WORKED_EXAMPLE);
    // Only IPv4 for an IPv4 pod.
    assert_eq!(build_all(&cfg).len(), 1);
    // The defaults of `CaptureConfig` are exactly these settings.
    assert_eq!(cfg, CaptureConfig::default());
}

#[test]
fn worked_example_final_chain_contents_match_spec_table() {
    let cfg = CaptureConfig::default();
    let rules = build(&cfg, Family::V4);
    let chains = rules.final_chains(Table::Nat);
    let find = |name: &str| -> Vec<String> {
        chains
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    };
    assert_eq!(find("PREROUTING"), ["-p tcp -j ISTIO_INBOUND"]);
    assert_eq!(
        find("ISTIO_INBOUND"),
        [
            "-p tcp --dport 15008 -j RETURN",
            "-p tcp --dport 15090 -j RETURN",
            "-p tcp --dport 15021 -j RETURN",
            "-p tcp --dport 15020 -j RETURN",
            "-p tcp -j ISTIO_IN_REDIRECT",
        ]
    );
    assert_eq!(
        find("ISTIO_IN_REDIRECT"),
        ["-p tcp -j REDIRECT --to-ports 15006"]
    );
    assert_eq!(find("OUTPUT"), ["-j ISTIO_OUTPUT"]);
    assert_eq!(
        find("ISTIO_REDIRECT"),
        ["-p tcp -j REDIRECT --to-ports 15001"]
    );
    let output = find("ISTIO_OUTPUT");
    assert_eq!(output.len(), 9);
    assert_eq!(
        output.first().map(String::as_str),
        Some("-o lo -s 127.0.0.6/32 -j RETURN")
    );
    assert_eq!(output.last().map(String::as_str), Some("-j ISTIO_REDIRECT"));
}

#[test]
fn default_settings_snapshot() {
    insta::assert_snapshot!("default", v4(default_args()));
}

#[test]
fn inbound_ports_include_list_redirects_only_those_ports() {
    let text = v4(CaptureInput {
        inbound_ports_include: Some("4000,5000".into()),
        ..default_args()
    });
    assert!(text.contains("-A ISTIO_INBOUND -p tcp --dport 4000 -j ISTIO_IN_REDIRECT\n"));
    assert!(
        !text.contains("--dport 15090"),
        "-d only applies with -b '*'"
    );
    insta::assert_snapshot!("inbound_ports_include", text);
}

#[test]
fn inbound_ports_empty_disables_inbound_capture() {
    let text = v4(CaptureInput {
        inbound_ports_include: Some(String::new()),
        ..default_args()
    });
    assert!(!text.contains("PREROUTING"));
    insta::assert_snapshot!("inbound_ports_empty", text);
}

#[test]
fn outbound_cidr_include_list_redirects_only_those_ranges() {
    let text = v4(CaptureInput {
        outbound_ip_ranges_include: Some("10.96.0.0/12,192.168.0.0/16".into()),
        ..default_args()
    });
    assert!(!text.contains("-A ISTIO_OUTPUT -j ISTIO_REDIRECT"));
    insta::assert_snapshot!("outbound_ranges_include", text);
}

#[test]
fn outbound_cidr_exclude_returns_before_redirect() {
    insta::assert_snapshot!(
        "outbound_ranges_exclude",
        v4(CaptureInput {
            outbound_ip_ranges_exclude: Some("10.0.0.0/8,172.16.0.0/12".into()),
            ..default_args()
        })
    );
}

#[test]
fn outbound_cidr_empty_disables_outbound_capture() {
    let text = v4(CaptureInput {
        outbound_ip_ranges_include: Some(String::new()),
        ..default_args()
    });
    assert!(!text.contains("-j ISTIO_REDIRECT"));
    insta::assert_snapshot!("outbound_ranges_empty", text);
}

#[test]
fn outbound_ports_include_and_exclude() {
    insta::assert_snapshot!(
        "outbound_ports",
        v4(CaptureInput {
            outbound_ports_include: Some("80,443".into()),
            outbound_ports_exclude: Some("22,9000:9100".into()),
            ..default_args()
        })
    );
}

#[test]
fn kube_virt_interfaces_are_rerouted_as_outbound_in_reverse_insert_order() {
    let input = CaptureInput {
        reroute_virtual_interfaces: Some("eth1,eth2".into()),
        ..default_args()
    };
    let cfg = CaptureConfig::parse(&input, &HostFacts::default()).expect("valid");
    let rules = build(&cfg, Family::V4);
    let chains = rules.final_chains(Table::Nat);
    let prerouting = &chains
        .iter()
        .find(|(c, _)| c == "PREROUTING")
        .expect("PREROUTING")
        .1;
    assert_eq!(
        prerouting,
        &[
            "-i eth2 -j ISTIO_REDIRECT",
            "-i eth1 -j ISTIO_REDIRECT",
            "-i eth2 -j RETURN",
            "-i eth1 -j RETURN",
            "-p tcp -j ISTIO_INBOUND",
        ]
    );
    insta::assert_snapshot!("kube_virt_interfaces", v4(input));
}

#[test]
fn kube_virt_interfaces_with_cidrs() {
    insta::assert_snapshot!(
        "kube_virt_interfaces_cidrs",
        v4(CaptureInput {
            reroute_virtual_interfaces: Some("eth1".into()),
            outbound_ip_ranges_include: Some("10.0.0.0/8,172.16.0.0/12".into()),
            ..default_args()
        })
    );
}

#[test]
fn excluded_interfaces_return_first() {
    insta::assert_snapshot!(
        "exclude_interfaces",
        v4(CaptureInput {
            exclude_interfaces: Some("eth1,net2".into()),
            ..default_args()
        })
    );
}

#[test]
fn several_proxy_uids_and_gids() {
    insta::assert_snapshot!(
        "uid_gid_lists",
        v4(CaptureInput {
            proxy_uid: Some("3,4".into()),
            proxy_gid: Some("1,2".into()),
            ..default_args()
        })
    );
}

fn dns_host() -> HostFacts {
    HostFacts {
        dns_servers: vec![
            "127.0.0.53".parse().expect("ip"),
            "fd00::53".parse().expect("ip"),
        ],
        ..HostFacts::default()
    }
}

#[test]
fn dns_capture_to_resolv_conf_servers() {
    let input = CaptureInput {
        proxy_uid: Some("3,4".into()),
        proxy_gid: Some("1,2".into()),
        outbound_ip_ranges_include: Some(String::new()),
        redirect_dns: Some(true),
        ..default_args()
    };
    let text = render(&input, &dns_host());
    assert!(
        text.contains(
            "-m multiport ! --dports 53,15008 -m owner --uid-owner 3 -j ISTIO_IN_REDIRECT"
        )
    );
    assert!(text.contains("! --dport 15008 -m owner --gid-owner 1 -j ISTIO_IN_REDIRECT"));
    let raw = text.find("* raw").expect("raw block");
    let nat = text.find("* nat").expect("nat block");
    assert!(nat < raw, "blocks in alphabetical table order");
    insta::assert_snapshot!("dns_servers", text);
}

#[test]
fn dns_capture_of_all_port_53_traffic() {
    let input = CaptureInput {
        redirect_dns: Some(true),
        capture_all_dns: Some(true),
        ..default_args()
    };
    insta::assert_snapshot!("dns_capture_all", render(&input, &HostFacts::default()));
}

#[test]
fn dns_capture_without_servers_stays_off() {
    let input = CaptureInput {
        redirect_dns: Some(true),
        ..default_args()
    };
    assert_eq!(v4(input), v4(default_args()));
}

#[test]
fn drop_invalid_adds_a_mangle_block_before_nat() {
    let text = v4(CaptureInput {
        drop_invalid: Some(true),
        ..default_args()
    });
    assert!(text.starts_with("# iptables-restore\n* mangle\n-N ISTIO_DROP\n"));
    insta::assert_snapshot!("drop_invalid", text);
}

#[test]
fn ipv6_rules_use_v6_loopback_and_source_and_only_v6_ranges() {
    let host = HostFacts {
        ipv6: true,
        ..HostFacts::default()
    };
    let input = CaptureInput {
        outbound_ip_ranges_include: Some("10.0.0.0/8,fd00::/8".into()),
        outbound_ip_ranges_exclude: Some("10.1.0.0/16,fd00:1::/32".into()),
        ..default_args()
    };
    let text = render(&input, &host);
    let v6 = &text[text.find("# ip6tables-restore").expect("v6 part")..];
    assert!(v6.contains("-A ISTIO_OUTPUT -o lo -s ::6/128 -j RETURN"));
    assert!(v6.contains("! -d ::1/128"));
    assert!(!v6.contains("10.0.0.0/8"));
    insta::assert_snapshot!("ipv6", text);
}

#[test]
fn loopback_include_keeps_app_loopback_traffic_captured() {
    let text = v4(CaptureInput {
        outbound_ip_ranges_include: Some("127.1.2.3/32".into()),
        ..default_args()
    });
    assert!(!text.contains("! --uid-owner"));
    insta::assert_snapshot!("loopback_include", text);
}

#[test]
fn ipv4_loopback_cidr_from_environment() {
    insta::assert_snapshot!(
        "ipv4_loopback_cidr",
        v4(CaptureInput {
            ipv4_loopback_cidr: Some("127.0.0.0/8".into()),
            ..default_args()
        })
    );
}

#[test]
fn owner_groups_include_is_one_rule() {
    let text = v4(CaptureInput {
        owner_groups_include: Some("java,1234".into()),
        ..default_args()
    });
    assert!(text.contains(
        "-A ISTIO_OUTPUT -m owner ! --gid-owner java -m owner ! --gid-owner 1234 -j RETURN\n"
    ));
    insta::assert_snapshot!("owner_groups_include", text);
}

#[test]
fn owner_groups_exclude_is_one_rule_per_group() {
    insta::assert_snapshot!(
        "owner_groups_exclude",
        v4(CaptureInput {
            owner_groups_exclude: Some("888,ops".into()),
            ..default_args()
        })
    );
}

#[test]
fn custom_ports_flow_into_every_rule() {
    let text = v4(CaptureInput {
        proxy_port: Some("16001".into()),
        inbound_capture_port: Some("16006".into()),
        inbound_tunnel_port: Some("16008".into()),
        ..default_args()
    });
    for needle in [
        "--to-ports 16001",
        "--to-ports 16006",
        "--dport 16008 -j RETURN",
        "! --dport 16008",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    assert!(!text.contains("1500"), "no default port left: {text}");
}

#[test]
fn dual_stack_dns_servers_land_in_their_own_family() {
    // Dual-stack DNS: the IPv6 server only lands in the IPv6 rules.
    let host = HostFacts {
        ipv6: true,
        ..dns_host()
    };
    let cfg = CaptureConfig::parse(
        &CaptureInput {
            redirect_dns: Some(true),
            ..default_args()
        },
        &host,
    )
    .expect("valid");
    let v4 = build(&cfg, Family::V4).restore_text();
    let v6 = build(&cfg, Family::V6).restore_text();
    let server: IpAddr = "fd00::53".parse().expect("ip");
    assert!(!v4.contains(&server.to_string()));
    assert!(v6.contains("-d fd00::53/128"));
    assert!(v4.contains("-d 127.0.0.53/32"));
}
