//! The Deployment controller: one ReplicaSet per pod template, named
//! `<deployment>-<pod-template-hash>`, and the rollout between them — `RollingUpdate`
//! with `maxSurge` / `maxUnavailable` as upstream's `rolling.go` scales, or
//! `Recreate` — plus the cleanup of old ReplicaSets beyond `revisionHistoryLimit`.
//!
//! [`decide`] is pure: the ReplicaSets' counts in, the new replica counts out.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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

    fn reconcile(&self, ctx: &mut Ctx<'_>, key: &str, _now: Timestamp) -> Result<Action, ApiError> {
        let Some(obj) = ctx.informers.deployments.get(key) else {
            return Ok(Action::Done);
        };
        if object::is_deleting(&obj) {
            return Ok(Action::Done);
        }
        let d: Deployment = typed(&obj)?;
        let (namespace, name) = split_key(key);
        let replicas = d.spec.replicas.unwrap_or(1);
        let hash = pod_template_hash(&d.spec.template);
        let mut owned = owned_by(&ctx.informers.replica_sets, namespace, object::uid(&obj));
        owned.sort_by_key(created);
        let is_new = |rs: &Value| {
            rs.pointer("/metadata/labels/pod-template-hash")
                .and_then(Value::as_str)
                == Some(hash.as_str())
        };
        let old: Vec<RsView> = owned.iter().filter(|rs| !is_new(rs)).map(view).collect();
        let new_obj = owned.iter().find(|rs| is_new(rs)).cloned();
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
        let step = decide(replicas, strategy_of(&d, replicas), &new, &old, limit);
        match &new_obj {
            None => {
                let rs = untyped(&replica_set_for(&d, step.new_replicas))?;
                ctx.create(&ResourceType::REPLICA_SETS, namespace, rs)?;
            }
            Some(rs) if step.new_replicas != new.replicas => {
                let mut rs = rs.clone();
                rs["spec"]["replicas"] = step.new_replicas.into();
                ctx.update(&ResourceType::REPLICA_SETS, namespace, &new.name, rs)?;
            }
            Some(_) => {}
        }
        for (rs_name, count) in &step.scale_old {
            if let Some(rs) = owned.iter().find(|o| object::name(o) == rs_name) {
                let mut rs = rs.clone();
                rs["spec"]["replicas"] = (*count).into();
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
        // Status, from the ReplicaSets' own.
        let sum = |p: &str| -> i32 {
            owned
                .iter()
                .map(|rs| rs.pointer(p).and_then(Value::as_i64).unwrap_or(0))
                .sum::<i64>()
                .try_into()
                .unwrap_or(0)
        };
        let available = sum("/status/availableReplicas");
        let status = DeploymentStatus {
            observed_generation: d.metadata.generation,
            replicas: Some(sum("/status/replicas")),
            updated_replicas: Some(new_obj.as_ref().map_or(0, |rs| view(rs).pods)),
            ready_replicas: Some(sum("/status/readyReplicas")),
            available_replicas: Some(available),
            unavailable_replicas: Some((replicas - available).max(0)),
            terminating_replicas: Some(sum("/status/terminatingReplicas")),
            conditions: d.status.as_ref().and_then(|s| s.conditions.clone()),
            collision_count: d.status.as_ref().and_then(|s| s.collision_count),
        };
        if d.status.as_ref() != Some(&status) {
            let mut updated = obj.clone();
            updated["status"] = untyped(&status)?;
            ctx.update_status(&ResourceType::DEPLOYMENTS, namespace, name, updated)?;
        }
        Ok(Action::Done)
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
}
