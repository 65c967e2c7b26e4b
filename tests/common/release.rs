//! A simulated release, as Prometheus would have scraped it: request, error and latency
//! counters per pod, every 15 s, while the canary's weight steps up.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal, Poisson};

use super::OpenMetrics;

/// Prometheus client libraries' default buckets, in seconds.
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
pub const SCRAPE: i64 = 15;

#[derive(Clone, Debug)]
pub struct ReleaseSpec {
    pub seed: u64,
    /// When the canary starts taking traffic (Unix seconds, a multiple of 15).
    pub start: i64,
    /// Minutes of primary-only traffic before `start`, so the first window has history.
    pub warmup_minutes: i64,
    pub minutes: i64,
    /// Canary weight (percent) in each minute from `start`; the last one holds.
    pub weights: Vec<u32>,
    pub requests_per_second: f64,
    pub primary_errors: f64,
    pub canary_errors: f64,
    /// Median latency in seconds and the lognormal's sigma.
    pub median_latency: f64,
    pub sigma: f64,
    /// The canary's latencies are the primary's times this factor.
    pub canary_latency_factor: f64,
    pub buckets: Vec<f64>,
}

impl ReleaseSpec {
    pub fn healthy(seed: u64, start: i64) -> Self {
        Self {
            seed,
            start,
            warmup_minutes: 5,
            minutes: 10,
            weights: vec![10, 20, 30, 40, 50],
            requests_per_second: 100.0,
            primary_errors: 0.001,
            canary_errors: 0.001,
            median_latency: 0.05,
            sigma: 0.5,
            canary_latency_factor: 1.0,
            buckets: DEFAULT_BUCKETS.to_vec(),
        }
    }
}

/// Cumulative counts of one pod at one scrape. `buckets[i]` counts requests at or below
/// `spec.buckets[i]`; `requests` is the +Inf bucket.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub at: i64,
    pub requests: u64,
    pub errors: u64,
    pub buckets: Vec<u64>,
    pub latency_sum: f64,
}

#[derive(Clone, Debug)]
pub struct PodSeries {
    pub arm: &'static str,
    /// Deployment name (`podinfo` or `podinfo-primary`).
    pub workload: String,
    pub pod: String,
    pub scrapes: Vec<Scrape>,
}

/// Simulates the release for a target Deployment `target`: two primary pods, one canary pod.
pub fn simulate(spec: &ReleaseSpec, target: &str) -> Vec<PodSeries> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut pods = vec![
        pod("primary", format!("{target}-primary"), "5f7b9c8d4-x7k2p"),
        pod("primary", format!("{target}-primary"), "5f7b9c8d4-m3n8q"),
        pod("canary", target.to_string(), "6c8d7f9b5-q4w8z"),
    ];
    let latency = LogNormal::new(spec.median_latency.ln(), spec.sigma).expect("lognormal");
    let first = spec.start - spec.warmup_minutes * 60;
    let last = spec.start + spec.minutes * 60;
    let mut at = first;
    while at <= last {
        let minute = (at - spec.start - 1).div_euclid(60);
        let weight = if at <= spec.start {
            0.0
        } else {
            let index = (minute.max(0) as usize).min(spec.weights.len() - 1);
            f64::from(spec.weights[index]) / 100.0
        };
        for pod in pods.iter_mut() {
            let (arm, share_of_arm) = match pod.arm {
                "primary" => ("primary", (1.0 - weight) / 2.0),
                _ => ("canary", weight),
            };
            let mut scrape = pod.scrapes.last().cloned().unwrap_or_else(|| Scrape {
                at,
                buckets: vec![0; spec.buckets.len()],
                ..Scrape::default()
            });
            scrape.at = at;
            let mean = spec.requests_per_second * share_of_arm * SCRAPE as f64;
            let arrivals = if at == first || mean <= 0.0 {
                0
            } else {
                Poisson::new(mean).expect("poisson").sample(&mut rng) as u64
            };
            let (error_rate, factor) = match arm {
                "primary" => (spec.primary_errors, 1.0),
                _ => (spec.canary_errors, spec.canary_latency_factor),
            };
            for _ in 0..arrivals {
                scrape.requests += 1;
                if rand::RngExt::random::<f64>(&mut rng) < error_rate {
                    scrape.errors += 1;
                }
                let seconds = latency.sample(&mut rng) * factor;
                scrape.latency_sum += seconds;
                for (bound, count) in spec.buckets.iter().zip(scrape.buckets.iter_mut()) {
                    if seconds <= *bound {
                        *count += 1;
                    }
                }
            }
            // A canary pod does not exist before the release starts.
            if arm == "primary" || at >= spec.start {
                pod.scrapes.push(scrape);
            }
        }
        at += SCRAPE;
    }
    pods
}

fn pod(arm: &'static str, workload: String, suffix: &str) -> PodSeries {
    let pod = format!("{}-{suffix}", workload);
    PodSeries {
        arm,
        workload,
        pod,
        scrapes: Vec::new(),
    }
}

/// The application convention of ARCHITECTURE.md: `http_requests_total{namespace,pod,status}`
/// and `http_request_duration_seconds` histograms. A pod's 500 series appears with its first
/// error, as client libraries do.
pub fn app_metrics(spec: &ReleaseSpec, pods: &[PodSeries], namespace: &str) -> String {
    let mut om = OpenMetrics::new();
    om.family("http_requests", "counter");
    for pod in pods {
        for (status, pick) in [("200", 0usize), ("500", 1)] {
            let mut seen = false;
            for s in &pod.scrapes {
                let value = if pick == 0 {
                    s.requests - s.errors
                } else {
                    s.errors
                };
                seen |= pick == 0 || value > 0;
                if seen {
                    let labels = [
                        ("namespace", namespace),
                        ("pod", pod.pod.as_str()),
                        ("status", status),
                    ];
                    om.sample("http_requests_total", &labels, s.at, value as f64);
                }
            }
        }
    }
    om.family("http_request_duration_seconds", "histogram");
    for pod in pods {
        let labels = [("namespace", namespace), ("pod", pod.pod.as_str())];
        for (i, bound) in spec
            .buckets
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_string()])
            .enumerate()
        {
            for s in &pod.scrapes {
                let count = s.buckets.get(i).copied().unwrap_or(s.requests);
                let mut with_le = labels.to_vec();
                with_le.push(("le", bound.as_str()));
                om.sample(
                    "http_request_duration_seconds_bucket",
                    &with_le,
                    s.at,
                    count as f64,
                );
            }
        }
        for s in &pod.scrapes {
            om.sample(
                "http_request_duration_seconds_count",
                &labels,
                s.at,
                s.requests as f64,
            );
        }
        for s in &pod.scrapes {
            om.sample(
                "http_request_duration_seconds_sum",
                &labels,
                s.at,
                s.latency_sum,
            );
        }
    }
    om.finish()
}

/// A start time in the recent past, aligned to the minute, so that retention keeps it.
pub fn recent_start(hours_ago: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    (now - hours_ago * 3600).div_euclid(60) * 60
}
