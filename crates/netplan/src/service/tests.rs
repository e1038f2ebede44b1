//! Golden and table tests of the Service rules and ClusterIP allocation.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::*;

fn config() -> ProxyConfig {
    ProxyConfig::new("PODRUN-", "198.18.0.0/16".parse().unwrap(), "podrun0").unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn web(endpoints: Vec<Endpoint>) -> ServiceRules {
    ServiceRules {
        namespace: "default".into(),
        name: "web".into(),
        cluster_ip: ip("198.19.0.1"),
        ports: vec![PortRules {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            endpoints,
        }],
    }
}

#[test]
fn two_endpoints_render_as_kube_proxy_does() {
    let eps = vec![
        Endpoint {
            ip: ip("198.18.0.2"),
            port: 8080,
        },
        Endpoint {
            ip: ip("198.18.0.3"),
            port: 8080,
        },
    ];
    let c = config();
    let port = &web(eps.clone()).ports[0];
    let svc = c.svc_chain("default", "web", port);
    let sep1 = c.sep_chain("default", "web", port, eps[0]);
    let sep2 = c.sep_chain("default", "web", port, eps[1]);
    let text = restore_text(&c, &[web(eps)], &BTreeSet::new());
    let expected = format!(
        r#"*nat
:PODRUN-SERVICES - [0:0]
:PODRUN-MARK-MASQ - [0:0]
:PODRUN-POSTROUTING - [0:0]
:{svc} - [0:0]
:{sep1} - [0:0]
:{sep2} - [0:0]
-A PODRUN-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A PODRUN-POSTROUTING -j MARK --xor-mark 0x4000
-A PODRUN-POSTROUTING -m comment --comment "podrun service traffic requiring SNAT" -j MASQUERADE --random-fully
-A PODRUN-MARK-MASQ -j MARK --or-mark 0x4000
-A PODRUN-SERVICES -m comment --comment "default/web:http cluster IP" -d 198.19.0.1/32 -p tcp -m tcp --dport 80 -j {svc}
-A {svc} -m comment --comment "default/web:http cluster IP" ! -s 198.18.0.0/16 -d 198.19.0.1/32 -p tcp -m tcp --dport 80 -j PODRUN-MARK-MASQ
-A {svc} -m comment --comment "default/web:http -> 198.18.0.2:8080" -m statistic --mode random --probability 0.5000000000 -j {sep1}
-A {sep1} -m comment --comment "default/web:http" -s 198.18.0.2/32 -j PODRUN-MARK-MASQ
-A {sep1} -m comment --comment "default/web:http" -p tcp -m tcp -j DNAT --to-destination 198.18.0.2:8080
-A {svc} -m comment --comment "default/web:http -> 198.18.0.3:8080" -j {sep2}
-A {sep2} -m comment --comment "default/web:http" -s 198.18.0.3/32 -j PODRUN-MARK-MASQ
-A {sep2} -m comment --comment "default/web:http" -p tcp -m tcp -j DNAT --to-destination 198.18.0.3:8080
COMMIT
*filter
:PODRUN-SERVICES - [0:0]
COMMIT
"#
    );
    assert_eq!(text, expected);
    assert!(svc.starts_with("PODRUN-SVC-") && svc.len() <= 28, "{svc}");
    assert!(sep1.starts_with("PODRUN-SEP-") && sep1 != sep2);
}

#[test]
fn probabilities_are_one_over_the_endpoints_left() {
    let eps: Vec<Endpoint> = (2..6)
        .map(|i| Endpoint {
            ip: Ipv4Addr::new(198, 18, 0, i),
            port: 80,
        })
        .collect();
    let text = restore_text(&config(), &[web(eps)], &BTreeSet::new());
    let probs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("--probability ").nth(1))
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(probs, ["0.2500000000", "0.3333333333", "0.5000000000"]);
    // The last endpoint is taken unconditionally.
    let last_jump = text
        .lines()
        .find(|l| l.contains("-> 198.18.0.5:80"))
        .unwrap();
    assert!(!last_jump.contains("statistic"), "{last_jump}");
}

#[test]
fn a_port_without_endpoints_is_rejected_in_filter_and_absent_from_nat() {
    let text = restore_text(&config(), &[web(vec![])], &BTreeSet::new());
    let (nat, filter) = text.split_once("*filter").unwrap();
    assert!(!nat.contains("198.19.0.1"), "{nat}");
    assert!(!nat.contains("SVC-"), "{nat}");
    assert_eq!(
        filter.lines().nth(2).unwrap(),
        "-A PODRUN-SERVICES -m comment --comment \"default/web:http has no endpoints\" -d 198.19.0.1/32 -p tcp -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"
    );
}

#[test]
fn stale_chains_are_flushed_and_deleted_but_foreign_ones_untouched() {
    let c = config();
    let live: BTreeSet<String> = [
        "PODRUN-SVC-AAAAAAAAAA",
        "PODRUN-SEP-BBBBBBBBBB",
        "PODRUN-EGRESS",
        "PODRUN-SERVICES",
        "KUBE-SVC-AAAAAAAAAA",
    ]
    .map(String::from)
    .into();
    let text = restore_text(&c, &[], &live);
    for stale in ["PODRUN-SVC-AAAAAAAAAA", "PODRUN-SEP-BBBBBBBBBB"] {
        assert!(text.contains(&format!(":{stale} - [0:0]\n")), "{text}");
        assert!(text.contains(&format!("-X {stale}\n")), "{text}");
    }
    assert!(!text.contains("EGRESS"), "{text}");
    assert!(!text.contains("KUBE-"), "{text}");
    assert!(!text.contains("-X PODRUN-SERVICES"), "{text}");
}

#[test]
fn unnamed_port_comment_has_no_colon_and_udp_uses_udp_match() {
    let mut svc = web(vec![Endpoint {
        ip: ip("198.18.0.9"),
        port: 53,
    }]);
    svc.ports[0].name = String::new();
    svc.ports[0].protocol = Protocol::Udp;
    svc.ports[0].port = 53;
    let text = restore_text(&config(), &[svc], &BTreeSet::new());
    assert!(text.contains("\"default/web cluster IP\" -d 198.19.0.1/32 -p udp -m udp --dport 53"));
    assert!(text.contains("-p udp -m udp -j DNAT --to-destination 198.18.0.9:53"));
}

#[test]
fn rules_do_not_depend_on_service_order() {
    let mut a = web(vec![]);
    a.name = "a".into();
    let mut b = web(vec![]);
    b.name = "b".into();
    let c = config();
    assert_eq!(
        restore_text(&c, &[a.clone(), b.clone()], &BTreeSet::new()),
        restore_text(&c, &[b, a], &BTreeSet::new())
    );
}

#[test]
fn jump_rules_cover_bridge_host_and_postrouting() {
    let jumps = jump_rules(&config());
    let text: Vec<String> = jumps
        .iter()
        .map(|j| format!("{} {} {}", j.table, j.chain, j.spec.join(" ")))
        .collect();
    assert_eq!(
        text,
        [
            "nat PREROUTING -m comment --comment podrun service portals -i podrun0 -j PODRUN-SERVICES",
            "nat OUTPUT -m comment --comment podrun service portals -j PODRUN-SERVICES",
            "nat POSTROUTING -m comment --comment podrun postrouting rules -j PODRUN-POSTROUTING",
            "filter FORWARD -m comment --comment podrun service portals -m conntrack --ctstate NEW -j PODRUN-SERVICES",
            "filter OUTPUT -m comment --comment podrun service portals -m conntrack --ctstate NEW -j PODRUN-SERVICES",
        ]
    );
}

#[test]
fn cleanup_deletes_only_our_chains() {
    let c = config();
    let live: BTreeSet<String> = ["PODRUN-SERVICES", "PODRUN-OTHER", "PODRUN-MARK-MASQ"]
        .map(String::from)
        .into();
    assert_eq!(
        cleanup_text(&c, &live, true),
        "*nat\n:PODRUN-MARK-MASQ - [0:0]\n:PODRUN-SERVICES - [0:0]\n-X PODRUN-MARK-MASQ\n-X PODRUN-SERVICES\nCOMMIT\n*filter\n:PODRUN-SERVICES - [0:0]\n-X PODRUN-SERVICES\nCOMMIT\n"
    );
    assert_eq!(cleanup_text(&c, &BTreeSet::new(), false), "");
}

#[test]
fn own_chains_are_read_from_save_output_per_table() {
    let save = "# Generated by iptables-save\n*filter\n:INPUT ACCEPT [0:0]\n:PODRUN-SERVICES - [0:0]\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:PODRUN-SERVICES - [0:0]\n:PODRUN-SVC-ABCDEFGHI2 - [0:0]\n:DOCKER - [0:0]\nCOMMIT\n";
    let c = config();
    let nat: Vec<String> = own_chains_in_save(&c, save, "nat").into_iter().collect();
    assert_eq!(nat, ["PODRUN-SERVICES", "PODRUN-SVC-ABCDEFGHI2"]);
    let filter: Vec<String> = own_chains_in_save(&c, save, "filter").into_iter().collect();
    assert_eq!(filter, ["PODRUN-SERVICES"]);
}

#[test]
fn allocation_skips_network_used_and_broadcast() {
    let cidr: Ipv4Cidr = "198.19.0.0/30".parse().unwrap();
    let mut used = BTreeSet::new();
    assert_eq!(allocate_cluster_ip(cidr, &used, None), Ok(ip("198.19.0.1")));
    used.insert(ip("198.19.0.1"));
    assert_eq!(allocate_cluster_ip(cidr, &used, None), Ok(ip("198.19.0.2")));
    used.insert(ip("198.19.0.2"));
    assert_eq!(
        allocate_cluster_ip(cidr, &used, None),
        Err(ServiceError::RangeFull(cidr))
    );
    // Released addresses are handed out again.
    used.remove(&ip("198.19.0.1"));
    assert_eq!(allocate_cluster_ip(cidr, &used, None), Ok(ip("198.19.0.1")));
}

#[test]
fn requested_cluster_ip_is_checked() {
    let cidr: Ipv4Cidr = "198.19.0.0/16".parse().unwrap();
    let used: BTreeSet<Ipv4Addr> = [ip("198.19.0.7")].into();
    assert_eq!(
        allocate_cluster_ip(cidr, &used, Some(ip("198.19.3.4"))),
        Ok(ip("198.19.3.4"))
    );
    assert_eq!(
        allocate_cluster_ip(cidr, &used, Some(ip("198.19.0.7"))),
        Err(ServiceError::AlreadyAllocated(ip("198.19.0.7")))
    );
    let err = allocate_cluster_ip(cidr, &used, Some(ip("10.0.0.1"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to allocate IP 10.0.0.1: provided IP is not in the valid range. The range of valid IPs is 198.19.0.0/16"
    );
}

#[test]
fn cidr_parsing_clears_host_bits_and_rejects_garbage() {
    let c: Ipv4Cidr = "198.19.7.9/16".parse().unwrap();
    assert_eq!(c.to_string(), "198.19.0.0/16");
    assert!(c.contains(ip("198.19.255.1")));
    assert!(!c.contains(ip("198.20.0.1")));
    for bad in ["198.19.0.0", "198.19.0.0/33", "x/8", "::1/64"] {
        assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
    }
}

#[test]
fn prefixes_are_checked() {
    let cidr = "198.18.0.0/16".parse().unwrap();
    assert!(ProxyConfig::new("PT-1-", cidr, "br").is_ok());
    assert!(ProxyConfig::new("PODRUN4194304-", cidr, "br").is_ok());
    for bad in ["", "podrun-", "A-VERY-LONG-PREFIX-", "X Y"] {
        assert!(ProxyConfig::new(bad, cidr, "br").is_err(), "{bad}");
    }
}
