//! Exact (Clopper–Pearson) confidence bounds on a binomial proportion, for reporting rates
//! measured over simulated releases.

use statrs::distribution::{Beta, ContinuousCDF};

/// The one-sided upper bound on the rate after `k` events in `n` trials, at `confidence`
/// (e.g. 0.95).
pub fn upper_bound(k: u64, n: u64, confidence: f64) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    Beta::new(k as f64 + 1.0, (n - k) as f64)
        .map(|b| b.inverse_cdf(confidence))
        .unwrap_or(1.0)
}

/// The one-sided lower bound on the rate after `k` events in `n` trials, at `confidence`.
pub fn lower_bound(k: u64, n: u64, confidence: f64) -> f64 {
    if n == 0 || k == 0 {
        return 0.0;
    }
    Beta::new(k as f64, (n - k) as f64 + 1.0)
        .map(|b| b.inverse_cdf(1.0 - confidence))
        .unwrap_or(0.0)
}

/// The two-sided interval at `confidence` (e.g. 0.95).
pub fn interval(k: u64, n: u64, confidence: f64) -> (f64, f64) {
    let tail = (1.0 + confidence) / 2.0;
    (lower_bound(k, n, tail), upper_bound(k, n, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_values() {
        // Zero events in n trials: the "rule of three" upper bound, 1 - 0.05^(1/n).
        let n = 2000;
        let exact = 1.0 - 0.05f64.powf(1.0 / n as f64);
        assert!((upper_bound(0, n, 0.95) - exact).abs() < 1e-9);
        // 10 in 100: the two-sided 95% interval is about [0.049, 0.176].
        let (lo, hi) = interval(10, 100, 0.95);
        assert!(
            (lo - 0.0490).abs() < 5e-4 && (hi - 0.1762).abs() < 5e-4,
            "{lo} {hi}"
        );
        assert_eq!(upper_bound(5, 5, 0.95), 1.0);
        assert_eq!(lower_bound(0, 5, 0.95), 0.0);
    }
}
