//! Durations written the way Flagger and Go write them: `30s`, `1m`, `1h30m`, `500ms`.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration in Go's `time.ParseDuration` syntax (units `ms`, `s`, `m`, `h`), as Flagger accepts
/// for `analysis.interval`. It renders back in PromQL's syntax, which is how templates see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(Duration);

impl GoDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// The shortest PromQL range literal for this duration (`1m`, `90s`, `1500ms`).
    pub fn promql(self) -> String {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(3_600_000) {
            format!("{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            format!("{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.promql())
    }
}

/// Why a duration string was refused; the message is shown after the field's name.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid duration {input:?}: {reason} (write it like 30s, 1m or 1h30m)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl std::str::FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| DurationError {
            input: input.to_string(),
            reason,
        };
        let mut rest = input.trim();
        if rest.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut total_ms: u128 = 0;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(fail("expected a number"));
            }
            let value: u128 = rest[..digits]
                .parse()
                .map_err(|_| fail("number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "" => return Err(fail("a number needs a unit (ms, s, m or h)")),
                _ => return Err(fail("unknown unit; use ms, s, m or h")),
            };
            rest = &rest[unit_len..];
            total_ms = total_ms
                .checked_add(value * scale)
                .ok_or_else(|| fail("too large"))?;
        }
        if total_ms == 0 {
            return Err(fail("it must be longer than zero"));
        }
        let ms = u64::try_from(total_ms).map_err(|_| fail("too large"))?;
        Ok(Self(Duration::from_millis(ms)))
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.promql())
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h))+$",
            "description": "A duration such as 30s, 1m or 1h30m."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("30s", 30_000),
            ("1m", 60_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
        ];
        for (text, ms) in cases {
            let d: GoDuration = text.parse().unwrap();
            assert_eq!(d.as_duration().as_millis(), ms, "{text}");
        }
    }

    #[test]
    fn renders_promql_ranges() {
        let cases = [
            ("60s", "1m"),
            ("90s", "90s"),
            ("1h", "1h"),
            ("1500ms", "1500ms"),
        ];
        for (text, promql) in cases {
            assert_eq!(text.parse::<GoDuration>().unwrap().promql(), promql);
        }
    }

    #[test]
    fn refuses_bad_durations() {
        for text in ["", "1", "m", "1d", "0s", "1m x", "-1m"] {
            assert!(text.parse::<GoDuration>().is_err(), "{text:?} was accepted");
        }
    }
}
