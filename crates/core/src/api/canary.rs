//! `Canary`: what to release and how to judge it. Field names follow Flagger's
//! `flagger.app/v1beta1` wherever the concept is the same.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::alert_provider::AlertSeverity;
use super::duration::GoDuration;
use super::router_kind::RouterKind;
use super::status::CanaryStatus;

#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Canary",
    namespaced,
    status = "CanaryStatus",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.canaryWeight"}"#,
    printcolumn = r#"{"name":"FailedChecks","type":"integer","jsonPath":".status.failedChecks"}"#,
    printcolumn = r#"{"name":"LastTransitionTime","type":"string","jsonPath":".status.lastTransitionTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    pub target_ref: TargetRef,
    /// The router that shifts traffic (`gatewayapi`, `gatewayapi:v1`, `kubernetes`, `nginx`);
    /// defaults to the controller's `--router`. Flagger's field name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<RouterKind>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
    /// The NGINX router: the user's Ingress that sends traffic to the apex Service; sluice adds
    /// a `-canary` copy of it for the canary's share (Flagger's field name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_ref: Option<TargetRef>,
    pub analysis: Analysis,
    /// A HorizontalPodAutoscaler of the target: sluice gives the primary a copy and keeps the
    /// target's from scaling the idle canary back up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler_ref: Option<TargetRef>,
    /// Seconds a release may wait for readiness or data before it fails (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_analysis: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// When the Canary is deleted, hand traffic back to the target first: scale it up to the
    /// primary's replicas, point the apex Service and the router's objects at its pods and keep
    /// them. Without it they go with the Canary (Flagger's field name).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revert_on_deletion: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    /// Gateway API: the Gateways the HTTPRoute attaches to (its parentRefs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway_refs: Vec<GatewayRef>,
    /// The HTTPRoute's hostnames (Gateway API), or the VirtualService's hosts beside the apex
    /// Service (Istio).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Istio: the gateways the VirtualService applies to, as Flagger names them (`mesh` for
    /// traffic inside the mesh); none means the mesh only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
}

impl CanarySpec {
    /// The apex Service's name: `service.name`, or the target's name as in Flagger.
    pub fn service_name(&self) -> String {
        self.service
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| self.target_ref.name.clone())
    }

    /// How traffic moves during the release, decided as Flagger does.
    pub fn strategy(&self) -> Strategy {
        match (self.analysis.iterations, self.analysis.matches.is_empty()) {
            (Some(_), false) => Strategy::ABTesting,
            (Some(_), true) => Strategy::BlueGreen,
            (None, _) => Strategy::Canary,
        }
    }

    pub fn progress_deadline_seconds(&self) -> u32 {
        self.progress_deadline_seconds.unwrap_or(600)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Strategy {
    /// Weights step up: stepWeight/maxWeight or stepWeights.
    Canary,
    /// Requests matching analysis.match go to the canary for `iterations` steps.
    ABTesting,
    /// The canary is analysed for `iterations` steps without live traffic, then takes it all.
    BlueGreen,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// The parent's API group and kind, as in Gateway API parentRefs: a Gateway by default;
    /// `group: ""` (or Flagger's `core`) and `kind: Service` attach the route to a Service for
    /// a mesh (GAMMA), as Flagger's Linkerd tutorial does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The parent's port (a Gateway listener's or a Service's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// How a release advances and how it is judged (`spec.analysis`).
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    cel,
    validation = Rule::new("has(self.iterations) || has(self.stepWeights) || (has(self.stepWeight) && has(self.maxWeight))")
        .message("no schedule: set stepWeight and maxWeight (canary), stepWeights, or iterations (A/B, blue/green)"),
    validation = Rule::new("!has(self.alpha) || (self.alpha > 0.0 && self.alpha <= 0.5)")
        .message("alpha must be above 0 and at most 0.5; 0.01 accepts a 1% false-rollback rate"),
    validation = Rule::new("!has(self.stepWeights) || self.stepWeights.all(w, w >= 1 && w <= 100)")
        .message("stepWeights must each be from 1 to 100"),
    validation = Rule::new("!has(self.maxWeight) || (self.maxWeight >= 1 && self.maxWeight <= 100)")
        .message("maxWeight must be from 1 to 100"),
    validation = Rule::new("!has(self.threshold) || self.threshold >= 1")
        .message("threshold must be at least 1"),
    validation = Rule::new("!has(self.stepWeight) || (self.stepWeight >= 1 && self.stepWeight <= 100)")
        .message("stepWeight must be from 1 to 100"),
    validation = Rule::new("!has(self.stepWeight) || !has(self.maxWeight) || self.stepWeight <= self.maxWeight")
        .message("stepWeight must not be above maxWeight: the first step would pass the cap"),
    validation = Rule::new("!has(self.stepWeightPromotion) || (self.stepWeightPromotion >= 1 && self.stepWeightPromotion <= 100)")
        .message("stepWeightPromotion must be from 1 to 100"),
    validation = Rule::new("!has(self.minEffect) || (self.minEffect >= 0.0 && self.minEffect <= 1.0)")
        .message("minEffect must be from 0 to 1; 0.2 tolerates a canary 20% worse than the primary"),
    validation = Rule::new("!has(self.minSamplePerArm) || self.minSamplePerArm <= 1000000000")
        .message("minSamplePerArm must be at most 1000000000, or no release would ever promote"),
    validation = Rule::new("!has(self.interval) || (duration(self.interval) >= duration('1s') && duration(self.interval) <= duration('24h') && duration(self.interval).getMilliseconds() % 1000 == 0)")
        .message("interval must be whole seconds from 1s to 24h"),
    validation = Rule::new("!has(self.mirror) || !self.mirror || (has(self.iterations) && !has(self.match))")
        .message("mirror is for blue/green: set iterations and no match"),
    validation = Rule::new("!has(self.mirrorWeight) || (self.mirrorWeight >= 1 && self.mirrorWeight <= 100)")
        .message("mirrorWeight must be from 1 to 100"),
    validation = Rule::new("!has(self.checkInterval) || (duration(self.checkInterval) >= duration('1s') && duration(self.checkInterval) <= duration('24h') && duration(self.checkInterval).getMilliseconds() % 1000 == 0)")
        .message("checkInterval must be whole seconds from 1s to 24h; e.g. 15s")
)]
pub struct Analysis {
    /// Time between two analysis steps: traffic steps and guardrails (thresholdRange) are
    /// judged once per interval, as in Flagger.
    #[serde(default = "default_interval")]
    pub interval: GoDuration,
    /// Time between two looks of the comparisons: a rollback can come at any check, traffic
    /// only steps once per `interval`. Default 15s, or `interval` when that is shorter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_interval: Option<GoDuration>,
    /// Failed guardrail checks (thresholdRange) before a rollback, as in Flagger.
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight: Option<u32>,
    /// At most 100 steps: the bound keeps the CEL rule on the steps within the API server's
    /// cost budget, which refuses the CRD without it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub step_weights: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight_promotion: Option<u32>,
    /// Number of analysis steps for A/B testing and blue/green.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    /// Keyed by name: the API server refuses two metrics of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub metrics: Vec<MetricCheck>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<Alert>,
    /// Header or cookie matches that select the canary in A/B testing.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RequestMatch>,
    /// Blue/green with the Istio router: while the canary is analysed, a copy of the primary's
    /// traffic is sent to it (the responses are dropped), as in Flagger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<bool>,
    /// The percentage of requests mirrored, 1 to 100 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_weight: Option<u32>,
    /// The false-rollback rate accepted per release: the chance that a release as good as the
    /// primary is rolled back by the comparisons. sluice keeps it whatever the number of steps.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// The smallest regression worth a rollback, relative to the primary: 0.2 means the canary
    /// may fail (or be slow) up to 20% more often than the primary before it counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_effect: Option<f64>,
    /// Requests each arm must have served in a comparison before it can allow a promotion.
    #[serde(default = "default_min_sample")]
    pub min_sample_per_arm: u64,
}

impl Analysis {
    /// Seconds between two looks of the comparisons: `checkInterval`, at most `interval`.
    pub fn check_seconds(&self) -> u64 {
        let interval = self.interval.as_secs().max(1);
        self.check_interval
            .map_or(DEFAULT_CHECK_SECONDS, |c| c.as_secs())
            .clamp(1, interval)
    }
}

/// A look per scrape at Prometheus' usual 15-s scrape interval.
pub const DEFAULT_CHECK_SECONDS: u64 = 15;

pub(crate) fn default_interval() -> GoDuration {
    GoDuration::from_secs(60)
}
fn default_threshold() -> u32 {
    5
}
fn default_alpha() -> f64 {
    0.01
}
fn default_min_sample() -> u64 {
    100
}

/// One metric of the analysis: a guardrail (`thresholdRange`, as in Flagger) or a comparison of
/// the canary with the primary (`comparison`, sluice's own).
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    cel,
    validation = Rule::new("has(self.thresholdRange) != has(self.comparison)")
        .message("a metric needs thresholdRange (a guardrail) or comparison (canary against primary), not both"),
    validation = Rule::new("has(self.templateRef)")
        .message("templateRef is required: sluice has no built-in queries"),
    validation = Rule::new("!has(self.interval) || (duration(self.interval) >= duration('1s') && duration(self.interval) <= duration('24h') && duration(self.interval).getMilliseconds() % 1000 == 0)")
        .message("interval must be whole seconds from 1s to 24h")
)]
pub struct MetricCheck {
    pub name: String,
    /// The query window of a guardrail (`{{ interval }}`); defaults to `analysis.interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_range: Option<ThresholdRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<TemplateRef>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub template_variables: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(deny_unknown_fields)]
#[x_kube(
    cel,
    validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max")
        .message("thresholdRange min must not be above max")
)]
pub struct ThresholdRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    pub name: String,
    /// Defaults to the Canary's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A comparison of the canary with the primary, evaluated with an anytime-valid sequential test.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    cel,
    validation = Rule::new("self.type != 'errorRate' || has(self.requestsTemplateRef)")
        .message("type errorRate needs requestsTemplateRef, the template that counts all requests of an arm"),
    validation = Rule::new("self.type != 'latency' || !has(self.requestsTemplateRef)")
        .message("requestsTemplateRef applies to type errorRate only"),
    validation = Rule::new("!has(self.quantile) || (self.type == 'latency' && self.quantile > 0.5 && self.quantile < 1.0)")
        .message("quantile applies to type latency and must be above 0.5 and below 1"),
    validation = Rule::new("!has(self.maxRegression) || (self.maxRegression > 1.0 && self.maxRegression <= 100.0)")
        .message("maxRegression must be above 1 and at most 100: 1 or less can never be ruled out"),
    validation = Rule::new("!has(self.tolerance) || (self.tolerance >= 0.0 && self.tolerance <= 0.5)")
        .message("tolerance must be from 0 to 0.5: an absolute rate, 0.001 accepts a canary up to 0.1 percentage points worse")
)]
pub struct Comparison {
    #[serde(rename = "type")]
    pub kind: ComparisonKind,
    /// errorRate: the template that counts all requests of an arm; `templateRef` counts the
    /// failed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_template_ref: Option<TemplateRef>,
    /// latency: the primary's quantile whose tail the canary must not exceed more often
    /// (default 0.99). `templateRef` returns the arm's histogram buckets, one series per `le`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// The regression a promotion must rule out: the canary's event rate (errors, or slow
    /// requests) at least this many times the primary's. Default 4 for errorRate (errors are rare:
    /// doubling 0.1% is within noise for users) and 1.41 for latency (the slowest 1%, where 1.4x
    /// more often is a visibly worse tail). Smaller is safer and promotes later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_regression: Option<f64>,
    /// The absolute regression a promotion may also rule out instead: the canary's event rate
    /// at least the primary's plus this (a fraction of requests). Default 0.001 for errorRate
    /// (0.1 percentage points) and 0.005 for latency. With it a release whose arms have few or
    /// no events is promoted once the canary's own rate is bounded; 0 turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
}

impl Comparison {
    pub fn tolerance(&self) -> f64 {
        self.tolerance.unwrap_or(self.kind.default_tolerance())
    }

    pub fn max_regression(&self) -> f64 {
        self.max_regression
            .unwrap_or(self.kind.default_max_regression())
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ComparisonKind {
    ErrorRate,
    Latency,
}

impl ComparisonKind {
    /// `maxRegression` when not set.
    pub fn default_max_regression(self) -> f64 {
        match self {
            ComparisonKind::ErrorRate => 4.0,
            ComparisonKind::Latency => std::f64::consts::SQRT_2,
        }
    }

    /// `tolerance` when not set.
    pub fn default_tolerance(self) -> f64 {
        match self {
            ComparisonKind::ErrorRate => 0.001,
            ComparisonKind::Latency => 0.005,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    pub name: String,
    /// When the hook runs (Flagger's types); `rollout` when not set.
    #[serde(default, rename = "type")]
    pub kind: HookType,
    pub url: String,
    /// Per attempt; 10s when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// Further attempts after a failed one (0 when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mute_alert: bool,
}

/// Flagger's webhook types.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    Deserialize,
    Serialize,
    JsonSchema,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
)]
#[serde(rename_all = "kebab-case")]
pub enum HookType {
    /// Gate before the release starts: the release waits while it answers non-2xx.
    ConfirmRollout,
    /// Before traffic reaches the canary; a failure counts as a failed check.
    PreRollout,
    /// At every analysis step; a failure counts as a failed check.
    #[default]
    Rollout,
    /// Gate before every weight increase.
    ConfirmTrafficIncrease,
    /// Gate before promotion.
    ConfirmPromotion,
    /// After a successful promotion (notification).
    PostRollout,
    /// After a rollback (notification).
    Rollback,
    /// On every Kubernetes Event sluice records for the Canary (notification).
    Event,
}

impl HookType {
    /// Gates hold the release until they answer 2xx.
    pub fn is_gate(self) -> bool {
        matches!(
            self,
            HookType::ConfirmRollout
                | HookType::ConfirmTrafficIncrease
                | HookType::ConfirmPromotion
        )
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Alert {
    pub name: String,
    /// The least serious alert this entry sends: info (everything), warn (approval gates,
    /// rollbacks, inconclusive ends) or error (rollbacks and inconclusive ends); info when not
    /// set, as in Flagger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<AlertSeverity>,
    /// The `AlertProvider`; its namespace defaults to the Canary's.
    pub provider_ref: TemplateRef,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMatch {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The rules the API server enforces, evaluated here with kube's CEL interpreter.
    #[test]
    fn cel_rules_refuse_invalid_combinations() {
        let errors = |r: Result<(), _>| -> String { format!("{:?}", r.err()) };
        let ok = json!({"stepWeight": 10, "maxWeight": 50, "alpha": 0.01, "threshold": 5});
        assert!(Analysis::validate_cel(&ok, None).is_ok());
        assert!(Analysis::validate_cel(&json!({"iterations": 3}), None).is_ok());
        assert!(
            errors(Analysis::validate_cel(&json!({"stepWeight": 10}), None))
                .contains("no schedule")
        );
        assert!(
            errors(Analysis::validate_cel(
                &json!({"iterations": 3, "alpha": 0.9}),
                None
            ))
            .contains("alpha")
        );
        assert!(
            errors(Analysis::validate_cel(
                &json!({"stepWeights": [5, 150]}),
                None
            ))
            .contains("stepWeights")
        );
        let mirror = json!({"iterations": 3, "mirror": true, "mirrorWeight": 50});
        assert!(Analysis::validate_cel(&mirror, None).is_ok());
        for bad in [
            json!({"stepWeight": 10, "maxWeight": 50, "mirror": true}),
            json!({"iterations": 3, "mirror": true,
                   "match": [{"headers": {"x": {"exact": "y"}}}]}),
        ] {
            assert!(
                errors(Analysis::validate_cel(&bad, None)).contains("mirror is for blue/green")
            );
        }
        assert!(
            errors(Analysis::validate_cel(
                &json!({"iterations": 3, "mirrorWeight": 101}),
                None
            ))
            .contains("mirrorWeight must be from 1 to 100")
        );

        let guardrail =
            json!({"name": "m", "templateRef": {"name": "t"}, "thresholdRange": {"min": 99}});
        assert!(MetricCheck::validate_cel(&guardrail, None).is_ok());
        let both = json!({"name": "m", "templateRef": {"name": "t"}, "thresholdRange": {"min": 99},
                          "comparison": {"type": "latency"}});
        assert!(errors(MetricCheck::validate_cel(&both, None)).contains("not both"));
        let neither = json!({"name": "m", "templateRef": {"name": "t"}});
        assert!(errors(MetricCheck::validate_cel(&neither, None)).contains("not both"));
        let no_template = json!({"name": "m", "thresholdRange": {"min": 99}});
        assert!(
            errors(MetricCheck::validate_cel(&no_template, None))
                .contains("templateRef is required")
        );

        let errors_ok = json!({"type": "errorRate", "requestsTemplateRef": {"name": "r"}});
        assert!(Comparison::validate_cel(&errors_ok, None).is_ok());
        assert!(
            errors(Comparison::validate_cel(
                &json!({"type": "errorRate"}),
                None
            ))
            .contains("needs requestsTemplateRef")
        );
        let latency = json!({"type": "latency", "quantile": 0.99});
        assert!(Comparison::validate_cel(&latency, None).is_ok());
        assert!(
            errors(Comparison::validate_cel(
                &json!({"type": "latency", "quantile": 2.0}),
                None
            ))
            .contains("quantile")
        );
        let mixed = json!({"type": "latency", "requestsTemplateRef": {"name": "r"}});
        assert!(errors(Comparison::validate_cel(&mixed, None)).contains("errorRate only"));
    }

    /// One case per rule that keeps a value from switching the judge off.
    #[test]
    fn cel_rules_refuse_values_that_disable_the_judge() {
        let refused = |result: Result<(), _>, what: &str| {
            let text = format!("{:?}", result.err());
            assert!(text.contains(what), "{what}: {text}");
        };
        let schedule = json!({"stepWeight": 10, "maxWeight": 50});
        let with = |extra: serde_json::Value| {
            let mut value = schedule.clone();
            for (k, v) in extra.as_object().unwrap() {
                value[k] = v.clone();
            }
            value
        };
        assert!(
            Analysis::validate_cel(
                &with(json!({"interval": "1m", "minEffect": 0.2, "stepWeightPromotion": 20})),
                None
            )
            .is_ok()
        );
        refused(
            Analysis::validate_cel(&json!({"stepWeight": 60, "maxWeight": 50}), None),
            "not be above maxWeight",
        );
        refused(
            Analysis::validate_cel(&json!({"stepWeight": 0, "maxWeight": 50}), None),
            "stepWeight must be from 1 to 100",
        );
        refused(
            Analysis::validate_cel(&with(json!({"stepWeightPromotion": 101})), None),
            "stepWeightPromotion",
        );
        refused(
            Analysis::validate_cel(&with(json!({"minEffect": 1e300})), None),
            "minEffect",
        );
        refused(
            Analysis::validate_cel(&with(json!({"minEffect": -0.1})), None),
            "minEffect",
        );
        refused(
            Analysis::validate_cel(&with(json!({"minSamplePerArm": 10_000_000_000u64})), None),
            "minSamplePerArm",
        );
        for interval in ["500ms", "1500ms", "48h"] {
            refused(
                Analysis::validate_cel(&with(json!({"interval": interval})), None),
                "whole seconds",
            );
        }
        let metric = |interval: &str| json!({"name": "m", "templateRef": {"name": "t"}, "thresholdRange": {"min": 1}, "interval": interval});
        assert!(MetricCheck::validate_cel(&metric("5m"), None).is_ok());
        refused(
            MetricCheck::validate_cel(&metric("100ms"), None),
            "whole seconds",
        );
        assert!(ThresholdRange::validate_cel(&json!({"min": 1, "max": 2}), None).is_ok());
        refused(
            ThresholdRange::validate_cel(&json!({"min": 3, "max": 2}), None),
            "min must not be above max",
        );
        let comparison = |margin: f64| json!({"type": "errorRate", "requestsTemplateRef": {"name": "r"}, "maxRegression": margin});
        assert!(Comparison::validate_cel(&comparison(2.0), None).is_ok());
        for margin in [1.0, 0.0, -2.0, 1e300] {
            refused(
                Comparison::validate_cel(&comparison(margin), None),
                "maxRegression",
            );
        }
        let tolerance = |t: f64| json!({"type": "errorRate", "requestsTemplateRef": {"name": "r"}, "tolerance": t});
        for t in [0.0, 0.001, 0.5] {
            assert!(Comparison::validate_cel(&tolerance(t), None).is_ok(), "{t}");
        }
        for t in [-0.001, 0.6, 1e300] {
            refused(Comparison::validate_cel(&tolerance(t), None), "tolerance");
        }
        // Duplicate metric names: the list is a map keyed by name, enforced by the API server.
        let crd = serde_json::to_string(&<Canary as kube::CustomResourceExt>::crd()).unwrap();
        assert!(
            crd.contains(r#""x-kubernetes-list-map-keys":["name"],"x-kubernetes-list-type":"map""#),
            "metrics is not a list-map"
        );
    }

    #[test]
    fn cel_rules_accept_the_example_canary() {
        let text = include_str!("../../../../examples/canary.yaml");
        let canary: Canary = serde_yaml_ng::from_str(text).unwrap();
        let analysis = serde_json::to_value(&canary.spec.analysis).unwrap();
        assert!(Analysis::validate_cel(&analysis, None).is_ok());
        for (index, metric) in canary.spec.analysis.metrics.iter().enumerate() {
            let value = serde_json::to_value(metric).unwrap();
            assert!(
                MetricCheck::validate_cel(&value, None).is_ok(),
                "metric {index}"
            );
            if let Some(c) = &metric.comparison {
                assert!(Comparison::validate_cel(&serde_json::to_value(c).unwrap(), None).is_ok());
            }
        }
    }
}
