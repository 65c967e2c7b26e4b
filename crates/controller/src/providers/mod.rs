//! Fetching observations: rendering MetricTemplates and running them against a provider.

pub mod collect;
mod credentials;
pub mod lexer;
pub mod prometheus;
pub mod template;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use credentials::{Credentials, CredentialsError, secret_text};
pub use prometheus::SetupError;
use sluice_core::api::{ProviderKind, ProviderSpec};

/// The provider a template's `spec.provider` asks for, at `address` (the spec's, or the
/// controller's default): one line per provider. The match is exhaustive, so a new
/// `ProviderKind` does not compile until it is built here.
pub fn connect(
    spec: &ProviderSpec,
    address: &str,
    credentials: &Credentials,
    timeout: Duration,
) -> Result<Arc<dyn Provider>, SetupError> {
    match spec.kind {
        ProviderKind::Prometheus => Ok(Arc::new(prometheus::PrometheusProvider::new(
            spec,
            address,
            credentials,
            timeout,
        )?)),
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One series of an instant query's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A metrics back end. One file per provider implements it (`prometheus.rs`), and `connect`
/// builds it from a template's `spec.provider`.
pub trait Provider: Send + Sync {
    /// Runs an instant query evaluated at `at` (Unix seconds) and returns every series.
    fn query<'a>(
        &'a self,
        query: &'a str,
        at: i64,
    ) -> BoxFuture<'a, Result<Vec<Sample>, QueryError>>;

    /// Where the provider is, for messages.
    fn address(&self) -> &str;
}

/// Why a query gave no usable number. Each case is distinct so that callers can tell a
/// configuration mistake (invalid query) from an outage (unreachable) from a lack of traffic
/// (empty result, NaN).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum QueryError {
    #[error("cannot reach Prometheus at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus at {url} did not answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error("Prometheus at {url} refused the query as invalid: {message}\n  query: {query}")]
    InvalidQuery {
        url: String,
        query: String,
        message: String,
    },
    #[error("Prometheus at {url} failed to run the query ({kind}): {message}\n  query: {query}")]
    Failed {
        url: String,
        query: String,
        kind: String,
        message: String,
    },
    #[error("Prometheus at {url} answered with something other than its API: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("the query returned no data (no series matched)\n  query: {query}")]
    Empty { query: String },
    #[error("the query returned NaN (typically 0/0: no requests in the window)\n  query: {query}")]
    NaN { query: String },
    #[error(
        "the query returned {count} series where one was expected; aggregate it, e.g. with sum()\n  query: {query}"
    )]
    SeveralSeries { query: String, count: usize },
    #[error(
        "the query returned series without an `le` label where histogram buckets were expected; group by le\n  query: {query}"
    )]
    NotAHistogram { query: String },
    /// Numbers no service could have produced: never judged, never clamped.
    #[error("impossible observation, held as no data: {source}\n  {}", queries.join("\n  "))]
    Impossible {
        source: sluice_core::analysis::validate::Impossible,
        /// The queries whose answers were combined, labelled (`canary requests: ...`).
        queries: Vec<String>,
    },
    /// An earlier query of this interval found the provider unreachable: the rest of the
    /// interval's queries to it are not sent, so an outage costs one timeout, not one per query.
    #[error("not queried: {first}")]
    Skipped { first: Box<QueryError> },
    /// A template that rendered when the Canary was loaded and not for this look's window.
    #[error(transparent)]
    Render(Box<template::RenderError>),
}

impl QueryError {
    /// True when the interval has no usable data for the metric: no traffic, no series, or
    /// numbers that cannot be real. The analysis holds on these; everything else is an outage
    /// or a mistake.
    pub fn is_no_data(&self) -> bool {
        match self {
            QueryError::Empty { .. } | QueryError::NaN { .. } | QueryError::Impossible { .. } => {
                true
            }
            QueryError::Skipped { first } => first.is_no_data(),
            _ => false,
        }
    }

    /// True when the provider could not be asked at all: nothing reached it, or nothing came
    /// back in time. An answer that came back, whatever its status or body, is not this.
    pub fn is_unreachable(&self) -> bool {
        match self {
            QueryError::Unreachable { .. } | QueryError::Timeout { .. } => true,
            QueryError::Skipped { first } => first.is_unreachable(),
            _ => false,
        }
    }
}

/// The one number a scalar query must return.
pub fn single_value(query: &str, samples: &[Sample]) -> Result<f64, QueryError> {
    match samples {
        [] => Err(QueryError::Empty {
            query: query.to_string(),
        }),
        [one] if one.value.is_nan() => Err(QueryError::NaN {
            query: query.to_string(),
        }),
        [one] => Ok(one.value),
        several => Err(QueryError::SeveralSeries {
            query: query.to_string(),
            count: several.len(),
        }),
    }
}

/// Histogram buckets from series labelled `le` (cumulative counts), sorted by bound, `+Inf` last.
pub fn buckets(query: &str, samples: &[Sample]) -> Result<Vec<(f64, f64)>, QueryError> {
    if samples.is_empty() {
        return Err(QueryError::Empty {
            query: query.to_string(),
        });
    }
    let mut buckets = Vec::with_capacity(samples.len());
    for sample in samples {
        let le = sample
            .labels
            .get("le")
            .and_then(|le| le.parse::<f64>().ok())
            .ok_or_else(|| QueryError::NotAHistogram {
                query: query.to_string(),
            })?;
        if sample.value.is_nan() {
            return Err(QueryError::NaN {
                query: query.to_string(),
            });
        }
        buckets.push((le, sample.value));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let duplicated = buckets.windows(2).any(|w| w[0].0 == w[1].0);
    let has_inf = buckets.last().is_some_and(|b| b.0 == f64::INFINITY);
    if duplicated || !has_inf {
        return Err(QueryError::NotAHistogram {
            query: query.to_string(),
        });
    }
    Ok(buckets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(le: Option<&str>, value: f64) -> Sample {
        Sample {
            labels: le
                .map(|le| ("le".to_string(), le.to_string()))
                .into_iter()
                .collect(),
            value,
        }
    }

    #[test]
    fn single_value_tells_the_cases_apart() {
        assert_eq!(single_value("q", &[sample(None, 2.0)]), Ok(2.0));
        assert!(matches!(
            single_value("q", &[]),
            Err(QueryError::Empty { .. })
        ));
        assert!(matches!(
            single_value("q", &[sample(None, f64::NAN)]),
            Err(QueryError::NaN { .. })
        ));
        let two = [sample(None, 1.0), sample(None, 2.0)];
        assert!(matches!(
            single_value("q", &two),
            Err(QueryError::SeveralSeries { count: 2, .. })
        ));
    }

    #[test]
    fn buckets_are_sorted_and_need_inf() {
        let got = buckets("q", &[sample(Some("+Inf"), 10.0), sample(Some("0.1"), 4.0)]).unwrap();
        assert_eq!(got, [(0.1, 4.0), (f64::INFINITY, 10.0)]);
        assert!(buckets("q", &[sample(Some("0.1"), 4.0)]).is_err());
        assert!(buckets("q", &[sample(None, 4.0)]).is_err());
    }
}
