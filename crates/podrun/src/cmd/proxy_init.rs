//! `podrun proxy-init`: install the mesh traffic-capture rules in the current network namespace.
//!
//! Accepts the `istio-iptables` command line the injector writes into the `istio-init` container
//! (spec `mesh-sidecar.md` §1.7, §2.1), with the same environment variables. The rules are
//! decided by `podrun-netplan`; this file only gathers facts (interface addresses, resolv.conf,
//! the live rules) and runs the iptables tools:
//!
//! 1. read the live rules with `iptables-save` and ask `iptables -C` which wanted rules exist;
//! 2. if everything is already in place, apply nothing (re-runs are idempotent, #5879);
//! 3. otherwise apply one `iptables-restore --noflush` transaction per family that replaces
//!    whatever of ours is live with the wanted rules, atomically;
//! 4. read the rules back and check they are what was wanted.
//!
//! `--dry-run` prints the restore text and touches nothing; `--cleanup` (or the `clean`
//! subcommand word) removes our chains and the rules that jump into them.

use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use podrun_netplan::{
    ApplyPlan, Backend, CaptureConfig, CaptureInput, DnsCapture, Family, HostFacts, Rule, RuleSet,
    SavedState, build, build_all, choose_backend, env, plan_apply, plan_cleanup,
};

use crate::Global;

/// What the leading positional word asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Install the rules (the word the injector writes first; the default).
    #[value(name = "istio-iptables")]
    IstioIptables,
    /// Remove the rules (same as `--cleanup`).
    #[value(name = "clean", alias = "istio-clean-iptables")]
    Clean,
}

/// Which iptables binaries to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IptablesBinary {
    /// Detect: the backend that already holds rules in this namespace, else the system default.
    Auto,
    /// The system's `iptables` (whatever the alternatives system points at).
    Iptables,
    /// `iptables-nft`.
    IptablesNft,
    /// `iptables-legacy`.
    IptablesLegacy,
}

/// Arguments: the `istio-iptables` flags (short and long forms), plus podrun's own. As with
/// `istio-iptables`, a flag given twice takes the last value.
#[derive(Debug, clap::Args)]
#[command(args_override_self = true)]
pub struct Args {
    /// The flags, boxed: there are many, and the subcommand enum should stay small.
    #[command(flatten)]
    pub flags: Box<Flags>,
}

/// The `istio-iptables` flags and podrun's additions.
#[derive(Debug, clap::Args)]
pub struct Flags {
    /// `istio-iptables` (install; what the injector writes) or `clean` (remove).
    #[arg(value_enum)]
    pub mode: Option<Mode>,
    /// Port all outbound TCP traffic is redirected to [default: 15001; env ENVOY_PORT].
    #[arg(short = 'p', long = "envoy-port", value_name = "PORT")]
    pub proxy_port: Option<String>,
    /// Port all inbound TCP traffic is redirected to [default: 15006; env INBOUND_CAPTURE_PORT].
    #[arg(short = 'z', long = "inbound-capture-port", value_name = "PORT")]
    pub inbound_capture_port: Option<String>,
    /// Inbound tunnel (HBONE) port, never captured [default: 15008; env INBOUND_TUNNEL_PORT].
    #[arg(short = 'e', long = "inbound-tunnel-port", value_name = "PORT")]
    pub inbound_tunnel_port: Option<String>,
    /// UIDs whose traffic is never captured, comma separated [default: UID of ENVOY_USER, else
    /// 1337; env PROXY_UID].
    #[arg(short = 'u', long = "proxy-uid", value_name = "UIDS")]
    pub proxy_uid: Option<String>,
    /// GIDs whose traffic is never captured [default: the UIDs; env PROXY_GID].
    #[arg(short = 'g', long = "proxy-gid", value_name = "GIDS")]
    pub proxy_gid: Option<String>,
    /// Inbound interception mode: REDIRECT (TPROXY is refused) [env ISTIO_INBOUND_INTERCEPTION_MODE].
    #[arg(
        short = 'm',
        long = "istio-inbound-interception-mode",
        value_name = "MODE"
    )]
    pub interception_mode: Option<String>,
    /// TPROXY mark (only with TPROXY) [env ISTIO_INBOUND_TPROXY_MARK].
    #[arg(short = 't', long = "istio-inbound-tproxy-mark", value_name = "MARK")]
    pub tproxy_mark: Option<String>,
    /// TPROXY route table (only with TPROXY) [env ISTIO_INBOUND_TPROXY_ROUTE_TABLE].
    #[arg(
        short = 'r',
        long = "istio-inbound-tproxy-route-table",
        value_name = "TABLE"
    )]
    pub tproxy_route_table: Option<String>,
    /// Inbound ports to capture: list, `*` for all, empty for none [env ISTIO_INBOUND_PORTS].
    #[arg(short = 'b', long = "istio-inbound-ports", value_name = "PORTS")]
    pub inbound_ports: Option<String>,
    /// Inbound ports left alone, with `-b '*'` [env ISTIO_LOCAL_EXCLUDE_PORTS].
    #[arg(short = 'd', long = "istio-local-exclude-ports", value_name = "PORTS")]
    pub inbound_exclude_ports: Option<String>,
    /// Interfaces excluded from all capture [env ISTIO_EXCLUDE_INTERFACES].
    #[arg(short = 'c', long = "istio-exclude-interfaces", value_name = "IFACES")]
    pub exclude_interfaces: Option<String>,
    /// Outbound CIDRs to capture: list, `*` for all, empty for none [env ISTIO_SERVICE_CIDR].
    #[arg(short = 'i', long = "istio-service-cidr", value_name = "CIDRS")]
    pub outbound_include: Option<String>,
    /// Outbound CIDRs left alone [env ISTIO_SERVICE_EXCLUDE_CIDR].
    #[arg(short = 'x', long = "istio-service-exclude-cidr", value_name = "CIDRS")]
    pub outbound_exclude: Option<String>,
    /// Outbound ports always captured [env ISTIO_OUTBOUND_PORTS].
    #[arg(short = 'q', long = "istio-outbound-ports", value_name = "PORTS")]
    pub outbound_ports: Option<String>,
    /// Outbound ports never captured [env ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE].
    #[arg(
        short = 'o',
        long = "istio-local-outbound-ports-exclude",
        value_name = "PORTS"
    )]
    pub outbound_exclude_ports: Option<String>,
    /// Virtual interfaces whose inbound traffic is treated as outbound [env KUBE_VIRT_INTERFACES].
    #[arg(short = 'k', long = "kube-virt-interfaces", value_name = "IFACES")]
    pub virtual_interfaces: Option<String>,
    /// Print the iptables-restore input and change nothing.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Remove our chains and the rules jumping into them instead of installing.
    #[arg(long = "cleanup", visible_alias = "cleanup-only")]
    pub cleanup: bool,
    /// Apply even when the rules already look right.
    #[arg(long = "force-apply")]
    pub force_apply: bool,
    /// Replace stale rules of an older configuration (always done; accepted for compatibility).
    #[arg(long = "reconcile")]
    pub reconcile: bool,
    /// Capture DNS to the agent on 15053 [env REDIRECT_DNS, ISTIO_META_DNS_CAPTURE].
    #[arg(long = "redirect-dns", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub redirect_dns: Option<String>,
    /// With --redirect-dns: capture all port-53 traffic, not only to resolv.conf servers [env CAPTURE_ALL_DNS].
    #[arg(long = "capture-all-dns", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub capture_all_dns: Option<String>,
    /// Drop conntrack-INVALID packets [env DROP_INVALID, INVALID_DROP].
    #[arg(long = "drop-invalid", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub drop_invalid: Option<String>,
    /// Write IPv6 rules whenever the pod has any IPv6 address [env DUAL_STACK, ISTIO_DUAL_STACK].
    #[arg(long = "dual-stack", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub dual_stack: Option<String>,
    /// Network namespace to work in: a name under /var/run/netns or a path.
    #[arg(long = "network-namespace", value_name = "NETNS")]
    pub network_namespace: Option<String>,
    /// Compute the rules but apply nothing (CNI mode: the node already applied them).
    #[arg(long = "skip-rule-apply")]
    pub skip_rule_apply: bool,
    /// CNI validation mode (refused: podrun installs the rules itself).
    #[arg(long = "run-validation")]
    pub run_validation: bool,
    /// Use native nftables rules (refused: rules are written through iptables-restore).
    #[arg(long = "native-nftables")]
    pub native_nftables: bool,
    /// Which iptables binaries to use.
    #[arg(long = "force-iptables-binary", value_enum, default_value = "auto")]
    pub iptables_binary: IptablesBinary,
    /// Log levels, `scope:level,...` (scope `default` governs this command), e.g. `default:info`.
    #[arg(long = "log_output_level", value_name = "LEVELS")]
    pub log_output_level: Option<String>,
    /// Log as JSON lines.
    #[arg(long = "log_as_json")]
    pub log_as_json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<u8> {
    let args = *args.flags;
    let log = Log::new(args.log_output_level.as_deref(), args.log_as_json)?;
    if args.native_nftables {
        bail!(
            "--native-nftables is not supported: podrun writes its rules with iptables-restore (nf_tables or legacy backend)"
        );
    }
    if args.run_validation {
        bail!(
            "--run-validation (CNI validation mode) is not supported: podrun installs the capture rules itself, there is no CNI plugin to validate"
        );
    }
    let cleanup = args.cleanup || args.mode == Some(Mode::Clean);
    if let Some(netns) = &args.network_namespace {
        enter_network_namespace(netns)?;
    }

    let mut input = args.capture_input()?;
    input
        .fill_from_env(|name| std::env::var(name).ok())
        .context("invalid environment setting")?;
    let host = host_facts(&input)?;
    let cfg = CaptureConfig::parse(&input, &host)?;
    if input.redirect_dns == Some(true) && cfg.dns == DnsCapture::Off {
        log.warn("DNS capture requested, but --capture-all-dns is off and resolv.conf lists no name server: DNS capture disabled");
    }
    let sets = build_all(&cfg);

    if args.dry_run {
        let mut out = std::io::stdout().lock();
        for set in &sets {
            let verb = if cleanup {
                "would be removed"
            } else {
                "--noflush"
            };
            writeln!(out, "# {} {verb}", set.family.restore_command())?;
            write!(out, "{}", set.restore_text())?;
        }
        return Ok(0);
    }
    if args.skip_rule_apply {
        log.info("--skip-rule-apply: rules computed, nothing applied");
        return Ok(0);
    }

    let tools = Tools::locate(args.iptables_binary, &log)?;
    if cleanup {
        // Clean both families: a namespace may hold IPv6 rules from a dual-stack run even if
        // this run would only write IPv4 ones.
        for family in [Family::V4, Family::V6] {
            if family == Family::V6 && !cfg.ipv6 && !tools.has_v6() {
                continue;
            }
            clean(&tools, &build(&cfg, family), &log)?;
        }
        return Ok(0);
    }
    for set in &sets {
        apply(&tools, set, args.force_apply, &log)?;
    }
    if cfg.ipv6 {
        add_ipv6_inbound_source()?;
    }
    Ok(0)
}

// === impl Flags ===

impl Flags {
    fn capture_input(&self) -> anyhow::Result<CaptureInput> {
        let flag = |name: &'static str, v: &Option<String>| -> anyhow::Result<Option<bool>> {
            v.as_deref()
                .map(|v| podrun_netplan::parse_bool(name, v))
                .transpose()
                .map_err(Into::into)
        };
        Ok(CaptureInput {
            proxy_port: self.proxy_port.clone(),
            inbound_capture_port: self.inbound_capture_port.clone(),
            inbound_tunnel_port: self.inbound_tunnel_port.clone(),
            proxy_uid: self.proxy_uid.clone(),
            proxy_gid: self.proxy_gid.clone(),
            interception_mode: self.interception_mode.clone(),
            tproxy_mark: self.tproxy_mark.clone(),
            tproxy_route_table: self.tproxy_route_table.clone(),
            inbound_ports_include: self.inbound_ports.clone(),
            inbound_ports_exclude: self.inbound_exclude_ports.clone(),
            outbound_ip_ranges_include: self.outbound_include.clone(),
            outbound_ip_ranges_exclude: self.outbound_exclude.clone(),
            outbound_ports_include: self.outbound_ports.clone(),
            outbound_ports_exclude: self.outbound_exclude_ports.clone(),
            reroute_virtual_interfaces: self.virtual_interfaces.clone(),
            exclude_interfaces: self.exclude_interfaces.clone(),
            redirect_dns: flag("--redirect-dns", &self.redirect_dns)?,
            capture_all_dns: flag("--capture-all-dns", &self.capture_all_dns)?,
            drop_invalid: flag("--drop-invalid", &self.drop_invalid)?,
            dual_stack: flag("--dual-stack", &self.dual_stack)?,
            ipv4_loopback_cidr: None,
            owner_groups_include: None,
            owner_groups_exclude: None,
        })
    }
}

// === apply / clean ===

/// Brings one family to the wanted rules.
fn apply(tools: &Tools, wanted: &RuleSet, force: bool, log: &Log) -> anyhow::Result<()> {
    let family = wanted.family;
    let live = tools.save(family)?;
    let present = |rule: &Rule| tools.check(family, rule);
    let transaction = match plan_apply(wanted, &live, &present) {
        ApplyPlan::InSync if !force => {
            log.info(&format!(
                "{}: capture rules already in place, nothing to apply",
                family.command()
            ));
            return Ok(());
        }
        ApplyPlan::InSync => {
            log.info(&format!(
                "{}: rules already in place; --force-apply given, applying again",
                family.command()
            ));
            match plan_apply(wanted, &live, &|_: &Rule| false) {
                ApplyPlan::Apply { transaction, .. } => transaction,
                ApplyPlan::InSync => return Ok(()),
            }
        }
        ApplyPlan::Apply {
            transaction,
            residue,
        } => {
            if residue {
                log.info(&format!(
                    "{}: replacing existing capture rules",
                    family.command()
                ));
            }
            transaction
        }
    };
    log.debug(&format!(
        "{} --noflush input:\n{transaction}",
        family.restore_command()
    ));
    tools.restore(family, &transaction)?;

    let after = tools.save(family)?;
    if plan_apply(wanted, &after, &present) != ApplyPlan::InSync {
        bail!(
            "{} succeeded but the live rules differ from the wanted ones; live state:\n{}",
            family.restore_command(),
            tools.save_text(family).unwrap_or_default()
        );
    }
    log.info(&format!(
        "{}: capture rules installed; final state:\n{}",
        family.command(),
        tools.save_text(family).unwrap_or_default()
    ));
    Ok(())
}

/// Removes our chains and rules of one family.
fn clean(tools: &Tools, wanted: &RuleSet, log: &Log) -> anyhow::Result<()> {
    let family = wanted.family;
    let live = tools.save(family)?;
    let present = |rule: &Rule| tools.check(family, rule);
    let Some(transaction) = plan_cleanup(wanted, &live, &present) else {
        log.info(&format!("{}: no capture rules to remove", family.command()));
        return Ok(());
    };
    log.debug(&format!(
        "{} --noflush input:\n{transaction}",
        family.restore_command()
    ));
    tools.restore(family, &transaction)?;
    let after = tools.save(family)?;
    if plan_cleanup(wanted, &after, &present).is_some() {
        bail!(
            "capture rules are still present after clean-up; live state:\n{}",
            tools.save_text(family).unwrap_or_default()
        );
    }
    log.info(&format!("{}: capture rules removed", family.command()));
    Ok(())
}

// === tools ===

/// The iptables binaries for both families.
struct Tools {
    v4: FamilyTools,
    v6: Option<FamilyTools>,
}

struct FamilyTools {
    cmd: PathBuf,
    save: PathBuf,
    restore: PathBuf,
}

impl Tools {
    fn locate(choice: IptablesBinary, log: &Log) -> anyhow::Result<Self> {
        let prefix = match choice {
            IptablesBinary::Iptables => "",
            IptablesBinary::IptablesNft => "-nft",
            IptablesBinary::IptablesLegacy => "-legacy",
            IptablesBinary::Auto => {
                let save = |name: &str| {
                    find_binary(name)
                        .and_then(|p| Command::new(p).stdin(Stdio::null()).output().ok())
                        .filter(|o| o.status.success())
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                };
                let nft = save("iptables-nft-save");
                let legacy = save("iptables-legacy-save");
                if nft.is_none() && legacy.is_none() {
                    ""
                } else {
                    match choose_backend(nft.as_deref(), legacy.as_deref()) {
                        Backend::Legacy if legacy.is_some() => "-legacy",
                        Backend::Nft if nft.is_some() => "-nft",
                        _ => "",
                    }
                }
            }
        };
        log.debug(&format!("using iptables{prefix} binaries"));
        let family = |base: &str| -> anyhow::Result<FamilyTools> {
            let need = |name: String| {
                find_binary(&name).with_context(|| {
                    format!("{name} not found (searched PATH, /usr/sbin, /sbin): install the iptables package")
                })
            };
            Ok(FamilyTools {
                cmd: need(format!("{base}{prefix}"))?,
                save: need(format!("{base}{prefix}-save"))?,
                restore: need(format!("{base}{prefix}-restore"))?,
            })
        };
        Ok(Tools {
            v4: family("iptables")?,
            v6: family("ip6tables").ok(),
        })
    }

    fn has_v6(&self) -> bool {
        self.v6.is_some()
    }

    fn family(&self, family: Family) -> anyhow::Result<&FamilyTools> {
        match family {
            Family::V4 => Ok(&self.v4),
            Family::V6 => self.v6.as_ref().context(
                "ip6tables-restore not found (searched PATH, /usr/sbin, /sbin), but the pod has IPv6: install the iptables package",
            ),
        }
    }

    fn save_text(&self, family: Family) -> anyhow::Result<String> {
        let tools = self.family(family)?;
        let out = Command::new(&tools.save)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", tools.save.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}): {}",
                tools.save.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn save(&self, family: Family) -> anyhow::Result<SavedState> {
        let text = self.save_text(family)?;
        Ok(SavedState::parse(&text)?)
    }

    /// `iptables -C`: whether the rule exists. Any failure (no such chain, no such rule) is "no".
    fn check(&self, family: Family, rule: &Rule) -> bool {
        let Ok(tools) = self.family(family) else {
            return false;
        };
        Command::new(&tools.cmd)
            .args(["-w", "5"])
            .args(rule.check_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn restore(&self, family: Family, transaction: &str) -> anyhow::Result<()> {
        let tools = self.family(family)?;
        let mut child = Command::new(&tools.restore)
            .arg("--noflush")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", tools.restore.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(transaction.as_bytes())
                .with_context(|| format!("cannot write to {}", tools.restore.display()))?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            let numbered: String = transaction
                .lines()
                .enumerate()
                .map(|(i, l)| format!("{:>4}  {l}\n", i + 1))
                .collect();
            bail!(
                "{} --noflush failed ({}): {}\ninput was:\n{numbered}",
                tools.restore.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// Finds a binary in PATH, then in the sbin directories a non-login PATH may lack.
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/local/sbin", "/usr/sbin", "/sbin"]
                .into_iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

// === host facts ===

fn host_facts(input: &CaptureInput) -> anyhow::Result<HostFacts> {
    let ipv6 = pod_has_ipv6(input.dual_stack.unwrap_or(false))?;
    let dns_servers = if input.redirect_dns == Some(true) && input.capture_all_dns != Some(true) {
        let text = std::fs::read_to_string("/etc/resolv.conf")
            .context("cannot read /etc/resolv.conf for DNS capture")?;
        resolv_conf_servers(&text)
    } else {
        Vec::new()
    };
    let envoy_user_uid = if input
        .proxy_uid
        .as_deref()
        .is_none_or(|v| v.trim().is_empty())
    {
        let user = std::env::var(env::ENVOY_USER).unwrap_or_else(|_| "istio-proxy".to_owned());
        nix::unistd::User::from_name(&user)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    } else {
        None
    };
    Ok(HostFacts {
        ipv6,
        dns_servers,
        envoy_user_uid,
    })
}

/// Whether IPv6 rules are needed: the first non-loopback, non-link-local address is IPv6, or
/// with dual-stack, any such address is. A namespace without such addresses gets IPv4 rules only.
fn pod_has_ipv6(dual_stack: bool) -> anyhow::Result<bool> {
    let addrs = nix::ifaddrs::getifaddrs().context("cannot list interface addresses")?;
    let mut found = Vec::new();
    for ifa in addrs {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            let ip = v6.ip();
            match ip.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(ip),
            }
        } else {
            continue;
        };
        if usable_pod_address(ip) {
            found.push(ip);
        }
    }
    Ok(if dual_stack {
        found.iter().any(IpAddr::is_ipv6)
    } else {
        found.first().is_some_and(IpAddr::is_ipv6)
    })
}

fn usable_pod_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_loopback() && !a.is_link_local(),
        IpAddr::V6(a) => !a.is_loopback() && !a.is_unicast_link_local() && !a.is_multicast(),
    }
}

/// `nameserver` addresses of a resolv.conf, in order.
fn resolv_conf_servers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        // A scoped address (`fe80::1%eth0`) cannot go into a rule; drop the scope.
        .filter_map(|addr| addr.split('%').next().and_then(|a| a.parse().ok()))
        .collect()
}

/// IPv6 has no 127/8: the proxy's inbound source `::6` must be added to `lo` explicitly.
fn add_ipv6_inbound_source() -> anyhow::Result<()> {
    let ip = find_binary("ip")
        .context("ip (iproute2) not found: needed to add ::6/128 to lo for IPv6")?;
    let out = Command::new(ip)
        .args(["-6", "addr", "replace", "::6/128", "dev", "lo"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run ip")?;
    if !out.status.success() {
        bail!(
            "ip -6 addr replace ::6/128 dev lo failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Moves this thread (the only one: proxy-init starts no runtime) into another network
/// namespace; the iptables tools it spawns inherit it.
fn enter_network_namespace(netns: &str) -> anyhow::Result<()> {
    let path = if netns.contains('/') {
        PathBuf::from(netns)
    } else {
        Path::new("/var/run/netns").join(netns)
    };
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot open network namespace {}", path.display()))?;
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("cannot enter network namespace {}", path.display()))?;
    Ok(())
}

// === logging ===

/// `--log_output_level` for this command: messages at or above the level go to stderr, as
/// `istio-iptables` logs them; they also go to tracing.
struct Log {
    level: u8,
    json: bool,
}

const LEVEL_NONE: u8 = 0;
const LEVEL_ERROR: u8 = 1;
const LEVEL_WARN: u8 = 2;
const LEVEL_INFO: u8 = 3;
const LEVEL_DEBUG: u8 = 4;

impl Log {
    fn new(spec: Option<&str>, json: bool) -> anyhow::Result<Self> {
        // Default as istio: info for the default scope.
        let mut level = LEVEL_INFO;
        for item in spec
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (scope, value) = item.split_once(':').unwrap_or(("default", item));
            let parsed = match value {
                "none" => LEVEL_NONE,
                "fatal" | "error" => LEVEL_ERROR,
                "warn" | "warning" => LEVEL_WARN,
                "info" => LEVEL_INFO,
                "debug" => LEVEL_DEBUG,
                other => bail!(
                    "invalid --log_output_level {item:?}: unknown level {other:?} (none, error, warn, info, debug)"
                ),
            };
            if scope == "default" {
                level = parsed;
            }
        }
        Ok(Log { level, json })
    }

    fn emit(&self, level: u8, name: &str, msg: &str) {
        if level > self.level {
            return;
        }
        if self.json {
            let line = serde_json::json!({ "level": name, "scope": "proxy-init", "msg": msg });
            eprintln!("{line}");
        } else {
            eprintln!("{name}\tproxy-init\t{msg}");
        }
    }

    fn warn(&self, msg: &str) {
        tracing::warn!("{msg}");
        self.emit(LEVEL_WARN, "warn", msg);
    }

    fn info(&self, msg: &str) {
        tracing::info!("{msg}");
        self.emit(LEVEL_INFO, "info", msg);
    }

    fn debug(&self, msg: &str) {
        tracing::debug!("{msg}");
        self.emit(LEVEL_DEBUG, "debug", msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_in_order_without_scope() {
        let text = "# comment\nsearch default.svc.cluster.local\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:5\n";
        let servers = resolv_conf_servers(text);
        assert_eq!(
            servers,
            vec![
                "10.96.0.10".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn log_levels_parse_and_reject_unknown() {
        assert_eq!(
            Log::new(Some("default:info"), false).unwrap().level,
            LEVEL_INFO
        );
        assert_eq!(
            Log::new(Some("misc:debug,default:warn"), false)
                .unwrap()
                .level,
            LEVEL_WARN
        );
        assert_eq!(Log::new(Some("debug"), false).unwrap().level, LEVEL_DEBUG);
        assert!(Log::new(Some("default:loud"), false).is_err());
    }

    #[test]
    fn link_local_and_loopback_are_not_pod_addresses() {
        for bad in ["127.0.0.1", "169.254.1.1", "::1", "fe80::1"] {
            assert!(!usable_pod_address(bad.parse().unwrap()), "{bad}");
        }
        for good in ["198.18.0.5", "fd00::5"] {
            assert!(usable_pod_address(good.parse().unwrap()), "{good}");
        }
    }
}
