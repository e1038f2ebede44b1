//! Parsing of the `istio-iptables` settings: defaults, environment, and clear errors.

use std::collections::HashMap;

use podrun_netplan::{
    CaptureConfig, CaptureInput, ConfigError, DnsCapture, HostFacts, InboundPorts, OutboundRanges,
    OwnerGroups, PortSpec,
};

fn parse(input: CaptureInput) -> Result<CaptureConfig, ConfigError> {
    CaptureConfig::parse(&input, &HostFacts::default())
}

#[test]
fn nothing_given_means_no_capture_and_istio_defaults() {
    let cfg = parse(CaptureInput::default()).expect("valid");
    assert_eq!(
        (
            cfg.proxy_port,
            cfg.inbound_capture_port,
            cfg.inbound_tunnel_port
        ),
        (15001, 15006, 15008)
    );
    assert_eq!(cfg.inbound, InboundPorts::None);
    assert_eq!(cfg.outbound_include, OutboundRanges::Only(vec![]));
    assert_eq!(cfg.proxy_uids[0].as_str(), "1337");
    assert_eq!(cfg.proxy_gids, cfg.proxy_uids, "GID defaults to the UID");
    assert_eq!(cfg.dns, DnsCapture::Off);
    assert_eq!(cfg.owner_groups, OwnerGroups::All);
}

#[test]
fn envoy_user_uid_is_the_default_proxy_uid() {
    let host = HostFacts {
        envoy_user_uid: Some(2001),
        ..HostFacts::default()
    };
    let cfg = CaptureConfig::parse(&CaptureInput::default(), &host).expect("valid");
    assert_eq!(cfg.proxy_uids[0].as_str(), "2001");
}

#[test]
fn environment_fills_only_what_flags_left_unset() {
    let env: HashMap<&str, &str> = HashMap::from([
        ("INBOUND_CAPTURE_PORT", "16006"),
        ("ISTIO_INBOUND_PORTS", "*"),
        ("ISTIO_LOCAL_EXCLUDE_PORTS", "15090,15021"),
        ("ISTIO_SERVICE_CIDR", "10.96.0.0/12"),
        ("PROXY_UID", "999"),
        ("ISTIO_META_DNS_CAPTURE", "true"),
        ("INVALID_DROP", "1"),
        ("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", "ops"),
    ]);
    let mut input = CaptureInput {
        proxy_uid: Some("1337".into()),
        ..CaptureInput::default()
    };
    input
        .fill_from_env(|k| env.get(k).map(|v| (*v).to_owned()))
        .expect("valid env");
    let host = HostFacts {
        dns_servers: vec!["10.96.0.10".parse().expect("ip")],
        ..HostFacts::default()
    };
    let cfg = CaptureConfig::parse(&input, &host).expect("valid");
    assert_eq!(cfg.inbound_capture_port, 16006);
    assert_eq!(
        cfg.proxy_uids[0].as_str(),
        "1337",
        "the flag wins over PROXY_UID"
    );
    assert_eq!(
        cfg.inbound,
        InboundPorts::AllExcept(vec![PortSpec::single(15090), PortSpec::single(15021)])
    );
    assert!(matches!(cfg.outbound_include, OutboundRanges::Only(ref c) if c.len() == 1));
    assert_eq!(
        cfg.dns,
        DnsCapture::Servers(vec!["10.96.0.10".parse().expect("ip")])
    );
    assert!(cfg.drop_invalid);
    assert!(matches!(cfg.owner_groups, OwnerGroups::AllExcept(ref g) if g[0].as_str() == "ops"));
}

#[test]
fn bad_boolean_in_environment_is_an_error() {
    let mut input = CaptureInput::default();
    let err = input
        .fill_from_env(|k| (k == "REDIRECT_DNS").then(|| "maybe".to_owned()))
        .expect_err("bad bool");
    assert!(err.to_string().contains("REDIRECT_DNS"), "{err}");
}

#[test]
fn bad_values_name_the_flag_and_the_value() {
    let cases: Vec<(CaptureInput, &str)> = vec![
        (
            CaptureInput {
                proxy_port: Some("0".into()),
                ..Default::default()
            },
            "invalid port \"0\" for -p",
        ),
        (
            CaptureInput {
                proxy_port: Some("70000".into()),
                ..Default::default()
            },
            "for -p",
        ),
        (
            CaptureInput {
                inbound_ports_include: Some("80,abc".into()),
                ..Default::default()
            },
            "\"abc\" for -b",
        ),
        (
            CaptureInput {
                outbound_ports_exclude: Some("90:80".into()),
                ..Default::default()
            },
            "\"90:80\" for -o",
        ),
        (
            CaptureInput {
                outbound_ip_ranges_include: Some("10.0.0.1".into()),
                ..Default::default()
            },
            "CIDR \"10.0.0.1\" for -i",
        ),
        (
            CaptureInput {
                outbound_ip_ranges_exclude: Some("*".into()),
                ..Default::default()
            },
            "excluding every outbound range",
        ),
        (
            CaptureInput {
                interception_mode: Some("TPROXY".into()),
                ..Default::default()
            },
            "TPROXY is not supported",
        ),
        (
            CaptureInput {
                interception_mode: Some("redirect-ish".into()),
                ..Default::default()
            },
            "expected REDIRECT or TPROXY",
        ),
        (
            CaptureInput {
                exclude_interfaces: Some("a very long name".into()),
                ..Default::default()
            },
            "interface name",
        ),
        (
            CaptureInput {
                proxy_uid: Some("13 37".into()),
                ..Default::default()
            },
            "user or group",
        ),
        (
            CaptureInput {
                proxy_uid: Some(",,".into()),
                ..Default::default()
            },
            "at least one id",
        ),
        (
            CaptureInput {
                ipv4_loopback_cidr: Some("10.0.0.1/32".into()),
                ..Default::default()
            },
            "IPv4 loopback CIDR",
        ),
        (
            CaptureInput {
                ipv4_loopback_cidr: Some("127.0.0.1/4".into()),
                ..Default::default()
            },
            "IPv4 loopback CIDR",
        ),
        (
            CaptureInput {
                owner_groups_include: Some("a".into()),
                owner_groups_exclude: Some("b".into()),
                ..Default::default()
            },
            "cannot both be set",
        ),
        (
            CaptureInput {
                owner_groups_include: Some(
                    (0..65).map(|i| i.to_string()).collect::<Vec<_>>().join(","),
                ),
                ..Default::default()
            },
            "at most 64",
        ),
    ];
    for (input, needle) in cases {
        let err = parse(input.clone()).expect_err(needle);
        assert!(
            err.to_string().contains(needle),
            "{input:?}: {err} lacks {needle:?}"
        );
    }
}

#[test]
fn lists_tolerate_spaces_and_empty_items() {
    let cfg = parse(CaptureInput {
        inbound_ports_include: Some(" 80, ,443,".into()),
        outbound_ip_ranges_include: Some("10.0.0.0/8, fd00::/8".into()),
        ..Default::default()
    })
    .expect("valid");
    assert_eq!(
        cfg.inbound,
        InboundPorts::Only(vec![PortSpec::single(80), PortSpec::single(443)])
    );
    let OutboundRanges::Only(cidrs) = cfg.outbound_include else {
        panic!("list expected")
    };
    assert_eq!(
        cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["10.0.0.0/8", "fd00::/8"]
    );
}
