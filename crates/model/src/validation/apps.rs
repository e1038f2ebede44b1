//! Deployment and ReplicaSet validation (upstream `pkg/apis/apps/validation`:
//! `ValidateDeploymentSpec`, `ValidateDeploymentStrategy`,
//! `ValidateRollingUpdateDeployment`, `ValidateReplicaSetSpec`,
//! `ValidatePodTemplateSpecForReplicaSet`), run on a copy defaulted as the
//! API server defaults `apps/v1` objects.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::defaults::default_pod_spec;
use crate::field::{FieldError, Invalid, Path, quote};
use crate::names;
use crate::validation::job::{go_map, selector_matches};
use crate::validation::meta::{NameRule, annotations_size, validate_labels, validate_object_meta};
use crate::validation::pod::validate_pod_spec;

type Errs = Vec<FieldError>;

const NEGATIVE: &str = "must be greater than or equal to 0";

/// Upstream `IsValidPercent`'s message.
const PERCENT_ERR: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

/// Validates a Deployment as the API server does on create (after `apps/v1`
/// defaulting, applied to a copy); the Deployment is returned unchanged.
pub fn admit_deployment(d: Deployment) -> Result<Deployment, Invalid> {
    let mut defaulted = d.clone();
    default_deployment(&mut defaulted);
    validate_deployment(&defaulted)?;
    Ok(d)
}

/// Validates a defaulted Deployment.
pub fn validate_deployment(d: &Deployment) -> Result<(), Invalid> {
    let mut errs = validate_object_meta(&d.metadata, NameRule::Subdomain, &Path::new("metadata"));
    errs.extend(deployment_spec(&d.spec, &Path::new("spec")));
    finish("Deployment", &d.metadata.name, errs)
}

/// Validates a ReplicaSet as the API server does on create (after `apps/v1`
/// defaulting, applied to a copy); the ReplicaSet is returned unchanged.
pub fn admit_replica_set(rs: ReplicaSet) -> Result<ReplicaSet, Invalid> {
    let mut defaulted = rs.clone();
    default_replica_set(&mut defaulted);
    validate_replica_set(&defaulted)?;
    Ok(rs)
}

/// Validates a defaulted ReplicaSet.
pub fn validate_replica_set(rs: &ReplicaSet) -> Result<(), Invalid> {
    let mut errs = validate_object_meta(&rs.metadata, NameRule::Subdomain, &Path::new("metadata"));
    let path = Path::new("spec");
    let spec = &rs.spec;
    nonnegative(
        &mut errs,
        spec.replicas.map(i64::from),
        &path.child("replicas"),
    );
    nonnegative(
        &mut errs,
        spec.min_ready_seconds.map(i64::from),
        &path.child("minReadySeconds"),
    );
    errs.extend(selector_and_template(
        Some(&spec.selector).filter(|s| !is_unset(s)),
        spec.template.as_ref(),
        &path,
    ));
    finish("ReplicaSet", &rs.metadata.name, errs)
}

fn finish(kind: &str, name: &Option<String>, errs: Errs) -> Result<(), Invalid> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Invalid::new(kind, name.clone().unwrap_or_default(), errs))
    }
}

/// `SetDefaults_Deployment`: replicas 1, strategy RollingUpdate with 25%
/// surge and unavailability, revisionHistoryLimit 10,
/// progressDeadlineSeconds 600, and the template's pod spec defaults.
fn default_deployment(d: &mut Deployment) {
    d.metadata.namespace.get_or_insert_with(|| "default".into());
    let spec = &mut d.spec;
    spec.replicas.get_or_insert(1);
    let strategy = spec.strategy.get_or_insert_with(Default::default);
    let ty = strategy
        .type_
        .get_or_insert_with(|| "RollingUpdate".into())
        .clone();
    if ty == "RollingUpdate" {
        let ru = strategy.rolling_update.get_or_insert_with(Default::default);
        let quarter = || IntOrString::String("25%".into());
        ru.max_unavailable.get_or_insert_with(quarter);
        ru.max_surge.get_or_insert_with(quarter);
    }
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    default_pod_spec(spec.template.spec.get_or_insert_with(PodSpec::default));
}

/// `SetDefaults_ReplicaSet`: replicas 1, and the template's pod spec
/// defaults.
fn default_replica_set(rs: &mut ReplicaSet) {
    rs.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    let spec = &mut rs.spec;
    spec.replicas.get_or_insert(1);
    let template = spec.template.get_or_insert_with(Default::default);
    default_pod_spec(template.spec.get_or_insert_with(PodSpec::default));
}

fn deployment_spec(spec: &DeploymentSpec, path: &Path) -> Errs {
    let mut errs = Errs::new();
    nonnegative(
        &mut errs,
        spec.replicas.map(i64::from),
        &path.child("replicas"),
    );
    errs.extend(selector_and_template(
        Some(&spec.selector).filter(|s| !is_unset(s)),
        Some(&spec.template),
        path,
    ));
    if let Some(strategy) = &spec.strategy {
        errs.extend(strategy_errors(strategy, &path.child("strategy")));
    }
    let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
    nonnegative(&mut errs, Some(min_ready), &path.child("minReadySeconds"));
    nonnegative(
        &mut errs,
        spec.revision_history_limit.map(i64::from),
        &path.child("revisionHistoryLimit"),
    );
    if let Some(pds) = spec.progress_deadline_seconds.map(i64::from) {
        let p = path.child("progressDeadlineSeconds");
        nonnegative(&mut errs, Some(pds), &p);
        if pds <= min_ready {
            errs.push(FieldError::invalid_num(
                p,
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// A Deployment's `selector` is not optional in k8s-openapi; an absent one
/// decodes as an empty selector with neither field set.
fn is_unset(s: &LabelSelector) -> bool {
    s.match_labels.is_none() && s.match_expressions.is_none()
}

/// The selector rules and `ValidatePodTemplateSpecForReplicaSet`.
fn selector_and_template(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    path: &Path,
) -> Errs {
    let mut errs = Errs::new();
    let sel_path = path.child("selector");
    match selector {
        None => errs.push(FieldError::required(&sel_path, "")),
        Some(sel) => {
            errs.extend(label_selector(sel, &sel_path));
            let terms = sel.match_labels.as_ref().map_or(0, BTreeMap::len)
                + sel.match_expressions.as_ref().map_or(0, Vec::len);
            if terms == 0 {
                errs.push(FieldError::invalid_raw(
                    &sel_path,
                    go_selector(sel),
                    // Upstream says "deployment" for ReplicaSets too.
                    "empty selector is invalid for deployment",
                ));
            }
        }
    }
    let tpath = path.child("template");
    let Some(template) = template else {
        errs.push(FieldError::required(tpath, ""));
        return errs;
    };
    let tmeta = template.metadata.clone().unwrap_or_default();
    if let Some(sel) = selector.filter(|s| !is_unset(s)) {
        let labels = tmeta.labels.clone().unwrap_or_default();
        if !selector_matches(sel, &labels) {
            errs.push(FieldError::invalid_raw(
                tpath.child("metadata").child("labels"),
                go_map(&tmeta.labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    // ValidatePodTemplateSpec.
    if let Some(labels) = &tmeta.labels {
        errs.extend(validate_labels(labels, &tpath.child("labels")));
    }
    if let Some(annotations) = &tmeta.annotations {
        for k in annotations.keys() {
            for m in names::is_qualified_name(&k.to_lowercase()) {
                errs.push(FieldError::invalid_str(tpath.child("annotations"), k, m));
            }
        }
        errs.extend(annotations_size(annotations, &tpath.child("annotations")));
    }
    let empty = PodSpec::default();
    let pod_spec = template.spec.as_ref().unwrap_or(&empty);
    let spath = tpath.child("spec");
    errs.extend(validate_pod_spec(pod_spec, &spath, false));
    if pod_spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            spath.child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    let policy = pod_spec.restart_policy.as_deref().unwrap_or("");
    if policy != "Always" {
        errs.push(FieldError::not_supported(
            spath.child("restartPolicy"),
            policy,
            &["Always"],
        ));
    }
    if pod_spec.active_deadline_seconds.is_some() {
        errs.push(FieldError::forbidden(
            spath.child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
    errs
}

/// Upstream `ValidateLabelSelector`: label rules on `matchLabels`, and each
/// expression's operator and values.
fn label_selector(sel: &LabelSelector, path: &Path) -> Errs {
    let mut errs = Errs::new();
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = e.values.as_deref().unwrap_or(&[]);
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                p.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid_str(
                p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        for m in names::is_qualified_name(&e.key) {
            errs.push(FieldError::invalid_str(p.child("key"), &e.key, m));
        }
    }
    if let Some(labels) = &sel.match_labels {
        errs.extend(validate_labels(labels, &path.child("matchLabels")));
    }
    errs
}

/// How Go prints a `*metav1.LabelSelector` (its generated `String`).
fn go_selector(sel: &LabelSelector) -> String {
    let labels: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {v},"))
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{}}},MatchExpressions:[]LabelSelectorRequirement{{}},}}",
        labels.join("")
    )
}

fn strategy_errors(strategy: &DeploymentStrategy, path: &Path) -> Errs {
    let mut errs = Errs::new();
    match strategy.type_.as_deref().unwrap_or("") {
        "Recreate" => {
            if strategy.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match &strategy.rolling_update {
            None => errs.push(FieldError::required(
                path.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )),
            Some(ru) => errs.extend(rolling_update(ru, &path.child("rollingUpdate"))),
        },
        other => {
            // Upstream reports the whole strategy, printed as a Go struct.
            let rendered = format!(
                "apps.DeploymentStrategy{{Type:{}, RollingUpdate:{}}}",
                quote(other),
                if strategy.rolling_update.is_some() {
                    // Go prints the pointer's address here, which has no equivalent.
                    "(*apps.RollingUpdateDeployment)(set)"
                } else {
                    "(*apps.RollingUpdateDeployment)(nil)"
                }
            );
            let mut e = FieldError::not_supported(path, other, &["Recreate", "RollingUpdate"]);
            e.value = Some(rendered);
            errs.push(e);
        }
    }
    errs
}

fn rolling_update(ru: &RollingUpdateDeployment, path: &Path) -> Errs {
    let mut errs = Errs::new();
    let unavailable = ru.max_unavailable.clone().unwrap_or(IntOrString::Int(0));
    let surge = ru.max_surge.clone().unwrap_or(IntOrString::Int(0));
    let up = path.child("maxUnavailable");
    let sp = path.child("maxSurge");
    errs.extend(positive_int_or_percent(&unavailable, &up));
    errs.extend(positive_int_or_percent(&surge, &sp));
    if int_or_percent_value(&unavailable) == 0 && int_or_percent_value(&surge) == 0 {
        errs.push(FieldError::invalid_raw(
            &up,
            render(&unavailable),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    if percent(&unavailable).is_some_and(|p| p > 100) {
        errs.push(FieldError::invalid_raw(
            &up,
            render(&unavailable),
            "must not be greater than 100%",
        ));
    }
    errs
}

/// An `IntOrString` as the API server prints it (its `String`).
fn render(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// `N%` as N, if the string is a valid percentage.
fn percent(v: &IntOrString) -> Option<i64> {
    match v {
        IntOrString::String(s) => {
            let digits = s.strip_suffix('%')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Too many digits to count is still "more than 100%".
            Some(digits.parse().unwrap_or(i64::MAX))
        }
        IntOrString::Int(_) => None,
    }
}

fn int_or_percent_value(v: &IntOrString) -> i64 {
    match v {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(_) => percent(v).unwrap_or(0),
    }
}

fn positive_int_or_percent(v: &IntOrString, path: &Path) -> Errs {
    match v {
        IntOrString::String(_) if percent(v).is_none() => {
            vec![FieldError::invalid_raw(path, render(v), PERCENT_ERR)]
        }
        IntOrString::String(_) => Vec::new(),
        IntOrString::Int(n) if *n < 0 => {
            vec![FieldError::invalid_num(path, i64::from(*n), NEGATIVE)]
        }
        IntOrString::Int(_) => Vec::new(),
    }
}

fn nonnegative(errs: &mut Errs, v: Option<i64>, path: &Path) {
    if let Some(v) = v
        && v < 0
    {
        errs.push(FieldError::invalid_num(path, v, NEGATIVE));
    }
}

#[cfg(test)]
mod tests;
