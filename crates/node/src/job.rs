//! The Job controller: creates a Job's pods from its template and tracks them to
//! `Complete` or `Failed`, as upstream's job controller does for NonIndexed Jobs.
//!
//! [`decide`] is pure (counts and `now` in, a [`Decision`] out); [`create`] runs it
//! against the node's pods.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::broadcast::error::RecvError;

use crate::{Error, Node, NodeEvent, new_uid, random_suffix};

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

/// Admits the Job (uid, timestamps) and spawns its controller.
pub(crate) fn create(node: Node, mut job: Job) -> Result<Job, Error> {
    let key = crate::key_of(&job.metadata);
    if let Some(old) = node
        .store()
        .get::<Job>(podrun_registry::Resource::JOBS, &key)?
    {
        let finished = old
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            });
        if !finished {
            return Err(Error::AlreadyExists {
                resource: "jobs.batch",
                name: key.name,
            });
        }
    }
    job.metadata.namespace = Some(key.namespace.clone());
    job.metadata.uid = Some(new_uid());
    job.metadata.creation_timestamp = Some(Time(crate::now()));
    job.metadata.generation = Some(1);
    job.metadata.resource_version = None;
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let labels = job.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels
        .entry("batch.kubernetes.io/controller-uid".into())
        .or_insert(uid.clone());
    labels
        .entry("batch.kubernetes.io/job-name".into())
        .or_insert(key.name.clone());
    labels.entry("controller-uid".into()).or_insert(uid);
    labels.entry("job-name".into()).or_insert(key.name.clone());
    job.status = Some(JobStatus {
        start_time: Some(Time(crate::now())),
        active: Some(0),
        ready: Some(0),
        terminating: Some(0),
        uncounted_terminated_pods: Some(Default::default()),
        ..Default::default()
    });
    node.publish_job(&mut job);
    tokio::spawn(control(node, job.clone()));
    Ok(job)
}

/// A pod for the Job, named `<job>-<5 chars>` with the upstream labels and owner.
fn pod_for(job: &Job) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
    labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
    labels.insert("controller-uid".into(), uid.clone());
    labels.insert("job-name".into(), name.clone());
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("batch.kubernetes.io/job-tracking".into(), String::new());
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{}", random_suffix())),
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

/// Whether this pod belongs to the Job.
fn owned_by(pod: &Pod, job_uid: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == job_uid)
}

async fn control(node: Node, mut job: Job) {
    let mut events = node.subscribe();
    let job_uid = job.metadata.uid.clone().unwrap_or_default();
    let start = job
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .map_or_else(crate::now, |t| t.0);
    // Pod name → latest object; finished pods stay for counting.
    let mut pods: BTreeMap<String, (Arc<Pod>, bool)> = BTreeMap::new();
    let mut counts = Counts::default();
    loop {
        let now = crate::now();
        let decision = decide(&job, &counts, start, now);
        match decision {
            Decision::Create(n) => {
                for _ in 0..n {
                    match podrun_model::admit_pod(pod_for(&job)) {
                        Ok(pod) => match node.create_pod(pod) {
                            Ok(pod) => {
                                let name = pod.metadata.name.clone().unwrap_or_default();
                                pods.insert(name, (Arc::new(pod), false));
                            }
                            Err(e) => tracing::error!(%e, "job cannot create pod"),
                        },
                        Err(e) => {
                            tracing::error!(%e, "job template is invalid");
                            return;
                        }
                    }
                }
                counts = count(&pods);
                publish(&node, &mut job, &counts, None);
                continue;
            }
            Decision::Complete | Decision::Fail { .. } => {
                let terminal = match decision {
                    Decision::Fail { reason, message } => {
                        for (pod, done) in pods.values() {
                            if !done {
                                node.delete_pod(
                                    pod.metadata.namespace.as_deref().unwrap_or("default"),
                                    pod.metadata.name.as_deref().unwrap_or_default(),
                                    None,
                                );
                            }
                        }
                        // Wait for the deleted pods to be gone before the Job is Failed.
                        while pods.values().any(|(_, done)| !done) {
                            match events.recv().await {
                                Ok(NodeEvent::PodFinished(p)) if owned_by(&p, &job_uid) => {
                                    let name = p.metadata.name.clone().unwrap_or_default();
                                    pods.insert(name, (p, true));
                                }
                                Err(RecvError::Closed) => break,
                                _ => {}
                            }
                        }
                        counts = count(&pods);
                        vec![
                            condition("FailureTarget", reason, message, now),
                            condition("Failed", reason, message, now),
                        ]
                    }
                    _ => {
                        let message = "Reached expected number of succeeded pods";
                        vec![
                            condition("SuccessCriteriaMet", "CompletionsReached", message, now),
                            condition("Complete", "CompletionsReached", message, now),
                        ]
                    }
                };
                let complete = terminal.iter().any(|c| c.type_ == "Complete");
                publish(&node, &mut job, &counts, Some(terminal));
                if complete && let Some(status) = job.status.as_mut() {
                    status.completion_time = Some(Time(now));
                    node.publish_job(&mut job);
                }
                return;
            }
            Decision::WaitUntil(until) => {
                let sleep = async {
                    match until {
                        Some(t) => {
                            let d = Duration::try_from(t.duration_since(crate::now()))
                                .unwrap_or(Duration::ZERO);
                            tokio::time::sleep(d).await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    event = events.recv() => match event {
                        Ok(NodeEvent::Pod(p)) if owned_by(&p, &job_uid) => {
                            let name = p.metadata.name.clone().unwrap_or_default();
                            let done = pods.get(&name).is_some_and(|(_, d)| *d);
                            pods.insert(name, (p, done));
                        }
                        Ok(NodeEvent::PodFinished(p)) if owned_by(&p, &job_uid) => {
                            let name = p.metadata.name.clone().unwrap_or_default();
                            pods.insert(name, (p, true));
                        }
                        Err(RecvError::Closed) => return,
                        _ => continue,
                    },
                    () = sleep => {}
                }
                let new_counts = count(&pods);
                if new_counts != counts {
                    counts = new_counts;
                    publish(&node, &mut job, &counts, None);
                }
            }
        }
    }
}

fn count(pods: &BTreeMap<String, (Arc<Pod>, bool)>) -> Counts {
    let mut c = Counts::default();
    for (pod, done) in pods.values() {
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        match (phase, done) {
            ("Succeeded", true) => c.succeeded += 1,
            ("Failed", true) => {
                c.failed += 1;
                let finished = status
                    .and_then(|s| s.container_statuses.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|cs| cs.state.as_ref()?.terminated.as_ref()?.finished_at.clone())
                    .map(|t| t.0)
                    .max();
                c.last_failure = c.last_failure.max(finished.or(Some(crate::now())));
            }
            (_, true) => {}
            _ => {
                c.active += 1;
                let ready = status
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if ready {
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
    c
}

fn publish(node: &Node, job: &mut Job, counts: &Counts, terminal: Option<Vec<JobCondition>>) {
    let status = job.status.get_or_insert_with(Default::default);
    status.active = Some(counts.active);
    status.ready = Some(counts.ready);
    status.succeeded = (counts.succeeded > 0).then_some(counts.succeeded);
    status.failed = (counts.failed > 0).then_some(counts.failed);
    if let Some(conditions) = terminal {
        status.conditions = Some(conditions);
    }
    node.publish_job(job);
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
