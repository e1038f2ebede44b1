//! Pod sandboxes: the namespaces and network a pod's containers share.
//!
//! As root every pod gets, before its first container starts:
//! * a network namespace (made with `unshare` on a sandbox worker ([`workers`]), kept as an
//!   fd and bind-mounted at `/run/netns/podrun-<uid8>` so `ip netns` lists it) with `lo` up and
//!   `eth0`, the pod end of a veth pair whose host end (`podrunv<uid8>`) is attached to the
//!   host bridge [`BRIDGE`]; `eth0` has an address from the pod CIDR ([`ipam`]) and a default
//!   route via the bridge's address. The host does not forward for pods, so nothing leaves
//!   the machine unless masquerading is asked for ([`masquerade`]);
//! * a UTS namespace whose hostname is `spec.hostname` or the pod's name, and an IPC
//!   namespace;
//! * with `shareProcessNamespace: true`, one PID namespace for the whole pod whose init
//!   reaps orphans (otherwise each container has its own, see `podrun-node`'s runtime).
//!
//! `hostNetwork: true` pods keep the host's network and hostname (their pod IP is the host
//! IP) but still get their own IPC namespace.
//!
//! Sandboxes are made by a few workers (one on two CPUs) in the order pods ask; a pod
//! waits in their queue rather than competing for the CPU and the kernel's locks with
//! every other new pod ([`workers`]). Pod networks are IPv4: no IPv6 address is
//! configured on either end of a veth pair (`lo` keeps `::1`). Destroying a sandbox closes
//! its network namespace, which takes the veth pair with it.
//!
//! Every sandbox is recorded in `<state>/sandboxes/<uid>.json` before anything is created,
//! so [`recover`] can remove what a killed podrun left behind, and [`leftovers`] /
//! [`clean`] (used by `podrun doctor`) can find it. Everything is named with a podrun
//! prefix; nothing without one is ever touched.

pub mod ipam;
pub mod masquerade;
pub mod netlink;
mod ns;
pub mod workers;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use crate::PodNamespaces;
use ipam::{Ipam, Ipv4Cidr};
use netlink::{LinkRemoval, Netlink};
use ns::Stranded;
use workers::Worker;

/// The host bridge every pod's veth is attached to.
pub const BRIDGE: &str = "podrun0";
/// Where network namespaces are bind-mounted (as `ip netns` does).
pub const NETNS_DIR: &str = "/run/netns";
/// Prefix of podrun's network namespace names.
pub const NETNS_PREFIX: &str = "podrun-";
/// Prefix of the host ends of podrun's veth pairs.
pub const VETH_PREFIX: &str = "podrunv";
/// The name the init of a shared PID namespace shows in `ps`.
pub const INIT_NAME: &str = "podrun-pause";
/// The default pod CIDR.
pub const DEFAULT_POD_CIDR: &str = "198.18.0.0/16";

/// How pods are networked.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Where pod addresses come from; the bridge gets the first address.
    pub pod_cidr: Ipv4Cidr,
    /// Masquerade pod traffic leaving the machine.
    pub masquerade: bool,
    /// Host-wide root of the address allocations (normally [`ipam::IPAM_ROOT`]).
    pub ipam_root: PathBuf,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            pod_cidr: Ipv4Cidr::from_str_default(),
            masquerade: false,
            ipam_root: PathBuf::from(ipam::IPAM_ROOT),
        }
    }
}

impl Ipv4Cidr {
    fn from_str_default() -> Self {
        // Invariant: the constant is a valid CIDR (checked by a unit test).
        DEFAULT_POD_CIDR.parse().expect("default pod CIDR is valid")
    }
}

/// What a pod asks of its sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.hostname`, if set.
    pub hostname: Option<String>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `spec.shareProcessNamespace`.
    pub share_process_namespace: bool,
}

impl SandboxSpec {
    /// The sandbox `pod` needs.
    pub fn from_pod(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        Self {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            hostname: spec.and_then(|s| s.hostname.clone()),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            share_process_namespace: spec
                .and_then(|s| s.share_process_namespace)
                .unwrap_or(false),
        }
    }

    /// The hostname inside the pod: `spec.hostname`, else the pod's name.
    pub fn pod_hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.name)
    }

    /// The first 8 characters of the uid (hex in an API-server uid), used in names.
    pub fn uid8(&self) -> String {
        self.uid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase()
    }
}

/// Features of `spec` a podrun without root cannot provide. Pods without root share the
/// host network (one warning says so); pods that need more than that are refused.
pub fn needs_root(spec: &SandboxSpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    if spec.share_process_namespace {
        out.push("shareProcessNamespace (a PID namespace)");
    }
    if spec.hostname.is_some() {
        out.push("spec.hostname (a UTS namespace)");
    }
    out
}

/// The warning printed once when podrun runs pods without root.
pub const NO_ROOT_WARNING: &str = "warning: not running as root: pods share the host's network, \
hostname, IPC and process list (no pod IPs, no isolation); pods that set hostname or \
shareProcessNamespace are refused";

/// Why a sandbox could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The pod needs features only root can give.
    #[error("pod {pod:?} needs root for {}; run podrun as root", features.join(", "))]
    NeedsRoot {
        /// The pod's name.
        pod: String,
        /// What it needs.
        features: Vec<&'static str>,
    },
    /// A setup step failed.
    #[error("{step}: {source}")]
    Setup {
        /// The step.
        step: String,
        /// Why.
        source: std::io::Error,
    },
}

fn step(step: &str) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Setup {
        step: step.to_string(),
        source,
    }
}

/// What is recorded about a sandbox in the state directory, before anything is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxRecord {
    /// Pod uid.
    pub uid: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// The podrun process that made it.
    pub owner_pid: u32,
    /// Its start time (clock ticks since boot).
    pub owner_start: u64,
    /// `/run/netns` name of the network namespace.
    pub netns: Option<String>,
    /// Host end of the veth pair.
    pub veth: Option<String>,
    /// The pod's address.
    pub ip: Option<Ipv4Addr>,
    /// The CIDR it came from.
    pub cidr: Option<String>,
    /// Host pid and start time of the shared PID namespace's init.
    pub init: Option<(u32, u64)>,
}

impl SandboxRecord {
    /// Whether the podrun that made it still runs.
    pub fn owner_alive(&self) -> bool {
        podrun_process::process_start_time(self.owner_pid) == Some(self.owner_start)
    }
}

/// `<state>/sandboxes`.
pub fn records_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sandboxes")
}

/// A pod's sandbox. Dropping it destroys it.
#[derive(Debug)]
pub struct Sandbox {
    record: SandboxRecord,
    record_path: Option<PathBuf>,
    net: Option<OwnedFd>,
    uts: Option<OwnedFd>,
    ipc: Option<OwnedFd>,
    init: Option<ns::PodInit>,
    ipam: Option<Ipam>,
    pod_ip: IpAddr,
    host_ip: IpAddr,
    queued: Duration,
    setup: Duration,
    destroyed: bool,
}

/// How long [`Sandbox::destroy`] waits for the kernel to remove a dead network namespace's
/// veth pair before deleting it itself (something else still holds the namespace).
const VETH_REMOVAL_WAIT: Duration = Duration::from_secs(5);

impl Sandbox {
    /// Makes the sandbox for `spec` on a sandbox worker and waits for it (blocking: call
    /// from a blocking context; [`Sandbox::create_queued`] is the async form). Without
    /// root only a pod that [`needs_root`] nothing from gets one, and it is the host
    /// itself.
    pub fn create(
        spec: &SandboxSpec,
        cfg: &NetworkConfig,
        state_dir: &Path,
    ) -> Result<Sandbox, SandboxError> {
        if let Some(sb) = Self::without_isolation(spec)? {
            return Ok(sb);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        Self::submit(
            spec.clone(),
            cfg.clone(),
            state_dir.to_path_buf(),
            move |r| {
                let _ = tx.send(r);
            },
        )?;
        rx.recv().map_err(|_| worker_lost())?
    }

    /// [`Sandbox::create`] for async callers: waits in the workers' queue without holding
    /// a thread. [`Sandbox::queue_time`] says how long the wait was.
    pub async fn create_queued(
        spec: SandboxSpec,
        cfg: NetworkConfig,
        state_dir: PathBuf,
    ) -> Result<Sandbox, SandboxError> {
        if let Some(sb) = Self::without_isolation(&spec)? {
            return Ok(sb);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        Self::submit(spec, cfg, state_dir, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| worker_lost())?
    }

    /// The sandbox of a podrun without root: nothing to make, or an error if the pod
    /// needs what only root can give. `None` as root.
    fn without_isolation(spec: &SandboxSpec) -> Result<Option<Sandbox>, SandboxError> {
        if podrun_process::isolation_available() {
            return Ok(None);
        }
        let features = needs_root(spec);
        if !features.is_empty() {
            return Err(SandboxError::NeedsRoot {
                pod: spec.name.clone(),
                features,
            });
        }
        let mut sb = Sandbox::empty(spec);
        sb.destroyed = true;
        Ok(Some(sb))
    }

    fn submit(
        spec: SandboxSpec,
        cfg: NetworkConfig,
        state_dir: PathBuf,
        reply: impl FnOnce(Result<Sandbox, SandboxError>) + Send + 'static,
    ) -> Result<(), SandboxError> {
        workers::submit(move |worker, queued_at| {
            let queued = queued_at.elapsed();
            let mut stranded = false;
            let result = Self::make(&spec, &cfg, &state_dir, worker, &mut stranded);
            reply(result.map(|mut sb| {
                sb.queued = queued;
                sb
            }));
            if stranded { Err(Stranded) } else { Ok(()) }
        })
        .map_err(step("start a sandbox worker"))
    }

    fn empty(spec: &SandboxSpec) -> Sandbox {
        let host_ip = host_ip();
        let (pid, owner_start) = own_identity();
        Sandbox {
            record: SandboxRecord {
                uid: spec.uid.clone(),
                namespace: spec.namespace.clone(),
                name: spec.name.clone(),
                owner_pid: pid,
                owner_start,
                netns: None,
                veth: None,
                ip: None,
                cidr: None,
                init: None,
            },
            record_path: None,
            net: None,
            uts: None,
            ipc: None,
            init: None,
            ipam: None,
            pod_ip: host_ip,
            host_ip,
            queued: Duration::ZERO,
            setup: Duration::ZERO,
            destroyed: false,
        }
    }

    /// Makes the sandbox on `worker` (as root). Sets `stranded` if the worker could not
    /// return to its namespaces.
    fn make(
        spec: &SandboxSpec,
        cfg: &NetworkConfig,
        state_dir: &Path,
        worker: &mut Worker,
        stranded: &mut bool,
    ) -> Result<Sandbox, SandboxError> {
        let started = Instant::now();
        let mut sb = Sandbox::empty(spec);
        let uid8 = spec.uid8();
        if !spec.host_network {
            let ipam = Ipam::new(&cfg.ipam_root, cfg.pod_cidr);
            let ip = ipam
                .allocate(&spec.uid, state_dir)
                .map_err(step("allocate pod IP"))?;
            sb.ipam = Some(ipam);
            sb.record.ip = Some(ip);
            sb.record.cidr = Some(cfg.pod_cidr.to_string());
            sb.record.netns = Some(format!("{NETNS_PREFIX}{uid8}"));
            sb.record.veth = Some(format!("{VETH_PREFIX}{uid8}"));
            sb.pod_ip = IpAddr::V4(ip);
        }
        // Recorded before anything is created: a podrun killed half-way leaves nothing
        // that recovery cannot find. (Killed during this write, it leaves an unreadable
        // record but nothing it would describe.)
        let path = records_dir(state_dir).join(format!("{}.json", spec.uid));
        let first = encode_record(&sb.record)?;
        match std::fs::write(&path, &first) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(records_dir(state_dir))
                    .map_err(step("create sandbox records"))?;
                std::fs::write(&path, &first)
            }
            other => other,
        }
        .map_err(step("write sandbox record"))?;
        sb.record_path = Some(path.clone());
        if let Err(e) = sb.build(spec, cfg, worker, stranded) {
            sb.destroy();
            return Err(e);
        }
        // Only the init is learnt while building; replace the record whole, never
        // leaving a half-written one.
        if sb.record.init.is_some() {
            write_record(&path, &sb.record)?;
        }
        sb.setup = started.elapsed();
        Ok(sb)
    }

    fn build(
        &mut self,
        spec: &SandboxSpec,
        cfg: &NetworkConfig,
        worker: &mut Worker,
        stranded: &mut bool,
    ) -> Result<(), SandboxError> {
        let netns_path = self
            .record
            .netns
            .as_ref()
            .map(|n| Path::new(NETNS_DIR).join(n));
        let req = ns::Request {
            netns_path,
            hostname: (!spec.host_network).then(|| spec.pod_hostname().to_string()),
        };
        let created = match ns::create(&req, &worker.home) {
            Ok(created) => created.map_err(step("create namespaces"))?,
            Err(Stranded) => {
                *stranded = true;
                return Err(SandboxError::Setup {
                    step: "create namespaces".into(),
                    source: std::io::Error::other(
                        "the sandbox worker could not return to podrun's namespaces",
                    ),
                });
            }
        };
        self.net = created.net;
        self.uts = created.uts;
        self.ipc = Some(created.ipc);
        if let (Some(net), Some(mut pod_nl), Some(ip), Some(veth)) = (
            self.net.as_ref(),
            created.netlink,
            self.record.ip,
            self.record.veth.clone(),
        ) {
            let net = std::os::fd::AsRawFd::as_raw_fd(net);
            let attached = attach_veth(worker, &veth, net, &cfg.pod_cidr);
            if attached.is_err() {
                worker.reset_netlink();
            }
            attached?;
            let eth0 = pod_nl
                .link_index("eth0")
                .map_err(step("find eth0"))?
                .ok_or_else(|| SandboxError::Setup {
                    step: "find eth0".into(),
                    source: std::io::Error::other("eth0 missing in the pod's namespace"),
                })?;
            pod_nl
                .configure_pod(eth0, ip, cfg.pod_cidr.prefix(), cfg.pod_cidr.gateway())
                .map_err(|(s, e)| step(s)(e))?;
        }
        if spec.share_process_namespace {
            let init = ns::start_init([self.net.as_ref(), self.uts.as_ref(), self.ipc.as_ref()])
                .map_err(step("start the pod's init"))?;
            self.record.init = Some((
                init.pid,
                podrun_process::process_start_time(init.pid).unwrap_or(0),
            ));
            self.init = Some(init);
        }
        Ok(())
    }

    /// The namespaces containers of this pod join.
    pub fn namespaces(&self) -> PodNamespaces<'_> {
        PodNamespaces {
            net: self.net.as_ref().map(|f| f.as_fd()),
            uts: self.uts.as_ref().map(|f| f.as_fd()),
            ipc: self.ipc.as_ref().map(|f| f.as_fd()),
            pid_init: self.init.as_ref().map(|i| i.pidfd.as_fd()),
        }
    }

    /// `status.podIP`.
    pub fn pod_ip(&self) -> IpAddr {
        self.pod_ip
    }

    /// `status.hostIP`.
    pub fn host_ip(&self) -> IpAddr {
        self.host_ip
    }

    /// Whether the pod has a network namespace of its own.
    pub fn has_own_network(&self) -> bool {
        self.net.is_some()
    }

    /// The `/run/netns` name of its network namespace.
    pub fn netns_name(&self) -> Option<&str> {
        self.record.netns.as_deref()
    }

    /// How long making the sandbox took, from the moment a worker took it up.
    pub fn setup_time(&self) -> Duration {
        self.setup
    }

    /// How long the sandbox waited in the workers' queue before that.
    pub fn queue_time(&self) -> Duration {
        self.queued
    }

    /// What is recorded about it.
    pub fn record(&self) -> &SandboxRecord {
        &self.record
    }

    /// Removes everything: the init (and with it a shared PID namespace), the `/run/netns`
    /// mount and the namespaces' fds (the kernel then removes the dead network namespace
    /// and its veth pair; this waits until the pair is gone), the address and the record.
    /// Idempotent; errors are logged, and every step is tried. Returns how long it took.
    pub fn destroy(&mut self) -> Duration {
        let started = Instant::now();
        if self.destroyed {
            return Duration::ZERO;
        }
        self.destroyed = true;
        if let Some(init) = self.init.take() {
            init.kill();
        }
        let veth = self.record.veth.as_deref();
        // Subscribed before the namespace can go, so its removal cannot be missed.
        let removal = match (&self.net, veth) {
            (Some(_), Some(veth)) => LinkRemoval::watch(veth).map_err(|e| {
                tracing::warn!(%veth, error = %e, "cannot watch the veth's removal");
            }),
            _ => Err(()),
        };
        if let Some(netns) = &self.record.netns
            && let Err(e) = ns::unbind_netns(&Path::new(NETNS_DIR).join(netns))
        {
            tracing::warn!(%netns, error = %e, "cannot remove network namespace mount");
        }
        self.net = None;
        self.uts = None;
        self.ipc = None;
        let removed = match removal {
            Ok(None) => true,
            Ok(Some(r)) => r.wait(VETH_REMOVAL_WAIT).unwrap_or(false),
            Err(()) => false,
        };
        if !removed && let Some(veth) = veth {
            delete_veth(veth);
        }
        if let (Some(ipam), Some(ip)) = (&self.ipam, self.record.ip)
            && let Err(e) = ipam.release(ip, &self.record.uid)
        {
            tracing::warn!(%ip, error = %e, "cannot release pod IP");
        }
        if let Some(path) = &self.record_path {
            let _ = std::fs::remove_file(path);
        }
        started.elapsed()
    }
}

fn worker_lost() -> SandboxError {
    SandboxError::Setup {
        step: "make the sandbox".into(),
        source: std::io::Error::other("the sandbox worker ended without an answer"),
    }
}

/// Creates the pod's veth pair on the worker's host netlink socket: the host end up and
/// attached to the bridge (made on demand), `eth0` inside the namespace `net`.
fn attach_veth(
    worker: &mut Worker,
    veth: &str,
    net: std::os::fd::RawFd,
    cidr: &Ipv4Cidr,
) -> Result<(), SandboxError> {
    let host_nl = worker.host_netlink().map_err(step("netlink"))?;
    let (bridge, cached) = ensure_bridge(host_nl, cidr)?;
    if let Err(e) = host_nl.create_veth(veth, bridge, "eth0", net) {
        if !cached {
            return Err(step("create veth pair")(e));
        }
        // The remembered bridge may have been removed (and re-created under another
        // index) behind this process's back: look it up afresh, once.
        forget_bridge();
        let (bridge, _) = ensure_bridge(host_nl, cidr)?;
        host_nl
            .create_veth(veth, bridge, "eth0", net)
            .map_err(step("create veth pair"))?;
    }
    Ok(())
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.destroy();
    }
}

fn encode_record(record: &SandboxRecord) -> Result<Vec<u8>, SandboxError> {
    serde_json::to_vec(record).map_err(|e| SandboxError::Setup {
        step: "encode sandbox record".into(),
        source: std::io::Error::other(e),
    })
}

/// Replaces a record atomically.
fn write_record(path: &Path, record: &SandboxRecord) -> Result<(), SandboxError> {
    let text = encode_record(record)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(step("write sandbox record"))?;
    std::fs::rename(&tmp, path).map_err(step("write sandbox record"))
}

/// Deletes a veth pair (both ends), if it is still there.
fn delete_veth(veth: &str) {
    if let Err(e) = Netlink::open().and_then(|mut nl| nl.delete_link(veth)) {
        tracing::warn!(%veth, error = %e, "cannot delete veth");
    }
}

/// Removes a dead podrun's sandbox's veth and netns mount (recovery and clean-up).
fn teardown(record: &SandboxRecord) {
    if let Some(veth) = &record.veth {
        delete_veth(veth);
    }
    if let Some(netns) = &record.netns
        && let Err(e) = ns::unbind_netns(&Path::new(NETNS_DIR).join(netns))
    {
        tracing::warn!(%netns, error = %e, "cannot remove network namespace mount");
    }
}

/// The bridge as this process last set it up: its index and the CIDR whose gateway
/// address it was given. Every pod after the first reuses it without a netlink round trip.
static BRIDGE_READY: std::sync::Mutex<Option<(u32, Ipv4Cidr)>> = std::sync::Mutex::new(None);

/// Creates the bridge on demand and gives it the gateway address; returns its index and
/// whether it was remembered rather than looked up (a remembered index may be stale if
/// something deleted the bridge since; the caller retries after [`forget_bridge`]).
fn ensure_bridge(nl: &mut Netlink, cidr: &Ipv4Cidr) -> Result<(u32, bool), SandboxError> {
    // Held across the look-up so concurrent first pods set the bridge up once; later pods
    // only read the remembered index.
    let mut ready = BRIDGE_READY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((index, c)) = *ready
        && c == *cidr
    {
        return Ok((index, true));
    }
    let index = match nl.link_index(BRIDGE).map_err(step("find bridge"))? {
        Some(i) => {
            pin_bridge_address(nl, i)?;
            i
        }
        None => {
            nl.create_bridge(BRIDGE, BRIDGE_MAC)
                .map_err(step("create bridge"))?;
            nl.link_index(BRIDGE)
                .map_err(step("find bridge"))?
                .ok_or_else(|| SandboxError::Setup {
                    step: "create bridge".into(),
                    source: std::io::Error::other("bridge vanished after creation"),
                })?
        }
    };
    nl.add_address(index, cidr.gateway(), cidr.prefix())
        .map_err(step("add bridge address"))?;
    nl.set_up(index).map_err(step("set bridge up"))?;
    *ready = Some((index, *cidr));
    Ok((index, false))
}

/// The bridge's own hardware address: locally administered, unicast, and the same on
/// every host, so the gateway's address never depends on which pods are attached.
pub const BRIDGE_MAC: [u8; 6] = [0x02, 0x70, 0x6f, 0x64, 0x00, 0x01];

/// `addr_assign_type` of an address the user set (`NET_ADDR_SET`).
const NET_ADDR_SET: &str = "3";

/// Makes an existing bridge keep the address it has now, if nothing set it yet: a bridge
/// made by an older podrun (or by hand) without one follows its lowest port's address,
/// so when that pod leaves, the gateway's address changes under every other pod. Pinning
/// the current address (rather than [`BRIDGE_MAC`]) leaves the pods already attached
/// with a correct ARP entry.
fn pin_bridge_address(nl: &mut Netlink, index: u32) -> Result<(), SandboxError> {
    let sys = Path::new("/sys/class/net").join(BRIDGE);
    let kind = std::fs::read_to_string(sys.join("addr_assign_type")).unwrap_or_default();
    if kind.trim() == NET_ADDR_SET {
        return Ok(());
    }
    let text = std::fs::read_to_string(sys.join("address")).map_err(step("read bridge address"))?;
    let mac = parse_mac(text.trim())
        .filter(|m| *m != [0; 6])
        .unwrap_or(BRIDGE_MAC);
    tracing::info!(bridge = BRIDGE, address = %text.trim(), "pinning the bridge's address");
    nl.set_address(index, mac)
        .map_err(step("set bridge address"))
}

/// `aa:bb:cc:dd:ee:ff` as six bytes.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut out {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Drops the remembered bridge so the next [`ensure_bridge`] looks it up again.
fn forget_bridge() {
    *BRIDGE_READY.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// This process's pid and start time, as sandbox records and address allocations name
/// their owner. The start time never changes, so `/proc` is read once, not per pod.
pub(crate) fn own_identity() -> (u32, u64) {
    static START: OnceLock<u64> = OnceLock::new();
    let pid = std::process::id();
    let start = *START.get_or_init(|| podrun_process::process_start_time(pid).unwrap_or(0));
    (pid, start)
}

/// The host's address as `status.hostIP`: the source address of its default route, or
/// loopback on a machine without one. Connecting a UDP socket sends nothing.
pub fn host_ip() -> IpAddr {
    static IP: OnceLock<IpAddr> = OnceLock::new();
    *IP.get_or_init(|| {
        std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| {
                // TEST-NET-1: only used to select a route; no packet is sent.
                s.connect("192.0.2.1:9")?;
                s.local_addr()
            })
            .map(|a| a.ip())
            .ok()
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    })
}

// === recovery, leftovers, clean-up ===

/// Removes the sandboxes of podruns on `state_dir` that died (their records say what
/// they created) and the addresses they held. Returns one line per sandbox removed.
pub fn recover(state_dir: &Path, ipam_root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (path, record) in read_records(state_dir) {
        if record.owner_alive() {
            continue;
        }
        remove_dead(&record, ipam_root);
        let _ = std::fs::remove_file(&path);
        out.push(format!(
            "removed the sandbox of pod {}/{} left by podrun (pid {}){}",
            record.namespace,
            record.name,
            record.owner_pid,
            record
                .ip
                .map(|ip| format!(": network namespace, veth, address {ip}"))
                .unwrap_or_default()
        ));
    }
    for ipam in ipam::all(ipam_root) {
        if let Ok(released) = ipam.release_dead(|h| h.state_dir == state_dir)
            && !released.is_empty()
        {
            out.push(format!(
                "released {} address(es) of {} held by podruns that died",
                released.len(),
                ipam.cidr()
            ));
        }
    }
    out
}

fn remove_dead(record: &SandboxRecord, ipam_root: &Path) {
    if let Some((pid, start)) = record.init
        && podrun_process::process_start_time(pid) == Some(start)
    {
        // SAFETY: kill(2) of the init we started, verified by its start time.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    teardown(record);
    if let (Some(ip), Some(cidr)) = (
        record.ip,
        record.cidr.as_deref().and_then(|c| c.parse().ok()),
    ) {
        let _ = Ipam::new(ipam_root, cidr).release(ip, &record.uid);
    }
}

fn read_records(state_dir: &Path) -> Vec<(PathBuf, SandboxRecord)> {
    let Ok(entries) = std::fs::read_dir(records_dir(state_dir)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            let text = std::fs::read(e.path()).ok()?;
            Some((e.path(), serde_json::from_slice(&text).ok()?))
        })
        .collect()
}

/// What podrun left behind on this host, as `podrun doctor` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Leftovers {
    /// `/run/netns/podrun-*` whose pod no live podrun holds.
    pub netns: Vec<String>,
    /// `podrunv*` links whose pod no live podrun holds.
    pub veths: Vec<String>,
    /// Addresses held by podruns that died (`<cidr> <ip> <uid>`).
    pub allocations: Vec<String>,
    /// Sandbox records in the state directory whose podrun died.
    pub records: Vec<String>,
    /// `podrun-pause` processes whose podrun is gone (pid).
    pub processes: Vec<u32>,
}

impl Leftovers {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.netns.is_empty()
            && self.veths.is_empty()
            && self.allocations.is_empty()
            && self.records.is_empty()
            && self.processes.is_empty()
    }
}

/// Finds leftovers: podrun-named namespaces and veths that no live podrun's address
/// allocation accounts for, dead allocations, dead records, orphaned inits.
pub fn leftovers(state_dir: &Path, ipam_root: &Path) -> Leftovers {
    let mut live_uid8 = std::collections::BTreeSet::new();
    let mut out = Leftovers::default();
    for ipam in ipam::all(ipam_root) {
        for (ip, holder) in ipam.list().unwrap_or_default() {
            match holder {
                Some(h) if h.alive() => {
                    live_uid8.insert(uid8_of(&h.uid));
                }
                Some(h) => out
                    .allocations
                    .push(format!("{} {ip} {}", ipam.cidr(), h.uid)),
                None => {}
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(u) = name.strip_prefix(NETNS_PREFIX)
                && !live_uid8.contains(u)
            {
                out.netns.push(name);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(u) = name.strip_prefix(VETH_PREFIX)
                && !live_uid8.contains(u)
            {
                out.veths.push(name);
            }
        }
    }
    for (path, record) in read_records(state_dir) {
        if !record.owner_alive() {
            out.records.push(path.display().to_string());
        }
    }
    out.processes = orphaned_inits();
    out.netns.sort();
    out.veths.sort();
    out
}

fn uid8_of(uid: &str) -> String {
    SandboxSpec {
        uid: uid.to_string(),
        namespace: String::new(),
        name: String::new(),
        hostname: None,
        host_network: false,
        share_process_namespace: false,
    }
    .uid8()
}

/// `podrun-pause` processes whose parent is no longer a podrun (normally they die with
/// it through PR_SET_PDEATHSIG).
fn orphaned_inits() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim_end() != INIT_NAME {
                return false;
            }
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 2..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                .unwrap_or(1);
            ppid == 1
        })
        .collect()
}

/// Removes `found` (from [`leftovers`]). Returns one line per thing removed or failed.
pub fn clean(found: &Leftovers, state_dir: &Path, ipam_root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (path, record) in read_records(state_dir) {
        if found.records.contains(&path.display().to_string()) {
            remove_dead(&record, ipam_root);
            let _ = std::fs::remove_file(&path);
            out.push(format!("removed sandbox record {}", path.display()));
        }
    }
    for name in &found.veths {
        match Netlink::open().and_then(|mut nl| nl.delete_link(name)) {
            Ok(_) => out.push(format!("deleted veth {name}")),
            Err(e) => out.push(format!("cannot delete veth {name}: {e}")),
        }
    }
    for name in &found.netns {
        match ns::unbind_netns(&Path::new(NETNS_DIR).join(name)) {
            Ok(_) => out.push(format!("removed network namespace {name}")),
            Err(e) => out.push(format!("cannot remove network namespace {name}: {e}")),
        }
    }
    for ipam in ipam::all(ipam_root) {
        if let Ok(released) = ipam.release_dead(|_| true) {
            for ip in released {
                out.push(format!("released address {ip} of {}", ipam.cidr()));
            }
        }
    }
    for pid in &found.processes {
        // SAFETY: kill(2) of an orphaned podrun-pause found just now by name and parent.
        unsafe {
            libc::kill(*pid as i32, libc::SIGKILL);
        }
        out.push(format!("killed orphaned {INIT_NAME} (pid {pid})"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cidr_is_valid() {
        assert_eq!(
            NetworkConfig::default().pod_cidr.to_string(),
            DEFAULT_POD_CIDR
        );
    }

    #[test]
    fn names_fit_in_an_interface_name() {
        let spec = uid8_of("0A1b2c3d-4e5f-4000-8000-000000000000");
        assert_eq!(spec, "0a1b2c3d");
        assert!(format!("{VETH_PREFIX}{spec}").len() <= 15);
    }

    #[test]
    fn without_root_hostname_and_shared_pid_are_refused() {
        let mut spec = SandboxSpec {
            uid: "u".into(),
            namespace: "default".into(),
            name: "web".into(),
            hostname: None,
            host_network: false,
            share_process_namespace: false,
        };
        assert!(needs_root(&spec).is_empty());
        assert_eq!(spec.pod_hostname(), "web");
        spec.hostname = Some("h".into());
        spec.share_process_namespace = true;
        assert_eq!(needs_root(&spec).len(), 2);
        assert_eq!(spec.pod_hostname(), "h");
    }
}
