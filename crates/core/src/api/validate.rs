//! Checks a Canary beyond what its YAML shape says, and names each wrong field with the fix.

use std::collections::BTreeSet;
use std::fmt;

use super::{Canary, ComparisonKind, MetricCheck};

/// One problem with a resource: the field's path and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All the problems found, so that a user fixes them in one go.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid Canary:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ValidationErrors(pub Vec<FieldError>);

struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// The largest `minEffect`: a canary tolerated at twice the primary's error rate.
pub const MAX_MIN_EFFECT: f64 = 1.0;
/// The largest `maxRegression`: above it a promotion rules out nothing a user would notice.
pub const MAX_REGRESSION_LIMIT: f64 = 100.0;
/// The largest `minSamplePerArm`.
pub const MAX_MIN_SAMPLE: u64 = 1_000_000_000;
/// The longest interval: the analysis must look at least once a day.
pub const MAX_INTERVAL_SECONDS: u64 = 24 * 3600;

/// Intervals are whole seconds from 1 s to a day: evaluation times are whole Unix seconds, so a
/// sub-second or fractional interval would make consecutive query windows overlap or leave gaps
/// (requests counted twice or never).
fn validate_interval(interval: super::duration::GoDuration, field: &str, problems: &mut Problems) {
    let d = interval.as_duration();
    if d.subsec_nanos() != 0 || d.as_secs() == 0 || d.as_secs() > MAX_INTERVAL_SECONDS {
        problems.add(
            field,
            format!("must be whole seconds from 1s to 24h, found {interval}; e.g. 30s or 1m"),
        );
    }
}

/// Validates a Canary's spec. Every problem is reported, not just the first.
pub fn validate_canary(canary: &Canary) -> Result<(), ValidationErrors> {
    let mut problems = Problems(Vec::new());
    let spec = &canary.spec;
    if spec.target_ref.kind != "Deployment" {
        problems.add(
            "spec.targetRef.kind",
            format!(
                "sluice releases Deployments only, found {:?}; point targetRef at a Deployment",
                spec.target_ref.kind
            ),
        );
    }
    if spec.target_ref.name.is_empty() {
        problems.add(
            "spec.targetRef.name",
            "is empty; name the Deployment to release",
        );
    }
    let analysis = &spec.analysis;
    let a = "spec.analysis";
    if !(analysis.alpha > 0.0 && analysis.alpha <= 0.5) {
        problems.add(
            format!("{a}.alpha"),
            format!(
                "must be above 0 and at most 0.5, found {}; 0.01 accepts a 1% false-rollback rate",
                analysis.alpha
            ),
        );
    }
    if let Some(effect) = analysis.min_effect {
        if !(effect.is_finite() && (0.0..=MAX_MIN_EFFECT).contains(&effect)) {
            problems.add(
                format!("{a}.minEffect"),
                format!("must be from 0 to {MAX_MIN_EFFECT}, found {effect}; 0.2 tolerates a canary 20% worse than the primary"),
            );
        } else {
            // The tolerated ratio must stay below every margin a promotion has to rule out, or
            // the comparison can never allow a promotion (and says it lacks samples).
            for (index, metric) in analysis.metrics.iter().enumerate() {
                if let Some(c) = &metric.comparison
                    && let margin = c.max_regression()
                    && margin.is_finite()
                    && 1.0 + effect >= margin
                {
                    problems.add(
                        format!("{a}.minEffect"),
                        format!(
                            "{effect} tolerates a canary {}x the primary, which reaches metrics[{index}]'s maxRegression {margin}: that comparison could never promote; lower minEffect or raise maxRegression",
                            1.0 + effect
                        ),
                    );
                }
            }
        }
    }
    if analysis.min_sample_per_arm > MAX_MIN_SAMPLE {
        problems.add(
            format!("{a}.minSamplePerArm"),
            format!(
                "must be at most {MAX_MIN_SAMPLE}, found {}; no release serves that many requests, so it would never promote",
                analysis.min_sample_per_arm
            ),
        );
    }
    validate_interval(analysis.interval, &format!("{a}.interval"), &mut problems);
    if let Some(check) = analysis.check_interval {
        validate_interval(check, &format!("{a}.checkInterval"), &mut problems);
    }
    if analysis.threshold == 0 {
        problems.add(
            format!("{a}.threshold"),
            "must be at least 1 (Flagger's tutorial uses 5)",
        );
    }
    validate_schedule(canary, &mut problems);
    if analysis.mirror == Some(true)
        && !(analysis.iterations.is_some() && analysis.matches.is_empty())
    {
        problems.add(
            format!("{a}.mirror"),
            "mirror is for blue/green: set iterations and no match",
        );
    }
    if analysis.mirror == Some(true)
        && let Some(provider) = spec.provider
        && provider != super::RouterKind::Istio
    {
        problems.add(
            format!("{a}.mirror"),
            format!(
                "the {provider} router cannot mirror traffic; use provider istio or remove mirror"
            ),
        );
    }
    if let Some(weight) = analysis.mirror_weight
        && !(1..=100).contains(&weight)
    {
        problems.add(
            format!("{a}.mirrorWeight"),
            format!("must be from 1 to 100, found {weight}"),
        );
    }
    let mut names = BTreeSet::new();
    for (index, metric) in analysis.metrics.iter().enumerate() {
        let field = format!("{a}.metrics[{index}]");
        if !names.insert(metric.name.as_str()) {
            problems.add(
                format!("{field}.name"),
                format!(
                    "{:?} is used by an earlier metric; names must be unique",
                    metric.name
                ),
            );
        }
        validate_metric(metric, analysis.interval, &field, &mut problems);
    }
    if problems.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(problems.0))
    }
}

fn validate_schedule(canary: &Canary, problems: &mut Problems) {
    let analysis = &canary.spec.analysis;
    let a = "spec.analysis";
    if let Some(step) = analysis.step_weight_promotion
        && !(1..=100).contains(&step)
    {
        problems.add(
            format!("{a}.stepWeightPromotion"),
            format!("must be from 1 to 100, found {step}"),
        );
    }
    if analysis.iterations.is_some() {
        if analysis.iterations == Some(0) {
            problems.add(format!("{a}.iterations"), "must be at least 1");
        }
        return;
    }
    if !analysis.step_weights.is_empty() {
        let ascending = analysis.step_weights.windows(2).all(|w| w[0] < w[1]);
        let in_range = analysis.step_weights.iter().all(|w| (1..=100).contains(w));
        if !ascending || !in_range {
            problems.add(
                format!("{a}.stepWeights"),
                "must rise strictly, each from 1 to 100, e.g. [1, 5, 10, 25, 50]",
            );
        }
        return;
    }
    match (analysis.step_weight, analysis.max_weight) {
        (Some(step), Some(max)) => {
            if !(1..=100).contains(&step) {
                problems.add(format!("{a}.stepWeight"), format!("must be from 1 to 100, found {step}"));
            }
            if !(1..=100).contains(&max) {
                problems.add(format!("{a}.maxWeight"), format!("must be from 1 to 100, found {max}"));
            }
            if step > max {
                problems.add(
                    format!("{a}.stepWeight"),
                    format!("{step} is above maxWeight {max}: the first step would send the canary more than the cap; use a step of at most {max}"),
                );
            }
        }
        _ => problems.add(
            a,
            "no schedule: set stepWeight and maxWeight (canary), stepWeights, or iterations (A/B, blue/green)",
        ),
    }
}

fn validate_metric(
    metric: &MetricCheck,
    analysis_interval: super::duration::GoDuration,
    field: &str,
    problems: &mut Problems,
) {
    if metric.name.is_empty() {
        problems.add(format!("{field}.name"), "is empty; give the metric a name");
    }
    if let Some(interval) = metric.interval {
        validate_interval(interval, &format!("{field}.interval"), problems);
    }
    if metric.template_ref.is_none() {
        problems.add(
            format!("{field}.templateRef"),
            "is required: sluice has no built-in queries; apply a MetricTemplate (metrics-templates/ has ready ones) and name it here",
        );
    }
    match (&metric.threshold_range, &metric.comparison) {
        (None, None) => problems.add(
            field,
            "needs thresholdRange (a guardrail on one number) or comparison (canary against primary)",
        ),
        (Some(_), Some(_)) => problems.add(
            field,
            "has both thresholdRange and comparison; split them into two metrics",
        ),
        (Some(range), None) => match (range.min, range.max) {
            (min, max)
                if min.is_some_and(|v| !v.is_finite()) || max.is_some_and(|v| !v.is_finite()) =>
            {
                problems.add(
                    format!("{field}.thresholdRange"),
                    format!(
                        "bounds must be finite numbers, found min {min:?} max {max:?}; a NaN bound never fails, so leave out a bound you do not want"
                    ),
                )
            }
            (None, None) => problems.add(
                format!("{field}.thresholdRange"),
                "needs min, max or both, e.g. {min: 99}",
            ),
            (Some(min), Some(max)) if min > max => problems.add(
                format!("{field}.thresholdRange"),
                format!("min {min} is above max {max}"),
            ),
            _ => {}
        },
        (None, Some(comparison)) => {
            let c = format!("{field}.comparison");
            match comparison.kind {
                ComparisonKind::ErrorRate => {
                    if comparison.requests_template_ref.is_none() {
                        problems.add(
                            format!("{c}.requestsTemplateRef"),
                            "is required for type errorRate: name the template that counts all requests of an arm (templateRef counts the failed ones)",
                        );
                    }
                    if comparison.quantile.is_some() {
                        problems.add(format!("{c}.quantile"), "applies to type latency only; remove it");
                    }
                }
                ComparisonKind::Latency => {
                    if comparison.requests_template_ref.is_some() {
                        problems.add(
                            format!("{c}.requestsTemplateRef"),
                            "applies to type errorRate only; the histogram's +Inf bucket counts the requests",
                        );
                    }
                    if let Some(q) = comparison.quantile
                        && !(q > 0.5 && q < 1.0)
                    {
                        problems.add(
                            format!("{c}.quantile"),
                            format!("must be above 0.5 and below 1, found {q}; 0.99 compares the tail beyond the primary's p99"),
                        );
                    }
                }
            }
            if let Some(margin) = comparison.max_regression
                && !(margin.is_finite() && margin > 1.0 && margin <= MAX_REGRESSION_LIMIT)
            {
                problems.add(
                    format!("{c}.maxRegression"),
                    format!(
                        "must be above 1 and at most {MAX_REGRESSION_LIMIT}, found {margin}: it is the canary/primary ratio a promotion rules out, so 1 or less can never be ruled out; 4 (errors) and 1.41 (latency) are the defaults"
                    ),
                );
            }
            if let Some(tolerance) = comparison.tolerance
                && !(tolerance.is_finite() && (0.0..=0.5).contains(&tolerance))
            {
                problems.add(
                    format!("{c}.tolerance"),
                    format!(
                        "must be from 0 to 0.5, found {tolerance}: it is an absolute rate (0.001 accepts a canary up to 0.1 percentage points worse than the primary); 0 turns it off"
                    ),
                );
            }
            if let Some(interval) = metric.interval
                && interval != analysis_interval
            {
                problems.add(
                    format!("{field}.interval"),
                    format!(
                        "a comparison counts every request once, so its window is analysis.interval ({analysis_interval}); remove interval {interval}"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(analysis: &str) -> Canary {
        let text = format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: Canary\nmetadata: {{name: app}}\nspec:\n  targetRef: {{kind: Deployment, name: app}}\n  analysis:\n{analysis}"
        );
        serde_yaml_ng::from_str(&text).unwrap()
    }

    fn fields(result: Result<(), ValidationErrors>) -> Vec<String> {
        result.unwrap_err().0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_complete_canary_passes() {
        let c = canary(
            "    stepWeight: 10\n    maxWeight: 50\n    metrics:\n      - name: errors\n        templateRef: {name: app-errors}\n        comparison: {type: errorRate, requestsTemplateRef: {name: app-requests}}\n      - name: latency\n        templateRef: {name: app-buckets}\n        comparison: {type: latency, quantile: 0.99}\n      - name: success\n        templateRef: {name: app-success}\n        thresholdRange: {min: 99}\n",
        );
        assert_eq!(validate_canary(&c), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let c = canary(
            "    alpha: 2\n    checkInterval: 500ms\n    stepWeight: 10\n    maxWeight: 150\n    metrics:\n      - name: errors\n        comparison: {type: errorRate}\n      - name: errors\n        templateRef: {name: x}\n        thresholdRange: {min: 5, max: 1}\n      - name: lat\n        interval: 5m\n        templateRef: {name: y}\n        comparison: {type: latency, quantile: 1.5}\n",
        );
        assert_eq!(
            fields(validate_canary(&c)),
            [
                "spec.analysis.alpha",
                "spec.analysis.checkInterval",
                "spec.analysis.maxWeight",
                "spec.analysis.metrics[0].templateRef",
                "spec.analysis.metrics[0].comparison.requestsTemplateRef",
                "spec.analysis.metrics[1].name",
                "spec.analysis.metrics[1].thresholdRange",
                "spec.analysis.metrics[2].comparison.quantile",
                "spec.analysis.metrics[2].interval",
            ]
        );
    }

    /// Each field that could switch the judge off, one case per rule, with the field named.
    #[test]
    fn values_that_would_disable_the_judge_are_refused() {
        let base = "    stepWeight: 10\n    maxWeight: 50\n";
        let errors = "      - name: errors\n        templateRef: {name: e}\n        comparison: {type: errorRate, requestsTemplateRef: {name: r}";
        let guard = "      - name: g\n        templateRef: {name: g}\n        thresholdRange: ";
        let cases: Vec<(String, &str, &str)> = vec![
            (
                format!("{base}    metrics:\n{guard}{{min: .nan}}\n"),
                "spec.analysis.metrics[0].thresholdRange",
                "finite",
            ),
            (
                format!("{base}    metrics:\n{guard}{{max: .inf}}\n"),
                "spec.analysis.metrics[0].thresholdRange",
                "finite",
            ),
            (
                "    stepWeight: 60\n    maxWeight: 50\n".to_string(),
                "spec.analysis.stepWeight",
                "above maxWeight 50",
            ),
            (
                format!("{base}    stepWeightPromotion: 0\n"),
                "spec.analysis.stepWeightPromotion",
                "from 1 to 100",
            ),
            (
                format!("{base}    metrics:\n{errors}, maxRegression: 1}}\n"),
                "spec.analysis.metrics[0].comparison.maxRegression",
                "above 1",
            ),
            (
                format!("{base}    metrics:\n{errors}, maxRegression: 0}}\n"),
                "spec.analysis.metrics[0].comparison.maxRegression",
                "above 1",
            ),
            (
                format!("{base}    metrics:\n{errors}, maxRegression: -2}}\n"),
                "spec.analysis.metrics[0].comparison.maxRegression",
                "above 1",
            ),
            (
                format!("{base}    metrics:\n{errors}, tolerance: 2}}\n"),
                "spec.analysis.metrics[0].comparison.tolerance",
                "from 0 to 0.5",
            ),
            (
                format!("{base}    metrics:\n{errors}, maxRegression: .nan}}\n"),
                "spec.analysis.metrics[0].comparison.maxRegression",
                "above 1",
            ),
            (
                format!("{base}    metrics:\n{errors}, maxRegression: 1e300}}\n"),
                "spec.analysis.metrics[0].comparison.maxRegression",
                "at most 100",
            ),
            (
                format!("{base}    minEffect: 1e300\n"),
                "spec.analysis.minEffect",
                "from 0 to 1",
            ),
            (
                format!("{base}    minEffect: .nan\n"),
                "spec.analysis.minEffect",
                "from 0 to 1",
            ),
            (
                format!("{base}    minEffect: 0.5\n    metrics:\n{errors}, maxRegression: 1.2}}\n"),
                "spec.analysis.minEffect",
                "could never promote",
            ),
            (
                format!("{base}    minSamplePerArm: 18446744073709551615\n"),
                "spec.analysis.minSamplePerArm",
                "never promote",
            ),
            (
                format!("{base}    interval: 500ms\n"),
                "spec.analysis.interval",
                "whole seconds",
            ),
            (
                format!("{base}    interval: 1500ms\n"),
                "spec.analysis.interval",
                "whole seconds",
            ),
            (
                format!("{base}    interval: 48h\n"),
                "spec.analysis.interval",
                "whole seconds",
            ),
            (
                format!("{base}    metrics:\n{guard}{{min: 1}}\n        interval: 100ms\n"),
                "spec.analysis.metrics[0].interval",
                "whole seconds",
            ),
            (
                format!("{base}    mirror: true\n"),
                "spec.analysis.mirror",
                "mirror is for blue/green",
            ),
            (
                "    iterations: 3\n    mirror: true\n    mirrorWeight: 0\n".to_string(),
                "spec.analysis.mirrorWeight",
                "must be from 1 to 100, found 0",
            ),
        ];
        for (analysis, field, message) in cases {
            let c = canary(&analysis);
            let errors = validate_canary(&c).expect_err(&analysis).0;
            assert!(
                errors
                    .iter()
                    .any(|e| e.field == field && e.message.contains(message)),
                "{analysis}: {errors:?}"
            );
        }
        // The boundaries themselves are fine.
        let ok = format!(
            "    stepWeight: 50\n    maxWeight: 50\n    minEffect: 0.3\n    interval: 1s\n    metrics:\n{errors}, maxRegression: 1.5}}\n"
        );
        assert_eq!(validate_canary(&canary(&ok)), Ok(()));
    }

    #[test]
    fn a_schedule_is_required_and_other_kinds_are_refused() {
        let mut c = canary("    metrics: []\n");
        c.spec.target_ref.kind = "StatefulSet".into();
        let errors = validate_canary(&c).unwrap_err();
        assert_eq!(errors.0[0].field, "spec.targetRef.kind");
        assert!(errors.0[0].message.contains("Deployments only"));
        assert_eq!(errors.0[1].field, "spec.analysis");
        assert!(errors.to_string().contains("set stepWeight and maxWeight"));
    }
}
