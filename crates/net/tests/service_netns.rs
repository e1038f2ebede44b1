//! Services and cluster DNS end to end over real network namespaces (needs root).
//!
//! The test builds its own small pod network: a bridge with an address from a /24 inside
//! 198.18.0.0/16, three network namespaces ("pods") with a veth each, two of them running
//! `python3 -m http.server`. A Service selects the two servers; the third namespace
//! reaches it by DNS name (through the embedded DNS server and the pod's resolv.conf)
//! and by ClusterIP. Everything it creates (namespaces, veths, the bridge, iptables
//! chains under its own prefix, processes) is removed by a drop guard, also on failure.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podrun_net::dns::{ClusterDns, pod_files};
use podrun_net::service::{
    DEFAULT_BRIDGE, DEFAULT_POD_CIDR, ServiceConfig, Services, cleanup_dead_instances,
    cleanup_rules, instance_prefix,
};
use podrun_netplan::service::ProxyConfig;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it creates network namespaces, a bridge and iptables rules"
    );
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bridge, three namespaces with veths, the http servers, and the rules' prefix.
struct Fabric {
    id: u32,
    bridge: String,
    net: u8,
    namespaces: Vec<String>,
    servers: Vec<Child>,
    proxy: ProxyConfig,
    dir: tempfile::TempDir,
}

impl Fabric {
    fn new() -> Self {
        let id = std::process::id() % 10000;
        let net = 200 + (std::process::id() % 50) as u8;
        let bridge = format!("svbr{id}");
        let proxy = ProxyConfig::new(
            &format!("PT{id}-"),
            format!("198.18.{net}.0/24").parse().unwrap(),
            bridge.clone(),
        )
        .unwrap();
        let mut f = Self {
            id,
            bridge: bridge.clone(),
            net,
            namespaces: Vec::new(),
            servers: Vec::new(),
            proxy,
            dir: tempfile::tempdir().unwrap(),
        };
        sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("198.18.{net}.1/24"),
            "dev",
            &bridge,
        ]);
        sh(&["ip", "link", "set", &bridge, "up"]);
        for (i, pod) in ["a", "b", "c"].iter().enumerate() {
            let ns = format!("svc-{id}-{pod}");
            sh(&["ip", "netns", "add", &ns]);
            f.namespaces.push(ns.clone());
            let host = format!("sv{id}{pod}");
            sh(&[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            sh(&["ip", "link", "set", &host, "master", &bridge, "up"]);
            let ip = f.pod_ip(i);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &format!("198.18.{net}.1"),
            ]);
        }
        f
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.net, 1)
    }

    fn pod_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.net, 2 + i as u8)
    }

    /// Starts `python3 -m http.server 8080` in pod `i`, serving `/who` = `name`.
    fn serve(&mut self, i: usize, name: &str) {
        let root = self.dir.path().join(name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("who"), name).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.namespaces[i],
                "python3",
                "-m",
                "http.server",
            ])
            .args(["8080", "--bind", "0.0.0.0", "--directory"])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push(child);
    }

    /// Runs `script` with `sh -c` in pod `i` with its resolv.conf and hosts mounted
    /// (`ip netns exec` gives the command a private mount namespace).
    fn run_in(&self, i: usize, files: &(PathBuf, PathBuf), script: &str) -> (bool, String) {
        let full = format!(
            "mount --bind {} /etc/resolv.conf && mount --bind {} /etc/hosts && {script}",
            files.0.display(),
            files.1.display()
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &self.namespaces[i], "sh", "-c", &full])
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn own_chains(&self) -> Vec<String> {
        let out = Command::new("iptables-save").output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&self.proxy.prefix))
            .map(String::from)
            .collect()
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        for c in &mut self.servers {
            // `ip netns exec` execs python, so this pid is the server itself.
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = cleanup_rules(&self.proxy) {
            eprintln!("cleanup of test rules failed: {e}");
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let _ = self.id;
    }
}

fn pod(name: &str, ip: Ipv4Addr, ready: bool) -> Arc<Pod> {
    let mut p = Pod {
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "server".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.to_string()),
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
    Arc::new(p)
}

fn web_service() -> Service {
    let mut s = Service {
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".into(), "web".into())])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
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

/// Writes the client pod's resolv.conf and hosts the way the node does.
fn client_files(f: &Fabric) -> (PathBuf, PathBuf) {
    let mut client = Pod::clone(&pod("client", f.pod_ip(2), true));
    client.metadata.labels = None;
    let cluster = ClusterDns {
        domain: "cluster.local".into(),
        nameserver: f.gateway(),
        host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    let files = pod_files(&client, f.pod_ip(2), &cluster).unwrap();
    let resolv = f.dir.path().join("resolv.conf");
    let hosts = f.dir.path().join("hosts");
    std::fs::write(&resolv, &files.resolv).unwrap();
    std::fs::write(&hosts, &files.hosts).unwrap();
    (resolv, hosts)
}

fn wait_listening(f: &Fabric, i: usize) {
    let addr = SocketAddr::from((f.pod_ip(i), 8080));
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "http.server in pod {i} never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `curl`s `url` `n` times from pod `i`; returns the bodies.
fn curl_many(f: &Fabric, i: usize, files: &(PathBuf, PathBuf), url: &str, n: usize) -> Vec<String> {
    let script = format!("for i in $(seq {n}); do curl -sS --max-time 5 {url}; echo; done");
    let (ok, out) = f.run_in(i, files, &script);
    assert!(ok, "curl {url} failed: {out}");
    out.lines().map(String::from).collect()
}

fn config(f: &Fabric) -> ServiceConfig {
    ServiceConfig {
        service_cidr: format!("198.19.{}.0/24", f.net).parse().unwrap(),
        proxy: f.proxy.clone(),
        allocations: f.dir.path().join("state/services/clusterips"),
        apply_rules: true,
        dns_share: Some(f.dir.path().join("dns")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_reaches_service_by_dns_name_and_cluster_ip_and_unready_pods_drop_out() {
    require_root();
    let mut f = Fabric::new();
    f.serve(0, "a");
    f.serve(1, "b");
    let services = Services::open(config(&f)).unwrap();
    let web = services.create(web_service()).unwrap();
    let cluster_ip = web.spec.unwrap().cluster_ip.unwrap();
    assert_eq!(cluster_ip, format!("198.19.{}.1", f.net));
    services.handle_pod(pod("a", f.pod_ip(0), true)).unwrap();
    services.handle_pod(pod("b", f.pod_ip(1), true)).unwrap();
    services
        .ensure_dns(SocketAddr::from((f.gateway(), 53)))
        .await
        .unwrap();
    wait_listening(&f, 0);
    wait_listening(&f, 1);
    let files = client_files(&f);

    let hosts = f.run_in(2, &files, "cat /etc/hosts").1;
    assert!(
        hosts.contains(&format!("{}\tclient\n", f.pod_ip(2))),
        "{hosts}"
    );
    let resolv = f.run_in(2, &files, "cat /etc/resolv.conf").1;
    assert!(
        resolv.starts_with("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );

    // By short name through the search list, by FQDN, and by ClusterIP; both
    // endpoints get traffic (20 tries each miss one with probability 2^-19).
    for url in [
        "http://web:80/who".to_string(),
        "http://web.default.svc.cluster.local/who".to_string(),
        format!("http://{cluster_ip}/who"),
    ] {
        let seen: BTreeSet<String> = curl_many(&f, 2, &files, &url, 20).into_iter().collect();
        assert_eq!(seen, BTreeSet::from(["a".into(), "b".into()]), "{url}");
    }

    // A headless Service: its name gives the ready pod IPs, and a pod whose hostname
    // and subdomain match it gets its own name.
    let mut headless = web_service();
    headless.metadata.name = Some("hl".into());
    headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    let headless = services.create(headless).unwrap();
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    let mut a = Pod::clone(&pod("a", f.pod_ip(0), true));
    let spec = a.spec.as_mut().unwrap();
    spec.hostname = Some("a0".into());
    spec.subdomain = Some("hl".into());
    services.handle_pod(Arc::new(a)).unwrap();
    let (ok, out) = f.run_in(2, &files, "getent ahostsv4 hl.default.svc.cluster.local");
    assert!(ok, "{out}");
    for i in 0..2 {
        assert!(out.contains(&f.pod_ip(i).to_string()), "{out}");
    }
    let (ok, out) = f.run_in(2, &files, "getent hosts a0.hl.default.svc.cluster.local");
    assert!(ok && out.starts_with(&format!("{} ", f.pod_ip(0))), "{out}");
    // The pod-IP form answers with the address it spells.
    let dashed = f.pod_ip(1).to_string().replace('.', "-");
    let (ok, out) = f.run_in(
        2,
        &files,
        &format!("getent hosts {dashed}.default.pod.cluster.local"),
    );
    assert!(ok && out.starts_with(&format!("{} ", f.pod_ip(1))), "{out}");
    assert!(services.delete("default", "hl").unwrap());

    // Pod a turns unready: no connection lands on it any more.
    services.handle_pod(pod("a", f.pod_ip(0), false)).unwrap();
    let bodies = curl_many(&f, 2, &files, "http://web/who", 20);
    assert!(bodies.iter().all(|b| b == "b"), "{bodies:?}");

    // Hairpin: pod b reaches its own Service and lands on itself.
    let bodies = curl_many(&f, 1, &files, &format!("http://{cluster_ip}/who"), 3);
    assert!(bodies.iter().all(|b| b == "b"), "{bodies:?}");

    // The host reaches the ClusterIP too (nat OUTPUT).
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://{cluster_ip}/who"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b");

    // No ready endpoint: the connection is refused at once instead of hanging.
    services.handle_pod(pod("b", f.pod_ip(1), false)).unwrap();
    let started = Instant::now();
    let (ok, out) = f.run_in(2, &files, "curl -sS --max-time 5 http://web/who");
    assert!(!ok, "{out}");
    assert!(started.elapsed() < Duration::from_secs(4), "{out}");

    // Unknown cluster names are NXDOMAIN.
    let (ok, out) = f.run_in(2, &files, "getent hosts nope.default.svc.cluster.local");
    assert!(!ok, "{out}");

    // Deleting the Service removes its chains; shutdown removes the rest.
    assert!(services.delete("default", "web").unwrap());
    let left = f.own_chains();
    assert!(
        !left
            .iter()
            .any(|l| l.contains("SVC-") || l.contains("SEP-")),
        "{left:#?}"
    );
    services.shutdown().unwrap();
    let left = f.own_chains();
    assert!(left.is_empty(), "{left:#?}");
    let _ = Path::new("/");
}

/// A process id nothing runs under: what a SIGKILLed podrun's chains are named after.
fn dead_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(32768);
    (1..max)
        .rev()
        .find(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        .expect("a free pid")
}

/// The chains and jump rules a podrun with process id `pid` holds while it has a Service.
fn leave_rules_of(template: &ProxyConfig, pid: u32) {
    let dead = ProxyConfig {
        prefix: instance_prefix(pid),
        ..template.clone()
    };
    for jump in podrun_netplan::service::jump_rules(&dead) {
        let target = jump.spec.last().cloned().unwrap_or_default();
        let _ = Command::new("iptables")
            .args(["-w", "-t", jump.table, "-N", &target])
            .stderr(Stdio::null())
            .status();
        let mut insert = vec!["iptables", "-w", "-t", jump.table, "-I", jump.chain];
        insert.extend(jump.spec.iter().map(String::as_str));
        sh(&insert);
    }
}

/// Podruns that start together after one was SIGKILLed with a Service all start, and
/// the dead one's rules are removed once: each podrun removes a dead one's rules when it
/// starts, and two removing the same jump rule used to fail the second, which ended
/// that podrun before it ran a pod (a test waiting for its pod saw nothing for 30 s).
/// In a network namespace of the test's own, whose tables hold only what it adds.
#[test]
fn podruns_starting_together_remove_a_dead_ones_rules_once_and_all_start() {
    require_root();
    let dead = dead_pid();
    let outcome = std::thread::spawn(move || -> Result<(), String> {
        // SAFETY: unshare(2) of this thread's network namespace; threads started from
        // here, and the iptables they run, are in it too.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()));
        }
        let template = ProxyConfig::new(
            &instance_prefix(std::process::id()),
            DEFAULT_POD_CIDR.parse().unwrap(),
            DEFAULT_BRIDGE,
        )
        .unwrap();
        for round in 0..5 {
            leave_rules_of(&template, dead);
            let starts: Vec<_> = (0..6)
                .map(|_| {
                    let template = template.clone();
                    std::thread::spawn(move || {
                        cleanup_dead_instances(&template).map_err(|e| e.to_string())
                    })
                })
                .collect();
            let results: Vec<Result<Vec<String>, String>> =
                starts.into_iter().map(|s| s.join().unwrap()).collect();
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                return Err(format!("round {round}: a podrun would not start: {e}"));
            }
            let removed = results.iter().flatten().flatten().count();
            if removed != 1 {
                return Err(format!(
                    "round {round}: removed {removed} times: {results:?}"
                ));
            }
            let out = Command::new("iptables-save").output().unwrap();
            let left: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(&instance_prefix(dead)))
                .map(str::to_string)
                .collect();
            if !left.is_empty() {
                return Err(format!("round {round}: left behind {left:?}"));
            }
        }
        Ok(())
    })
    .join()
    .unwrap();
    outcome.unwrap();
}
