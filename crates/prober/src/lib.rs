//! What the kubelet's prober (`podrun-node`) and Istio's app prober (`podrun-proxy`)
//! share: the TLS client of `scheme: HTTPS` probes ([`tls`]) and the rule for following
//! redirects ([`redirect`]).

pub mod redirect;
pub mod tls;
