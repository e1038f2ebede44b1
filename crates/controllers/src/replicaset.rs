//! The ReplicaSet controller: keeps `replicas` pods named `<replicaset>-<5 chars>`,
//! creating the missing and deleting the surplus, as upstream's does.
//!
//! One rule is podrun's own: a pod that ends `Failed` is replaced only after a
//! back-off (1 s, doubling per failed pod the ReplicaSet still has, at most 5 minutes),
//! so a template that fails at once does not become a hot loop. Upstream leaves that to
//! the kubelet's restart back-off of `restartPolicy: Always` containers; a podrun pod
//! that fails to start at all ends `Failed` instead.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use podrun_model::PodPhase;
use podrun_store::{ApiError, DeleteOptions, ResourceType, object};

use crate::{Action, Ctx, Reconciler, owned_by, split_key, typed, untyped};

/// Failed pods a ReplicaSet keeps (for their logs and for the back-off count); older
/// ones are deleted.
pub const FAILED_KEPT: usize = 5;

/// What the controller needs to know of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    /// `metadata.name`.
    pub name: String,
    /// `status.phase`; `Pending` while none is reported.
    pub phase: PodPhase,
    /// Ready condition True.
    pub ready: bool,
    /// `deletionTimestamp` set.
    pub deleting: bool,
    /// `spec.nodeName` set.
    pub scheduled: bool,
    /// `creationTimestamp`.
    pub created: Option<Timestamp>,
    /// When it failed (its containers' last `finishedAt`), for `Failed` pods.
    pub failed_at: Option<Timestamp>,
}

impl PodState {
    /// Reads a pod.
    pub fn of(pod: &Pod) -> PodState {
        PodState {
            name: pod.metadata.name.clone().unwrap_or_default(),
            phase: PodPhase::of(pod).unwrap_or(PodPhase::Pending),
            ready: is_ready(pod),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            scheduled: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some(),
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
            failed_at: crate::last_finished_at(pod)
                .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0)),
        }
    }

    fn active(&self) -> bool {
        !self.deleting && !self.phase.is_terminal()
    }
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Since when the pod has been Ready, if it is.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
        })
}

/// The ReplicaSet's next step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Pods to create now.
    pub create: i32,
    /// Pods to delete now, by name.
    pub delete: Vec<String>,
    /// When to look again (the failure back-off ends).
    pub retry_at: Option<Timestamp>,
}

/// The back-off before a failed pod is replaced: 1 s, doubling per failed pod, at most
/// 5 minutes.
pub fn replacement_backoff(failed: usize) -> Duration {
    if failed == 0 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(failed - 1).unwrap_or(16).min(16);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(300))
}

/// Decides what a ReplicaSet of `replicas` does with its pods, at `now`.
pub fn decide(replicas: i32, pods: &[PodState], now: Timestamp) -> Decision {
    let mut d = Decision::default();
    let mut active: Vec<&PodState> = pods.iter().filter(|p| p.active()).collect();
    let mut failed: Vec<&PodState> = pods
        .iter()
        .filter(|p| p.phase == PodPhase::Failed && !p.deleting)
        .collect();
    failed.sort_by_key(|p| std::cmp::Reverse(p.failed_at));
    d.delete
        .extend(failed.iter().skip(FAILED_KEPT).map(|p| p.name.clone()));
    let missing = replicas.max(0) - i32::try_from(active.len()).unwrap_or(i32::MAX);
    if missing > 0 {
        let last = failed.first().and_then(|p| p.failed_at);
        let wait = SignedDuration::try_from(replacement_backoff(failed.len())).unwrap_or_default();
        match last.map(|t| t + wait) {
            Some(until) if now < until => d.retry_at = Some(until),
            _ => d.create = missing,
        }
    } else if missing < 0 {
        // As upstream ranks pods for deletion: unscheduled before scheduled, pending
        // before running, not ready before ready, newer before older.
        active.sort_by_key(|p| {
            (
                p.scheduled,
                p.phase != PodPhase::Pending,
                p.ready,
                std::cmp::Reverse(p.created),
            )
        });
        d.delete.extend(
            active
                .iter()
                .take(usize::try_from(-missing).unwrap_or(0))
                .map(|p| p.name.clone()),
        );
    }
    d
}

/// The controller reference an owner puts on what it creates.
pub fn controller_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod for the ReplicaSet, named `<replicaset>-<5 chars>` by the store.
pub fn pod_for(rs: &ReplicaSet) -> Pod {
    let name = rs.metadata.name.clone().unwrap_or_default();
    let template = rs.spec.template.clone().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: None,
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            owner_references: Some(vec![controller_ref("apps/v1", "ReplicaSet", &rs.metadata)]),
            ..meta
        },
        spec: template.spec,
        status: None,
    }
}

/// The ReplicaSet controller.
#[derive(Debug)]
pub struct ReplicaSetController;

impl Reconciler for ReplicaSetController {
    fn name(&self) -> &'static str {
        "replicaset"
    }

    fn reconcile(&self, ctx: &mut Ctx<'_>, key: &str, now: Timestamp) -> Result<Action, ApiError> {
        let Some(obj) = ctx.informers.replica_sets.get(key) else {
            return Ok(Action::Done);
        };
        if object::is_deleting(&obj) {
            return Ok(Action::Done);
        }
        let rs: ReplicaSet = typed(&obj)?;
        let (namespace, name) = split_key(key);
        let pods = owned_by(&ctx.informers.pods, namespace, object::uid(&obj))
            .iter()
            .map(typed::<Pod>)
            .collect::<Result<Vec<_>, _>>()?;
        let replicas = rs.spec.replicas.unwrap_or(1);
        let states: Vec<PodState> = pods.iter().map(PodState::of).collect();
        let d = decide(replicas, &states, now);
        if d.create > 0 {
            let pod = untyped(&pod_for(&rs))?;
            for _ in 0..d.create {
                ctx.create(&ResourceType::PODS, namespace, pod.clone())?;
            }
        }
        for p in &d.delete {
            match ctx.delete(&ResourceType::PODS, namespace, p, &DeleteOptions::default()) {
                Err(e) if e.code() == 404 => {}
                other => drop(other?),
            }
        }
        // Status: the active pods as they are now, plus those just created.
        let min_ready =
            SignedDuration::from_secs(i64::from(rs.spec.min_ready_seconds.unwrap_or(0)));
        let active: Vec<&Pod> = pods
            .iter()
            .filter(|p| PodState::of(p).active() && !d.delete.contains(&PodState::of(p).name))
            .collect();
        let ready = active.iter().filter(|p| is_ready(p)).count();
        let mut next_available: Option<Timestamp> = None;
        let available = active
            .iter()
            .filter_map(|p| ready_since(p))
            .filter(|since| {
                let at = *since + min_ready;
                if at > now {
                    next_available = Some(next_available.map_or(at, |n| n.min(at)));
                }
                at <= now
            })
            .count();
        let n = |c: usize| i32::try_from(c).unwrap_or(i32::MAX);
        let status = ReplicaSetStatus {
            replicas: n(active.len()) + d.create,
            fully_labeled_replicas: Some(n(active.len()) + d.create),
            ready_replicas: Some(n(ready)),
            available_replicas: Some(n(available)),
            observed_generation: rs.metadata.generation,
            conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
            terminating_replicas: Some(n(pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_some())
                .count())),
        };
        if rs.status.as_ref() != Some(&status) {
            let mut updated = obj.clone();
            updated["status"] = untyped(&status)?;
            ctx.update_status(&ResourceType::REPLICA_SETS, namespace, name, updated)?;
        }
        let next = [d.retry_at, next_available].into_iter().flatten().min();
        Ok(next.map_or(Action::Done, |t| {
            Action::RequeueAfter(crate::until(t, now).max(Duration::from_millis(10)))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn pod(name: &str, phase: &str, ready: bool, created: i64) -> PodState {
        PodState {
            name: name.into(),
            phase: phase.parse().expect("a pod phase"),
            ready,
            deleting: false,
            scheduled: true,
            created: Some(t(created)),
            failed_at: (phase == "Failed").then(|| t(created + 1)),
        }
    }

    #[test]
    fn creates_the_missing_and_deletes_the_surplus() {
        let table: &[(i32, Vec<PodState>, i32, Vec<&str>)] = &[
            (3, vec![], 3, vec![]),
            (3, vec![pod("a", "Running", true, 0)], 2, vec![]),
            (1, vec![pod("a", "Running", true, 0)], 0, vec![]),
            // Surplus: not ready before ready, pending before running, newer before older.
            (
                1,
                vec![
                    pod("old", "Running", true, 0),
                    pod("new", "Running", true, 5),
                    pod("pending", "Pending", false, 1),
                ],
                0,
                vec!["pending", "new"],
            ),
            // A pod being deleted is not active: it is replaced at once.
            (
                1,
                vec![PodState {
                    deleting: true,
                    ..pod("gone", "Running", true, 0)
                }],
                1,
                vec![],
            ),
            // A succeeded pod is replaced at once.
            (1, vec![pod("done", "Succeeded", false, 0)], 1, vec![]),
            (0, vec![pod("a", "Running", true, 0)], 0, vec!["a"]),
        ];
        for (replicas, pods, create, delete) in table {
            let d = decide(*replicas, pods, t(100));
            assert_eq!(d.create, *create, "{replicas} {pods:?}");
            assert_eq!(d.delete, *delete, "{replicas} {pods:?}");
        }
    }

    #[test]
    fn a_failed_pod_is_replaced_after_a_back_off() {
        // Failed at t(1): the first replacement waits 1 s.
        let pods = vec![pod("f1", "Failed", false, 0)];
        let d = decide(1, &pods, t(1));
        assert_eq!((d.create, d.retry_at), (0, Some(t(2))));
        assert_eq!(decide(1, &pods, t(2)).create, 1);
        // Three failed pods: 4 s after the last failure.
        let pods = vec![
            pod("f1", "Failed", false, 0),
            pod("f2", "Failed", false, 10),
            pod("f3", "Failed", false, 20),
        ];
        assert_eq!(decide(1, &pods, t(22)).retry_at, Some(t(25)));
        assert_eq!(decide(1, &pods, t(25)).create, 1);
    }

    #[test]
    fn only_the_newest_failed_pods_are_kept() {
        let pods: Vec<PodState> = (0..8)
            .map(|i| pod(&format!("f{i}"), "Failed", false, i * 10))
            .collect();
        let d = decide(0, &pods, t(1000));
        assert_eq!(d.delete, ["f2", "f1", "f0"]);
    }

    #[test]
    fn back_off_doubles_from_one_second_to_five_minutes() {
        let secs: Vec<u64> = (0..=10).map(|n| replacement_backoff(n).as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
    }
}
