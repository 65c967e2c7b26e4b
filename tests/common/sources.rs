//! One simulated release (release.rs), written in the metric names and labels of each data source
//! that metrics-templates/ has templates for: Istio, Linkerd, the NGINX ingress controller and
//! Envoy (Contour's cluster names). Each source also gets a decoy series that a correct template
//! must leave out (Istio's source reporter, Linkerd's outbound direction, another Ingress, another
//! namespace's Envoy cluster).
//!
//! The histograms of the sources have different bucket bounds; simulate the release with
//! `all_bounds_seconds()` and each function keeps the bounds its source uses.

use std::collections::BTreeMap;

use super::OpenMetrics;
use super::release::{DEFAULT_BUCKETS, PodSeries, ReleaseSpec, Scrape};

/// Istio's default bounds for istio_request_duration_milliseconds (Envoy's defaults), in ms.
pub const ISTIO_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Envoy's default histogram bounds (envoy_cluster_upstream_rq_time), in ms.
pub const ENVOY_MS: [f64; 19] = ISTIO_MS;
/// Linkerd proxy's bounds for response_latency_ms, in ms.
pub const LINKERD_MS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];
/// ingress-nginx's request_duration_seconds uses the client library's defaults, in seconds.
pub const NGINX_SECONDS: [f64; 11] = DEFAULT_BUCKETS;

/// The port of the Services in the generated names (upstreams, Envoy clusters).
pub const PORT: &str = "9898";

/// `bounds` (in a unit with `per_second` units to a second) in seconds.
pub fn seconds(bounds: &[f64], per_second: f64) -> Vec<f64> {
    bounds.iter().map(|b| b / per_second).collect()
}

/// Every bound that any source uses, in seconds, sorted: the buckets to simulate with.
pub fn all_bounds_seconds() -> Vec<f64> {
    let mut all: Vec<f64> = DEFAULT_BUCKETS.to_vec();
    all.extend(seconds(&ISTIO_MS, 1000.0));
    all.extend(seconds(&ENVOY_MS, 1000.0));
    all.extend(seconds(&LINKERD_MS, 1000.0));
    all.sort_by(f64::total_cmp);
    all.dedup_by(|a, b| same(*a, *b));
    all
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The pods of a release simulated with `spec.buckets`, with only the buckets `bounds_seconds`.
pub fn project(spec: &ReleaseSpec, pods: &[PodSeries], bounds_seconds: &[f64]) -> Vec<PodSeries> {
    let index: Vec<usize> = bounds_seconds
        .iter()
        .map(|b| {
            spec.buckets
                .iter()
                .position(|s| same(*s, *b))
                .unwrap_or_else(|| {
                    panic!("bound {b} s was not simulated; simulate with all_bounds_seconds()")
                })
        })
        .collect();
    pods.iter()
        .map(|pod| PodSeries {
            scrapes: pod
                .scrapes
                .iter()
                .map(|s| Scrape {
                    buckets: index.iter().map(|i| s.buckets[*i]).collect(),
                    ..s.clone()
                })
                .collect(),
            ..pod.clone()
        })
        .collect()
}

/// The counts of all the pods of `arm` added up, scrape by scrape: what a proxy in front of the
/// pods (an ingress controller, a gateway) counts.
pub fn arm_total(pods: &[PodSeries], arm: &str) -> Vec<Scrape> {
    let mut total: BTreeMap<i64, Scrape> = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.arm == arm) {
        for s in &pod.scrapes {
            let t = total.entry(s.at).or_insert_with(|| Scrape {
                at: s.at,
                buckets: vec![0; s.buckets.len()],
                ..Scrape::default()
            });
            t.requests += s.requests;
            t.errors += s.errors;
            t.latency_sum += s.latency_sum;
            for (t, c) in t.buckets.iter_mut().zip(&s.buckets) {
                *t += c;
            }
        }
    }
    total.into_values().collect()
}

/// Other traffic, for decoy series: the requests and errors of `scrapes` divided by `divisor`,
/// all slower than a second, so that counting a decoy also moves the latency quantiles.
/// `bounds_seconds` are the bounds of the scrapes' buckets.
fn decoy(scrapes: &[Scrape], bounds_seconds: &[f64], divisor: u64) -> Vec<Scrape> {
    scrapes
        .iter()
        .map(|s| {
            let requests = s.requests / divisor;
            Scrape {
                at: s.at,
                requests,
                errors: s.errors / divisor,
                buckets: bounds_seconds
                    .iter()
                    .map(|b| if *b < 1.0 { 0 } else { requests })
                    .collect(),
                latency_sum: requests as f64 * 1.5,
            }
        })
        .collect()
}

/// A request counter split by outcome: the `ok` series from the first scrape, the `failed` one
/// from the first failure on (exporters create a labelled series on first use).
fn by_outcome(
    om: &mut OpenMetrics,
    sample: &str,
    labels: &[(&str, &str)],
    ok: &[(&str, &str)],
    failed: &[(&str, &str)],
    scrapes: &[Scrape],
) {
    let with = |extra: &[(&str, &str)]| -> Labels {
        labels
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let ok = with(ok);
    let failed = with(failed);
    for s in scrapes {
        om.sample(sample, &refs(&ok), s.at, (s.requests - s.errors) as f64);
    }
    for s in scrapes.iter().skip_while(|s| s.errors == 0) {
        om.sample(sample, &refs(&failed), s.at, s.errors as f64);
    }
}

/// A histogram's `_bucket`, `_count` and `_sum` series; `le` in a unit with `per_second` units
/// to a second (the scrapes' buckets must be projected on `le`).
fn histogram(
    om: &mut OpenMetrics,
    name: &str,
    labels: &[(&str, &str)],
    scrapes: &[Scrape],
    le: &[f64],
    per_second: f64,
) {
    let bounds: Vec<String> = le
        .iter()
        .map(|b| b.to_string())
        .chain(["+Inf".to_string()])
        .collect();
    for (i, bound) in bounds.iter().enumerate() {
        let mut with_le = labels.to_vec();
        with_le.push(("le", bound.as_str()));
        for s in scrapes {
            let count = s.buckets.get(i).copied().unwrap_or(s.requests);
            om.sample(&format!("{name}_bucket"), &with_le, s.at, count as f64);
        }
    }
    for s in scrapes {
        om.sample(&format!("{name}_count"), labels, s.at, s.requests as f64);
    }
    for s in scrapes {
        om.sample(
            &format!("{name}_sum"),
            labels,
            s.at,
            s.latency_sum * per_second,
        );
    }
}

/// Label pairs, owned.
type Labels = Vec<(String, String)>;
/// A series' labels and its scrapes.
type BorrowedSeries<'a> = (Vec<(&'a str, &'a str)>, Vec<Scrape>);

fn refs(labels: &[(String, String)]) -> Vec<(&str, &str)> {
    labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Istio: each pod's sidecar reports what it served (`reporter="destination"`), and the ingress
/// gateway reports the same requests again as `reporter="source"` (the decoy, its latencies made
/// slow so that counting it shows in the quantiles too). The real histogram also carries
/// response_code; the simulation has no latency per code, so it is left out (the templates sum
/// over it either way).
pub fn istio_metrics(
    spec: &ReleaseSpec,
    pods: &[PodSeries],
    namespace: &str,
    service: &str,
) -> String {
    let pods = project(spec, pods, &seconds(&ISTIO_MS, 1000.0));
    let labels = |reporter: &'static str, arm: &str, workload: &str, pod: &str| -> Labels {
        let host = format!("{service}-{arm}.{namespace}.svc.cluster.local");
        let (scrape_namespace, pod) = match reporter {
            "destination" => (namespace.to_string(), pod.to_string()),
            _ => (
                "istio-system".to_string(),
                "istio-ingressgateway-7d4f9c6b8-h2x5v".to_string(),
            ),
        };
        [
            ("namespace", scrape_namespace),
            ("pod", pod),
            ("reporter", reporter.to_string()),
            ("source_workload", "istio-ingressgateway".to_string()),
            ("source_workload_namespace", "istio-system".to_string()),
            ("destination_workload", workload.to_string()),
            ("destination_workload_namespace", namespace.to_string()),
            ("destination_service", host),
            ("destination_service_name", format!("{service}-{arm}")),
            ("destination_app", service.to_string()),
            ("request_protocol", "http".to_string()),
            ("response_flags", "-".to_string()),
            ("connection_security_policy", "mutual_tls".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    // (labels, scrapes): each pod as destination, then each arm as the gateway saw it.
    let mut series: Vec<(Labels, Vec<Scrape>)> = pods
        .iter()
        .map(|p| {
            (
                labels("destination", p.arm, &p.workload, &p.pod),
                p.scrapes.clone(),
            )
        })
        .collect();
    for arm in ["primary", "canary"] {
        let workload = pods
            .iter()
            .find(|p| p.arm == arm)
            .map(|p| p.workload.clone())
            .unwrap_or_default();
        let scrapes = decoy(&arm_total(&pods, arm), &seconds(&ISTIO_MS, 1000.0), 1);
        series.push((labels("source", arm, &workload, ""), scrapes));
    }
    let mut om = OpenMetrics::new();
    om.family("istio_requests", "counter");
    for (labels, scrapes) in &series {
        by_outcome(
            &mut om,
            "istio_requests_total",
            &refs(labels),
            &[("response_code", "200")],
            &[("response_code", "500")],
            scrapes,
        );
    }
    om.family("istio_request_duration_milliseconds", "histogram");
    for (labels, scrapes) in &series {
        histogram(
            &mut om,
            "istio_request_duration_milliseconds",
            &refs(labels),
            scrapes,
            &ISTIO_MS,
            1000.0,
        );
    }
    om.finish()
}

/// Linkerd: each pod's proxy counts the requests it received (`direction="inbound"`) and, as the
/// decoy, the calls the pod made to a backend (`direction="outbound"`, half as many). The real
/// latency histogram also carries status_code; left out as for Istio.
pub fn linkerd_metrics(spec: &ReleaseSpec, pods: &[PodSeries], namespace: &str) -> String {
    let pods = project(spec, pods, &seconds(&LINKERD_MS, 1000.0));
    let mut series: Vec<BorrowedSeries> = Vec::new();
    for pod in &pods {
        let base = vec![
            ("namespace", namespace),
            ("pod", pod.pod.as_str()),
            ("deployment", pod.workload.as_str()),
            ("tls", "true"),
        ];
        let mut inbound = base.clone();
        inbound.extend([
            ("direction", "inbound"),
            ("srv_kind", "default"),
            ("srv_name", "all-unauthenticated"),
        ]);
        series.push((inbound, pod.scrapes.clone()));
        let mut outbound = base;
        outbound.extend([
            ("direction", "outbound"),
            ("dst_namespace", namespace),
            ("dst_deployment", "backend"),
        ]);
        series.push((
            outbound,
            decoy(&pod.scrapes, &seconds(&LINKERD_MS, 1000.0), 2),
        ));
    }
    let mut om = OpenMetrics::new();
    om.family("response", "counter");
    for (labels, scrapes) in &series {
        let ok = [("status_code", "200"), ("classification", "success")];
        let failed = [("status_code", "500"), ("classification", "failure")];
        by_outcome(&mut om, "response_total", labels, &ok, &failed, scrapes);
    }
    om.family("response_latency_ms", "histogram");
    for (labels, scrapes) in &series {
        histogram(
            &mut om,
            "response_latency_ms",
            labels,
            scrapes,
            &LINKERD_MS,
            1000.0,
        );
    }
    om.finish()
}

/// The NGINX ingress controller, routing with its canary annotations: the Ingress `ingress`
/// sends its traffic to `<service>-primary`, and a canary Ingress diverts the canary's share to
/// `<service>-canary`. ingress-nginx labels the diverted requests with the main Ingress and its
/// backend (`ingress`, `service`) and names the canary upstream, `<namespace>-<Service>-<port>`, in
/// `canary` (empty, hence absent in Prometheus, for the others). The decoy is another Ingress,
/// `<ingress>-internal`, in front of the same primary Service. The real histogram also carries
/// status; left out as for Istio.
pub fn nginx_metrics(
    spec: &ReleaseSpec,
    pods: &[PodSeries],
    namespace: &str,
    service: &str,
    ingress: &str,
) -> String {
    let pods = project(spec, pods, &NGINX_SECONDS);
    let primary_service = format!("{service}-primary");
    let upstream = format!("{namespace}-{service}-canary-{PORT}");
    let internal = format!("{ingress}-internal");
    let base = |ingress: &str| -> Labels {
        [
            ("controller_class", "k8s.io/ingress-nginx"),
            ("controller_namespace", "ingress-nginx"),
            ("controller_pod", "ingress-nginx-controller-6b8f9d7c5-k9t2x"),
            ("host", "podinfo.example.com"),
            ("ingress", ingress),
            ("method", "GET"),
            ("namespace", namespace),
            ("path", "/"),
            ("service", primary_service.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let mut canary = base(ingress);
    canary.push(("canary".into(), upstream));
    let primary_total = arm_total(&pods, "primary");
    let series = [
        (base(ingress), primary_total.clone()),
        (canary, arm_total(&pods, "canary")),
        (base(&internal), decoy(&primary_total, &NGINX_SECONDS, 2)),
    ];
    let mut om = OpenMetrics::new();
    om.family("nginx_ingress_controller_requests", "unknown");
    for (labels, scrapes) in &series {
        by_outcome(
            &mut om,
            "nginx_ingress_controller_requests",
            &refs(labels),
            &[("status", "200")],
            &[("status", "500")],
            scrapes,
        );
    }
    om.family(
        "nginx_ingress_controller_request_duration_seconds",
        "histogram",
    );
    for (labels, scrapes) in &series {
        histogram(
            &mut om,
            "nginx_ingress_controller_request_duration_seconds",
            &refs(labels),
            scrapes,
            &NGINX_SECONDS,
            1.0,
        );
    }
    om.finish()
}

/// Envoy as Contour configures it: one cluster per Service and port, whose statistics are named
/// `<namespace>_<service>_<port>`, scraped from an Envoy pod in projectcontour. The decoy is the
/// same Service name in another namespace, `staging`.
pub fn envoy_metrics(
    spec: &ReleaseSpec,
    pods: &[PodSeries],
    namespace: &str,
    service: &str,
) -> String {
    let pods = project(spec, pods, &seconds(&ENVOY_MS, 1000.0));
    let cluster = |namespace: &str, arm: &str| format!("{namespace}_{service}-{arm}_{PORT}");
    let canary_total = arm_total(&pods, "canary");
    let series = [
        (cluster(namespace, "primary"), arm_total(&pods, "primary")),
        (cluster(namespace, "canary"), canary_total.clone()),
        (
            cluster("staging", "canary"),
            decoy(&canary_total, &seconds(&ENVOY_MS, 1000.0), 2),
        ),
    ];
    let labels = |cluster: &str| -> Labels {
        vec![
            ("namespace".into(), "projectcontour".into()),
            ("pod".into(), "envoy-5kq8n".into()),
            ("envoy_cluster_name".into(), cluster.to_string()),
        ]
    };
    let mut om = OpenMetrics::new();
    om.family("envoy_cluster_upstream_rq", "unknown");
    for (cluster, scrapes) in &series {
        let ok = [("envoy_response_code", "200")];
        let failed = [("envoy_response_code", "500")];
        by_outcome(
            &mut om,
            "envoy_cluster_upstream_rq",
            &refs(&labels(cluster)),
            &ok,
            &failed,
            scrapes,
        );
    }
    om.family("envoy_cluster_upstream_rq_time", "histogram");
    for (cluster, scrapes) in &series {
        histogram(
            &mut om,
            "envoy_cluster_upstream_rq_time",
            &refs(&labels(cluster)),
            scrapes,
            &ENVOY_MS,
            1000.0,
        );
    }
    om.finish()
}

/// The application convention (release::app_metrics) with the client library's default buckets.
pub fn app_metrics(spec: &ReleaseSpec, pods: &[PodSeries], namespace: &str) -> String {
    let pods = project(spec, pods, &DEFAULT_BUCKETS);
    let spec = ReleaseSpec {
        buckets: DEFAULT_BUCKETS.to_vec(),
        ..spec.clone()
    };
    super::release::app_metrics(&spec, &pods, namespace)
}
