//! The one check every observation passes before the judge sees it.
//!
//! What reaches the judge must be something a real service could have produced in one
//! interval: finite, non-negative counts, failed requests within the requests, cumulative
//! histogram buckets that never fall and end in `+Inf`, and a primary that can serve as a
//! baseline. Counter resets are Prometheus's to handle (`increase()`); anything else impossible
//! is refused here, by name and with its value, so the metric holds the release (no data)
//! instead of being clamped into a number that may pass.

use super::{Observed, RequestCounts};

/// More than any service serves in one interval (a trillion requests: 16 billion a second over
/// a minute). Above it a count is a query summing the wrong thing, and the cumulative tallies
/// (u64, over hundreds of intervals) would lose their meaning or wrap.
pub const MAX_COUNT: f64 = 1e12;

/// Relative slack for counts that two queries compute separately: `increase()` extrapolates in
/// floating point, so errors may exceed requests by a rounding error, never more.
const SLACK: f64 = 1e-9;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Impossible {
    #[error("{what} is {value}, not a finite number; the query divides by zero or overflows")]
    NotFinite { what: String, value: f64 },
    #[error(
        "{what} is {value}, below zero; a count cannot be negative (wrap counters in increase(), which handles resets)"
    )]
    Negative { what: String, value: f64 },
    #[error(
        "{what} is {value:e}, above {MAX_COUNT:e}, more than any service serves in one interval; the query sums something else (check its labels)"
    )]
    TooLarge { what: String, value: f64 },
    #[error(
        "the {arm}'s failed requests ({errors}) exceed its requests ({requests}); the two templates count different requests (use the same selector in both)"
    )]
    EventsAboveRequests {
        arm: &'static str,
        errors: f64,
        requests: f64,
    },
    #[error(
        "the {arm}'s histogram is not cumulative: bucket le={upper} counts {upper_count}, fewer than le={lower} with {lower_count} (sum the buckets by le only, over the same series)"
    )]
    NotCumulative {
        arm: &'static str,
        lower: f64,
        lower_count: f64,
        upper: f64,
        upper_count: f64,
    },
    #[error(
        "the {arm}'s histogram has no +Inf bucket, or a bucket bound that is not a number; the +Inf bucket is the request count"
    )]
    NoInfBucket { arm: &'static str },
    #[error(
        "every request of the primary failed ({errors} of {requests}); against such a baseline any canary looks good, so the comparison waits for a working primary"
    )]
    PrimaryAllFailed { errors: f64, requests: f64 },
    #[error(
        "every request of the primary ({count}) is slower than its largest bucket bound {le}; against such a baseline any canary looks fast, so the comparison waits"
    )]
    PrimaryAllSlow { count: f64, le: f64 },
}

/// Checks an observation. `Ok` means the judge may use it as it is.
pub fn observation(observed: &Observed) -> Result<(), Impossible> {
    match observed {
        Observed::Value(value) => finite("the value", *value),
        Observed::Counts { canary, primary } => {
            counts("canary", canary)?;
            counts("primary", primary)?;
            if primary.requests > 0.0 && primary.errors >= primary.requests {
                return Err(Impossible::PrimaryAllFailed {
                    errors: primary.errors,
                    requests: primary.requests,
                });
            }
            Ok(())
        }
        Observed::Histograms { canary, primary } => {
            histogram("canary", canary)?;
            histogram("primary", primary)?;
            let finite_buckets: Vec<&(f64, f64)> =
                primary.iter().filter(|(le, _)| le.is_finite()).collect();
            let total = primary.last().map_or(0.0, |b| b.1);
            if let Some(&&(le, _)) = finite_buckets.last()
                && total > 0.0
                && finite_buckets.iter().all(|(_, count)| *count == 0.0)
            {
                return Err(Impossible::PrimaryAllSlow { count: total, le });
            }
            Ok(())
        }
    }
}

fn finite(what: &str, value: f64) -> Result<(), Impossible> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Impossible::NotFinite {
            what: what.to_string(),
            value,
        })
    }
}

fn count(what: String, value: f64) -> Result<(), Impossible> {
    finite(&what, value)?;
    if value < 0.0 {
        return Err(Impossible::Negative { what, value });
    }
    if value > MAX_COUNT {
        return Err(Impossible::TooLarge { what, value });
    }
    Ok(())
}

fn counts(arm: &'static str, c: &RequestCounts) -> Result<(), Impossible> {
    count(format!("the {arm}'s request count"), c.requests)?;
    count(format!("the {arm}'s failed-request count"), c.errors)?;
    if c.errors > c.requests * (1.0 + SLACK) + SLACK {
        return Err(Impossible::EventsAboveRequests {
            arm,
            errors: c.errors,
            requests: c.requests,
        });
    }
    Ok(())
}

fn histogram(arm: &'static str, buckets: &[(f64, f64)]) -> Result<(), Impossible> {
    let ends_in_inf = buckets.last().is_some_and(|b| b.0 == f64::INFINITY);
    if !ends_in_inf || buckets.iter().any(|(le, _)| le.is_nan()) {
        return Err(Impossible::NoInfBucket { arm });
    }
    for &(le, value) in buckets {
        count(format!("the {arm}'s bucket le={le}"), value)?;
    }
    for pair in buckets.windows(2) {
        let [(lower, lower_count), (upper, upper_count)] = [pair[0], pair[1]];
        if upper_count < lower_count * (1.0 - SLACK) - SLACK {
            return Err(Impossible::NotCumulative {
                arm,
                lower,
                lower_count,
                upper,
                upper_count,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_of(canary: (f64, f64), primary: (f64, f64)) -> Observed {
        let c = |(requests, errors)| RequestCounts { requests, errors };
        Observed::Counts {
            canary: c(canary),
            primary: c(primary),
        }
    }

    fn histograms(canary: &[(f64, f64)], primary: &[(f64, f64)]) -> Observed {
        Observed::Histograms {
            canary: canary.to_vec(),
            primary: primary.to_vec(),
        }
    }

    const INF: f64 = f64::INFINITY;

    #[test]
    fn real_observations_pass() {
        assert_eq!(observation(&Observed::Value(-3.5)), Ok(()));
        assert_eq!(observation(&counts_of((100.0, 3.0), (900.0, 1.0))), Ok(()));
        assert_eq!(observation(&counts_of((0.0, 0.0), (0.0, 0.0))), Ok(()));
        // increase() extrapolates: fractional counts, errors a rounding error above requests.
        assert_eq!(
            observation(&counts_of((10.4, 10.400000000001), (50.2, 0.3))),
            Ok(())
        );
        let h = [(0.1, 40.0), (0.5, 90.0), (INF, 100.0)];
        assert_eq!(observation(&histograms(&h, &h)), Ok(()));
    }

    #[test]
    fn each_impossible_value_is_named() {
        let cases: Vec<(Observed, &str)> = vec![
            (Observed::Value(f64::INFINITY), "the value is inf"),
            (Observed::Value(f64::NEG_INFINITY), "the value is -inf"),
            (Observed::Value(f64::NAN), "the value is NaN"),
            (
                counts_of((-1.0, 0.0), (10.0, 0.0)),
                "canary's request count is -1",
            ),
            (
                counts_of((10.0, -2.0), (10.0, 0.0)),
                "canary's failed-request count is -2",
            ),
            (
                counts_of((10.0, 0.0), (f64::NAN, 0.0)),
                "primary's request count is NaN",
            ),
            (
                counts_of((10.0, 11.0), (10.0, 0.0)),
                "failed requests (11) exceed its requests (10)",
            ),
            (counts_of((2e19, 0.0), (10.0, 0.0)), "above 1e12"),
            (
                counts_of((10.0, 0.0), (10.0, 10.0)),
                "every request of the primary failed",
            ),
            (
                histograms(&[(0.1, 50.0), (0.5, 20.0), (INF, 60.0)], &[(INF, 1.0)]),
                "bucket le=0.5 counts 20, fewer than le=0.1 with 50",
            ),
            (
                histograms(&[(0.1, 5.0), (INF, 4.0)], &[(INF, 1.0)]),
                "le=inf counts 4, fewer than le=0.1 with 5",
            ),
            (histograms(&[(0.1, 5.0)], &[(INF, 1.0)]), "no +Inf bucket"),
            (
                histograms(&[(INF, 1.0)], &[(0.1, 0.0), (0.5, 0.0), (INF, 7.0)]),
                "every request of the primary (7) is slower than its largest bucket bound 0.5",
            ),
            (
                histograms(&[(0.1, -1.0), (INF, 1.0)], &[(INF, 1.0)]),
                "canary's bucket le=0.1 is -1",
            ),
        ];
        for (observed, expected) in cases {
            let message = observation(&observed)
                .expect_err(&format!("{observed:?} passed"))
                .to_string();
            assert!(message.contains(expected), "{observed:?}: {message}");
        }
    }
}
