//! CronJob validation (upstream `pkg/apis/batch/validation`: `ValidateCronJobCreate`,
//! `validateCronJobSpec`, `validateScheduleFormat`, `validateTimeZone`,
//! `ValidateJobTemplateSpec`) and the standard cron schedule the API server parses
//! with (`robfig/cron/v3`'s `ParseStandard`), which the CronJob controller runs.

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec};
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::jiff::civil::DateTime;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp, ToSpan};

use crate::defaults::default_pod_spec;
use crate::field::{FieldError, Invalid, Path, quote};
use crate::validation::job::validate_job_spec;
use crate::validation::meta::{NameRule, validate_object_meta};

type Errs = Vec<FieldError>;

/// A Job created for a CronJob is named `<cronjob>-<minutes>`: 11 characters more.
const MAX_NAME: usize = 52;

/// A parsed standard cron schedule: five fields (minute hour day-of-month month
/// day-of-week), a descriptor (`@hourly`, `@daily`, …) or `@every <duration>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day-of-month or day-of-week was `*` or `?` without a step: both must match;
    /// otherwise either.
    day_star: bool,
    /// `@every`: a fixed delay in seconds instead of the fields.
    every: Option<i64>,
    /// The zone the fields are read in (`spec.timeZone`); UTC unless set.
    zone: TimeZone,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Go's `strconv.Atoi` as `mustParseInt` reports it.
fn must_parse_int(s: &str) -> Result<u32, String> {
    match s.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {s}")),
        Ok(n) => u32::try_from(n).map_err(|_| {
            format!(
                "failed to parse int from {s}: strconv.Atoi: parsing {}: value out of range",
                quote(s)
            )
        }),
        Err(e) => {
            let why = if matches!(
                e.kind(),
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
            ) {
                "value out of range"
            } else {
                "invalid syntax"
            };
            Err(format!(
                "failed to parse int from {s}: strconv.Atoi: parsing {}: {why}",
                quote(s)
            ))
        }
    }
}

fn int_or_name(s: &str, names: &[&str], base: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(u32::try_from(i).unwrap_or(0) + base);
    }
    must_parse_int(s)
}

/// One field: comma-separated `*`, `?`, `a`, `a-b`, each optionally `/step` (`getRange`).
fn field(text: &str, min: u32, max: u32, names: &[&str], base: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for expr in text.split(',') {
        let range_and_step: Vec<&str> = expr.split('/').collect();
        let low_high: Vec<&str> = range_and_step[0].split('-').collect();
        let (mut start, mut end, mut is_star);
        if low_high[0] == "*" || low_high[0] == "?" {
            (start, end, is_star) = (min, max, true);
        } else {
            start = int_or_name(low_high[0], names, base)?;
            end = match low_high.len() {
                1 => start,
                2 => int_or_name(low_high[1], names, base)?,
                _ => return Err(format!("too many hyphens: {expr}")),
            };
            is_star = false;
        }
        let step = match range_and_step.len() {
            1 => 1,
            2 => {
                let step = must_parse_int(range_and_step[1])?;
                // "N/step" means "N-max/step".
                if low_high.len() == 1 {
                    end = max;
                }
                if step > 1 {
                    is_star = false;
                }
                step
            }
            _ => return Err(format!("too many slashes: {expr}")),
        };
        if start < min {
            return Err(format!(
                "beginning of range ({start}) below minimum ({min}): {expr}"
            ));
        }
        if end > max {
            return Err(format!(
                "end of range ({end}) above maximum ({max}): {expr}"
            ));
        }
        if start > end {
            return Err(format!(
                "beginning of range ({start}) beyond end of range ({end}): {expr}"
            ));
        }
        if step == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
        while start <= end {
            bits |= 1 << start;
            start += step;
        }
        star |= is_star;
    }
    Ok((bits, star))
}

/// Go's `time.ParseDuration`, in whole seconds (what `@every` keeps), with its errors.
fn go_duration(s: &str) -> Result<f64, String> {
    let invalid = || format!("time: invalid duration {}", quote(s));
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "" => return Err(format!("time: missing unit in duration {}", quote(s))),
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(other),
                    quote(s)
                ));
            }
        };
        total += value * scale;
    }
    if total > 9_223_372_036.854_775 {
        return Err(invalid());
    }
    Ok(if neg { -total } else { total })
}

impl Schedule {
    /// Parses a schedule as `ParseStandard` does, with its error messages. A
    /// `TZ=`/`CRON_TZ=` prefix is read past (the API server refuses it separately).
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        let mut spec = spec;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let eq = spec.find('=').unwrap_or(0);
            let Some(space) = spec.find(' ') else {
                return Err(format!(
                    "provided bad location {}: unknown time zone {}",
                    &spec[eq + 1..],
                    &spec[eq + 1..]
                ));
            };
            spec = spec[space..].trim();
        }
        if spec.starts_with('@') {
            let fields = match spec {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                _ => {
                    if let Some(d) = spec.strip_prefix("@every ") {
                        let secs = go_duration(d)
                            .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
                        // At least a second, whole seconds.
                        let secs = (secs.trunc() as i64).max(1);
                        return Ok(Schedule {
                            minutes: 0,
                            hours: 0,
                            days: 0,
                            months: 0,
                            weekdays: 0,
                            day_star: false,
                            every: Some(secs),
                            zone: TimeZone::UTC,
                        });
                    }
                    return Err(format!("unrecognized descriptor: {spec}"));
                }
            };
            return Schedule::parse(fields);
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            ));
        }
        let (minutes, _) = field(fields[0], 0, 59, &[], 0)?;
        let (hours, _) = field(fields[1], 0, 23, &[], 0)?;
        let (days, dom_star) = field(fields[2], 1, 31, &[], 0)?;
        let (months, _) = field(fields[3], 1, 12, &MONTHS, 1)?;
        let (weekdays, dow_star) = field(fields[4], 0, 6, &WEEKDAYS, 0)?;
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            day_star: dom_star || dow_star,
            every: None,
            zone: TimeZone::UTC,
        })
    }

    /// The same schedule, its fields read in `zone` (a CronJob's `timeZone`).
    pub fn in_zone(self, zone: TimeZone) -> Schedule {
        Schedule { zone, ..self }
    }

    fn day_matches(&self, dt: &DateTime) -> bool {
        let dom = self.days & (1 << dt.day()) != 0;
        let dow = self.weekdays & (1 << dt.weekday().to_sunday_zero_offset()) != 0;
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `t`, the fields read in the schedule's
    /// zone (a local time a daylight-saving change skips runs at the moment after the
    /// gap), within five years.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        if let Some(secs) = self.every {
            // `ConstantDelaySchedule`: the delay from `t`, on a whole second.
            let whole = Timestamp::from_second(t.as_second()).ok()?;
            return whole.checked_add(SignedDuration::from_secs(secs)).ok();
        }
        let tz = &self.zone;
        let start = tz.to_datetime(t);
        // The next whole minute.
        let mut dt = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = start.year() + 5;
        while dt.year() <= limit {
            if self.months & (1 << dt.month()) == 0 {
                dt = midnight(dt.first_of_month().checked_add(1.month()).ok()?)?;
                continue;
            }
            if !self.day_matches(&dt) {
                dt = midnight(dt.checked_add(1.day()).ok()?)?;
                continue;
            }
            if self.hours & (1 << dt.hour()) == 0 {
                dt = dt
                    .checked_add(1.hour())
                    .ok()?
                    .with()
                    .minute(0)
                    .build()
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << dt.minute()) == 0 {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            return tz.to_timestamp(dt).ok();
        }
        None
    }
}

/// The first minute (00:00) of the day of `dt`, whose seconds are already zero.
fn midnight(dt: DateTime) -> Option<DateTime> {
    dt.with().hour(0).minute(0).build().ok()
}

/// Defaults a copy of the CronJob as the API server does (`SetDefaults_CronJob` and
/// the template's pod spec) and validates it; the CronJob is returned unchanged.
/// `zone_known` answers whether a `timeZone` names a zone of the time-zone database
/// (the API server's `time.LoadLocation`); the core itself reads no files.
pub fn admit_cron_job(cj: CronJob, zone_known: &dyn Fn(&str) -> bool) -> Result<CronJob, Invalid> {
    let mut defaulted = cj.clone();
    default_cron_job(&mut defaulted);
    validate_cron_job(&defaulted, zone_known)?;
    Ok(cj)
}

/// The API server's defaults of a CronJob's own spec fields (`SetDefaults_CronJob`):
/// `concurrencyPolicy: Allow`, `suspend: false` and history limits of 3 and 1. The Job
/// template is left to the caller.
pub fn default_cron_job_spec(spec: &mut CronJobSpec) {
    spec.concurrency_policy
        .get_or_insert_with(|| "Allow".into());
    spec.suspend.get_or_insert(false);
    spec.successful_jobs_history_limit.get_or_insert(3);
    spec.failed_jobs_history_limit.get_or_insert(1);
}

fn default_cron_job(cj: &mut CronJob) {
    cj.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    let spec = &mut cj.spec;
    default_cron_job_spec(spec);
    let job = spec.job_template.spec.get_or_insert_with(Default::default);
    default_pod_spec(job.template.spec.get_or_insert_with(PodSpec::default));
}

/// Validates a defaulted CronJob, in upstream's order: metadata, schedule,
/// `startingDeadlineSeconds`, history limits, `timeZone`, `concurrencyPolicy`, the
/// Job template, and the 52-character name.
pub fn validate_cron_job(cj: &CronJob, zone_known: &dyn Fn(&str) -> bool) -> Result<(), Invalid> {
    let meta_path = Path::new("metadata");
    let mut errs = validate_object_meta(&cj.metadata, NameRule::Subdomain, &meta_path);
    let path = Path::new("spec");
    let spec = &cj.spec;
    if spec.schedule.is_empty() {
        errs.push(FieldError::required(path.child("schedule"), ""));
    } else {
        let sp = path.child("schedule");
        if let Err(e) = Schedule::parse(&spec.schedule) {
            errs.push(FieldError::invalid_str(sp.clone(), &spec.schedule, e));
        }
        if spec.schedule.contains("TZ") {
            errs.push(FieldError::invalid_str(
                sp,
                &spec.schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    for (v, name) in [
        (spec.starting_deadline_seconds, "startingDeadlineSeconds"),
        (
            spec.successful_jobs_history_limit.map(i64::from),
            "successfulJobsHistoryLimit",
        ),
        (
            spec.failed_jobs_history_limit.map(i64::from),
            "failedJobsHistoryLimit",
        ),
    ] {
        if let Some(v) = v
            && v < 0
        {
            errs.push(FieldError::invalid_num(
                path.child(name),
                v,
                "must be greater than or equal to 0",
            ));
        }
    }
    if let Some(zone) = spec.time_zone.as_deref() {
        errs.extend(time_zone(zone, &path.child("timeZone"), zone_known));
    }
    let policy_path = path.child("concurrencyPolicy");
    match spec.concurrency_policy.as_deref().unwrap_or("") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required(policy_path, "")),
        other => errs.push(FieldError::not_supported(
            policy_path,
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    // ValidateJobTemplateSpec.
    let tpath = path.child("jobTemplate").child("spec");
    let job = spec.job_template.spec.clone().unwrap_or_default();
    // The selector rules of a Job (`ValidateJobSpec`) do not apply to a template,
    // whose selector is always generated: only the two checks below.
    let unselected = k8s_openapi::api::batch::v1::JobSpec {
        selector: None,
        manual_selector: None,
        ..job.clone()
    };
    errs.extend(validate_job_spec(&unselected, &tpath));
    if job.selector.is_some() {
        errs.push(FieldError::invalid_raw(
            tpath.child("selector"),
            "&LabelSelector{...}",
            "`selector` will be auto-generated",
        ));
    }
    if job.manual_selector == Some(true) {
        errs.push(FieldError::not_supported(
            tpath.child("manualSelector"),
            "true",
            &["nil", "false"],
        ));
    }
    let name = cj.metadata.name.clone().unwrap_or_default();
    if name.len() > MAX_NAME {
        errs.push(FieldError::invalid_str(
            meta_path.child("name"),
            &name,
            "must be no more than 52 characters",
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Invalid::new("CronJob", name, errs))
    }
}

/// `validateTimeZone`: IANA name rules, not `Local`, and a zone that exists.
fn time_zone(zone: &str, path: &Path, zone_known: &dyn Fn(&str) -> bool) -> Errs {
    if zone.is_empty() {
        return vec![FieldError::invalid_str(
            path.clone(),
            zone,
            "timeZone must be nil or non-empty string",
        )];
    }
    let part_ok = |p: &str| {
        (1..=14).contains(&p.len())
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    };
    if !zone.split('/').all(part_ok) {
        return vec![FieldError::invalid_str(
            path.clone(),
            zone,
            format!("unknown time zone {zone}"),
        )];
    }
    let mut errs = Errs::new();
    if zone.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid_str(
            path.clone(),
            zone,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    // `time.LoadLocation`: "UTC" and "" are built in; "Local" is the host's own.
    if zone != "UTC" && zone != "Local" && !zone_known(zone) {
        errs.push(FieldError::invalid_str(
            path.clone(),
            zone,
            format!("unknown time zone {zone}"),
        ));
    }
    errs
}

#[cfg(test)]
mod tests;
