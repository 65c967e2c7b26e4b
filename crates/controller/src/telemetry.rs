//! sluice's own Prometheus metrics, kept apart from the logic: the reconcile reports what it did
//! and this turns it into series.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use sluice_core::analysis::Outcome as MetricOutcome;
use sluice_core::api::{CanaryStatus, Phase};

/// A gauge of fractional values (e-values, their line).
type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CanaryLabels {
    namespace: String,
    name: String,
}

/// One metric (comparison or guardrail) of one Canary.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricLabels {
    namespace: String,
    name: String,
    metric: String,
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
    e_value: Family<MetricLabels, FloatGauge>,
    e_value_threshold: Family<CanaryLabels, FloatGauge>,
    query_errors: Family<MetricLabels, Counter>,
    /// Serialises encoding with updates of several families at once, and holds what a family
    /// cannot be asked: which comparisons of each Canary have an e-value series.
    lock: Mutex<Exported>,
}

/// The per-Canary series whose labels come from the Canary's evidence, so that those of a
/// comparison gone from it (a new release, a metric removed from the spec) can be removed.
#[derive(Default)]
struct Exported {
    comparisons: HashMap<CanaryLabels, BTreeSet<String>>,
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
        let e_value = Family::<MetricLabels, FloatGauge>::default();
        let e_value_threshold = Family::<CanaryLabels, FloatGauge>::default();
        let query_errors = Family::<MetricLabels, Counter>::default();
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
        registry.register(
            "canary_e_value",
            "E-value of each comparison in the current or last release: evidence against the canary, rolled back at 1/alpha",
            e_value.clone(),
        );
        registry.register(
            "canary_e_value_threshold",
            "The e-value at which a comparison rolls the canary back: 1/alpha",
            e_value_threshold.clone(),
        );
        registry.register(
            "metric_query_errors",
            "Looks at a metric that failed for another reason than a lack of data: provider unreachable or refusing the query, a missing template or provider",
            query_errors.clone(),
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
            e_value,
            e_value_threshold,
            query_errors,
            lock: Mutex::new(Exported::default()),
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
        let _guard = self.exported();
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

    /// Sets the e-value of each comparison in `status`'s evidence and its line, 1/`alpha`; the
    /// series of comparisons no longer in the evidence go. The evidence outlives the release
    /// (a rolled-back canary shows the e-value that rolled it back) until the next release
    /// starts afresh, and so do these series.
    pub fn record_evidence(&self, namespace: &str, name: &str, status: &CanaryStatus, alpha: f64) {
        let mut exported = self.exported();
        let canary = CanaryLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        let labels = |metric: &str| MetricLabels {
            namespace: namespace.into(),
            name: name.into(),
            metric: metric.into(),
        };
        let now: BTreeSet<String> = status
            .evidence
            .metrics
            .iter()
            .filter_map(|m| {
                let test = m.sequential.as_ref()?;
                // Stored as a natural log so that it neither overflows nor underflows in the
                // status; exported as the e-value itself, which is what 1/alpha is compared to.
                self.e_value
                    .get_or_create(&labels(&m.name))
                    .set(test.log_e_value.exp());
                Some(m.name.clone())
            })
            .collect();
        let before = exported.comparisons.remove(&canary).unwrap_or_default();
        for gone in before.difference(&now) {
            self.e_value.remove(&labels(gone));
        }
        if now.is_empty() {
            self.e_value_threshold.remove(&canary);
        } else {
            self.e_value_threshold
                .get_or_create(&canary)
                .set(1.0 / alpha);
            exported.comparisons.insert(canary, now);
        }
    }

    /// Removes the gauges of a Canary that is gone; its counters stay, as counters do.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut exported = self.exported();
        let canary = CanaryLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        for phase in PHASES {
            self.phase.remove(&PhaseLabels {
                namespace: namespace.into(),
                name: name.into(),
                phase: format!("{phase:?}"),
            });
        }
        self.weight.remove(&canary);
        self.failed_checks.remove(&canary);
        self.e_value_threshold.remove(&canary);
        for metric in exported.comparisons.remove(&canary).unwrap_or_default() {
            self.e_value.remove(&MetricLabels {
                namespace: namespace.into(),
                name: name.into(),
                metric,
            });
        }
    }

    /// Counts one look at `metric` of a Canary that failed for another reason than no data.
    pub fn record_query_error(&self, namespace: &str, name: &str, metric: &str) {
        self.query_errors
            .get_or_create(&MetricLabels {
                namespace: namespace.into(),
                name: name.into(),
                metric: metric.into(),
            })
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

    fn exported(&self) -> std::sync::MutexGuard<'_, Exported> {
        // A panic elsewhere leaves the bookkeeping as usable as it was; carry on with it.
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let _guard = self.exported();
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

    /// A status whose evidence has these comparisons (name, ln of the e-value) and a guardrail.
    fn with_evidence(comparisons: &[(&str, f64)]) -> CanaryStatus {
        use sluice_core::api::{EvidenceKind, MetricEvidence};
        let mut metrics: Vec<MetricEvidence> = comparisons
            .iter()
            .map(|(name, log_e_value)| {
                let mut test = sluice_core::analysis::sequential::new_state(1.0);
                test.log_e_value = *log_e_value;
                MetricEvidence::new(name, EvidenceKind::ErrorRate, Some(test))
            })
            .collect();
        metrics.push(MetricEvidence::new(
            "success-rate",
            EvidenceKind::Guardrail,
            None,
        ));
        let mut status = CanaryStatus {
            phase: Some(Phase::Progressing),
            ..CanaryStatus::default()
        };
        status.evidence.metrics = metrics;
        status
    }

    #[test]
    fn exports_each_comparisons_e_value_and_its_line() {
        let m = Metrics::new();
        let status = with_evidence(&[("error-rate", 100f64.ln()), ("latency", 0.5f64.ln())]);
        m.record_evidence("test", "podinfo", &status, 0.01);
        let text = m.encode();
        let value = |metric: &str| {
            let prefix = format!(
                r#"sluice_canary_e_value{{namespace="test",name="podinfo",metric="{metric}"}} "#
            );
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let error_rate = value("error-rate").expect(&text);
        assert!((error_rate - 100.0).abs() < 1e-9, "{text}");
        let latency = value("latency").expect(&text);
        assert!((latency - 0.5).abs() < 1e-12, "{text}");
        // Guardrails have no e-value.
        assert_eq!(value("success-rate"), None, "{text}");
        assert!(
            text.contains(
                r#"sluice_canary_e_value_threshold{namespace="test",name="podinfo"} 100.0"#
            ),
            "{text}"
        );
        // A new release starts with no evidence: its comparisons' series and the line go.
        m.record_evidence("test", "podinfo", &with_evidence(&[("latency", 0.0)]), 0.01);
        let text = m.encode();
        assert!(!text.contains(r#"metric="error-rate""#), "{text}");
        assert!(
            text.contains(
                r#"sluice_canary_e_value{namespace="test",name="podinfo",metric="latency"} 1.0"#
            ),
            "{text}"
        );
        m.record_evidence("test", "podinfo", &CanaryStatus::default(), 0.01);
        let text = m.encode();
        assert!(!text.contains("sluice_canary_e_value{"), "{text}");
        assert!(!text.contains("sluice_canary_e_value_threshold{"), "{text}");
    }

    #[test]
    fn a_canary_gone_takes_its_gauges_and_leaves_the_others() {
        let m = Metrics::new();
        let status = with_evidence(&[("error-rate", 1.0)]);
        for name in ["podinfo", "backend"] {
            m.record("test", name, None, &status, &[], 0);
            m.record_evidence("test", name, &status, 0.05);
            m.record_query_error("test", name, "error-rate");
        }
        m.forget("test", "podinfo");
        let text = m.encode();
        for family in [
            "sluice_canary_phase{",
            "sluice_canary_weight{",
            "sluice_canary_failed_checks{",
            "sluice_canary_e_value{",
            "sluice_canary_e_value_threshold{",
        ] {
            let of = |name: &str| {
                text.lines()
                    .any(|l| l.starts_with(family) && l.contains(&format!(r#"name="{name}""#)))
            };
            assert!(!of("podinfo"), "{family} of podinfo stays:\n{text}");
            assert!(of("backend"), "{family} of backend is gone:\n{text}");
        }
        // Counters stay: a rate over them must not see a reset.
        assert!(
            text.contains(r#"sluice_metric_query_errors_total{namespace="test",name="podinfo",metric="error-rate"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn counts_query_errors_per_canary_and_metric() {
        let m = Metrics::new();
        m.record_query_error("test", "podinfo", "error-rate");
        m.record_query_error("test", "podinfo", "error-rate");
        m.record_query_error("test", "podinfo", "latency");
        let text = m.encode();
        assert!(
            text.contains(r#"sluice_metric_query_errors_total{namespace="test",name="podinfo",metric="error-rate"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_metric_query_errors_total{namespace="test",name="podinfo",metric="latency"} 1"#),
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
