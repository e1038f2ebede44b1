//! Traffic-capture settings to iptables rules, as data and as iptables-restore text.
//!
//! This crate owns the decision of *which* rules capture a pod's traffic for the mesh sidecar
//! (spec `mesh-sidecar.md` §2, matching `istio-iptables` in REDIRECT mode) and of *how* to get
//! from the live rules to the wanted ones in one atomic `iptables-restore --noflush` call. It
//! never runs a process, reads a file or the environment, or looks at a clock: the caller
//! (`podrun proxy-init`) gathers facts, runs the tools and feeds their output back in.
//!
//! Flow: [`CaptureInput`] (flags, then [`CaptureInput::fill_from_env`]) + [`HostFacts`] →
//! [`CaptureConfig::parse`] → [`build_all`] → one [`RuleSet`] per family →
//! [`RuleSet::restore_text`] (what `--dry-run` prints) or, against the live state parsed by
//! [`SavedState::parse`], [`plan_apply`] / [`plan_cleanup`].

mod build;
mod config;
mod live;
mod rules;
pub mod service;

pub use build::{build, build_all};
pub use config::{
    CaptureConfig, CaptureInput, Cidr, ConfigError, DEFAULT_INBOUND_CAPTURE_PORT,
    DEFAULT_INBOUND_TUNNEL_PORT, DEFAULT_PROXY_ID, DEFAULT_PROXY_PORT, DNS_PROXY_PORT, DnsCapture,
    HostFacts, IPV6_LOOPBACK, InboundPorts, InterceptionMode, Interface, MAX_OWNER_GROUPS_INCLUDE,
    OutboundRanges, Owner, OwnerGroups, PortSpec, env, host_cidr, parse_bool,
};
pub use live::{
    ApplyPlan, Backend, SaveParseError, SavedState, SavedTable, choose_backend, plan_apply,
    plan_cleanup,
};
pub use rules::{
    BUILTIN_CHAINS, CHAIN_PREFIX, Family, Position, Rule, RuleSet, Table, chain, is_builtin_chain,
    is_own_chain,
};
