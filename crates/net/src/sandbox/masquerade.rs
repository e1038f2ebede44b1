//! Opt-in egress for pods (`podrun run --masquerade`): an iptables `MASQUERADE` rule for
//! the pod CIDR plus IPv4 forwarding on the host.
//!
//! Several podruns may ask for it at once, so each registers itself as a user in
//! `/run/podrun/masquerade/<cidr>/<pid>` under a lock; the rule is added by the first and
//! removed (and forwarding restored to what it was) when the last live user lets go.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

use super::ipam::Ipv4Cidr;

const ROOT: &str = "/run/podrun/masquerade";
const COMMENT: &str = "podrun-masquerade";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// This process's use of masquerading; dropping it lets go.
#[derive(Debug)]
pub struct Masquerade {
    cidr: Ipv4Cidr,
    dir: PathBuf,
}

fn rule(cidr: &Ipv4Cidr, op: &str) -> Vec<String> {
    [
        "-t",
        "nat",
        op,
        "POSTROUTING",
        "-s",
        &cidr.to_string(),
        "!",
        "-o",
        super::BRIDGE,
        "-m",
        "comment",
        "--comment",
        COMMENT,
        "-j",
        "MASQUERADE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn iptables(args: &[String]) -> io::Result<bool> {
    let out = Command::new("iptables")
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run iptables: {e}")))?;
    Ok(out.status.success())
}

impl Masquerade {
    fn lock(&self) -> io::Result<fs::File> {
        fs::create_dir_all(&self.dir)?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f)
    }

    /// Live users other than dead ones (whose files are removed on the way).
    fn live_users(&self) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut n = 0;
        for e in entries.filter_map(|e| e.ok()) {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let start = fs::read_to_string(e.path())
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok());
            if start.is_some() && podrun_process::process_start_time(pid) == start {
                n += 1;
            } else {
                let _ = fs::remove_file(e.path());
            }
        }
        n
    }

    /// Registers this process and makes sure the rule and forwarding are in place.
    pub fn enable(cidr: Ipv4Cidr) -> io::Result<Self> {
        let m = Self {
            cidr,
            dir: PathBuf::from(ROOT).join(cidr.file_name()),
        };
        let _lock = m.lock()?;
        if m.live_users() == 0 {
            let saved = m.dir.join(".ip_forward");
            if !saved.exists() {
                fs::write(&saved, fs::read_to_string(IP_FORWARD)?)?;
            }
        }
        if !iptables(&rule(&cidr, "-C"))? && !iptables(&rule(&cidr, "-A"))? {
            return Err(io::Error::other(format!(
                "iptables refused the MASQUERADE rule for {cidr}"
            )));
        }
        fs::write(IP_FORWARD, "1\n")?;
        let pid = std::process::id();
        let start = podrun_process::process_start_time(pid).unwrap_or(0);
        fs::write(m.dir.join(pid.to_string()), format!("{start}\n"))?;
        Ok(m)
    }

    /// Whether the rule is installed now.
    pub fn rule_present(cidr: &Ipv4Cidr) -> bool {
        iptables(&rule(cidr, "-C")).unwrap_or(false)
    }
}

impl Drop for Masquerade {
    fn drop(&mut self) {
        let Ok(_lock) = self.lock() else { return };
        let _ = fs::remove_file(self.dir.join(std::process::id().to_string()));
        if self.live_users() > 0 {
            return;
        }
        while iptables(&rule(&self.cidr, "-C")).unwrap_or(false) {
            if !iptables(&rule(&self.cidr, "-D")).unwrap_or(false) {
                break;
            }
        }
        let saved = self.dir.join(".ip_forward");
        if let Ok(v) = fs::read_to_string(&saved) {
            let _ = fs::write(IP_FORWARD, v);
            let _ = fs::remove_file(saved);
        }
    }
}
