//! What the demo saw, one snapshot a second: the release's phase and weight, each arm's traffic
//! as Prometheus has it, and the evidence from the Canary's status. The live view draws the last
//! snapshot; the report draws them all. The timeline is also written as JSON next to the report,
//! which is what the end-to-end tests read.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::release::Verdict;
use crate::proxy::RouteChange;
use sluice_controller::providers::Provider;
use sluice_controller::providers::prometheus::PrometheusProvider;
use sluice_core::api::{CanaryStatus, EvidenceKind};

/// The window of the live rates: the analysis interval, so the view shows what the next look
/// will count.
const RATE_WINDOW: &str = "10s";

/// One arm's traffic over the last `RATE_WINDOW`. `None` when Prometheus could not say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmStats {
    /// Requests per second.
    pub rps: Option<f64>,
    /// Failed share of requests, 0 to 1.
    pub error_rate: Option<f64>,
    /// 99th percentile of latency, in milliseconds.
    pub p99_ms: Option<f64>,
}

/// One comparison's evidence at a moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvidencePoint {
    pub metric: String,
    /// What the comparison counts: `errors` or `slow requests`.
    pub events: String,
    /// log10 of the e-value; the release is rolled back when it reaches log10(1/alpha).
    pub log10_e: f64,
    /// Events and requests counted so far, per arm.
    pub canary_events: u64,
    pub canary_requests: u64,
    pub primary_events: u64,
    pub primary_requests: u64,
    pub rejected: bool,
}

/// The state of the demo at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Unix seconds.
    pub at: f64,
    pub phase: String,
    pub weight: u32,
    pub analysed_intervals: u32,
    pub message: String,
    pub primary: ArmStats,
    pub canary: ArmStats,
    pub evidence: Vec<EvidencePoint>,
    /// Why the traffic figures are missing, when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_error: Option<String>,
    /// On a real cluster (`sluice demo --cluster`): the release's objects, one line each, as
    /// `kubectl get` shows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
}

/// How the release ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Unix seconds.
    pub at: f64,
    pub verdict: Verdict,
    /// The status message: why.
    pub reason: String,
    pub analysed_intervals: u32,
}

/// Everything the report needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub scenario: String,
    /// What the live view's first line calls the run; `sluice demo · scenario S` when none
    /// (`kubectl sluice watch` names itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `namespace/name`.
    pub canary: String,
    pub interval_seconds: u64,
    pub alpha: f64,
    /// Requests per second sent through the router.
    pub rate: f64,
    /// Unix seconds when the demo started.
    pub started_at: f64,
    pub snapshots: Vec<Snapshot>,
    /// Every traffic split the router was given.
    pub routes: Vec<RouteChange>,
    pub decision: Option<Decision>,
    /// The final status of the Canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CanaryStatus>,
}

/// The comparisons' evidence in a status.
pub fn evidence(status: &CanaryStatus) -> Vec<EvidencePoint> {
    status
        .evidence
        .metrics
        .iter()
        .filter(|m| m.kind != EvidenceKind::Guardrail)
        .filter_map(|m| {
            let test = m.sequential.as_ref()?;
            Some(EvidencePoint {
                metric: m.name.clone(),
                events: if m.kind == EvidenceKind::Latency {
                    "slow requests".into()
                } else {
                    "errors".into()
                },
                log10_e: test.log_e_value / std::f64::consts::LN_10,
                canary_events: test.canary.events,
                canary_requests: test.canary.requests,
                primary_events: test.primary.events,
                primary_requests: test.primary.requests,
                rejected: test.rejected,
            })
        })
        .collect()
}

/// Reads each arm's traffic from Prometheus, telling the arms apart by their `pod` label.
pub struct TrafficProbe {
    provider: PrometheusProvider,
    namespace: String,
    arms: ProbeArms,
}

/// Which series are the primary's and the canary's.
enum ProbeArms {
    /// Fixed pod names (the demo's scrape configuration).
    Pods { primary: String, canary: String },
    /// The pods of a target Deployment on a cluster, told apart by name; names change with
    /// each rollout, so the busiest pod of each arm is taken.
    Target(String),
}

impl TrafficProbe {
    pub fn new(
        prometheus: &str,
        namespace: &str,
        primary_pod: &str,
        canary_pod: &str,
    ) -> Result<Self, super::prometheus::PrometheusError> {
        Ok(Self {
            // Short: the probe runs every second and must not hold the view up.
            provider: super::prometheus::provider(prometheus, Duration::from_millis(800))?,
            namespace: namespace.to_string(),
            arms: ProbeArms::Pods {
                primary: primary_pod.to_string(),
                canary: canary_pod.to_string(),
            },
        })
    }

    /// A probe for the pods of the Deployment `target` and its `-primary` copy on a cluster.
    pub fn for_target(
        prometheus: &str,
        namespace: &str,
        target: &str,
    ) -> Result<Self, super::prometheus::PrometheusError> {
        Ok(Self {
            provider: super::prometheus::provider(prometheus, Duration::from_millis(800))?,
            namespace: namespace.to_string(),
            arms: ProbeArms::Target(target.to_string()),
        })
    }

    /// (primary, canary) over the window ending at `at` (Unix seconds).
    pub async fn read(&self, at: i64) -> Result<(ArmStats, ArmStats), String> {
        let ns = &self.namespace;
        let requests = format!(
            "sum by (pod) (rate(http_requests_total{{namespace=\"{ns}\"}}[{RATE_WINDOW}]))"
        );
        let errors = format!(
            "sum by (pod) (rate(http_requests_total{{namespace=\"{ns}\",status=~\"5..\"}}[{RATE_WINDOW}]))"
        );
        let p99 = format!(
            "histogram_quantile(0.99, sum by (pod, le) (rate(http_request_duration_seconds_bucket{{namespace=\"{ns}\"}}[{RATE_WINDOW}])))"
        );
        let requests = self.by_pod(&requests, at).await?;
        let errors = self.by_pod(&errors, at).await?;
        let p99 = self.by_pod(&p99, at).await?;
        let arm = |pod: &str| {
            let rps = requests.get(pod).copied();
            let error_rate = match (errors.get(pod), rps) {
                (Some(e), Some(r)) if r > 0.0 => Some(e / r),
                _ => None,
            };
            ArmStats {
                rps,
                error_rate,
                // No requests in the window gives NaN, which is no figure rather than a number.
                p99_ms: p99
                    .get(pod)
                    .copied()
                    .filter(|v| v.is_finite())
                    .map(|v| v * 1000.0),
            }
        };
        let (primary_pod, canary_pod) = match &self.arms {
            ProbeArms::Pods { primary, canary } => (primary.clone(), canary.clone()),
            ProbeArms::Target(target) => {
                let busiest = |is_primary: bool| {
                    requests
                        .iter()
                        .filter(|(pod, _)| super::gateway::arm_of(pod, target) == Some(is_primary))
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(pod, _)| pod.clone())
                        .unwrap_or_default()
                };
                (busiest(true), busiest(false))
            }
        };
        Ok((arm(&primary_pod), arm(&canary_pod)))
    }

    async fn by_pod(&self, query: &str, at: i64) -> Result<BTreeMap<String, f64>, String> {
        let samples = self.provider.query(query, at).await.map_err(|e| {
            if e.is_unreachable() {
                format!("Prometheus at {} is unreachable", self.provider.address())
            } else {
                // The first line says what; the query that follows it is ours.
                e.to_string().lines().next().unwrap_or_default().to_string()
            }
        })?;
        Ok(samples
            .into_iter()
            .filter_map(|s| s.labels.get("pod").cloned().map(|pod| (pod, s.value)))
            .collect())
    }
}
