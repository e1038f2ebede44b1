//! The CronJob controller: creates a Job for each scheduled time, as upstream's
//! cronjob controller (v2) does — named `<cronjob>-<minutes since the epoch>`, with
//! `concurrencyPolicy` (Allow, Forbid, Replace), `suspend`, `startingDeadlineSeconds`,
//! and the finished Jobs beyond `successfulJobsHistoryLimit` (3) and
//! `failedJobsHistoryLimit` (1) deleted. Schedules are read in the CronJob's
//! `timeZone`, from the host's time-zone database, UTC when unset.
//!
//! [`decide`] is pure; the schedule is parsed as the API server validates it
//! ([`podrun_model::Schedule`]).

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
pub use podrun_model::Schedule;
use podrun_store::{ApiError, DeleteOptions, ResourceType, object};

use crate::job::finished;
use crate::replicaset::controller_ref;
use crate::{Action, Ctx, Reconciler, owned_by, split_key, typed, untyped};

/// What the controller does at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Create the Job of this scheduled time.
    pub run: Option<Timestamp>,
    /// Delete the active Jobs first (`Replace`).
    pub replace_active: bool,
    /// When to look again: the next scheduled time.
    pub next: Option<Timestamp>,
}

/// Decides the CronJob's step: the most recent scheduled time after `last` (its
/// `lastScheduleTime`, or its creation) that is due, if it is within
/// `startingDeadlineSeconds` and the concurrency policy allows it.
pub fn decide(
    schedule: &Schedule,
    last: Timestamp,
    now: Timestamp,
    starting_deadline: Option<i64>,
    policy: &str,
    active: usize,
    suspended: bool,
) -> Decision {
    // The most recent missed time (upstream counts them; too many only warns).
    let mut missed = None;
    let mut t = last;
    let mut count = 0;
    while let Some(n) = schedule.next_after(t) {
        if n > now || count > 100_000 {
            break;
        }
        missed = Some(n);
        t = n;
        count += 1;
    }
    let next = schedule.next_after(now);
    let mut d = Decision {
        run: None,
        replace_active: false,
        next,
    };
    let Some(at) = missed else { return d };
    if suspended {
        return d;
    }
    if let Some(deadline) = starting_deadline
        && now > at + SignedDuration::from_secs(deadline)
    {
        return d;
    }
    match policy {
        "Forbid" if active > 0 => {}
        "Replace" if active > 0 => {
            d.replace_active = true;
            d.run = Some(at);
        }
        _ => d.run = Some(at),
    }
    d
}

/// The Job of one scheduled time.
pub fn job_for(cj: &CronJob, at: Timestamp) -> Job {
    let name = cj.metadata.name.clone().unwrap_or_default();
    let template = cj.spec.job_template.clone();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.clone().unwrap_or_default();
    annotations.insert(
        "batch.kubernetes.io/cronjob-scheduled-timestamp".into(),
        podrun_model::format_time(at),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{}", at.as_second().div_euclid(60))),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref("batch/v1", "CronJob", &cj.metadata)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// A zone of the host's time-zone database (`/usr/share/zoneinfo`), as the API
/// server's validation found it. The name was validated: no `..`, no empty part.
fn load_zone(zone: &str) -> Option<TimeZone> {
    if zone
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return None;
    }
    let data = std::fs::read(std::path::Path::new("/usr/share/zoneinfo").join(zone)).ok()?;
    TimeZone::tzif(zone, &data).ok()
}

/// The CronJob controller.
#[derive(Debug)]
pub struct CronJobController;

impl Reconciler for CronJobController {
    fn name(&self) -> &'static str {
        "cronjob"
    }

    fn reconcile(&self, ctx: &mut Ctx<'_>, key: &str, now: Timestamp) -> Result<Action, ApiError> {
        let Some(obj) = ctx.informers.cron_jobs.get(key) else {
            return Ok(Action::Done);
        };
        if object::is_deleting(&obj) {
            return Ok(Action::Done);
        }
        let cj: CronJob = typed(&obj)?;
        let spec = &cj.spec;
        let Ok(schedule) = Schedule::parse(&spec.schedule) else {
            return Ok(Action::Done);
        };
        let schedule = match spec.time_zone.as_deref() {
            None | Some("UTC" | "Etc/UTC") => schedule,
            Some(zone) => match load_zone(zone) {
                Some(tz) => schedule.in_zone(tz),
                None => {
                    tracing::warn!(cronjob = key, zone, "unknown time zone: no Job is created");
                    return Ok(Action::Done);
                }
            },
        };
        let (namespace, name) = split_key(key);
        let jobs: Vec<Job> = owned_by(&ctx.informers.jobs, namespace, object::uid(&obj))
            .iter()
            .map(typed::<Job>)
            .collect::<Result<_, _>>()?;
        let active: Vec<&Job> = jobs.iter().filter(|j| !finished(j)).collect();
        let status = cj.status.clone().unwrap_or_default();
        let last = status
            .last_schedule_time
            .as_ref()
            .or(cj.metadata.creation_timestamp.as_ref())
            .map_or(now, |t| t.0);
        let d = decide(
            &schedule,
            last,
            now,
            spec.starting_deadline_seconds,
            spec.concurrency_policy.as_deref().unwrap_or("Allow"),
            active.len(),
            spec.suspend == Some(true),
        );
        let mut new_status = status.clone();
        if d.replace_active {
            for j in &active {
                let opts = DeleteOptions {
                    propagation: podrun_store::Propagation::Background,
                    ..DeleteOptions::default()
                };
                let jname = j.metadata.name.as_deref().unwrap_or_default();
                match ctx.delete(&ResourceType::JOBS, namespace, jname, &opts) {
                    Err(e) if e.code() == 404 => {}
                    other => drop(other?),
                }
            }
        }
        let mut running: Vec<ObjectReference> = if d.replace_active {
            Vec::new()
        } else {
            active.iter().map(|j| reference(j)).collect()
        };
        if let Some(at) = d.run {
            let job = job_for(&cj, at);
            match ctx.create(&ResourceType::JOBS, namespace, untyped(&job)?) {
                Ok(created) => running.push(reference(&typed::<Job>(&created)?)),
                // Created already (a retry after a crash): the schedule moves on.
                Err(e) if e.code() == 409 => {}
                Err(e) => return Err(e),
            }
            new_status.last_schedule_time = Some(Time(at));
        }
        new_status.active = (!running.is_empty()).then_some(running);
        new_status.last_successful_time = jobs
            .iter()
            .filter_map(|j| j.status.as_ref()?.completion_time.clone())
            .max_by_key(|t| t.0)
            .or(status.last_successful_time.clone());
        // History limits: the oldest finished Jobs beyond them go.
        let (succeeded, failed): (Vec<&Job>, Vec<&Job>) =
            jobs.iter().filter(|j| finished(j)).partition(|j| {
                j.status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .is_some()
            });
        let limits = [
            (succeeded, spec.successful_jobs_history_limit.unwrap_or(3)),
            (failed, spec.failed_jobs_history_limit.unwrap_or(1)),
        ];
        for (mut list, limit) in limits {
            let limit = usize::try_from(limit).unwrap_or(0);
            list.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let surplus = list.len().saturating_sub(limit);
            for j in list.into_iter().take(surplus) {
                let jname = j.metadata.name.as_deref().unwrap_or_default();
                match ctx.delete(
                    &ResourceType::JOBS,
                    namespace,
                    jname,
                    &DeleteOptions::default(),
                ) {
                    Err(e) if e.code() == 404 => {}
                    other => drop(other?),
                }
            }
        }
        if new_status != status {
            let mut updated = obj.clone();
            updated["status"] = untyped::<CronJobStatus>(&new_status)?;
            ctx.update_status(&ResourceType::CRON_JOBS, namespace, name, updated)?;
        }
        Ok(d.next.map_or(Action::Done, |t| {
            Action::RequeueAfter(crate::until(t, now).max(Duration::from_millis(10)))
        }))
    }
}

fn reference(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.metadata.name.clone(),
        namespace: j.metadata.namespace.clone(),
        uid: j.metadata.uid.clone(),
        resource_version: j.metadata.resource_version.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_most_recent_missed_time_runs_unless_policy_or_deadline_forbid() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        let last = at("2026-03-01T10:00:00Z");
        let now = at("2026-03-01T10:12:00Z");
        let d = decide(&s, last, now, None, "Allow", 1, false);
        assert_eq!(d.run, Some(at("2026-03-01T10:10:00Z")));
        assert_eq!(d.next, Some(at("2026-03-01T10:15:00Z")));
        assert_eq!(decide(&s, last, now, None, "Forbid", 1, false).run, None);
        assert_eq!(
            decide(&s, last, now, None, "Forbid", 0, false).run,
            Some(at("2026-03-01T10:10:00Z"))
        );
        let r = decide(&s, last, now, None, "Replace", 1, false);
        assert!(r.replace_active && r.run.is_some());
        // 2 minutes late with a 60 s starting deadline: missed.
        assert_eq!(decide(&s, last, now, Some(60), "Allow", 0, false).run, None);
        assert_eq!(decide(&s, last, now, None, "Allow", 0, true).run, None);
        // Nothing due yet.
        assert_eq!(
            decide(&s, at("2026-03-01T10:10:00Z"), now, None, "Allow", 0, false).run,
            None
        );
    }

    #[test]
    fn the_job_is_named_after_the_scheduled_minute() {
        let cj = CronJob {
            metadata: ObjectMeta {
                name: Some("backup".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let t = at("2026-03-01T10:10:00Z");
        let job = job_for(&cj, t);
        assert_eq!(
            job.metadata.name.unwrap(),
            format!("backup-{}", t.as_second() / 60)
        );
        assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "CronJob");
    }
}
