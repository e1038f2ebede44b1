//! The node: runs pods as real Linux processes, driven by the lifecycle engine.
//!
//! `runtime` creates container processes (namespaces, mounts, logs, exit events);
//! `handler` carries out probe and hook handlers (exec, httpGet, tcpSocket, grpc, sleep).
//! Decisions are never made here: they come from `podrun_lifecycle::PodMachine`.

pub mod handler;
pub mod instance;
pub mod layout;
pub mod runtime;
