//! Steady traffic for the demo: `GET /` at a fixed rate, open loop. Requests leave on schedule
//! whether or not earlier ones have answered, as independent users would; a closed loop would
//! slow down exactly when the canary gets slow and hide part of the damage from the analysis.
//! Concurrency is capped: a request whose slot is not free is skipped and counted, not queued.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Requests allowed in flight at once by default.
pub const MAX_IN_FLIGHT: usize = 200;
/// How long one request may take, answer body included, before it counts as timed out.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Rates above this are lowered to it: more would measure this machine, not the release.
pub const MAX_RATE: f64 = 5_000.0;
/// Durations above this are shortened to it, so a mistyped duration cannot run for days.
pub const MAX_DURATION: Duration = Duration::from_secs(3_600);
/// Answer bodies are read to keep connections reusable; the demo app's are a few bytes.
const MAX_BODY: usize = 64 * 1024;

/// What to send.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub rate_per_second: f64,
    pub duration: Duration,
    pub max_in_flight: usize,
    pub timeout: Duration,
    /// Sent with every request, e.g. `x-canary: insider` for A/B traffic.
    pub headers: HeaderMap,
}

impl LoadPlan {
    pub fn new(rate_per_second: f64, duration: Duration) -> Self {
        Self {
            rate_per_second,
            duration,
            max_in_flight: MAX_IN_FLIGHT,
            timeout: REQUEST_TIMEOUT,
            headers: HeaderMap::new(),
        }
    }

    /// How many requests the plan schedules, after the caps.
    pub fn planned(&self) -> u64 {
        let rate = self.rate();
        let seconds = self.duration.min(MAX_DURATION).as_secs_f64();
        // The epsilon keeps 0.1 rps x 30 s at 3 requests despite floating-point rounding.
        (rate * seconds + 1e-9).floor() as u64
    }

    fn rate(&self) -> f64 {
        if self.rate_per_second.is_nan() {
            return 0.0;
        }
        self.rate_per_second.clamp(0.0, MAX_RATE)
    }
}

/// What happened to the requests. `sent` = `ok` + `server_errors` + `other_status` + `failed` +
/// `timed_out`; `sent` + `skipped` = the requests scheduled before the end or the stop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub sent: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Answered 5xx.
    pub server_errors: u64,
    /// Answered anything else (1xx, 3xx, 4xx).
    pub other_status: u64,
    /// No answer: refused connection, broken connection, unreadable body.
    pub failed: u64,
    pub timed_out: u64,
    /// Not sent because `max_in_flight` requests were already waiting.
    pub skipped: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

enum Outcome {
    Status(u16),
    Failed,
    TimedOut,
}

impl LoadReport {
    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Status(code) if (200..300).contains(&code) => self.ok += 1,
            Outcome::Status(code) if (500..600).contains(&code) => self.server_errors += 1,
            Outcome::Status(_) => self.other_status += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::TimedOut => self.timed_out += 1,
        }
    }
}

/// Sends `GET /` to `target` at `rate_per_second` for `duration` or until `stop` completes,
/// then waits for the requests in flight (each bounded by `REQUEST_TIMEOUT`).
pub async fn run_load(
    target: SocketAddr,
    rate_per_second: f64,
    duration: Duration,
    stop: impl Future<Output = ()>,
) -> LoadReport {
    run_plan(target, &LoadPlan::new(rate_per_second, duration), stop).await
}

/// `run_load` with every setting open.
pub async fn run_plan(
    target: SocketAddr,
    plan: &LoadPlan,
    stop: impl Future<Output = ()>,
) -> LoadReport {
    let mut report = LoadReport::default();
    let planned = plan.planned();
    let uri = match Uri::builder()
        .scheme("http")
        .authority(target.to_string())
        .path_and_query("/")
        .build()
    {
        Ok(uri) => uri,
        Err(e) => {
            tracing::warn!(error = %e, %target, "cannot address the load target");
            return report;
        }
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let max_in_flight = plan.max_in_flight.max(1);
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_in_flight)
        .build(connector);
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let mut in_flight = JoinSet::new();
    let rate = plan.rate();
    tokio::pin!(stop);
    let started = Instant::now();
    tracing::debug!(%target, rate, planned, "load starts");
    for i in 0..planned {
        // Each request has its own moment, so a late wake-up does not shift all that follow.
        let at = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::select! {
            biased;
            () = &mut stop => break,
            () = tokio::time::sleep_until(at) => {}
        }
        while let Some(done) = in_flight.try_join_next() {
            report.record(done.unwrap_or(Outcome::Failed));
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            report.skipped += 1;
            continue;
        };
        report.sent += 1;
        let client = client.clone();
        let uri = uri.clone();
        let headers = plan.headers.clone();
        let timeout = plan.timeout;
        in_flight.spawn(async move {
            let outcome = get(&client, uri, headers, timeout).await;
            drop(slot);
            outcome
        });
    }
    while let Some(done) = in_flight.join_next().await {
        report.record(done.unwrap_or(Outcome::Failed));
    }
    report.elapsed = started.elapsed();
    tracing::debug!(?report, "load done");
    report
}

async fn get(
    client: &Client<HttpConnector, Body>,
    uri: Uri,
    headers: HeaderMap,
    timeout: Duration,
) -> Outcome {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        axum::body::to_bytes(Body::new(response.into_body()), MAX_BODY)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(status)) => Outcome::Status(status),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "load request failed");
            Outcome::Failed
        }
        Err(_) => Outcome::TimedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_bounded() {
        assert_eq!(LoadPlan::new(100.0, Duration::from_secs(2)).planned(), 200);
        assert_eq!(LoadPlan::new(0.1, Duration::from_secs(30)).planned(), 3);
        assert_eq!(LoadPlan::new(-5.0, Duration::from_secs(2)).planned(), 0);
        assert_eq!(LoadPlan::new(f64::NAN, Duration::from_secs(2)).planned(), 0);
        let huge = LoadPlan::new(f64::INFINITY, Duration::from_secs(86_400));
        assert_eq!(
            huge.planned(),
            (MAX_RATE * MAX_DURATION.as_secs_f64()) as u64
        );
    }
}
