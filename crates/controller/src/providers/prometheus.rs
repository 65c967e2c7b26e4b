//! The Prometheus provider, over its HTTP API (prometheus-http-query).

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_http_query::response::Data;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use super::{BoxFuture, Credentials, Provider, QueryError, Sample};
use crate::error_chain::error_chain;
use sluice_core::api::ProviderSpec;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("spec.provider.address {0:?} is not a URL: {1}")]
    Address(String, String),
    #[error("spec.provider.headers: {0:?} is not a valid HTTP header: {1}")]
    Header(String, String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

pub struct PrometheusProvider {
    client: prometheus_http_query::Client,
    url: String,
    timeout: Duration,
}

impl PrometheusProvider {
    /// A client for `address` (which overrides the spec's address when given).
    pub fn new(
        spec: &ProviderSpec,
        address: &str,
        credentials: &Credentials,
        timeout: Duration,
    ) -> Result<Self, SetupError> {
        let mut headers = HeaderMap::new();
        for (name, values) in &spec.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| SetupError::Header(name.clone(), e.to_string()))?;
            for value in values {
                let value = HeaderValue::from_str(value)
                    .map_err(|e| SetupError::Header(name.clone(), e.to_string()))?;
                headers.append(header.clone(), value);
            }
        }
        if let Some(value) = authorization(credentials) {
            let mut value = HeaderValue::from_str(&value)
                .map_err(|e| SetupError::Header("Authorization".into(), e.to_string()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .tls_danger_accept_invalid_certs(spec.insecure_skip_verify)
            .build()
            .map_err(|e| SetupError::Client(e.to_string()))?;
        let client = prometheus_http_query::Client::from(http, address)
            .map_err(|e| SetupError::Address(address.to_string(), e.to_string()))?;
        Ok(Self {
            client,
            url: address.to_string(),
            timeout,
        })
    }

    async fn instant(&self, query: &str, at: i64) -> Result<Vec<Sample>, QueryError> {
        let timeout_ms = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        let result = self
            .client
            .query(query)
            .at(at)
            .timeout(timeout_ms)
            .get()
            .await
            .map_err(|e| self.classify(query, e))?;
        Ok(match result.data() {
            Data::Vector(series) => series
                .iter()
                .map(|s| Sample {
                    labels: s
                        .metric()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    value: s.sample().value(),
                })
                .collect(),
            Data::Scalar(sample) => vec![Sample {
                labels: BTreeMap::new(),
                value: sample.value(),
            }],
            Data::Matrix(_) => {
                return Err(QueryError::InvalidQuery {
                    url: self.url.clone(),
                    query: query.to_string(),
                    message: "it returns a range vector; wrap it in a function such as increase() or rate()".into(),
                });
            }
        })
    }

    fn classify(&self, query: &str, error: prometheus_http_query::Error) -> QueryError {
        use prometheus_http_query::Error;
        let url = self.url.clone();
        match error {
            Error::Prometheus(e) if e.is_bad_data() => QueryError::InvalidQuery {
                url,
                query: query.to_string(),
                message: e.message().to_string(),
            },
            Error::Prometheus(e) if e.is_timeout() => QueryError::Timeout {
                url,
                seconds: self.timeout.as_secs(),
            },
            Error::Prometheus(e) => QueryError::Failed {
                url,
                query: query.to_string(),
                kind: e.error_type().to_string(),
                message: e.message().to_string(),
            },
            Error::Client(e) => match e.inner() {
                Some(inner) if inner.is_timeout() => QueryError::Timeout {
                    url,
                    seconds: self.timeout.as_secs(),
                },
                // An answer with an error status and a body that is not the API's JSON (a
                // proxy's 401 page, a 429 or 503 in text): Prometheus was reached and refused.
                Some(inner) if inner.status().is_some() => {
                    let status = inner.status().map_or(0, |s| s.as_u16());
                    QueryError::Failed {
                        url,
                        query: query.to_string(),
                        kind: format!("HTTP {status}"),
                        message: status_hint(status).to_string(),
                    }
                }
                Some(inner) if inner.is_connect() || inner.is_request() => {
                    QueryError::Unreachable {
                        url,
                        reason: error_chain(inner),
                    }
                }
                Some(inner) => QueryError::BadResponse {
                    url,
                    reason: format!("{e}: {}", error_chain(inner)),
                },
                None => QueryError::BadResponse {
                    url,
                    reason: format!(
                        "{e} (a 2xx answer that is not JSON: is this the Prometheus API's base URL?)"
                    ),
                },
            },
            other => QueryError::BadResponse {
                url,
                reason: other.to_string(),
            },
        }
    }
}

/// What to check for an HTTP status that came without the API's JSON error.
fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => {
            "the server refused the credentials; check spec.provider.secretRef (token, or username and password) and headers"
        }
        404 => "no Prometheus API at this path; set the base URL, without /api/v1",
        429 => "the server is rate-limiting queries; query less often or raise its limit",
        500..=599 => "the server failed; check its logs, or a proxy in front of it",
        _ => "the answer was not the Prometheus API's JSON",
    }
}

impl Provider for PrometheusProvider {
    fn query<'a>(
        &'a self,
        query: &'a str,
        at: i64,
    ) -> BoxFuture<'a, Result<Vec<Sample>, QueryError>> {
        Box::pin(self.instant(query, at))
    }

    fn address(&self) -> &str {
        &self.url
    }
}

fn authorization(credentials: &Credentials) -> Option<String> {
    use base64::Engine as _;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    match credentials {
        Credentials::None => None,
        Credentials::Basic { username, password } => Some(format!(
            "Basic {}",
            encode(format!("{username}:{password}").as_bytes())
        )),
        Credentials::Bearer(token) => Some(format!("Bearer {token}")),
    }
}
