//! An anytime-valid confidence sequence on one arm's own event rate, for promotions that must
//! work when events are rare or absent.
//!
//! The relative test of `sequential` conditions on events: with no errors in either arm it
//! learns nothing, however many requests were served. Bounding each arm's rate by itself does
//! not need events: 9,000 clean canary requests put its error rate below 0.09%.
//!
//! For a fixed rate `q`, the Beta(a, b) mixture of the Bernoulli likelihood ratios against `q`,
//! `B(a + k, b + n − k) / B(a, b) / (q^k (1 − q)^(n − k))` after `k` events in `n` requests, is a
//! nonnegative martingale with mean 1 when the true rate is `q` (Robbins 1970). By Ville's
//! inequality it ever reaches `1/α` with probability at most `α`, so the rates where it has not
//! are a confidence sequence: it holds at every look at once, however many looks there are.
//! Requests arriving in batches (scrape windows) change nothing: the batch ends are a subset of
//! the looks a request-by-request martingale allows.

use statrs::function::beta::ln_beta;

/// The mixture's prior: Beta(1, 1/scale), mean about `scale`. Its weight sits on rates of the
/// size where the decision is made (the tolerance), which is what makes the bound tight there.
fn prior(scale: f64) -> (f64, f64) {
    (1.0, 1.0 / scale.clamp(1e-6, 0.5))
}

/// ln of the mixture martingale at rate `q` after `events` in `requests`.
fn log_martingale(events: u64, requests: u64, q: f64, scale: f64) -> f64 {
    let (a, b) = prior(scale);
    let (k, n) = (events as f64, requests as f64);
    let q = q.clamp(1e-15, 1.0 - 1e-15);
    ln_beta(a + k, b + n - k) - ln_beta(a, b) - k * q.ln() - (n - k) * (1.0 - q).ln()
}

/// The anytime-valid 1−α bounds `(lower, upper)` on the rate after `events` in `requests`.
/// `scale` is the rate the bound should be tightest around.
pub fn bounds(events: u64, requests: u64, alpha: f64, scale: f64) -> (f64, f64) {
    if requests == 0 {
        return (0.0, 1.0);
    }
    let events = events.min(requests);
    let threshold = (1.0 / alpha).ln();
    let estimate = events as f64 / requests as f64;
    let outside = |q: f64| log_martingale(events, requests, q, scale) >= threshold;
    // The martingale is smallest near the estimate and grows on either side: bisect each side
    // for the edge of the rates it has not rejected.
    let edge = |mut inside: f64, mut out: f64| {
        for _ in 0..100 {
            let middle = (inside + out) / 2.0;
            if outside(middle) {
                out = middle;
            } else {
                inside = middle;
            }
        }
        inside
    };
    let lower = if events == 0 || !outside(0.0) {
        0.0
    } else {
        edge(estimate, 0.0)
    };
    let upper = if events == requests || !outside(1.0) {
        1.0
    } else {
        edge(estimate, 1.0)
    };
    (lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_requests_bound_the_rate_without_any_event() {
        // 9,000 requests without an error: the rate is below 0.1% at α = 0.5%.
        let (lower, upper) = bounds(0, 9000, 0.005, 0.001);
        assert_eq!(lower, 0.0);
        assert!(upper < 0.001 && upper > 0.0003, "{upper}");
        // 6,000 are not yet enough.
        assert!(bounds(0, 6000, 0.005, 0.001).1 > 0.001);
    }

    #[test]
    fn the_bounds_bracket_the_estimate_and_narrow_with_data() {
        let (lo, hi) = bounds(10, 10_000, 0.01, 0.001);
        assert!(lo > 0.0 && lo < 0.001 && hi > 0.001, "{lo} {hi}");
        let (lo2, hi2) = bounds(100, 100_000, 0.01, 0.001);
        assert!(lo2 > lo && hi2 < hi, "{lo2} {hi2}");
        assert_eq!(bounds(0, 0, 0.01, 0.001), (0.0, 1.0));
        assert_eq!(bounds(5, 5, 0.01, 0.001).1, 1.0);
    }

    #[test]
    fn the_sequence_covers_the_true_rate_at_every_look() {
        // 400 simulated arms at a true rate of 0.2%, 100 looks each: the rate leaves the bounds
        // at some look in at most about α of them.
        use rand::rngs::StdRng;
        use rand::{RngExt, SeedableRng};
        let mut rng = StdRng::seed_from_u64(7);
        let (rate, alpha, runs) = (0.002, 0.05, 400);
        let mut missed = 0;
        for _ in 0..runs {
            let (mut k, mut n) = (0u64, 0u64);
            for _ in 0..100 {
                for _ in 0..200 {
                    n += 1;
                    k += u64::from(rng.random::<f64>() < rate);
                }
                let (lo, hi) = bounds(k, n, alpha, 0.001);
                if rate < lo || rate > hi {
                    missed += 1;
                    break;
                }
            }
        }
        assert!(missed <= runs * 5 / 100 + 8, "{missed} of {runs}");
    }
}
