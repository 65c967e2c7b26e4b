//! The anytime-valid test behind every comparison: are the canary's events (errors, or slow
//! requests) more frequent than the primary's?
//!
//! Condition on the events of one interval. If the canary's per-request event rate is `r` times
//! the primary's, an event came from the canary with probability `ρr / (ρr + 1 − ρ)`, where `ρ`
//! is the canary's share of that interval's requests. Under no regression (`r ≤ r₀`) each
//! interval's likelihood ratio of any `r` against `r₀` has expectation at most 1, whatever the
//! traffic did, so their running product is a test supermartingale; a mixture of them over a
//! fixed grid of `r` is one too, and by Ville's inequality it ever exceeds `1/α` with probability
//! at most `α`, however many intervals are looked at (Lindon & Malek 2022 build the same kind of
//! test for multinomial counts). `ρ` may change every interval: it is fixed from that interval's
//! request counts before its events are counted.
//!
//! The state is the log-likelihood ratio of each grid point plus the totals per arm, so it fits
//! in the Canary's status and a restart resumes exactly.

use crate::api::{ArmTally, SequentialState};

/// Relative risks from 1/64 to 256, a factor √2 apart: fine enough that the best point is within
/// 19% of any true effect, coarse enough that the mixture pays little for its spread.
const LOG2_FROM: f64 = -6.0;
const LOG2_STEP: f64 = 0.5;
const POINTS: usize = 29;

/// One interval's counts for one arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub events: u64,
}

pub fn new_state(null_ratio: f64) -> SequentialState {
    SequentialState {
        canary: ArmTally::default(),
        primary: ArmTally::default(),
        null_ratio,
        log2_from: LOG2_FROM,
        log2_step: LOG2_STEP,
        log_likelihood: vec![0.0; POINTS],
        log_e_value: 0.0,
        rejected: false,
        step_log_e_value: 0.0,
    }
}

fn ratio_at(state: &SequentialState, index: usize) -> f64 {
    (state.log2_from + state.log2_step * index as f64).exp2()
}

/// P(an event came from the canary) when the canary's rate is `ratio` times the primary's.
fn canary_probability(share: f64, ratio: f64) -> f64 {
    share * ratio / (share * ratio + 1.0 - share)
}

/// Adds one interval. Both arms must have served requests (the caller reports no data
/// otherwise); events are capped at requests. The interval's log-likelihood ratios are multiplied
/// by `weight` in [0, 1]: a likelihood ratio raised to a power at most 1 still has expectation at
/// most 1 under the null (Jensen), so tempering an interval keeps the test valid; sluice tempers
/// the canary's first, warm-up interval.
pub fn update(
    state: &mut SequentialState,
    canary: Counts,
    primary: Counts,
    alpha: f64,
    weight: f64,
) {
    debug_assert!(canary.requests > 0 && primary.requests > 0);
    let canary_events = canary.events.min(canary.requests);
    let primary_events = primary.events.min(primary.requests);
    state.canary.requests += canary.requests;
    state.canary.events += canary_events;
    state.primary.requests += primary.requests;
    state.primary.events += primary_events;
    let share = canary.requests as f64 / (canary.requests + primary.requests) as f64;
    let p0 = canary_probability(share, state.null_ratio);
    let (ec, ep) = (canary_events as f64, primary_events as f64);
    for index in 0..state.log_likelihood.len() {
        let p = canary_probability(share, ratio_at(state, index));
        state.log_likelihood[index] +=
            weight * (ec * (p / p0).ln() + ep * ((1.0 - p) / (1.0 - p0)).ln());
    }
    state.log_e_value = log_e_value(state);
    if state.log_e_value >= (1.0 / alpha).ln() {
        state.rejected = true;
    }
}

/// ln of the e-value: the mixture, with equal weights, of the grid points above the null.
fn log_e_value(state: &SequentialState) -> f64 {
    let alternatives: Vec<f64> = (0..state.log_likelihood.len())
        .filter(|&i| ratio_at(state, i) > state.null_ratio * (1.0 + 1e-9))
        .map(|i| state.log_likelihood[i])
        .collect();
    log_mean_exp(&alternatives)
}

fn log_mean_exp(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = values.iter().map(|v| (v - max).exp()).sum();
    max + (sum / values.len() as f64).ln()
}

/// Whether the evidence rules out a regression of `margin` or more (canary rate at least
/// `margin` times the primary's), at level `alpha`: the mirror image of the rollback test, a
/// mixture of the grid points below the margin against the margin itself, which is a test
/// supermartingale whenever the true ratio is at or above the margin. The margin is taken at the
/// nearest grid point.
pub fn rules_out(state: &SequentialState, margin: f64, alpha: f64) -> bool {
    let ll = &state.log_likelihood;
    let index = ((margin.log2() - state.log2_from) / state.log2_step).round();
    // NaN (a margin of 0 or less) and margins at or beyond the grid's ends cannot be ruled out.
    if index.is_nan() || index < 1.0 || index as usize >= ll.len() {
        return false;
    }
    let m = index as usize;
    let below: Vec<f64> = (0..m).map(|j| ll[j] - ll[m]).collect();
    log_mean_exp(&below) >= (1.0 / alpha).ln()
}

/// What the evidence says about the relative risk (canary rate / primary rate).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RiskEstimate {
    /// The grid point of highest likelihood.
    pub ratio: f64,
    /// An anytime-valid 1−α confidence interval; `None` when it reaches the end of the grid
    /// (unbounded on that side).
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

/// The estimate and its confidence sequence: the grid points that a test of "r equals this
/// point" against the mixture of all others has not rejected at level α.
pub fn estimate(state: &SequentialState, alpha: f64) -> RiskEstimate {
    let ll = &state.log_likelihood;
    // On ties (no events yet) prefer the point nearest "no difference".
    let distance_from_one = |i: usize| (state.log2_from + state.log2_step * i as f64).abs();
    let best = (0..ll.len())
        .max_by(|&a, &b| {
            ll[a]
                .total_cmp(&ll[b])
                .then(distance_from_one(b).total_cmp(&distance_from_one(a)))
        })
        .unwrap_or(0);
    let threshold = (1.0 / alpha).ln();
    let kept: Vec<usize> = (0..ll.len())
        .filter(|&k| {
            let others: Vec<f64> = (0..ll.len())
                .filter(|&j| j != k)
                .map(|j| ll[j] - ll[k])
                .collect();
            log_mean_exp(&others) < threshold
        })
        .collect();
    // The true ratio may lie between grid points: widen to the first rejected point on each
    // side, so the interval stays valid at the grid's resolution.
    let (first, last) = match (kept.first(), kept.last()) {
        (Some(&first), Some(&last)) => (first, last),
        _ => (best, best),
    };
    RiskEstimate {
        ratio: ratio_at(state, best),
        lower: first.checked_sub(1).map(|k| ratio_at(state, k)),
        upper: (last + 1 < ll.len()).then(|| ratio_at(state, last + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(requests: u64, events: u64) -> Counts {
        Counts { requests, events }
    }

    fn update_full(s: &mut SequentialState, canary: Counts, primary: Counts, alpha: f64) {
        update(s, canary, primary, alpha, 1.0);
    }

    #[test]
    fn tempering_weakens_one_interval_without_changing_the_direction() {
        let mut full = new_state(1.0);
        let mut tempered = new_state(1.0);
        update(&mut full, counts(100, 2), counts(900, 0), 0.01, 1.0);
        update(&mut tempered, counts(100, 2), counts(900, 0), 0.01, 0.5);
        for (f, t) in full.log_likelihood.iter().zip(&tempered.log_likelihood) {
            assert!((f / 2.0 - t).abs() < 1e-12);
        }
    }

    #[test]
    fn promotion_needs_the_margin_ruled_out() {
        // Equal rates: with enough events, "the canary is 4x worse" is ruled out, "1.41x" not yet.
        let mut s = new_state(1.0);
        for _ in 0..5 {
            update(&mut s, counts(3000, 3), counts(3000, 3), 0.01, 1.0);
        }
        assert!(rules_out(&s, 4.0, 0.01), "{:?}", estimate(&s, 0.01));
        assert!(!rules_out(&s, 1.41, 0.01));
        // A canary really 4x worse never rules out 4x.
        let mut bad = new_state(1.0);
        for _ in 0..20 {
            update(&mut bad, counts(3000, 12), counts(3000, 3), 0.01, 1.0);
        }
        assert!(!rules_out(&bad, 4.0, 0.01));
        assert!(!rules_out(&new_state(1.0), 4.0, 0.01));
    }

    #[test]
    fn no_events_is_no_evidence() {
        let mut s = new_state(1.0);
        update_full(&mut s, counts(100, 0), counts(900, 0), 0.01);
        assert!(s.log_likelihood.iter().all(|&l| l == 0.0));
        assert_eq!(s.log_e_value, 0.0);
    }

    #[test]
    fn events_in_proportion_to_traffic_lower_the_e_value() {
        let mut s = new_state(1.0);
        update_full(&mut s, counts(1000, 10), counts(9000, 90), 0.01);
        assert!(s.log_e_value < 0.0, "{}", s.log_e_value);
        assert!(!s.rejected);
    }

    #[test]
    fn a_few_canary_failures_at_a_small_share_reject() {
        // 10% of traffic, no primary errors: every error from the canary is strong evidence.
        let mut s = new_state(1.0);
        update_full(&mut s, counts(100, 2), counts(900, 0), 0.01);
        assert!(!s.rejected, "2 errors: {}", s.log_e_value.exp());
        update_full(&mut s, counts(100, 1), counts(900, 0), 0.01);
        assert!(s.rejected, "3 errors: {}", s.log_e_value.exp());
        assert_eq!(
            s.canary,
            ArmTally {
                requests: 200,
                events: 3
            }
        );
    }

    #[test]
    fn the_estimate_brackets_the_true_ratio() {
        // Canary fails 4x as often as the primary, with plenty of data.
        let mut s = new_state(1.0);
        for _ in 0..10 {
            update_full(&mut s, counts(10_000, 400), counts(10_000, 100), 0.01);
        }
        let e = estimate(&s, 0.01);
        assert!((e.ratio - 4.0).abs() < 0.2, "{e:?}");
        assert!(e.lower.unwrap() < 4.0 && e.upper.unwrap() > 4.0, "{e:?}");
        assert!(e.lower.unwrap() > 2.0 && e.upper.unwrap() < 8.0, "{e:?}");
    }

    #[test]
    fn a_tolerated_effect_is_not_a_regression() {
        // The canary fails 1.5x as often; with minEffect 0.6 that is tolerated.
        let mut tolerant = new_state(1.6);
        let mut strict = new_state(1.0);
        for _ in 0..20 {
            update_full(
                &mut tolerant,
                counts(10_000, 150),
                counts(10_000, 100),
                0.01,
            );
            update_full(&mut strict, counts(10_000, 150), counts(10_000, 100), 0.01);
        }
        assert!(!tolerant.rejected);
        assert!(strict.rejected);
    }

    #[test]
    fn the_state_round_trips_through_json() {
        let mut s = new_state(1.0);
        update_full(&mut s, counts(100, 2), counts(900, 1), 0.01);
        let json = serde_json::to_string(&s).unwrap();
        let back: SequentialState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
