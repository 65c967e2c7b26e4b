//! What `get` and `status` print, from the Canary and its Events alone: pure, so the tables are
//! tested without a cluster.

use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use sluice_core::api::{Canary, CanaryStatus, EvidenceKind, MetricEvidence, Phase, ReleaseVerdict};
use sluice_core::time::parse_rfc3339;
use sluice_demo::view::e_value;

/// Events shown by `status`: the most recent, as `kubectl describe` keeps its list short.
const EVENTS_SHOWN: usize = 12;

/// A duration as kubectl prints ages: `45s`, `3m12s`, `2h5m`, `3d4h`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..600 => format!("{}m{}s", s / 60, s % 60),
        600..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

fn age_since(time: Option<&str>, now: i64) -> String {
    time.and_then(parse_rfc3339)
        .map_or("-".into(), |t| age(now - t))
}

/// Rows of cells as aligned columns, two spaces apart; the last column is not padded.
pub fn columns(rows: &[Vec<String>]) -> Vec<String> {
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
    };
    let count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count).map(width).collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}

/// How one metric of the analysis stands in the release under way (or the last one).
#[derive(Debug, PartialEq)]
pub struct Standing {
    pub metric: String,
    /// `error rate`, `latency` or `guardrail`; `-` before the first look.
    pub kind: &'static str,
    /// Comparisons: the e-value; guardrails: the last value read.
    pub value: Option<String>,
    /// Comparisons: events and requests per arm so far.
    pub canary: Option<String>,
    pub primary: Option<String>,
    /// `ok`, `failed`, `no data`, `waiting`, ...
    pub so_far: String,
}

fn kind_name(kind: EvidenceKind) -> &'static str {
    match kind {
        EvidenceKind::ErrorRate => "error rate",
        EvidenceKind::Latency => "latency",
        EvidenceKind::Guardrail => "guardrail",
    }
}

fn standing_of(evidence: &MetricEvidence, alpha: f64, threshold: u32) -> Standing {
    let kind = kind_name(evidence.kind);
    if evidence.kind == EvidenceKind::Guardrail {
        let so_far = if evidence.failed_checks > 0 {
            format!("failed {}/{threshold}", evidence.failed_checks)
        } else if evidence.last_value.is_none() {
            "no data yet".into()
        } else {
            "ok".into()
        };
        return Standing {
            metric: evidence.name.clone(),
            kind,
            value: evidence.last_value.map(|v| format!("{v}")),
            canary: None,
            primary: None,
            so_far,
        };
    }
    let Some(test) = &evidence.sequential else {
        let so_far = if evidence.kind == EvidenceKind::Latency && evidence.slow_above.is_none() {
            "choosing the slow threshold from the primary"
        } else {
            "no data yet"
        };
        return Standing {
            metric: evidence.name.clone(),
            kind,
            value: None,
            canary: None,
            primary: None,
            so_far: so_far.into(),
        };
    };
    let latency = evidence.kind == EvidenceKind::Latency;
    let arm = |a: &sluice_core::api::ArmTally| {
        let events = match (latency, a.events) {
            (true, _) => "slow",
            (false, 1) => "error",
            (false, _) => "errors",
        };
        format!("{} {events} / {}", a.events, a.requests)
    };
    let log10_e = test.log_e_value / std::f64::consts::LN_10;
    let so_far = if test.rejected {
        "failed: canary worse than primary".to_string()
    } else if test.canary.requests == 0 {
        "no canary requests yet".into()
    } else {
        format!(
            "ok ({:.0}% of the way to a rollback)",
            progress(log10_e, alpha) * 100.0
        )
    };
    Standing {
        metric: evidence.name.clone(),
        kind,
        value: Some(e_value(log10_e)),
        canary: Some(arm(&test.canary)),
        primary: Some(arm(&test.primary)),
        so_far,
    }
}

/// How far the e-value has gone from 1 to the rollback line 1/alpha, on a log scale, 0 to 1.
fn progress(log10_e: f64, alpha: f64) -> f64 {
    let line = (1.0 / alpha).log10();
    if line > 0.0 {
        (log10_e / line).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Every metric of the Canary's analysis, in spec order, with its evidence where there is some.
pub fn standings(canary: &Canary) -> Vec<Standing> {
    let status = canary.status.clone().unwrap_or_default();
    let analysis = &canary.spec.analysis;
    let mut out: Vec<Standing> = analysis
        .metrics
        .iter()
        .map(|m| {
            status
                .evidence
                .metrics
                .iter()
                .find(|e| e.name == m.name)
                .map_or_else(
                    || Standing {
                        metric: m.name.clone(),
                        kind: "-",
                        value: None,
                        canary: None,
                        primary: None,
                        so_far: "waiting for the first look".into(),
                    },
                    |e| standing_of(e, analysis.alpha, analysis.threshold),
                )
        })
        .collect();
    // Evidence of a metric no longer in the spec still tells how the release was judged.
    for e in &status.evidence.metrics {
        if !analysis.metrics.iter().any(|m| m.name == e.name) {
            out.push(standing_of(e, analysis.alpha, analysis.threshold));
        }
    }
    out
}

/// The short form for `get`: `errors=ok latency=failed`.
fn verdict_so_far(canary: &Canary) -> String {
    let parts: Vec<String> = standings(canary)
        .into_iter()
        .map(|s| {
            let word = s
                .so_far
                .split([' ', ':', '('])
                .next()
                .unwrap_or("")
                .to_string();
            let word = match word.as_str() {
                "ok" | "failed" => word,
                _ => "pending".into(),
            };
            match &s.value {
                Some(v) if s.kind != "guardrail" => format!("{}={word}(e={v})", s.metric),
                _ => format!("{}={word}", s.metric),
            }
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn phase_name(status: &CanaryStatus, suspended: bool) -> String {
    let phase = status
        .phase
        .map_or("Initializing".to_string(), |p| format!("{p:?}"));
    if suspended {
        format!("{phase} (suspended)")
    } else {
        phase
    }
}

/// The `get` table.
pub fn get_table(canaries: &[Canary], all_namespaces: bool, now: i64) -> Vec<String> {
    let mut header = vec![];
    if all_namespaces {
        header.push("NAMESPACE".to_string());
    }
    header.extend(
        [
            "NAME",
            "PHASE",
            "WEIGHT",
            "INTERVALS",
            "VERDICT SO FAR",
            "AGE",
        ]
        .map(String::from),
    );
    let mut rows = vec![header];
    for canary in canaries {
        let status = canary.status.clone().unwrap_or_default();
        let mut row = vec![];
        if all_namespaces {
            row.push(canary.namespace().unwrap_or_default());
        }
        row.push(canary.name_any());
        row.push(phase_name(&status, canary.spec.suspend));
        row.push(format!("{}%", status.canary_weight));
        row.push(status.evidence.analysed_intervals.to_string());
        row.push(verdict_so_far(canary));
        row.push(age_since(status.last_transition_time.as_deref(), now));
        rows.push(row);
    }
    columns(&rows)
}

fn verdict_line(status: &CanaryStatus) -> String {
    match status.verdict() {
        Some(ReleaseVerdict::Promoted) if status.phase == Some(Phase::Succeeded) => {
            "promoted".into()
        }
        Some(ReleaseVerdict::Promoted) => "promote (the primary is being updated)".into(),
        Some(ReleaseVerdict::RolledBack) => "rolled back".into(),
        Some(ReleaseVerdict::Inconclusive) => "inconclusive (ended without promotion)".into(),
        None if status.phase == Some(Phase::Initialized) => "none: no release yet".into(),
        None => "none yet".into(),
    }
}

fn short(revision: Option<&str>) -> String {
    revision.map_or("-".into(), |r| r.chars().take(16).collect())
}

/// When an Event last happened, in Unix seconds: events.k8s.io's series or event time, else
/// the core fields, else when it was created.
pub fn event_time(event: &Event) -> i64 {
    let micro = event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .or(event.event_time.as_ref())
        .map(|t| t.0.as_second());
    let time = event
        .last_timestamp
        .as_ref()
        .or(event.first_timestamp.as_ref())
        .or(event.metadata.creation_timestamp.as_ref())
        .map(|t| t.0.as_second());
    micro.or(time).unwrap_or(0)
}

/// The `status` page: where the release stands, its evidence, its conditions and its recent
/// Events.
pub fn status_page(canary: &Canary, events: &[Event], now: i64) -> Vec<String> {
    let status = canary.status.clone().unwrap_or_default();
    let spec = &canary.spec;
    let target = &spec.target_ref.name;
    let mut lines = vec![
        format!(
            "Canary:     {}/{}",
            canary.namespace().unwrap_or_default(),
            canary.name_any()
        ),
        format!(
            "Target:     {}/{target} (primary {target}-primary)",
            spec.target_ref.kind
        ),
        format!(
            "Phase:      {}, for {}",
            phase_name(&status, spec.suspend),
            age_since(status.last_transition_time.as_deref(), now)
        ),
    ];
    let schedule: Vec<String> = sluice_core::rollout::schedule(spec)
        .iter()
        .map(u32::to_string)
        .collect();
    lines.push(format!(
        "Weight:     {}% to the canary (steps {})",
        status.canary_weight,
        if schedule.is_empty() {
            "-".into()
        } else {
            schedule.join(" → ")
        }
    ));
    lines.push(format!("Verdict:    {}", verdict_line(&status)));
    lines.push(format!(
        "Message:    {}",
        status.message.as_deref().unwrap_or("-")
    ));
    lines.push(format!(
        "Revision:   canary {}, primary {}",
        short(status.last_applied_spec.as_deref()),
        short(status.last_promoted_spec.as_deref())
    ));
    if spec.suspend {
        lines.push(format!(
            "Suspended:  yes: nothing moves until `kubectl sluice resume {}`",
            canary.name_any()
        ));
    }
    lines.push(String::new());
    let alpha = spec.analysis.alpha;
    lines.push(format!(
        "Evidence:   {} interval(s) analysed, {} failed check(s); a comparison rolls back at e-value {} (alpha {alpha})",
        status.evidence.analysed_intervals,
        status.evidence.failed_checks,
        e_value((1.0 / alpha).log10()),
    ));
    let standings = standings(canary);
    if standings.is_empty() {
        lines.push("  (no metrics in spec.analysis)".into());
    } else {
        let mut rows = vec![
            ["METRIC", "KIND", "VALUE", "CANARY", "PRIMARY", "SO FAR"]
                .map(String::from)
                .to_vec(),
        ];
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        for s in &standings {
            rows.push(vec![
                s.metric.clone(),
                s.kind.to_string(),
                dash(&s.value),
                dash(&s.canary),
                dash(&s.primary),
                s.so_far.clone(),
            ]);
        }
        lines.extend(columns(&rows).into_iter().map(|l| format!("  {l}")));
    }
    lines.push(String::new());
    lines.push("Conditions:".into());
    let mut rows = vec![
        ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]
            .map(String::from)
            .to_vec(),
    ];
    for c in &status.conditions {
        rows.push(vec![
            c.kind.clone(),
            c.status.clone(),
            c.reason.clone(),
            age_since(Some(&c.last_transition_time), now),
            c.message.clone(),
        ]);
    }
    if status.conditions.is_empty() {
        lines.push("  (none: the controller has not written a status yet)".into());
    } else {
        lines.extend(columns(&rows).into_iter().map(|l| format!("  {l}")));
    }
    lines.push(String::new());
    lines.push("Events:".into());
    if events.is_empty() {
        lines.push("  (none)".into());
    } else {
        let mut rows = vec![
            ["AGE", "TYPE", "REASON", "MESSAGE"]
                .map(String::from)
                .to_vec(),
        ];
        let start = events.len().saturating_sub(EVENTS_SHOWN);
        for e in &events[start..] {
            let count = e
                .series
                .as_ref()
                .and_then(|s| s.count)
                .or(e.count)
                .filter(|c| *c > 1);
            let mut message = e.message.clone().unwrap_or_default();
            if let Some(count) = count {
                message.push_str(&format!(" (×{count})"));
            }
            rows.push(vec![
                age(now - event_time(e)),
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                message,
            ]);
        }
        lines.extend(columns(&rows).into_iter().map(|l| format!("  {l}")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canary(status: serde_json::Value) -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 80},
                "analysis": {
                    "interval": "10s", "alpha": 0.05, "threshold": 3,
                    "maxWeight": 30, "stepWeight": 10,
                    "metrics": [
                        {"name": "errors", "templateRef": {"name": "errors"}, "comparison": {"type": "errorRate", "requestsTemplateRef": {"name": "requests"}}},
                        {"name": "latency", "templateRef": {"name": "latency"}, "comparison": {"type": "latency"}},
                        {"name": "p99", "templateRef": {"name": "p99"}, "thresholdRange": {"max": 500}}
                    ]
                }
            },
            "status": status
        }))
        .expect("a Canary")
    }

    fn sequential(log_e: f64, rejected: bool, canary: [u64; 2]) -> serde_json::Value {
        json!({
            "canary": {"requests": canary[0], "events": canary[1]},
            "primary": {"requests": 4000, "events": 8},
            "nullRatio": 1.2, "log2From": -1.0, "log2Step": 0.5,
            "logLikelihood": [0.0], "logEValue": log_e, "rejected": rejected
        })
    }

    fn progressing() -> Canary {
        canary(json!({
            "phase": "Progressing",
            "canaryWeight": 20,
            "lastTransitionTime": "2026-12-04T10:00:00Z",
            "analysedIntervals": 4,
            "failedChecks": 1,
            "message": "advance canary weight 20",
            "metrics": [
                {"name": "errors", "kind": "errorRate", "sequential": sequential(-0.5, false, [1000, 3])},
                {"name": "latency", "kind": "latency", "sequential": sequential(4.0, true, [1000, 90])},
                {"name": "p99", "kind": "guardrail", "lastValue": 812.0, "failedChecks": 1}
            ],
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "Progressing",
                 "message": "advance canary weight 20", "lastTransitionTime": "2026-12-04T10:00:00Z"}
            ]
        }))
    }

    const NOW: i64 = 1_796_378_472; // 2026-12-04T10:01:12Z

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        assert_eq!(age(45), "45s");
        assert_eq!(age(192), "3m12s");
        assert_eq!(age(1500), "25m");
        assert_eq!(age(7500), "2h5m");
        assert_eq!(age(3 * 86400 + 4 * 3600), "3d4h");
        assert_eq!(age(-5), "0s");
    }

    #[test]
    fn get_shows_phase_weight_and_each_comparison_so_far() {
        let lines = get_table(&[progressing()], false, NOW);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert_eq!(
            lines[0],
            "NAME     PHASE        WEIGHT  INTERVALS  VERDICT SO FAR                                          AGE"
        );
        assert_eq!(
            lines[1],
            "podinfo  Progressing  20%     4          errors=ok(e=0.607) latency=failed(e=54.598) p99=failed  1m12s"
        );
        let all = get_table(&[progressing()], true, NOW);
        assert!(all[0].starts_with("NAMESPACE  NAME"), "{all:#?}");
        assert!(all[1].starts_with("test       podinfo"), "{all:#?}");
    }

    #[test]
    fn a_canary_without_status_is_initializing_and_waits_for_its_first_look() {
        let lines = get_table(&[canary(json!({}))], false, NOW);
        assert!(
            lines[1].contains("Initializing  0%")
                && lines[1].contains("errors=pending latency=pending p99=pending"),
            "{lines:#?}"
        );
    }

    #[test]
    fn status_shows_the_evidence_conditions_and_events() {
        let event: Event = serde_json::from_value(json!({
            "metadata": {"name": "e1", "namespace": "test"},
            "involvedObject": {"kind": "Canary", "name": "podinfo"},
            "type": "Normal", "reason": "Synced", "message": "Advance podinfo canary weight 20",
            "eventTime": "2026-12-04T10:00:12.000000Z",
            "series": {"count": 2, "lastObservedTime": "2026-12-04T10:00:42.000000Z"}
        }))
        .expect("an Event");
        let page = status_page(&progressing(), &[event], NOW).join("\n");
        for part in [
            "Canary:     test/podinfo",
            "Phase:      Progressing, for 1m12s",
            "Weight:     20% to the canary (steps 10 → 20 → 30)",
            "Verdict:    none yet",
            "a comparison rolls back at e-value 20.000 (alpha 0.05)",
            "errors   error rate  0.607   3 errors / 1000  8 errors / 4000  ok (0% of the way to a rollback)",
            "latency  latency     54.598  90 slow / 1000   8 slow / 4000    failed: canary worse than primary",
            "p99      guardrail   812     -                -                failed 1/3",
            "Ready  False   Progressing  1m12s  advance canary weight 20",
            "30s  Normal  Synced  Advance podinfo canary weight 20 (×2)",
        ] {
            assert!(page.contains(part), "missing {part:?} in\n{page}");
        }
    }
}
