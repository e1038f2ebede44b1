//! Pod, Job and Deployment manifests: parsing, API-server defaulting and validation.
//!
//! This crate owns the boundary between manifest text and typed Kubernetes
//! objects (k8s-openapi types), and reproduces what the API server does to an
//! object before storing it: defaulting ([`default_pod`], [`default_job`]),
//! validation with the API server's exact messages and field paths
//! ([`validate_pod`], [`Invalid`]), and what the kubelet derives from a
//! container spec ([`container_env`], [`container_argv`]).
//!
//! It must never do I/O, read a clock, or spawn anything: every input is an
//! argument, so other crates can call it from pure code.

mod defaults;
mod env;
mod field;
mod host_rootfs;
pub mod names;
mod object;
mod parse;
mod phase;
pub mod quantity;
mod time;
mod validation;

pub use defaults::{
    DEFAULT_SCHEDULER_NAME, DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
    DEFAULT_TERMINATION_MESSAGE_PATH, default_container, default_image_pull_policy, default_job,
    default_pod, default_pod_spec, default_probe, default_service, default_volume,
    generate_job_selector,
};
pub use env::{
    ALL_KEYS, ENV_FILE_KIND, ENV_FILE_MAX_BYTES, EnvSource, container_argv, container_env,
    container_env_from, expand, format_map, parse_env_file,
};
pub use field::{ErrorKind, FieldError, Invalid, quote};
pub use host_rootfs::{HOST_ROOTFS_ANNOTATION, stamp_host_rootfs};
pub use object::{Object, SUPPORTED_KINDS};
pub use parse::{
    ParseError, ParseErrorKind, decode_object, no_objects_message, parse_manifest_bytes,
    parse_manifests,
};
pub use phase::{PodPhase, UnknownPhase, is_pod_terminal};
pub use time::format_time;
pub use validation::{
    MAX_ANNOTATION_BYTES, Schedule, admit_config_map, admit_cron_job, admit_deployment, admit_job,
    admit_pod, admit_replica_set, admit_secret, admit_service, container_should_restart,
    default_cron_job_spec, validate_config_map, validate_cron_job, validate_deployment,
    validate_job, validate_pod, validate_pod_spec_at, validate_pod_status_update,
    validate_replica_set, validate_secret, validate_service,
};

pub use k8s_openapi;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Container;

/// Does the Job have the condition `type_` (`Complete`, `Failed`, …) with status `True`?
pub fn job_has_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Is this init container a sidecar (`restartPolicy: Always`)?
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}
