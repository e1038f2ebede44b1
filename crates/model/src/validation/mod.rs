//! API-server validation for the kinds podrun admits (Pod, Job, CronJob, Service, …),
//! following upstream `pkg/apis/core/validation` and
//! `pkg/apis/batch/validation`: same rules, same messages, same order.
//!
//! Validation runs after defaulting ([`crate::defaults`]), as in the API
//! server; several rules (probe timings, pull policy, termination message
//! policy) only make sense on defaulted objects.

mod apps;
mod config;
mod cronjob;
mod job;
mod meta;
mod pod;
mod pod_ids;
mod pod_status;
mod service;

pub use apps::{admit_deployment, admit_replica_set, validate_deployment, validate_replica_set};
pub use config::{admit_config_map, admit_secret, validate_config_map, validate_secret};
pub use cronjob::{Schedule, admit_cron_job, default_cron_job_spec, validate_cron_job};
pub use meta::MAX_ANNOTATION_BYTES;

pub use job::{admit_job, validate_job};
pub use pod::{admit_pod, validate_pod, validate_pod_spec_at};
pub use pod_status::{container_should_restart, validate_pod_status_update};
pub use service::{admit_service, validate_service};
