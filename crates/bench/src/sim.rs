//! The traffic simulator: requests per arm every 15-s scrape window, as Prometheus would count
//! them, with the canary's share set by the policy under test.
//!
//! Each window's counts are drawn from their exact distributions under the request-level model:
//! Poisson arrivals per arm, each request failing independently with the arm's error probability
//! (binomial), and its latency falling in a histogram bucket (multinomial). The primary's true p99
//! is an extra cut point, so that the requests slower than it are known for scoring.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Binomial, Distribution, Exp, Poisson};

use super::policy::{Policy, Step, Truth, Window};
use super::scenario::{ArmState, BURST_SECONDS, Kind, Latency, PodBursts, Scenario};

pub const SCRAPE: i64 = 15;
/// The longest a release may run before it counts as inconclusive.
pub const MAX_SECONDS: i64 = 3600;

/// Histogram bounds (seconds): a geometric grid, 25% apart, from 5 ms to 5 s, as a service that
/// cares about latency would configure.
pub fn buckets() -> Vec<f64> {
    (0..32)
        .map(|i| 0.005 * 1.25f64.powi(i))
        .filter(|b| *b <= 5.0)
        .collect()
}

/// Cumulative counters of one arm.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub requests: u64,
    pub errors: u64,
    /// Per bucket bound, requests at or below it.
    pub below: Vec<u64>,
}

/// What a release ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Promote,
    Rollback,
    Inconclusive,
}

#[derive(Clone, Debug)]
pub struct RunResult {
    pub verdict: Verdict,
    /// Seconds from the canary's first traffic to the verdict.
    pub seconds: i64,
    /// Expected canary requests that were worse than the primary's: errors above the primary's
    /// rate plus requests slower than the primary's p99 beyond the 1% expected.
    pub bad_requests: f64,
}

/// Splits `n` requests over the cells of `probabilities` (summing to 1).
fn multinomial(rng: &mut StdRng, n: u64, probabilities: &[f64]) -> Vec<u64> {
    let mut left = n;
    let mut mass = 1.0;
    let mut out = Vec::with_capacity(probabilities.len());
    for &p in probabilities {
        let here = if left == 0 || mass <= 0.0 {
            0
        } else {
            let q = (p / mass).clamp(0.0, 1.0);
            Binomial::new(left, q).map(|b| b.sample(rng)).unwrap_or(0)
        };
        left -= here;
        mass -= p;
        out.push(here);
    }
    out
}

/// Cell probabilities of a latency distribution over the bucket bounds plus one cut point,
/// cached because distributions change rarely within a run.
struct Cells {
    cache: Vec<(Latency, f64, Vec<f64>)>,
    bounds: Vec<f64>,
}

impl Cells {
    /// Probabilities of the cells `(-inf, c0], (c0, c1], ..., (c_last, inf)` where the cuts are
    /// the bucket bounds with `cut` inserted; and the index of `cut` among them.
    fn get(&mut self, latency: &Latency, cut: f64) -> (Vec<f64>, usize) {
        let mut cuts = self.bounds.clone();
        let position = cuts.partition_point(|b| *b < cut);
        cuts.insert(position, cut);
        if let Some((_, _, p)) = self
            .cache
            .iter()
            .find(|(l, c, _)| l == latency && *c == cut)
        {
            return (p.clone(), position);
        }
        let mut previous = 0.0;
        let mut probabilities = Vec::with_capacity(cuts.len() + 1);
        for c in &cuts {
            let cdf = latency.cdf(*c);
            probabilities.push((cdf - previous).max(0.0));
            previous = cdf;
        }
        probabilities.push((1.0 - previous).max(0.0));
        self.cache
            .push((latency.clone(), cut, probabilities.clone()));
        (probabilities, position)
    }
}

/// Every pod's burst start times (whole seconds), drawn once per release.
struct BurstClock {
    spec: PodBursts,
    canary: Vec<i64>,
    primary: Vec<Vec<i64>>,
}

impl BurstClock {
    /// Draws from its own stream, so the traffic draws stay those of the other scenarios.
    fn draw(spec: PodBursts, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x00b0_0575);
        let mut starts = |per_hour: f64| {
            let mut out = Vec::new();
            let Ok(gap) = Exp::new(per_hour / 3600.0) else {
                return out;
            };
            // Start before 0 so that a burst may already be running when the canary starts.
            let mut at = -BURST_SECONDS as f64;
            loop {
                at += gap.sample(&mut rng);
                if at >= MAX_SECONDS as f64 {
                    return out;
                }
                out.push(at.floor() as i64);
            }
        };
        let canary = starts(spec.canary_per_hour);
        let primary = (0..spec.primary_pods.max(1))
            .map(|_| starts(spec.primary_per_hour))
            .collect();
        Self {
            spec,
            canary,
            primary,
        }
    }

    /// The share of `[from, to)` that a pod with these bursts spends bursting.
    fn fraction(starts: &[i64], from: i64, to: i64) -> f64 {
        let covered: i64 = starts
            .iter()
            .map(|&s| ((s + BURST_SECONDS).min(to) - s.max(from)).max(0))
            .sum();
        covered.min(to - from) as f64 / (to - from) as f64
    }

    /// Both arms over `[from, to)`: the primary's pods share its traffic equally.
    fn states(&self, from: i64, to: i64) -> [ArmState; 2] {
        let canary = Self::fraction(&self.canary, from, to);
        let primary = self
            .primary
            .iter()
            .map(|p| Self::fraction(p, from, to))
            .sum::<f64>()
            / self.primary.len() as f64;
        [self.spec.arm(canary), self.spec.arm(primary)]
    }
}

/// One release of `scenario` under `policy`, from `seed`. The same seed gives every policy the
/// same traffic for as long as their weights agree.
pub fn run(scenario: &Scenario, policy: &mut dyn Policy, seed: u64) -> RunResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let bounds = buckets();
    let mut cells = Cells {
        cache: Vec::new(),
        bounds: bounds.clone(),
    };
    let empty = Counters {
        below: vec![0; bounds.len()],
        ..Counters::default()
    };
    // Index 0 is the canary, 1 the primary.
    let mut counters = [empty.clone(), empty.clone()];
    let mut scraped: [Vec<(i64, Counters)>; 2] = [vec![(0, empty.clone())], vec![(0, empty)]];
    let mut truth = Vec::new();
    let mut bad = 0.0;
    let clock = match scenario.kind {
        Kind::PodBursts(spec) => Some(BurstClock::draw(spec, seed)),
        _ => None,
    };
    let every = policy.decision_every();
    let mut weight = policy.start();
    let mut t = 0;
    while t < MAX_SECONDS {
        t += SCRAPE;
        let middle = t - SCRAPE / 2;
        let expected = scenario.rate(middle) * SCRAPE as f64;
        let share = f64::from(weight) / 100.0;
        let states = match &clock {
            Some(clock) => clock.states(t - SCRAPE, t),
            None => [scenario.canary(middle), scenario.primary(middle)],
        };
        let primary_p99 = states[1].latency.quantile(0.99);
        let mut window = [(0u64, 0u64, 0u64, 0.0f64); 2];
        for arm in 0..2 {
            let mean = expected * if arm == 0 { share } else { 1.0 - share };
            let n = if mean > 0.0 {
                Poisson::new(mean)
                    .map(|p| p.sample(&mut rng) as u64)
                    .unwrap_or(0)
            } else {
                0
            };
            let error = states[arm].error.clamp(0.0, 1.0);
            let errors = Binomial::new(n, error)
                .map(|b| b.sample(&mut rng))
                .unwrap_or(0);
            let (probabilities, cut) = cells.get(&states[arm].latency, primary_p99);
            let split = multinomial(&mut rng, n, &probabilities);
            let slow: u64 = split[cut + 1..].iter().sum();
            let slow_probability: f64 = probabilities[cut + 1..].iter().sum();
            let c = &mut counters[arm];
            c.requests += n;
            c.errors += errors;
            // Cells end at the cuts: bound k ends cell k before the extra cut, k + 1 after it.
            let mut running = 0;
            let mut k = 0;
            for (cell, count) in split.iter().enumerate() {
                running += count;
                if cell != cut && k < c.below.len() {
                    c.below[k] += running;
                    k += 1;
                }
            }
            window[arm] = (n, errors, slow, slow_probability);
            if !scenario.scrape_lost(t, rng.random::<f64>()) {
                scraped[arm].push((t, c.clone()));
            }
        }
        let (canary_n, canary_errors, canary_slow, canary_slow_p) = window[0];
        let primary_slow_p = window[1].3;
        bad += canary_n as f64
            * ((states[0].error - states[1].error).max(0.0)
                + (canary_slow_p - primary_slow_p).max(0.0));
        truth.push(Truth {
            at: t,
            canary_requests: canary_n,
            canary_errors,
            canary_slow,
            canary_error_probability: states[0].error,
            primary_error_probability: states[1].error,
            canary_slow_probability: canary_slow_p,
            primary_slow_probability: primary_slow_p,
        });
        if t % every != 0 {
            continue;
        }
        let window = policy.window(t);
        let read = Window {
            canary: read(&scraped[0], t, window, &bounds),
            primary: read(&scraped[1], t, window, &bounds),
        };
        match policy.decide(t, &read, &truth) {
            Step::Weight(w) => weight = w,
            Step::Promote => return result(Verdict::Promote, t, bad),
            Step::Rollback => return result(Verdict::Rollback, t, bad),
            Step::Inconclusive => return result(Verdict::Inconclusive, t, bad),
        }
        truth.clear();
    }
    result(Verdict::Inconclusive, t, bad)
}

fn result(verdict: Verdict, seconds: i64, bad_requests: f64) -> RunResult {
    RunResult {
        verdict,
        seconds,
        bad_requests,
    }
}

/// What a query over `(t - window, t]` sees: the counters of the last scrape at or before `t`
/// minus those of the last at or before `t - window`; nothing when no scrape landed in the window.
fn read(
    scrapes: &[(i64, Counters)],
    t: i64,
    window: i64,
    bounds: &[f64],
) -> Option<super::policy::ArmCounts> {
    let last = |at: i64| scrapes.iter().rev().find(|(time, _)| *time <= at);
    let (end_time, end) = last(t)?;
    if *end_time <= t - window {
        return None;
    }
    let (_, start) = last(t - window)?;
    let mut buckets: Vec<(f64, f64)> = bounds
        .iter()
        .zip(end.below.iter().zip(&start.below))
        .map(|(b, (e, s))| (*b, (e - s) as f64))
        .collect();
    buckets.push((f64::INFINITY, (end.requests - start.requests) as f64));
    Some(super::policy::ArmCounts {
        requests: (end.requests - start.requests) as f64,
        errors: (end.errors - start.errors) as f64,
        buckets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_cover_their_share_of_time() {
        let spec = PodBursts {
            primary_pods: 2,
            canary_per_hour: 15.0,
            primary_per_hour: 3.0,
            latency: false,
        };
        let mut canary = 0.0;
        let mut primary = 0.0;
        let runs = 200;
        for seed in 0..runs {
            let clock = BurstClock::draw(spec, seed);
            canary += BurstClock::fraction(&clock.canary, 0, MAX_SECONDS);
            primary += BurstClock::fraction(&clock.primary[1], 0, MAX_SECONDS);
        }
        // 15 bursts of 15 s an hour is 6.25% of the time; 3 an hour, 1.25%.
        let (canary, primary) = (canary / runs as f64, primary / runs as f64);
        assert!((canary - 0.0625).abs() < 0.006, "{canary}");
        assert!((primary - 0.0125).abs() < 0.003, "{primary}");
        assert_eq!(BurstClock::fraction(&[10], 0, 15), 5.0 / 15.0);
        assert_eq!(BurstClock::fraction(&[-5], 0, 15), 10.0 / 15.0);
    }
}
