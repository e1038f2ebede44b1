//! A Kubernetes API server that the real, unmodified kubectl drives.
//!
//! The pure parts are plain modules that take time as an argument and do no I/O:
//! [`catalogue`] (every served kind), [`discovery`] (aggregated and legacy discovery,
//! `/version`), [`openapi`] (the v3 index and per-group-version documents with the real
//! schemas), [`openapi_v2`] (the Swagger 2.0 document, JSON and protobuf), [`patch`] (JSON, merge and strategic merge patches), [`table`] (`Table` output
//! as the API server's printers compute it), [`status`] (API `Status` errors),
//! [`negotiate`] (content negotiation), [`protobuf`] (kubectl's protobuf request bodies)
//! and [`router`] (request paths into verbs and resources). The driver parts are
//! [`backend`] (the storage interface), [`tls`] (CA, serving certificate, token and
//! kubeconfig in a state directory) and [`server`] (hyper over rustls, HTTP/1.1 and
//! HTTP/2).

pub mod admission;
pub mod apply;
pub mod backend;
pub mod catalogue;
pub mod discovery;
pub mod exec;
pub mod logs;
pub mod negotiate;
pub mod openapi;
pub mod openapi_v2;
pub mod patch;
pub mod protobuf;
pub mod router;
pub mod server;
pub mod status;
pub mod store_backend;
pub mod table;
pub mod tls;
pub mod views;
