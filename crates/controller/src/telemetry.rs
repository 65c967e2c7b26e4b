//! sluice's own Prometheus metrics, kept apart from the logic: the reconcile reports what it did
//! and this turns it into series.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use sluice_core::analysis::Outcome as MetricOutcome;
use sluice_core::api::{CanaryStatus, Phase};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CanaryLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    namespace: String,
    name: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnalysisLabels {
    namespace: String,
    name: String,
    metric: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    outcome: String,
}

/// Per kind of error, not per Canary: `metric_label`s are a handful of fixed words, so the series
/// stay few however many Canaries fail.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

/// Per provider (a handful per cluster), provider type, kind of alert and outcome (`sent`,
/// `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    provider: String,
    /// `type`, as Flagger's and sluice's resources name it.
    r#type: String,
    event: String,
    outcome: String,
}

const PHASES: [Phase; 9] = [
    Phase::Initializing,
    Phase::Initialized,
    Phase::Waiting,
    Phase::Progressing,
    Phase::WaitingPromotion,
    Phase::Promoting,
    Phase::Finalising,
    Phase::Succeeded,
    Phase::Failed,
];

pub struct Metrics {
    registry: Registry,
    phase: Family<PhaseLabels, Gauge>,
    weight: Family<CanaryLabels, Gauge>,
    failed_checks: Family<CanaryLabels, Gauge>,
    analysis: Family<AnalysisLabels, Counter>,
    releases: Family<ResultLabels, Counter>,
    durations: Family<ResultLabels, Histogram>,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Histogram,
    leader: Gauge,
    alerts: Family<AlertLabels, Counter>,
    /// Serialises encoding with updates of several families at once.
    lock: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let phase = Family::<PhaseLabels, Gauge>::default();
        let weight = Family::<CanaryLabels, Gauge>::default();
        let failed_checks = Family::<CanaryLabels, Gauge>::default();
        let analysis = Family::<AnalysisLabels, Counter>::default();
        let releases = Family::<ResultLabels, Counter>::default();
        let durations = Family::<ResultLabels, Histogram>::new_with_constructor(|| {
            // 1 minute to about 17 hours.
            Histogram::new(exponential_buckets(60.0, 2.0, 11))
        });
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        // 5 ms to about 20 s: a reconcile is a few API calls and perhaps a Prometheus query
        // bounded by --query-timeout.
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        let leader = Gauge::default();
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "canary_phase",
            "1 for the phase each Canary is in",
            phase.clone(),
        );
        registry.register(
            "canary_weight",
            "Canary traffic weight, percent",
            weight.clone(),
        );
        registry.register(
            "canary_failed_checks",
            "Failed guardrail checks in the current release",
            failed_checks.clone(),
        );
        registry.register(
            "analysis_results",
            "Analysed intervals per metric and outcome",
            analysis.clone(),
        );
        registry.register("releases", "Finished releases by outcome", releases.clone());
        registry.register(
            "release_duration_seconds",
            "Release durations by outcome",
            durations.clone(),
        );
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind of error",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time each reconcile took, failed ones included",
            reconcile_duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        registry.register(
            "alerts",
            "Alerts sent or failed, by provider, provider type, event and outcome",
            alerts.clone(),
        );
        Self {
            registry,
            phase,
            weight,
            failed_checks,
            analysis,
            releases,
            durations,
            reconciles,
            errors,
            reconcile_duration,
            leader,
            alerts,
            lock: Mutex::new(()),
        }
    }

    /// Records one reconcile of a Canary: `before` and `after` are its status on both sides,
    /// `outcomes` the metrics judged in it, `now` Unix seconds.
    pub fn record(
        &self,
        namespace: &str,
        name: &str,
        before: Option<&CanaryStatus>,
        after: &CanaryStatus,
        outcomes: &[(String, MetricOutcome)],
        now: i64,
    ) {
        let _guard = self.lock.lock();
        self.reconciles.inc();
        let canary = CanaryLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        for phase in PHASES {
            let labels = PhaseLabels {
                namespace: namespace.into(),
                name: name.into(),
                phase: format!("{phase:?}"),
            };
            self.phase
                .get_or_create(&labels)
                .set(i64::from(after.phase == Some(phase)));
        }
        self.weight
            .get_or_create(&canary)
            .set(i64::from(after.canary_weight));
        self.failed_checks
            .get_or_create(&canary)
            .set(i64::from(after.evidence.failed_checks));
        for (metric, outcome) in outcomes {
            let labels = AnalysisLabels {
                namespace: namespace.into(),
                name: name.into(),
                metric: metric.clone(),
                outcome: format!("{outcome:?}").to_lowercase(),
            };
            self.analysis.get_or_create(&labels).inc();
        }
        let ended = |s: Option<&CanaryStatus>| {
            matches!(
                s.and_then(|s| s.phase),
                Some(Phase::Succeeded | Phase::Failed)
            )
        };
        if ended(Some(after)) && !ended(before) {
            let outcome = if after.phase == Some(Phase::Succeeded) {
                "succeeded"
            } else {
                "failed"
            };
            let labels = ResultLabels {
                outcome: outcome.into(),
            };
            self.releases.get_or_create(&labels).inc();
            // The release began when the Promoted condition went Unknown.
            let started = before
                .and_then(|s| {
                    s.conditions
                        .iter()
                        .find(|c| c.kind == sluice_core::api::PROMOTED && c.status == "Unknown")
                })
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(&c.last_transition_time).ok());
            if let Some(started) = started {
                let seconds = (now - started.timestamp()).max(0) as f64;
                self.durations.get_or_create(&labels).observe(seconds);
            }
        }
    }

    /// Counts a failed reconcile under its error's `metric_label`.
    pub fn record_error(&self, label: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { error: label })
            .inc();
    }

    /// Records how long one reconcile took, whatever its outcome.
    pub fn record_duration(&self, took: Duration) {
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Counts one alert to one provider (`namespace/name`) of type `kind` (`slack`, ...;
    /// `unknown` when the provider could not be read), `event` the alert's kind, `outcome`
    /// `sent` or `failed`.
    pub fn record_alert(&self, provider: &str, kind: &str, event: &str, outcome: &str) {
        let labels = AlertLabels {
            provider: provider.into(),
            r#type: kind.into(),
            event: event.into(),
            outcome: outcome.into(),
        };
        self.alerts.get_or_create(&labels).inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let _guard = self.lock.lock();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::api::Condition;

    #[test]
    fn records_phases_weights_results_and_durations() {
        let m = Metrics::new();
        let before = CanaryStatus {
            phase: Some(Phase::Progressing),
            canary_weight: 50,
            conditions: vec![Condition {
                kind: sluice_core::api::PROMOTED.into(),
                status: "Unknown".into(),
                reason: "Progressing".into(),
                message: String::new(),
                last_transition_time: "2026-11-20T10:00:00Z".into(),
            }],
            ..CanaryStatus::default()
        };
        let after = CanaryStatus {
            phase: Some(Phase::Succeeded),
            ..CanaryStatus::default()
        };
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:06:00Z")
            .unwrap()
            .timestamp();
        m.record(
            "test",
            "podinfo",
            Some(&before),
            &after,
            &[("errors".into(), MetricOutcome::Pass)],
            at,
        );
        let text = m.encode();
        assert!(
            text.contains(
                r#"sluice_canary_phase{namespace="test",name="podinfo",phase="Succeeded"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"sluice_canary_phase{namespace="test",name="podinfo",phase="Progressing"} 0"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"sluice_analysis_results_total{namespace="test",name="podinfo",metric="errors",outcome="pass"} 1"#), "{text}");
        assert!(
            text.contains(r#"sluice_releases_total{outcome="succeeded"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_release_duration_seconds_sum{outcome="succeeded"} 360.0"#),
            "{text}"
        );
        // The same end seen again is not a second release.
        m.record("test", "podinfo", Some(&after), &after, &[], at + 60);
        assert!(
            m.encode()
                .contains(r#"sluice_releases_total{outcome="succeeded"} 1"#)
        );
    }

    #[test]
    fn counts_alerts_by_provider_type_event_and_outcome() {
        let m = Metrics::new();
        m.record_alert("test/on-call", "slack", "rolled-back", "sent");
        m.record_alert("test/on-call", "slack", "rolled-back", "sent");
        m.record_alert("test/chat", "unknown", "started", "failed");
        let text = m.encode();
        assert!(
            text.contains(r#"sluice_alerts_total{provider="test/on-call",type="slack",event="rolled-back",outcome="sent"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_alerts_total{provider="test/chat",type="unknown",event="started",outcome="failed"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn counts_errors_by_kind_and_times_reconciles() {
        let m = Metrics::new();
        // The histogram is there from the start; the error series appear with their first error.
        assert!(
            m.encode()
                .contains("sluice_reconcile_duration_seconds_count 0")
        );
        m.record_error("cluster_unreachable");
        m.record_error("cluster_unreachable");
        m.record_error("router");
        m.record_duration(Duration::from_millis(250));
        m.record_duration(Duration::from_millis(750));
        let text = m.encode();
        assert!(
            text.contains(r#"sluice_reconcile_errors_total{error="cluster_unreachable"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_reconcile_errors_total{error="router"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("sluice_reconcile_duration_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains("sluice_reconcile_duration_seconds_sum 1.0"),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_reconcile_duration_seconds_bucket{le="0.32"} 1"#),
            "{text}"
        );
    }
}
