//! The Deployment controller: one ReplicaSet per pod template, named
//! `<deployment>-<pod-template-hash>`, and the rollout between them — `RollingUpdate`
//! with `maxSurge` / `maxUnavailable` as upstream's `rolling.go` scales, or
//! `Recreate` — plus the cleanup of old ReplicaSets beyond `revisionHistoryLimit`, the
//! `deployment.kubernetes.io/revision` numbering (a rollback reuses the old ReplicaSet
//! with a new revision) and the `Available` / `Progressing` conditions, as upstream's
//! `pkg/controller/deployment` writes them.
//!
//! [`decide`] is pure: the ReplicaSets' counts in, the new replica counts out.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use podrun_store::{ApiError, DeleteOptions, ResourceType, object};
use serde_json::Value;

use crate::replicaset::controller_ref;
use crate::{Action, Ctx, Reconciler, owned_by, split_key, typed, untyped};

/// The label that ties a ReplicaSet and its pods to one pod template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The `pod-template-hash` label value: FNV-1a (32 bit) of the template, encoded with
/// the alphabet upstream's `SafeEncodeString` uses, so it never looks like a word.
pub fn pod_template_hash(template: &PodTemplateSpec) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// The ReplicaSet a Deployment owns for its current template, with `replicas`.
pub fn replica_set_for(deployment: &Deployment, replicas: i32) -> ReplicaSet {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let spec = &deployment.spec;
    let hash = pod_template_hash(&spec.template);
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: deployment.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(
                "apps/v1",
                "Deployment",
                &deployment.metadata,
            )]),
            ..Default::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    }
}

/// An int-or-percent of `total` (`GetScaledValueFromIntOrPercent`); a malformed
/// percentage counts as 0.
pub fn scaled(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let product = pct * i64::from(total);
            let v = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(v).unwrap_or(0)
        }
    }
}

/// `maxSurge` and `maxUnavailable` as numbers of pods (`resolveFenceposts`): surge
/// rounds up, unavailability down, and both 0 means one unavailable.
pub fn fenceposts(surge: &IntOrString, unavailable: &IntOrString, replicas: i32) -> (i32, i32) {
    let s = scaled(surge, replicas, true);
    let u = scaled(unavailable, replicas, false);
    if s == 0 && u == 0 { (0, 1) } else { (s, u) }
}

/// One ReplicaSet as the rollout sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsView {
    /// `metadata.name`.
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// `status.replicas`: pods that exist.
    pub pods: i32,
}

/// How the Deployment rolls out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// `RollingUpdate` with `maxSurge` and `maxUnavailable` in pods.
    Rolling {
        /// Pods above `replicas` allowed.
        max_surge: i32,
        /// Pods below `replicas` allowed to be unavailable.
        max_unavailable: i32,
    },
    /// `Recreate`: every old pod gone before the new ones start.
    Recreate,
}

/// The rollout's next step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    /// `spec.replicas` of the new ReplicaSet.
    pub new_replicas: i32,
    /// Old ReplicaSets whose `spec.replicas` changes, with the new value.
    pub scale_old: Vec<(String, i32)>,
    /// Old ReplicaSets to delete (beyond `revisionHistoryLimit`, scaled to 0 and empty).
    pub delete_old: Vec<String>,
}

/// Decides the new replica counts. `old` is ordered oldest first.
pub fn decide(
    replicas: i32,
    strategy: Strategy,
    new: &RsView,
    old: &[RsView],
    history_limit: usize,
) -> Rollout {
    let mut out = Rollout {
        new_replicas: new.replicas,
        ..Rollout::default()
    };
    match strategy {
        Strategy::Recreate => {
            for rs in old.iter().filter(|rs| rs.replicas > 0) {
                out.scale_old.push((rs.name.clone(), 0));
            }
            if old.iter().all(|rs| rs.pods == 0) && out.scale_old.is_empty() {
                out.new_replicas = replicas;
            }
        }
        Strategy::Rolling {
            max_surge,
            max_unavailable,
        } => {
            let all: i32 = new.replicas + old.iter().map(|rs| rs.replicas).sum::<i32>();
            // Scale up the new ReplicaSet first (`NewRSNewReplicas`).
            if new.replicas < replicas {
                let max_total = replicas + max_surge;
                if all < max_total {
                    out.new_replicas =
                        new.replicas + (max_total - all).min(replicas - new.replicas);
                }
            } else if new.replicas > replicas {
                out.new_replicas = replicas;
            }
            if out.new_replicas == new.replicas {
                out.scale_old = scale_down_old(replicas, max_unavailable, new, old);
            }
        }
    }
    // Old ReplicaSets scaled to 0 and empty, oldest first, beyond the history limit.
    let empty: Vec<&RsView> = old
        .iter()
        .filter(|rs| rs.replicas == 0 && rs.pods == 0)
        .collect();
    let surplus = empty.len().saturating_sub(history_limit);
    out.delete_old = empty
        .iter()
        .take(surplus)
        .map(|rs| rs.name.clone())
        .collect();
    out
}

/// `reconcileOldReplicaSets`: unhealthy old pods go first, then available ones as far
/// as `minAvailable` allows.
fn scale_down_old(
    replicas: i32,
    max_unavailable: i32,
    new: &RsView,
    old: &[RsView],
) -> Vec<(String, i32)> {
    let old_pods: i32 = old.iter().map(|rs| rs.replicas).sum();
    if old_pods == 0 {
        return Vec::new();
    }
    let all = new.replicas + old_pods;
    let min_available = replicas - max_unavailable;
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut counts: Vec<i32> = old.iter().map(|rs| rs.replicas).collect();
    // `cleanupUnhealthyReplicas`.
    let mut cleaned = 0;
    for (rs, count) in old.iter().zip(counts.iter_mut()) {
        if cleaned >= max_scaled_down {
            break;
        }
        if *count == 0 || *count == rs.available {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(*count - rs.available);
        *count -= down;
        cleaned += down;
    }
    // `scaleDownOldReplicaSetsForRollingUpdate`.
    let available: i32 = new.available + old.iter().map(|rs| rs.available).sum::<i32>();
    if available > min_available {
        let total = (available - min_available).min(max_scaled_down - cleaned);
        let mut done = 0;
        for count in counts.iter_mut() {
            if done >= total {
                break;
            }
            if *count == 0 {
                continue;
            }
            let down = (*count).min(total - done);
            *count -= down;
            done += down;
        }
    }
    old.iter()
        .zip(counts)
        .filter(|(rs, c)| rs.replicas != *c)
        .map(|(rs, c)| (rs.name.clone(), c))
        .collect()
}

/// The annotation that numbers a Deployment's rollouts, on the Deployment and on each
/// of its ReplicaSets (`kubectl rollout history` lists them).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The revisions a ReplicaSet had before a rollback made it the new one again.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's `replicas` when the controller last sized the ReplicaSet.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `replicas + maxSurge` when the controller last sized the ReplicaSet.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// How long the revision history annotation may grow, in characters.
pub const REVISION_HISTORY_LIMIT_CHARS: usize = 2000;

/// Deployment annotations a ReplicaSet does not inherit.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Whether a ReplicaSet's pod template is the Deployment's, its `pod-template-hash`
/// label aside (`EqualIgnoreHash`): a rollback to an old template finds the old
/// ReplicaSet again, whatever hash it was named with.
pub fn template_matches(
    rs_template: &PodTemplateSpec,
    deployment_template: &PodTemplateSpec,
) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
        if let Some(labels) = v
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.remove(POD_TEMPLATE_HASH);
        }
        prune(&mut v);
        v
    };
    strip(rs_template) == strip(deployment_template)
}

/// Drops nulls, empty objects and empty lists, recursively: Go leaves an empty
/// struct or list out of its JSON (`resources: {}` written back by `kubectl rollout
/// undo` is the same template as none), so they do not tell templates apart.
fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => {
            m.retain(|_, v| !prune(v));
            m.is_empty()
        }
        Value::Array(a) => {
            for item in a.iter_mut() {
                prune(item);
            }
            a.is_empty()
        }
        _ => false,
    }
}

/// A ReplicaSet's revision (0 when it has none or it does not parse).
pub fn revision_of(annotations: Option<&BTreeMap<String, String>>) -> i64 {
    annotations
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The new ReplicaSet's annotations (`SetNewReplicaSetAnnotations`): the Deployment's
/// own (but the controller's and `kubectl apply`'s), the revision raised to
/// `new_revision` — the revisions it had kept in `revision-history` when a rollback
/// raises it — and, for a ReplicaSet about to be created, the replica counts.
/// `None` when nothing changes.
pub fn new_rs_annotations(
    deployment: &BTreeMap<String, String>,
    rs: &BTreeMap<String, String>,
    new_revision: i64,
    creating: Option<(i32, i32)>,
) -> Option<BTreeMap<String, String>> {
    let mut out = rs.clone();
    for (k, v) in deployment {
        if !NOT_COPIED.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    let old = rs.get(REVISION);
    let old_revision = match old.map(|r| r.parse::<i64>()) {
        None => 0,
        Some(Ok(r)) => r,
        // A revision that does not parse is left alone, as upstream does.
        Some(Err(_)) => return (out != *rs).then_some(out),
    };
    if old_revision < new_revision {
        out.insert(REVISION.into(), new_revision.to_string());
        if let Some(old) = old {
            let history = rs.get(REVISION_HISTORY).map_or("", String::as_str);
            let mut kept: Vec<&str> = history.split(',').filter(|s| !s.is_empty()).collect();
            let mut len = history.len() + old.len() + 1;
            while len > REVISION_HISTORY_LIMIT_CHARS && !kept.is_empty() {
                len -= kept.remove(0).len() + 1;
            }
            kept.push(old);
            out.insert(REVISION_HISTORY.into(), kept.join(","));
        }
    }
    if let Some((desired, max)) = creating {
        out.insert(DESIRED_REPLICAS.into(), desired.to_string());
        out.insert(MAX_REPLICAS.into(), max.to_string());
    }
    (out != *rs).then_some(out)
}

/// Condition reasons of the Deployment controller (`pkg/controller/deployment/util`).
pub mod reason {
    /// A new ReplicaSet was created for the template.
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    /// The template's ReplicaSet existed already.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// The rollout is making progress.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// The rollout is complete.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// No progress within `progressDeadlineSeconds`.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// At least `replicas - maxUnavailable` pods are available.
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Fewer than that.
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(if status { "True" } else { "False" }.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn get_condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_.as_deref() == Some(type_))
}

/// `SetDeploymentCondition`: the same status and reason changes nothing; the same
/// status keeps its transition time.
fn set_condition(status: &mut DeploymentStatus, mut new: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(old) = conditions.iter().find(|c| c.type_ == new.type_) {
        if old.status == new.status && old.reason == new.reason {
            return;
        }
        if old.status == new.status {
            new.last_transition_time = old.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != new.type_);
    conditions.push(new);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|c| c.type_.as_deref() != Some(type_));
    }
}

/// What the status computation reads of one ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RsCounts {
    /// `spec.replicas`.
    pub spec: i32,
    /// `status.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// `status.terminatingReplicas`.
    pub terminating: Option<i32>,
}

/// The Deployment as its status is computed from.
#[derive(Clone, Debug)]
pub struct StatusInput<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `maxUnavailable` in pods (0 for `Recreate`).
    pub max_unavailable: i32,
    /// `progressDeadlineSeconds` (`None`: no deadline).
    pub progress_deadline: Option<i32>,
    /// The status as stored, with the condition this pass set on finding or creating
    /// the new ReplicaSet.
    pub current: &'a DeploymentStatus,
}

/// `calculateStatus` and `syncRolloutStatus`: the counts of every ReplicaSet, the
/// `Available` condition, and the `Progressing` one — progressing while any count
/// moves, complete when every replica is updated and available, timed out when
/// nothing moved for `progressDeadlineSeconds`. Also how long until the deadline
/// must be looked at again.
pub fn rollout_status(
    d: &StatusInput<'_>,
    all: &[RsCounts],
    new: Option<(&str, &RsCounts)>,
    now: Timestamp,
) -> (DeploymentStatus, Option<std::time::Duration>) {
    let sum = |f: fn(&RsCounts) -> i32| all.iter().map(f).sum::<i32>();
    let available = sum(|r| r.available);
    let terminating = all
        .iter()
        .filter_map(|r| r.terminating)
        .reduce(|a, b| a + b);
    let mut status = DeploymentStatus {
        observed_generation: d.generation,
        replicas: Some(sum(|r| r.replicas)),
        updated_replicas: Some(new.map_or(0, |(_, r)| r.replicas)),
        ready_replicas: Some(sum(|r| r.ready)),
        available_replicas: Some(available),
        unavailable_replicas: Some((sum(|r| r.spec) - available).max(0)),
        terminating_replicas: terminating,
        conditions: d.current.conditions.clone(),
        collision_count: d.current.collision_count,
    };
    if available >= d.replicas - d.max_unavailable {
        set_condition(
            &mut status,
            condition(
                "Available",
                true,
                reason::MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut status,
            condition(
                "Available",
                false,
                reason::MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    let Some(deadline) = d.progress_deadline else {
        remove_condition(&mut status, "Progressing");
        return (status, None);
    };
    let name = |what: &str| match new {
        Some((rs, _)) => format!("ReplicaSet \"{rs}\" {what}"),
        None => format!("Deployment \"{}\" {what}", d.name),
    };
    let current = get_condition(d.current, "Progressing");
    let complete_before = status.replicas == status.updated_replicas
        && current.and_then(|c| c.reason.as_deref()) == Some(reason::NEW_RS_AVAILABLE);
    let old = d.current;
    let n = |v: Option<i32>| v.unwrap_or(0);
    let complete = n(status.updated_replicas) == d.replicas
        && n(status.replicas) == d.replicas
        && n(status.available_replicas) == d.replicas
        && status.observed_generation >= d.generation;
    let progressing = n(status.updated_replicas) > n(old.updated_replicas)
        || n(status.replicas) - n(status.updated_replicas)
            < n(old.replicas) - n(old.updated_replicas)
        || n(status.ready_replicas) > n(old.ready_replicas)
        || n(status.available_replicas) > n(old.available_replicas);
    if !complete_before {
        if complete {
            set_condition(
                &mut status,
                condition(
                    "Progressing",
                    true,
                    reason::NEW_RS_AVAILABLE,
                    name("has successfully progressed."),
                    now,
                ),
            );
        } else if progressing {
            let mut c = condition(
                "Progressing",
                true,
                reason::RS_UPDATED,
                name("is progressing."),
                now,
            );
            if let Some(cur) = current
                && cur.status.as_deref() == Some("True")
            {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            remove_condition(&mut status, "Progressing");
            set_condition(&mut status, c);
        } else if timed_out(get_condition(&status, "Progressing"), deadline, now) {
            set_condition(
                &mut status,
                condition(
                    "Progressing",
                    false,
                    reason::TIMED_OUT,
                    name("has timed out progressing."),
                    now,
                ),
            );
        }
    }
    // Look again when the deadline of a rollout still under way passes.
    let requeue = match get_condition(&status, "Progressing") {
        Some(c)
            if !complete
                && c.reason.as_deref() != Some(reason::TIMED_OUT)
                && c.reason.as_deref() != Some(reason::NEW_RS_AVAILABLE) =>
        {
            c.last_update_time.as_ref().map(|t| {
                let at = t.0 + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(deadline));
                crate::until(at, now) + std::time::Duration::from_millis(100)
            })
        }
        _ => None,
    };
    (status, requeue)
}

/// `DeploymentTimedOut`.
fn timed_out(c: Option<&DeploymentCondition>, deadline: i32, now: Timestamp) -> bool {
    let Some(c) = c else { return false };
    match c.reason.as_deref() {
        Some(reason::NEW_RS_AVAILABLE) => false,
        Some(reason::TIMED_OUT) => true,
        _ => c.last_update_time.as_ref().is_some_and(|t| {
            t.0 + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(deadline)) < now
        }),
    }
}

fn view(rs: &Value) -> RsView {
    let n = |p: &str| rs.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let i = |v: i64| i32::try_from(v).unwrap_or(0);
    RsView {
        name: object::name(rs).to_string(),
        replicas: i(rs
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)),
        available: i(n("/status/availableReplicas")),
        pods: i(n("/status/replicas")),
    }
}

fn strategy_of(d: &Deployment, replicas: i32) -> Strategy {
    let strategy = d.spec.strategy.as_ref();
    if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return Strategy::Recreate;
    }
    let quarter = IntOrString::String("25%".into());
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let (max_surge, max_unavailable) = fenceposts(
        rolling
            .and_then(|r| r.max_surge.as_ref())
            .unwrap_or(&quarter),
        rolling
            .and_then(|r| r.max_unavailable.as_ref())
            .unwrap_or(&quarter),
        replicas,
    );
    Strategy::Rolling {
        max_surge,
        max_unavailable,
    }
}

fn created(o: &Value) -> String {
    object::meta_str(o, "creationTimestamp")
        .unwrap_or("")
        .to_string()
}

/// The Deployment controller.
#[derive(Debug)]
pub struct DeploymentController;

impl Reconciler for DeploymentController {
    fn name(&self) -> &'static str {
        "deployment"
    }

    fn reconcile(&self, ctx: &mut Ctx<'_>, key: &str, now: Timestamp) -> Result<Action, ApiError> {
        let Some(mut obj) = ctx.informers.deployments.get(key) else {
            return Ok(Action::Done);
        };
        if object::is_deleting(&obj) {
            return Ok(Action::Done);
        }
        let d: Deployment = typed(&obj)?;
        let (namespace, name) = split_key(key);
        let replicas = d.spec.replicas.unwrap_or(1);
        let strategy = strategy_of(&d, replicas);
        let max_surge = match strategy {
            Strategy::Rolling { max_surge, .. } => max_surge,
            Strategy::Recreate => 0,
        };
        let max_unavailable = match strategy {
            Strategy::Rolling {
                max_unavailable, ..
            } if replicas > 0 => max_unavailable.min(replicas),
            _ => 0,
        };
        let mut owned = owned_by(&ctx.informers.replica_sets, namespace, object::uid(&obj));
        owned.sort_by_key(created);
        // The oldest ReplicaSet with the template is the new one (a rollback reuses it).
        let hash = pod_template_hash(&d.spec.template);
        let new_index = owned
            .iter()
            .position(|rs| {
                rs.pointer("/spec/template")
                    .and_then(|t| typed::<PodTemplateSpec>(t).ok())
                    .is_some_and(|t| template_matches(&t, &d.spec.template))
            })
            // A template the store wrote back differently still has its hash.
            .or_else(|| {
                owned.iter().position(|rs| {
                    rs.pointer("/metadata/labels/pod-template-hash")
                        .and_then(Value::as_str)
                        == Some(hash.as_str())
                })
            });
        let new_obj = new_index.map(|i| owned[i].clone());
        let old_objs: Vec<&Value> = owned
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_index)
            .map(|(_, rs)| rs)
            .collect();
        let old: Vec<RsView> = old_objs.iter().map(|rs| view(rs)).collect();
        let new_revision = old_objs
            .iter()
            .map(|rs| {
                typed::<ObjectMeta>(&rs["metadata"])
                    .map_or(0, |m| revision_of(m.annotations.as_ref()))
            })
            .max()
            .unwrap_or(0)
            + 1;
        let new = new_obj.as_ref().map_or_else(
            || RsView {
                name: format!("{name}-{hash}"),
                replicas: 0,
                available: 0,
                pods: 0,
            },
            view,
        );
        let limit = usize::try_from(d.spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
        let step = decide(replicas, strategy, &new, &old, limit);
        let d_annotations = d.metadata.annotations.clone().unwrap_or_default();
        let progress_deadline = match d.spec.progress_deadline_seconds {
            Some(i32::MAX) => None,
            Some(s) => Some(s),
            None => Some(600),
        };
        let mut current = d.status.clone().unwrap_or_default();
        let new_rs_revision;
        match &new_obj {
            None => {
                let mut rs = replica_set_for(&d, step.new_replicas);
                let annotations = new_rs_annotations(
                    &d_annotations,
                    &BTreeMap::new(),
                    new_revision,
                    Some((replicas, replicas + max_surge)),
                )
                .unwrap_or_default();
                new_rs_revision = annotations.get(REVISION).cloned();
                rs.metadata.annotations = Some(annotations);
                ctx.create(&ResourceType::REPLICA_SETS, namespace, untyped(&rs)?)?;
                if progress_deadline.is_some() {
                    set_condition(
                        &mut current,
                        condition(
                            "Progressing",
                            true,
                            reason::NEW_RS_CREATED,
                            format!("Created new replica set \"{}\"", new.name),
                            now,
                        ),
                    );
                }
            }
            Some(rs) => {
                let meta: ObjectMeta = typed(&rs["metadata"])?;
                let have = meta.annotations.unwrap_or_default();
                let scaled = step.new_replicas != new.replicas;
                let mut annotations = new_rs_annotations(&d_annotations, &have, new_revision, None);
                if scaled {
                    let a = annotations.get_or_insert_with(|| have.clone());
                    a.insert(DESIRED_REPLICAS.into(), replicas.to_string());
                    a.insert(MAX_REPLICAS.into(), (replicas + max_surge).to_string());
                }
                new_rs_revision = annotations.as_ref().unwrap_or(&have).get(REVISION).cloned();
                if scaled || annotations.is_some() {
                    let mut rs = rs.clone();
                    rs["spec"]["replicas"] = step.new_replicas.into();
                    if let Some(a) = annotations {
                        rs["metadata"]["annotations"] = untyped(&a)?;
                    }
                    ctx.update(&ResourceType::REPLICA_SETS, namespace, &new.name, rs)?;
                }
                if progress_deadline.is_some() && get_condition(&current, "Progressing").is_none() {
                    set_condition(
                        &mut current,
                        condition(
                            "Progressing",
                            true,
                            reason::FOUND_NEW_RS,
                            format!("Found new replica set \"{}\"", new.name),
                            now,
                        ),
                    );
                }
            }
        }
        for (rs_name, count) in &step.scale_old {
            if let Some(rs) = owned.iter().find(|o| object::name(o) == rs_name) {
                let mut rs = rs.clone();
                rs["spec"]["replicas"] = (*count).into();
                let annotations = rs["metadata"].as_object_mut().map(|m| {
                    m.entry("annotations")
                        .or_insert_with(|| serde_json::json!({}))
                });
                if let Some(a) = annotations.and_then(Value::as_object_mut) {
                    a.insert(DESIRED_REPLICAS.into(), replicas.to_string().into());
                    a.insert(
                        MAX_REPLICAS.into(),
                        (replicas + max_surge).to_string().into(),
                    );
                }
                ctx.update(&ResourceType::REPLICA_SETS, namespace, rs_name, rs)?;
            }
        }
        for rs_name in &step.delete_old {
            ctx.delete(
                &ResourceType::REPLICA_SETS,
                namespace,
                rs_name,
                &DeleteOptions::default(),
            )?;
        }
        // The Deployment carries its new ReplicaSet's revision.
        if let Some(revision) = new_rs_revision
            && d_annotations.get(REVISION) != Some(&revision)
        {
            let mut updated = obj.clone();
            updated["metadata"]
                .as_object_mut()
                .map(|m| {
                    m.entry("annotations")
                        .or_insert_with(|| serde_json::json!({}))
                })
                .and_then(Value::as_object_mut)
                .map(|a| a.insert(REVISION.into(), revision.into()));
            obj = ctx.update(&ResourceType::DEPLOYMENTS, namespace, name, updated)?;
        }
        // Status, from the ReplicaSets' own.
        let all: Vec<RsCounts> = owned.iter().map(counts).collect();
        let new_counts = new_obj.as_ref().map(counts);
        let input = StatusInput {
            name,
            generation: d.metadata.generation,
            replicas,
            max_unavailable,
            progress_deadline,
            current: &current,
        };
        let (status, requeue) = rollout_status(
            &input,
            &all,
            new_counts.as_ref().map(|c| (new.name.as_str(), c)),
            now,
        );
        if d.status.as_ref() != Some(&status) {
            let mut updated = obj.clone();
            updated["status"] = untyped(&status)?;
            ctx.update_status(&ResourceType::DEPLOYMENTS, namespace, name, updated)?;
        }
        Ok(requeue.map_or(Action::Done, Action::RequeueAfter))
    }
}

fn counts(rs: &Value) -> RsCounts {
    let n = |p: &str| {
        rs.pointer(p)
            .and_then(Value::as_i64)
            .and_then(|v| i32::try_from(v).ok())
    };
    RsCounts {
        spec: n("/spec/replicas").unwrap_or(1),
        replicas: n("/status/replicas").unwrap_or(0),
        ready: n("/status/readyReplicas").unwrap_or(0),
        available: n("/status/availableReplicas").unwrap_or(0),
        terminating: n("/status/terminatingReplicas"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, replicas: i32, available: i32) -> RsView {
        RsView {
            name: name.into(),
            replicas,
            available,
            pods: replicas,
        }
    }

    const ROLLING: Strategy = Strategy::Rolling {
        max_surge: 1,
        max_unavailable: 0,
    };

    #[test]
    fn template_hash_is_stable_and_uses_the_safe_alphabet() {
        let t = PodTemplateSpec::default();
        let h = pod_template_hash(&t);
        assert_eq!(h, pod_template_hash(&t));
        assert!(
            h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{h}"
        );
        let mut other = t.clone();
        other.metadata = Some(ObjectMeta {
            name: Some("x".into()),
            ..Default::default()
        });
        assert_ne!(h, pod_template_hash(&other));
    }

    #[test]
    fn replica_set_is_named_after_the_deployment_and_hash() {
        let d = Deployment {
            metadata: ObjectMeta {
                name: Some("sleep".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let rs = replica_set_for(&d, 1);
        let hash = pod_template_hash(&d.spec.template);
        assert_eq!(
            rs.metadata.name.as_deref(),
            Some(format!("sleep-{hash}").as_str())
        );
        assert_eq!(rs.spec.replicas, Some(1));
        let labels = rs
            .spec
            .template
            .and_then(|t| t.metadata)
            .and_then(|m| m.labels);
        assert_eq!(labels.unwrap()[POD_TEMPLATE_HASH], hash);
        assert_eq!(
            rs.spec.selector.match_labels.unwrap()[POD_TEMPLATE_HASH],
            hash
        );
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailability_down() {
        let p = |s: &str| IntOrString::String(s.into());
        let table = [
            (p("25%"), p("25%"), 10, (3, 2)),
            (p("25%"), p("25%"), 1, (1, 0)),
            (IntOrString::Int(0), IntOrString::Int(0), 3, (0, 1)),
            (p("0%"), p("0%"), 3, (0, 1)),
            (IntOrString::Int(2), p("50%"), 5, (2, 2)),
        ];
        for (s, u, n, want) in table {
            assert_eq!(fenceposts(&s, &u, n), want, "{s:?} {u:?} {n}");
        }
    }

    #[test]
    fn a_first_rollout_creates_all_replicas() {
        let step = decide(3, ROLLING, &rs("new", 0, 0), &[], 10);
        assert_eq!(step.new_replicas, 3);
        assert!(step.scale_old.is_empty());
    }

    #[test]
    fn rolling_update_surges_then_scales_old_down_as_new_pods_become_available() {
        // 3 replicas, maxSurge 1, maxUnavailable 0.
        let old = [rs("old", 3, 3)];
        // Step 1: the new ReplicaSet may go to 1 (4 pods in all).
        let step = decide(3, ROLLING, &rs("new", 0, 0), &old, 10);
        assert_eq!((step.new_replicas, step.scale_old.clone()), (1, vec![]));
        // Step 2: the new pod is not available yet: nothing moves.
        let step = decide(3, ROLLING, &rs("new", 1, 0), &old, 10);
        assert_eq!((step.new_replicas, step.scale_old.clone()), (1, vec![]));
        // Step 3: it is available: one old pod goes.
        let step = decide(3, ROLLING, &rs("new", 1, 1), &old, 10);
        assert_eq!(step.scale_old, [("old".to_string(), 2)]);
        // Step 4: room again for one more new pod.
        let step = decide(3, ROLLING, &rs("new", 1, 1), &[rs("old", 2, 2)], 10);
        assert_eq!(step.new_replicas, 2);
    }

    #[test]
    fn unhealthy_old_pods_are_scaled_down_first() {
        let strategy = Strategy::Rolling {
            max_surge: 0,
            max_unavailable: 1,
        };
        // The oldest ReplicaSet's pods are all unavailable: they go before healthy ones.
        let old = [rs("oldest", 2, 0), rs("older", 2, 2)];
        let step = decide(4, strategy, &rs("new", 0, 0), &old, 10);
        assert_eq!(step.new_replicas, 0);
        assert_eq!(step.scale_old, [("oldest".to_string(), 1)]);
    }

    #[test]
    fn recreate_scales_old_to_zero_and_starts_new_once_old_pods_are_gone() {
        let step = decide(
            2,
            Strategy::Recreate,
            &rs("new", 0, 0),
            &[rs("old", 2, 2)],
            10,
        );
        assert_eq!(
            (step.new_replicas, step.scale_old),
            (0, vec![("old".into(), 0)])
        );
        let waiting = RsView {
            pods: 1,
            ..rs("old", 0, 0)
        };
        let step = decide(2, Strategy::Recreate, &rs("new", 0, 0), &[waiting], 10);
        assert_eq!(step.new_replicas, 0);
        let step = decide(
            2,
            Strategy::Recreate,
            &rs("new", 0, 0),
            &[rs("old", 0, 0)],
            10,
        );
        assert_eq!(step.new_replicas, 2);
    }

    #[test]
    fn scaling_the_deployment_down_scales_the_new_replica_set() {
        let step = decide(1, ROLLING, &rs("new", 3, 3), &[], 10);
        assert_eq!(step.new_replicas, 1);
    }

    #[test]
    fn empty_old_replica_sets_beyond_the_history_limit_are_deleted_oldest_first() {
        let old = [rs("a", 0, 0), rs("b", 0, 0), rs("c", 0, 0)];
        let step = decide(1, ROLLING, &rs("new", 1, 1), &old, 1);
        assert_eq!(step.delete_old, ["a", "b"]);
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn a_new_replica_set_gets_the_next_revision_the_deployments_annotations_and_its_sizes() {
        let d = map(&[
            ("kubernetes.io/change-cause", "kubectl set image"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            (REVISION, "4"),
        ]);
        let got = new_rs_annotations(&d, &BTreeMap::new(), 5, Some((3, 4))).expect("changed");
        assert_eq!(
            got,
            map(&[
                ("kubernetes.io/change-cause", "kubectl set image"),
                (REVISION, "5"),
                (DESIRED_REPLICAS, "3"),
                (MAX_REPLICAS, "4"),
            ])
        );
        // Nothing to change: nothing written.
        assert_eq!(new_rs_annotations(&d, &got, 5, None), None);
        // A revision above the one computed (old ReplicaSets deleted since) stays.
        assert_eq!(new_rs_annotations(&d, &got, 2, None), None);
    }

    #[test]
    fn a_rollback_raises_the_old_replica_sets_revision_and_keeps_its_history() {
        let rs = map(&[(REVISION, "1")]);
        let got = new_rs_annotations(&BTreeMap::new(), &rs, 3, None).expect("changed");
        assert_eq!(got, map(&[(REVISION, "3"), (REVISION_HISTORY, "1")]));
        let again = new_rs_annotations(&BTreeMap::new(), &got, 5, None).expect("changed");
        assert_eq!(again, map(&[(REVISION, "5"), (REVISION_HISTORY, "1,3")]));
        // The history is capped in characters, oldest first out.
        let long = (1..=600)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let rs = map(&[(REVISION, "601"), (REVISION_HISTORY, &long)]);
        let got = new_rs_annotations(&BTreeMap::new(), &rs, 602, None).expect("changed");
        let history = &got[REVISION_HISTORY];
        assert!(
            history.len() <= REVISION_HISTORY_LIMIT_CHARS,
            "{}",
            history.len()
        );
        assert!(history.ends_with(",600,601"), "{history}");
        assert!(!history.starts_with("1,"), "{history}");
    }

    #[test]
    fn the_template_matches_whatever_its_hash_label() {
        let t = |v: serde_json::Value| -> PodTemplateSpec {
            serde_json::from_value(v).expect("template")
        };
        let d = serde_json::json!({"metadata": {"labels": {"app": "web"}},
                                   "spec": {"containers": [{"name": "c", "image": "a"}]}});
        let mut rs = d.clone();
        rs["metadata"]["labels"][POD_TEMPLATE_HASH] = "abc".into();
        assert!(template_matches(&t(rs.clone()), &t(d.clone())));
        // The same template written back with empty fields (`kubectl rollout undo`
        // sends `resources: {}`) still matches.
        let mut written = rs.clone();
        written["spec"]["containers"][0]["resources"] = serde_json::json!({});
        written["spec"]["volumes"] = serde_json::json!([]);
        written["metadata"]["annotations"] = serde_json::Value::Null;
        assert!(template_matches(&t(written), &t(d.clone())));
        rs["spec"]["containers"][0]["image"] = "b".into();
        assert!(!template_matches(&t(rs), &t(d)));
        let bare = serde_json::json!({"metadata": {"labels": {POD_TEMPLATE_HASH: "x"}}});
        assert!(template_matches(
            &t(bare),
            &t(serde_json::json!({"metadata": {}}))
        ));
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("time")
    }

    fn counts(spec: i32, replicas: i32, available: i32) -> RsCounts {
        RsCounts {
            spec,
            replicas,
            ready: available,
            available,
            terminating: None,
        }
    }

    fn cond<'a>(s: &'a DeploymentStatus, t: &str) -> (&'a str, &'a str, &'a str) {
        let c = get_condition(s, t).expect(t);
        (
            c.status.as_deref().unwrap_or(""),
            c.reason.as_deref().unwrap_or(""),
            c.message.as_deref().unwrap_or(""),
        )
    }

    #[test]
    fn rollout_status_walks_created_progressing_available_and_complete() {
        let mut current = DeploymentStatus::default();
        set_condition(
            &mut current,
            condition(
                "Progressing",
                true,
                reason::NEW_RS_CREATED,
                "Created new replica set \"web-abc\"".into(),
                at(0),
            ),
        );
        let input = |current| StatusInput {
            name: "web",
            generation: Some(2),
            replicas: 2,
            max_unavailable: 0,
            progress_deadline: Some(600),
            current,
        };
        // The new ReplicaSet has one pod, not yet available; the old one still has two.
        let new = counts(1, 1, 0);
        let all = [counts(2, 2, 2), new.clone()];
        let (s, requeue) = rollout_status(&input(&current), &all, Some(("web-abc", &new)), at(1));
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas
            ),
            (Some(3), Some(1), Some(2), Some(2))
        );
        assert_eq!(s.unavailable_replicas, Some(1));
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(
            cond(&s, "Available"),
            (
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability."
            )
        );
        assert_eq!(
            cond(&s, "Progressing"),
            (
                "True",
                "ReplicaSetUpdated",
                "ReplicaSet \"web-abc\" is progressing."
            )
        );
        let requeue = requeue.expect("deadline requeue");
        assert!(requeue > std::time::Duration::from_secs(598), "{requeue:?}");
        // All replaced and available: complete.
        let new = counts(2, 2, 2);
        let all = [counts(0, 0, 0), new.clone()];
        let (done, requeue) = rollout_status(&input(&s), &all, Some(("web-abc", &new)), at(5));
        assert_eq!(
            cond(&done, "Progressing"),
            (
                "True",
                "NewReplicaSetAvailable",
                "ReplicaSet \"web-abc\" has successfully progressed."
            )
        );
        assert_eq!(requeue, None);
        // The transition time of Progressing stayed that of its first True.
        let first =
            get_condition(&current, "Progressing").and_then(|c| c.last_transition_time.clone());
        assert_eq!(
            get_condition(&done, "Progressing").and_then(|c| c.last_transition_time.clone()),
            first
        );
        // Once complete, a pod lost later does not reopen the rollout.
        let new = counts(2, 2, 1);
        let (later, _) = rollout_status(
            &input(&done),
            std::slice::from_ref(&new),
            Some(("web-abc", &new)),
            at(9),
        );
        assert_eq!(cond(&later, "Progressing").1, "NewReplicaSetAvailable");
        assert_eq!(
            cond(&later, "Available"),
            (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability."
            )
        );
    }

    #[test]
    fn a_rollout_without_progress_past_its_deadline_times_out() {
        let mut current = DeploymentStatus {
            replicas: Some(2),
            updated_replicas: Some(1),
            available_replicas: Some(1),
            ready_replicas: Some(1),
            ..DeploymentStatus::default()
        };
        set_condition(
            &mut current,
            condition("Progressing", true, reason::RS_UPDATED, "x".into(), at(0)),
        );
        let input = StatusInput {
            name: "web",
            generation: Some(1),
            replicas: 1,
            max_unavailable: 0,
            progress_deadline: Some(10),
            current: &current,
        };
        let new = counts(1, 1, 0);
        let all = [counts(1, 1, 1), new.clone()];
        let (s, requeue) = rollout_status(&input, &all, Some(("web-new", &new)), at(5));
        assert_eq!(cond(&s, "Progressing").1, "ReplicaSetUpdated");
        assert!(requeue.is_some_and(|d| d <= std::time::Duration::from_secs(6)));
        let (s, requeue) = rollout_status(&input, &all, Some(("web-new", &new)), at(11));
        assert_eq!(
            cond(&s, "Progressing"),
            (
                "False",
                "ProgressDeadlineExceeded",
                "ReplicaSet \"web-new\" has timed out progressing."
            )
        );
        assert_eq!(requeue, None);
        // No deadline: no Progressing condition at all.
        let none = StatusInput {
            progress_deadline: None,
            ..input
        };
        let (s, _) = rollout_status(&none, &all, Some(("web-new", &new)), at(11));
        assert!(get_condition(&s, "Progressing").is_none());
    }
}
