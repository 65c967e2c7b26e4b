//! Latency as events: a request is slow when it lands above a bucket boundary near the primary's
//! chosen quantile. The boundary is chosen from the primary's buckets before any
//! request is counted, so the test sees it as fixed in advance and stays valid; the canary and
//! primary are then compared on how often they are slow, with the same sequential test as errors.

use crate::api::{Bucket, SlowThreshold};

use super::sequential::Counts;

/// Primary requests needed before the boundary is chosen: enough that its tail share is seen.
pub const SELECTION_REQUESTS: f64 = 100.0;

/// Buckets as queried: (le, cumulative count), sorted, `+Inf` last.
pub type Histogram = [(f64, f64)];

/// Adds `primary` to the buckets gathered for choosing the boundary.
pub fn gather(buckets: &mut Vec<Bucket>, requests: &mut f64, primary: &Histogram) {
    let Some(&(_, total)) = primary.last() else {
        return;
    };
    *requests += total;
    for &(le, count) in primary.iter().filter(|(le, _)| le.is_finite()) {
        match buckets.iter_mut().find(|b| b.le == le) {
            Some(bucket) => bucket.count += count,
            None => buckets.push(Bucket { le, count }),
        }
    }
    buckets.sort_by(|a, b| a.le.total_cmp(&b.le));
}

/// How far above the quantile a boundary may sit and still be used: its primary tail share at
/// least `(1 − quantile) / ABOVE_RATIO`. With Prometheus' default buckets (about 2.5× apart) the
/// first bound above a p99 often sits near p99.8.
pub const ABOVE_RATIO: f64 = 10.0;

/// How far below the quantile the nearest boundary may sit: its tail share at most
/// `BELOW_RATIO × (1 − quantile)` (p98 for a p99).
pub const BELOW_RATIO: f64 = 2.0;

/// The boundary to count slow requests at: the bound whose primary tail share is closest to
/// `1 − quantile` on a log scale, unless that bound sits well below the quantile (tail share
/// above `BELOW_RATIO × (1 − quantile)`) and a bound above it still has a usable tail (at least
/// `(1 − quantile) / ABOVE_RATIO`): then the lowest such bound above.
///
/// Why: a regression confined to the tail (the canary's slowest 1% slower, everything below
/// unchanged) moves no request across a bound below it. With coarse buckets the nearest bound to
/// a p99 can sit at p92, where such a regression is invisible however many requests are counted;
/// a bound at p99.8 sees it, with fewer events per request. With fine buckets the nearest bound
/// is kept: it counts more events, and the benchmark's tail regressions (stretched from p90 up)
/// are caught sooner there (S5: ×2.8 bad requests against the oracle's, ×3.4 at the bound above).
pub fn choose(buckets: &[Bucket], requests: f64, quantile: f64) -> Option<SlowThreshold> {
    if requests <= 0.0 || buckets.is_empty() {
        return None;
    }
    let target = 1.0 - quantile;
    let tail = |b: &Bucket| ((requests - b.count) / requests).max(0.0);
    let with_tail: Vec<&Bucket> = buckets.iter().filter(|b| tail(b) > 0.0).collect();
    let nearest = with_tail.iter().min_by(|a, b| {
        let da = (tail(a) / target).ln().abs();
        let db = (tail(b) / target).ln().abs();
        da.total_cmp(&db)
    });
    let above = with_tail
        .iter()
        .find(|b| tail(b) <= target && tail(b) >= target / ABOVE_RATIO);
    let chosen = match (nearest, above) {
        // Every request fell at or below the first boundary: use it.
        (None, _) => &buckets[0],
        (Some(n), Some(a)) if tail(n) > BELOW_RATIO * target => *a,
        (Some(n), _) => *n,
    };
    Some(SlowThreshold {
        le: chosen.le,
        primary_tail: tail(chosen),
    })
}

/// Requests and slow requests of one arm, or why they cannot be read.
pub fn slow_counts(histogram: &Histogram, le: f64) -> Result<Counts, String> {
    let total = histogram.last().map(|b| b.1).unwrap_or(0.0);
    let at_or_below = histogram
        .iter()
        .find(|b| b.0 == le)
        .map(|b| b.1)
        .ok_or_else(|| format!("has no bucket le={le}; both arms need the same buckets"))?;
    let requests = total.round().max(0.0) as u64;
    let slow = (total - at_or_below).round().max(0.0) as u64;
    Ok(Counts {
        requests,
        events: slow.min(requests),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_the_nearest_boundary_unless_it_is_far_below() {
        let mut buckets = Vec::new();
        let mut requests = 0.0;
        // 1000 requests: 900 under 0.1, 985 under 0.25, 999 under 0.5. For p99, 0.25 (tail
        // 1.5%) is the nearest and within p98: kept.
        let h = [
            (0.1, 900.0),
            (0.25, 985.0),
            (0.5, 999.0),
            (f64::INFINITY, 1000.0),
        ];
        gather(&mut buckets, &mut requests, &h);
        let t = choose(&buckets, requests, 0.99).unwrap();
        assert_eq!(t.le, 0.25);
        assert!((t.primary_tail - 0.015).abs() < 1e-12);
        assert_eq!(choose(&buckets, requests, 0.999).unwrap().le, 0.5);
        // For p99.5 the nearest (0.25, 1.5%) is three times the target: the bound above it.
        assert_eq!(choose(&buckets, requests, 0.995).unwrap().le, 0.5);
        // Coarse buckets: the nearest to p99 sits at p92 (the bound a nearest-only rule takes),
        // the next bound at p99.88.
        let coarse = [
            Bucket {
                le: 0.25,
                count: 9200.0,
            },
            Bucket {
                le: 0.5,
                count: 9988.0,
            },
        ];
        assert_eq!(choose(&coarse, 10_000.0, 0.99).unwrap().le, 0.5);
    }

    #[test]
    fn keeps_the_nearest_when_nothing_above_has_a_usable_tail() {
        // 0.5 leaves 0.05% above it, a twentieth of p99's 1%: too rare; 0.25 (p92) is kept.
        let buckets = [
            Bucket {
                le: 0.1,
                count: 9000.0,
            },
            Bucket {
                le: 0.25,
                count: 9200.0,
            },
            Bucket {
                le: 0.5,
                count: 9995.0,
            },
        ];
        let t = choose(&buckets, 10_000.0, 0.99).unwrap();
        assert_eq!(t.le, 0.25);
        // Every request at or below the first bound.
        let all = [Bucket {
            le: 0.1,
            count: 50.0,
        }];
        assert_eq!(choose(&all, 50.0, 0.99).unwrap().le, 0.1);
    }

    /// The reason for the rule: a regression only beyond the primary's p99 moves no request
    /// across a bound below it, so that bound cannot see it; the chosen one does.
    #[test]
    fn a_tail_only_regression_is_visible_at_the_chosen_boundary() {
        let primary = [
            (0.1, 9000.0),
            (0.25, 9200.0),
            (0.5, 9988.0),
            (f64::INFINITY, 10_000.0),
        ];
        // The canary: the same up to p99, its slowest 1% twice as slow.
        let canary = [
            (0.1, 9000.0),
            (0.25, 9200.0),
            (0.5, 9950.0),
            (f64::INFINITY, 10_000.0),
        ];
        let mut buckets = Vec::new();
        let mut requests = 0.0;
        gather(&mut buckets, &mut requests, &primary);
        let le = choose(&buckets, requests, 0.99).unwrap().le;
        assert_eq!(le, 0.5);
        let slow = |h: &Histogram| slow_counts(h, le).unwrap().events;
        assert_eq!((slow(&canary), slow(&primary)), (50, 12));
        // The bound nearest on a log scale (0.25, p92) sees no difference at all.
        assert_eq!(slow_counts(&canary, 0.25), slow_counts(&primary, 0.25));
    }

    #[test]
    fn gathers_over_intervals() {
        let mut buckets = Vec::new();
        let mut requests = 0.0;
        gather(
            &mut buckets,
            &mut requests,
            &[(0.1, 40.0), (f64::INFINITY, 50.0)],
        );
        gather(
            &mut buckets,
            &mut requests,
            &[(0.1, 45.0), (f64::INFINITY, 50.0)],
        );
        assert_eq!(requests, 100.0);
        assert_eq!(
            buckets,
            [Bucket {
                le: 0.1,
                count: 85.0
            }]
        );
    }

    #[test]
    fn counts_slow_requests_and_names_a_missing_bucket() {
        let h = [(0.1, 90.4), (0.25, 97.6), (f64::INFINITY, 100.2)];
        assert_eq!(
            slow_counts(&h, 0.25),
            Ok(Counts {
                requests: 100,
                events: 3
            })
        );
        assert!(slow_counts(&h, 0.3).unwrap_err().contains("le=0.3"));
    }
}
