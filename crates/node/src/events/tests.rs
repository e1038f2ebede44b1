//! The correlator's counting and the recorder's files.

use super::*;

fn draft(message: &str) -> Event {
    Event {
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("default".into()),
            name: Some("p".into()),
            uid: Some("u".into()),
            api_version: Some("v1".into()),
            field_path: Some("spec.containers{app}".into()),
            ..Default::default()
        },
        reason: Some("Unhealthy".into()),
        message: Some(message.into()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some("node".into()),
        }),
        ..Default::default()
    }
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

impl Correlator {
    /// Counting alone, without the spam filter.
    fn correlate_unfiltered(&mut self, draft: Event, now: Timestamp) -> Event {
        self.count(draft, now)
    }
}

#[test]
fn identical_events_count_up_on_the_first_ones_name() {
    let mut c = Correlator::default();
    let first = c.correlate_unfiltered(draft("Readiness probe failed: x"), at(0));
    assert_eq!(first.count, Some(1));
    assert_eq!(
        first.metadata.name.as_deref(),
        Some(format!("p.{:x}", at(0).as_nanosecond()).as_str())
    );
    let again = c.correlate_unfiltered(draft("Readiness probe failed: x"), at(5));
    assert_eq!(again.count, Some(2));
    assert_eq!(again.metadata.name, first.metadata.name);
    assert_eq!(again.first_timestamp, Some(Time(at(0))));
    assert_eq!(again.last_timestamp, Some(Time(at(5))));
    // Another message is another Event.
    let other = c.correlate_unfiltered(draft("Readiness probe failed: y"), at(6));
    assert_eq!(other.count, Some(1));
    assert_ne!(other.metadata.name, first.metadata.name);
}

#[test]
fn the_tenth_distinct_message_is_combined() {
    let mut c = Correlator::default();
    for i in 0..9 {
        let e = c.correlate_unfiltered(draft(&format!("m{i}")), at(i));
        assert_eq!(e.message.as_deref(), Some(format!("m{i}").as_str()));
    }
    let tenth = c.correlate_unfiltered(draft("m9"), at(9));
    assert_eq!(
        tenth.message.as_deref(),
        Some("(combined from similar events): m9")
    );
    assert_eq!(tenth.count, Some(1));
    let eleventh = c.correlate_unfiltered(draft("m10"), at(10));
    // The combined Event keeps its first message and counts on.
    assert_eq!(eleventh.metadata.name, tenth.metadata.name);
    assert_eq!(eleventh.count, Some(2));
    // After ten quiet minutes, messages stand alone again.
    let later = c.correlate_unfiltered(draft("m11"), at(10 + 601));
    assert_eq!(later.message.as_deref(), Some("m11"));
}

fn pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "u-1"},
        "spec": {
            "nodeName": "node-a",
            "initContainers": [
                {"name": "proxy", "image": "proxy:1", "restartPolicy": "Always"}
            ],
            "containers": [{"name": "app", "image": "app:1"}]
        }
    }))
    .unwrap()
}

#[test]
fn recorder_writes_hook_failures_back_off_and_kills_as_the_kubelet_words_them() {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus};
    let dir = tempfile::tempdir().unwrap();
    let pod = pod();
    let mut r = Recorder::open(dir.path(), &pod);
    let proxy = ContainerId::Init(0);
    let app = ContainerId::Regular(0);
    r.handle_hook(app, 0, HookKind::PostStart, &Err("boom".into()));
    r.handle_hook(proxy, 0, HookKind::PreStop, &Err("boom".into()));
    r.handle_probe(proxy, 0, ProbeKind::Startup, ProbeResult::Failure, "no");
    let waiting = |restart_count| PodStatus {
        phase: Some("Running".into()),
        init_container_statuses: Some(vec![ContainerStatus {
            name: "proxy".into(),
            restart_count,
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    message: Some("back-off 10s restarting failed container=proxy".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    r.handle_status(&waiting(1));
    // The same status again is no new back-off; the next restart's is.
    r.handle_status(&waiting(1));
    r.handle_status(&waiting(2));
    let text = std::fs::read_to_string(dir.path().join(EVENTS_FILE)).unwrap();
    let events = latest_events(&text);
    let find = |reason: &str| {
        events
            .iter()
            .find(|e| e.reason.as_deref() == Some(reason))
            .unwrap_or_else(|| panic!("no {reason} in {events:#?}"))
    };
    let scheduled = find("Scheduled");
    assert_eq!(
        scheduled.message.as_deref(),
        Some("Successfully assigned default/p to node-a")
    );
    let post_start = find("FailedPostStartHook");
    assert_eq!(post_start.message.as_deref(), Some("PostStartHook failed"));
    assert_eq!(post_start.type_.as_deref(), Some("Warning"));
    assert_eq!(
        post_start.involved_object.field_path.as_deref(),
        Some("spec.containers{app}")
    );
    let pre_stop = find("FailedPreStopHook");
    assert_eq!(pre_stop.message.as_deref(), Some("PreStopHook failed"));
    assert_eq!(
        pre_stop.involved_object.field_path.as_deref(),
        Some("spec.initContainers{proxy}")
    );
    assert_eq!(
        find("Unhealthy").message.as_deref(),
        Some("Startup probe failed: no")
    );
    let back_off = find("BackOff");
    assert_eq!(
        back_off.message.as_deref(),
        Some("Back-off restarting failed container proxy in pod p_default(u-1)")
    );
    assert_eq!(back_off.count, Some(2));
    assert_eq!(
        back_off.source.as_ref().and_then(|s| s.host.as_deref()),
        Some("node-a")
    );

    // A kill after a failed startup probe says why; the records show it all.
    r.handle_action(
        &Action::Signal {
            id: proxy,
            restart_count: 0,
            signal: StopSignal::Term,
        },
        &PodMachine::new(pod.clone(), crate::now()),
        false,
    );
    let text = std::fs::read_to_string(dir.path().join(EVENTS_FILE)).unwrap();
    let killing = latest_events(&text)
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("Killing"))
        .unwrap();
    assert_eq!(
        killing.message.as_deref(),
        Some("Container proxy failed startup probe, will be restarted")
    );
    let records = podrun_timeline::parse_lines(
        &std::fs::read_to_string(dir.path().join(LIFECYCLE_FILE)).unwrap(),
    );
    let names: Vec<&str> = records.iter().map(|r| r.transition.name()).collect();
    assert_eq!(
        names,
        [
            "Scheduled",
            "PostStartDone",
            "PreStopDone",
            "ProbeResult",
            "Phase",
            "BackOff",
            "BackOff",
            "SignalSent"
        ]
    );
    assert!(records.windows(2).all(|w| w[0].ms <= w[1].ms));
    assert_eq!(records[7].container.as_deref(), Some("proxy"));
}

#[test]
fn a_burst_of_25_is_posted_then_one_per_five_minutes_carrying_the_count() {
    let mut c = Correlator::default();
    for i in 0..25 {
        let e = c.correlate(draft("same"), at(i)).expect("within the burst");
        assert_eq!(e.count, Some(i as i32 + 1));
    }
    assert_eq!(c.correlate(draft("same"), at(30)), None);
    assert_eq!(c.correlate(draft("other"), at(31)), None);
    // Five minutes refill one: the repeat posted then carries every count held back.
    let later = c.correlate(draft("same"), at(25 + 300)).expect("refilled");
    assert_eq!(later.count, Some(27));
    assert_eq!(c.correlate(draft("same"), at(25 + 301)), None);
    // Another object has its own allowance.
    let mut other = draft("same");
    other.involved_object.name = Some("q".into());
    assert!(c.correlate(other, at(40)).is_some());
}

#[test]
fn latest_events_keeps_the_last_line_of_each_name() {
    let mut c = Correlator::default();
    let lines: String = [
        c.correlate_unfiltered(draft("a"), at(0)),
        c.correlate_unfiltered(draft("b"), at(1)),
        c.correlate_unfiltered(draft("a"), at(2)),
    ]
    .iter()
    .map(|e| serde_json::to_string(e).unwrap() + "\n")
    .collect();
    let events = latest_events(&lines);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].message.as_deref(), Some("a"));
    assert_eq!(events[0].count, Some(2));
    assert_eq!(events[1].count, Some(1));
}

#[test]
fn subscribers_of_the_pods_directory_get_each_event_as_it_is_written() {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus};
    let pods = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let pod_dir = pods.path().join("default_p_u-1");
    std::fs::create_dir(&pod_dir).unwrap();
    let events = subscribe(pods.path());
    let elsewhere = subscribe(other.path());
    let gone = subscribe(pods.path());
    drop(gone);
    let mut r = Recorder::open(&pod_dir, &pod());
    let back_off = |restart_count| PodStatus {
        init_container_statuses: Some(vec![ContainerStatus {
            name: "proxy".into(),
            restart_count,
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    r.handle_status(&back_off(1));
    r.handle_status(&back_off(2));
    let got: Vec<Event> = events.try_iter().collect();
    let seen: Vec<(&str, i32)> = got
        .iter()
        .map(|e| (e.reason.as_deref().unwrap(), e.count.unwrap()))
        .collect();
    assert_eq!(seen, [("Scheduled", 1), ("BackOff", 1), ("BackOff", 2)]);
    // The repeat is the same Event moved on, as the file's last line of that name.
    assert_eq!(got[1].metadata.name, got[2].metadata.name);
    let text = std::fs::read_to_string(pod_dir.join(EVENTS_FILE)).unwrap();
    let as_json = |e: Option<&Event>| serde_json::to_value(e).unwrap();
    assert_eq!(as_json(latest_events(&text).last()), as_json(got.last()));
    assert!(elsewhere.try_recv().is_err());
}
