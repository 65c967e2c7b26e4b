//! The demo workload (`sluice demo-app`): an HTTP service whose error rate and latency are set on
//! the command line, so that a "bad" release is a flag away. It exposes the application metrics
//! convention the default MetricTemplates query (ARCHITECTURE.md, "Names and conventions"): a
//! counter `http_requests_total{status}` and a histogram `http_request_duration_seconds`. It
//! does not add `namespace` or `pod` labels: Prometheus's scrape configuration attaches them as
//! target labels, as Kubernetes service discovery does, so the series look the same as in a
//! cluster.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use rand::RngExt;
use rand_distr::{Distribution, LogNormal};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the latency histogram. Finer than the client libraries' defaults
/// around the demo's 50 ms median, so that a doubling of latency moves whole buckets and the
/// latency templates can tell the arms apart within a few intervals.
pub const DURATION_BUCKETS: [f64; 20] = [
    0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
    0.75, 1.0, 2.5, 5.0,
];

/// No answer waits longer than this, whatever the lognormal draws: a heavy tail would otherwise
/// hold connections for minutes and outlive every client's timeout.
pub const MAX_LATENCY: Duration = Duration::from_secs(10);

/// The OpenMetrics text format that `prometheus_client` writes; Prometheus picks its parser by
/// this content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How the app behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct AppConfig {
    /// Reported in every answer's body, so a client can tell which release served it.
    pub version: String,
    /// Fraction of `GET /` answered 500, in [0, 1].
    pub error_rate: f64,
    /// Median of the lognormal latency, in milliseconds.
    pub latency_median_ms: f64,
    /// Shape (standard deviation of the log) of the latency; 0 gives a constant latency.
    pub latency_sigma: f64,
    /// Multiplies every latency: a slow release is `--latency-factor 2`.
    pub latency_factor: f64,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            version: "v1".into(),
            error_rate: 0.001,
            latency_median_ms: 50.0,
            latency_sigma: 0.5,
            latency_factor: 1.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("demo app setting {field} {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("the demo app's server failed: {0}")]
    Serve(std::io::Error),
}

impl AppConfig {
    pub fn validate(&self) -> Result<(), AppError> {
        let invalid = |field, reason: &str| {
            Err(AppError::Invalid {
                field,
                reason: reason.into(),
            })
        };
        if !(0.0..=1.0).contains(&self.error_rate) {
            return invalid("error-rate", "must be between 0 and 1");
        }
        if !self.latency_median_ms.is_finite() || self.latency_median_ms < 0.0 {
            return invalid("latency-median-ms", "must be a finite number >= 0");
        }
        if !self.latency_sigma.is_finite() || self.latency_sigma < 0.0 {
            return invalid("latency-sigma", "must be a finite number >= 0");
        }
        if !self.latency_factor.is_finite() || self.latency_factor < 0.0 {
            return invalid("latency-factor", "must be a finite number >= 0");
        }
        Ok(())
    }

    /// The latency distribution in seconds, before the factor; `None` when every answer is
    /// immediate (a median of 0 has no lognormal).
    fn latency(&self) -> Result<Option<LogNormal<f64>>, AppError> {
        if self.latency_median_ms == 0.0 || self.latency_factor == 0.0 {
            return Ok(None);
        }
        // The median of a lognormal is exp(mu).
        let mu = (self.latency_median_ms / 1000.0).ln();
        LogNormal::new(mu, self.latency_sigma)
            .map(Some)
            .map_err(|e| AppError::Invalid {
                field: "latency-sigma",
                reason: e.to_string(),
            })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

/// The app's metrics. The two status series exist from the start, at 0: a series that appears
/// only with its first error would hide that first increase from `rate()`/`increase()`, and the
/// analysis would undercount errors early in a release.
struct AppMetrics {
    registry: Registry,
    ok: Counter,
    failed: Counter,
    duration: Histogram,
}

impl AppMetrics {
    fn new() -> Self {
        let requests = Family::<StatusLabel, Counter>::default();
        let ok = requests.get_or_create(&StatusLabel { status: 200 }).clone();
        let failed = requests.get_or_create(&StatusLabel { status: 500 }).clone();
        let duration = Histogram::new(DURATION_BUCKETS);
        let mut registry = Registry::default();
        // prometheus_client appends `_total` to counters and the unit to the histogram's name.
        registry.register(
            "http_requests",
            "Requests to / answered, by HTTP status",
            requests,
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer requests to /",
            Unit::Seconds,
            duration.clone(),
        );
        Self {
            registry,
            ok,
            failed,
            duration,
        }
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

struct App {
    version: String,
    error_rate: f64,
    latency: Option<LogNormal<f64>>,
    latency_factor: f64,
    metrics: AppMetrics,
}

impl App {
    /// This request's latency and whether it fails. The thread-local generator is not `Send`,
    /// so it is used here, away from any `.await`.
    fn draw(&self) -> (Duration, bool) {
        let mut rng = rand::rng();
        let fails = rng.random::<f64>() < self.error_rate;
        let delay = match &self.latency {
            None => Duration::ZERO,
            Some(latency) => {
                let seconds = latency.sample(&mut rng) * self.latency_factor;
                Duration::try_from_secs_f64(seconds)
                    .unwrap_or(MAX_LATENCY)
                    .min(MAX_LATENCY)
            }
        };
        (delay, fails)
    }
}

/// Serves the app on `listener` until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    config: AppConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    config.validate()?;
    let app = Arc::new(App {
        latency: config.latency()?,
        version: config.version,
        error_rate: config.error_rate,
        latency_factor: config.latency_factor,
        metrics: AppMetrics::new(),
    });
    let routes = axum::Router::new()
        .route("/", get(answer))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(app);
    axum::serve(listener, routes)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(AppError::Serve)
}

/// What `sluice demo-app` does: binds `listen`, tells `announce` the address it got (port 0 picks
/// one), and serves until Ctrl-C or SIGTERM.
pub async fn run(
    config: AppConfig,
    listen: SocketAddr,
    announce: impl FnOnce(SocketAddr),
) -> Result<(), AppError> {
    // Refuse bad settings before taking the port, so a typo does not look like a started app.
    config.validate()?;
    let bind = |source| AppError::Bind {
        address: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind)?;
    let address = listener.local_addr().map_err(bind)?;
    tracing::info!(%address, version = %config.version, "demo app listening");
    announce(address);
    serve(config, listener, super::shutdown_signal()).await
}

async fn answer(State(app): State<Arc<App>>) -> Response {
    let started = Instant::now();
    let (delay, fails) = app.draw();
    tokio::time::sleep(delay).await;
    let (status, body) = if fails {
        app.metrics.failed.inc();
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"version": app.version, "error": "injected failure"}),
        )
    } else {
        app.metrics.ok.inc();
        (StatusCode::OK, serde_json::json!({"version": app.version}))
    };
    // Measured rather than the drawn delay, so scheduling delays show as they would in a real app.
    app.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    match app.metrics.encode() {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode the demo app's metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_settings_out_of_range() {
        for config in [
            AppConfig {
                error_rate: 1.5,
                ..AppConfig::default()
            },
            AppConfig {
                error_rate: f64::NAN,
                ..AppConfig::default()
            },
            AppConfig {
                latency_sigma: -1.0,
                ..AppConfig::default()
            },
            AppConfig {
                latency_median_ms: f64::INFINITY,
                ..AppConfig::default()
            },
            AppConfig {
                latency_factor: -2.0,
                ..AppConfig::default()
            },
        ] {
            assert!(config.validate().is_err(), "{config:?}");
        }
        assert!(AppConfig::default().validate().is_ok());
    }

    #[test]
    fn latency_has_the_median_asked_for_and_is_capped() {
        let config = AppConfig {
            latency_median_ms: 50.0,
            latency_sigma: 0.5,
            latency_factor: 2.0,
            ..AppConfig::default()
        };
        let app = App {
            version: "v1".into(),
            error_rate: 0.0,
            latency: config.latency().unwrap(),
            latency_factor: config.latency_factor,
            metrics: AppMetrics::new(),
        };
        let mut delays: Vec<Duration> = (0..4001).map(|_| app.draw().0).collect();
        delays.sort();
        let median = delays[2000].as_secs_f64();
        assert!((0.09..0.11).contains(&median), "median {median}");
        assert!(delays.iter().all(|d| *d <= MAX_LATENCY));

        let constant = AppConfig {
            latency_median_ms: 0.0,
            ..AppConfig::default()
        };
        assert!(constant.latency().unwrap().is_none());
    }

    #[test]
    fn both_status_series_exist_before_any_request() {
        let text = AppMetrics::new().encode().unwrap();
        assert!(
            text.contains("http_requests_total{status=\"200\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("http_requests_total{status=\"500\"} 0"),
            "{text}"
        );
        assert!(text.contains("http_request_duration_seconds_bucket{le=\"0.005\"} 0"));
        assert!(text.ends_with("# EOF\n"));
    }
}
