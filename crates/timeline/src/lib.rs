//! A pod's lifecycle as a picture: lifecycle records (JSON lines the node writes to
//! `<pod dir>/lifecycle.jsonl`) in, a Gantt chart out — SVG for browsers and documents,
//! text for terminals.
//!
//! This crate only transforms data: it reads no file and no clock. One lane per
//! container in spec order, grouped init / sidecar / regular; each container instance
//! is its own bar, crash-loop back-off waits are dashed gaps, preStop and
//! SIGTERM→exit intervals are shaded, probe results and readiness are marks, exit codes
//! are labelled, and the pod's phase runs along the top.

pub mod axis;
pub mod chart;
pub mod record;
pub mod svg;
pub mod text;

pub use chart::Chart;
pub use record::{ContainerKind, ContainerRef, Probe, Record, Transition};

/// Parses JSON lines of records; lines that are not records (blank, or written by a
/// newer podrun) are skipped.
pub fn parse_lines(text: &str) -> Vec<Record> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l.trim()).ok())
        .collect()
}

/// Groups records by pod, in the order pods first appear.
pub fn by_pod(records: &[Record]) -> Vec<(String, Vec<Record>)> {
    let mut out: Vec<(String, Vec<Record>)> = Vec::new();
    for r in records {
        match out.iter_mut().find(|(p, _)| *p == r.pod) {
            Some((_, v)) => v.push(r.clone()),
            None => out.push((r.pod.clone(), vec![r.clone()])),
        }
    }
    out
}

/// Renders every pod in `records` as one SVG document, one chart below the other.
pub fn render_svg(records: &[Record]) -> String {
    let charts: Vec<Chart> = by_pod(records)
        .iter()
        .map(|(pod, rs)| Chart::from_records(pod, rs))
        .collect();
    svg::render(&charts)
}

/// Renders every pod in `records` as text.
pub fn render_text(records: &[Record]) -> String {
    by_pod(records)
        .iter()
        .map(|(pod, rs)| text::render(&Chart::from_records(pod, rs), rs))
        .collect::<Vec<_>>()
        .join("\n")
}
