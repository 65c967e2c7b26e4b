//! The replay as a person reads it (a table) or as a machine reads it (JSON, documented in
//! docs/analyse-json.md).

use serde::Serialize;

use super::{Outcome, Replay};
use sluice_core::analysis::{self, Verdict, sequential};
use sluice_core::api::{Analysis, ArmTally, EvidenceKind, MetricEvidence, SlowThreshold};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub schema_version: u32,
    pub canary: Named,
    pub prometheus: Option<String>,
    pub window: Window,
    pub verdict: Outcome,
    pub reached_at: Option<String>,
    pub reached_after_intervals: Option<u32>,
    pub reason: String,
    pub alpha: f64,
    pub failed_checks: u32,
    pub threshold: u32,
    pub metrics: Vec<MetricReport>,
    pub intervals: Vec<IntervalReport>,
}

#[derive(Serialize)]
pub struct Named {
    pub name: String,
    pub namespace: String,
}

#[derive(Serialize)]
pub struct Window {
    pub start: String,
    pub end: String,
    pub interval: String,
    pub intervals: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricReport {
    pub name: String,
    pub kind: EvidenceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<ArmReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<ArmReport>,
    /// Canary rate / primary rate, with an anytime-valid confidence interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_risk: Option<RiskReport>,
    /// Canary rate minus primary rate, in percentage points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference_pp: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_at_e_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_above: Option<SlowThreshold>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_range: Option<sluice_core::api::ThresholdRange>,
    pub failed_checks: u32,
    pub last_outcome: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmReport {
    pub requests: u64,
    pub events: u64,
    /// events / requests, in percent.
    pub rate_percent: f64,
}

#[derive(Serialize)]
pub struct RiskReport {
    pub estimate: f64,
    /// `null` when the interval is open on that side.
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IntervalReport {
    pub index: u32,
    pub end: String,
    pub weight: u32,
    pub verdict: &'static str,
    pub metrics: Vec<IntervalMetric>,
}

#[derive(Serialize)]
pub struct IntervalMetric {
    pub name: String,
    pub outcome: analysis::Outcome,
    pub message: String,
}

pub use sluice_core::time::rfc3339;

pub fn verdict_name(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Continue => "continue",
        Verdict::Ready => "ready",
        Verdict::FailedCheck { .. } => "failedCheck",
        Verdict::NoData { .. } => "noData",
        Verdict::Hold { .. } => "hold",
        Verdict::Rollback { .. } => "rollback",
    }
}

pub struct Context<'a> {
    pub name: String,
    pub namespace: String,
    pub prometheus: Option<String>,
    pub start: i64,
    pub end: i64,
    pub analysis: &'a Analysis,
}

pub fn build(ctx: &Context<'_>, replay: &Replay) -> Report {
    let analysis = ctx.analysis;
    let reached_at = replay
        .reached
        .and_then(|i| replay.steps.iter().find(|s| s.index == i))
        .map(|s| rfc3339(s.end));
    Report {
        schema_version: SCHEMA_VERSION,
        canary: Named {
            name: ctx.name.clone(),
            namespace: ctx.namespace.clone(),
        },
        prometheus: ctx.prometheus.clone(),
        window: Window {
            start: rfc3339(ctx.start),
            end: rfc3339(ctx.end),
            interval: analysis.interval.promql(),
            intervals: replay.planned_intervals,
        },
        verdict: replay.outcome,
        reached_at,
        reached_after_intervals: replay.reached,
        reason: replay.reason.clone(),
        alpha: analysis.alpha,
        failed_checks: replay.evidence.failed_checks,
        threshold: analysis.threshold,
        metrics: replay
            .evidence
            .metrics
            .iter()
            .map(|m| metric_report(m, analysis))
            .collect(),
        intervals: replay
            .steps
            .iter()
            .map(|s| IntervalReport {
                index: s.index,
                end: rfc3339(s.end),
                weight: s.weight,
                verdict: verdict_name(&s.judgement.verdict),
                metrics: s
                    .judgement
                    .outcomes
                    .iter()
                    .map(|o| IntervalMetric {
                        name: o.metric.clone(),
                        outcome: o.outcome,
                        message: o.message.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn arm(t: ArmTally) -> ArmReport {
    ArmReport {
        requests: t.requests,
        events: t.events,
        rate_percent: rate(t),
    }
}

fn rate(t: ArmTally) -> f64 {
    if t.requests == 0 {
        0.0
    } else {
        100.0 * t.events as f64 / t.requests as f64
    }
}

fn metric_report(m: &MetricEvidence, analysis: &Analysis) -> MetricReport {
    let spec = analysis.metrics.iter().find(|s| s.name == m.name);
    let test = m.sequential.as_ref();
    MetricReport {
        name: m.name.clone(),
        kind: m.kind,
        canary: test.map(|t| arm(t.canary)),
        primary: test.map(|t| arm(t.primary)),
        relative_risk: test.map(|t| {
            let e = sequential::estimate(t, analysis.alpha);
            RiskReport {
                estimate: e.ratio,
                lower: e.lower,
                upper: e.upper,
            }
        }),
        difference_pp: test.map(|t| rate(t.canary) - rate(t.primary)),
        e_value: test.map(|t| t.log_e_value.exp()),
        rollback_at_e_value: test.map(|_| 1.0 / analysis.alpha),
        slow_above: m.slow_above,
        last_value: m.last_value,
        threshold_range: spec.and_then(|s| s.threshold_range.clone()),
        failed_checks: m.failed_checks,
        last_outcome: m.last_outcome.clone(),
    }
}

/// The human table.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let verdict = match report.verdict {
        Outcome::Promote => "PROMOTE",
        Outcome::Rollback => "ROLLBACK",
        Outcome::Inconclusive => "INCONCLUSIVE",
    };
    out.push_str(&format!(
        "Canary {}/{}  window {} .. {}  ({} intervals of {})\n",
        report.canary.namespace,
        report.canary.name,
        report.window.start,
        report.window.end,
        report.window.intervals,
        report.window.interval
    ));
    match (&report.reached_at, report.reached_after_intervals) {
        (Some(at), Some(n)) => out.push_str(&format!(
            "Verdict: {verdict} at {at}, after {n} interval(s)\n"
        )),
        _ => out.push_str(&format!("Verdict: {verdict}\n")),
    }
    out.push_str(&format!("Reason:  {}\n\n", report.reason));
    let rows: Vec<[String; 6]> = report
        .metrics
        .iter()
        .map(|m| {
            let kind = match m.kind {
                EvidenceKind::ErrorRate => "error rate",
                EvidenceKind::Latency => "latency",
                EvidenceKind::Guardrail => "guardrail",
            };
            let arm_text = |a: &Option<ArmReport>| {
                a.as_ref()
                    .map(|a| format!("{:.3}% ({}/{})", a.rate_percent, a.events, a.requests))
                    .unwrap_or_else(|| "-".into())
            };
            let counted = m.canary.as_ref().is_some_and(|a| a.requests > 0);
            let effect = match (&m.relative_risk, m.difference_pp) {
                (Some(_), Some(_)) if !counted => "no requests counted yet".to_string(),
                (Some(r), Some(d)) => format!(
                    "{:+.3} pp, x{:.2} [{}, {}]",
                    d,
                    r.estimate,
                    r.lower.map_or("0".into(), |v| format!("{v:.2}")),
                    r.upper.map_or("inf".into(), |v| format!("{v:.2}"))
                ),
                _ => match (m.last_value, &m.threshold_range) {
                    (Some(v), Some(r)) => format!(
                        "{v:.4} in [{}, {}]",
                        r.min.map_or("-inf".into(), |x| x.to_string()),
                        r.max.map_or("inf".into(), |x| x.to_string())
                    ),
                    _ => "-".into(),
                },
            };
            let decision = match (m.e_value, m.rollback_at_e_value) {
                (Some(e), Some(limit)) => format!("e={} / {}", compact(e), compact(limit)),
                _ => format!("{} failed", m.failed_checks),
            };
            [
                m.name.clone(),
                kind.into(),
                arm_text(&m.canary),
                arm_text(&m.primary),
                effect,
                decision,
            ]
        })
        .collect();
    let header = [
        "METRIC",
        "KIND",
        "CANARY",
        "PRIMARY",
        "EFFECT (canary vs primary)",
        "EVIDENCE",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if report.failed_checks > 0 {
        out.push_str(&format!(
            "\nFailed checks: {} of threshold {}\n",
            report.failed_checks, report.threshold
        ));
    }
    out
}

fn compact(x: f64) -> String {
    if x >= 1e4 || (x > 0.0 && x < 1e-3) {
        format!("{x:.2e}")
    } else {
        format!("{x:.3}")
    }
}
