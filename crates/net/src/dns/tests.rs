//! Tests of the pod DNS files and of cluster-name lookups.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{HostAlias, Pod, PodDNSConfig, PodDNSConfigOption, PodSpec};

use super::*;

fn cluster() -> ClusterDns {
    ClusterDns {
        domain: "cluster.local".into(),
        nameserver: Ipv4Addr::new(198, 18, 0, 1),
        host_resolv_conf: "# host\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n"
            .into(),
    }
}

fn pod(spec: PodSpec) -> Pod {
    let mut p = Pod {
        spec: Some(spec),
        ..Default::default()
    };
    p.metadata.name = Some("web-0".into());
    p.metadata.namespace = Some("shop".into());
    p
}

const IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 7);

#[test]
fn cluster_first_resolv_conf_has_the_kubernetes_search_list() {
    let files = pod_files(&pod(PodSpec::default()), IP, &cluster()).unwrap();
    assert_eq!(
        files.resolv,
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
         nameserver 198.18.0.1\n\
         options ndots:5\n"
    );
}

#[test]
fn hosts_file_is_kubelets_with_host_aliases() {
    let spec = PodSpec {
        host_aliases: Some(vec![HostAlias {
            ip: "192.0.2.10".into(),
            hostnames: Some(vec!["foo.local".into(), "bar.local".into()]),
        }]),
        ..Default::default()
    };
    let files = pod_files(&pod(spec), IP, &cluster()).unwrap();
    assert_eq!(
        files.hosts,
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n\
         198.18.0.7\tweb-0\n\
         \n\
         # Entries added by HostAliases.\n\
         192.0.2.10\tfoo.local\tbar.local\n"
    );
}

#[test]
fn hostname_and_subdomain_give_the_fqdn_line() {
    let spec = PodSpec {
        hostname: Some("db".into()),
        subdomain: Some("cluster".into()),
        ..Default::default()
    };
    let files = pod_files(&pod(spec), IP, &cluster()).unwrap();
    assert!(
        files
            .hosts
            .ends_with("198.18.0.7\tdb.cluster.shop.svc.cluster.local\tdb\n"),
        "{}",
        files.hosts
    );
}

#[test]
fn default_policy_copies_the_host_and_none_uses_only_dns_config() {
    let spec = PodSpec {
        dns_policy: Some("Default".into()),
        ..Default::default()
    };
    assert_eq!(
        pod_files(&pod(spec), IP, &cluster()).unwrap().resolv,
        "search corp.example\nnameserver 192.0.2.53\noptions edns0\n"
    );
    let spec = PodSpec {
        dns_policy: Some("None".into()),
        dns_config: Some(PodDNSConfig {
            nameservers: Some(vec!["192.0.2.1".into()]),
            searches: Some(vec!["a.example".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        }),
        ..Default::default()
    };
    assert_eq!(
        pod_files(&pod(spec), IP, &cluster()).unwrap().resolv,
        "search a.example\nnameserver 192.0.2.1\noptions ndots:2 edns0\n"
    );
}

#[test]
fn dns_config_merges_into_cluster_first_and_overrides_options() {
    let spec = PodSpec {
        dns_config: Some(PodDNSConfig {
            nameservers: Some(vec!["192.0.2.9".into()]),
            searches: Some(vec!["extra.example".into()]),
            options: Some(vec![PodDNSConfigOption {
                name: Some("ndots".into()),
                value: Some("1".into()),
            }]),
        }),
        ..Default::default()
    };
    let conf = resolv_conf(&pod(spec), &cluster()).unwrap();
    assert_eq!(conf.nameservers, ["198.18.0.1", "192.0.2.9"]);
    assert_eq!(conf.searches.last().unwrap(), "extra.example");
    assert_eq!(conf.options, ["ndots:1"]);
}

#[test]
fn none_without_nameservers_and_unknown_policies_are_errors() {
    let spec = PodSpec {
        dns_policy: Some("None".into()),
        ..Default::default()
    };
    assert!(pod_files(&pod(spec), IP, &cluster()).is_err());
    let spec = PodSpec {
        dns_policy: Some("Sometimes".into()),
        ..Default::default()
    };
    let err = pod_files(&pod(spec), IP, &cluster()).unwrap_err();
    assert!(err.contains("Unsupported value: \"Sometimes\""), "{err}");
}

#[test]
fn host_network_cluster_first_falls_back_to_default() {
    let spec = PodSpec {
        host_network: Some(true),
        ..Default::default()
    };
    let conf = resolv_conf(&pod(spec), &cluster()).unwrap();
    assert_eq!(conf.nameservers, ["192.0.2.53"]);
}

fn view() -> DnsView {
    let mut v = DnsView::default();
    v.services.insert(
        ("shop".into(), "web".into()),
        vec![Ipv4Addr::new(198, 19, 0, 4)],
    );
    v.services.insert(
        ("shop".into(), "db".into()),
        vec![Ipv4Addr::new(198, 18, 0, 8), Ipv4Addr::new(198, 18, 0, 9)],
    );
    v.hostnames.insert(
        ("shop".into(), "db".into(), "db-0".into()),
        Ipv4Addr::new(198, 18, 0, 8),
    );
    v
}

#[test]
fn cluster_names_resolve_and_unknown_ones_are_nxdomain() {
    let v = view();
    let d = "cluster.local";
    assert_eq!(
        v.lookup("web.shop.svc.cluster.local.", d),
        Lookup::Found(vec![Ipv4Addr::new(198, 19, 0, 4)])
    );
    assert_eq!(
        v.lookup("WEB.Shop.svc.cluster.local", d),
        Lookup::Found(vec![Ipv4Addr::new(198, 19, 0, 4)])
    );
    assert_eq!(
        v.lookup("db.shop.svc.cluster.local", d),
        Lookup::Found(vec![
            Ipv4Addr::new(198, 18, 0, 8),
            Ipv4Addr::new(198, 18, 0, 9)
        ])
    );
    assert_eq!(
        v.lookup("db-0.db.shop.svc.cluster.local", d),
        Lookup::Found(vec![Ipv4Addr::new(198, 18, 0, 8)])
    );
    assert_eq!(
        v.lookup("198-18-0-42.shop.pod.cluster.local", d),
        Lookup::Found(vec![Ipv4Addr::new(198, 18, 0, 42)])
    );
    for nx in [
        "nope.shop.svc.cluster.local",
        "web.other.svc.cluster.local",
        "db-1.db.shop.svc.cluster.local",
        "not-an-ip.shop.pod.cluster.local",
        "web.cluster.local",
    ] {
        assert_eq!(v.lookup(nx, d), Lookup::NxDomain, "{nx}");
    }
    assert_eq!(v.lookup("example.org.", d), Lookup::Forward);
    assert_eq!(v.lookup("notcluster.local", d), Lookup::Forward);
    assert_eq!(v.lookup("shop.svc.cluster.local", d), Lookup::Found(vec![]));
}

#[test]
fn views_round_trip_through_text() {
    let v = view();
    assert_eq!(DnsView::parse(&v.render()), v);
    assert_eq!(DnsView::parse("svc a\nbogus\n"), DnsView::default());
}
