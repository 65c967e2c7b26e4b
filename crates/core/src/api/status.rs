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
    /// The Canary's `metadata.generation` this status was written for: tools that wait on
    /// resources (kstatus, Flux's `wait: true`, Argo CD) treat a status older than the spec as
    /// still in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(flatten)]
    pub evidence: Evidence,
}

/// The type of Flagger's condition: whether the release was promoted.
pub const PROMOTED: &str = "Promoted";
/// The reasons of the `Promoted` condition when a release ends without promotion.
pub const FAILED: &str = "Failed";
pub const INCONCLUSIVE: &str = "Inconclusive";

/// kstatus's conditions, for GitOps tools that wait on a Canary: `Ready` (always there: True
/// when nothing is under way and the last release did not fail), `Reconciling` (True while a
/// release is in flight, absent otherwise) and `Stalled` (True after a rollback, an inconclusive
/// end or an invalid spec, absent otherwise).
pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
/// The reasons of `Ready` and `Stalled` for a Canary whose spec sluice refuses.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// The reason of `Stalled` after a rollback.
pub const ROLLED_BACK: &str = "RolledBack";

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

    /// Whether a release is under way: from its start until it is promoted and finalised or
    /// rolled back (what `--max-concurrent-releases` counts).
    pub fn in_flight(&self) -> bool {
        matches!(
            self.phase,
            Some(
                Phase::Waiting
                    | Phase::Progressing
                    | Phase::WaitingPromotion
                    | Phase::Promoting
                    | Phase::Finalising
            )
        )
    }

    /// Whether the release is over: promoted and finalised, or failed.
    pub fn ended(&self) -> bool {
        matches!(self.phase, Some(Phase::Succeeded | Phase::Failed))
    }

    /// Sets `Ready`, `Reconciling` and `Stalled` from the phase, for `generation` of the spec, at
    /// `now` (RFC 3339; a condition's transition time changes only when its status does).
    pub fn set_health(&mut self, generation: Option<i64>, now: &str) {
        let phase = self.phase.unwrap_or(Phase::Initializing);
        let reason = format!("{phase:?}");
        let message = self.message.clone().unwrap_or_default();
        self.observed_generation = generation.or(self.observed_generation);
        match phase {
            Phase::Initialized | Phase::Succeeded => {
                self.put_condition(READY, "True", &reason, &message, now);
                self.remove_condition(RECONCILING);
                self.remove_condition(STALLED);
            }
            Phase::Failed => {
                let why = match self.verdict() {
                    Some(ReleaseVerdict::Inconclusive) => INCONCLUSIVE,
                    _ => ROLLED_BACK,
                };
                self.put_condition(READY, "False", why, &message, now);
                self.remove_condition(RECONCILING);
                self.put_condition(STALLED, "True", why, &message, now);
            }
            _ => {
                self.put_condition(READY, "False", &reason, &message, now);
                self.put_condition(RECONCILING, "True", &reason, &message, now);
                self.remove_condition(STALLED);
            }
        }
    }

    /// A spec sluice refuses: not ready, stalled until the spec changes, with what to fix.
    pub fn set_invalid(&mut self, message: &str, generation: Option<i64>, now: &str) {
        self.message = Some(message.to_string());
        self.observed_generation = generation.or(self.observed_generation);
        self.put_condition(READY, "False", INVALID_SPEC, message, now);
        self.remove_condition(RECONCILING);
        self.put_condition(STALLED, "True", INVALID_SPEC, message, now);
    }

    fn put_condition(&mut self, kind: &str, status: &str, reason: &str, message: &str, now: &str) {
        match self.conditions.iter_mut().find(|c| c.kind == kind) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now.to_string();
                }
                c.status = status.into();
                c.reason = reason.into();
                c.message = message.into();
            }
            None => self.conditions.push(Condition {
                kind: kind.into(),
                status: status.into(),
                reason: reason.into(),
                message: message.into(),
                last_transition_time: now.to_string(),
            }),
        }
    }

    fn remove_condition(&mut self, kind: &str) {
        self.conditions.retain(|c| c.kind != kind);
    }
}

/// A Kubernetes-style condition: `Promoted` (Flagger's), and kstatus's `Ready`, `Reconciling`
/// and `Stalled`.
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
    /// The same with each burst's weight capped (the looks a burst on one pod can touch may
    /// raise a point by at most what such a burst can explain), counted one look late: the
    /// rollback's evidence.
    #[serde(default)]
    pub capped_log_likelihood: Vec<f64>,
    /// The last look's rises, counted into `cappedLogLikelihood` at the next look.
    #[serde(default)]
    pub pending_rise: Vec<f64>,
    /// The last look's cap (natural log).
    #[serde(default)]
    pub pending_cap: f64,
    /// Each grid point's capped rise at the last two counted looks (0 for looks counted in
    /// full), from which the cap left for the next look is computed.
    #[serde(default)]
    pub last_rise: Vec<f64>,
    #[serde(default)]
    pub rise_before_last: Vec<f64>,
    /// Which of the last looks were loud (several canary events, evidence of a large regression
    /// above the cap): bit 0 is the last look.
    #[serde(default)]
    pub loud_history: u32,
    /// Natural log of the e-value (the test martingale, over the capped ratios) after the last
    /// interval.
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

    fn condition<'a>(status: &'a CanaryStatus, kind: &str) -> Option<(&'a str, &'a str)> {
        status
            .conditions
            .iter()
            .find(|c| c.kind == kind)
            .map(|c| (c.status.as_str(), c.reason.as_str()))
    }

    /// What kstatus (Flux's `wait: true`) reads: in progress, current, or failed.
    #[test]
    fn health_conditions_follow_the_phase_as_kstatus_reads_them() {
        let mut s = status(Phase::Progressing, FAILED);
        s.set_health(Some(3), "2026-01-01T00:00:00Z");
        assert_eq!(condition(&s, READY), Some(("False", "Progressing")));
        assert_eq!(condition(&s, RECONCILING), Some(("True", "Progressing")));
        assert_eq!(condition(&s, STALLED), None);
        assert_eq!(s.observed_generation, Some(3));

        s.phase = Some(Phase::Succeeded);
        s.set_health(Some(3), "2026-01-01T00:01:00Z");
        assert_eq!(condition(&s, READY), Some(("True", "Succeeded")));
        assert_eq!(condition(&s, RECONCILING), None);
        let ready = s.conditions.iter().find(|c| c.kind == READY).unwrap();
        assert_eq!(ready.last_transition_time, "2026-01-01T00:01:00Z");
        // The same status again: the transition time stays.
        s.set_health(Some(3), "2026-01-01T00:02:00Z");
        let ready = s.conditions.iter().find(|c| c.kind == READY).unwrap();
        assert_eq!(ready.last_transition_time, "2026-01-01T00:01:00Z");

        let mut failed = status(Phase::Failed, FAILED);
        failed.set_health(Some(4), "2026-01-01T00:00:00Z");
        assert_eq!(condition(&failed, STALLED), Some(("True", ROLLED_BACK)));
        assert_eq!(condition(&failed, READY), Some(("False", ROLLED_BACK)));
        let mut inconclusive = status(Phase::Failed, INCONCLUSIVE);
        inconclusive.set_health(None, "2026-01-01T00:00:00Z");
        assert_eq!(
            condition(&inconclusive, STALLED),
            Some(("True", INCONCLUSIVE))
        );
        // Flagger's condition is kept as it was.
        assert_eq!(
            condition(&inconclusive, PROMOTED),
            Some(("False", INCONCLUSIVE))
        );

        let mut invalid = status(Phase::Progressing, FAILED);
        invalid.set_health(Some(5), "2026-01-01T00:00:00Z");
        invalid.set_invalid(
            "spec.analysis.alpha: too big",
            Some(6),
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(condition(&invalid, STALLED), Some(("True", INVALID_SPEC)));
        assert_eq!(condition(&invalid, RECONCILING), None);
        assert_eq!(invalid.observed_generation, Some(6));
    }
}
