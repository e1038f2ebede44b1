//! The renderer on hand-made records: lane order, bar geometry, escaping, text.

use podrun_timeline::chart::MarkKind;
use podrun_timeline::svg::{self, Geometry, PLOT_W, PLOT_X};
use podrun_timeline::{Chart, ContainerKind, ContainerRef, Probe, Record, Transition};

fn rec(ms: f64, container: Option<&str>, restart: i32, t: Transition) -> Record {
    Record {
        ms,
        time: "2026-12-07T18:00:00Z".into(),
        pod: "default/p".into(),
        container: container.map(String::from),
        restart_count: container.map(|_| restart),
        transition: t,
    }
}

fn c(name: &str, kind: ContainerKind) -> ContainerRef {
    ContainerRef {
        name: name.into(),
        kind,
    }
}

fn exited(code: i32) -> Transition {
    Transition::Exited {
        exit_code: code,
        signal: None,
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
    }
}

/// The exiting pod: init, sidecar, app.
fn exiting_pod() -> Vec<Record> {
    vec![
        rec(
            0.0,
            None,
            0,
            Transition::Scheduled {
                uid: "u".into(),
                // Written in an order that puts the app first: lanes still follow spec
                // grouping, init containers and sidecars before regular containers.
                containers: vec![
                    c("app", ContainerKind::Regular),
                    c("istio-init", ContainerKind::Init),
                    c("istio-proxy", ContainerKind::Sidecar),
                ],
            },
        ),
        rec(
            0.0,
            None,
            0,
            Transition::Phase {
                phase: "Pending".into(),
            },
        ),
        rec(10.0, Some("istio-init"), 0, Transition::Started),
        rec(20.0, Some("istio-init"), 0, exited(0)),
        rec(30.0, Some("istio-proxy"), 0, Transition::Started),
        rec(
            40.0,
            Some("istio-proxy"),
            0,
            Transition::ProbeResult {
                probe: Probe::Startup,
                success: true,
            },
        ),
        rec(50.0, Some("app"), 0, Transition::Started),
        rec(
            50.0,
            None,
            0,
            Transition::Phase {
                phase: "Running".into(),
            },
        ),
        rec(1050.0, Some("app"), 0, exited(0)),
        rec(
            1051.0,
            Some("istio-proxy"),
            0,
            Transition::SignalSent {
                signal: "SIGTERM".into(),
            },
        ),
        rec(1060.0, Some("istio-proxy"), 0, exited(0)),
        rec(
            1070.0,
            None,
            0,
            Transition::Phase {
                phase: "Succeeded".into(),
            },
        ),
    ]
}

#[test]
fn lanes_follow_spec_order_grouped_init_sidecar_regular() {
    let chart = Chart::from_records("default/p", &exiting_pod());
    let names: Vec<&str> = chart.lanes.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["istio-init", "istio-proxy", "app"]);
    let kinds: Vec<ContainerKind> = chart.lanes.iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds,
        [
            ContainerKind::Init,
            ContainerKind::Sidecar,
            ContainerKind::Regular
        ]
    );
    let phases: Vec<&str> = chart.phases.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(phases, ["Pending", "Running", "Succeeded"]);
    // The SVG draws the lanes top to bottom in the same order.
    let svg = svg::render(std::slice::from_ref(&chart));
    let at = |n: &str| svg.find(&format!("data-container=\"{n}\"")).unwrap();
    assert!(at("istio-init") < at("istio-proxy") && at("istio-proxy") < at("app"));
    let g = Geometry::new(&chart, 0.0);
    assert!(g.lane_tops[0] < g.lane_tops[1] && g.lane_tops[1] < g.lane_tops[2]);
}

#[test]
fn bars_are_placed_by_their_times() {
    let chart = Chart::from_records("default/p", &exiting_pod());
    let g = Geometry::new(&chart, 0.0);
    // 1070 ms of records: the axis ends at 1200 ms (steps of 200 ms).
    assert_eq!(g.axis.end, 1200.0);
    let app = &chart.lanes[2].runs[0];
    assert_eq!((app.start, app.end), (50.0, 1050.0));
    let (x, y, w, h) = g.run_rect(2, app);
    assert!((x - (PLOT_X + 50.0 / 1200.0 * PLOT_W)).abs() < 1e-9);
    assert!((w - 1000.0 / 1200.0 * PLOT_W).abs() < 1e-9);
    assert_eq!(y, g.lane_tops[2] + svg::BAR_TOP);
    assert_eq!(h, svg::BAR_H);
    let doc = svg::render(std::slice::from_ref(&chart));
    let expected = format!(
        "data-container=\"app\" data-restart=\"0\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\""
    );
    assert!(doc.contains(&expected), "{expected} not in\n{doc}");
    // The sidecar's SIGTERM→exit interval is shaded and ends at its exit.
    let proxy = &chart.lanes[1].runs[0];
    let stopping = proxy.stopping.expect("stopping interval");
    assert_eq!((stopping.start, stopping.end), (1051.0, 1060.0));
    assert!(doc.contains("class=\"stopping\""));
    assert!(
        chart.lanes[1]
            .marks
            .iter()
            .any(|m| m.kind == MarkKind::Term && m.ms == 1051.0)
    );
}

#[test]
fn each_restart_is_its_own_bar_with_back_off_gaps() {
    let mut records = vec![rec(
        0.0,
        None,
        0,
        Transition::Scheduled {
            uid: "u".into(),
            containers: vec![c("crash", ContainerKind::Sidecar)],
        },
    )];
    let mut t = 0.0;
    for n in 0..11 {
        records.push(rec(t, Some("crash"), n, Transition::Created));
        records.push(rec(t + 1.0, Some("crash"), n, Transition::Started));
        records.push(rec(t + 100.0, Some("crash"), n, exited(1)));
        records.push(rec(
            t + 101.0,
            Some("crash"),
            n,
            Transition::BackOff {
                message: "back-off".into(),
            },
        ));
        t += 1000.0;
    }
    let chart = Chart::from_records("default/p", &records);
    let lane = &chart.lanes[0];
    assert_eq!(lane.runs.len(), 11);
    assert_eq!(lane.restarts(), 10);
    assert_eq!(lane.backoffs.len(), 11);
    // A back-off ends when the next instance is created; the last one at the end.
    assert_eq!(lane.backoffs[0].start, 101.0);
    assert_eq!(lane.backoffs[0].end, 1000.0);
    assert_eq!(lane.backoffs[10].end, chart.end_ms);
    let doc = svg::render(std::slice::from_ref(&chart));
    assert_eq!(doc.matches("class=\"run\"").count(), 11);
    assert_eq!(doc.matches("class=\"backoff\"").count(), 11);
    assert!(doc.contains("data-restart=\"10\""));
    assert!(doc.contains("10 container restarts"));
}

#[test]
fn names_and_messages_are_escaped() {
    let records = vec![
        rec(
            0.0,
            None,
            0,
            Transition::Scheduled {
                uid: "u".into(),
                containers: vec![c("a<b>&\"c'", ContainerKind::Regular)],
            },
        ),
        rec(1.0, Some("a<b>&\"c'"), 0, Transition::Started),
        rec(
            2.0,
            Some("a<b>&\"c'"),
            0,
            Transition::StartFailed {
                reason: "<script>".into(),
                message: "x".into(),
            },
        ),
    ];
    let doc = podrun_timeline::render_svg(&records);
    assert!(doc.contains("a&lt;b&gt;&amp;&quot;c&#39;"));
    assert!(!doc.contains("<b>"));
    assert!(!doc.contains("<script"));
    assert!(doc.contains("&lt;script&gt;"));
}

#[test]
fn svg_is_self_contained() {
    let doc = podrun_timeline::render_svg(&exiting_pod());
    assert!(doc.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    for banned in [
        "<script",
        "href=",
        "@import",
        "url(http",
        "<image",
        "@font-face",
    ] {
        assert!(!doc.contains(banned), "{banned}");
    }
}

#[test]
fn text_shows_lanes_in_order_with_exit_codes_and_transitions() {
    let text = podrun_timeline::render_text(&exiting_pod());
    let lane_line = |n: &str| {
        text.lines()
            .position(|l| l.trim_start().starts_with(n) && l.contains('█'))
            .unwrap_or_else(|| panic!("{n} lane in\n{text}"))
    };
    assert!(lane_line("istio-init") < lane_line("istio-proxy"));
    assert!(lane_line("istio-proxy") < lane_line("app "));
    assert!(text.contains("phase: Pending 0 ms → Running 50 ms → Succeeded 1.07 s"));
    assert!(text.contains("exit 0"));
    assert!(text.contains("SIGTERM sent"));
    assert!(text.contains("startup probe succeeded"));
}

#[test]
fn records_round_trip_as_json_lines() {
    let records = exiting_pod();
    let lines: String = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    assert!(lines.contains("\"transition\":\"SignalSent\",\"signal\":\"SIGTERM\""));
    assert!(lines.contains("\"restartCount\":0"));
    let back = podrun_timeline::parse_lines(&(lines + "not json\n\n"));
    assert_eq!(back, records);
}
