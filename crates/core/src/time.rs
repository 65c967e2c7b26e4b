//! The one time format: the status, the Events and every report write instants as RFC 3339 in
//! UTC with whole seconds (`2026-11-20T10:00:00Z`), as Kubernetes does. The core never reads a
//! clock: `now` is always an input.

/// `unix` seconds as RFC 3339; the bare number for an instant chrono cannot represent, so that
/// nothing is ever written empty.
pub fn rfc3339(unix: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| unix.to_string())
}

/// Unix seconds of an RFC 3339 instant (any offset); `None` when it is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_whole_seconds_in_utc() {
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(parse_rfc3339("2026-11-18T11:06:40Z"), Some(1_795_000_000));
        assert_eq!(
            parse_rfc3339("2026-11-18T12:06:40+01:00"),
            Some(1_795_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
    }
}
