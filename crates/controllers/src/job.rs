//! The Job controller: creates a Job's pods from its template and tracks them to
//! `Complete` or `Failed`, as upstream's job controller does for NonIndexed Jobs.
//!
//! [`decide`] is pure (counts and `now` in, a [`Decision`] out); [`JobController`]
//! gathers the counts from the pod cache and carries the decision out. A Job that is
//! gone (deleted from anywhere) is never written again: its status is only ever
//! changed through the status subresource, which answers 404 for it, and the garbage
//! collector deletes its pods.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use podrun_model::PodPhase;
use podrun_store::{ApiError, DeleteOptions, ResourceType, object};

use crate::{Action, Ctx, Reconciler, owned_by, split_key, typed, untyped};

/// What the controller knows about a Job's pods at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pods not yet finished.
    pub active: i32,
    /// Active pods whose Ready condition is True.
    pub ready: i32,
    /// Pods that ended `Succeeded`.
    pub succeeded: i32,
    /// Pods that ended `Failed`.
    pub failed: i32,
    /// Container restarts in active pods (counted against `backoffLimit` for
    /// `restartPolicy: OnFailure`, as upstream does).
    pub restarts: i32,
    /// When the last pod failure happened.
    pub last_failure: Option<Timestamp>,
}

/// What the controller must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Create this many pods now.
    Create(i32),
    /// Wait until this moment (pod-failure backoff or the active deadline), or an event.
    WaitUntil(Option<Timestamp>),
    /// The Job is complete.
    Complete,
    /// The Job failed with this condition reason and message; active pods are deleted.
    Fail {
        /// `BackoffLimitExceeded` or `DeadlineExceeded`.
        reason: &'static str,
        /// The upstream message.
        message: &'static str,
    },
}

/// The pod-failure backoff: 10s doubling per failure, capped at 6 minutes.
pub fn failure_backoff(failed: i32) -> Duration {
    if failed <= 0 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(failed - 1).unwrap_or(0).min(16);
    Duration::from_secs(10u64.saturating_mul(1 << exp)).min(Duration::from_secs(360))
}

/// Decides the Job's next step. `start` is the Job's `status.startTime`.
pub fn decide(job: &Job, counts: &Counts, start: Timestamp, now: Timestamp) -> Decision {
    let spec = job.spec.as_ref();
    let completions = spec.and_then(|s| s.completions).unwrap_or(1);
    let parallelism = spec.and_then(|s| s.parallelism).unwrap_or(1);
    let backoff_limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6);
    let deadline = spec
        .and_then(|s| s.active_deadline_seconds)
        .map(|s| start + SignedDuration::from_secs(s));
    if counts.succeeded >= completions {
        return Decision::Complete;
    }
    if counts.failed + counts.restarts > backoff_limit {
        return Decision::Fail {
            reason: "BackoffLimitExceeded",
            message: "Job has reached the specified backoff limit",
        };
    }
    if deadline.is_some_and(|d| now >= d) {
        return Decision::Fail {
            reason: "DeadlineExceeded",
            message: "Job was active longer than specified deadline",
        };
    }
    let wanted = parallelism.min(completions - counts.succeeded);
    if counts.active < wanted {
        let backoff_until = counts.last_failure.map(|t| {
            t + SignedDuration::try_from(failure_backoff(counts.failed)).unwrap_or_default()
        });
        match backoff_until {
            Some(until) if now < until => {
                return Decision::WaitUntil(Some(deadline.map_or(until, |d| d.min(until))));
            }
            _ => return Decision::Create(wanted - counts.active),
        }
    }
    Decision::WaitUntil(deadline)
}

/// The labels upstream's Job strategy puts on a Job and its pods.
pub fn job_labels(name: &str, uid: &str) -> [(&'static str, String); 4] {
    [
        ("batch.kubernetes.io/controller-uid", uid.to_string()),
        ("batch.kubernetes.io/job-name", name.to_string()),
        ("controller-uid", uid.to_string()),
        ("job-name", name.to_string()),
    ]
}

/// A pod for the Job, named `<job>-<5 chars>` by the store (`generateName`), with the
/// upstream labels and the Job as its controller.
pub fn pod_for(job: &Job) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in job_labels(&name, &uid) {
        labels.insert(k.into(), v);
    }
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("batch.kubernetes.io/job-tracking".into(), String::new());
    Pod {
        metadata: ObjectMeta {
            name: None,
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name,
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..meta
        },
        spec: template.spec,
        status: None,
    }
}

fn condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The pod's phase; one not yet reported is `Pending`.
fn phase(pod: &Pod) -> PodPhase {
    PodPhase::of(pod).unwrap_or(PodPhase::Pending)
}

/// When a failed pod ended: its containers' latest `finishedAt`, else when it was
/// marked for deletion, else its creation.
fn failed_at(pod: &Pod) -> Option<Timestamp> {
    crate::last_finished_at(pod)
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Counts a Job's pods. Finished pods count by phase; a pod being deleted that has not
/// finished is terminating, neither active nor finished. `recorded` is the Job's
/// status: counts never go below what it already recorded (a finished pod that was
/// removed since still counts).
pub fn count(
    pods: &[Pod],
    recorded: Option<&k8s_openapi::api::batch::v1::JobStatus>,
) -> (Counts, i32) {
    let mut c = Counts::default();
    let mut terminating = 0;
    for pod in pods {
        let status = pod.status.as_ref();
        match phase(pod) {
            PodPhase::Succeeded => c.succeeded += 1,
            PodPhase::Failed => {
                c.failed += 1;
                c.last_failure = c.last_failure.max(failed_at(pod));
            }
            _ if pod.metadata.deletion_timestamp.is_some() => terminating += 1,
            _ => {
                c.active += 1;
                if crate::replicaset::is_ready(pod) {
                    c.ready += 1;
                }
                let on_failure = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref())
                    == Some("OnFailure");
                if on_failure {
                    c.restarts += status
                        .and_then(|s| s.container_statuses.as_ref())
                        .into_iter()
                        .flatten()
                        .map(|cs| cs.restart_count)
                        .sum::<i32>();
                }
            }
        }
    }
    if let Some(s) = recorded {
        c.succeeded = c.succeeded.max(s.succeeded.unwrap_or(0));
        c.failed = c.failed.max(s.failed.unwrap_or(0));
    }
    (c, terminating)
}

/// Whether the Job has its `Complete` or `Failed` condition.
pub fn finished(job: &Job) -> bool {
    podrun_model::job_has_condition(job, "Complete")
        || podrun_model::job_has_condition(job, "Failed")
}

/// The Job controller.
#[derive(Debug)]
pub struct JobController;

impl Reconciler for JobController {
    fn name(&self) -> &'static str {
        "job"
    }

    fn reconcile(&self, ctx: &mut Ctx<'_>, key: &str, now: Timestamp) -> Result<Action, ApiError> {
        let Some(obj) = ctx.informers.jobs.get(key) else {
            return Ok(Action::Done);
        };
        if object::is_deleting(&obj) {
            return Ok(Action::Done);
        }
        let job: Job = typed(&obj)?;
        if finished(&job) || job.spec.as_ref().is_some_and(|s| s.suspend == Some(true)) {
            return Ok(Action::Done);
        }
        let (namespace, name) = split_key(key);
        let uid = job.metadata.uid.clone().unwrap_or_default();
        // The labels upstream's Job strategy puts on a new Job, once its uid is known.
        let labels = job.metadata.labels.clone().unwrap_or_default();
        if job_labels(name, &uid)
            .iter()
            .any(|(k, _)| !labels.contains_key(*k))
        {
            let mut labelled = obj.clone();
            for (k, v) in job_labels(name, &uid) {
                labelled["metadata"]["labels"][k] = v.into();
            }
            ctx.update(&ResourceType::JOBS, namespace, name, labelled)?;
            return Ok(Action::RequeueAfter(Duration::ZERO));
        }
        let pods = owned_by(&ctx.informers.pods, namespace, &uid)
            .iter()
            .map(typed::<Pod>)
            .collect::<Result<Vec<_>, _>>()?;
        let mut status = job.status.clone().unwrap_or_default();
        let start = status.start_time.as_ref().map_or(now, |t| t.0);
        status.start_time = Some(Time(start));
        let (mut counts, terminating) = count(&pods, job.status.as_ref());
        let mut action = Action::Done;
        match decide(&job, &counts, start, now) {
            Decision::Create(n) => {
                let pod = untyped(&pod_for(&job))?;
                for _ in 0..n {
                    ctx.create(&ResourceType::PODS, namespace, pod.clone())?;
                    counts.active += 1;
                }
            }
            Decision::WaitUntil(Some(at)) => action = Action::RequeueAfter(crate::until(at, now)),
            Decision::WaitUntil(None) => {}
            Decision::Fail { reason, message } => {
                let running: Vec<&Pod> = pods.iter().filter(|p| !phase(p).is_terminal()).collect();
                for p in &running {
                    if p.metadata.deletion_timestamp.is_none() {
                        let name = p.metadata.name.as_deref().unwrap_or_default();
                        ctx.delete(
                            &ResourceType::PODS,
                            namespace,
                            name,
                            &DeleteOptions::default(),
                        )?;
                    }
                }
                // The Job is Failed once the pods it stopped are gone or finished.
                if running.is_empty() {
                    status.conditions = Some(vec![
                        condition("FailureTarget", reason, message, now),
                        condition("Failed", reason, message, now),
                    ]);
                }
                counts.active = 0;
            }
            Decision::Complete => {
                let message = "Reached expected number of succeeded pods";
                status.conditions = Some(vec![
                    condition("SuccessCriteriaMet", "CompletionsReached", message, now),
                    condition("Complete", "CompletionsReached", message, now),
                ]);
                status.completion_time = Some(Time(now));
            }
        }
        status.active = Some(counts.active);
        status.ready = Some(counts.ready);
        status.terminating = Some(terminating);
        status.succeeded = (counts.succeeded > 0).then_some(counts.succeeded);
        status.failed = (counts.failed > 0).then_some(counts.failed);
        status
            .uncounted_terminated_pods
            .get_or_insert_with(Default::default);
        if job.status.as_ref() != Some(&status) {
            let mut updated = obj.clone();
            updated["status"] = untyped(&status)?;
            ctx.update_status(&ResourceType::JOBS, namespace, name, updated)?;
        }
        Ok(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;

    fn job(completions: i32, parallelism: i32, backoff: i32, deadline: Option<i64>) -> Job {
        Job {
            spec: Some(JobSpec {
                completions: Some(completions),
                parallelism: Some(parallelism),
                backoff_limit: Some(backoff),
                active_deadline_seconds: deadline,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn creates_parallelism_pods_but_no_more_than_remaining_completions() {
        let j = job(3, 2, 6, None);
        assert_eq!(
            decide(&j, &Counts::default(), t(0), t(0)),
            Decision::Create(2)
        );
        let c = Counts {
            active: 1,
            succeeded: 2,
            ..Default::default()
        };
        assert_eq!(decide(&j, &c, t(0), t(1)), Decision::WaitUntil(None));
    }

    #[test]
    fn completes_when_succeeded_reaches_completions() {
        let c = Counts {
            succeeded: 3,
            ..Default::default()
        };
        assert_eq!(
            decide(&job(3, 1, 6, None), &c, t(0), t(5)),
            Decision::Complete
        );
    }

    #[test]
    fn fails_once_failures_exceed_backoff_limit() {
        let c = Counts {
            failed: 2,
            last_failure: Some(t(1)),
            ..Default::default()
        };
        assert!(matches!(
            decide(&job(1, 1, 1, None), &c, t(0), t(2)),
            Decision::Fail {
                reason: "BackoffLimitExceeded",
                ..
            }
        ));
        let one = Counts {
            failed: 1,
            last_failure: Some(t(1)),
            ..Default::default()
        };
        // backoffLimit 1 allows one retry, after the 10s pod-failure backoff.
        assert_eq!(
            decide(&job(1, 1, 1, None), &one, t(0), t(2)),
            Decision::WaitUntil(Some(t(11)))
        );
        assert_eq!(
            decide(&job(1, 1, 1, None), &one, t(0), t(11)),
            Decision::Create(1)
        );
    }

    #[test]
    fn fails_with_deadline_exceeded_after_active_deadline() {
        let c = Counts {
            active: 1,
            ..Default::default()
        };
        assert_eq!(
            decide(&job(1, 1, 6, Some(5)), &c, t(0), t(1)),
            Decision::WaitUntil(Some(t(5)))
        );
        assert!(matches!(
            decide(&job(1, 1, 6, Some(5)), &c, t(0), t(5)),
            Decision::Fail {
                reason: "DeadlineExceeded",
                ..
            }
        ));
    }

    #[test]
    fn failure_backoff_doubles_from_10s_and_caps_at_6m() {
        let secs: Vec<u64> = (1..=8).map(|n| failure_backoff(n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 320, 360, 360]);
    }
}
