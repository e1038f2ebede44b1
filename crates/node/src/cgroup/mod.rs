//! Container resources through cgroups: `resources.limits` and `requests` for cpu and
//! memory, OOM detection, and removal of the pod's cgroups.
//!
//! The host's layout is detected, never assumed ([`detect`]): a unified (v2) hierarchy is
//! used when it is mounted with the `memory` and `cpu` controllers enabled, else the v1
//! per-controller hierarchies (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu`). Each pod gets
//! `podrun/<pod-uid>` in every hierarchy used, with a child per container. What to write is
//! decided by the pure [`ResourcePlan::from_container`]; [`Cgroups`] only does the file I/O.
//!
//! A container process joins its cgroup itself between clone and exec (it writes `0` to
//! `cgroup.procs` file descriptors opened by podrun), so not one instruction of the
//! container's program runs outside its limits.

pub mod quantity;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::layout::Layout;

/// Directory (under each hierarchy's root) holding every pod cgroup of podrun.
pub const PARENT: &str = "podrun";

/// CFS period the kubelet uses (100 ms).
pub const CFS_PERIOD_US: u64 = 100_000;

/// The kubelet's smallest CFS quota (1 ms).
const MIN_QUOTA_US: u64 = 1_000;

/// `cpu.shares` the kubelet gives a container without a cpu request.
const MIN_SHARES: u64 = 2;

/// `cpu.shares` upper bound.
const MAX_SHARES: u64 = 262_144;

/// Which cgroup version the host offers, with the mount points podrun uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// One unified hierarchy with the controllers enabled at its root.
    V2 {
        /// Its mount point.
        root: PathBuf,
    },
    /// Per-controller hierarchies.
    V1 {
        /// Mount point of the `memory` controller.
        memory: PathBuf,
        /// Mount point of the `cpu` controller (possibly co-mounted with `cpuacct`).
        cpu: PathBuf,
    },
}

/// Why cgroups cannot be used or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CgroupError {
    /// Neither a v2 hierarchy with memory and cpu nor v1 memory and cpu hierarchies.
    #[error("no usable cgroup hierarchy: {0}")]
    Unavailable(String),
    /// A cgroup file operation failed.
    #[error("cgroup {path}: {reason}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A resource quantity could not be understood.
    #[error("{0}")]
    Quantity(String),
}

/// What to write into a container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourcePlan {
    /// `limits.memory` in bytes.
    pub memory_limit: Option<u64>,
    /// CFS quota in microseconds per [`CFS_PERIOD_US`] from `limits.cpu`.
    pub cpu_quota_us: Option<u64>,
    /// `cpu.shares` from `requests.cpu` (v2 converts it to `cpu.weight`).
    pub cpu_shares: u64,
}

/// The cgroups of one pod: `podrun/<uid>` in every hierarchy used.
#[derive(Debug, Clone)]
pub struct PodCgroup {
    hierarchy: Hierarchy,
    uid: String,
}

/// The cgroup of one container instance.
#[derive(Debug)]
pub struct ContainerCgroup {
    hierarchy: Hierarchy,
    dirs: Vec<PathBuf>,
    oom_kills_before: u64,
}

// === impl ResourcePlan ===

impl ResourcePlan {
    /// Decides the container's cgroup values the way the kubelet does: memory limit as
    /// bytes, cpu limit as a CFS quota (at least 1 ms), cpu request as shares (requests
    /// default to limits; no request gives the minimum, 2).
    pub fn from_container(c: &Container) -> Result<Self, CgroupError> {
        let res = c.resources.as_ref();
        let get = |m: Option<&BTreeMap<String, Quantity>>, name: &str| {
            m.and_then(|m| m.get(name)).map(|q| q.0.clone())
        };
        let limits = res.and_then(|r| r.limits.as_ref());
        let requests = res.and_then(|r| r.requests.as_ref());
        let memory_limit = get(limits, "memory")
            .map(|q| quantity::bytes(&q).map_err(CgroupError::Quantity))
            .transpose()?;
        let cpu_limit = get(limits, "cpu")
            .map(|q| quantity::millicores(&q).map_err(CgroupError::Quantity))
            .transpose()?;
        let cpu_request = match get(requests, "cpu") {
            Some(q) => Some(quantity::millicores(&q).map_err(CgroupError::Quantity)?),
            None => cpu_limit,
        };
        let cpu_quota_us = cpu_limit.map(|m| (m * CFS_PERIOD_US / 1000).max(MIN_QUOTA_US));
        let cpu_shares = cpu_request
            .map(|m| (m * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES))
            .unwrap_or(MIN_SHARES);
        Ok(Self {
            memory_limit,
            cpu_quota_us,
            cpu_shares,
        })
    }

    /// The pod-level values the kubelet gives the pod cgroup: the sum of the regular
    /// (and sidecar) containers' limits when every one of them has that limit, but at
    /// least the largest init container's; the shares of the summed cpu requests.
    pub fn for_pod(pod: &k8s_openapi::api::core::v1::Pod) -> Result<Self, CgroupError> {
        let Some(spec) = pod.spec.as_ref() else {
            return Ok(Self {
                memory_limit: None,
                cpu_quota_us: None,
                cpu_shares: MIN_SHARES,
            });
        };
        let mut long_running: Vec<ResourcePlan> = Vec::new();
        let mut init: Vec<ResourcePlan> = Vec::new();
        for c in &spec.containers {
            long_running.push(Self::from_container(c)?);
        }
        for c in spec.init_containers.iter().flatten() {
            let plan = Self::from_container(c)?;
            if podrun_model::is_sidecar(c) {
                long_running.push(plan);
            } else {
                init.push(plan);
            }
        }
        let sum = |f: fn(&ResourcePlan) -> Option<u64>| -> Option<u64> {
            let total = long_running.iter().map(f).sum::<Option<u64>>()?;
            let init_max = init
                .iter()
                .map(f)
                .collect::<Option<Vec<u64>>>()
                .map(|v| v.into_iter().max().unwrap_or(0));
            // An init container without the limit leaves the pod unbounded.
            Some(total.max(init_max?))
        };
        let memory_limit = sum(|p| p.memory_limit);
        let cpu_quota_us = sum(|p| p.cpu_quota_us);
        let shares = long_running.iter().map(|p| p.cpu_shares).sum::<u64>();
        let init_shares = init.iter().map(|p| p.cpu_shares).max().unwrap_or(0);
        Ok(Self {
            memory_limit,
            cpu_quota_us,
            cpu_shares: shares.max(init_shares).clamp(MIN_SHARES, MAX_SHARES),
        })
    }

    /// Whether the container asked for any limit or request (and so must not run without
    /// cgroups).
    pub fn is_constrained(&self) -> bool {
        self.memory_limit.is_some() || self.cpu_quota_us.is_some() || self.cpu_shares != MIN_SHARES
    }

    /// The files to write for `hierarchy`, as (controller index, file name, value): index
    /// 0 is the memory (or unified) directory, 1 the cpu directory.
    pub fn files(&self, hierarchy: &Hierarchy) -> Vec<(usize, &'static str, String)> {
        let mut out = Vec::new();
        match hierarchy {
            Hierarchy::V1 { .. } => {
                if let Some(m) = self.memory_limit {
                    out.push((0, "memory.limit_in_bytes", m.to_string()));
                }
                out.push((1, "cpu.cfs_period_us", CFS_PERIOD_US.to_string()));
                if let Some(q) = self.cpu_quota_us {
                    out.push((1, "cpu.cfs_quota_us", q.to_string()));
                }
                out.push((1, "cpu.shares", self.cpu_shares.to_string()));
            }
            Hierarchy::V2 { .. } => {
                if let Some(m) = self.memory_limit {
                    out.push((0, "memory.max", m.to_string()));
                    // Like runc: no swap beyond the limit, so the limit is what OOM-kills.
                    out.push((0, "memory.swap.max", "0".to_string()));
                }
                let quota = self
                    .cpu_quota_us
                    .map_or_else(|| "max".to_string(), |q| q.to_string());
                out.push((0, "cpu.max", format!("{quota} {CFS_PERIOD_US}")));
                out.push((
                    0,
                    "cpu.weight",
                    shares_to_weight(self.cpu_shares).to_string(),
                ));
            }
        }
        out
    }
}

/// runc's conversion of `cpu.shares` [2, 262144] to `cpu.weight` [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

/// The pod's QoS class as the API server computes it: `Guaranteed` when every container
/// has cpu and memory limits equal to its requests, `BestEffort` when no container asks
/// for cpu or memory at all, `Burstable` otherwise.
pub fn qos_class(pod: &k8s_openapi::api::core::v1::Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let res = c.resources.as_ref();
        let limits = res.and_then(|r| r.limits.as_ref());
        let requests = res.and_then(|r| r.requests.as_ref());
        for name in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(name)).map(|q| q.0.as_str());
            // Requests default to limits (the API server's defaulting).
            let request = requests
                .and_then(|r| r.get(name))
                .map(|q| q.0.as_str())
                .or(limit);
            let is_zero = |q: Option<&str>| match name {
                "cpu" => q.is_none_or(|q| quantity::millicores(q).is_ok_and(|v| v == 0)),
                _ => q.is_none_or(|q| quantity::bytes(q).is_ok_and(|v| v == 0)),
            };
            if !is_zero(request) || !is_zero(limit) {
                any = true;
            }
            let same = match (limit, request, name) {
                (Some(l), Some(r), "cpu") => {
                    quantity::millicores(l).ok() == quantity::millicores(r).ok()
                }
                (Some(l), Some(r), _) => quantity::bytes(l).ok() == quantity::bytes(r).ok(),
                _ => false,
            };
            if !same {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

// === detection ===

/// One line of `/proc/self/mounts`: (fstype, mount point, options).
fn parse_mounts(text: &str) -> Vec<(String, PathBuf, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (_src, target, fstype, opts) = (f.next()?, f.next()?, f.next()?, f.next()?);
            Some((
                fstype.to_string(),
                PathBuf::from(unescape_mount(target)),
                opts.split(',').map(str::to_string).collect(),
            ))
        })
        .collect()
}

/// `/proc/mounts` escapes blanks and backslashes as octal.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Decides the hierarchy from the mount table. `v2_controllers` reads the
/// `cgroup.controllers` of a cgroup2 mount point (the enabled controllers).
pub fn decide_hierarchy(
    mounts: &str,
    v2_controllers: &dyn Fn(&Path) -> Option<String>,
) -> Result<Hierarchy, CgroupError> {
    let mounts = parse_mounts(mounts);
    for (fstype, target, _) in &mounts {
        if fstype == "cgroup2"
            && let Some(c) = v2_controllers(target)
        {
            let c: Vec<&str> = c.split_whitespace().collect();
            if c.contains(&"memory") && c.contains(&"cpu") {
                return Ok(Hierarchy::V2 {
                    root: target.clone(),
                });
            }
        }
    }
    let v1 = |controller: &str| {
        mounts
            .iter()
            .find(|(fstype, _, opts)| fstype == "cgroup" && opts.iter().any(|o| o == controller))
            .map(|(_, target, _)| target.clone())
    };
    match (v1("memory"), v1("cpu")) {
        (Some(memory), Some(cpu)) => Ok(Hierarchy::V1 { memory, cpu }),
        _ => Err(CgroupError::Unavailable(
            "neither a cgroup2 mount with the memory and cpu controllers nor cgroup v1 memory \
             and cpu mounts"
                .into(),
        )),
    }
}

/// Detects the host's cgroup layout from `/proc/self/mounts`.
pub fn detect() -> Result<Hierarchy, CgroupError> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").map_err(|e| io("/proc/self/mounts", &e))?;
    decide_hierarchy(&mounts, &|p| {
        std::fs::read_to_string(p.join("cgroup.controllers")).ok()
    })
}

/// The detected hierarchy, looked up once per process.
pub fn host() -> Result<Hierarchy, CgroupError> {
    static HOST: std::sync::OnceLock<Result<Hierarchy, CgroupError>> = std::sync::OnceLock::new();
    HOST.get_or_init(detect).clone()
}

fn io(path: impl AsRef<Path>, e: &std::io::Error) -> CgroupError {
    CgroupError::Io {
        path: path.as_ref().to_path_buf(),
        reason: e.to_string(),
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|e| io(path, &e))
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(path, &e)),
    }
}

// === impl Hierarchy ===

impl Hierarchy {
    /// The roots of the hierarchies used: memory (or unified) first, then cpu.
    pub fn roots(&self) -> Vec<&Path> {
        match self {
            Hierarchy::V2 { root } => vec![root],
            Hierarchy::V1 { memory, cpu } => vec![memory, cpu],
        }
    }

    /// The per-pod directories of `uid` in every hierarchy.
    pub fn pod_dirs(&self, uid: &str) -> Vec<PathBuf> {
        self.roots()
            .into_iter()
            .map(|r| r.join(PARENT).join(uid))
            .collect()
    }
}

// === impl PodCgroup ===

impl PodCgroup {
    /// Creates (or reuses) `podrun/<uid>` in every hierarchy.
    pub fn create(hierarchy: Hierarchy, uid: &str) -> Result<Self, CgroupError> {
        if uid.is_empty() || uid.contains('/') || uid.starts_with('.') {
            return Err(CgroupError::Unavailable(format!("bad pod uid {uid:?}")));
        }
        for root in hierarchy.roots() {
            let parent = root.join(PARENT);
            let pod = parent.join(uid);
            if let Hierarchy::V2 { .. } = hierarchy {
                // v2 only lets a child use the controllers its parent enabled for children.
                enable_controllers(root)?;
                mkdir(&parent)?;
                enable_controllers(&parent)?;
                mkdir(&pod)?;
                enable_controllers(&pod)?;
            } else {
                mkdir(&parent)?;
                mkdir(&pod)?;
            }
        }
        Ok(Self {
            hierarchy,
            uid: uid.to_string(),
        })
    }

    /// Writes the pod-level values (see [`ResourcePlan::for_pod`]) into the pod's cgroup.
    pub fn apply(&self, plan: &ResourcePlan) -> Result<(), CgroupError> {
        let dirs = self.dirs();
        for (index, file, value) in plan.files(&self.hierarchy) {
            let path = dirs[index.min(dirs.len() - 1)].join(file);
            if file == "memory.swap.max" && !path.exists() {
                continue;
            }
            write(&path, &value)?;
        }
        Ok(())
    }

    /// The pod's directories.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.hierarchy.pod_dirs(&self.uid)
    }

    /// Creates the container's cgroup (`<pod>/<container>`) and writes `plan` into it.
    pub fn container(
        &self,
        name: &str,
        plan: &ResourcePlan,
    ) -> Result<ContainerCgroup, CgroupError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(CgroupError::Unavailable(format!(
                "bad container name {name:?}"
            )));
        }
        let dirs: Vec<PathBuf> = self.dirs().into_iter().map(|d| d.join(name)).collect();
        for d in &dirs {
            mkdir(d)?;
        }
        for (index, file, value) in plan.files(&self.hierarchy) {
            let path = dirs[index.min(dirs.len() - 1)].join(file);
            // memory.swap.max is absent without swap accounting; nothing to limit then.
            if file == "memory.swap.max" && !path.exists() {
                continue;
            }
            write(&path, &value)?;
        }
        let mut cg = ContainerCgroup {
            hierarchy: self.hierarchy.clone(),
            dirs,
            oom_kills_before: 0,
        };
        // A restarted container reuses the directory: count only OOM kills from now on.
        cg.oom_kills_before = cg.oom_kills();
        Ok(cg)
    }

    /// Removes the pod's cgroups (containers first). Processes still inside are killed
    /// first; every container has already exited when the pod ends, so that only
    /// matters after a crash. Retries briefly while the kernel finishes tearing exited
    /// tasks down.
    pub async fn remove(&self) -> Result<(), CgroupError> {
        remove_tree(&self.dirs()).await
    }
}

fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let have: Vec<&str> = current.split_whitespace().collect();
    if have.contains(&"memory") && have.contains(&"cpu") {
        return Ok(());
    }
    write(&path, "+memory +cpu")
}

/// [`remove_tree`] for startup recovery, outside any runtime.
fn remove_tree_blocking(pod_dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let mut last = Ok(());
    for d in tree_order(pod_dirs) {
        for attempt in 0..40 {
            match try_remove(&d, attempt == 39) {
                Ok(true) => break,
                Ok(false) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    last = Err(e);
                    break;
                }
            }
        }
    }
    last
}

/// The container directories of each pod directory, then the pod directory.
fn tree_order(pod_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for pod in pod_dirs.iter().filter(|p| p.exists()) {
        if let Ok(rd) = std::fs::read_dir(pod) {
            out.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        out.push(pod.clone());
    }
    out
}

/// One rmdir attempt: `Ok(true)` when gone, `Ok(false)` when still busy (members were
/// sent SIGKILL), an error on the last attempt.
fn try_remove(dir: &Path, last: bool) -> Result<bool, CgroupError> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) if last => Err(io(dir, &e)),
        Err(_) => {
            kill_members(dir);
            Ok(false)
        }
    }
}

/// Removes each pod directory with its container children, killing what is left inside.
async fn remove_tree(pod_dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let mut last = Ok(());
    for d in tree_order(pod_dirs) {
        for attempt in 0..40 {
            match try_remove(&d, attempt == 39) {
                Ok(true) => break,
                Ok(false) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => {
                    last = Err(e);
                    break;
                }
            }
        }
    }
    last
}

/// Removes the cgroups of the pod `uid` when the pod ends (nothing when cgroups are not
/// used).
pub async fn remove_pod(uid: &str) {
    if uid.is_empty() || uid.contains('/') {
        return;
    }
    if let Ok(h) = host()
        && let Err(e) = remove_tree(&h.pod_dirs(uid)).await
    {
        tracing::warn!(%e, "cannot remove the pod's cgroup");
    }
}

/// SIGKILLs every process in the cgroup `dir`: only podrun's own containers live there.
fn kill_members(dir: &Path) {
    let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if pid > 1 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

// === impl ContainerCgroup ===

impl ContainerCgroup {
    /// The directories the container's process joins (one per hierarchy).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The kernel's count of OOM kills in this cgroup (`oom_kill` of `memory.oom_control`
    /// on v1, of `memory.events` on v2).
    pub fn oom_kills(&self) -> u64 {
        let file = match self.hierarchy {
            Hierarchy::V1 { .. } => "memory.oom_control",
            Hierarchy::V2 { .. } => "memory.events",
        };
        std::fs::read_to_string(self.dirs[0].join(file))
            .ok()
            .and_then(|t| oom_kill_count(&t))
            .unwrap_or(0)
    }

    /// Whether the kernel OOM-killed a process of this instance since it was created.
    pub fn oom_killed(&self) -> bool {
        self.oom_kills() > self.oom_kills_before
    }
}

/// The `oom_kill N` counter of `memory.oom_control` / `memory.events`.
pub fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == "oom_kill").then(|| v.trim().parse().ok()).flatten()
    })
}

/// Removes leftover pod cgroups of this state directory after a crash: a `podrun/<uid>`
/// whose pod directory is here and is not run by a live podrun. Cgroups of pods of other
/// state directories (other podrun instances) are never touched. Returns the removed
/// pod uids.
pub fn remove_leftovers(layout: &Layout) -> Vec<String> {
    let Ok(hierarchy) = host() else {
        return Vec::new();
    };
    let mut ours = Vec::new();
    if let Ok(rd) = std::fs::read_dir(layout.pods_dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(uid) = name.rsplit('_').next() else {
                continue;
            };
            let owned_live = crate::instance::pod_owner(&e.path())
                .is_some_and(|pid| crate::instance::instance_alive(layout, pid));
            if !owned_live {
                ours.push(uid.to_string());
            }
        }
    }
    let mut removed = Vec::new();
    for uid in ours {
        let dirs = hierarchy.pod_dirs(&uid);
        if dirs.iter().any(|d| d.exists()) {
            match remove_tree_blocking(&dirs) {
                Ok(()) => removed.push(format!("removed leftover cgroup {PARENT}/{uid}")),
                Err(e) => tracing::warn!(%e, "cannot remove a leftover pod cgroup"),
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests;
