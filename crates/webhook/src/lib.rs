//! Mutating admission webhook (AdmissionReview v1 over HTTPS) for the injector.
//!
//! This crate owns the HTTP side of injection: TLS (loaded or generated certificates, ring
//! provider), the `/inject` endpoint with Istio's path parameters, content-type and size
//! checks, the AdmissionReview response with a base64 JSON Patch, and the objects that
//! deploy the webhook on a cluster. It never decides anything about the pod itself: that is
//! `podrun-inject`'s job, called through [`review::handle_inject`].

pub mod manifests;
pub mod review;
pub mod server;
pub mod tls;

pub use manifests::{DeployOptions, deploy_objects};
pub use review::{FailurePolicy, Reply, Verdict, handle_inject};
pub use server::{DEFAULT_MAX_BODY, Webhook, serve};
pub use tls::{ServingCert, TlsError, service_dns_names};
