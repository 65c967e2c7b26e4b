//! Calibration and power of the comparisons, on simulated releases driven through the real judge.
//!
//! Calibration: thousands of healthy releases (canary as good as the primary) must be rolled
//! back at most at the promised rate α; the claim is checked with the 95% Clopper–Pearson upper
//! bound, so it fails when the true rate is likely above α, not only when one run is unlucky.
//! Every release runs 20 intervals (more than a real schedule) and is looked at every check,
//! four times an interval (a 15-s checkInterval in 1-m intervals): 80 looks. Traffic, canary
//! share and error rates change between intervals, which is where a fixed-sample test repeated
//! at every look breaks.
//! Power: simulated regressions must be caught, in time.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Binomial, Distribution, Poisson};
use statrs::distribution::{ContinuousCDF, LogNormal};

use sluice_core::analysis::{
    Look, Observation, Observed, RequestCounts, Verdict, binomial, judge_look,
};
use sluice_core::api::{Analysis, Evidence};

const RUNS: u64 = 2000;
const LOOKS: u32 = 20;
/// Checks per interval: a 15-s checkInterval in 1-m intervals.
const CHECKS: u32 = 4;
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn analysis(metric: &str) -> Analysis {
    let yaml = format!(
        "{{stepWeight: 10, maxWeight: 50, alpha: 0.01, metrics: [{{name: m, templateRef: {{name: t}}, comparison: {metric}}}]}}"
    );
    serde_yaml_ng::from_str(&yaml).unwrap()
}

fn error_rate() -> Analysis {
    analysis("{type: errorRate, requestsTemplateRef: {name: r}}")
}

fn latency() -> Analysis {
    analysis("{type: latency, quantile: 0.99}")
}

/// What one arm does during one interval.
#[derive(Clone, Copy)]
struct ArmWorld {
    requests: f64,
    error: f64,
    median: f64,
    sigma: f64,
}

fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
    if mean <= 0.0 {
        0
    } else {
        Poisson::new(mean).unwrap().sample(rng) as u64
    }
}

fn binom(rng: &mut StdRng, n: u64, p: f64) -> u64 {
    Binomial::new(n, p.clamp(0.0, 1.0)).unwrap().sample(rng)
}

/// Cumulative bucket counts of `n` lognormal latencies, drawn as a multinomial.
fn histogram(rng: &mut StdRng, n: u64, arm: ArmWorld) -> Vec<(f64, f64)> {
    let dist = LogNormal::new(arm.median.ln(), arm.sigma).unwrap();
    let mut out = Vec::new();
    let (mut left, mut below, mut previous_cdf) = (n, 0u64, 0.0);
    for bound in BUCKETS {
        let cdf = dist.cdf(bound);
        let p = if previous_cdf >= 1.0 {
            0.0
        } else {
            (cdf - previous_cdf) / (1.0 - previous_cdf)
        };
        let here = binom(rng, left, p);
        left -= here;
        below += here;
        previous_cdf = cdf;
        out.push((bound, below as f64));
    }
    out.push((f64::INFINITY, n as f64));
    out
}

fn observe(
    rng: &mut StdRng,
    analysis: &Analysis,
    canary: ArmWorld,
    primary: ArmWorld,
) -> Observation {
    let nc = poisson(rng, canary.requests);
    let np = poisson(rng, primary.requests);
    let latency = analysis.metrics[0]
        .comparison
        .as_ref()
        .unwrap()
        .quantile
        .is_some();
    let observed = if latency {
        Observed::Histograms {
            canary: histogram(rng, nc, canary),
            primary: histogram(rng, np, primary),
        }
    } else {
        Observed::Counts {
            canary: RequestCounts {
                requests: nc as f64,
                errors: binom(rng, nc, canary.error) as f64,
            },
            primary: RequestCounts {
                requests: np as f64,
                errors: binom(rng, np, primary.error) as f64,
            },
        }
    };
    Observation {
        metric: "m".into(),
        result: Ok(observed),
    }
}

/// Runs one release for `looks` intervals of `CHECKS` checks; `world(interval, weight)` gives
/// both arms per interval. Returns the interval of the first rollback, at a check or a step.
/// The weight steps up Flagger's way on every step that is not held, and stays at the maximum.
fn release(
    rng: &mut StdRng,
    analysis: &Analysis,
    looks: u32,
    world: &dyn Fn(&mut StdRng, u32, f64) -> (ArmWorld, ArmWorld),
) -> Option<u32> {
    let weights = [10.0, 20.0, 30.0, 40.0, 50.0];
    let mut evidence = Evidence::default();
    let mut step = 0;
    for interval in 1..=looks {
        let weight = weights[step.min(weights.len() - 1)] / 100.0;
        let (mut canary, mut primary) = world(rng, interval, weight);
        canary.requests /= f64::from(CHECKS);
        primary.requests /= f64::from(CHECKS);
        for check in 1..=CHECKS {
            let look = Look {
                elapsed: u64::from((interval - 1) * CHECKS + check) * 60 / u64::from(CHECKS),
                step: check == CHECKS,
            };
            let judgement = judge_look(
                analysis,
                &mut evidence,
                &[observe(rng, analysis, canary, primary)],
                look,
            );
            match judgement.verdict {
                Verdict::Rollback { .. } => return Some(interval),
                Verdict::Continue | Verdict::Ready if look.step => step += 1,
                _ => {}
            }
        }
    }
    None
}

fn arms(
    total_rps: f64,
    weight: f64,
    canary_error: f64,
    primary_error: f64,
) -> (ArmWorld, ArmWorld) {
    let base = ArmWorld {
        requests: 0.0,
        error: primary_error,
        median: 0.05,
        sigma: 0.5,
    };
    (
        ArmWorld {
            requests: total_rps * 60.0 * weight,
            error: canary_error,
            ..base
        },
        ArmWorld {
            requests: total_rps * 60.0 * (1.0 - weight),
            ..base
        },
    )
}

/// Counts false rollbacks over `RUNS` healthy releases and checks the 95% upper bound.
fn calibrate(
    name: &str,
    seed: u64,
    analysis: &Analysis,
    world: &dyn Fn(&mut StdRng, u32, f64) -> (ArmWorld, ArmWorld),
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let rollbacks = (0..RUNS)
        .filter(|_| release(&mut rng, analysis, LOOKS, world).is_some())
        .count() as u64;
    let upper = binomial::upper_bound(rollbacks, RUNS, 0.95);
    println!(
        "calibration {name}: {rollbacks}/{RUNS} false rollbacks = {:.2}% (95% upper bound {:.2}%, alpha {:.0}%)",
        100.0 * rollbacks as f64 / RUNS as f64,
        100.0 * upper,
        100.0 * analysis.alpha
    );
    assert!(
        upper <= analysis.alpha,
        "{name}: false-rollback upper bound {upper} exceeds alpha"
    );
}

#[test]
fn error_rate_is_calibrated_at_steady_traffic() {
    calibrate(
        "error rate, 100 rps, 0.1% errors",
        11,
        &error_rate(),
        &|_, _, w| arms(100.0, w, 0.001, 0.001),
    );
}

#[test]
fn error_rate_is_calibrated_when_traffic_and_errors_swing() {
    // Diurnal-like load (x3, x0.3), error rates rising with load in both arms, and bursts of
    // 20% errors in both arms (a shared dependency failing) in some intervals.
    let world = |rng: &mut StdRng, interval: u32, w: f64| {
        let load = [1.0, 3.0, 3.0, 0.3, 0.3, 1.0][interval as usize % 6];
        let mut error = 0.001 * load;
        if rng.random::<f64>() < 0.2 {
            error = 0.2 * 0.5 + error * 0.5; // 30 s of 20% errors in this minute
        }
        arms(100.0 * load, w, error, error)
    };
    calibrate(
        "error rate, swinging load and shared bursts",
        12,
        &error_rate(),
        &world,
    );
}

#[test]
fn error_rate_is_calibrated_at_low_traffic() {
    calibrate(
        "error rate, 1 rps, 1% errors",
        13,
        &error_rate(),
        &|_, _, w| arms(1.0, w, 0.01, 0.01),
    );
}

#[test]
fn latency_is_calibrated() {
    calibrate("latency, 100 rps", 14, &latency(), &|_, _, w| {
        arms(100.0, w, 0.001, 0.001)
    });
    let swing = |_: &mut StdRng, interval: u32, w: f64| {
        let load = [1.0, 3.0, 0.3][interval as usize % 3];
        let (mut c, mut p) = arms(20.0 * load, w, 0.0, 0.0);
        // Both arms slow down together under load.
        c.median *= load.sqrt();
        p.median *= load.sqrt();
        (c, p)
    };
    calibrate(
        "latency, 20 rps, load-dependent latency",
        15,
        &latency(),
        &swing,
    );
}

/// Share of `RUNS` bad releases caught within `within` intervals.
fn power(
    seed: u64,
    analysis: &Analysis,
    within: u32,
    world: &dyn Fn(&mut StdRng, u32, f64) -> (ArmWorld, ArmWorld),
) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let caught = (0..RUNS)
        .filter(|_| release(&mut rng, analysis, within, world).is_some())
        .count();
    caught as f64 / RUNS as f64
}

#[test]
fn one_point_of_errors_is_caught_within_five_intervals() {
    // 100 requests/s, a fixed 10% canary share, 0.1% primary errors, canary +1 point.
    let rate = power(21, &error_rate(), 5, &|_, _, _| {
        arms(100.0, 0.1, 0.011, 0.001)
    });
    println!(
        "power: +1 pp at 100 rps, 10% share, caught within 5 intervals in {:.2}% of runs",
        rate * 100.0
    );
    assert!(rate >= 0.99, "caught in {rate}");
}

#[test]
fn five_points_of_errors_are_caught_in_the_first_interval() {
    let rate = power(22, &error_rate(), 1, &|_, _, _| {
        arms(100.0, 0.1, 0.051, 0.001)
    });
    println!(
        "power: +5 pp at 100 rps, 10% share, caught in the first interval in {:.2}% of runs",
        rate * 100.0
    );
    assert!(rate >= 0.99, "caught in {rate}");
}

#[test]
fn low_traffic_regressions_are_caught() {
    // 1 request/s in total, +5 points: about 6 canary errors in the 5-step schedule, so the
    // evidence needs some intervals at the maximum weight.
    let rate = power(23, &error_rate(), 15, &|_, _, w| arms(1.0, w, 0.051, 0.001));
    println!(
        "power: +5 pp at 1 rps, stepping share, caught within 15 intervals in {:.2}% of runs",
        rate * 100.0
    );
    assert!(rate >= 0.97, "caught in {rate}");
}

#[test]
fn a_heavier_latency_tail_is_caught() {
    // Same median, sigma 0.6 instead of 0.5: p99 is 26% higher.
    let world = |_: &mut StdRng, _: u32, w: f64| {
        let (mut c, p) = arms(100.0, w, 0.0, 0.0);
        c.sigma = 0.6;
        (c, p)
    };
    let rate = power(24, &latency(), 10, &world);
    println!(
        "power: latency p99 +26% at 100 rps, caught within 10 intervals in {:.2}% of runs",
        rate * 100.0
    );
    assert!(rate >= 0.99, "caught in {rate}");
    let doubled = |_: &mut StdRng, _: u32, w: f64| {
        let (mut c, p) = arms(100.0, w, 0.0, 0.0);
        c.median *= 2.0;
        (c, p)
    };
    let rate = power(25, &latency(), 2, &doubled);
    println!(
        "power: latency x2 at 100 rps, caught within 2 intervals in {:.2}% of runs",
        rate * 100.0
    );
    assert!(rate >= 0.99, "caught in {rate}");
}
