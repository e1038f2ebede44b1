//! IP address management for the pod CIDR.
//!
//! The address space belongs to the host bridge `podrun0`, which every podrun on the
//! machine shares whatever its state directory, so allocations live in one host-wide
//! directory (`/run/podrun/ipam/<cidr>/`, per boot like the namespaces they address): one
//! file per address in use, holding who took it. Allocation holds an exclusive `flock` on
//! the directory's lock file and creates the address file with `O_EXCL`, so concurrent
//! podruns never hand out the same address. Released addresses are reused after the
//! cursor has gone round the range once, which keeps a just-freed address (and stale ARP
//! entries for it) out of use for as long as possible.
//!
//! Choosing the next address ([`next_free`]) is a pure function; the rest is file I/O.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Host-wide root of the allocation directories.
pub const IPAM_ROOT: &str = "/run/podrun/ipam";

/// An IPv4 network in CIDR notation, e.g. `198.18.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `a.b.c.d/n`.
    #[error("invalid CIDR address: {0}")]
    Syntax(String),
    /// Fewer than 4 addresses: no room for network, gateway, one pod and broadcast.
    #[error("pod CIDR {0} is too small: need a prefix length of /30 or shorter")]
    TooSmall(String),
}

impl Ipv4Cidr {
    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The first usable address: the bridge's (the pods' gateway).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.network)
    }

    /// Addresses pods may get: everything but network, gateway and broadcast.
    fn pod_range(&self) -> (u32, u32) {
        let base = u32::from(self.network);
        (base + 2, base + (self.size() - 2) as u32)
    }

    /// A file-name-safe form, `198.18.0.0_16`.
    pub fn file_name(&self) -> String {
        format!("{}_{}", self.network, self.prefix)
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || CidrError::Syntax(s.to_string());
        let (ip, prefix) = s.split_once('/').ok_or_else(syntax)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| syntax())?;
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        if prefix > 32 {
            return Err(syntax());
        }
        if prefix > 30 {
            return Err(CidrError::TooSmall(s.to_string()));
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

/// The address to allocate: the first free one after `after` (wrapping round the pod
/// range), or from the start of the range without a cursor. `None` when full.
pub fn next_free(
    cidr: &Ipv4Cidr,
    used: &BTreeSet<Ipv4Addr>,
    after: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let (first, last) = cidr.pod_range();
    let start = match after.map(u32::from) {
        Some(a) if a >= first && a < last => a + 1,
        _ => first,
    };
    let count = u64::from(last - first) + 1;
    (0..count)
        .map(|i| {
            let off = (u64::from(start - first) + i) % count;
            Ipv4Addr::from(first + off as u32)
        })
        .find(|ip| !used.contains(ip))
}

/// Who holds an address, as written in its file: `<pod uid> <pid> <start time> <state dir>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The pod's `metadata.uid`.
    pub uid: String,
    /// The podrun process that allocated it.
    pub pid: u32,
    /// That process's start time (clock ticks since boot), so a reused pid is not
    /// mistaken for the owner.
    pub start_time: u64,
    /// Its state directory.
    pub state_dir: PathBuf,
}

impl Holder {
    fn parse(text: &str) -> Option<Self> {
        let mut it = text.trim_end().splitn(4, ' ');
        Some(Self {
            uid: it.next()?.to_string(),
            pid: it.next()?.parse().ok()?,
            start_time: it.next()?.parse().ok()?,
            state_dir: PathBuf::from(it.next()?),
        })
    }

    /// Whether the podrun that allocated the address still runs.
    pub fn alive(&self) -> bool {
        podrun_process::process_start_time(self.pid) == Some(self.start_time)
    }
}

/// The allocation directory of one pod CIDR.
#[derive(Debug, Clone)]
pub struct Ipam {
    cidr: Ipv4Cidr,
    dir: PathBuf,
}

impl Ipam {
    /// The allocations of `cidr` under `root` (normally [`IPAM_ROOT`]).
    pub fn new(root: &Path, cidr: Ipv4Cidr) -> Self {
        Self {
            cidr,
            dir: root.join(cidr.file_name()),
        }
    }

    /// The CIDR.
    pub fn cidr(&self) -> &Ipv4Cidr {
        &self.cidr
    }

    fn lock(&self) -> io::Result<File> {
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.dir.join(".lock"))
        };
        // The directory exists after the first allocation: only then is it made.
        let f = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.dir)?;
                open()?
            }
            other => other?,
        };
        // SAFETY: flock on a descriptor we own; released when `f` is closed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f)
    }

    /// Every address in use, with its holder (unreadable files count as used, holder
    /// unknown).
    pub fn list(&self) -> io::Result<Vec<(Ipv4Addr, Option<Holder>)>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in entries.filter_map(|e| e.ok()) {
            let Some(ip) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let holder = fs::read_to_string(e.path())
                .ok()
                .and_then(|t| Holder::parse(&t));
            out.push((ip, holder));
        }
        out.sort_by_key(|(ip, _)| *ip);
        Ok(out)
    }

    /// The addresses in use, from the file names alone: allocation runs under the
    /// host-wide lock, so it must not open every holder file as [`Ipam::list`] does.
    fn used(&self) -> io::Result<BTreeSet<Ipv4Addr>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(e) => return Err(e),
        };
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<Ipv4Addr>().ok())
            .collect())
    }

    /// Allocates an address for pod `uid`.
    pub fn allocate(&self, uid: &str, state_dir: &Path) -> io::Result<Ipv4Addr> {
        let _lock = self.lock()?;
        let used = self.used()?;
        // The cursor is read and rewritten through one descriptor.
        let cursor = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(self.dir.join(".last"))?;
        let mut text = [0u8; 32];
        let n = cursor.read_at(&mut text, 0)?;
        let after = std::str::from_utf8(&text[..n])
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let ip = next_free(&self.cidr, &used, after).ok_or_else(|| {
            io::Error::other(format!("pod CIDR {} has no free address left", self.cidr))
        })?;
        let (pid, start) = super::own_identity();
        // One write(2): a holder file is never seen half-written by `list`.
        let line = format!("{uid} {pid} {start} {}\n", state_dir.display());
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.dir.join(ip.to_string()))?;
        f.write_all(line.as_bytes())?;
        // Always 16 bytes (the longest address and a newline), overwritten in place: no
        // truncation, which costs more than the write on some file systems.
        cursor.write_all_at(format!("{ip:<15}\n").as_bytes(), 0)?;
        Ok(ip)
    }

    /// Releases `ip` if pod `uid` holds it. Returns whether it did.
    pub fn release(&self, ip: Ipv4Addr, uid: &str) -> io::Result<bool> {
        let _lock = self.lock()?;
        let path = self.dir.join(ip.to_string());
        match fs::read_to_string(&path) {
            Ok(t) if Holder::parse(&t).is_some_and(|h| h.uid == uid) => {
                fs::remove_file(&path)?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Releases every address whose allocating podrun is dead, if `filter` accepts its
    /// holder. Returns the addresses released.
    pub fn release_dead(&self, filter: impl Fn(&Holder) -> bool) -> io::Result<Vec<Ipv4Addr>> {
        let _lock = self.lock()?;
        let mut out = Vec::new();
        for (ip, holder) in self.list()? {
            if let Some(h) = holder
                && !h.alive()
                && filter(&h)
            {
                let _ = fs::remove_file(self.dir.join(ip.to_string()));
                out.push(ip);
            }
        }
        Ok(out)
    }
}

/// Every allocation directory under `root`, as [`Ipam`]s.
pub fn all(root: &Path) -> Vec<Ipam> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let cidr: Ipv4Cidr = name.replacen('_', "/", 1).parse().ok()?;
            Some(Ipam::new(root, cidr))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_normalises_cidrs() {
        let c = cidr("198.18.3.7/16");
        assert_eq!(c.to_string(), "198.18.0.0/16");
        assert_eq!(c.gateway(), Ipv4Addr::new(198, 18, 0, 1));
        assert!(c.contains(Ipv4Addr::new(198, 18, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(198, 19, 0, 1)));
        assert_eq!(
            "198.18.0.0".parse::<Ipv4Cidr>(),
            Err(CidrError::Syntax("198.18.0.0".into()))
        );
        assert_eq!(
            "198.18.0.0/31".parse::<Ipv4Cidr>(),
            Err(CidrError::TooSmall("198.18.0.0/31".into()))
        );
        assert!("198.18.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("x/16".parse::<Ipv4Cidr>().is_err());
        assert_eq!(cidr("0.0.0.0/0").gateway(), Ipv4Addr::new(0, 0, 0, 1));
    }

    #[test]
    fn next_free_skips_network_gateway_and_broadcast_and_wraps() {
        let c = cidr("10.0.0.0/29"); // .2 … .6 for pods
        let mut used = BTreeSet::new();
        assert_eq!(next_free(&c, &used, None), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(
            next_free(&c, &used, Some(Ipv4Addr::new(10, 0, 0, 4))),
            Some(Ipv4Addr::new(10, 0, 0, 5))
        );
        // After the last one the cursor wraps to the start of the range.
        assert_eq!(
            next_free(&c, &used, Some(Ipv4Addr::new(10, 0, 0, 6))),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        for i in 2..=6 {
            used.insert(Ipv4Addr::new(10, 0, 0, i));
        }
        assert_eq!(next_free(&c, &used, None), None);
        used.remove(&Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(
            next_free(&c, &used, Some(Ipv4Addr::new(10, 0, 0, 5))),
            Some(Ipv4Addr::new(10, 0, 0, 3))
        );
    }

    #[test]
    fn allocations_are_unique_released_and_reused() {
        let root = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(root.path(), cidr("10.9.0.0/30")); // one pod address: .2
        let a = ipam.allocate("u1", Path::new("/s")).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        let full = ipam.allocate("u2", Path::new("/s")).unwrap_err();
        assert!(full.to_string().contains("no free address"), "{full}");
        assert!(!ipam.release(a, "someone-else").unwrap());
        assert!(ipam.release(a, "u1").unwrap());
        assert_eq!(ipam.allocate("u2", Path::new("/s")).unwrap(), a);
        let listed = ipam.list().unwrap();
        assert_eq!(listed.len(), 1);
        let holder = listed[0].1.clone().unwrap();
        assert_eq!(holder.uid, "u2");
        assert!(holder.alive());
        assert_eq!(all(root.path()).len(), 1);
    }

    #[test]
    fn allocation_counts_unreadable_holders_as_used_and_skips_other_files() {
        let root = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(root.path(), cidr("10.7.0.0/29")); // .2 … .6 for pods
        let a = ipam.allocate("u1", Path::new("/s")).unwrap();
        // A holder file whose content cannot be parsed still holds its address.
        fs::write(ipam.dir.join("10.7.0.3"), "garbage").unwrap();
        fs::write(ipam.dir.join("not-an-address"), "").unwrap();
        let used = ipam.used().unwrap();
        assert_eq!(used, BTreeSet::from([a, Ipv4Addr::new(10, 7, 0, 3)]));
        assert_eq!(
            ipam.allocate("u2", Path::new("/s")).unwrap(),
            Ipv4Addr::new(10, 7, 0, 4)
        );
        let text = fs::read_to_string(ipam.dir.join("10.7.0.4")).unwrap();
        let holder = Holder::parse(&text).unwrap();
        assert_eq!(
            (holder.uid.as_str(), holder.pid),
            ("u2", std::process::id())
        );
        assert!(holder.alive());
    }

    #[test]
    fn the_cursor_is_rewritten_in_place_whatever_was_there() {
        let root = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(root.path(), cidr("10.6.0.0/24")); // .2 … .254 for pods
        fs::create_dir_all(&ipam.dir).unwrap();
        // A longer cursor, as an older podrun wrote it: the next address wraps round to a
        // shorter one, which must not leave a tail of the old text behind.
        fs::write(ipam.dir.join(".last"), "10.6.0.254\n").unwrap();
        let a = ipam.allocate("u1", Path::new("/s")).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 6, 0, 2));
        let text = fs::read_to_string(ipam.dir.join(".last")).unwrap();
        assert_eq!(text.trim(), "10.6.0.2");
        assert_eq!(text.len(), 16);
        assert_eq!(
            ipam.allocate("u2", Path::new("/s")).unwrap(),
            Ipv4Addr::new(10, 6, 0, 3)
        );
    }

    #[test]
    fn concurrent_allocations_never_collide() {
        let root = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(root.path(), cidr("10.8.0.0/24"));
        let got: Vec<Ipv4Addr> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let ipam = ipam.clone();
                    s.spawn(move || {
                        (0..20)
                            .map(|i| ipam.allocate(&format!("{t}-{i}"), Path::new("/s")).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let unique: BTreeSet<_> = got.iter().collect();
        assert_eq!(unique.len(), 160);
    }
}
