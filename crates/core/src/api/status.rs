//! The Canary's status: where a release stands, and the evidence of its analysis kept as
//! sufficient statistics, so that a restarted controller resumes exactly where it stopped.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub canary_weight: u32,
    #[serde(default)]
    pub iterations: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The revision (pod template and tracked configs) of the release under way or last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_spec: Option<String>,
    /// The revision the primary runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_promoted_spec: Option<String>,
    /// ConfigMaps and Secrets the target references (`configmap/NAME`, `secret/NAME`), with the
    /// hash of their data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tracked_configs: BTreeMap<String, String>,
    /// When the release last moved a step (weight or iteration); RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step_time: Option<String>,
    /// When the analysis last judged an interval; RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis_time: Option<String>,
    /// When the comparisons last looked at the evidence (every `analysis.checkInterval`);
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<String>,
    /// Manual actions already carried out: annotation name to the value that was handled.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub handled_actions: BTreeMap<String, String>,
    /// The alerts raised in the current release, by key (`started`, `rolled-back`,
    /// `waiting:confirm-rollout`, ...): written with the step that raised them, so that the same
    /// step run again, by this controller or by a restarted one, does not raise them twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<String>,
    #[serde(flatten)]
    pub evidence: Evidence,
}

/// The type of the one condition sluice keeps: whether the release was promoted.
pub const PROMOTED: &str = "Promoted";
/// The reasons of the `Promoted` condition when a release ends without promotion.
pub const FAILED: &str = "Failed";
pub const INCONCLUSIVE: &str = "Inconclusive";

/// How a release ended, or is bound to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseVerdict {
    Promoted,
    RolledBack,
    /// Ended without promotion for want of evidence either way (no traffic, no data).
    Inconclusive,
}

impl CanaryStatus {
    /// The verdict once the analysis has reached one: `Promoted` from `Promoting` on (what
    /// follows only copies the canary to the primary), `RolledBack` or `Inconclusive` on
    /// `Failed` (the `Promoted` condition's reason tells which); `None` while it runs.
    pub fn verdict(&self) -> Option<ReleaseVerdict> {
        match self.phase? {
            Phase::Promoting | Phase::Finalising | Phase::Succeeded => {
                Some(ReleaseVerdict::Promoted)
            }
            Phase::Failed => {
                let inconclusive = self
                    .conditions
                    .iter()
                    .any(|c| c.kind == PROMOTED && c.reason == INCONCLUSIVE);
                Some(if inconclusive {
                    ReleaseVerdict::Inconclusive
                } else {
                    ReleaseVerdict::RolledBack
                })
            }
            _ => None,
        }
    }

    /// Whether the release is over: promoted and finalised, or failed.
    pub fn ended(&self) -> bool {
        matches!(self.phase, Some(Phase::Succeeded | Phase::Failed))
    }
}

/// A Kubernetes-style condition; sluice keeps one, of type `Promoted`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

/// Flagger's phases.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Phase {
    Initializing,
    Initialized,
    Waiting,
    Progressing,
    WaitingPromotion,
    Promoting,
    Finalising,
    Succeeded,
    Failed,
}

/// Everything the analysis has learnt during the current release.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// Analysis intervals judged so far in this release.
    #[serde(default)]
    pub analysed_intervals: u32,
    /// Intervals in which a guardrail (thresholdRange) failed; never reset during a release.
    #[serde(default)]
    pub failed_checks: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricEvidence>,
    /// The schedule is done and the last step lacked only the evidence a promotion needs: the
    /// first check that has it promotes, without waiting for the next step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_evidence: bool,
    /// The start of the comparisons' counting window (the canary's first traffic), RFC 3339:
    /// each check queries the counts since then and counts what is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counting_since: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricEvidence {
    pub name: String,
    pub kind: EvidenceKind,
    /// Comparisons: the state of the sequential test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<SequentialState>,
    /// Latency comparisons: the bucket boundary that splits slow from normal requests, chosen
    /// from the primary before any request is counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_above: Option<SlowThreshold>,
    /// Latency comparisons: the primary's buckets gathered until there are enough requests to
    /// choose `slowAbove`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selection_buckets: Vec<Bucket>,
    #[serde(default)]
    pub selection_requests: f64,
    /// Guardrails: the last value read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_value: Option<f64>,
    /// Guardrails: intervals in which this metric was out of its range.
    #[serde(default)]
    pub failed_checks: u32,
    /// What the last interval showed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<String>,
    /// Comparisons: the counts since `countingSince` already taken into account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted: Option<Counted>,
}

impl MetricEvidence {
    /// A metric's evidence before anything was observed.
    pub fn new(name: &str, kind: EvidenceKind, sequential: Option<SequentialState>) -> Self {
        Self {
            name: name.to_string(),
            kind,
            sequential,
            slow_above: None,
            selection_buckets: Vec::new(),
            selection_requests: 0.0,
            last_value: None,
            failed_checks: 0,
            last_outcome: None,
            counted: None,
        }
    }
}

/// Running totals per arm as the last check read them: `[requests, errors]` of an error-rate
/// comparison, or a latency comparison's cumulative bucket counts in `le` order, `+Inf` last.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct Counted {
    pub canary: Vec<f64>,
    pub primary: Vec<f64>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum EvidenceKind {
    ErrorRate,
    Latency,
    Guardrail,
}

/// Per-arm totals of a comparison: requests seen and events (errors, or slow requests) among
/// them, summed over the intervals that were counted.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArmTally {
    pub requests: u64,
    pub events: u64,
}

/// The sufficient statistics of the relative-risk test (see `analysis::sequential`): totals per
/// arm, and the log-likelihood ratio of every relative risk on a fixed grid against the null.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SequentialState {
    pub canary: ArmTally,
    pub primary: ArmTally,
    /// The relative risk (canary event rate / primary event rate) under the null: 1 + minEffect.
    pub null_ratio: f64,
    /// The grid of relative risks: `2^(log2From + i * log2Step)` for i in 0..len(logLikelihood).
    pub log2_from: f64,
    pub log2_step: f64,
    /// Running log-likelihood ratio of each grid point against `nullRatio`.
    pub log_likelihood: Vec<f64>,
    /// Natural log of the e-value (the test martingale) after the last interval.
    pub log_e_value: f64,
    /// Set once the e-value has crossed 1/alpha; it stays set for the release.
    #[serde(default)]
    pub rejected: bool,
    /// `logEValue` at the last analysis step, from which a step's rise is measured.
    #[serde(default)]
    pub step_log_e_value: f64,
}

/// A cumulative histogram bucket: requests at or below `le`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct Bucket {
    /// The finite upper bound (the +Inf bucket is the request total, kept apart).
    pub le: f64,
    pub count: f64,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlowThreshold {
    /// The histogram bucket's upper bound (`le`), in the histogram's unit.
    pub le: f64,
    /// The primary's share of requests above it when it was chosen.
    pub primary_tail: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: Phase, reason: &str) -> CanaryStatus {
        CanaryStatus {
            phase: Some(phase),
            conditions: vec![Condition {
                kind: PROMOTED.into(),
                status: "False".into(),
                reason: reason.into(),
                ..Condition::default()
            }],
            ..CanaryStatus::default()
        }
    }

    #[test]
    fn the_verdict_is_taken_at_promoting_and_told_apart_on_failed() {
        assert_eq!(status(Phase::Progressing, "").verdict(), None);
        assert_eq!(
            status(Phase::Promoting, "").verdict(),
            Some(ReleaseVerdict::Promoted)
        );
        assert!(!status(Phase::Promoting, "").ended());
        assert_eq!(
            status(Phase::Failed, FAILED).verdict(),
            Some(ReleaseVerdict::RolledBack)
        );
        assert_eq!(
            status(Phase::Failed, INCONCLUSIVE).verdict(),
            Some(ReleaseVerdict::Inconclusive)
        );
        assert!(status(Phase::Failed, INCONCLUSIVE).ended());
    }
}
