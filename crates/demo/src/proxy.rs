//! A weighted HTTP reverse proxy on 127.0.0.1, for `sluice demo` and tests: the traffic split of
//! a mesh without a cluster. It is one proxy in front of one primary and one canary address, so
//! the Canary passed to the `Router` methods only names the release; it is not read.
//!
//! Each request goes to the canary with probability `canary / (primary + canary)`, drawn
//! independently, as Envoy's weighted clusters do: the arms' request counts then carry the same
//! binomial noise as in a cluster, which the analysis has to live with. With `canary_match`, a
//! request carrying `x-canary: insider` goes to the canary whatever the weights (the A/B rule the
//! demo's Canary declares in `analysis.match`); the others follow the weights.
//!
//! An optional admin API (`serve_admin`) lets a controller in another process steer the split
//! (`GET`/`PUT /routes`) and lets tests read every change (`GET /history`); `LocalRouterClient`
//! is the `Router` over that API. A release can then outlive the controller that drives it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::http::{StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::RngExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use sluice_controller::error_chain::error_chain;
use sluice_controller::providers::BoxFuture;
use sluice_controller::router::{Router, RouterError};
use sluice_core::api::Canary;
use sluice_core::rollout::Routes;

/// The header and value that select the canary when `canary_match` is on.
pub const INSIDER_HEADER: &str = "x-canary";
pub const INSIDER_VALUE: &str = "insider";

/// The largest weight accepted, as in the Gateway API; it also lets the routes fit one atomic word.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// How long the proxy waits for an arm's response headers before answering 504. Longer than the
/// demo app's own latency cap, so the proxy never cuts an answer the app would have given.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `shutdown` lets open requests finish before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Headers that describe one connection, not the message, so a proxy must not forward them
/// (RFC 9110, section 7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Changes kept in the history at most; a release makes a dozen, so this only bounds a runaway
/// caller's memory.
const MAX_HISTORY: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum LocalRouterError {
    #[error("the local router cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("the local router's admin API is already served on {0}")]
    AdminServed(SocketAddr),
}

/// One change of the split, as the admin API's `GET /history` lists them.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RouteChange {
    /// When it was set, Unix seconds (with milliseconds).
    pub at: f64,
    #[serde(flatten)]
    pub routes: Routes,
}

/// Requests sent to each arm so far, as `GET /counts` returns them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArmCounts {
    pub primary: u64,
    pub canary: u64,
}

/// Which deployment a request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    Primary,
    Canary,
}

impl Arm {
    fn as_str(self) -> &'static str {
        match self {
            Arm::Primary => "primary",
            Arm::Canary => "canary",
        }
    }
}

/// The running proxy. Dropping it or calling `shutdown` stops it the same way: no new
/// connections, idle ones closed, requests in flight allowed to finish; `shutdown` also waits
/// for that, for a few seconds.
pub struct LocalRouter {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    admin: Option<Admin>,
}

struct Admin {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

struct Shared {
    /// The routes packed in one word (see `pack`), so a change is seen whole by every request:
    /// never the new primary weight with the old canary weight.
    routes: AtomicU64,
    backends: RwLock<Backends>,
    primary_requests: AtomicU64,
    canary_requests: AtomicU64,
    client: Client<HttpConnector, Body>,
    /// Every `set`, in order, for tests and the demo's report.
    history: Mutex<Vec<RouteChange>>,
}

impl Shared {
    fn set(&self, routes: Routes) -> Result<(), RouterError> {
        sluice_controller::router::refuse_mirror(routes, "demo proxy")?;
        if routes.primary > MAX_WEIGHT || routes.canary > MAX_WEIGHT {
            return Err(RouterError::Invalid(format!(
                "weights must be at most {MAX_WEIGHT}; got primary {} and canary {}",
                routes.primary, routes.canary
            )));
        }
        // The history is appended under its lock together with the store, so its order is the
        // order in which the splits took effect.
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        self.routes.store(pack(routes), Ordering::Release);
        if history.len() < MAX_HISTORY {
            history.push(RouteChange {
                at: unix_seconds(),
                routes,
            });
        }
        tracing::debug!(?routes, "local router routes");
        Ok(())
    }

    fn routes(&self) -> Routes {
        unpack(self.routes.load(Ordering::Acquire))
    }

    fn counts(&self) -> ArmCounts {
        ArmCounts {
            primary: self.primary_requests.load(Ordering::Relaxed),
            canary: self.canary_requests.load(Ordering::Relaxed),
        }
    }
}

use sluice_controller::clock::unix_seconds_f64 as unix_seconds;

#[derive(Clone, Copy, Debug)]
struct Backends {
    primary: SocketAddr,
    canary: SocketAddr,
}

impl LocalRouter {
    /// Listens on `listen` (port 0 picks one; see `address`) and forwards to `primary` and
    /// `canary`, all traffic to the primary until routes are set.
    pub async fn start(
        listen: SocketAddr,
        primary: SocketAddr,
        canary: SocketAddr,
    ) -> Result<Self, LocalRouterError> {
        let bind = |source| LocalRouterError::Bind {
            address: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind)?;
        let address = listener.local_addr().map_err(bind)?;
        let mut connector = HttpConnector::new();
        // Small requests on loopback: Nagle's algorithm would only add delay to the latencies the
        // analysis measures.
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let shared = Arc::new(Shared {
            routes: AtomicU64::new(pack(Routes::all_primary())),
            backends: RwLock::new(Backends { primary, canary }),
            primary_requests: AtomicU64::new(0),
            canary_requests: AtomicU64::new(0),
            client,
            history: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let stopped = async {
                // A dropped sender also means stop.
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!(error = %e, "the local router stopped");
            }
        });
        tracing::info!(%address, %primary, %canary, "local router listening");
        Ok(Self {
            address,
            shared,
            stop: Some(stop),
            server: Some(server),
            admin: None,
        })
    }

    /// Serves the admin API on `listen` (port 0 picks one) and returns its address:
    /// `GET /routes` and `PUT /routes` (the `Routes` JSON), `GET /history` (every change, as
    /// `RouteChange`s) and `GET /counts` (`ArmCounts`). It stops with the proxy.
    pub async fn serve_admin(
        &mut self,
        listen: SocketAddr,
    ) -> Result<SocketAddr, LocalRouterError> {
        if let Some(admin) = &self.admin {
            return Err(LocalRouterError::AdminServed(admin.address));
        }
        let bind = |source| LocalRouterError::Bind {
            address: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind)?;
        let address = listener.local_addr().map_err(bind)?;
        let app = axum::Router::new()
            .route("/routes", get(admin_routes).put(admin_set_routes))
            .route("/history", get(admin_history))
            .route("/counts", get(admin_counts))
            .with_state(self.shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!(error = %e, "the local router's admin API stopped");
            }
        });
        tracing::info!(%address, "local router admin API listening");
        self.admin = Some(Admin {
            address,
            stop: Some(stop),
        });
        Ok(address)
    }

    /// Where the admin API listens, once `serve_admin` was called.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.address)
    }

    /// Every split set so far, oldest first.
    pub fn history(&self) -> Vec<RouteChange> {
        self.shared
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Where the proxy listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The current split.
    pub fn routes(&self) -> Routes {
        self.shared.routes()
    }

    /// Changes the split for every request that starts from now on.
    pub fn set(&self, routes: Routes) -> Result<(), RouterError> {
        self.shared.set(routes)
    }

    /// Points the arms at other addresses, for when the demo restarts a deployment's process.
    pub fn set_backends(&self, primary: SocketAddr, canary: SocketAddr) {
        // The lock guards a plain copy; a panic elsewhere cannot leave it half-written.
        *self
            .shared
            .backends
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Backends { primary, canary };
    }

    /// Requests sent so far to (primary, canary), including those that then failed upstream.
    pub fn counts(&self) -> (u64, u64) {
        let counts = self.shared.counts();
        (counts.primary, counts.canary)
    }

    /// Stops the proxy and waits up to `SHUTDOWN_GRACE` for the requests in flight to finish.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err()
        {
            // The requests still open end by themselves, within UPSTREAM_TIMEOUT.
            tracing::warn!("the local router still has requests in flight; not waiting for them");
        }
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.admin.as_mut().and_then(|a| a.stop.take()) {
            let _ = stop.send(());
        }
    }
}

impl Drop for LocalRouter {
    fn drop(&mut self) {
        // Aborting the server task would free the port but leave its connection tasks serving
        // keep-alive clients; the graceful stop closes those too.
        self.stop();
    }
}

impl Router for LocalRouter {
    /// The proxy exists from `start`, already with all traffic to the primary.
    fn reconcile<'a>(&'a self, _canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async { Ok(()) })
    }

    fn set_routes<'a>(
        &'a self,
        _canary: &'a Canary,
        routes: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move { self.set(routes) })
    }

    fn get_routes<'a>(&'a self, _canary: &'a Canary) -> BoxFuture<'a, Result<Routes, RouterError>> {
        Box::pin(async move { Ok(self.routes()) })
    }

    /// The target's own pods are the canary arm's app: they take all traffic.
    fn finalize<'a>(&'a self, _canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move { self.set(Routes::canary_weight(100)) })
    }
}

/// Routes in one word: primary weight in bits 0-31, canary weight in bits 32-62, the match flag in
/// bit 63. Weights are at most `MAX_WEIGHT`, well under 2^31.
fn pack(routes: Routes) -> u64 {
    u64::from(routes.primary)
        | (u64::from(routes.canary & 0x7fff_ffff) << 32)
        | (u64::from(routes.canary_match) << 63)
}

fn unpack(word: u64) -> Routes {
    Routes {
        primary: (word & 0xffff_ffff) as u32,
        canary: ((word >> 32) & 0x7fff_ffff) as u32,
        canary_match: word >> 63 == 1,
        mirror: false,
    }
}

/// The arm for one request. `draw(n)` returns a number uniform in `0..n`; it is a parameter so the
/// rule can be tested without randomness. `None` when no arm has weight (the proxy answers 503).
fn choose(routes: Routes, insider: bool, draw: impl FnOnce(u64) -> u64) -> Option<Arm> {
    if routes.canary_match && insider {
        return Some(Arm::Canary);
    }
    let total = u64::from(routes.primary) + u64::from(routes.canary);
    if total == 0 {
        return None;
    }
    Some(if draw(total) < u64::from(routes.canary) {
        Arm::Canary
    } else {
        Arm::Primary
    })
}

fn is_insider(headers: &HeaderMap) -> bool {
    headers
        .get(INSIDER_HEADER)
        .is_some_and(|value| value.as_bytes() == INSIDER_VALUE.as_bytes())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let routes = unpack(shared.routes.load(Ordering::Acquire));
    let insider = is_insider(request.headers());
    let Some(arm) = choose(routes, insider, |n| rand::rng().random_range(0..n)) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no arm has weight\n").into_response();
    };
    let counter = match arm {
        Arm::Primary => &shared.primary_requests,
        Arm::Canary => &shared.canary_requests,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let backends = *shared
        .backends
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let backend = match arm {
        Arm::Primary => backends.primary,
        Arm::Canary => backends.canary,
    };

    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = match Uri::builder()
        .scheme("http")
        .authority(backend.to_string())
        .path_and_query(path)
        .build()
    {
        Ok(uri) => uri,
        Err(e) => {
            tracing::warn!(error = %e, %backend, "cannot build the upstream address");
            return StatusCode::BAD_GATEWAY.into_response();
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    // The client sets Host from the upstream address, as a mesh's sidecar would.
    parts.headers.remove(header::HOST);
    // HTTP/1.1 to the arms keeps their connections pooled whatever the caller spoke.
    parts.version = Version::HTTP_11;
    let upstream = Request::from_parts(parts, body);

    match tokio::time::timeout(UPSTREAM_TIMEOUT, shared.client.request(upstream)).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, arm = arm.as_str(), %backend, "upstream request failed");
            (
                StatusCode::BAD_GATEWAY,
                format!("{} unreachable\n", arm.as_str()),
            )
                .into_response()
        }
        Err(_) => {
            tracing::debug!(arm = arm.as_str(), %backend, "upstream timed out");
            (
                StatusCode::GATEWAY_TIMEOUT,
                format!("{} timed out\n", arm.as_str()),
            )
                .into_response()
        }
    }
}

/// A JSON answer. axum's `Json` needs a feature this crate leaves off; serde_json is here anyway.
fn json_answer(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn admin_routes(State(shared): State<Arc<Shared>>) -> Response {
    json_answer(&shared.routes())
}

async fn admin_set_routes(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let routes: Routes = match serde_json::from_slice(&body) {
        Ok(routes) => routes,
        Err(e) => {
            let message = format!(
                "the body must be the routes as JSON, e.g. {{\"primary\": 90, \"canary\": 10}}: {e}\n"
            );
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    match shared.set(routes) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

async fn admin_history(State(shared): State<Arc<Shared>>) -> Response {
    let history = shared
        .history
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    json_answer(&history)
}

async fn admin_counts(State(shared): State<Arc<Shared>>) -> Response {
    json_answer(&shared.counts())
}

/// How long the client waits for the admin API: it answers from memory, so anything slower
/// means the router is gone or stuck, and the reconcile should fail and be retried.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The `Router` over a local router's admin API (`LocalRouter::serve_admin`), for a controller
/// that runs in another process than the proxy. Like the proxy, it ignores the Canary.
pub struct LocalRouterClient {
    base: String,
    http: reqwest::Client,
}

impl LocalRouterClient {
    /// A client for the admin API at `base_url`, e.g. `http://127.0.0.1:7000`.
    pub fn new(base_url: &str) -> Result<Self, RouterError> {
        let parsed = url::Url::parse(base_url).map_err(|e| {
            RouterError::Invalid(format!("local router admin URL {base_url:?}: {e}"))
        })?;
        if parsed.scheme() != "http" {
            return Err(RouterError::Invalid(format!(
                "local router admin URL {base_url:?}: use http://HOST:PORT"
            )));
        }
        let http = crate::local_http(ADMIN_TIMEOUT)
            .map_err(|e| RouterError::Invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_string(),
            http,
        })
    }

    fn failed(&self, what: &str, error: impl std::fmt::Display) -> RouterError {
        RouterError::Invalid(format!("local router at {}: {what}: {error}", self.base))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, RouterError> {
        let what = format!("GET {path}");
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| self.failed(&what, error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(self.failed(&what, format!("{status}: {}", body.trim())));
        }
        response
            .json()
            .await
            .map_err(|e| self.failed(&what, error_chain(&e)))
    }

    /// The current split.
    pub async fn routes(&self) -> Result<Routes, RouterError> {
        self.get_json("/routes").await
    }

    /// Changes the split.
    pub async fn set(&self, routes: Routes) -> Result<(), RouterError> {
        let response = self
            .http
            .put(format!("{}/routes", self.base))
            .json(&routes)
            .send()
            .await
            .map_err(|e| self.failed("PUT /routes", error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(self.failed("PUT /routes", format!("{status}: {}", body.trim())))
    }

    /// Every split set so far, oldest first.
    pub async fn history(&self) -> Result<Vec<RouteChange>, RouterError> {
        self.get_json("/history").await
    }

    /// Requests sent to each arm so far.
    pub async fn counts(&self) -> Result<ArmCounts, RouterError> {
        self.get_json("/counts").await
    }
}

impl Router for LocalRouterClient {
    /// The proxy is started by whoever runs the release; reconciling checks that it answers, so
    /// a wrong URL fails the bootstrap rather than the first weight change.
    fn reconcile<'a>(&'a self, _canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move { self.routes().await.map(|_| ()) })
    }

    fn set_routes<'a>(
        &'a self,
        _canary: &'a Canary,
        routes: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move { self.set(routes).await })
    }

    fn get_routes<'a>(&'a self, _canary: &'a Canary) -> BoxFuture<'a, Result<Routes, RouterError>> {
        Box::pin(async move { self.routes().await })
    }

    /// The target's own pods are the canary arm's app: they take all traffic.
    fn finalize<'a>(&'a self, _canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move { self.set(Routes::canary_weight(100)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_api_steers_the_split_and_keeps_its_history() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
            // No request goes through the proxy here, so the arms need not exist.
            let mut router = LocalRouter::start(loopback, loopback, loopback)
                .await
                .unwrap();
            let admin = router.serve_admin(loopback).await.unwrap();
            assert!(matches!(
                router.serve_admin(loopback).await,
                Err(LocalRouterError::AdminServed(_))
            ));
            let client = LocalRouterClient::new(&format!("http://{admin}/")).unwrap();
            assert_eq!(client.routes().await.unwrap(), Routes::all_primary());
            client.set(Routes::canary_weight(10)).await.unwrap();
            client.set(Routes::canary_weight(20)).await.unwrap();
            assert_eq!(router.routes(), Routes::canary_weight(20));
            assert_eq!(client.routes().await.unwrap(), Routes::canary_weight(20));
            let history = client.history().await.unwrap();
            let weights: Vec<u32> = history.iter().map(|c| c.routes.canary).collect();
            assert_eq!(weights, [10, 20]);
            assert!(history[0].at <= history[1].at && history[0].at > 1.0e9);
            assert_eq!(router.history(), history);
            assert_eq!(client.counts().await.unwrap(), ArmCounts::default());
            // Refused weights leave the split as it was, and say why.
            let too_heavy = Routes {
                primary: MAX_WEIGHT + 1,
                canary: 0,
                canary_match: false,
                mirror: false,
            };
            let error = client.set(too_heavy).await.unwrap_err().to_string();
            assert!(
                error.contains("400") && error.contains("at most"),
                "{error}"
            );
            assert_eq!(router.routes(), Routes::canary_weight(20));
            router.shutdown().await;
            // Gone: the client says where it looked.
            let error = client.routes().await.unwrap_err().to_string();
            assert!(error.contains(&admin.to_string()), "{error}");
        });
        assert!(LocalRouterClient::new("ftp://127.0.0.1:1").is_err());
        assert!(LocalRouterClient::new("not a url").is_err());
    }

    #[test]
    fn routes_survive_packing() {
        for routes in [
            Routes::all_primary(),
            Routes::canary_weight(35),
            Routes {
                primary: MAX_WEIGHT,
                canary: MAX_WEIGHT,
                canary_match: true,
                mirror: false,
            },
            Routes {
                primary: 0,
                canary: 0,
                canary_match: false,
                mirror: false,
            },
        ] {
            assert_eq!(unpack(pack(routes)), routes);
        }
    }

    #[test]
    fn choice_follows_weights_and_match() {
        let split = Routes::canary_weight(30);
        // Draws 0..30 are the canary's 30 out of 100, the rest the primary's.
        assert_eq!(choose(split, false, |_| 0), Some(Arm::Canary));
        assert_eq!(choose(split, false, |_| 29), Some(Arm::Canary));
        assert_eq!(choose(split, false, |_| 30), Some(Arm::Primary));
        assert_eq!(choose(split, false, |_| 99), Some(Arm::Primary));
        // The header alone does nothing without canary_match.
        assert_eq!(
            choose(Routes::all_primary(), true, |_| 99),
            Some(Arm::Primary)
        );
        let ab = Routes {
            canary_match: true,
            mirror: false,
            ..Routes::all_primary()
        };
        assert_eq!(choose(ab, true, |_| 99), Some(Arm::Canary));
        assert_eq!(choose(ab, false, |_| 0), Some(Arm::Primary));
        let none = Routes {
            primary: 0,
            canary: 0,
            canary_match: false,
            mirror: false,
        };
        assert_eq!(choose(none, false, |_| 0), None);
    }
}
