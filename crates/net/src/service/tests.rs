//! Tests of endpoint selection, targetPort resolution and DNS names of the plan.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podrun_netplan::service::Endpoint;

use super::plan::{plan, resolve_target_port};

fn pod(name: &str, ip: &str, ready: bool, port: Option<(&str, i32)>) -> Pod {
    let mut p = Pod {
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ports: port.map(|(n, p)| {
                    vec![ContainerPort {
                        name: Some(n.into()),
                        container_port: p,
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    p.metadata.labels = Some(BTreeMap::from([("app".into(), "web".into())]));
    p
}

fn service(cluster_ip: &str, target: IntOrString) -> Service {
    let mut s = Service {
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            selector: Some(BTreeMap::from([("app".into(), "web".into())])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(target),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    s.metadata.name = Some("web".into());
    s.metadata.namespace = Some("default".into());
    s
}

fn ep(ip: &str, port: u16) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        port,
    }
}

#[test]
fn only_ready_matching_pods_are_endpoints() {
    let mut other = pod("other", "198.18.0.9", true, None);
    other.metadata.labels = Some(BTreeMap::from([("app".into(), "db".into())]));
    let pods = [
        pod("a", "198.18.0.2", true, None),
        pod("b", "198.18.0.3", false, None),
        other,
    ];
    let svc = service("198.19.0.1", IntOrString::Int(8080));
    let p = plan([&svc], pods.iter());
    assert_eq!(p.rules[0].ports[0].endpoints, [ep("198.18.0.2", 8080)]);
    assert_eq!(
        p.dns.services[&("default".to_string(), "web".to_string())],
        [Ipv4Addr::new(198, 19, 0, 1)]
    );
}

#[test]
fn named_target_port_resolves_per_pod_and_skips_pods_without_it() {
    let pods = [
        pod("a", "198.18.0.2", true, Some(("http", 8080))),
        pod("b", "198.18.0.3", true, Some(("http", 9090))),
        pod("c", "198.18.0.4", true, Some(("metrics", 9100))),
    ];
    let svc = service("198.19.0.1", IntOrString::String("http".into()));
    let p = plan([&svc], pods.iter());
    assert_eq!(
        p.rules[0].ports[0].endpoints,
        [ep("198.18.0.2", 8080), ep("198.18.0.3", 9090)]
    );
}

#[test]
fn unset_target_port_means_the_service_port() {
    let a = pod("a", "198.18.0.2", true, None);
    assert_eq!(resolve_target_port(None, 80, "TCP", &a), Some(80));
    assert_eq!(
        resolve_target_port(Some(&IntOrString::String("8081".into())), 80, "TCP", &a),
        Some(8081)
    );
    assert_eq!(
        resolve_target_port(Some(&IntOrString::String("http".into())), 80, "UDP", &a),
        None
    );
}

#[test]
fn terminating_or_pending_pods_are_not_endpoints() {
    let mut gone = pod("a", "198.18.0.2", true, None);
    gone.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    let mut pending = pod("b", "198.18.0.3", true, None);
    pending.status.as_mut().unwrap().phase = Some("Pending".into());
    let svc = service("198.19.0.1", IntOrString::Int(80));
    let p = plan([&svc], [gone, pending].iter());
    assert!(p.rules[0].ports[0].endpoints.is_empty());
}

#[test]
fn headless_service_has_no_rules_and_serves_pod_ips_and_hostnames() {
    let mut a = pod("a", "198.18.0.2", true, None);
    let spec = a.spec.as_mut().unwrap();
    spec.hostname = Some("web-a".into());
    spec.subdomain = Some("web".into());
    let b = pod("b", "198.18.0.3", true, None);
    let svc = service("None", IntOrString::Int(80));
    let p = plan([&svc], [a, b].iter());
    assert!(p.rules.is_empty());
    assert_eq!(
        p.dns.services[&("default".to_string(), "web".to_string())],
        [Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3)]
    );
    assert_eq!(
        p.dns.hostnames[&(
            "default".to_string(),
            "web".to_string(),
            "web-a".to_string()
        )],
        Ipv4Addr::new(198, 18, 0, 2)
    );
}

#[test]
fn service_without_selector_selects_nothing() {
    let mut svc = service("198.19.0.1", IntOrString::Int(80));
    svc.spec.as_mut().unwrap().selector = None;
    let p = plan([&svc], [pod("a", "198.18.0.2", true, None)].iter());
    assert!(p.rules[0].ports[0].endpoints.is_empty());
}

/// A /29 of ClusterIPs allocated under `dir`, no rules applied.
fn offline_config(dir: &std::path::Path) -> super::ServiceConfig {
    super::ServiceConfig {
        service_cidr: "198.19.0.0/29".parse().unwrap(),
        proxy: podrun_netplan::service::ProxyConfig::new(
            "PODRUN-",
            "198.18.0.0/16".parse().unwrap(),
            "podrun0",
        )
        .unwrap(),
        allocations: dir.join("services/clusterips"),
        apply_rules: false,
        dns_share: None,
    }
}

#[test]
fn allocations_persist_and_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path());
    let services = super::Services::open(config.clone()).unwrap();
    let a = services.create(service("", IntOrString::Int(80))).unwrap();
    assert_eq!(
        a.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("198.19.0.1")
    );
    let mut other = service("", IntOrString::Int(80));
    other.metadata.name = Some("other".into());
    let b = services.create(other).unwrap();
    assert_eq!(
        b.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("198.19.0.2")
    );
    drop(services);
    // A new instance on the same state dir keeps the ClusterIPs of the same Services.
    let services = super::Services::open(config.clone()).unwrap();
    let again = services.create(service("", IntOrString::Int(80))).unwrap();
    assert_eq!(
        again.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("198.19.0.1")
    );
    assert!(services.delete("default", "web").unwrap());
    let mut third = service("", IntOrString::Int(80));
    third.metadata.name = Some("third".into());
    let c = services.create(third).unwrap();
    assert_eq!(
        c.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("198.19.0.1")
    );
    // A taken ClusterIP cannot be requested.
    let mut clash = service("198.19.0.2", IntOrString::Int(80));
    clash.metadata.name = Some("clash".into());
    let err = services.create(clash).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to allocate IP 198.19.0.2: provided IP is already allocated"
    );
    let headless = services
        .create(service("None", IntOrString::Int(80)))
        .unwrap();
    assert_eq!(
        headless.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("None")
    );
}

/// A follower whose events were dropped (a one-event buffer, three pods become ready
/// at once) lists the pods again: every ready pod is an endpoint, none is missed.
#[tokio::test(flavor = "current_thread")]
async fn a_follower_that_falls_behind_lists_the_pods_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path());
    let services = std::sync::Arc::new(super::Services::open(config).unwrap());
    services
        .create(service("None", IntOrString::Int(80)))
        .unwrap();
    let pods = vec![
        pod("a", "198.18.0.2", true, None),
        pod("b", "198.18.0.3", true, None),
        pod("c", "198.18.0.4", true, None),
    ];
    let (tx, rx) = tokio::sync::broadcast::channel(1);
    let listed = pods.clone();
    let relists = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = relists.clone();
    let follower = services.clone().follow(
        rx,
        None,
        std::sync::Arc::new(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            listed.clone()
        }),
    );
    // All three events are sent before the follower runs: two are lost.
    for p in &pods {
        tx.send(crate::PodChange::Updated(std::sync::Arc::new(p.clone())))
            .unwrap();
    }
    let key = ("default".to_string(), "web".to_string());
    let want = [
        Ipv4Addr::new(198, 18, 0, 2),
        Ipv4Addr::new(198, 18, 0, 3),
        Ipv4Addr::new(198, 18, 0, 4),
    ];
    let view = services.dns_view();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let ips = view.read().unwrap().services.get(&key).cloned();
        if ips.as_deref() == Some(&want[..]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "every ready pod is an endpoint: {ips:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(relists.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A pod that finished while events were lost stops being an endpoint.
    let mut done = pods[0].clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    services
        .resync_pods(vec![done, pods[1].clone(), pods[2].clone()])
        .unwrap();
    assert_eq!(
        view.read().unwrap().services[&key],
        [Ipv4Addr::new(198, 18, 0, 3), Ipv4Addr::new(198, 18, 0, 4)]
    );
    drop(tx);
    follower.await.unwrap();
}

#[test]
fn a_claimed_pod_address_is_published_at_once_and_released_when_the_pod_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("dns");
    let mut config = offline_config(dir.path());
    config.dns_share = Some(share.clone());
    let services = super::Services::open(config).unwrap();
    let published = || {
        std::fs::read_to_string(share.join(std::process::id().to_string()))
            .map(|text| crate::dns::DnsView::parse(&text))
            .unwrap_or_default()
    };
    // Claimed before the pod's status (or any event) carries the address.
    services
        .claim_dns_client("198.18.0.7".parse().unwrap())
        .unwrap();
    assert!(published().clients.contains(&"198.18.0.7".parse().unwrap()));
    // A pod event without the address does not take the claim away.
    let mut early = pod("a", "198.18.0.7", false, None);
    early.status.as_mut().unwrap().pod_ip = None;
    services.handle_pod(std::sync::Arc::new(early)).unwrap();
    assert!(published().clients.contains(&"198.18.0.7".parse().unwrap()));
    services
        .handle_pod_finished(&pod("a", "198.18.0.7", false, None))
        .unwrap();
    assert!(published().clients.is_empty());
}
