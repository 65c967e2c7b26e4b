//! From observations to a verdict: sequential comparisons of canary and primary, and Flagger's
//! threshold checks. Pure: no I/O, no clock; the caller passes what was observed.

pub mod binomial;
pub mod cumulative;
pub mod latency;
pub mod rate;
pub mod sequential;
pub mod validate;

use crate::api::{
    Analysis, ComparisonKind, Evidence, EvidenceKind, MetricCheck, MetricEvidence, SequentialState,
};
use sequential::Counts;

/// What one metric showed in one interval.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    /// A guardrail's number.
    Value(f64),
    /// An error-rate comparison: requests and failed requests per arm.
    Counts {
        canary: RequestCounts,
        primary: RequestCounts,
    },
    /// A latency comparison: cumulative histogram buckets per arm, `(le, count)`, `+Inf` last.
    Histograms {
        canary: Vec<(f64, f64)>,
        primary: Vec<(f64, f64)>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestCounts {
    pub requests: f64,
    pub errors: f64,
}

/// A metric's observation, or why there is none (never taken as a pass).
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub metric: String,
    pub result: Result<Observed, String>,
}

/// The judgement of one interval.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// No problem, but not yet enough evidence to promote.
    Continue,
    /// Enough evidence and no problem: the release may be promoted once its schedule is done.
    Ready,
    /// A guardrail failed this interval; the release holds until `threshold` is reached.
    FailedCheck {
        metric: String,
        failed_checks: u32,
        threshold: u32,
    },
    /// Some metric had no data: hold, never pass.
    NoData { reasons: Vec<String> },
    /// A comparison is on its way to a rollback without being there: hold the weight rather
    /// than send more traffic to a canary that looks bad.
    Hold { metric: String, reason: String },
    /// Roll back.
    Rollback { metric: String, reason: String },
}

/// How one metric fared in one interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Pass,
    Fail,
    NoData,
    /// A latency comparison still choosing its boundary from the primary.
    Warming,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricOutcome {
    pub metric: String,
    pub outcome: Outcome,
    /// Enough evidence for a promotion (comparisons), or a passing check (guardrails).
    pub ready: bool,
    pub message: String,
    /// Why a passing comparison cannot allow a promotion yet, for the status.
    pub waiting: Option<String>,
    /// A comparison whose evidence against the canary calls for holding the weight (see
    /// `HOLD_SHARE`).
    pub suspect: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub outcomes: Vec<MetricOutcome>,
    /// An analysis step (every metric, once per interval), not a check between steps.
    pub step: bool,
}

/// One look at the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Look {
    /// Seconds from the canary's first traffic to this look: the first `interval` of them is
    /// its warm-up.
    pub elapsed: u64,
    /// An analysis step: guardrails too, and a verdict that may step the schedule. Between
    /// steps, a check looks at the comparisons only, and only a rollback acts on it.
    pub step: bool,
    /// The pods behind each arm (replicas), which bound what one pod's burst may weigh.
    pub pods: sequential::Pods,
}

/// Judges one interval as an analysis step: updates `evidence` with `observations` (each
/// covering one `interval`) and says what to do.
pub fn judge(
    analysis: &Analysis,
    evidence: &mut Evidence,
    observations: &[Observation],
) -> Judgement {
    let interval = analysis.interval.as_secs().max(1);
    let look = Look {
        elapsed: u64::from(evidence.analysed_intervals + 1) * interval,
        step: true,
        pods: sequential::Pods::default(),
    };
    judge_look(analysis, evidence, observations, look)
}

/// Judges one look: a step, or a check of the comparisons between steps. The comparisons count
/// each request once whatever the number of looks, and stay valid however many there are
/// (anytime-valid tests).
pub fn judge_look(
    analysis: &Analysis,
    evidence: &mut Evidence,
    observations: &[Observation],
    look: Look,
) -> Judgement {
    if look.step {
        evidence.analysed_intervals += 1;
    }
    let mut outcomes = Vec::with_capacity(analysis.metrics.len());
    let mut failed_guardrail = None;
    for metric in &analysis.metrics {
        if !look.step && metric.comparison.is_none() {
            continue;
        }
        let state = evidence_for(evidence, metric, analysis);
        let observation = observations
            .iter()
            .find(|o| o.metric == metric.name)
            .map(|o| o.result.clone())
            .unwrap_or_else(|| Err("not observed".into()));
        let outcome = match observation {
            Err(reason) => MetricOutcome {
                metric: metric.name.clone(),
                outcome: Outcome::NoData,
                ready: false,
                message: reason,
                waiting: None,
                suspect: false,
            },
            Ok(observed) => judge_metric(analysis, metric, state, observed, look),
        };
        if outcome.outcome == Outcome::Fail && state.kind == EvidenceKind::Guardrail {
            failed_guardrail = Some(metric.name.clone());
        }
        state.last_outcome = Some(outcome.message.clone());
        outcomes.push(outcome);
    }
    if failed_guardrail.is_some() {
        evidence.failed_checks += 1;
    }
    let verdict = verdict(analysis, evidence, &outcomes, failed_guardrail);
    Judgement {
        verdict,
        outcomes,
        step: look.step,
    }
}

fn verdict(
    analysis: &Analysis,
    evidence: &Evidence,
    outcomes: &[MetricOutcome],
    failed_guardrail: Option<String>,
) -> Verdict {
    if let Some(rejected) = evidence.metrics.iter().find(|m| {
        m.sequential.as_ref().is_some_and(|s| s.rejected)
            && analysis.metrics.iter().any(|spec| spec.name == m.name)
    }) {
        return Verdict::Rollback {
            metric: rejected.name.clone(),
            reason: rejected.last_outcome.clone().unwrap_or_default(),
        };
    }
    if let Some(metric) = failed_guardrail {
        if evidence.failed_checks >= analysis.threshold {
            // The value that failed last, so that the rollback says by how much.
            let last = outcomes
                .iter()
                .find(|o| o.metric == metric)
                .map(|o| format!("{}; ", o.message))
                .unwrap_or_default();
            return Verdict::Rollback {
                reason: format!(
                    "{last}{} failed checks reached the threshold of {}",
                    evidence.failed_checks, analysis.threshold
                ),
                metric,
            };
        }
        return Verdict::FailedCheck {
            metric,
            failed_checks: evidence.failed_checks,
            threshold: analysis.threshold,
        };
    }
    let missing: Vec<String> = outcomes
        .iter()
        .filter(|o| o.outcome == Outcome::NoData)
        .map(|o| format!("{}: {}", o.metric, o.message))
        .collect();
    if !missing.is_empty() {
        return Verdict::NoData { reasons: missing };
    }
    if let Some(suspect) = outcomes.iter().find(|o| o.suspect) {
        return Verdict::Hold {
            metric: suspect.metric.clone(),
            reason: suspect.message.clone(),
        };
    }
    if outcomes.iter().all(|o| o.ready) {
        Verdict::Ready
    } else {
        Verdict::Continue
    }
}

/// Why the outcomes do not allow a promotion yet, one clause per metric.
pub fn waiting(outcomes: &[MetricOutcome]) -> String {
    outcomes
        .iter()
        .filter(|o| !o.ready)
        .map(|o| match &o.waiting {
            Some(why) => format!("{}: {why}", o.metric),
            None => format!("{}: {}", o.metric, o.message),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The metric's evidence, created on first use.
fn evidence_for<'a>(
    evidence: &'a mut Evidence,
    metric: &MetricCheck,
    analysis: &Analysis,
) -> &'a mut MetricEvidence {
    let kind = match metric.comparison.as_ref().map(|c| c.kind) {
        Some(ComparisonKind::ErrorRate) => EvidenceKind::ErrorRate,
        Some(ComparisonKind::Latency) => EvidenceKind::Latency,
        None => EvidenceKind::Guardrail,
    };
    let position = evidence
        .metrics
        .iter()
        .position(|m| m.name == metric.name && m.kind == kind);
    let index = match position {
        Some(index) => index,
        None => {
            let null_ratio = 1.0 + analysis.min_effect.unwrap_or(0.0);
            let test = (kind != EvidenceKind::Guardrail).then(|| sequential::new_state(null_ratio));
            evidence
                .metrics
                .push(MetricEvidence::new(&metric.name, kind, test));
            evidence.metrics.len() - 1
        }
    };
    &mut evidence.metrics[index]
}

fn judge_metric(
    analysis: &Analysis,
    metric: &MetricCheck,
    state: &mut MetricEvidence,
    observed: Observed,
    look: Look,
) -> MetricOutcome {
    let name = metric.name.clone();
    let outcome = |outcome, ready, message: String| MetricOutcome {
        metric: name.clone(),
        outcome,
        ready,
        message,
        waiting: None,
        suspect: false,
    };
    match (state.kind, observed) {
        (EvidenceKind::Guardrail, Observed::Value(value)) => {
            state.last_value = Some(value);
            let range = metric.threshold_range.clone().unwrap_or_default();
            let below = range.min.is_some_and(|min| value < min);
            let above = range.max.is_some_and(|max| value > max);
            if below || above {
                state.failed_checks += 1;
                let bound = if below {
                    format!("below the minimum {}", range.min.unwrap_or_default())
                } else {
                    format!("above the maximum {}", range.max.unwrap_or_default())
                };
                outcome(Outcome::Fail, false, format!("{value} is {bound}"))
            } else {
                outcome(Outcome::Pass, true, format!("{value} is within range"))
            }
        }
        (EvidenceKind::ErrorRate, Observed::Counts { canary, primary }) => {
            let canary = Counts {
                requests: round(canary.requests),
                events: round(canary.errors),
            };
            let primary = Counts {
                requests: round(primary.requests),
                events: round(primary.errors),
            };
            let margins = Margins::of(metric, ComparisonKind::ErrorRate);
            let arms = Arms { canary, primary };
            compare(analysis, margins, state, arms, look, "errors", outcome)
        }
        (EvidenceKind::Latency, Observed::Histograms { canary, primary }) => {
            let quantile = metric
                .comparison
                .as_ref()
                .and_then(|c| c.quantile)
                .unwrap_or(0.99);
            let Some(threshold) = state.slow_above else {
                latency::gather(
                    &mut state.selection_buckets,
                    &mut state.selection_requests,
                    &primary,
                );
                // The canary's warm-up interval is never counted for latency (cold caches and
                // JIT slow it most); the primary's requests of that interval choose the boundary.
                let warm = look.elapsed >= analysis.interval.as_secs();
                if warm && state.selection_requests >= latency::SELECTION_REQUESTS {
                    state.slow_above = latency::choose(
                        &state.selection_buckets,
                        state.selection_requests,
                        quantile,
                    );
                    state.selection_buckets.clear();
                }
                let message = match state.slow_above {
                    Some(t) => format!(
                        "slow means above le={} (the primary's p{}: {:.2}% of its requests); counting starts next interval",
                        t.le,
                        quantile * 100.0,
                        t.primary_tail * 100.0
                    ),
                    None => format!(
                        "choosing the slow boundary from the primary ({:.0} of {:.0} requests seen)",
                        state.selection_requests,
                        latency::SELECTION_REQUESTS
                    ),
                };
                return outcome(Outcome::Warming, false, message);
            };
            let counts = latency::slow_counts(&canary, threshold.le)
                .map_err(|e| format!("the canary's histogram {e}"))
                .and_then(|c| {
                    latency::slow_counts(&primary, threshold.le)
                        .map(|p| (c, p))
                        .map_err(|e| format!("the primary's histogram {e}"))
                });
            match counts {
                Ok((canary, primary)) => {
                    let margins = Margins::of(metric, ComparisonKind::Latency);
                    let arms = Arms { canary, primary };
                    compare(
                        analysis,
                        margins,
                        state,
                        arms,
                        look,
                        "slow requests",
                        outcome,
                    )
                }
                Err(message) => outcome(Outcome::NoData, false, message),
            }
        }
        (kind, observed) => outcome(
            Outcome::NoData,
            false,
            format!("internal: a {kind:?} metric was given {observed:?}"),
        ),
    }
}

/// The regression a promotion must rule out: the canary's event rate at least `relative` times
/// the primary's, or at least the primary's plus `absolute`.
#[derive(Clone, Copy, Debug)]
struct Margins {
    relative: f64,
    absolute: f64,
}

impl Margins {
    /// The metric's margins, or the defaults of `kind` for a metric without a comparison.
    fn of(metric: &MetricCheck, kind: ComparisonKind) -> Self {
        match metric.comparison.as_ref() {
            Some(c) => Self {
                relative: c.max_regression(),
                absolute: c.tolerance(),
            },
            None => Self {
                relative: kind.default_max_regression(),
                absolute: kind.default_tolerance(),
            },
        }
    }
}

/// The e-value, as a share of ln(1/α), from which a comparison holds the schedule: 0.4 is an
/// e-value of 6.3 at α = 1%, which a canary as good as the primary reaches at some point of a
/// release with probability at most 1/6.3 (Ville), in practice far less often.
const HOLD_SHARE: f64 = 0.4;

/// The checks of the canary's first `interval` of traffic (its warm-up: cold caches, JIT) weigh
/// a quarter: enough for a release that fails outright to be rolled back within the interval,
/// not enough for a short blip to do it alone.
const WARMUP_WEIGHT: f64 = 0.25;

/// One look's counts per arm.
#[derive(Clone, Copy, Debug)]
struct Arms {
    canary: Counts,
    primary: Counts,
}

fn compare(
    analysis: &Analysis,
    margins: Margins,
    state: &mut MetricEvidence,
    Arms { canary, primary }: Arms,
    look: Look,
    what: &str,
    outcome: impl Fn(Outcome, bool, String) -> MetricOutcome,
) -> MetricOutcome {
    if canary.requests == 0 || primary.requests == 0 {
        let arm = if canary.requests == 0 {
            "canary"
        } else {
            "primary"
        };
        return outcome(
            Outcome::NoData,
            false,
            format!("the {arm} served no requests"),
        );
    }
    let Some(test) = state.sequential.as_mut() else {
        return outcome(Outcome::NoData, false, "internal: no test state".into());
    };
    let weight = if look.elapsed <= analysis.interval.as_secs() {
        WARMUP_WEIGHT
    } else {
        1.0
    };
    sequential::update(test, canary, primary, analysis.alpha, weight, look.pods);
    let summary = describe(test, analysis.alpha, what);
    if test.rejected {
        return outcome(Outcome::Fail, false, summary);
    }
    let before = test.step_log_e_value;
    if look.step {
        test.step_log_e_value = test.log_e_value;
    }
    // One bad interval, or that much evidence in all: hold the canary rather than send it more
    // traffic while the next intervals decide. Holding changes nothing in the test, only what
    // the canary is exposed to.
    let full = HOLD_SHARE * (1.0 / analysis.alpha).ln() - 1e-9;
    if test.log_e_value - before >= full || test.log_e_value >= full {
        return MetricOutcome {
            waiting: Some(format!("{what}: the evidence leans towards a rollback")),
            suspect: true,
            ..outcome(Outcome::Pass, false, summary)
        };
    }
    match promotion(analysis, margins, test, what) {
        Ok(()) => outcome(Outcome::Pass, true, summary),
        Err(why) => MetricOutcome {
            waiting: Some(why),
            ..outcome(Outcome::Pass, false, summary)
        },
    }
}

/// Whether the evidence rules out the regression of `margins`, or what it still lacks.
///
/// Two routes, either enough: the relative test rules out `relative` (it needs events), or the
/// canary's own rate is bounded below the primary's plus `absolute` (it needs requests only):
/// an anytime-valid upper bound on the canary's rate under an anytime-valid lower bound on the
/// primary's plus the tolerance, each at α/2. A release as bad as both margins is promoted by
/// each route with probability at most α, so by either at most 2α.
fn promotion(
    analysis: &Analysis,
    margins: Margins,
    test: &SequentialState,
    what: &str,
) -> Result<(), String> {
    let min = analysis.min_sample_per_arm;
    for (arm, tally) in [("canary", test.canary), ("primary", test.primary)] {
        if tally.requests < min {
            return Err(format!(
                "the {arm} has served {} of the {min} requests analysis.minSamplePerArm asks before a promotion",
                tally.requests
            ));
        }
    }
    if sequential::rules_out(test, margins.relative, analysis.alpha) {
        return Ok(());
    }
    let mut why = format!(
        "{what}: not yet shown below {}x the primary's rate (comparison.maxRegression)",
        short(margins.relative)
    );
    if margins.absolute > 0.0 {
        let half = analysis.alpha / 2.0;
        let scale = margins.absolute;
        let (_, canary_upper) = rate::bounds(test.canary.events, test.canary.requests, half, scale);
        let (primary_lower, _) =
            rate::bounds(test.primary.events, test.primary.requests, half, scale);
        if canary_upper < primary_lower + margins.absolute {
            return Ok(());
        }
        why.push_str(&format!(
            " nor within {} points of it (comparison.tolerance): the canary's rate may be up to {:.3}%, the primary's as low as {:.3}%; more requests narrow both",
            pct(margins.absolute),
            100.0 * canary_upper,
            100.0 * primary_lower
        ));
    }
    Err(why)
}

/// A fraction as percentage points, without trailing zeros.
fn pct(fraction: f64) -> String {
    let text = format!("{:.3}", 100.0 * fraction);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn round(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}

/// The evidence in one sentence, for the status and the report.
pub fn describe(test: &SequentialState, alpha: f64, what: &str) -> String {
    let rate = |t: crate::api::ArmTally| {
        if t.requests == 0 {
            0.0
        } else {
            100.0 * t.events as f64 / t.requests as f64
        }
    };
    let estimate = sequential::estimate(test, alpha);
    format!(
        "{what}: canary {:.3}% ({}/{}) vs primary {:.3}% ({}/{}); canary/primary ≈ {} [{}, {}]; e-value {} (rollback at {})",
        rate(test.canary),
        test.canary.events,
        test.canary.requests,
        rate(test.primary),
        test.primary.events,
        test.primary.requests,
        short(estimate.ratio),
        estimate.lower.map_or("0".into(), short),
        estimate.upper.map_or("∞".into(), short),
        e_value(test.log_e_value),
        short(1.0 / alpha),
    )
}

/// An e-value for people: plain when moderate, in powers of ten when huge or tiny.
fn e_value(log_e: f64) -> String {
    let e = log_e.exp();
    if (1e-3..1e4).contains(&e) {
        format!("{e:.3}")
    } else {
        format!("1e{:.1}", log_e / std::f64::consts::LN_10)
    }
}

fn short(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_only(extra: &str) -> Analysis {
        let yaml = format!(
            "{{stepWeight: 10, maxWeight: 50, metrics: [{{name: errors, templateRef: {{name: e}}, comparison: {{type: errorRate, requestsTemplateRef: {{name: r}}{extra}}}}}]}}"
        );
        serde_yaml_ng::from_str(&yaml).unwrap()
    }

    fn counts(canary: f64, canary_errors: f64, primary: f64, primary_errors: f64) -> Observation {
        Observation {
            metric: "errors".into(),
            result: Ok(Observed::Counts {
                canary: RequestCounts {
                    requests: canary,
                    errors: canary_errors,
                },
                primary: RequestCounts {
                    requests: primary,
                    errors: primary_errors,
                },
            }),
        }
    }

    #[test]
    fn no_errors_at_all_promote_once_the_canary_rate_is_bounded() {
        let analysis = errors_only("");
        let mut evidence = Evidence::default();
        // 6,000 clean canary requests: not yet, and the hold says why.
        for _ in 0..4 {
            let j = judge(
                &analysis,
                &mut evidence,
                &[counts(1500.0, 0.0, 6000.0, 0.0)],
            );
            assert_eq!(j.verdict, Verdict::Continue);
            let why = waiting(&j.outcomes);
            assert!(why.contains("comparison.tolerance"), "{why}");
            assert!(why.contains("comparison.maxRegression"), "{why}");
        }
        // 9,000: the canary's error rate is below 0.1 points above the primary's.
        let j = judge(
            &analysis,
            &mut evidence,
            &[counts(3000.0, 0.0, 6000.0, 0.0)],
        );
        assert_eq!(j.verdict, Verdict::Ready, "{}", waiting(&j.outcomes));
        // Without the tolerance route the same evidence holds.
        let strict = errors_only(", tolerance: 0");
        let mut evidence = Evidence::default();
        for _ in 0..10 {
            let j = judge(&strict, &mut evidence, &[counts(3000.0, 0.0, 6000.0, 0.0)]);
            assert_eq!(j.verdict, Verdict::Continue);
        }
    }

    #[test]
    fn a_canary_above_the_tolerance_is_never_promoted_by_it() {
        // 0.2% errors against 0.1%: twice the primary's rate and 0.1 points above it, exactly
        // the regression both routes must rule out, so neither may promote it however long it
        // runs (it may well be rolled back).
        let analysis = errors_only(", maxRegression: 2");
        let mut evidence = Evidence::default();
        for _ in 0..60 {
            let j = judge(
                &analysis,
                &mut evidence,
                &[counts(5000.0, 10.0, 5000.0, 5.0)],
            );
            assert_ne!(j.verdict, Verdict::Ready);
        }
    }

    #[test]
    fn the_hold_names_min_sample_per_arm() {
        let analysis = errors_only("");
        let mut evidence = Evidence::default();
        let j = judge(&analysis, &mut evidence, &[counts(50.0, 0.0, 450.0, 0.0)]);
        let why = waiting(&j.outcomes);
        assert!(
            why.contains("minSamplePerArm") && why.contains("50 of the 100"),
            "{why}"
        );
    }
}
