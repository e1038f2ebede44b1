//! Job validation (upstream `pkg/apis/batch/validation`: `ValidateJob`,
//! `ValidateJobSpec`, `ValidatePodTemplateSpec`).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::defaults::default_job;
use crate::field::{FieldError, Invalid, Path, quote};
use crate::names;
use crate::validation::meta::{NameRule, validate_labels, validate_object_meta};
use crate::validation::pod::validate_pod_spec;

type Errs = Vec<FieldError>;

const NEGATIVE: &str = "must be greater than or equal to 0";

/// Defaults then validates a Job, as the API server does on create.
pub fn admit_job(mut job: Job) -> Result<Job, Invalid> {
    default_job(&mut job);
    validate_job(&job)?;
    Ok(job)
}

/// Validates a defaulted Job. Pod template errors carry the
/// `spec.template.spec.` prefix.
///
/// The selector is normally generated from the Job's UID before validation
/// (see [`crate::generate_job_selector`]); when it is still absent and
/// `manualSelector` is not true, it is taken as "to be generated" and not
/// reported.
pub fn validate_job(job: &Job) -> Result<(), Invalid> {
    let meta_path = Path::new("metadata");
    let mut errs = validate_object_meta(&job.metadata, NameRule::Subdomain, &meta_path);
    let empty = JobSpec::default();
    let spec = job.spec.as_ref().unwrap_or(&empty);
    errs.extend(validate_job_spec(spec, &Path::new("spec")));
    let name = job.metadata.name.clone().unwrap_or_default();
    if spec.completion_mode.as_deref() == Some("Indexed")
        && let Some(c) = spec.completions.filter(|c| *c > 0)
    {
        // Indexed pods get hostnames `<job>-<index>`, which must be labels.
        let max_hostname = format!("{name}-{}", c - 1);
        if !names::is_dns1123_label(&max_hostname).is_empty() {
            errs.push(FieldError::invalid_str(
                meta_path.child("name"),
                &name,
                format!("will not able to create pod with invalid DNS label: {max_hostname}"),
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Invalid::new("Job", name, errs))
    }
}

pub(crate) fn validate_job_spec(spec: &JobSpec, path: &Path) -> Errs {
    let mut errs = Errs::new();
    for (v, name) in [
        (spec.parallelism.map(i64::from), "parallelism"),
        (spec.completions.map(i64::from), "completions"),
        (spec.active_deadline_seconds, "activeDeadlineSeconds"),
        (spec.backoff_limit.map(i64::from), "backoffLimit"),
        (
            spec.ttl_seconds_after_finished.map(i64::from),
            "ttlSecondsAfterFinished",
        ),
    ] {
        if let Some(v) = v
            && v < 0
        {
            errs.push(FieldError::invalid_num(path.child(name), v, NEGATIVE));
        }
    }
    if let Some(mode) = spec.completion_mode.as_deref() {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(
                path.child("completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
        if mode == "Indexed" && spec.completions.is_none() {
            errs.push(FieldError::required(
                path.child("completions"),
                "when completion mode is Indexed",
            ));
        }
    }
    if let Some(policy) = spec.pod_replacement_policy.as_deref() {
        let allowed: &[&str] = if spec.pod_failure_policy.is_some() {
            &["Failed"]
        } else {
            &["Failed", "TerminatingOrFailed"]
        };
        if !allowed.contains(&policy) {
            errs.push(FieldError::not_supported(
                path.child("podReplacementPolicy"),
                policy,
                allowed,
            ));
        }
    }

    // ValidatePodTemplateSpec.
    let tpath = path.child("template");
    let tmeta = spec.template.metadata.clone().unwrap_or_default();
    if let Some(labels) = &tmeta.labels {
        errs.extend(validate_labels(labels, &tpath.child("labels")));
    }
    if let Some(annotations) = &tmeta.annotations {
        for k in annotations.keys() {
            for m in names::is_qualified_name(&k.to_lowercase()) {
                errs.push(FieldError::invalid_str(tpath.child("annotations"), k, m));
            }
        }
    }
    let pod_spec = spec.template.spec.clone().unwrap_or_default();
    errs.extend(validate_pod_spec(&pod_spec, &tpath.child("spec"), false));
    if pod_spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            tpath.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }

    // Defaulting turns an unset policy into Always, so both mean "not chosen".
    let rp_path = tpath.child("spec").child("restartPolicy");
    match pod_spec.restart_policy.as_deref().unwrap_or("") {
        "Always" | "" => errs.push(FieldError::required(
            rp_path,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" | "Never" => {
            if spec.pod_failure_policy.is_some()
                && pod_spec.restart_policy.as_deref() != Some("Never")
            {
                errs.push(FieldError::invalid_str(
                    rp_path,
                    pod_spec.restart_policy.as_deref().unwrap_or(""),
                    "only \"Never\" is supported when podFailurePolicy is specified",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            rp_path,
            other,
            &["OnFailure", "Never"],
        )),
    }

    // ValidateJobSpec: the selector must exist and select the template.
    match &spec.selector {
        None if spec.manual_selector == Some(true) => {
            errs.push(FieldError::required(path.child("selector"), ""))
        }
        None => {}
        Some(sel) => {
            let labels = tmeta.labels.clone().unwrap_or_default();
            if !selector_matches(sel, &labels) {
                errs.push(FieldError::invalid_raw(
                    tpath.child("metadata").child("labels"),
                    go_map(&tmeta.labels),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    errs
}

/// Does a label selector select this label set? An empty selector selects
/// everything, as upstream.
pub(crate) fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or(&[]);
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|h| values.contains(h)),
            "NotIn" => have.is_none_or(|h| !values.contains(h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// Go's `%#v` of a `map[string]string`: keys sorted, values quoted.
pub(crate) fn go_map(m: &Option<BTreeMap<String, String>>) -> String {
    match m {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}
