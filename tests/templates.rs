//! The ready-made MetricTemplates of metrics-templates/, one file per data source (application
//! metrics, Istio, Linkerd, NGINX ingress, Envoy), checked two ways.
//!
//! 1. Rendering. Each template, rendered for both arms of one Canary (namespace `test`, target
//!    and service `podinfo`, interval 1m, `templateVariables: {ingress: podinfo}`), gives exactly
//!    the PromQL written out below, so a change to a template shows up as a change here.
//! 2. Meaning. One simulated release (tests/common/release.rs: a canary with 5% errors taking
//!    10-50% of the traffic, a primary with 0.1%) is written in every source's own metric names
//!    and labels (tests/common/sources.rs), next to decoy series that a correct query must leave
//!    out, and backfilled into one real Prometheus. Every rendered query, evaluated at a few
//!    instants, must return what the simulation knows about the window ending there, for that
//!    arm only: requests, errors and each histogram bucket equal to the difference of the
//!    cumulative counts between the scrapes at both ends of the window (`increase()` over a
//!    window of four scrape intervals gives that difference, up to its extrapolation), the
//!    success rate within a point, and a p99 inside the bucket that holds the true 99th
//!    percentile. The arms differ in both traffic and error rate, so a query that mixes them up,
//!    or counts a decoy, fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::Prometheus;
use common::release::{PodSeries, ReleaseSpec, Scrape, recent_start, simulate};
use common::sources::{
    self, ENVOY_MS, ISTIO_MS, LINKERD_MS, NGINX_SECONDS, all_bounds_seconds, arm_total, project,
    seconds,
};
use sluice_controller::load::templates_from_path;
use sluice_controller::providers::template::Arm::{Canary, Primary};
use sluice_controller::providers::template::{Arm, RenderContext, render};
use sluice_core::api::duration::GoDuration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NAMESPACE: &str = "test";
const KINDS: [&str; 5] = [
    "requests",
    "errors",
    "latency-buckets",
    "success-rate",
    "latency-p99",
];

/// A data source: its template file (`<name>.yaml`, templates `<name>-<kind>`) and the bucket
/// bounds of its histogram, in `per_second` units to a second.
struct Source {
    name: &'static str,
    le: &'static [f64],
    per_second: f64,
}

const SOURCES: [Source; 5] = [
    Source {
        name: "app",
        le: &NGINX_SECONDS,
        per_second: 1.0,
    },
    Source {
        name: "istio",
        le: &ISTIO_MS,
        per_second: 1000.0,
    },
    Source {
        name: "linkerd",
        le: &LINKERD_MS,
        per_second: 1000.0,
    },
    Source {
        name: "nginx",
        le: &NGINX_SECONDS,
        per_second: 1.0,
    },
    Source {
        name: "envoy",
        le: &ENVOY_MS,
        per_second: 1000.0,
    },
];

fn context() -> RenderContext {
    RenderContext {
        namespace: NAMESPACE.into(),
        name: "podinfo".into(),
        target: "podinfo".into(),
        service: "podinfo".into(),
        interval: GoDuration::from_secs(60),
        variables: [("ingress".to_string(), "podinfo".to_string())].into(),
    }
}

/// Every template of `<source>.yaml` rendered for both arms, by (template name, arm).
fn rendered(source: &str) -> BTreeMap<(String, Arm), String> {
    let path = Path::new(ROOT)
        .join("metrics-templates")
        .join(format!("{source}.yaml"));
    let templates =
        templates_from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let names: BTreeSet<String> = templates
        .iter()
        .map(|t| t.metadata.name.clone().unwrap())
        .collect();
    let want: BTreeSet<String> = KINDS.iter().map(|k| format!("{source}-{k}")).collect();
    assert_eq!(names, want, "the templates of {}", path.display());
    let ctx = context();
    let mut out = BTreeMap::new();
    for template in &templates {
        let name = template.metadata.name.clone().unwrap();
        for arm in [Arm::Canary, Arm::Primary] {
            let query =
                render(&name, &template.spec.query, &ctx, arm).unwrap_or_else(|e| panic!("{e}"));
            out.insert((name.clone(), arm), query);
        }
    }
    out
}

/// The queries each source must render to (without the final newline of the YAML block).
fn expected(source: &str) -> Vec<(&'static str, Arm, &'static str)> {
    match source {
        "app" => vec![
            (
                "app-requests",
                Canary,
                r#"sum(increase(http_requests_total{namespace="test",pod=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[1m]))"#,
            ),
            (
                "app-requests",
                Primary,
                r#"sum(increase(http_requests_total{namespace="test",pod=~"podinfo-primary-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[1m]))"#,
            ),
            (
                "app-errors",
                Canary,
                r#"sum(increase(http_requests_total{namespace="test",pod=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status=~"5.."}[1m]))"#,
            ),
            (
                "app-errors",
                Primary,
                r#"sum(increase(http_requests_total{namespace="test",pod=~"podinfo-primary-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status=~"5.."}[1m]))"#,
            ),
            (
                "app-latency-buckets",
                Canary,
                r#"sum by (le) (increase(http_request_duration_seconds_bucket{namespace="test",pod=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[1m]))"#,
            ),
            (
                "app-latency-buckets",
                Primary,
                r#"sum by (le) (increase(http_request_duration_seconds_bucket{namespace="test",pod=~"podinfo-primary-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[1m]))"#,
            ),
            (
                "app-success-rate",
                Canary,
                concat!(
                    r#"100 * sum(rate(http_requests_total{namespace="test",pod=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status!~"5.."}[1m]))"#,
                    "\n",
                    r#"/ sum(rate(http_requests_total{namespace="test",pod=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[1m]))"#,
                ),
            ),
            (
                "app-latency-p99",
                Canary,
                r#"1000 * histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="test",pod=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[1m])))"#,
            ),
        ],
        "istio" => vec![
            (
                "istio-requests",
                Canary,
                r#"sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo"}[1m]))"#,
            ),
            (
                "istio-requests",
                Primary,
                r#"sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo-primary"}[1m]))"#,
            ),
            (
                "istio-errors",
                Canary,
                r#"sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo",response_code=~"5.."}[1m]))"#,
            ),
            (
                "istio-errors",
                Primary,
                r#"sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo-primary",response_code=~"5.."}[1m]))"#,
            ),
            (
                "istio-latency-buckets",
                Canary,
                r#"sum by (le) (increase(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo"}[1m]))"#,
            ),
            (
                "istio-latency-buckets",
                Primary,
                r#"sum by (le) (increase(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo-primary"}[1m]))"#,
            ),
            (
                "istio-success-rate",
                Canary,
                concat!(
                    r#"100 * sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo",response_code!~"5.."}[1m]))"#,
                    "\n",
                    r#"/ sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo"}[1m]))"#,
                ),
            ),
            (
                "istio-latency-p99",
                Canary,
                r#"histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo"}[1m])))"#,
            ),
        ],
        "linkerd" => vec![
            (
                "linkerd-requests",
                Canary,
                r#"sum(increase(response_total{namespace="test",deployment="podinfo",direction="inbound"}[1m]))"#,
            ),
            (
                "linkerd-requests",
                Primary,
                r#"sum(increase(response_total{namespace="test",deployment="podinfo-primary",direction="inbound"}[1m]))"#,
            ),
            (
                "linkerd-errors",
                Canary,
                r#"sum(increase(response_total{namespace="test",deployment="podinfo",direction="inbound",classification="failure"}[1m]))"#,
            ),
            (
                "linkerd-errors",
                Primary,
                r#"sum(increase(response_total{namespace="test",deployment="podinfo-primary",direction="inbound",classification="failure"}[1m]))"#,
            ),
            (
                "linkerd-latency-buckets",
                Canary,
                r#"sum by (le) (increase(response_latency_ms_bucket{namespace="test",deployment="podinfo",direction="inbound"}[1m]))"#,
            ),
            (
                "linkerd-latency-buckets",
                Primary,
                r#"sum by (le) (increase(response_latency_ms_bucket{namespace="test",deployment="podinfo-primary",direction="inbound"}[1m]))"#,
            ),
            (
                "linkerd-success-rate",
                Canary,
                concat!(
                    r#"100 * sum(rate(response_total{namespace="test",deployment="podinfo",direction="inbound",classification!="failure"}[1m]))"#,
                    "\n",
                    r#"/ sum(rate(response_total{namespace="test",deployment="podinfo",direction="inbound"}[1m]))"#,
                ),
            ),
            (
                "linkerd-latency-p99",
                Canary,
                r#"histogram_quantile(0.99, sum by (le) (rate(response_latency_ms_bucket{namespace="test",deployment="podinfo",direction="inbound"}[1m])))"#,
            ),
        ],
        "nginx" => vec![
            (
                "nginx-requests",
                Canary,
                concat!(
                    r#"sum(increase(nginx_ingress_controller_requests{namespace="test",ingress="podinfo",service="podinfo-canary",canary=""}[1m])"#,
                    "\n",
                    r#"or increase(nginx_ingress_controller_requests{namespace="test",ingress="podinfo",canary=~"test-podinfo-canary-.+"}[1m]))"#,
                ),
            ),
            (
                "nginx-requests",
                Primary,
                concat!(
                    r#"sum(increase(nginx_ingress_controller_requests{namespace="test",ingress="podinfo",service="podinfo-primary",canary=""}[1m])"#,
                    "\n",
                    r#"or increase(nginx_ingress_controller_requests{namespace="test",ingress="podinfo",canary=~"test-podinfo-primary-.+"}[1m]))"#,
                ),
            ),
            (
                "nginx-errors",
                Canary,
                concat!(
                    r#"sum(increase(nginx_ingress_controller_requests{namespace="test",ingress="podinfo",service="podinfo-canary",canary="",status=~"5.."}[1m])"#,
                    "\n",
                    r#"or increase(nginx_ingress_controller_requests{namespace="test",ingress="podinfo",canary=~"test-podinfo-canary-.+",status=~"5.."}[1m]))"#,
                ),
            ),
            (
                "nginx-errors",
                Primary,
                concat!(
                    r#"sum(increase(nginx_ingress_controller_requests{namespace="test",ingress="podinfo",service="podinfo-primary",canary="",status=~"5.."}[1m])"#,
                    "\n",
                    r#"or increase(nginx_ingress_controller_requests{namespace="test",ingress="podinfo",canary=~"test-podinfo-primary-.+",status=~"5.."}[1m]))"#,
                ),
            ),
            (
                "nginx-latency-buckets",
                Canary,
                concat!(
                    r#"sum by (le) (increase(nginx_ingress_controller_request_duration_seconds_bucket{namespace="test",ingress="podinfo",service="podinfo-canary",canary=""}[1m])"#,
                    "\n",
                    r#"or increase(nginx_ingress_controller_request_duration_seconds_bucket{namespace="test",ingress="podinfo",canary=~"test-podinfo-canary-.+"}[1m]))"#,
                ),
            ),
            (
                "nginx-latency-buckets",
                Primary,
                concat!(
                    r#"sum by (le) (increase(nginx_ingress_controller_request_duration_seconds_bucket{namespace="test",ingress="podinfo",service="podinfo-primary",canary=""}[1m])"#,
                    "\n",
                    r#"or increase(nginx_ingress_controller_request_duration_seconds_bucket{namespace="test",ingress="podinfo",canary=~"test-podinfo-primary-.+"}[1m]))"#,
                ),
            ),
            (
                "nginx-success-rate",
                Canary,
                concat!(
                    r#"100 * sum(rate(nginx_ingress_controller_requests{namespace="test",ingress="podinfo",service="podinfo-canary",canary="",status!~"5.."}[1m])"#,
                    "\n",
                    r#"or rate(nginx_ingress_controller_requests{namespace="test",ingress="podinfo",canary=~"test-podinfo-canary-.+",status!~"5.."}[1m]))"#,
                    "\n",
                    r#"/ sum(rate(nginx_ingress_controller_requests{namespace="test",ingress="podinfo",service="podinfo-canary",canary=""}[1m])"#,
                    "\n",
                    r#"or rate(nginx_ingress_controller_requests{namespace="test",ingress="podinfo",canary=~"test-podinfo-canary-.+"}[1m]))"#,
                ),
            ),
            (
                "nginx-latency-p99",
                Canary,
                concat!(
                    r#"1000 * histogram_quantile(0.99, sum by (le) (rate(nginx_ingress_controller_request_duration_seconds_bucket{namespace="test",ingress="podinfo",service="podinfo-canary",canary=""}[1m])"#,
                    "\n",
                    r#"or rate(nginx_ingress_controller_request_duration_seconds_bucket{namespace="test",ingress="podinfo",canary=~"test-podinfo-canary-.+"}[1m])))"#,
                ),
            ),
        ],
        "envoy" => vec![
            (
                "envoy-requests",
                Canary,
                r#"sum(increase(envoy_cluster_upstream_rq{envoy_cluster_name=~"test_podinfo-canary_[0-9]+"}[1m]))"#,
            ),
            (
                "envoy-requests",
                Primary,
                r#"sum(increase(envoy_cluster_upstream_rq{envoy_cluster_name=~"test_podinfo-primary_[0-9]+"}[1m]))"#,
            ),
            (
                "envoy-errors",
                Canary,
                r#"sum(increase(envoy_cluster_upstream_rq{envoy_cluster_name=~"test_podinfo-canary_[0-9]+",envoy_response_code=~"5.."}[1m]))"#,
            ),
            (
                "envoy-errors",
                Primary,
                r#"sum(increase(envoy_cluster_upstream_rq{envoy_cluster_name=~"test_podinfo-primary_[0-9]+",envoy_response_code=~"5.."}[1m]))"#,
            ),
            (
                "envoy-latency-buckets",
                Canary,
                r#"sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"test_podinfo-canary_[0-9]+"}[1m]))"#,
            ),
            (
                "envoy-latency-buckets",
                Primary,
                r#"sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"test_podinfo-primary_[0-9]+"}[1m]))"#,
            ),
            (
                "envoy-success-rate",
                Canary,
                concat!(
                    r#"100 * sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"test_podinfo-canary_[0-9]+",envoy_response_code!~"5.."}[1m]))"#,
                    "\n",
                    r#"/ sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"test_podinfo-canary_[0-9]+"}[1m]))"#,
                ),
            ),
            (
                "envoy-latency-p99",
                Canary,
                r#"histogram_quantile(0.99, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"test_podinfo-canary_[0-9]+"}[1m])))"#,
            ),
        ],
        other => panic!("no expected queries for {other}"),
    }
}

#[test]
fn templates_render_exactly() {
    for source in &SOURCES {
        let queries = rendered(source.name);
        let expected = expected(source.name);
        assert!(expected.len() >= 8, "{}", source.name);
        for (template, arm, want) in expected {
            let got = &queries[&(template.to_string(), arm)];
            assert_eq!(
                got,
                &format!("{want}\n"),
                "{template} rendered for the {arm:?} arm"
            );
        }
    }
}

/// What the simulation knows about one arm in the window `(at - 60, at]`: the differences of
/// the cumulative counts between the scrapes at `at - 60` and `at`.
struct Truth {
    requests: f64,
    errors: f64,
    /// Per bucket bound of the source, in its order.
    buckets: Vec<f64>,
}

impl Truth {
    fn of(pods: &[PodSeries], arm: Arm, at: i64) -> Self {
        let scrapes = arm_total(pods, arm.as_str());
        let at_time = |t: i64| scrapes.iter().find(|s| s.at == t).cloned();
        let end = at_time(at).unwrap_or_else(|| panic!("no {arm:?} scrape at {at}"));
        // A pod that did not exist yet had counted nothing.
        let begin = at_time(at - 60).unwrap_or(Scrape {
            buckets: vec![0; end.buckets.len()],
            ..Scrape::default()
        });
        Self {
            requests: (end.requests - begin.requests) as f64,
            errors: (end.errors - begin.errors) as f64,
            buckets: end
                .buckets
                .iter()
                .zip(&begin.buckets)
                .map(|(e, b)| (e - b) as f64)
                .collect(),
        }
    }

    fn success_rate(&self) -> f64 {
        100.0 * (self.requests - self.errors) / self.requests
    }

    /// The bounds (in the source's `le` unit) of the bucket that holds the 99th percentile, as
    /// histogram_quantile finds it; widened by one bucket when the rank falls on a bound.
    fn p99_bucket(&self, le: &[f64]) -> (f64, f64) {
        let rank = 0.99 * self.requests;
        let bucket = |rank: f64| {
            self.buckets
                .iter()
                .position(|c| *c >= rank)
                .unwrap_or(le.len() - 1)
        };
        let (first, last) = (bucket(rank * (1.0 - 1e-9)), bucket(rank * (1.0 + 1e-9)));
        let lower = if first == 0 { 0.0 } else { le[first - 1] };
        (lower, le[last])
    }
}

/// The failed checks, gathered so that one run names every query that is wrong.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(message());
        }
    }

    /// Within `increase()`'s extrapolation of the truth: 10% relative, or 3 for small counts.
    fn close(&mut self, got: f64, want: f64, what: &str) {
        let slack = (0.1 * want.abs()).max(3.0);
        self.check((got - want).abs() <= slack, || {
            format!("{what}: Prometheus says {got}, the simulation {want}")
        });
    }
}

/// An instant query's result as (labels, value) pairs.
fn vector(prometheus: &Prometheus, query: &str, at: i64) -> Vec<(BTreeMap<String, String>, f64)> {
    let body = prometheus
        .query(query, Some(at))
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(json["status"], "success", "{query}: {body}");
    assert_eq!(json["data"]["resultType"], "vector", "{query}: {body}");
    json["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {body}"))
        .iter()
        .map(|series| {
            let labels = series["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let value = series["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok());
            (labels, value.unwrap_or_else(|| panic!("{query}: {body}")))
        })
        .collect()
}

/// The one number a query returns; `None` for an empty result.
fn number(prometheus: &Prometheus, query: &str, at: i64) -> Option<f64> {
    let result = vector(prometheus, query, at);
    assert!(
        result.len() <= 1,
        "{query} returned {} series: {result:?}",
        result.len()
    );
    result.first().map(|(_, v)| *v)
}

#[test]
fn templates_measure_a_release_in_a_real_prometheus() {
    let start = recent_start(3);
    let spec = ReleaseSpec {
        canary_errors: 0.05,
        buckets: all_bounds_seconds(),
        ..ReleaseSpec::healthy(11, start)
    };
    let pods = simulate(&spec, "podinfo");
    let mut text = String::new();
    for om in [
        sources::app_metrics(&spec, &pods, NAMESPACE),
        sources::istio_metrics(&spec, &pods, NAMESPACE, "podinfo"),
        sources::linkerd_metrics(&spec, &pods, NAMESPACE),
        sources::nginx_metrics(&spec, &pods, NAMESPACE, "podinfo", "podinfo"),
        sources::envoy_metrics(&spec, &pods, NAMESPACE, "podinfo"),
    ] {
        text.push_str(
            om.strip_suffix("# EOF\n")
                .expect("OpenMetrics ends with # EOF"),
        );
    }
    text.push_str("# EOF\n");
    let prometheus = Prometheus::start(&text, "sum(envoy_cluster_upstream_rq)", start + 300);

    let mut failures = Failures::default();
    for source in &SOURCES {
        let queries = rendered(source.name);
        let truth_pods = project(&spec, &pods, &seconds(source.le, source.per_second));
        // histogram_quantile answers in the le unit; the p99 templates answer in milliseconds.
        let to_ms = 1000.0 / source.per_second;
        for at in [start + 120, start + 300, start + 540] {
            let mut success = BTreeMap::new();
            for arm in [Canary, Primary] {
                let truth = Truth::of(&truth_pods, arm, at);
                let query =
                    |kind: &str| queries[&(format!("{}-{kind}", source.name), arm)].as_str();
                let what = |kind: &str| {
                    format!(
                        "{}-{kind}, {arm:?} arm, at start + {} s",
                        source.name,
                        at - start
                    )
                };

                let requests = number(&prometheus, query("requests"), at).unwrap_or(f64::NAN);
                failures.close(requests, truth.requests, &what("requests"));
                // sluice reads an empty error count as zero when the requests query has data.
                let errors = number(&prometheus, query("errors"), at).unwrap_or(0.0);
                failures.close(errors, truth.errors, &what("errors"));

                let buckets = vector(&prometheus, query("latency-buckets"), at);
                failures.check(buckets.len() == source.le.len() + 1, || {
                    let le: Vec<&str> = buckets
                        .iter()
                        .filter_map(|(l, _)| l.get("le").map(String::as_str))
                        .collect();
                    format!(
                        "{}: {} series, le {le:?}",
                        what("latency-buckets"),
                        buckets.len()
                    )
                });
                let mut seen = BTreeSet::new();
                for (labels, value) in &buckets {
                    let Some(le) = labels.get("le") else {
                        failures.check(false, || {
                            format!(
                                "{}: a series without le: {labels:?}",
                                what("latency-buckets")
                            )
                        });
                        continue;
                    };
                    let what = format!("{} le {le}", what("latency-buckets"));
                    let index = if le == "+Inf" {
                        failures.check((value - requests).abs() <= 0.5, || {
                            format!("{what}: {value}, but the requests query says {requests}")
                        });
                        Some(source.le.len())
                    } else {
                        let bound = le.parse::<f64>().unwrap_or(f64::NAN);
                        source.le.iter().position(|b| (b - bound).abs() <= 1e-9 * b)
                    };
                    let Some(index) = index else {
                        failures.check(false, || format!("{what}: not a bound of {}", source.name));
                        continue;
                    };
                    failures.check(seen.insert(index), || format!("{what}: twice"));
                    let want = truth.buckets.get(index).copied().unwrap_or(truth.requests);
                    failures.close(*value, want, &what);
                }

                let rate = number(&prometheus, query("success-rate"), at).unwrap_or(f64::NAN);
                let want = truth.success_rate();
                failures.check((rate - want).abs() <= 1.0, || {
                    format!(
                        "{}: Prometheus says {rate}, the simulation {want}",
                        what("success-rate")
                    )
                });
                success.insert(arm, rate);

                let p99 = number(&prometheus, query("latency-p99"), at).unwrap_or(f64::NAN);
                let (lower, upper) = truth.p99_bucket(source.le);
                let (lower, upper) = (lower * to_ms, upper * to_ms);
                failures.check(
                    p99.is_finite()
                        && p99 > 0.0
                        && p99 >= lower * (1.0 - 1e-9)
                        && p99 <= upper * (1.0 + 1e-9),
                    || {
                        format!(
                            "{}: {p99} ms, not in the bucket ({lower} ms, {upper} ms]",
                            what("latency-p99")
                        )
                    },
                );
            }
            // 5% of errors against 0.1%: the guardrail tells the arms apart.
            failures.check(success[&Canary] < success[&Primary] - 2.0, || {
                format!(
                    "{} success rates at start + {} s: {success:?}",
                    source.name,
                    at - start
                )
            });
        }
    }
    assert!(
        failures.0.is_empty(),
        "{} failed checks:\n{}",
        failures.0.len(),
        failures.0.join("\n")
    );
}
