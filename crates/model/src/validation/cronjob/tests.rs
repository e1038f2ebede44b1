use super::*;
use crate::Object;

fn at(s: &str) -> Timestamp {
    s.parse().expect("time")
}

fn zones(z: &str) -> bool {
    matches!(z, "Europe/Berlin" | "America/New_York" | "Etc/UTC")
}

fn cron_job(yaml_spec: &str) -> CronJob {
    let text = format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: backup\nspec:\n{yaml_spec}"
    );
    match crate::parse_manifests(&text, "t")
        .expect("parse")
        .into_iter()
        .next()
    {
        Some(Object::CronJob(cj)) => *cj,
        other => panic!("not a CronJob: {other:?}"),
    }
}

const TEMPLATE: &str = "  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: c\n            image: busybox\n";

fn lines(e: &Invalid) -> Vec<String> {
    e.errors
        .iter()
        .map(|f| format!("{}: {}", f.path, f.body()))
        .collect()
}

fn errors(spec: &str) -> Vec<String> {
    match admit_cron_job(cron_job(&format!("{spec}{TEMPLATE}")), &zones) {
        Ok(_) => Vec::new(),
        Err(e) => lines(&e),
    }
}

#[test]
fn schedules_parse_as_the_standard_parser_reads_them() {
    let table = [
        (
            "*/15 * * * *",
            "2026-03-01T10:07:00Z",
            "2026-03-01T10:15:00Z",
        ),
        ("0 * * * *", "2026-03-01T10:07:00Z", "2026-03-01T11:00:00Z"),
        ("@hourly", "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"),
        ("@daily", "2026-03-01T10:00:00Z", "2026-03-02T00:00:00Z"),
        (
            "@every 90s",
            "2026-03-01T10:00:00.5Z",
            "2026-03-01T10:01:30Z",
        ),
        ("30 2 * * *", "2026-03-01T10:07:00Z", "2026-03-02T02:30:00Z"),
        ("0 0 1 * *", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
        (
            "0 0 * * MON",
            "2026-03-01T00:00:00Z",
            "2026-03-02T00:00:00Z",
        ),
        (
            "0 0 29 feb *",
            "2026-03-01T00:00:00Z",
            "2028-02-29T00:00:00Z",
        ),
        // Day-of-month and day-of-week both restricted: either matches.
        ("0 0 13 * 5", "2026-03-01T00:00:00Z", "2026-03-06T00:00:00Z"),
        // `*/2` in day-of-month is a restriction, not a star: either matches.
        (
            "0 0 */2 * 1",
            "2026-03-01T00:00:00Z",
            "2026-03-02T00:00:00Z",
        ),
        (
            "5-10/5 1,3 * * *",
            "2026-03-01T01:06:00Z",
            "2026-03-01T01:10:00Z",
        ),
        (
            "7/20 * * * *",
            "2026-03-01T01:08:00Z",
            "2026-03-01T01:27:00Z",
        ),
    ];
    for (text, after, want) in table {
        let s = Schedule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            s.next_after(at(after)),
            Some(at(want)),
            "{text} after {after}"
        );
    }
}

#[test]
fn bad_schedules_get_the_parsers_messages() {
    let table = [
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("60 * * * *", "end of range (60) above maximum (59): 60"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        (
            "5-1 * * * *",
            "beginning of range (5) beyond end of range (1): 5-1",
        ),
        (
            "*/0 * * * *",
            "step of range should be a positive number: */0",
        ),
        ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        ("*/2/3 * * * *", "too many slashes: */2/3"),
        (
            "a * * * *",
            "failed to parse int from a: strconv.Atoi: parsing \"a\": invalid syntax",
        ),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        (
            "@every 5",
            "failed to parse duration @every 5: time: missing unit in duration \"5\"",
        ),
        ("", "empty spec string"),
    ];
    for (text, want) in table {
        assert_eq!(
            Schedule::parse(text).err().as_deref(),
            Some(want),
            "{text:?}"
        );
    }
}

#[test]
fn a_valid_cron_job_is_admitted_unchanged() {
    assert_eq!(
        errors("  schedule: \"*/5 * * * *\"\n"),
        Vec::<String>::new()
    );
    assert_eq!(
        errors("  schedule: \"@hourly\"\n  timeZone: Europe/Berlin\n"),
        Vec::<String>::new()
    );
    let cj = cron_job(&format!("  schedule: \"@hourly\"\n{TEMPLATE}"));
    assert_eq!(admit_cron_job(cj.clone(), &zones).expect("admitted"), cj);
}

#[test]
fn cron_job_fields_are_validated_with_the_api_servers_messages_and_paths() {
    let table: [(&str, &[&str]); 10] = [
        ("  schedule: \"\"\n", &["spec.schedule: Required value"]),
        (
            "  schedule: \"61 * * * *\"\n",
            &[
                "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
            ],
        ),
        (
            "  schedule: \"CRON_TZ=UTC 0 * * * *\"\n",
            &[
                "spec.schedule: Invalid value: \"CRON_TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ],
        ),
        (
            "  schedule: \"@hourly\"\n  startingDeadlineSeconds: -1\n",
            &[
                "spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0",
            ],
        ),
        (
            "  schedule: \"@hourly\"\n  successfulJobsHistoryLimit: -1\n  failedJobsHistoryLimit: -2\n",
            &[
                "spec.successfulJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
                "spec.failedJobsHistoryLimit: Invalid value: -2: must be greater than or equal to 0",
            ],
        ),
        (
            "  schedule: \"@hourly\"\n  concurrencyPolicy: Sometimes\n",
            &[
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
            ],
        ),
        (
            "  schedule: \"@hourly\"\n  timeZone: Mars/Olympus\n",
            &["spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"],
        ),
        (
            "  schedule: \"@hourly\"\n  timeZone: Local\n",
            &[
                "spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            ],
        ),
        (
            "  schedule: \"@hourly\"\n  timeZone: \"../etc\"\n",
            &["spec.timeZone: Invalid value: \"../etc\": unknown time zone ../etc"],
        ),
        (
            "  schedule: \"@hourly\"\n  timeZone: \"\"\n",
            &["spec.timeZone: Invalid value: \"\": timeZone must be nil or non-empty string"],
        ),
    ];
    for (spec, want) in table {
        assert_eq!(errors(spec), want, "{spec}");
    }
}

#[test]
fn the_job_template_is_validated_as_a_job_template() {
    let cj = cron_job(
        "  schedule: \"@hourly\"\n  jobTemplate:\n    spec:\n      backoffLimit: -1\n      manualSelector: true\n      template:\n        spec:\n          containers:\n          - name: c\n            image: busybox\n",
    );
    let err = admit_cron_job(cj, &zones).expect_err("invalid");
    assert_eq!(
        lines(&err),
        [
            "spec.jobTemplate.spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
            "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
            "spec.jobTemplate.spec.manualSelector: Unsupported value: \"true\": supported values: \"nil\", \"false\"",
        ]
    );
    assert!(
        err.kubectl_message()
            .starts_with("The CronJob \"backup\" is invalid: "),
        "{}",
        err.kubectl_message()
    );
}

#[test]
fn a_cron_job_name_longer_than_52_characters_is_refused() {
    let name = "a".repeat(53);
    let mut cj = cron_job(&format!("  schedule: \"@hourly\"\n{TEMPLATE}"));
    cj.metadata.name = Some(name.clone());
    let err = admit_cron_job(cj, &zones).expect_err("invalid");
    assert_eq!(
        lines(&err),
        [format!(
            "metadata.name: Invalid value: \"{name}\": must be no more than 52 characters"
        )]
    );
}

#[test]
fn a_schedule_in_a_zone_reads_its_fields_in_local_time() {
    // A fixed-offset zone stands in for a zone file: 02:30 at UTC+2 is 00:30 UTC.
    let zone = TimeZone::fixed(k8s_openapi::jiff::tz::offset(2));
    let s = Schedule::parse("30 2 * * *").unwrap().in_zone(zone);
    assert_eq!(
        s.next_after(at("2026-03-01T10:07:00Z")),
        Some(at("2026-03-02T00:30:00Z"))
    );
}
