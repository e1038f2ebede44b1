//! `podrun proxy-init` against real iptables, inside network namespaces each test creates.
//!
//! Needs root (network namespaces and iptables) and the iptables tools: every test panics with
//! a clear message otherwise, so a skipped run is never mistaken for a pass. Each namespace is
//! deleted on drop, also when the test fails.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const PODRUN: &str = env!("CARGO_BIN_EXE_podrun");

/// The injector's default `istio-init` arguments (spec §1.7).
const DEFAULT_ARGS: &[&str] = &[
    "istio-iptables",
    "-p",
    "15001",
    "-z",
    "15006",
    "-u",
    "1337",
    "-m",
    "REDIRECT",
    "-i",
    "*",
    "-x",
    "",
    "-b",
    "*",
    "-d",
    "15090,15021,15020",
    "--log_output_level=default:info",
];

/// A network namespace made with `ip netns add`, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Self {
        require_root_and_tools();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "podrun-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace and insists it succeeds; returns stdout.
    fn exec(&self, argv: &[&str]) -> String {
        let out = self.run(argv);
        assert!(
            out.status.success(),
            "{argv:?} failed in {}: {}\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            // The settings under test come from the flags only.
            .env_remove("ISTIO_META_DNS_CAPTURE")
            .env_remove("REDIRECT_DNS")
            .env_remove("DUAL_STACK")
            .output()
            .expect("run ip netns exec")
    }

    fn proxy_init(&self, extra: &[&str]) -> Output {
        let mut argv = vec![PODRUN, "proxy-init"];
        argv.extend_from_slice(extra);
        self.run(&argv)
    }

    /// `iptables -t nat -S`: the rules in the kernel's canonical form.
    fn nat_rules(&self) -> String {
        self.exec(&["iptables", "-t", "nat", "-S"])
    }

    /// Every table, without the timestamped comment lines.
    fn save_all(&self) -> String {
        strip_comments(&self.exec(&["iptables-save"]))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

fn require_root_and_tools() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests need root (network namespaces and iptables); run them as root"
    );
    // apt may still be installing iptables when the suite starts: wait a bounded time.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !Path::new("/usr/sbin/iptables-restore").exists() {
        assert!(
            Instant::now() < deadline,
            "/usr/sbin/iptables-restore missing: install the iptables package"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "proxy-init failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Spec §2.3's final chain contents, as `iptables -t nat -S` prints them (canonical form:
/// implicit `-m tcp`, addresses before interfaces before protocol).
const EXPECTED_NAT: &str = "\
-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N ISTIO_INBOUND
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-N ISTIO_REDIRECT
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp -m tcp --dport 15008 -j RETURN
-A ISTIO_INBOUND -p tcp -m tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp -m tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp -m tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
";

/// `-N` lines come out in an order that differs between backends: sort them, and keep the rule
/// order (which is what matters) as printed.
fn normalized(text: &str) -> String {
    let policies = text.lines().filter(|l| l.starts_with("-P "));
    let mut chains: Vec<&str> = text.lines().filter(|l| l.starts_with("-N ")).collect();
    chains.sort_unstable();
    let rules = text.lines().filter(|l| l.starts_with("-A "));
    policies
        .chain(chains)
        .chain(rules)
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn default_arguments_install_the_spec_rules() {
    let ns = Netns::new();
    assert_ok(&ns.proxy_init(DEFAULT_ARGS));
    assert_eq!(normalized(&ns.nat_rules()), EXPECTED_NAT);
}

#[test]
fn applying_twice_gives_the_same_rules_without_duplicates() {
    let ns = Netns::new();
    assert_ok(&ns.proxy_init(DEFAULT_ARGS));
    let first = ns.save_all();
    let second = ns.proxy_init(DEFAULT_ARGS);
    assert_ok(&second);
    let log = String::from_utf8_lossy(&second.stderr);
    assert!(
        log.contains("already in place"),
        "second run should find the rules in place: {log}"
    );
    assert_eq!(ns.save_all(), first);
    // Forcing a re-apply also leaves exactly one copy of each rule.
    let mut forced = DEFAULT_ARGS.to_vec();
    forced.push("--force-apply");
    assert_ok(&ns.proxy_init(&forced));
    assert_eq!(ns.save_all(), first);
    assert_eq!(normalized(&ns.nat_rules()), EXPECTED_NAT);
}

#[test]
fn rerun_with_other_settings_replaces_the_old_rules() {
    let ns = Netns::new();
    let mut first = DEFAULT_ARGS.to_vec();
    first.extend(["-k", "eth1", "--drop-invalid"]);
    assert_ok(&ns.proxy_init(&first));
    let all = ns.save_all();
    assert!(
        all.contains("ISTIO_DROP") && all.contains("-i eth1"),
        "first settings not applied:\n{all}"
    );
    assert_ok(&ns.proxy_init(DEFAULT_ARGS));
    let all = ns.save_all();
    assert!(
        !all.contains("ISTIO_DROP"),
        "stale mangle chain left:\n{all}"
    );
    assert!(
        !all.contains("eth1 -j ISTIO"),
        "stale virtual-interface jump left:\n{all}"
    );
    // A plain `-i eth1 -j RETURN` of the old settings cannot be told apart from anyone else's
    // rule, so it stays (harmless: it only skips capture for eth1); everything else is as new.
    let rules: String = normalized(&ns.nat_rules())
        .lines()
        .filter(|l| *l != "-A PREROUTING -i eth1 -j RETURN")
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(rules, EXPECTED_NAT);
}

#[test]
fn cleanup_removes_everything_it_added() {
    let ns = Netns::new();
    let mut args = DEFAULT_ARGS.to_vec();
    args.extend(["-c", "eth9", "-k", "eth1", "--drop-invalid"]);
    assert_ok(&ns.proxy_init(&args));
    let applied = ns.save_all();
    assert!(
        applied.contains("ISTIO_") && applied.contains("eth9"),
        "not applied:\n{applied}"
    );

    let mut clean = args.clone();
    clean.push("--cleanup");
    assert_ok(&ns.proxy_init(&clean));
    let after = ns.save_all();
    assert!(
        !after.contains("ISTIO_"),
        "chains left after cleanup:\n{after}"
    );
    let leftovers: Vec<&str> = after.lines().filter(|l| l.starts_with("-A ")).collect();
    assert!(
        leftovers.is_empty(),
        "rules left after cleanup: {leftovers:?}"
    );

    // The `clean` word does the same; on a clean namespace it succeeds and changes nothing.
    let mut word = vec!["clean"];
    word.extend(args.iter().skip(1));
    assert_ok(&ns.proxy_init(&word));
    assert_eq!(ns.save_all(), after);
}

#[test]
fn dry_run_prints_the_rules_and_applies_nothing() {
    let ns = Netns::new();
    let before = ns.save_all();
    let mut args = DEFAULT_ARGS.to_vec();
    args.push("--dry-run");
    let out = ns.proxy_init(&args);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = strip_comments(&stdout);
    assert!(
        text.starts_with("* nat\n-N ISTIO_INBOUND\n"),
        "dry run output:\n{stdout}"
    );
    assert!(
        text.ends_with("-A ISTIO_OUTPUT -j ISTIO_REDIRECT\nCOMMIT\n"),
        "dry run output:\n{stdout}"
    );
    assert_eq!(ns.save_all(), before, "dry run changed the rules");
}

#[test]
fn network_namespace_flag_applies_inside_that_namespace() {
    let ns = Netns::new();
    let mut args = vec!["proxy-init"];
    args.extend_from_slice(DEFAULT_ARGS);
    args.extend(["--network-namespace", &ns.name]);
    let out = Command::new(PODRUN)
        .args(&args)
        .output()
        .expect("run podrun");
    assert_ok(&out);
    assert_eq!(normalized(&ns.nat_rules()), EXPECTED_NAT);
}

#[test]
fn bad_settings_fail_with_a_clear_message_and_apply_nothing() {
    let ns = Netns::new();
    let before = ns.save_all();
    for (flags, needle) in [
        (&["-m", "TPROXY"][..], "TPROXY is not supported"),
        (&["-x", "*"][..], "excluding every outbound range"),
        (&["-b", "80,http"][..], "invalid port \"http\""),
        (&["-i", "10.0.0.0/33"][..], "invalid CIDR"),
    ] {
        let mut args = DEFAULT_ARGS.to_vec();
        args.extend_from_slice(flags);
        let out = ns.proxy_init(&args);
        assert_eq!(out.status.code(), Some(1), "{flags:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "{flags:?}: expected {needle:?} in {stderr}"
        );
    }
    assert_eq!(ns.save_all(), before);
}

#[test]
fn outbound_connection_is_redirected_to_the_capture_port_with_its_original_destination() {
    // End to end through the kernel: an app connection to a remote address lands on 15001 in
    // the pod, and SO_ORIGINAL_DST still names the remote address.
    let ns = Netns::new();
    ns.exec(&[
        "ip",
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0-peer",
    ]);
    ns.exec(&["ip", "addr", "add", "198.18.0.2/24", "dev", "eth0"]);
    ns.exec(&["ip", "link", "set", "eth0", "up"]);
    ns.exec(&["ip", "link", "set", "eth0-peer", "up"]);
    assert_ok(&ns.proxy_init(DEFAULT_ARGS));
    let script = r#"
import socket
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 15001)); srv.listen(1); srv.settimeout(5)
cli = socket.create_connection(("198.18.0.77", 8080), timeout=5)
conn, _ = srv.accept()
raw = conn.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
print(f"{socket.inet_ntoa(raw[4:8])}:{int.from_bytes(raw[2:4], 'big')}")
"#;
    let out = ns.exec(&["python3", "-c", script]);
    assert_eq!(out.trim(), "198.18.0.77:8080");
}

#[test]
fn ipv6_pod_gets_ip6tables_rules_and_the_inbound_source_address() {
    let ns = Netns::new();
    ns.exec(&[
        "ip",
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0-peer",
    ]);
    ns.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd00:198:18::2/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    ns.exec(&["ip", "link", "set", "eth0", "up"]);
    assert_ok(&ns.proxy_init(DEFAULT_ARGS));
    let v6 = ns.exec(&["ip6tables", "-t", "nat", "-S"]);
    assert!(
        v6.contains("-A ISTIO_OUTPUT -s ::6/128 -o lo -j RETURN"),
        "ip6tables rules:\n{v6}"
    );
    assert!(
        v6.contains("-A ISTIO_OUTPUT -d ::1/128 -j RETURN"),
        "ip6tables rules:\n{v6}"
    );
    assert_eq!(
        normalized(&ns.nat_rules()),
        EXPECTED_NAT,
        "IPv4 rules are written too"
    );
    let lo = ns.exec(&["ip", "-6", "addr", "show", "dev", "lo"]);
    assert!(lo.contains("::6/128"), "lo addresses:\n{lo}");

    // Idempotent for both families, and clean-up removes both.
    let before = ns.exec(&["ip6tables-save"]);
    assert_ok(&ns.proxy_init(DEFAULT_ARGS));
    assert_eq!(
        strip_comments(&ns.exec(&["ip6tables-save"])),
        strip_comments(&before)
    );
    let mut clean = DEFAULT_ARGS.to_vec();
    clean.push("--cleanup");
    assert_ok(&ns.proxy_init(&clean));
    assert!(!ns.exec(&["ip6tables-save"]).contains("ISTIO_"));
    assert!(!ns.save_all().contains("ISTIO_"));
}
