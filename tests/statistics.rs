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
    Look, Observation, Observed, RequestCounts, Verdict, binomial, judge_look, sequential::Pods,
};
use sluice_core::api::{Analysis, Evidence};

const RUNS: u64 = 2000;
const LOOKS: u32 = 20;
/// Checks per interval: a 15-s checkInterval in 1-m intervals.
const CHECKS: u32 = 4;
/// The benchmark's arms: one canary pod beside two primary pods.
const PODS: Pods = Pods {
    canary: 1,
    primary: 2,
};
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
                pods: PODS,
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
fn one_point_of_errors_is_caught_within_eight_intervals() {
    // 100 requests/s, a fixed 10% canary share, 0.1% primary errors, canary +1 point. (Five
    // intervals before the burst cap: its looks are loud enough to be a burst's at times.)
    let rate = power(21, &error_rate(), 8, &|_, _, _| {
        arms(100.0, 0.1, 0.011, 0.001)
    });
    println!(
        "power: +1 pp at 100 rps, 10% share, caught within 8 intervals in {:.2}% of runs",
        rate * 100.0
    );
    assert!(rate >= 0.99, "caught in {rate}");
}

#[test]
fn five_points_of_errors_are_caught_within_two_intervals() {
    // Every look is as loud as a burst: capped until the canary has been loud for longer than a
    // burst lasts, then counted in full, one look late (the first interval before the cap).
    let rate = power(22, &error_rate(), 2, &|_, _, _| {
        arms(100.0, 0.1, 0.051, 0.001)
    });
    println!(
        "power: +5 pp at 100 rps, 10% share, caught within two intervals in {:.2}% of runs",
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
    // The first interval chooses the boundary; then every look is as loud as a burst's, capped
    // for three looks and counted one look late.
    let rate = power(25, &latency(), 3, &doubled);
    println!(
        "power: latency x2 at 100 rps, caught within 3 intervals in {:.2}% of runs",
        rate * 100.0
    );
    assert!(rate >= 0.99, "caught in {rate}");
}

// ---- bursts: requests that are not independent ---------------------------------------------
//
// Issue 15: real pods fail in bursts (a node hiccup, a GC pause, a pool reset). Here every pod,
// the canary's one and the primary's two, has its own Poisson clock of 15-s bursts at 10% errors
// (0.2% otherwise), 80 requests/s in all, looks every 15 s. The test's null includes such bursts
// (see `sluice_core::analysis::sequential`), so a canary that bursts like the primary's pods
// must be rolled back at most at the promised rate, however independent its requests are not.

const BURST_SECONDS: f64 = 15.0;

/// Start times of one pod's bursts over `seconds`, `per_hour` on average; the first may already
/// be running at 0.
fn burst_starts(rng: &mut StdRng, per_hour: f64, seconds: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut at = -BURST_SECONDS;
    loop {
        at += -(1.0 - rng.random::<f64>()).ln() * 3600.0 / per_hour;
        if at >= seconds {
            return out;
        }
        out.push(at);
    }
}

/// The share of `[from, to)` a pod with these bursts spends bursting.
fn bursting(starts: &[f64], from: f64, to: f64) -> f64 {
    let covered: f64 = starts
        .iter()
        .map(|&s| ((s + BURST_SECONDS).min(to) - s.max(from)).max(0.0))
        .sum();
    (covered / (to - from)).min(1.0)
}

/// One release of `LOOKS` intervals with bursting pods; the interval of its rollback, if any.
fn bursty_release(rng: &mut StdRng, canary_per_hour: f64, primary_per_hour: f64) -> Option<u32> {
    let analysis = error_rate();
    let (rps, base, burst) = (80.0, 0.002, 0.1);
    let look_seconds = 60.0 / f64::from(CHECKS);
    let seconds = f64::from(LOOKS) * 60.0;
    let canary_pod = burst_starts(rng, canary_per_hour, seconds);
    let primary_pods: Vec<Vec<f64>> = (0..PODS.primary)
        .map(|_| burst_starts(rng, primary_per_hour, seconds))
        .collect();
    let weights = [10.0, 20.0, 30.0, 40.0, 50.0];
    let mut evidence = Evidence::default();
    let mut step = 0;
    for interval in 1..=LOOKS {
        let weight = weights[step.min(weights.len() - 1)] / 100.0;
        for check in 1..=CHECKS {
            let look = (interval - 1) * CHECKS + check;
            let (from, to) = (
                f64::from(look - 1) * look_seconds,
                f64::from(look) * look_seconds,
            );
            let mut pod = |starts: &[f64], share: f64| {
                let n = poisson(rng, rps * share * look_seconds);
                let p = base + bursting(starts, from, to) * (burst - base);
                (n, binom(rng, n, p))
            };
            let canary = pod(&canary_pod, weight);
            let primary = primary_pods
                .iter()
                .map(|starts| pod(starts, (1.0 - weight) / f64::from(PODS.primary)))
                .fold((0, 0), |(n, e), (pn, pe)| (n + pn, e + pe));
            let counts = |(requests, errors): (u64, u64)| RequestCounts {
                requests: requests as f64,
                errors: errors as f64,
            };
            let observation = Observation {
                metric: "m".into(),
                result: Ok(Observed::Counts {
                    canary: counts(canary),
                    primary: counts(primary),
                }),
            };
            let look = Look {
                elapsed: u64::from(look) * 60 / u64::from(CHECKS),
                step: check == CHECKS,
                pods: PODS,
            };
            match judge_look(&analysis, &mut evidence, &[observation], look).verdict {
                Verdict::Rollback { .. } => return Some(interval),
                Verdict::Continue | Verdict::Ready if look.step => step += 1,
                _ => {}
            }
        }
    }
    None
}

fn bursty_rollbacks(seed: u64, canary_per_hour: f64, primary_per_hour: f64) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..RUNS)
        .filter(|_| bursty_release(&mut rng, canary_per_hour, primary_per_hour).is_some())
        .count() as u64
}

#[test]
fn error_rate_is_calibrated_when_every_pod_bursts() {
    // 3 bursts an hour on every pod: over 20 minutes (three times a real schedule) about one on
    // each, and a canary that bursts two or three times in some releases. The cap assumes that
    // one pod's bursts are apart: at 10 an hour on every pod, over the same 20 minutes, 1.3% of
    // these releases were rolled back (README).
    let alpha = error_rate().alpha;
    let rollbacks = bursty_rollbacks(31, 3.0, 3.0);
    let upper = binomial::upper_bound(rollbacks, RUNS, 0.95);
    println!(
        "calibration with pod bursts (3/h on each of 1 canary and 2 primary pods): {rollbacks}/{RUNS} false rollbacks = {:.2}% (95% upper bound {:.2}%, alpha {:.0}%)",
        100.0 * rollbacks as f64 / RUNS as f64,
        100.0 * upper,
        100.0 * alpha
    );
    assert!(upper <= alpha, "false-rollback upper bound {upper}");
}

#[test]
fn a_canary_that_bursts_more_often_is_caught_by_how_often() {
    // The price of the cap: a canary whose pod bursts 5 times as often as each primary pod is
    // caught only once it has burst often enough, not at its first burst. Measured, and held to
    // more than the healthy rate so that a cap that forgave every burst would fail.
    let caught = bursty_rollbacks(33, 15.0, 3.0);
    println!(
        "power: canary pod bursting 15/h beside primary pods at 3/h, rolled back within 20 intervals in {:.2}% of runs",
        100.0 * caught as f64 / RUNS as f64
    );
    assert!(caught >= RUNS / 40, "caught {caught} of {RUNS}");
}
