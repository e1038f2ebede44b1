//! Service rules at scale on the host's real iptables (needs root): 50 Services with two
//! endpoints each become exactly 50 `SVC` and 100 `SEP` chains, one readiness change
//! rewrites them in one `iptables-restore`, and the time of each endpoint update is
//! reported (p50/p99). The chains use the test's own prefix and are removed at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus, Service, ServicePort, ServiceSpec};
use podrun_net::service::{ServiceConfig, Services, cleanup_rules};
use podrun_netplan::service::ProxyConfig;

fn pod(app: usize, i: usize, ready: bool) -> Arc<Pod> {
    let mut p = Pod {
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(format!(
                "198.18.{}.{}",
                100 + app / 100,
                2 + (app % 100) * 2 + i
            )),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    p.metadata.name = Some(format!("app{app}-{i}"));
    p.metadata.namespace = Some("default".into());
    p.metadata.labels = Some(BTreeMap::from([("app".into(), format!("app{app}"))]));
    Arc::new(p)
}

fn service(app: usize) -> Service {
    let mut s = Service {
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".into(), format!("app{app}"))])),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    s.metadata.name = Some(format!("app{app}"));
    s.metadata.namespace = Some("default".into());
    s
}

struct Cleanup(ProxyConfig);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = cleanup_rules(&self.0);
    }
}

fn count_chains(prefix: &str, kind: &str) -> usize {
    let out = std::process::Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!(":{prefix}{kind}-")))
        .count()
}

#[test]
fn fifty_services_with_two_endpoints_each() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it writes iptables rules"
    );
    let prefix = format!("PS{}-", std::process::id());
    let proxy = ProxyConfig::new(
        &prefix,
        "198.18.0.0/16".parse().unwrap(),
        format!("nobr{}", std::process::id() % 10000),
    )
    .unwrap();
    let _cleanup = Cleanup(proxy.clone());
    let dir = tempfile::tempdir().unwrap();
    let services = Services::open(ServiceConfig {
        service_cidr: "198.19.128.0/24".parse().unwrap(),
        proxy,
        allocations: dir.path().join("clusterips"),
        apply_rules: true,
        dns_share: None,
    })
    .unwrap();
    const APPS: usize = 50;
    let mut times = Vec::new();
    for app in 0..APPS {
        services.create(service(app)).unwrap();
        for i in 0..2 {
            let t = Instant::now();
            services.handle_pod(pod(app, i, true)).unwrap();
            times.push(t.elapsed());
        }
    }
    assert_eq!(count_chains(&prefix, "SVC"), APPS);
    assert_eq!(count_chains(&prefix, "SEP"), 2 * APPS);
    // One pod turns unready: its SEP chain goes, everything else stays.
    let t = Instant::now();
    services.handle_pod(pod(7, 1, false)).unwrap();
    times.push(t.elapsed());
    assert_eq!(count_chains(&prefix, "SEP"), 2 * APPS - 1);
    // An event that changes no endpoint costs no iptables call.
    let updates = services.rule_updates();
    let t = Instant::now();
    services.handle_pod(pod(8, 0, true)).unwrap();
    let unchanged = t.elapsed();
    assert_eq!(
        services.rule_updates(),
        updates,
        "an unchanged event reached iptables"
    );
    times.sort();
    let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "endpoint update with {} rules: p50 {:?} p99 {:?}; unchanged event {:?}",
        APPS,
        p(0.5),
        p(0.99),
        unchanged
    );
    services.shutdown().unwrap();
    assert_eq!(count_chains(&prefix, "SVC"), 0);
}
