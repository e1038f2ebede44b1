//! Services on the node: ClusterIP allocation (persisted in the state directory),
//! endpoints that follow pod readiness, kube-proxy-style DNAT rules in the host's nat
//! table, and the names the cluster DNS serves.
//!
//! [`Services`] keeps the Services and the latest view of every pod. Each change (a
//! Service created or deleted, a pod event) recomputes the [`plan::Plan`] and, when the
//! rules differ from what was applied, replaces our chains in one atomic
//! `iptables-restore --noflush` call, so a connection never sees half an update. Chains
//! are named `PODRUN<pid>-*` per process; [`cleanup_dead_instances`] removes those of
//! podruns that died.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::{Pod, Service};
use podrun_netplan::service::{
    self as rules, Ipv4Cidr, ProxyConfig, ServiceError, allocate_cluster_ip,
};
use tokio::sync::broadcast;

use crate::dns::{CLUSTER_DOMAIN, DnsServer, DnsView, ResolvConf};
use crate::{PodChange, PodEvent};

/// The default service CIDR.
pub const DEFAULT_SERVICE_CIDR: &str = "198.19.0.0/16";

/// Host-wide directory where every podrun publishes its cluster DNS names.
pub const DNS_SHARE_DIR: &str = "/run/podrun/dns";

/// Host-wide lock under which podruns remove the rules of podruns that died, one at a
/// time.
pub const DEAD_RULES_LOCK: &str = "/run/podrun/service-rules.lock";

/// The pod CIDR Services treat as "from a pod" by default (the sandbox's default).
pub const DEFAULT_POD_CIDR: &str = "198.18.0.0/16";

/// The host bridge pods send through by default (the sandbox's bridge).
pub const DEFAULT_BRIDGE: &str = "podrun0";

/// Errors of the Service driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Allocation or configuration, worded as the API server words it.
    #[error(transparent)]
    Plan(#[from] ServiceError),
    /// Running iptables failed.
    #[error("{tool}: {message}")]
    Iptables {
        /// Which tool.
        tool: &'static str,
        /// Its stderr.
        message: String,
    },
    /// A file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
}

/// Where Services live.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// ClusterIPs come from here.
    pub service_cidr: Ipv4Cidr,
    /// Chain prefix, pod CIDR and bridge.
    pub proxy: ProxyConfig,
    /// The allocation file (`<state>/services/clusterips`).
    pub allocations: PathBuf,
    /// Whether to touch iptables at all (false only where rules are not wanted, e.g.
    /// when not root: Services then only get their ClusterIP and DNS names).
    pub apply_rules: bool,
    /// Where this node publishes its DNS names for the other podruns on the host (and
    /// reads theirs): `<dir>/<pid>`. `None` keeps the names to this process.
    pub dns_share: Option<PathBuf>,
}

struct State {
    services: BTreeMap<(String, String), Service>,
    pods: BTreeMap<(String, String), Arc<Pod>>,
    /// ClusterIP → "namespace/name".
    allocated: BTreeMap<Ipv4Addr, String>,
    /// The rules last applied; `None` when nothing of ours is installed.
    applied: Option<Vec<podrun_netplan::service::ServiceRules>>,
    /// Our nat chains as the last restore left them, so later syncs need no
    /// `iptables-save`.
    chains: BTreeSet<String>,
    /// Addresses of this node's pods claimed as DNS clients when their sandbox was
    /// made, before the pod's status (and event) carries them.
    claimed: BTreeSet<Ipv4Addr>,
}

/// The node's Services.
pub struct Services {
    config: ServiceConfig,
    state: Mutex<State>,
    dns: Arc<RwLock<DnsView>>,
    dns_server: Mutex<Option<DnsServer>>,
    dns_failed: std::sync::atomic::AtomicBool,
    stopped: std::sync::atomic::AtomicBool,
    /// How many rule updates reached iptables.
    restores: std::sync::atomic::AtomicU64,
}

// === impl ServiceConfig ===

impl ServiceConfig {
    /// The defaults: service CIDR 198.19.0.0/16, chains `PODRUN-*`, the `podrun0` bridge
    /// and pod CIDR 198.18.0.0/16, allocations under `state_dir`.
    pub fn defaults(state_dir: &std::path::Path) -> Result<Self, Error> {
        Ok(Self {
            service_cidr: DEFAULT_SERVICE_CIDR.parse()?,
            proxy: ProxyConfig::new(
                &instance_prefix(std::process::id()),
                DEFAULT_POD_CIDR.parse()?,
                DEFAULT_BRIDGE,
            )?,
            allocations: state_dir.join("services").join("clusterips"),
            apply_rules: nix::unistd::geteuid().is_root(),
            dns_share: nix::unistd::geteuid()
                .is_root()
                .then(|| PathBuf::from(DNS_SHARE_DIR)),
        })
    }
}

// === impl Services ===

impl Services {
    /// Loads the allocations and removes rules a dead instance left behind (they are
    /// rebuilt from this instance's Services).
    pub fn open(config: ServiceConfig) -> Result<Self, Error> {
        let allocated = load_allocations(&config.allocations)?;
        let this = Self {
            config,
            state: Mutex::new(State {
                services: BTreeMap::new(),
                pods: BTreeMap::new(),
                allocated,
                applied: None,
                chains: BTreeSet::new(),
                claimed: BTreeSet::new(),
            }),
            dns: Arc::new(RwLock::new(DnsView::default())),
            dns_server: Mutex::new(None),
            dns_failed: std::sync::atomic::AtomicBool::new(false),
            stopped: std::sync::atomic::AtomicBool::new(false),
            restores: std::sync::atomic::AtomicU64::new(0),
        };
        if this.config.apply_rules {
            // Our own prefix may hold rules of a dead process that had our pid.
            cleanup_rules(&this.config.proxy)?;
            // Rules another podrun left are not this one's to fail over: the podrun that
            // cannot remove them runs anyway, and the next one tries again.
            match cleanup_dead_instances(&this.config.proxy) {
                Ok(lines) => {
                    for line in lines {
                        tracing::info!("{line}");
                    }
                }
                Err(e) => tracing::warn!(
                    %e,
                    "cannot remove the Service rules of podruns that are no longer running"
                ),
            }
            if let Some(dir) = &this.config.dns_share {
                remove_dead_dns_files(dir);
            }
        }
        Ok(this)
    }

    /// The names the cluster DNS serves, kept current.
    pub fn dns_view(&self) -> Arc<RwLock<DnsView>> {
        self.dns.clone()
    }

    /// Registers an admitted Service: allocates its ClusterIP (keeping the one this
    /// Service already held, or the one it asks for), records it and updates rules and
    /// DNS. Returns the Service with `spec.clusterIP(s)` filled.
    pub fn create(&self, mut service: Service) -> Result<Service, Error> {
        let ns = service
            .metadata
            .namespace
            .get_or_insert_with(|| "default".into())
            .clone();
        let name = service.metadata.name.clone().unwrap_or_default();
        let owner = format!("{ns}/{name}");
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Held until the new ClusterIP is published, so two podruns never pick the same.
        let _share_lock = self.lock_share();
        let spec = service.spec.get_or_insert_with(Default::default);
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if !headless {
            let requested = spec
                .cluster_ip
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<Ipv4Addr>()
                        .map_err(|_| ServiceError::InvalidCidr(format!("{s} (spec.clusterIP)")))
                })
                .transpose()?;
            let held = st
                .allocated
                .iter()
                .find(|(_, o)| **o == owner)
                .map(|(ip, _)| *ip);
            let ip = match (requested, held) {
                (None, Some(ip)) => ip,
                (Some(r), Some(h)) if r == h => h,
                _ => {
                    let mut used: BTreeSet<Ipv4Addr> = st
                        .allocated
                        .iter()
                        .filter(|(_, o)| **o != owner)
                        .map(|(ip, _)| *ip)
                        .collect();
                    // Other podruns on this host allocate from the same range in their
                    // own state directories; the ClusterIPs they publish are taken.
                    used.extend(self.peer_cluster_ips());
                    allocate_cluster_ip(self.config.service_cidr, &used, requested)?
                }
            };
            st.allocated.retain(|_, o| *o != owner);
            st.allocated.insert(ip, owner);
            save_allocations(&self.config.allocations, &st.allocated)?;
            spec.cluster_ip = Some(ip.to_string());
            spec.cluster_ips = Some(vec![ip.to_string()]);
        } else {
            spec.cluster_ips = Some(vec!["None".into()]);
        }
        spec.type_.get_or_insert_with(|| "ClusterIP".into());
        st.services.insert((ns, name), service.clone());
        self.sync(&mut st)?;
        Ok(service)
    }

    /// Removes a Service: releases its ClusterIP, drops its rules and names.
    pub fn delete(&self, namespace: &str, name: &str) -> Result<bool, Error> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let existed = st
            .services
            .remove(&(namespace.to_string(), name.to_string()))
            .is_some();
        let owner = format!("{namespace}/{name}");
        let before = st.allocated.len();
        st.allocated.retain(|_, o| *o != owner);
        if st.allocated.len() != before {
            save_allocations(&self.config.allocations, &st.allocated)?;
        }
        self.sync(&mut st)?;
        Ok(existed)
    }

    /// How many rule updates have reached iptables so far.
    pub fn rule_updates(&self) -> u64 {
        self.restores.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The Services registered here.
    pub fn list(&self) -> Vec<Service> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.services.values().cloned().collect()
    }

    /// Takes in a pod's latest object (from [`PodChange::Updated`]): its readiness and IP
    /// decide whether it is an endpoint.
    pub fn handle_pod(&self, pod: Arc<Pod>) -> Result<(), Error> {
        let key = (
            pod.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.pods.insert(key, pod);
        self.sync(&mut st)
    }

    /// Claims `ip`, the address of a pod sandbox this node just made, as a client of
    /// this node's cluster DNS, and publishes that for the other podruns on the host
    /// before returning. Called before the pod's first container starts, so whichever
    /// podrun's server gets the pod's first query knows whose view answers it.
    pub fn claim_dns_client(&self, ip: Ipv4Addr) -> Result<(), Error> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.claimed.insert(ip) {
            self.sync(&mut st)?;
        }
        Ok(())
    }

    /// Forgets a pod that finished (from [`PodChange::Finished`]).
    pub fn handle_pod_finished(&self, pod: &Pod) -> Result<(), Error> {
        let key = (
            pod.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let released = pod_ipv4(pod).is_some_and(|ip| st.claimed.remove(&ip));
        if st.pods.remove(&key).is_some() || released {
            self.sync(&mut st)?;
        }
        Ok(())
    }

    /// Replaces the view of every pod with `pods`, as listed from the store after
    /// events were lost: pods that finished or are gone stop being endpoints, pods
    /// whose readiness changed unseen are taken as they are now.
    pub fn resync_pods(&self, pods: Vec<Pod>) -> Result<(), Error> {
        let pods: BTreeMap<(String, String), Arc<Pod>> = pods
            .into_iter()
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .map(|p| {
                let key = (
                    p.metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    p.metadata.name.clone().unwrap_or_default(),
                );
                (key, Arc::new(p))
            })
            .collect();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Claims of pods that are gone (their end was among the lost events) lapse.
        let running: BTreeSet<Ipv4Addr> = pods.values().filter_map(|p| pod_ipv4(p)).collect();
        st.claimed.retain(|ip| running.contains(ip));
        st.pods = pods;
        self.sync(&mut st)
    }

    /// Follows node events until the channel closes: every pod change may change
    /// endpoints. When the receiver falls behind and events are lost, `relist` gives
    /// every pod as it is now and the view is rebuilt from it ([`Services::resync_pods`]),
    /// so no endpoint change is missed. The cluster DNS on `dns_addr` is listening when
    /// this returns (before any pod's first container can start), even if the bridge
    /// does not have the address yet; it shares the port with the other podruns on the
    /// host.
    pub fn follow<E: PodEvent>(
        self: Arc<Self>,
        mut events: broadcast::Receiver<E>,
        dns_addr: Option<SocketAddr>,
        relist: Arc<dyn Fn() -> Vec<Pod> + Send + Sync>,
    ) -> tokio::task::JoinHandle<()> {
        let started = dns_addr.is_some_and(|addr| self.start_dns_now(addr));
        tokio::spawn(async move {
            // Set while the DNS server should run but could not be started.
            let mut dns_wanted = dns_addr.is_some() && !started;
            // A server that could not bind (the address taken by something that does not
            // share it) is retried every second.
            let mut retry = tokio::time::interval(std::time::Duration::from_secs(1));
            retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let event = tokio::select! {
                    event = events.recv() => match event {
                        Ok(e) => e,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "Service follower fell behind; listing pods again");
                            let this = self.clone();
                            let relist = relist.clone();
                            let result = tokio::task::spawn_blocking(move || this.resync_pods(relist()))
                                .await
                                .unwrap_or(Ok(()));
                            if let Err(e) = result {
                                tracing::error!(%e, "cannot update Service rules");
                            }
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = retry.tick(), if dns_wanted => {
                        if let Some(addr) = dns_addr {
                            dns_wanted = !self.start_dns_now(addr);
                        }
                        continue;
                    }
                };
                let result = match event.pod_change() {
                    Some(PodChange::Updated(pod)) => {
                        if let Some(addr) = dns_addr
                            && self.is_sandboxed(&pod)
                        {
                            dns_wanted = !self.start_dns_now(addr);
                        }
                        // iptables runs as a child process: keep it off the async workers.
                        let this = self.clone();
                        tokio::task::spawn_blocking(move || this.handle_pod(pod))
                            .await
                            .unwrap_or(Ok(()))
                    }
                    Some(PodChange::Finished(pod)) => {
                        let this = self.clone();
                        tokio::task::spawn_blocking(move || this.handle_pod_finished(&pod))
                            .await
                            .unwrap_or(Ok(()))
                    }
                    _ => Ok(()),
                };
                if let Err(e) = result {
                    tracing::error!(%e, "cannot update Service rules");
                }
            }
        })
    }

    /// Starts the DNS server if it does not run; a failure is reported once. Returns
    /// whether it runs.
    fn start_dns_now(&self, addr: SocketAddr) -> bool {
        // After shutdown the server stays down, whatever events still arrive.
        if self.stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        match self.ensure_dns_now(addr) {
            Ok(_) => true,
            Err(e) => {
                if !self
                    .dns_failed
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(%addr, %e, "cannot start cluster DNS (retrying)");
                }
                false
            }
        }
    }

    fn is_sandboxed(&self, pod: &Pod) -> bool {
        pod.status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            .is_some_and(|ip| self.config.proxy.pod_cidr.contains(ip))
    }

    /// Starts the cluster DNS server on `addr` unless it runs already. Upstreams are the
    /// host's resolvers from `/etc/resolv.conf`.
    pub async fn ensure_dns(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        self.ensure_dns_now(addr)
    }

    /// [`Services::ensure_dns`] without awaiting (within a Tokio runtime).
    fn ensure_dns_now(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        if let Some(s) = self
            .dns_server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return Ok(s.local_addr());
        }
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let upstreams: Vec<SocketAddr> = ResolvConf::parse(&host)
            .nameserver_ips()
            .into_iter()
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        let server = DnsServer::bind(
            addr,
            self.dns.clone(),
            CLUSTER_DOMAIN,
            &upstreams,
            self.config.dns_share.as_deref(),
        )?;
        let local = server.local_addr();
        let mut slot = self.dns_server.lock().unwrap_or_else(|e| e.into_inner());
        // Another caller may have won the race while we bound; keep theirs.
        if slot.is_none() {
            *slot = Some(server);
        }
        Ok(local)
    }

    /// Removes every rule (when the node stops). Allocations stay, so the Services
    /// get the same ClusterIPs when they come back.
    pub fn shutdown(&self) -> Result<(), Error> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.applied = None;
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        *self.dns_server.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.publish_dns(&DnsView::default());
        if self.config.apply_rules {
            cleanup_rules(&self.config.proxy)?;
        }
        Ok(())
    }

    /// Locks the DNS share directory (host-wide) for an allocation; `None` when there
    /// is no share directory or it cannot be locked (allocation then only avoids this
    /// state directory's and the published addresses).
    fn lock_share(&self) -> Option<std::fs::File> {
        let dir = self.config.dns_share.as_ref()?;
        std::fs::create_dir_all(dir).ok()?;
        let file = std::fs::File::create(dir.join(".lock")).ok()?;
        use std::os::fd::AsRawFd as _;
        // SAFETY: flock on a descriptor we own; released when the file is dropped.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        (rc == 0).then_some(file)
    }

    /// ClusterIPs in our range that live podruns on this host have published.
    fn peer_cluster_ips(&self) -> BTreeSet<Ipv4Addr> {
        let Some(dir) = &self.config.dns_share else {
            return BTreeSet::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return BTreeSet::new();
        };
        let own = std::process::id().to_string();
        entries
            .flatten()
            .filter(|e| {
                let pid = e.file_name().to_string_lossy().into_owned();
                pid != own && pid.parse::<u32>().is_ok() && Path::new("/proc").join(&pid).exists()
            })
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .flat_map(|text| {
                DnsView::parse(&text)
                    .services
                    .into_values()
                    .flatten()
                    .collect::<Vec<_>>()
            })
            .filter(|ip| self.config.service_cidr.contains(*ip))
            .collect()
    }

    /// Writes this node's names where the other podruns' DNS servers look (atomically:
    /// temp file, rename); a node without names has no file.
    fn publish_dns(&self, view: &DnsView) {
        let Some(dir) = &self.config.dns_share else {
            return;
        };
        let file = dir.join(std::process::id().to_string());
        if view.is_empty() {
            let _ = std::fs::remove_file(&file);
            return;
        }
        let tmp = dir.join(format!(".{}.tmp", std::process::id()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, view.render()))
            .and_then(|()| std::fs::rename(&tmp, &file));
        if let Err(e) = written {
            tracing::warn!(path = %file.display(), %e, "cannot publish DNS names");
        }
    }

    fn sync(&self, st: &mut State) -> Result<(), Error> {
        let mut plan = plan::plan(st.services.values(), st.pods.values().map(|p| p.as_ref()));
        plan.dns.clients.extend(st.claimed.iter().copied());
        self.publish_dns(&plan.dns);
        *self.dns.write().unwrap_or_else(|e| e.into_inner()) = plan.dns;
        if !self.config.apply_rules {
            return Ok(());
        }
        // Pod events come by the hundred; unchanged endpoints cost nothing, and a node
        // without Services never touches iptables.
        let unchanged = match &st.applied {
            Some(applied) => *applied == plan.rules,
            None => plan.rules.is_empty() && st.services.is_empty(),
        };
        if unchanged {
            if !st.services.is_empty() {
                // A new pod brings a new bridge port.
                ensure_hairpin(&self.config.proxy.bridge);
            }
            return Ok(());
        }
        // The first apply looks at the live table and installs the jumps; after that
        // the chains are exactly what the last restore left.
        let live = if st.applied.is_none() {
            ensure_jumps(&self.config.proxy)?;
            live_chains(&self.config.proxy, "nat")?
        } else {
            st.chains.clone()
        };
        let text = rules::restore_text(&self.config.proxy, &plan.rules, &live);
        run_restore(&text)?;
        self.restores
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        st.chains = chains_after(&text);
        ensure_hairpin(&self.config.proxy.bridge);
        st.applied = Some(plan.rules);
        Ok(())
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.publish_dns(&DnsView::default());
        if self.config.apply_rules
            && let Err(e) = cleanup_rules(&self.config.proxy)
        {
            tracing::warn!(%e, "cannot remove Service rules");
        }
    }
}

/// The chain prefix of the podrun with process id `pid`: `PODRUN<pid>-`. Every
/// instance owns its own chains, so two podruns on one host never overwrite each
/// other's Services, and the rules of one that died can be told apart and removed.
pub fn instance_prefix(pid: u32) -> String {
    format!("PODRUN{pid}-")
}

/// Removes the Service rules of podrun instances that are no longer running (after a
/// SIGKILL), found by their `PODRUN<pid>-SERVICES` chains. Returns one report line per
/// instance cleaned.
///
/// Podruns that start at the same time take turns ([`DEAD_RULES_LOCK`]) and each reads
/// the tables once it has its turn, so a dead instance's rules are removed by one of
/// them and the others find nothing left. (Without the turns, two removed the same jump
/// rule and the second `iptables -D` failed, which ended that podrun before it ran a pod.)
pub fn cleanup_dead_instances(template: &ProxyConfig) -> Result<Vec<String>, Error> {
    let _turn = dead_rules_turn();
    let mut pids = BTreeSet::new();
    for table in ["nat", "filter"] {
        let save = iptables_save(table)?;
        for line in save.lines() {
            let Some(name) = line
                .strip_prefix(':')
                .and_then(|l| l.split_whitespace().next())
            else {
                continue;
            };
            if let Some(pid) = name
                .strip_prefix("PODRUN")
                .and_then(|r| r.strip_suffix("-SERVICES"))
                .and_then(|p| p.parse::<u32>().ok())
            {
                pids.insert(pid);
            }
        }
    }
    let mut reports = Vec::new();
    for pid in pids {
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let proxy = ProxyConfig {
            prefix: instance_prefix(pid),
            ..template.clone()
        };
        cleanup_rules(&proxy)?;
        reports.push(format!(
            "removed the Service rules of podrun {pid}, which is no longer running"
        ));
    }
    Ok(reports)
}

/// Takes the host-wide [`DEAD_RULES_LOCK`], waiting for the podrun that holds it; `None`
/// (no turns) if the lock file cannot be made.
fn dead_rules_turn() -> Option<std::fs::File> {
    use std::os::fd::AsRawFd as _;
    let path = Path::new(DEAD_RULES_LOCK);
    std::fs::create_dir_all(path.parent()?).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    // SAFETY: flock on a descriptor we own; released when the file is dropped.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    (rc == 0).then_some(file)
}

/// The pod's IPv4 address from its status.
fn pod_ipv4(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// Removes the DNS names published by podruns that are no longer running.
pub fn remove_dead_dns_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.trim_start_matches('.').trim_end_matches(".tmp");
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Removes our jump rules and chains from the host tables; a no-op when there are none.
/// Crash recovery calls this for the rules of an instance that died.
pub fn cleanup_rules(proxy: &ProxyConfig) -> Result<(), Error> {
    let nat = live_chains(proxy, "nat")?;
    let filter = live_chains(proxy, "filter")?;
    // A jump needs its target chain, so no chains means nothing at all to remove.
    if nat.is_empty() && filter.is_empty() {
        return Ok(());
    }
    for jump in rules::jump_rules(proxy) {
        // A rule may be present more than once if two instances raced; remove all.
        for _ in 0..16 {
            if !iptables(jump.table, "-C", jump.chain, &jump.spec)? {
                break;
            }
            if let Err(e) = iptables(jump.table, "-D", jump.chain, &jump.spec) {
                // Gone since the check (removed by someone else) is what was wanted.
                if iptables(jump.table, "-C", jump.chain, &jump.spec)? {
                    return Err(e);
                }
                break;
            }
        }
    }
    let text = rules::cleanup_text(proxy, &nat, filter.contains(&proxy.services_chain()));
    if !text.is_empty() {
        run_restore(&text)?;
    }
    Ok(())
}

/// The nat chains that exist after `text` was restored: declared, and not deleted.
fn chains_after(text: &str) -> BTreeSet<String> {
    let mut chains = BTreeSet::new();
    let nat = text.split("*filter").next().unwrap_or_default();
    for line in nat.lines() {
        if let Some(rest) = line.strip_prefix(':') {
            chains.insert(
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
        } else if let Some(gone) = line.strip_prefix("-X ") {
            chains.remove(gone.trim());
        }
    }
    chains
}

fn ensure_jumps(proxy: &ProxyConfig) -> Result<(), Error> {
    // DNAT to a pod turns a packet that arrived on the bridge into a forwarded one;
    // without forwarding, every Service connection from a pod would be dropped.
    let forward = std::path::Path::new("/proc/sys/net/ipv4/ip_forward");
    if std::fs::read_to_string(forward).is_ok_and(|v| v.trim() != "1") {
        std::fs::write(forward, b"1").map_err(|source| Error::Io {
            path: forward.to_path_buf(),
            source,
        })?;
    }
    for jump in rules::jump_rules(proxy) {
        // The jump targets must exist before the jump can be added.
        let chain = jump.spec.last().cloned().unwrap_or_default();
        let _ = Command::new("iptables")
            .args(["-w", "-t", jump.table, "-N", &chain])
            .stderr(Stdio::null())
            .status();
        if !iptables(jump.table, "-C", jump.chain, &jump.spec)? {
            iptables(jump.table, "-I", jump.chain, &jump.spec)?;
        }
    }
    Ok(())
}

/// Turns on hairpin mode on every port of the bridge. With bridge netfilter on, a
/// packet DNATed back to the pod that sent it is bridged out of the port it came in
/// by, which a bridge refuses unless the port is in hairpin mode; the masquerade rule
/// then makes the reply come back through the host. New pods add ports, so this runs
/// on every sync; ports already in hairpin mode are left alone.
fn ensure_hairpin(bridge: &str) {
    let Ok(ports) = std::fs::read_dir(format!("/sys/class/net/{bridge}/brif")) else {
        return;
    };
    for port in ports.flatten() {
        let file = port.path().join("hairpin_mode");
        if std::fs::read_to_string(&file).is_ok_and(|v| v.trim() == "0")
            && let Err(e) = std::fs::write(&file, b"1")
        {
            tracing::warn!(port = ?port.file_name(), %e, "cannot turn on hairpin mode");
        }
    }
}

/// Runs `iptables -w -t TABLE OP CHAIN SPEC…`; for `-C`, returns whether the rule exists.
fn iptables(table: &str, op: &str, chain: &str, spec: &[String]) -> Result<bool, Error> {
    let out = Command::new("iptables")
        .args(["-w", "-t", table, op, chain])
        .args(spec)
        .output()
        .map_err(|e| Error::Iptables {
            tool: "iptables",
            message: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(true);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    // `-C` fails with "Bad rule" when the rule is missing and with "does not exist"
    // when its target chain is: both mean absent.
    if op == "-C" && (stderr.contains("Bad rule") || stderr.contains("does not exist")) {
        return Ok(false);
    }
    Err(Error::Iptables {
        tool: "iptables",
        message: format!("{op} {chain}: {stderr}"),
    })
}

fn live_chains(proxy: &ProxyConfig, table: &str) -> Result<BTreeSet<String>, Error> {
    Ok(rules::own_chains_in_save(
        proxy,
        &iptables_save(table)?,
        table,
    ))
}

fn iptables_save(table: &str) -> Result<String, Error> {
    let out = Command::new("iptables-save")
        .args(["-t", table])
        .output()
        .map_err(|e| Error::Iptables {
            tool: "iptables-save",
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Iptables {
            tool: "iptables-save",
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_restore(text: &str) -> Result<(), Error> {
    let err = |message: String| Error::Iptables {
        tool: "iptables-restore",
        message,
    };
    let mut child = Command::new("iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(format!(
            "{}\n--- input ---\n{text}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn load_allocations(path: &std::path::Path) -> Result<BTreeMap<Ipv4Addr, String>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let (ip, owner) = l.split_once(' ')?;
            Some((ip.parse().ok()?, owner.trim().to_string()))
        })
        .collect())
}

/// Writes the allocation file atomically (temp file, rename), so a crash never leaves it
/// half written.
fn save_allocations(
    path: &std::path::Path,
    allocated: &BTreeMap<Ipv4Addr, String>,
) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text: String = allocated
        .iter()
        .map(|(ip, owner)| format!("{ip} {owner}\n"))
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests;
