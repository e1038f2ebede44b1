//! Network-namespace tests of `podrun proxy` with real iptables capture.
//!
//! Needs root (creates network namespaces, veths and nat rules); panics with a clear
//! message otherwise. Layout per test: a "client pod" netns and a "server pod" netns
//! joined by a veth pair with 198.18.<n>.1/24 and 198.18.<n>.2/24. Both get Istio's
//! default capture rules (spec §2.3, plus port 9999 excluded both ways) and a
//! `podrun proxy` running as UID 1337. Servers run on threads moved into the server
//! netns with setns(2). Everything is removed on drop, even on failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_podrun");

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "mesh_netns tests need root (network namespaces, veths, iptables); run them as root"
    );
}

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn capture_rules() -> String {
    // Istio's default REDIRECT rules (spec §2.3) with port 9999 excluded both ways.
    [
        "*nat",
        ":ISTIO_INBOUND - [0:0]",
        ":ISTIO_REDIRECT - [0:0]",
        ":ISTIO_IN_REDIRECT - [0:0]",
        ":ISTIO_OUTPUT - [0:0]",
        "-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN",
        "-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN",
        "-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN",
        "-A ISTIO_INBOUND -p tcp --dport 9999 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
        "-A OUTPUT -j ISTIO_OUTPUT",
        "-A ISTIO_OUTPUT -p tcp --dport 9999 -j RETURN",
        "-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN",
        "-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
        "-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT",
        "-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        "COMMIT",
        "",
    ]
    .join("\n")
}

/// A running `podrun proxy` whose stdout (the access log) is collected line by line.
struct ProxyProc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ProxyProc {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits up to 5 s for at least `n` lines.
    fn wait_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let l = self.lines();
            if l.len() >= n {
                return l;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("expected {n} access-log lines, got {:?}", self.lines());
    }
}

/// Two pod namespaces with capture rules and proxies; torn down on drop.
struct Fabric {
    client_ns: String,
    server_ns: String,
    client_ip: Ipv4Addr,
    server_ip: Ipv4Addr,
    client_proxy: Option<ProxyProc>,
    server_proxy: Option<ProxyProc>,
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
    /// The binary the UID-1337 proxies run (the build's own path may be private).
    proxy_bin: common::SidecarBin,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Fabric {
    fn new(tag: &str) -> Fabric {
        require_root();
        let n = (std::process::id() % 200) + NEXT.fetch_add(1, Ordering::SeqCst) + 20;
        let subnet = n % 250;
        let client_ns = format!("prm-{tag}-c{}", std::process::id());
        let server_ns = format!("prm-{tag}-s{}", std::process::id());
        let mut f = Fabric {
            client_ns: client_ns.clone(),
            server_ns: server_ns.clone(),
            client_ip: Ipv4Addr::new(198, 18, subnet as u8, 1),
            server_ip: Ipv4Addr::new(198, 18, subnet as u8, 2),
            client_proxy: None,
            server_proxy: None,
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
            proxy_bin: common::sidecar_bin(),
        };
        let veth_c = format!("vc{}{}", tag.len(), std::process::id() % 100_000);
        let veth_s = format!("vs{}{}", tag.len(), std::process::id() % 100_000);
        sh("ip", &["netns", "add", &client_ns]);
        sh("ip", &["netns", "add", &server_ns]);
        sh(
            "ip",
            &[
                "link", "add", &veth_c, "netns", &client_ns, "type", "veth", "peer", "name",
                &veth_s, "netns", &server_ns,
            ],
        );
        for (ns, dev, ip) in [
            (&client_ns, &veth_c, f.client_ip),
            (&server_ns, &veth_s, f.server_ip),
        ] {
            sh(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev],
            );
            sh("ip", &["-n", ns, "link", "set", dev, "up"]);
            sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
            let mut restore = Command::new("ip")
                .args(["netns", "exec", ns, "iptables-restore", "--noflush"])
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn iptables-restore");
            restore
                .stdin
                .take()
                .unwrap()
                .write_all(capture_rules().as_bytes())
                .unwrap();
            assert!(
                restore.wait().unwrap().success(),
                "iptables-restore failed in {ns}"
            );
        }
        f.client_proxy = Some(f.start_proxy(&client_ns.clone()));
        f.server_proxy = Some(f.start_proxy(&server_ns.clone()));
        f
    }

    fn start_proxy(&self, ns: &str) -> ProxyProc {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "setpriv",
                "--reuid",
                "1337",
                "--regid",
                "1337",
                "--clear-groups",
            ])
            .arg(&self.proxy_bin.path)
            .args(["proxy"])
            .args(["--access-log-flush-interval", "0s"])
            .args([
                "--pod-ports",
                r#"[{"containerPort":8080},{"containerPort":7000}]"#,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn podrun proxy");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let status = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                BIN,
                "proxy",
                "wait",
                "--timeout",
                "10s",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "podrun proxy in {ns} never became ready");
        ProxyProc { child, lines }
    }

    /// Runs `serve` on a thread inside the server netns, listening on `port`.
    fn serve_in_server(&mut self, port: u16, serve: fn(std::net::TcpStream)) {
        let ns = self.server_ns.clone();
        let ip = self.server_ip;
        let stop = self.stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.servers.push(std::thread::spawn(move || {
            let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let l = TcpListener::bind(SocketAddrV4::new(ip, port)).expect("bind server");
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        serve(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
        rx.recv_timeout(Duration::from_secs(5))
            .expect("server thread started");
    }

    /// Runs a command in the client netns as `uid`, returning stdout.
    fn client_run(&self, uid: u32, args: &[&str]) -> String {
        let uid = uid.to_string();
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client_ns,
                "setpriv",
                "--reuid",
                &uid,
                "--regid",
                &uid,
                "--clear-groups",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?} as uid {uid} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn curl(&self, uid: u32, port: u16) -> String {
        let url = format!("http://{}:{port}/get", self.server_ip);
        self.client_run(
            uid,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "-H",
                "User-Agent: mesh-test",
                &url,
            ],
        )
    }

    fn client(&self) -> &ProxyProc {
        self.client_proxy.as_ref().unwrap()
    }

    fn server(&self) -> &ProxyProc {
        self.server_proxy.as_ref().unwrap()
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for p in [self.client_proxy.take(), self.server_proxy.take()]
            .into_iter()
            .flatten()
        {
            let mut child = p.child;
            let _ = child.kill();
            let _ = child.wait();
        }
        for t in self.servers.drain(..) {
            let _ = t.join();
        }
        // Deleting the namespaces removes the veth pair and the nat rules with them.
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn http_ok(mut s: std::net::TcpStream) {
    let mut buf = [0u8; 4096];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = "hello from the server pod";
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn echo(mut s: std::net::TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Splits a TEXT access-log line into fields, keeping quoted groups whole.
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.trim_start().is_empty() {
        rest = rest.trim_start();
        let (tok, next) = match rest.as_bytes()[0] {
            b'[' => {
                let e = rest.find(']').unwrap();
                (&rest[1..e], &rest[e + 1..])
            }
            b'"' => {
                let e = rest[1..].find('"').unwrap() + 1;
                (&rest[1..e], &rest[e + 1..])
            }
            _ => {
                let e = rest.find(' ').unwrap_or(rest.len());
                (&rest[..e], &rest[e..])
            }
        };
        out.push(tok.to_string());
        rest = next;
    }
    out
}

#[test]
fn captured_http_goes_through_both_proxies_with_one_log_line_each() {
    let mut f = Fabric::new("http");
    f.serve_in_server(8080, http_ok);
    let body = f.curl(1000, 8080);
    assert_eq!(body, "hello from the server pod");

    let client = f.client().wait_lines(1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        f.client().lines().len(),
        1,
        "exactly one outbound line: {client:?}"
    );
    let t = tokens(&client[0]);
    assert_eq!(t.len(), 22, "{t:?}");
    assert_eq!(t[1], "GET /get HTTP/1.1");
    assert_eq!(t[2], "200");
    assert_eq!(t[4], "via_upstream");
    assert_eq!(t[12], "mesh-test");
    assert_eq!(t[14], format!("{}:8080", f.server_ip));
    assert_eq!(t[16], "PassthroughCluster");
    assert!(
        t[17].starts_with(&format!("{}:", f.client_ip)),
        "upstream local is the pod IP: {}",
        t[17]
    );
    assert_eq!(
        t[18],
        format!("{}:8080", f.server_ip),
        "original destination restored"
    );
    assert!(t[19].starts_with(&format!("{}:", f.client_ip)));
    assert_eq!(t[21], "allow_any");

    let server = f.server().wait_lines(1);
    let s = tokens(&server[0]);
    assert_eq!(s[1], "GET /get HTTP/1.1");
    assert_eq!(s[13], t[13], "x-request-id carried across the mesh");
    assert_eq!(s[16], "inbound|8080||");
    assert!(
        s[17].starts_with("127.0.0.6:"),
        "inbound delivered from 127.0.0.6: {}",
        s[17]
    );
    assert_eq!(s[18], format!("{}:8080", f.server_ip));
}

#[test]
fn proxy_uid_traffic_and_excluded_ports_bypass_capture() {
    let mut f = Fabric::new("bypass");
    f.serve_in_server(8080, http_ok);
    f.serve_in_server(9999, http_ok);
    // UID 1337 is the proxy's own identity: never captured on the client side.
    assert_eq!(f.curl(1337, 8080), "hello from the server pod");
    // Port 9999 is excluded outbound (client) and inbound (server).
    assert_eq!(f.curl(1000, 9999), "hello from the server pod");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        f.client().lines().is_empty(),
        "client proxy saw bypassed traffic: {:?}",
        f.client().lines()
    );
    // The server still captured the 1337 request inbound, but not the excluded port.
    let server = f.server().wait_lines(1);
    assert_eq!(server.len(), 1, "{server:?}");
    assert!(server[0].contains("inbound|8080||"));
}

#[test]
fn raw_tcp_echo_is_relayed_through_both_proxies() {
    let mut f = Fabric::new("tcp");
    f.serve_in_server(7000, echo);
    let script = format!(
        "exec 3<>/dev/tcp/{}/7000; printf 'ping-over-mesh' >&3; read -t 5 -N 14 reply <&3; printf '%s' \"$reply\"",
        f.server_ip
    );
    let out = f.client_run(1000, &["bash", "-c", &script]);
    assert_eq!(out, "ping-over-mesh");
    let client = f.client().wait_lines(1);
    let t = tokens(&client[0]);
    assert_eq!(t[1], "- - -");
    assert_eq!(t[2], "0");
    assert_eq!(t[7], "14");
    assert_eq!(t[8], "14");
    assert_eq!(t[18], format!("{}:7000", f.server_ip));
    let server = f.server().wait_lines(1);
    let s = tokens(&server[0]);
    assert_eq!(s[1], "- - -");
    assert_eq!(s[16], "inbound|7000||");
    assert!(s[17].starts_with("127.0.0.6:"));
}
