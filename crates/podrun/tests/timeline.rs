//! Lifecycle records, Events and timelines from real `podrun run`s. These tests need
//! root (pods run in their own PID and mount namespaces); the browser check needs
//! Debian's `chromium` (scripts/setup.sh installs it).

mod common;

use std::path::Path;

use common::{Podrun, stderr};
use k8s_openapi::api::core::v1::Event;
use podrun_timeline::{Chart, ContainerKind, Record, Transition};

const EXITING_POD: &str = include_str!("../../../examples/exiting-pod.yaml");

/// A sidecar that crashes on its first two runs (the second restart waits out a 10 s
/// back-off) and has a preStop hook, next to an app whose readiness probe fails until
/// it creates a file.
const CRASHING_SIDECAR: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: crashy
spec:
  restartPolicy: Never
  volumes:
    - name: data
      emptyDir: {}
  initContainers:
    - name: flaky-proxy
      image: docker.io/library/busybox:1.36
      restartPolicy: Always
      volumeMounts: [{name: data, mountPath: /data}]
      command:
        - sh
        - -c
        - |
          n=$(cat /data/runs 2>/dev/null || echo 0)
          echo $((n + 1)) > /data/runs
          [ "$n" -lt 2 ] && exit 3
          trap 'exit 0' TERM
          while :; do sleep 1 & wait $!; done
      lifecycle:
        preStop:
          exec:
            command: ["sh", "-c", "sleep 0.3"]
  containers:
    - name: app
      image: docker.io/library/busybox:1.36
      volumeMounts: [{name: data, mountPath: /data}]
      command: ["sh", "-c", "sleep 2; touch /data/ready; sleep 11"]
      readinessProbe:
        exec:
          command: ["test", "-f", "/data/ready"]
        periodSeconds: 1
"#;

fn records(path: &Path) -> Vec<Record> {
    podrun_timeline::parse_lines(&std::fs::read_to_string(path).expect("lifecycle.jsonl"))
}

fn events(path: &Path) -> Vec<Event> {
    podrun_node::events::latest_events(&std::fs::read_to_string(path).expect("events.jsonl"))
}

/// The first record of `container` (or of the pod, for `None`) whose transition is
/// named `name`.
fn at(records: &[Record], container: Option<&str>, name: &str) -> f64 {
    records
        .iter()
        .find(|r| r.container.as_deref() == container && r.transition.name() == name)
        .unwrap_or_else(|| panic!("no {name} for {container:?} in {records:#?}"))
        .ms
}

fn reasons(events: &[Event], field_path: Option<&str>) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.involved_object.field_path.as_deref() == field_path)
        .map(|e| e.reason.clone().unwrap_or_default())
        .collect()
}

#[test]
fn exiting_pod_records_its_lifecycle_events_and_timeline() {
    let podrun = Podrun::new();
    let out_dir = tempfile::tempdir().unwrap();
    let all = out_dir.path().join("all.jsonl");
    let svg = out_dir.path().join("run.svg");
    let out = podrun.run_manifest(
        EXITING_POD,
        &[
            "--events",
            all.to_str().unwrap(),
            "--timeline",
            svg.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let dir = podrun.pod_dir("exiting-pod");
    let recs = records(&dir.join("lifecycle.jsonl"));

    // Lanes: the init step, the proxy sidecar, the sleep app — in that order.
    let Transition::Scheduled { containers, .. } = &recs[0].transition else {
        panic!("first record is {:?}", recs[0]);
    };
    let lanes: Vec<(&str, ContainerKind)> = containers
        .iter()
        .map(|c| (c.name.as_str(), c.kind))
        .collect();
    assert_eq!(
        lanes,
        [
            ("istio-init", ContainerKind::Init),
            ("istio-proxy", ContainerKind::Sidecar),
            ("sleep", ContainerKind::Regular)
        ]
    );
    // Monotonic times, in the native-sidecar order.
    assert!(recs.windows(2).all(|w| w[0].ms <= w[1].ms), "{recs:#?}");
    let init_exit = at(&recs, Some("istio-init"), "Exited");
    let proxy_start = at(&recs, Some("istio-proxy"), "Started");
    let proxy_probe = at(&recs, Some("istio-proxy"), "ProbeResult");
    let app_start = at(&recs, Some("sleep"), "Started");
    let app_exit = at(&recs, Some("sleep"), "Exited");
    let term = at(&recs, Some("istio-proxy"), "SignalSent");
    let proxy_exit = at(&recs, Some("istio-proxy"), "Exited");
    assert!(init_exit <= proxy_start && proxy_start <= proxy_probe);
    assert!(proxy_probe <= app_start && app_start < app_exit);
    assert!(app_exit <= term && term <= proxy_exit);
    // The app sleeps one second.
    let ran = app_exit - app_start;
    assert!((950.0..5000.0).contains(&ran), "app ran {ran} ms");
    let phases: Vec<&str> = recs
        .iter()
        .filter_map(|r| match &r.transition {
            Transition::Phase { phase } => Some(phase.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(phases, ["Pending", "Running", "Succeeded"]);
    assert!(
        recs.iter()
            .any(|r| r.container.as_deref() == Some("istio-proxy")
                && r.transition
                    == Transition::SignalSent {
                        signal: "SIGTERM".into()
                    })
    );

    // Events as the kubelet posts them, one per container step.
    let evs = events(&dir.join("events.jsonl"));
    assert_eq!(reasons(&evs, None), ["Scheduled"]);
    assert_eq!(
        reasons(&evs, Some("spec.initContainers{istio-init}")),
        ["Pulled", "Created", "Started"]
    );
    assert_eq!(
        reasons(&evs, Some("spec.initContainers{istio-proxy}")),
        ["Pulled", "Created", "Started", "Killing"]
    );
    assert_eq!(
        reasons(&evs, Some("spec.containers{sleep}")),
        ["Pulled", "Created", "Started"]
    );
    let killing = evs
        .iter()
        .find(|e| e.reason.as_deref() == Some("Killing"))
        .unwrap();
    assert_eq!(
        killing.message.as_deref(),
        Some("Stopping container istio-proxy")
    );
    assert_eq!(killing.type_.as_deref(), Some("Normal"));
    let pulled = evs
        .iter()
        .find(|e| e.reason.as_deref() == Some("Pulled"))
        .unwrap();
    assert_eq!(
        pulled.message.as_deref(),
        Some(
            "Container image \"docker.io/istio/proxyv2:1.24.0\" already present on machine and can be accessed by the pod"
        )
    );
    let scheduled = &evs[0];
    assert_eq!(
        scheduled
            .source
            .as_ref()
            .and_then(|s| s.component.as_deref()),
        Some("default-scheduler")
    );
    for e in &evs {
        assert_eq!(e.count, Some(1));
        assert_eq!(e.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(e.involved_object.name.as_deref(), Some("exiting-pod"));
        assert!(
            e.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with("exiting-pod.")
        );
        assert!(e.first_timestamp.is_some() && e.last_timestamp.is_some());
    }

    // --events holds both streams, line for line.
    let all_lines = std::fs::read_to_string(&all).unwrap();
    let own = std::fs::read_to_string(dir.join("lifecycle.jsonl")).unwrap()
        + &std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let mut a: Vec<&str> = all_lines.lines().collect();
    let mut b: Vec<&str> = own.lines().collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);

    // `podrun timeline` draws the same chart as `run --timeline`, and from --events.
    let run_svg = std::fs::read_to_string(&svg).unwrap();
    let again = out_dir.path().join("again.svg");
    let out = podrun.run(&["timeline", "exiting-pod", "-o", again.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), run_svg);
    let out = podrun.run(&[
        "timeline",
        "exiting-pod",
        "--from",
        all.to_str().unwrap(),
        "--format",
        "svg",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), run_svg);
    let pos = |n: &str| run_svg.find(&format!("data-container=\"{n}\"")).unwrap();
    assert!(pos("istio-init") < pos("istio-proxy") && pos("istio-proxy") < pos("sleep"));

    let out = podrun.run(&["timeline", "exiting-pod"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("pod default/exiting-pod"), "{text}");
    assert!(text.contains("phase: Pending"), "{text}");
    assert!(text.contains("istio-proxy       SIGTERM sent"), "{text}");
    let out = podrun.run(&["timeline", "nothere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("pods \"nothere\" not found"));
}

#[test]
fn crash_looping_sidecar_gets_one_bar_per_instance_and_back_off_events() {
    let podrun = Podrun::new();
    let out = podrun.run_manifest(CRASHING_SIDECAR, &["--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let dir = podrun.pod_dir("crashy");
    let recs = records(&dir.join("lifecycle.jsonl"));
    let chart = Chart::from_records("default/crashy", &recs);
    let proxy = &chart.lanes[0];
    assert_eq!(proxy.name, "flaky-proxy");
    assert_eq!(proxy.kind, ContainerKind::Sidecar);
    // Two crashes (exit 3), then a run stopped at the end.
    let exits: Vec<i32> = proxy
        .runs
        .iter()
        .map(|r| r.exit.as_ref().map_or(-1, |e| e.code))
        .collect();
    assert_eq!(exits, [3, 3, 0]);
    let restarts: Vec<i32> = proxy.runs.iter().map(|r| r.restart_count).collect();
    assert_eq!(restarts, [0, 1, 2]);
    // The first restart is immediate; the second waits out the 10 s back-off.
    assert_eq!(proxy.backoffs.len(), 1, "{recs:#?}");
    let gap = proxy.runs[2].start - proxy.runs[1].end;
    assert!((9_500.0..13_000.0).contains(&gap), "back-off gap {gap} ms");
    assert!(proxy.backoffs[0].start >= proxy.runs[1].end);
    // The last instance's preStop ran before SIGTERM, and the shading covers both.
    let last = &proxy.runs[2];
    let pre_stop = last.pre_stop.expect("preStop interval");
    let stopping = last.stopping.expect("stopping interval");
    assert!(pre_stop.end - pre_stop.start >= 250.0, "{pre_stop:?}");
    assert_eq!(stopping.start, pre_stop.start);
    assert!(
        recs.iter()
            .any(|r| r.transition == Transition::PreStopDone { error: None })
    );

    let evs = events(&dir.join("events.jsonl"));
    let uid = recs
        .iter()
        .find_map(|r| match &r.transition {
            Transition::Scheduled { uid, .. } => Some(uid.clone()),
            _ => None,
        })
        .unwrap();
    let backoff = evs
        .iter()
        .find(|e| e.reason.as_deref() == Some("BackOff"))
        .expect("BackOff event");
    assert_eq!(backoff.type_.as_deref(), Some("Warning"));
    assert_eq!(
        backoff.message.clone().unwrap(),
        format!("Back-off restarting failed container flaky-proxy in pod crashy_default({uid})")
    );
    // Three starts of the sidecar: one Started Event counted three times.
    let started = evs
        .iter()
        .find(|e| {
            e.reason.as_deref() == Some("Started")
                && e.involved_object.field_path.as_deref()
                    == Some("spec.initContainers{flaky-proxy}")
        })
        .unwrap();
    assert_eq!(started.count, Some(3));
    assert!(started.last_timestamp > started.first_timestamp);
    // The app's readiness probe failed until it made its file: one Unhealthy Event,
    // counted.
    let unhealthy: Vec<&Event> = evs
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Unhealthy"))
        .collect();
    assert_eq!(unhealthy.len(), 1, "{unhealthy:#?}");
    assert!(
        unhealthy[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("Readiness probe failed: ")
    );
    assert!(unhealthy[0].count.unwrap() >= 1);
    let app = &chart.lanes[1];
    assert!(!app.ready.is_empty(), "app became ready");
    assert!(app.ready[0].start - app.runs[0].start >= 1_900.0);

    let svg = podrun_timeline::render_svg(&recs);
    assert_eq!(
        svg.matches("data-container=\"flaky-proxy\"").count(),
        3,
        "one bar per instance"
    );
    assert_eq!(svg.matches("class=\"backoff\"").count(), 1);
    assert!(svg.contains("class=\"prestop\""));
}

/// A `<rect class="run">` of the SVG: container, x, y, width, height, fill.
struct Bar {
    container: String,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    fill: [u8; 3],
}

fn attr<'a>(element: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=\"");
    let start = element
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {element}"))
        + key.len();
    let len = element[start..].find('"').unwrap();
    &element[start..start + len]
}

fn bars(svg: &str) -> Vec<Bar> {
    svg.match_indices("<rect class=\"run\"")
        .map(|(i, _)| {
            let element = &svg[i..i + svg[i..].find('>').unwrap()];
            let num = |n: &str| attr(element, n).parse::<f64>().unwrap();
            let hex = attr(element, "fill").trim_start_matches('#');
            let channel = |k: usize| u8::from_str_radix(&hex[k..k + 2], 16).unwrap();
            Bar {
                container: attr(element, "data-container").to_string(),
                x: num("x"),
                y: num("y"),
                w: num("width"),
                h: num("height"),
                fill: [channel(0), channel(2), channel(4)],
            }
        })
        .collect()
}

/// Renders `svg` in headless Chromium at 1:1 scale and returns (width, height, RGB).
fn screenshot(svg: &Path, width: u32, height: u32) -> (u32, u32, Vec<u8>) {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Debian's chromium is needed for the browser check: bash scripts/setup.sh");
    let dir = tempfile::tempdir().unwrap();
    let png_path = dir.path().join("shot.png");
    let mut child = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(format!("file://{}", svg.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium took over 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).expect("chromium wrote a screenshot"),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let rgb: Vec<u8> = buf[..info.buffer_size()]
        .chunks(channels)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    if let Some(keep) = std::env::var_os("PODRUN_KEEP_SCREENSHOT") {
        std::fs::copy(&png_path, keep).unwrap();
    }
    (info.width, info.height, rgb)
}

#[test]
fn exiting_pod_timeline_renders_in_chromium_where_the_svg_says() {
    let podrun = Podrun::new();
    let out_dir = tempfile::tempdir().unwrap();
    let svg_path = out_dir.path().join("exiting-pod.svg");
    let out = podrun.run_manifest(EXITING_POD, &["--timeline", svg_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let head = &svg[..svg.find('>').unwrap()];
    let width: f64 = attr(head, "width").parse().unwrap();
    let height: f64 = attr(head, "height").parse().unwrap();
    let (w, h, rgb) = screenshot(&svg_path, width as u32, height.ceil() as u32);
    assert_eq!((w, h), (width as u32, height.ceil() as u32));
    let pixel = |x: f64, y: f64| -> [u8; 3] {
        let (x, y) = (x.round() as usize, y.round() as usize);
        let i = (y * w as usize + x) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    let near = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(p, q)| p.abs_diff(q) <= 16);

    // Not blank: a fair share of the picture is drawn.
    let drawn = rgb.chunks(3).filter(|p| p.iter().any(|c| *c < 235)).count();
    let share = drawn as f64 / (w * h) as f64;
    assert!(
        share > 0.04,
        "only {:.1}% of the pixels are drawn",
        share * 100.0
    );

    // The lanes, top to bottom: istio-init, istio-proxy, app.
    let bars = bars(&svg);
    let names: Vec<&str> = bars.iter().map(|b| b.container.as_str()).collect();
    assert_eq!(names, ["istio-init", "istio-proxy", "sleep"]);
    assert!(bars[0].y < bars[1].y && bars[1].y < bars[2].y);
    assert_eq!(bars[0].fill, [0x4e, 0x79, 0xa7]);
    for bar in &bars {
        let (cx, cy) = (bar.x + bar.w / 2.0, bar.y + bar.h / 2.0);
        // The bar's colour is where the SVG puts the bar…
        for (x, y) in [(cx, cy), (bar.x + 1.5, cy), (cx, bar.y + 2.0)] {
            assert!(
                near(pixel(x, y), bar.fill),
                "{}: {:?} at ({x}, {y}), expected {:?}",
                bar.container,
                pixel(x, y),
                bar.fill
            );
        }
        // …and not just outside it.
        for (x, y) in [
            (cx, bar.y - 4.0),
            (cx, bar.y + bar.h + 8.0),
            (bar.x - 3.0, cy),
        ] {
            assert!(
                !near(pixel(x, y), bar.fill),
                "{}: bar colour outside the bar at ({x}, {y})",
                bar.container
            );
        }
        // The lane's name is drawn left of the plot.
        let dark = (0..180)
            .flat_map(|x| (0..20).map(move |dy| (x as f64, bar.y - 2.0 + dy as f64)))
            .filter(|&(x, y)| pixel(x, y).iter().all(|c| *c < 120))
            .count();
        assert!(
            dark > 10,
            "{}: no label text ({dark} dark pixels)",
            bar.container
        );
    }
    // The app's bar spans its one-second sleep on the axis.
    let axis_ms_per_px = {
        let chart = Chart::from_records(
            "default/exiting-pod",
            &records(&podrun.pod_dir("exiting-pod").join("lifecycle.jsonl")),
        );
        podrun_timeline::svg::Geometry::new(&chart, 0.0).axis.end / podrun_timeline::svg::PLOT_W
    };
    let app_ms = bars[2].w * axis_ms_per_px;
    assert!(
        (950.0..5000.0).contains(&app_ms),
        "app bar covers {app_ms} ms"
    );
}

/// A container whose liveness probe always fails: killed and restarted. The probe
/// waits a second so that the shell has set its TERM trap (a container's PID 1 ignores
/// signals it has no handler for).
const FAILING_LIVENESS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: unlively
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: app
      image: docker.io/library/busybox:1.36
      command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]
      livenessProbe:
        exec:
          command: ["sh", "-c", "echo not alive; exit 1"]
        initialDelaySeconds: 1
        periodSeconds: 1
        failureThreshold: 1
"#;

#[test]
fn failed_liveness_probe_is_unhealthy_then_killing_with_upstreams_message() {
    let podrun = Podrun::new();
    let out = podrun.run_manifest(FAILING_LIVENESS, &["--timeout", "4s"]);
    assert_eq!(out.status.code(), Some(124), "stderr: {}", stderr(&out));
    let dir = podrun.pod_dir("unlively");
    let evs = events(&dir.join("events.jsonl"));
    let find = |reason: &str| {
        evs.iter()
            .find(|e| e.reason.as_deref() == Some(reason))
            .unwrap_or_else(|| panic!("no {reason} in {evs:#?}"))
    };
    let unhealthy = find("Unhealthy");
    assert_eq!(unhealthy.type_.as_deref(), Some("Warning"));
    assert!(
        unhealthy
            .message
            .as_deref()
            .unwrap()
            .starts_with("Liveness probe failed: not alive"),
        "{unhealthy:?}"
    );
    // The first failure restarts the container at once; the second restart waits out
    // the back-off, so the 4 s run sees two failures counted on one Event.
    assert!(unhealthy.count.unwrap() >= 2, "{unhealthy:?}");
    let killing = find("Killing");
    assert_eq!(
        killing.message.as_deref(),
        Some("Container app failed liveness probe, will be restarted")
    );
    assert!(killing.count.unwrap() >= 2, "{killing:?}");
    let recs = records(&dir.join("lifecycle.jsonl"));
    let chart = Chart::from_records("default/unlively", &recs);
    assert!(chart.lanes[0].runs.len() >= 2, "{recs:#?}");
    assert!(chart.deletion_ms.is_some());
}
