//! Latency as events: a request is slow when it lands above the bucket boundary closest to the
//! primary's chosen quantile. The boundary is chosen from the primary's buckets before any
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

/// The finite boundary whose primary tail share is closest (on a log scale) to `1 − quantile`.
pub fn choose(buckets: &[Bucket], requests: f64, quantile: f64) -> Option<SlowThreshold> {
    if requests <= 0.0 || buckets.is_empty() {
        return None;
    }
    let target = 1.0 - quantile;
    let tail = |b: &Bucket| ((requests - b.count) / requests).max(0.0);
    let with_tail: Vec<&Bucket> = buckets.iter().filter(|b| tail(b) > 0.0).collect();
    let chosen = if with_tail.is_empty() {
        // Every request fell at or below the first boundary: use it.
        buckets[0]
    } else {
        **with_tail
            .iter()
            .min_by(|a, b| {
                let da = (tail(a) / target).ln().abs();
                let db = (tail(b) / target).ln().abs();
                da.total_cmp(&db)
            })
            .unwrap_or(&with_tail[0])
    };
    Some(SlowThreshold {
        le: chosen.le,
        primary_tail: tail(&chosen),
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
    fn chooses_the_boundary_nearest_the_quantile() {
        let mut buckets = Vec::new();
        let mut requests = 0.0;
        // 1000 requests: 900 under 0.1, 985 under 0.25, 999 under 0.5.
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
        let t = choose(&buckets, requests, 0.999).unwrap();
        assert_eq!(t.le, 0.5);
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
