//! A [`Chart`] as text for a terminal: one row of cells per lane, then every
//! transition in order.

use std::fmt::Write;

use crate::axis::Axis;
use crate::chart::{Chart, Lane};
use crate::record::{ContainerKind, Record, Transition};

/// Cells in a lane's row.
pub const COLUMNS: usize = 60;

/// Draws the chart, followed by the records it was made from.
pub fn render(chart: &Chart, records: &[Record]) -> String {
    let mut out = String::new();
    let restarts: usize = chart.lanes.iter().map(Lane::restarts).sum();
    let _ = writeln!(
        out,
        "pod {} · {} · {} container restart{}",
        chart.pod,
        Axis::label(chart.end_ms),
        restarts,
        if restarts == 1 { "" } else { "s" }
    );
    let phases: Vec<String> = chart
        .phases
        .iter()
        .map(|p| format!("{} {}", p.phase, Axis::label(p.start)))
        .collect();
    let _ = writeln!(out, "phase: {}", phases.join(" → "));
    let axis = Axis::new(chart.end_ms);
    let name_w = chart
        .lanes
        .iter()
        .map(|l| l.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(16);
    let end_label = Axis::label(axis.end);
    let _ = writeln!(
        out,
        "\n  {:name_w$}  0{}{end_label}",
        "",
        " ".repeat(COLUMNS.saturating_sub(1 + end_label.chars().count()))
    );
    let mut group = None;
    for lane in &chart.lanes {
        if group != Some(lane.kind) {
            group = Some(lane.kind);
            let title = match lane.kind {
                ContainerKind::Init => "init containers",
                ContainerKind::Sidecar => "sidecars",
                ContainerKind::Regular => "containers",
            };
            let _ = writeln!(out, "  [{title}]");
        }
        let cells = cells(lane, &axis);
        let exits: Vec<String> = lane
            .runs
            .iter()
            .filter_map(|r| r.exit.as_ref())
            .map(|e| match e.signal {
                Some(s) => format!("{} (signal {s})", e.code),
                None => e.code.to_string(),
            })
            .collect();
        let tail = if exits.is_empty() {
            String::new()
        } else {
            format!("  exit {}", exits.join(","))
        };
        let _ = writeln!(out, "  {:name_w$}  {cells}{tail}", lane.name);
    }
    let _ = writeln!(
        out,
        "\n  █ running  ▒ preStop  ▓ SIGTERM→exit  · back-off  × start failed\n"
    );
    let _ = writeln!(out, "{:>10}  {:name_w$}  TRANSITION", "TIME", "CONTAINER");
    for r in records {
        let container = match (&r.container, r.restart_count) {
            (Some(c), Some(n)) if n > 0 => format!("{c} #{n}"),
            (Some(c), _) => c.clone(),
            (None, _) => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:>10}  {container:name_w$}  {}",
            Axis::label(r.ms),
            describe(&r.transition)
        );
    }
    out
}

/// One lane's row of cells.
fn cells(lane: &Lane, axis: &Axis) -> String {
    let cell_ms = axis.end / COLUMNS as f64;
    let covers = |start: f64, end: f64, i: usize| {
        let (c0, c1) = (i as f64 * cell_ms, (i + 1) as f64 * cell_ms);
        start < c1 && end >= c0
    };
    (0..COLUMNS)
        .map(|i| {
            if lane.marks.iter().any(|m| {
                matches!(m.kind, crate::chart::MarkKind::StartFailed { .. })
                    && covers(m.ms, m.ms, i)
            }) {
                return '×';
            }
            for run in &lane.runs {
                if let Some(s) = run.stopping
                    && covers(s.start, s.end, i)
                    && run.pre_stop.is_none_or(|p| !covers(p.start, p.end, i))
                {
                    return '▓';
                }
                if let Some(p) = run.pre_stop
                    && covers(p.start, p.end, i)
                {
                    return '▒';
                }
                if covers(run.start, run.end, i) {
                    return '█';
                }
            }
            if lane.backoffs.iter().any(|b| covers(b.start, b.end, i)) {
                return '·';
            }
            ' '
        })
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// A transition in words.
pub fn describe(t: &Transition) -> String {
    match t {
        Transition::Scheduled { uid, containers } => {
            let names: Vec<String> = containers
                .iter()
                .map(|c| format!("{} ({})", c.name, c.kind.as_str()))
                .collect();
            format!("Scheduled uid={uid}: {}", names.join(", "))
        }
        Transition::Phase { phase } => format!("phase {phase}"),
        Transition::DeletionRequested {
            grace_period_seconds,
        } => format!("deleted, grace period {grace_period_seconds}s"),
        Transition::Created => "created".into(),
        Transition::Started => "started".into(),
        Transition::StartFailed { reason, message } => {
            format!("start failed: {reason}: {message}")
        }
        Transition::PostStartDone { error: None } => "postStart done".into(),
        Transition::PostStartDone { error: Some(e) } => format!("postStart failed: {e}"),
        Transition::ProbeResult { probe, success } => format!(
            "{} probe {}",
            probe.as_str(),
            if *success { "succeeded" } else { "failed" }
        ),
        Transition::StartupDone { started } => format!("started={started}"),
        Transition::Ready { ready } => format!("ready={ready}"),
        Transition::PreStopStarted => "preStop started".into(),
        Transition::PreStopDone { error: None } => "preStop done".into(),
        Transition::PreStopDone { error: Some(e) } => format!("preStop failed: {e}"),
        Transition::PreStopCancelled => "preStop cancelled (grace period over)".into(),
        Transition::SignalSent { signal } => format!("{signal} sent"),
        Transition::Exited {
            exit_code,
            signal,
            reason,
        } => match signal {
            Some(s) => format!("exited {exit_code} (signal {s}, {reason})"),
            None => format!("exited {exit_code} ({reason})"),
        },
        Transition::BackOff { message } => format!("back-off: {message}"),
    }
}
