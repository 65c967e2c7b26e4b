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
//!
//! # Bursts
//!
//! Requests are not independent trials: a pod fails in bursts (a node hiccup, a GC pause, a pool
//! reset), and one burst on the canary's only pod puts a dozen errors in a look where the
//! independent model expects a fraction of one. Under that model its likelihood ratio is in the
//! thousands, and a healthy canary whose pod bursts as often as the primary's pods do was rolled
//! back in a quarter of the benchmark's releases (S16). The rollback test therefore takes the
//! null hypothesis to include bursts: any pod, canary or primary, may have one, at the same rate.
//! Given that a burst happened, it is the canary's with probability at most `π`, the canary's
//! share of the pods (or of the requests, if larger), so a burst on the canary is worth a
//! likelihood ratio of at most about `1/π` (3 for one canary pod beside two primary pods), never
//! thousands. So the rollback's evidence is capped where a burst may be: a look is loud when the
//! canary had at least `LOUD_EVENTS` events and the evidence for a canary `LOUD_RATIO` times
//! worse rose above the cap (a burst's many events, not the spread of a busy canary's few), and
//! the looks a burst can touch (`BURST_LOOKS`), loud or next to a loud one, may raise each grid
//! point by at most ln(`CAP_SHARE` / π) together. A primary's burst lowers the ratios of every
//! point above the null far more than that, which is what keeps each burst's expected factor at
//! most 1. Every other look counts in full, so a small regression, whose looks are never loud,
//! is judged as before. To know whether a look is the quiet edge of a burst that the next look
//! shows, each look is counted one look late.
//!
//! A burst ends; a regression does not. When the canary has been loud in more than
//! `BURST_LOOKS` of the `LOUD_WINDOW` looks before, its looks count in full: under the null,
//! those looks come after a burst, where the independent model holds again. What this costs, as
//! measured by the benchmark: a release that fails outright is rolled back about a minute later
//! than without the cap (S4: 90 s instead of 30 s), and a canary that bursts more often than the
//! primary's pods, each burst no longer than theirs, is caught only by how often it bursts, which
//! a release rarely lasts long enough to show: S7's canary, bursting every 5 minutes, is held
//! until its progress deadline rather than promoted; S16x's, 5 times as often as each primary
//! pod, is mostly promoted.
//!
//! The promotion test (`rules_out`) and the estimate read the uncapped ratios.

use crate::api::{ArmTally, SequentialState};

/// Relative risks from 1/64 to 256, a factor √2 apart: fine enough that the best point is within
/// 19% of any true effect, coarse enough that the mixture pays little for its spread.
const LOG2_FROM: f64 = -6.0;
const LOG2_STEP: f64 = 0.5;
const POINTS: usize = 29;

/// The cap on one burst's likelihood ratio is this share of `1/π`: below 1 so that the primary's
/// bursts, which lower the ratios, need not lower them all the way to 0 to pay for the canary's.
const CAP_SHARE: f64 = 0.8;

/// A look in which the canary had at least this many events ...
const LOUD_EVENTS: u64 = 3;

/// ... and the evidence for a canary this many times worse than the primary rose above the cap:
/// a burst's many events, not the spread of a busy canary's few.
const LOUD_RATIO: f64 = 16.0;

/// The looks before a look in which the canary's loud ones are counted: more of them than one
/// burst can make (`BURST_LOOKS`) in 3 minutes of 15-s looks is a failure, not a burst; two
/// bursts of one pod so close together are what the null does not cover.
const LOUD_WINDOW: u32 = 12;

/// Loud looks that a burst can explain: a 15-s burst touches at most two 15-s scrapes,
/// and three looks when the looks are not aligned with the scrapes (counts arrive a scrape late).
/// Measured in the benchmark: with two, latency pauses (S16b) still rolled back 1.5% of healthy
/// releases.
const BURST_LOOKS: u32 = 3;

/// How many pods serve each arm: a burst is one pod's, so the pods, not the requests, say how
/// likely it is to be the canary's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pods {
    pub canary: u32,
    pub primary: u32,
}

impl Pods {
    /// The canary's share of the pods; one half when they are not known (0), which assumes one
    /// pod per arm, the case where a burst is most likely to be the canary's.
    fn canary_share(self) -> f64 {
        if self.canary == 0 || self.primary == 0 {
            0.5
        } else {
            f64::from(self.canary) / f64::from(self.canary + self.primary)
        }
    }
}

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
        capped_log_likelihood: vec![0.0; POINTS],
        pending_rise: Vec::new(),
        pending_cap: 0.0,
        last_rise: vec![0.0; POINTS],
        rise_before_last: vec![0.0; POINTS],
        loud_history: 0,
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
/// the canary's first, warm-up interval. `pods` bounds what a burst may weigh (see the module's
/// notes).
pub fn update(
    state: &mut SequentialState,
    canary: Counts,
    primary: Counts,
    alpha: f64,
    weight: f64,
    pods: Pods,
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
    let rises: Vec<f64> = (0..state.log_likelihood.len())
        .map(|index| {
            let p = canary_probability(share, ratio_at(state, index));
            weight * (ec * (p / p0).ln() + ep * ((1.0 - p) / (1.0 - p0)).ln())
        })
        .collect();
    for (total, rise) in state.log_likelihood.iter_mut().zip(&rises) {
        *total += rise;
    }
    add_capped(state, &rises, canary_events, share.max(pods.canary_share()));
    state.log_e_value = log_e_value(state);
    if state.log_e_value >= (1.0 / alpha).ln() {
        state.rejected = true;
    }
}

/// Adds the look's `rises` to the rollback evidence one look late: a look is counted once the
/// next one shows whether it was the edge of a burst. A look that is loud, or next to a loud one,
/// is capped so that the looks a burst can touch (`BURST_LOOKS`) rise by at most
/// ln(CAP_SHARE / `share`) together, unless the canary was loud for longer before it; every other
/// look counts in full.
fn add_capped(state: &mut SequentialState, rises: &[f64], canary_events: u64, share: f64) {
    let points = state.log_likelihood.len();
    // A status written before the cap existed starts it from the uncapped evidence.
    if state.capped_log_likelihood.len() != points {
        state.capped_log_likelihood = state.log_likelihood.clone();
        for (total, rise) in state.capped_log_likelihood.iter_mut().zip(rises) {
            *total -= rise;
        }
    }
    for budget in [&mut state.last_rise, &mut state.rise_before_last] {
        if budget.len() != points {
            *budget = vec![0.0; points];
        }
    }
    let cap = (CAP_SHARE / share).ln();
    let loud_point = (0..points).find(|&i| ratio_at(state, i) >= LOUD_RATIO * state.null_ratio);
    let loud = canary_events >= LOUD_EVENTS && loud_point.is_some_and(|i| rises[i] > cap);
    if state.pending_rise.len() == points {
        // Bit 0 is the pending look, bit 1 the one before it.
        let history = state.loud_history;
        let loud_before = ((history >> 1) & ((1 << LOUD_WINDOW) - 1)).count_ones();
        let near_loud = loud || history & 0b11 != 0;
        let capped = near_loud && loud_before <= BURST_LOOKS;
        let pending_cap = state.pending_cap;
        for i in 0..points {
            let pending = state.pending_rise[i];
            let rise = if capped {
                let spent = state.last_rise[i].max(0.0) + state.rise_before_last[i].max(0.0);
                pending.min(pending_cap - spent)
            } else {
                pending
            };
            state.capped_log_likelihood[i] += rise;
            // Only capped looks spend the budget: a burst's looks are all capped ones.
            state.rise_before_last[i] = state.last_rise[i];
            state.last_rise[i] = if capped { rise } else { 0.0 };
        }
    }
    state.pending_rise = rises.to_vec();
    state.pending_cap = cap;
    state.loud_history = (state.loud_history << 1) | u32::from(loud);
}

/// ln of the e-value: the mixture, with equal weights, of the grid points above the null.
fn log_e_value(state: &SequentialState) -> f64 {
    let alternatives: Vec<f64> = (0..state.capped_log_likelihood.len())
        .filter(|&i| ratio_at(state, i) > state.null_ratio * (1.0 + 1e-9))
        .map(|i| state.capped_log_likelihood[i])
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

    const ONE_POD_EACH: Pods = Pods {
        canary: 1,
        primary: 1,
    };

    fn counts(requests: u64, events: u64) -> Counts {
        Counts { requests, events }
    }

    fn update_full(s: &mut SequentialState, canary: Counts, primary: Counts, alpha: f64) {
        update(s, canary, primary, alpha, 1.0, ONE_POD_EACH);
    }

    #[test]
    fn tempering_weakens_one_interval_without_changing_the_direction() {
        let mut full = new_state(1.0);
        let mut tempered = new_state(1.0);
        update(
            &mut full,
            counts(100, 2),
            counts(900, 0),
            0.01,
            1.0,
            ONE_POD_EACH,
        );
        update(
            &mut tempered,
            counts(100, 2),
            counts(900, 0),
            0.01,
            0.5,
            ONE_POD_EACH,
        );
        for (f, t) in full.log_likelihood.iter().zip(&tempered.log_likelihood) {
            assert!((f / 2.0 - t).abs() < 1e-12);
        }
    }

    #[test]
    fn promotion_needs_the_margin_ruled_out() {
        // Equal rates: with enough events, "the canary is 4x worse" is ruled out, "1.41x" not yet.
        let mut s = new_state(1.0);
        for _ in 0..5 {
            update(
                &mut s,
                counts(3000, 3),
                counts(3000, 3),
                0.01,
                1.0,
                ONE_POD_EACH,
            );
        }
        assert!(rules_out(&s, 4.0, 0.01), "{:?}", estimate(&s, 0.01));
        assert!(!rules_out(&s, 1.41, 0.01));
        // A canary really 4x worse never rules out 4x.
        let mut bad = new_state(1.0);
        for _ in 0..20 {
            update(
                &mut bad,
                counts(3000, 12),
                counts(3000, 3),
                0.01,
                1.0,
                ONE_POD_EACH,
            );
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
        update_full(&mut s, counts(1000, 10), counts(9000, 90), 0.01);
        assert!(s.log_e_value < 0.0, "{}", s.log_e_value);
        assert!(!s.rejected);
    }

    #[test]
    fn a_few_canary_failures_at_a_small_share_reject() {
        // 10% of traffic, no primary errors: every error from the canary is strong evidence,
        // counted one look late (the next look shows whether it was a burst's edge).
        let mut s = new_state(1.0);
        update_full(&mut s, counts(100, 2), counts(900, 0), 0.01);
        assert_eq!(s.log_e_value, 0.0, "a look counts at the next one");
        update_full(&mut s, counts(100, 1), counts(900, 0), 0.01);
        assert!(!s.rejected, "2 errors: {}", s.log_e_value.exp());
        update_full(&mut s, counts(100, 0), counts(900, 0), 0.01);
        assert!(s.rejected, "3 errors: {}", s.log_e_value.exp());
        assert_eq!(
            s.canary,
            ArmTally {
                requests: 300,
                events: 3
            }
        );
    }

    const BENCH_PODS: Pods = Pods {
        canary: 1,
        primary: 2,
    };

    #[test]
    fn a_burst_on_the_canary_weighs_no_more_than_a_pod_can_explain() {
        // One canary pod beside two primary pods, 10% of the traffic: a 15-s burst at 10% errors
        // puts 12 errors in one look where the primary's two pods have 2. Counted as independent
        // requests that is overwhelming; as one pod's burst, at most 0.8 / (1/3) = 2.4.
        let mut s = new_state(1.0);
        let quiet = || (counts(120, 0), counts(1080, 2));
        let looks = [
            (counts(120, 4), counts(1080, 2)),
            (counts(120, 8), counts(1080, 2)),
        ];
        for (canary, primary) in looks.into_iter().chain(std::iter::repeat_n(quiet(), 4)) {
            update(&mut s, canary, primary, 0.01, 1.0, BENCH_PODS);
        }
        assert!(!s.rejected);
        assert!(
            s.log_e_value <= 2.4f64.ln() + 1e-9,
            "{}",
            s.log_e_value.exp()
        );
        // The uncapped evidence (promotion and the estimate read it) still sees the errors.
        let ratio = estimate(&s, 0.01).ratio;
        assert!(ratio >= 4.0, "{ratio}");
        // With one pod each the same burst is the canary's with probability 1/2: at most 1.6.
        let mut one_each = new_state(1.0);
        for (canary, primary) in looks.into_iter().chain(std::iter::repeat_n(quiet(), 4)) {
            update(&mut one_each, canary, primary, 0.01, 1.0, ONE_POD_EACH);
        }
        assert!(one_each.log_e_value <= 1.6f64.ln() + 1e-9);
    }

    #[test]
    fn a_failure_that_outlasts_a_burst_counts_in_full() {
        // The same 12 errors a look, look after look: once the canary has been loud in more looks
        // than one burst can touch (four), the looks count in full, one look late.
        let mut s = new_state(1.0);
        let mut rejected_at = None;
        for look in 1..=8 {
            update(
                &mut s,
                counts(120, 12),
                counts(1080, 2),
                0.01,
                1.0,
                BENCH_PODS,
            );
            if s.rejected && rejected_at.is_none() {
                rejected_at = Some(look);
            }
        }
        assert_eq!(rejected_at, Some(6), "{}", s.log_e_value);
    }

    #[test]
    fn a_status_from_before_the_cap_resumes_from_its_evidence() {
        let mut s = new_state(1.0);
        update_full(&mut s, counts(100, 2), counts(900, 1), 0.01);
        update_full(&mut s, counts(100, 0), counts(900, 1), 0.01);
        let mut old = s.clone();
        old.capped_log_likelihood.clear();
        old.pending_rise.clear();
        old.last_rise.clear();
        old.rise_before_last.clear();
        let json = serde_json::to_value(&old).unwrap();
        let mut old: SequentialState = serde_json::from_value(json).unwrap();
        update_full(&mut old, counts(100, 0), counts(900, 0), 0.01);
        // Everything counted before the upgrade is kept; the upgrade's look waits for the next.
        let before = s.log_likelihood.clone();
        for (capped, raw) in old.capped_log_likelihood.iter().zip(&before) {
            assert!((capped - raw).abs() < 1e-12);
        }
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
