//! The demo's report: one self-contained HTML file (inline SVG, no script, nothing fetched) with
//! the release over time: the canary's weight, each arm's error rate and p99, the evidence of
//! each comparison against its rollback threshold, and a marker where the verdict fell.

use std::fmt::Write as _;

use super::release::Verdict;
use super::timeline::{Snapshot, Timeline};
use super::view::clock;

/// Series colours. The primary and canary keep theirs on every chart; the browser test looks
/// for them in a screenshot.
pub const PRIMARY_COLOUR: &str = "#1f77b4";
pub const CANARY_COLOUR: &str = "#ff7f0e";
pub const WEIGHT_COLOUR: &str = "#2ca02c";
/// One per comparison, in the Canary's order.
/// None of them red or green, the colours of the verdict markers.
pub const EVIDENCE_COLOURS: [&str; 4] = ["#9467bd", "#17becf", "#8c564b", "#bcbd22"];
const THRESHOLD_COLOUR: &str = "#555555";

pub fn verdict_colour(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Promoted => "#2e7d32",
        Verdict::RolledBack => "#d62728",
        Verdict::Inconclusive => "#6d4c41",
    }
}

const WIDTH: f64 = 1100.0;
const HEIGHT: f64 = 250.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 36.0;

/// The evidence chart's vertical range is cut here: a failing canary's e-value reaches 1e9 and
/// more, and the threshold at 1e2 would be squashed at the bottom.
const MAX_LOG10_E: f64 = 12.0;

struct Series {
    name: String,
    colour: &'static str,
    /// `None` breaks the line: no data at that moment.
    points: Vec<Option<(f64, f64)>>,
    /// Drawn as steps (a weight holds until the next change).
    steps: bool,
}

struct Chart {
    title: String,
    unit: String,
    y_min: f64,
    y_max: f64,
    series: Vec<Series>,
    /// Horizontal reference lines: value and label.
    lines: Vec<(f64, String)>,
}

struct Axis {
    duration: f64,
    /// Where the verdict fell (seconds since the start), its colour and label.
    marker: Option<(f64, &'static str, String)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A tick step near `span / 6` from the 1-2-5 sequence.
fn nice_step(span: f64) -> f64 {
    if !span.is_finite() || span <= 0.0 {
        return 1.0;
    }
    let raw = span / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// Seconds ticks that read as clock times: 10 s, 15 s, 30 s, 1 min, ...
fn time_step(duration: f64) -> f64 {
    [5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|s| duration / s <= 12.0)
        .unwrap_or(1200.0)
}

fn number(value: f64) -> String {
    if value == value.round() {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

impl Chart {
    fn svg(&self, axis: &Axis) -> String {
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let duration = axis.duration.max(1.0);
        let span = (self.y_max - self.y_min).max(f64::EPSILON);
        let x = |t: f64| LEFT + plot_w * (t / duration).clamp(0.0, 1.0);
        let y = |v: f64| TOP + plot_h * (1.0 - ((v - self.y_min) / span).clamp(0.0, 1.0));
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
            escape(&self.title)
        );
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#cccccc"/>"##
        );
        let _ = write!(
            svg,
            r#"<text x="{LEFT}" y="20" class="title">{} <tspan class="unit">({})</tspan></text>"#,
            escape(&self.title),
            escape(&self.unit)
        );
        // Horizontal grid and value labels.
        let step = nice_step(span);
        let mut tick = (self.y_min / step).ceil() * step;
        while tick <= self.y_max + step * 1e-9 {
            let ty = y(tick);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                ty + 4.0,
                number(tick)
            );
            tick += step;
        }
        // Time ticks.
        let tstep = time_step(duration);
        let mut t = 0.0;
        while t <= duration + 1e-9 {
            let tx = x(t);
            let _ = write!(
                svg,
                r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{TOP}" y2="{:.1}" stroke="#eeeeee"/><text x="{tx:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 16.0,
                clock(t)
            );
            t += tstep;
        }
        for (value, label) in &self.lines {
            let ly = y(*value);
            let _ = write!(
                svg,
                r#"<line x1="{LEFT}" x2="{}" y1="{ly:.1}" y2="{ly:.1}" stroke="{THRESHOLD_COLOUR}" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" class="note" fill="{THRESHOLD_COLOUR}">{}</text>"#,
                WIDTH - RIGHT,
                LEFT + 6.0,
                ly - 5.0,
                escape(label)
            );
        }
        for series in &self.series {
            for segment in segments(&series.points) {
                let mut points = String::new();
                let mut previous: Option<(f64, f64)> = None;
                for (t, v) in segment {
                    if series.steps
                        && let Some((_, pv)) = previous
                    {
                        let _ = write!(points, "{:.1},{:.1} ", x(t), y(pv));
                    }
                    let _ = write!(points, "{:.1},{:.1} ", x(t), y(v));
                    previous = Some((t, v));
                }
                let _ = write!(
                    svg,
                    r#"<polyline class="series" data-series="{}" fill="none" stroke="{}" stroke-width="2.5" stroke-linejoin="round" points="{}"/>"#,
                    escape(&series.name),
                    series.colour,
                    points.trim_end()
                );
            }
        }
        if let Some((at, colour, label)) = &axis.marker {
            let mx = x(*at);
            let anchor = if mx > WIDTH - 260.0 { "end" } else { "start" };
            let tx = if anchor == "end" { mx - 6.0 } else { mx + 6.0 };
            let _ = write!(
                svg,
                r#"<line class="decision" x1="{mx:.1}" x2="{mx:.1}" y1="{TOP}" y2="{:.1}" stroke="{colour}" stroke-width="2.5" stroke-dasharray="8 4"/><text x="{tx:.1}" y="{:.1}" class="note" fill="{colour}" text-anchor="{anchor}">{}</text>"#,
                TOP + plot_h,
                TOP + 14.0,
                escape(label)
            );
        }
        // Legend, top right, small swatches.
        let mut lx = WIDTH - RIGHT;
        for series in self.series.iter().rev() {
            let width = 7.0 * series.name.chars().count() as f64 + 28.0;
            lx -= width;
            let _ = write!(
                svg,
                r#"<rect x="{lx:.1}" y="12" width="14" height="4" fill="{}"/><text x="{:.1}" y="19" class="tick">{}</text>"#,
                series.colour,
                lx + 18.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

/// Runs of consecutive points with data.
fn segments(points: &[Option<(f64, f64)>]) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for point in points {
        match point {
            Some(p) if p.1.is_finite() => current.push(*p),
            _ => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn upper(values: impl Iterator<Item = f64>, floor: f64) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(floor, f64::max);
    max * 1.15
}

fn arm_series(
    timeline: &Timeline,
    name: &str,
    colour: &'static str,
    value: impl Fn(&Snapshot) -> Option<f64>,
) -> Series {
    Series {
        name: name.into(),
        colour,
        points: timeline
            .snapshots
            .iter()
            .map(|s| value(s).map(|v| (s.at - timeline.started_at, v)))
            .collect(),
        steps: false,
    }
}

fn charts(timeline: &Timeline) -> Vec<Chart> {
    let end = |t: f64| t - timeline.started_at;
    // The weight as the router applied it, held until the next change.
    let mut weight: Vec<Option<(f64, f64)>> = vec![Some((0.0, 0.0))];
    for change in &timeline.routes {
        weight.push(Some((end(change.at), f64::from(change.routes.canary))));
    }
    let duration = duration(timeline);
    if let Some(Some((_, last))) = weight.last().copied() {
        weight.push(Some((duration, last)));
    }
    let weight_chart = Chart {
        title: "Canary weight".into(),
        unit: "% of requests".into(),
        y_min: 0.0,
        y_max: 100.0,
        series: vec![Series {
            name: "canary weight".into(),
            colour: WEIGHT_COLOUR,
            points: weight,
            steps: true,
        }],
        lines: Vec::new(),
    };

    let errors = |s: &Snapshot, canary: bool| {
        let arm = if canary { &s.canary } else { &s.primary };
        arm.error_rate.map(|e| e * 100.0)
    };
    let error_max = upper(
        timeline
            .snapshots
            .iter()
            .flat_map(|s| [errors(s, false), errors(s, true)])
            .flatten(),
        2.0,
    );
    let error_chart = Chart {
        title: "Error rate per arm".into(),
        unit: format!(
            "% of requests, over the last {} s",
            timeline.interval_seconds
        ),
        y_min: 0.0,
        y_max: error_max,
        series: vec![
            arm_series(timeline, "primary", PRIMARY_COLOUR, |s| errors(s, false)),
            arm_series(timeline, "canary", CANARY_COLOUR, |s| errors(s, true)),
        ],
        lines: Vec::new(),
    };

    let p99_max = upper(
        timeline
            .snapshots
            .iter()
            .flat_map(|s| [s.primary.p99_ms, s.canary.p99_ms])
            .flatten(),
        100.0,
    );
    let p99_chart = Chart {
        title: "p99 latency per arm".into(),
        unit: format!(
            "milliseconds, over the last {} s",
            timeline.interval_seconds
        ),
        y_min: 0.0,
        y_max: p99_max,
        series: vec![
            arm_series(timeline, "primary", PRIMARY_COLOUR, |s| s.primary.p99_ms),
            arm_series(timeline, "canary", CANARY_COLOUR, |s| s.canary.p99_ms),
        ],
        lines: Vec::new(),
    };

    let threshold = (1.0 / timeline.alpha).log10();
    let mut metrics: Vec<String> = Vec::new();
    for snapshot in &timeline.snapshots {
        for point in &snapshot.evidence {
            if !metrics.contains(&point.metric) {
                metrics.push(point.metric.clone());
            }
        }
    }
    let evidence_series: Vec<Series> = metrics
        .iter()
        .enumerate()
        .map(|(i, metric)| {
            let colour = EVIDENCE_COLOURS[i % EVIDENCE_COLOURS.len()];
            let mut series = arm_series(timeline, metric, colour, |s| {
                s.evidence
                    .iter()
                    .find(|p| &p.metric == metric)
                    .map(|p| p.log10_e.min(MAX_LOG10_E))
            });
            // The evidence moves only when an interval is judged, and holds in between.
            series.steps = true;
            series
        })
        .collect();
    let (low, high) = timeline
        .snapshots
        .iter()
        .flat_map(|s| s.evidence.iter().map(|p| p.log10_e.min(MAX_LOG10_E)))
        .fold((-1.0f64, threshold + 0.5), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let evidence_chart = Chart {
        title: "Evidence against the canary".into(),
        unit: "log10 of each comparison's e-value; rolled back at the dashed line".into(),
        y_min: low.floor(),
        y_max: high.ceil(),
        series: evidence_series,
        lines: vec![(
            threshold,
            format!("rollback at e = {}", number(1.0 / timeline.alpha)),
        )],
    };
    vec![weight_chart, error_chart, p99_chart, evidence_chart]
}

fn duration(timeline: &Timeline) -> f64 {
    let last = timeline
        .snapshots
        .last()
        .map_or(timeline.started_at, |s| s.at);
    (last - timeline.started_at).max(1.0)
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#222;max-width:1140px}\
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 8px}\
.verdict{font-size:20px;font-weight:600}.reason{margin:6px 0 14px;font-family:ui-monospace,monospace;font-size:13px;white-space:pre-wrap}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}\
.facts td:first-child{color:#666}svg{display:block;margin:6px 0 14px}\
svg .title{font-size:14px;font-weight:600}svg .unit{font-weight:400;fill:#666}svg .tick{font-size:11px;fill:#555}svg .note{font-size:12px;font-weight:600}\
.small{color:#666;font-size:12px}code{font-size:12px}";

/// The report for `timeline`.
pub fn html(timeline: &Timeline) -> String {
    let duration = duration(timeline);
    let marker = timeline.decision.as_ref().map(|d| {
        (
            d.at - timeline.started_at,
            verdict_colour(d.verdict),
            format!(
                "{} at {}",
                d.verdict.headline().to_lowercase(),
                clock(d.at - timeline.started_at)
            ),
        )
    });
    let axis = Axis { duration, marker };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>sluice demo: {} release of {}</title><style>{STYLE}</style></head><body>\n",
        escape(&timeline.scenario),
        escape(&timeline.canary)
    );
    let _ = writeln!(
        page,
        "<h1>sluice demo: the {} release of {}</h1>",
        escape(&timeline.scenario),
        escape(&timeline.canary)
    );
    match &timeline.decision {
        Some(d) => {
            let _ = write!(
                page,
                "<div class=\"verdict\" style=\"color:{}\">{} at {}, after {} analysed interval(s)</div>\n<div class=\"reason\">{}</div>\n",
                verdict_colour(d.verdict),
                d.verdict.headline(),
                clock(d.at - timeline.started_at),
                d.analysed_intervals,
                escape(&d.reason)
            );
        }
        None => page.push_str(
            "<div class=\"verdict\">No verdict: the demo stopped before the release ended</div>\n",
        ),
    }
    let weights: Vec<String> = timeline
        .routes
        .iter()
        .map(|r| r.routes.canary.to_string())
        .collect();
    let _ = writeln!(
        page,
        "<table class=\"facts\"><tr><td>scenario</td><td>{}</td></tr><tr><td>traffic</td><td>{} requests/s through the local router</td></tr><tr><td>analysis</td><td>every {} s, α = {}</td></tr><tr><td>canary weights applied</td><td>{}</td></tr><tr><td>duration</td><td>{}</td></tr></table>",
        escape(&timeline.scenario),
        number(timeline.rate),
        timeline.interval_seconds,
        timeline.alpha,
        escape(&weights.join(" → ")),
        clock(duration)
    );
    page.push_str("<h2>Over time</h2>\n");
    for chart in charts(timeline) {
        page.push_str(&chart.svg(&axis));
        page.push('\n');
    }
    page.push_str(
        "<h2>Evidence at the end</h2>\n<table><tr><th>metric</th><th>last interval</th></tr>",
    );
    if let Some(status) = &timeline.status {
        for metric in &status.evidence.metrics {
            let _ = write!(
                page,
                "<tr><td>{}</td><td><code>{}</code></td></tr>",
                escape(&metric.name),
                escape(metric.last_outcome.as_deref().unwrap_or("–"))
            );
        }
    }
    page.push_str("</table>\n<h2>Traffic splits</h2>\n<table><tr><th>at</th><th>primary</th><th>canary</th></tr>");
    for change in &timeline.routes {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            clock(change.at - timeline.started_at),
            change.routes.primary,
            change.routes.canary
        );
    }
    page.push_str("</table>\n<p class=\"small\">Error rates and p99 are read from the demo's Prometheus each second, per arm. The evidence is the e-value of each comparison's sequential test, from the Canary's status: the release is rolled back when one reaches 1/α, and promoted when the schedule is done and every comparison rules out a regression. Made by <code>sluice demo</code>.</p>\n</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::RouteChange;
    use crate::timeline::{ArmStats, Decision, EvidencePoint};
    use sluice_core::rollout::Routes;

    fn timeline() -> Timeline {
        let snapshots = (0..60)
            .map(|i| Snapshot {
                at: 100.0 + f64::from(i),
                phase: "Progressing".into(),
                weight: 10,
                analysed_intervals: 0,
                message: String::new(),
                primary: ArmStats {
                    rps: Some(100.0),
                    error_rate: Some(0.01),
                    p99_ms: Some(120.0),
                },
                canary: ArmStats {
                    rps: Some(10.0),
                    error_rate: if i % 20 == 5 { None } else { Some(0.06) },
                    p99_ms: Some(130.0),
                },
                evidence: vec![EvidencePoint {
                    metric: "error-rate".into(),
                    events: "errors".into(),
                    log10_e: f64::from(i) / 5.0,
                    canary_events: 0,
                    canary_requests: 0,
                    primary_events: 0,
                    primary_requests: 0,
                    rejected: false,
                }],
                traffic_error: None,
                objects: Vec::new(),
            })
            .collect();
        Timeline {
            scenario: "errors <b>".into(),
            title: None,
            canary: "demo/podinfo".into(),
            interval_seconds: 10,
            alpha: 0.01,
            rate: 150.0,
            started_at: 100.0,
            snapshots,
            routes: vec![
                RouteChange {
                    at: 110.0,
                    routes: Routes::canary_weight(10),
                },
                RouteChange {
                    at: 140.0,
                    routes: Routes::all_primary(),
                },
            ],
            decision: Some(Decision {
                at: 140.0,
                verdict: Verdict::RolledBack,
                reason: "rolling back podinfo: error-rate: e-value 1e9.3 & more".into(),
                analysed_intervals: 3,
            }),
            status: None,
        }
    }

    #[test]
    fn the_report_is_self_contained_with_four_charts_and_the_decision() {
        let page = html(&timeline());
        assert_eq!(page.matches("<svg").count(), 4);
        assert_eq!(page.matches("class=\"decision\"").count(), 4);
        assert!(page.contains("rolled back at 0:40"));
        assert!(page.contains("rollback at e = 100<"));
        assert!(page.contains("errors &lt;b&gt;"), "escaped");
        assert!(page.contains("&amp; more"));
        assert!(!page.contains("<script"));
        assert!(
            !page.contains("src=") && !page.contains("<link"),
            "nothing is fetched"
        );
        // The weight steps 0 -> 10 -> 0 and holds to the end.
        assert!(page.contains(r#"data-series="canary weight""#));
        for colour in [
            PRIMARY_COLOUR,
            CANARY_COLOUR,
            WEIGHT_COLOUR,
            EVIDENCE_COLOURS[0],
        ] {
            assert!(page.contains(&format!("stroke=\"{colour}\"")), "{colour}");
        }
    }

    #[test]
    fn missing_figures_break_the_line() {
        let points = vec![Some((0.0, 1.0)), Some((1.0, 2.0)), None, Some((3.0, 1.0))];
        assert_eq!(segments(&points).len(), 2);
        let page = html(&timeline());
        // The canary's error-rate line breaks at each missing second (i % 20 == 5): 4 pieces.
        let canary_lines = page
            .matches(&format!(
                "data-series=\"canary\" fill=\"none\" stroke=\"{CANARY_COLOUR}\""
            ))
            .count();
        assert_eq!(canary_lines, 4 + 1, "error rate has 4 pieces, p99 one");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(100.0), 20.0);
        assert_eq!(nice_step(6.9), 2.0);
        assert_eq!(time_step(95.0), 10.0);
        assert_eq!(time_step(170.0), 15.0);
    }
}
