//! `podrun doctor [--clean]`: what this host offers pods (root, iptables, ip, kernel
//! namespaces, cgroup version, the bridge) and what podrun left behind (network
//! namespaces, veths, address allocations, sandbox records, orphaned pod inits).
//!
//! Exit code: 0 when nothing is left behind (or all of it was removed with `--clean`),
//! 1 otherwise.

use std::path::Path;

use podrun_net::sandbox::{self, ipam::IPAM_ROOT};

use crate::Global;

/// Arguments of `podrun doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove the leftovers found.
    #[arg(long)]
    pub clean: bool,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    println!("Host prerequisites:");
    for (name, ok, detail) in prerequisites() {
        println!("  [{}] {name}: {detail}", if ok { "ok" } else { "--" });
    }
    let state_dir = global.state_dir();
    let found = sandbox::leftovers(&state_dir, Path::new(IPAM_ROOT));
    println!("Leftovers (state directory {}):", state_dir.display());
    let sections: [(&str, Vec<String>); 5] = [
        ("network namespaces", found.netns.clone()),
        ("veths", found.veths.clone()),
        ("address allocations", found.allocations.clone()),
        ("sandbox records", found.records.clone()),
        (
            "processes",
            found.processes.iter().map(|p| format!("pid {p}")).collect(),
        ),
    ];
    for (name, items) in &sections {
        if items.is_empty() {
            println!("  {name}: none");
        } else {
            println!("  {name}: {}", items.len());
            for item in items {
                println!("    {item}");
            }
        }
    }
    if found.is_empty() {
        return Ok(0);
    }
    if !args.clean {
        println!("Run `podrun doctor --clean` to remove them.");
        return Ok(1);
    }
    for line in sandbox::clean(&found, &state_dir, Path::new(IPAM_ROOT)) {
        println!("  {line}");
    }
    let after = sandbox::leftovers(&state_dir, Path::new(IPAM_ROOT));
    Ok(if after.is_empty() { 0 } else { 1 })
}

fn which(cmd: &str) -> Option<String> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(cmd))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// (name, available, detail) for each prerequisite.
fn prerequisites() -> Vec<(&'static str, bool, String)> {
    let mut out = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    out.push((
        "root",
        root,
        if root {
            "yes: pods get namespaces, pod IPs and isolation".to_string()
        } else {
            "no: pods share the host network and are not isolated".to_string()
        },
    ));
    for cmd in ["iptables", "iptables-restore", "ip"] {
        let found = which(cmd);
        out.push((
            cmd,
            found.is_some(),
            found.unwrap_or_else(|| "not found in PATH".into()),
        ));
    }
    let ns: Vec<&str> = ["net", "uts", "ipc", "pid", "mnt", "cgroup"]
        .into_iter()
        .filter(|n| Path::new("/proc/self/ns").join(n).exists())
        .collect();
    out.push(("kernel namespaces", ns.len() == 6, ns.join(" ")));
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let unified = Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists();
    let v1 =
        Path::new("/sys/fs/cgroup/memory").exists() || Path::new("/sys/fs/cgroup/cpu").exists();
    let cg = match (v2, v1, unified) {
        (true, _, _) => "v2 (unified)".to_string(),
        (false, true, true) => "v1 hybrid (v1 controllers, v2 at /sys/fs/cgroup/unified)".into(),
        (false, true, false) => "v1".into(),
        _ => "none detected".into(),
    };
    out.push(("cgroups", v2 || v1, cg));
    let bridge = Path::new("/sys/class/net").join(sandbox::BRIDGE).exists();
    out.push((
        "bridge",
        true,
        if bridge {
            format!("{} present", sandbox::BRIDGE)
        } else {
            format!("{} absent (created with the first pod)", sandbox::BRIDGE)
        },
    ));
    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    out.push((
        "ip_forward",
        true,
        if forward {
            "1 (pods may reach beyond this machine if a rule masquerades them)".into()
        } else {
            "0 (no pod traffic leaves the machine; --masquerade turns it on)".into()
        },
    ));
    out
}
