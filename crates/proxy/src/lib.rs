//! The mesh sidecar proxy: transparent HTTP/TCP capture listeners, access log, admin, drain.
//!
//! One process plays both of Istio's sidecar roles (agent and data plane): the
//! outbound (15001) and inbound (15006) capture listeners, protocol detection,
//! HTTP/1.1 and h2c proxying with an upstream pool, TCP relaying with half-close,
//! the access log in Istio's TEXT format, Prometheus stats, readiness, admin, and the
//! drain/shutdown sequences of the spec (`mesh-sidecar.md` §3).
//!
//! Layout: pure decisions live in [`route`], [`retry`], [`drain::plan_shutdown`],
//! [`admin::route_admin`], [`h1::codec`] (HTTP/1.1 heads and body framing) and
//! [`accesslog`] rendering; [`proxy`], [`h1`] (the HTTP/1.1 path), [`http`] (HTTP/2,
//! with hyper), [`tcp`] and [`upstream`] are the thin I/O around them. The original destination comes through
//! the [`OrigDst`] seam so the whole proxy runs in-process in tests.
//!
//! This crate never installs capture rules (that is `podrun-netplan`) and never
//! reads the wall clock inside a decision.

pub mod accesslog;
pub mod admin;
pub mod app_probe;
pub mod body;
pub mod client;
pub mod config;
pub mod drain;
pub mod h1;
pub mod http;
pub mod metrics;
pub mod orig_dst;
pub mod proxy;
pub mod retry;
pub mod route;
pub mod tcp;
pub mod upstream;

pub use accesslog::{AccessLog, CapturedLog};
pub use config::{AccessLogFormat, Direction, ProxyConfig};
pub use orig_dst::{MockOrigDst, OrigDst, SoOriginalDst};
pub use proxy::{BoundAddrs, ExitReason, Proxy, ProxyHandle, StartError};
