//! A [`Chart`] as a self-contained SVG document: no scripts, no external fonts or
//! images, only shapes and text in the viewer's own sans-serif font.

use std::fmt::Write;

use podrun_model::PodPhase;

use crate::axis::Axis;
use crate::chart::{Chart, Lane, MarkKind, Run};
use crate::record::{ContainerKind, Probe};

/// Width of the whole picture (px).
pub const WIDTH: f64 = 1100.0;
/// Left edge of the plot area (px); lane names sit to its left.
pub const PLOT_X: f64 = 200.0;
/// Width of the plot area (px); exit labels may run past it on the right.
pub const PLOT_W: f64 = 820.0;
/// Height of one lane (px).
pub const LANE_H: f64 = 34.0;
/// Height of a group heading (init containers, sidecars, containers).
pub const GROUP_H: f64 = 18.0;
/// Top of a running bar within its lane.
pub const BAR_TOP: f64 = 11.0;
/// Height of a running bar.
pub const BAR_H: f64 = 14.0;
/// The narrowest bar drawn, so that a short instance stays visible.
pub const MIN_BAR_W: f64 = 4.0;
/// Space above the first group: title, phase band and time axis.
const HEADER_H: f64 = 84.0;
/// Space below the last lane: legend.
const FOOTER_H: f64 = 46.0;

/// The fill of running bars, by container kind.
pub fn bar_colour(kind: ContainerKind) -> &'static str {
    match kind {
        ContainerKind::Init => "#4e79a7",
        ContainerKind::Sidecar => "#59a14f",
        ContainerKind::Regular => "#f28e2b",
    }
}

const PRESTOP: &str = "#edc948";
const BACKOFF: &str = "#9c9c9c";
const READY: &str = "#2ca25f";
const FAILURE: &str = "#e15759";
const TERM: &str = "#b07aa1";
const TEXT: &str = "#222222";
const GRID: &str = "#e4e4e4";

/// Where things go in one chart's picture.
#[derive(Clone, Debug)]
pub struct Geometry {
    /// The time axis.
    pub axis: Axis,
    /// Top of the chart within the document.
    pub top: f64,
    /// Top of each lane, in lane order.
    pub lane_tops: Vec<f64>,
    /// Top of each group heading: (kind, y).
    pub group_tops: Vec<(ContainerKind, f64)>,
    /// The chart's total height.
    pub height: f64,
}

impl Geometry {
    /// Lays out `chart` with its top at `top`.
    pub fn new(chart: &Chart, top: f64) -> Self {
        let axis = Axis::new(chart.end_ms);
        let mut y = top + HEADER_H;
        let mut lane_tops = Vec::new();
        let mut group_tops = Vec::new();
        let mut group = None;
        for lane in &chart.lanes {
            if group != Some(lane.kind) {
                group = Some(lane.kind);
                group_tops.push((lane.kind, y));
                y += GROUP_H;
            }
            lane_tops.push(y);
            y += LANE_H;
        }
        Self {
            axis,
            top,
            lane_tops,
            group_tops,
            height: y - top + FOOTER_H,
        }
    }

    /// The x coordinate of `ms`.
    pub fn x(&self, ms: f64) -> f64 {
        PLOT_X + self.axis.fraction(ms) * PLOT_W
    }

    /// The rectangle (x, y, width, height) of a run on lane `lane`.
    pub fn run_rect(&self, lane: usize, run: &Run) -> (f64, f64, f64, f64) {
        let x = self.x(run.start);
        let w = (self.x(run.end) - x).max(MIN_BAR_W);
        (x, self.lane_tops[lane] + BAR_TOP, w, BAR_H)
    }

    /// Bottom of the lanes.
    fn lanes_bottom(&self) -> f64 {
        self.top + self.height - FOOTER_H
    }
}

/// Draws the charts one below the other.
pub fn render(charts: &[Chart]) -> String {
    let mut body = String::new();
    let mut top = 0.0;
    for chart in charts {
        let g = Geometry::new(chart, top);
        draw_chart(&mut body, chart, &g);
        top += g.height;
    }
    let height = top.max(1.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"DejaVu Sans, Liberation Sans, Arial, sans-serif\" \
         font-size=\"11\">"
    );
    out.push_str(
        "<defs><pattern id=\"stopping\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" \
         patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#000000\" fill-opacity=\"0.12\"/>\
         <line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#000000\" stroke-opacity=\"0.45\" stroke-width=\"2.5\"/>\
         </pattern></defs>\n",
    );
    let _ = writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>"
    );
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

fn draw_chart(out: &mut String, chart: &Chart, g: &Geometry) {
    let restarts: usize = chart.lanes.iter().map(Lane::restarts).sum();
    let _ = writeln!(
        out,
        "<text x=\"12\" y=\"{:.1}\" font-size=\"15\" font-weight=\"bold\" fill=\"{TEXT}\">pod {}</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{TEXT}\">{} · {} container restart{}</text>",
        g.top + 22.0,
        escape(&chart.pod),
        PLOT_X + PLOT_W,
        g.top + 22.0,
        escape(&Axis::label(chart.end_ms)),
        restarts,
        if restarts == 1 { "" } else { "s" },
    );
    draw_phases(out, chart, g);
    draw_axis(out, g);
    for (kind, y) in &g.group_tops {
        let title = match kind {
            ContainerKind::Init => "init containers",
            ContainerKind::Sidecar => "sidecars (restartPolicy: Always)",
            ContainerKind::Regular => "containers",
        };
        let _ = writeln!(
            out,
            "<text x=\"12\" y=\"{:.1}\" font-size=\"10\" font-style=\"italic\" fill=\"#666666\">{title}</text>\
             <line x1=\"12\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#cccccc\"/>",
            y + 12.0,
            y + GROUP_H - 2.0,
            PLOT_X + PLOT_W,
            y + GROUP_H - 2.0,
        );
    }
    for (i, lane) in chart.lanes.iter().enumerate() {
        draw_lane(out, g, i, lane);
    }
    if let Some(ms) = chart.deletion_ms {
        let x = g.x(ms);
        let _ = writeln!(
            out,
            "<line class=\"deletion\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{FAILURE}\" \
             stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{FAILURE}\">deleted</text>",
            g.top + HEADER_H - 14.0,
            g.lanes_bottom(),
            x + 3.0,
            g.top + HEADER_H - 16.0,
        );
    }
    draw_legend(out, g);
}

fn draw_phases(out: &mut String, chart: &Chart, g: &Geometry) {
    let y = g.top + 32.0;
    let _ = writeln!(
        out,
        "<text x=\"12\" y=\"{:.1}\" fill=\"#666666\">phase</text>",
        y + 12.0
    );
    for p in &chart.phases {
        let colour = match PodPhase::from_api(&p.phase) {
            Some(PodPhase::Pending) => "#d9d4cf",
            Some(PodPhase::Running) => "#b8dcb0",
            Some(PodPhase::Succeeded) => "#a9c4e0",
            Some(PodPhase::Failed) => "#f3b0b1",
            Some(PodPhase::Unknown) | None => "#e0e0e0",
        };
        // The last phase lasts to the end of the axis.
        let end = if p.end >= chart.end_ms {
            g.axis.end
        } else {
            p.end
        };
        let x = g.x(p.start);
        let w = (g.x(end) - x).max(1.0);
        let _ = writeln!(
            out,
            "<rect class=\"phase\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"16\" fill=\"{colour}\"/>"
        );
        let label = escape(&p.phase);
        if w >= 7.0 * p.phase.len() as f64 {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{TEXT}\">{label}</text>",
                x + 3.0,
                y + 12.0
            );
        } else {
            let _ = writeln!(out, "<title>{label}</title>");
        }
    }
}

fn draw_axis(out: &mut String, g: &Geometry) {
    let label_y = g.top + 66.0;
    let bottom = g.lanes_bottom();
    for t in g.axis.ticks() {
        let x = g.x(t);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"{GRID}\"/>\
             <text x=\"{x:.1}\" y=\"{label_y:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#555555\">{}</text>",
            label_y + 4.0,
            escape(&g.axis.tick_label(t)),
        );
    }
}

fn draw_lane(out: &mut String, g: &Geometry, i: usize, lane: &Lane) {
    let top = g.lane_tops[i];
    let name = escape(&lane.name);
    let _ = writeln!(
        out,
        "<text class=\"lane\" x=\"24\" y=\"{:.1}\" fill=\"{TEXT}\">{name}</text>",
        top + BAR_TOP + 11.0
    );
    for b in &lane.backoffs {
        let (x1, x2) = (g.x(b.start), g.x(b.end));
        let y = top + BAR_TOP + BAR_H / 2.0;
        let _ = writeln!(
            out,
            "<line class=\"backoff\" x1=\"{x1:.1}\" y1=\"{y:.1}\" x2=\"{x2:.1}\" y2=\"{y:.1}\" stroke=\"{BACKOFF}\" \
             stroke-width=\"2\" stroke-dasharray=\"3 3\"/>"
        );
        if x2 - x1 > 48.0 {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\" fill=\"#777777\">back-off</text>",
                (x1 + x2) / 2.0,
                y - 3.0
            );
        }
    }
    for s in &lane.ready {
        let x = g.x(s.start);
        let w = (g.x(s.end) - x).max(1.0);
        let _ = writeln!(
            out,
            "<rect class=\"ready\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"3\" fill=\"{READY}\"/>",
            top + BAR_TOP + BAR_H + 2.0
        );
    }
    for (n, run) in lane.runs.iter().enumerate() {
        let (x, y, w, h) = g.run_rect(i, run);
        let _ = writeln!(
            out,
            "<rect class=\"run\" data-container=\"{name}\" data-restart=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" \
             width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{}\"{}><title>{name} #{}: {} → {}</title></rect>",
            run.restart_count,
            bar_colour(lane.kind),
            // A thin white edge keeps back-to-back instances apart.
            if w > 8.0 {
                " stroke=\"#ffffff\" stroke-width=\"1\""
            } else {
                ""
            },
            run.restart_count,
            escape(&Axis::label(run.start)),
            escape(&Axis::label(run.end)),
        );
        if let Some(p) = run.pre_stop {
            let px = g.x(p.start);
            let pw = (g.x(p.end) - px).max(1.5);
            let _ = writeln!(
                out,
                "<rect class=\"prestop\" x=\"{px:.1}\" y=\"{y:.1}\" width=\"{pw:.1}\" height=\"{:.1}\" fill=\"{PRESTOP}\"/>",
                h / 2.0
            );
        }
        if let Some(s) = run.stopping {
            let sx = g.x(s.start);
            let sw = (g.x(s.end) - sx).max(1.5);
            let _ = writeln!(
                out,
                "<rect class=\"stopping\" x=\"{sx:.1}\" y=\"{y:.1}\" width=\"{sw:.1}\" height=\"{h:.1}\" fill=\"url(#stopping)\"/>"
            );
        }
        if w > 22.0 && run.restart_count > 0 {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"#ffffff\">#{}</text>",
                x + 3.0,
                y + 10.5,
                run.restart_count
            );
        }
        if let Some(exit) = &run.exit {
            let label = match exit.signal {
                Some(9) => format!("{} SIGKILL", exit.code),
                Some(15) => format!("{} SIGTERM", exit.code),
                Some(s) => format!("{} signal {s}", exit.code),
                None => exit.code.to_string(),
            };
            // The label goes after the bar when there is room before the next run.
            let room = lane
                .runs
                .get(n + 1)
                .map_or(f64::INFINITY, |next| g.x(next.start) - (x + w));
            let colour = if exit.code == 0 { "#444444" } else { FAILURE };
            if room >= 6.0 * label.len() as f64 + 4.0 {
                let _ = writeln!(
                    out,
                    "<text class=\"exit\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{colour}\">{}</text>",
                    x + w + 3.0,
                    y + 11.0,
                    escape(&label)
                );
            } else {
                let _ = writeln!(
                    out,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"2\" height=\"4\" fill=\"{colour}\"><title>exit {}</title></rect>",
                    x + w - 1.0,
                    y + h,
                    escape(&label)
                );
            }
        }
    }
    for m in &lane.marks {
        draw_mark(out, g.x(m.ms), top, &m.kind);
    }
}

fn draw_mark(out: &mut String, x: f64, top: f64, kind: &MarkKind) {
    let y = top + 5.0;
    match kind {
        MarkKind::Probe { probe, success } => {
            let colour = if *success { READY } else { FAILURE };
            let letter = match probe {
                Probe::Startup => "S",
                Probe::Readiness => "R",
                Probe::Liveness => "L",
            };
            let _ = writeln!(
                out,
                "<circle class=\"probe\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{colour}\"><title>{} probe {}</title></circle>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"7\" fill=\"{colour}\">{letter}</text>",
                probe.as_str(),
                if *success { "succeeded" } else { "failed" },
                x + 3.5,
                y + 2.5,
            );
        }
        MarkKind::PostStart { success } => {
            let colour = if *success { "#7b4ea7" } else { FAILURE };
            let _ = writeln!(
                out,
                "<path class=\"poststart\" d=\"M{x:.1} {:.1} l3.5 3.5 l-3.5 3.5 l-3.5 -3.5 z\" fill=\"{colour}\"><title>postStart {}</title></path>",
                y - 3.5,
                if *success { "done" } else { "failed" }
            );
        }
        MarkKind::StartupDone => {
            let _ = writeln!(
                out,
                "<path class=\"started\" d=\"M{x:.1} {:.1} l4 7 l-8 0 z\" fill=\"{READY}\"><title>started</title></path>",
                y - 4.0
            );
        }
        MarkKind::Term | MarkKind::Kill => {
            let (colour, width, title) = match kind {
                MarkKind::Kill => (FAILURE, 2.5, "SIGKILL"),
                _ => (TERM, 1.5, "SIGTERM"),
            };
            let _ = writeln!(
                out,
                "<line class=\"signal\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" \
                 stroke-width=\"{width}\"><title>{title}</title></line>",
                top + BAR_TOP - 3.0,
                top + BAR_TOP + BAR_H + 3.0
            );
        }
        MarkKind::StartFailed { reason } => {
            let _ = writeln!(
                out,
                "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" font-weight=\"bold\" fill=\"{FAILURE}\">×<title>{}</title></text>",
                top + BAR_TOP + 11.0,
                escape(reason)
            );
        }
    }
}

fn draw_legend(out: &mut String, g: &Geometry) {
    let y = g.lanes_bottom() + 18.0;
    let mut x = 24.0;
    let mut item = |out: &mut String, swatch: String, label: &str| {
        out.push_str(
            &swatch
                .replace("{x}", &format!("{x:.1}"))
                .replace("{cx}", &format!("{:.1}", x + 7.0)),
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#555555\">{label}</text>",
            x + 18.0,
            y + 9.0
        );
        x += 22.0 + 6.0 * label.len() as f64;
    };
    let bar = |colour: &str| {
        format!("<rect x=\"{{x}}\" y=\"{y:.1}\" width=\"14\" height=\"10\" fill=\"{colour}\"/>\n")
    };
    item(out, bar(bar_colour(ContainerKind::Init)), "init");
    item(out, bar(bar_colour(ContainerKind::Sidecar)), "sidecar");
    item(out, bar(bar_colour(ContainerKind::Regular)), "container");
    item(out, bar(PRESTOP), "preStop");
    item(
        out,
        format!(
            "<rect x=\"{{x}}\" y=\"{y:.1}\" width=\"14\" height=\"10\" fill=\"url(#stopping)\"/>\n"
        ),
        "SIGTERM → exit",
    );
    item(
        out,
        format!(
            "<rect x=\"{{x}}\" y=\"{:.1}\" width=\"14\" height=\"2\" fill=\"{BACKOFF}\"/>\n",
            y + 4.0
        ),
        "back-off",
    );
    item(
        out,
        format!(
            "<rect x=\"{{x}}\" y=\"{:.1}\" width=\"14\" height=\"3\" fill=\"{READY}\"/>\n",
            y + 4.0
        ),
        "ready",
    );
    item(
        out,
        format!(
            "<circle cx=\"{{cx}}\" cy=\"{:.1}\" r=\"3\" fill=\"{READY}\"/>\n",
            y + 5.0
        ),
        "probe passed (S/R/L)",
    );
    item(
        out,
        format!(
            "<circle cx=\"{{cx}}\" cy=\"{:.1}\" r=\"3\" fill=\"{FAILURE}\"/>\n",
            y + 5.0
        ),
        "probe failed",
    );
}

/// Escapes text for SVG element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}
