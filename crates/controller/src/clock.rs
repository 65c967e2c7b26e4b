//! The one clock. The core takes `now` as an input; everything that reads the wall clock reads
//! it here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, with their fraction; 0 on a clock set before 1970.
pub fn unix_seconds_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whole seconds since the Unix epoch, as the status keeps time.
pub fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
