//! Pod networking on one host, as a CNI plugin, kube-proxy and the cluster DNS give it.
//!
//! [`sandbox`] makes each pod's namespaces before its first container starts: a network
//! namespace with a veth into the host bridge and an address from the pod CIDR
//! ([`sandbox::ipam`]), a UTS and an IPC namespace, and the init of a shared PID
//! namespace; it records each one so a restarted podrun can remove what a killed one
//! left. [`service`] gives Services their ClusterIPs and kube-proxy-style DNAT rules
//! (the rules themselves are data from `podrun_netplan`), and [`dns`] serves
//! `cluster.local` names and the pods' `/etc/hosts` and `/etc/resolv.conf`.
//!
//! The node (`podrun-node`) meets this crate at two points: its containers join the
//! namespaces a sandbox gives ([`PodNamespaces`]), and the Service rules follow its pod
//! events ([`PodEvent`]).

pub mod dns;
pub mod sandbox;
pub mod service;

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

/// Namespaces of a pod sandbox that a container joins instead of getting its own (see
/// [`sandbox`]). A namespace left `None` is handled as without a sandbox: the container
/// gets its own PID and UTS namespaces and shares the host's network and IPC.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodNamespaces<'a> {
    /// The pod's network namespace.
    pub net: Option<BorrowedFd<'a>>,
    /// The pod's UTS namespace (its hostname is already set); the container's `hostname`
    /// is then ignored.
    pub uts: Option<BorrowedFd<'a>>,
    /// The pod's IPC namespace.
    pub ipc: Option<BorrowedFd<'a>>,
    /// A pidfd of the pod's init when `shareProcessNamespace` is set: the container is
    /// started in that init's PID namespace instead of a new one of its own.
    pub pid_init: Option<BorrowedFd<'a>>,
}

/// What happened to a pod, as Service endpoints need to know it.
#[derive(Clone, Debug)]
pub enum PodChange {
    /// The pod's latest object (status, readiness, IP, deletion).
    Updated(Arc<Pod>),
    /// The pod finished: terminal phase, no process left.
    Finished(Arc<Pod>),
}

/// An event of the node that may be a [`PodChange`]: [`service::Services::follow`]
/// follows a broadcast channel of them.
pub trait PodEvent: Clone + Send + 'static {
    /// The pod change this event is, if it is one.
    fn pod_change(self) -> Option<PodChange>;
}

impl PodEvent for PodChange {
    fn pod_change(self) -> Option<PodChange> {
        Some(self)
    }
}
