//! A weighted HTTP reverse proxy on 127.0.0.1, for `sluice demo` and tests: the traffic split of
//! a mesh without a cluster. It is one proxy in front of one primary and one canary address, so
//! the Canary passed to the `Router` methods only names the release; it is not read.
//!
//! Each request goes to the canary with probability `canary / (primary + canary)`, drawn
//! independently, as Envoy's weighted clusters do: the arms' request counts then carry the same
//! binomial noise as in a cluster, which the analysis has to live with. With `canary_match`, a
//! request carrying `x-canary: insider` goes to the canary whatever the weights (the A/B rule the
//! demo's Canary declares in `analysis.match`); the others follow the weights.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::http::{StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::RngExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Router, RouterError};
use crate::api::Canary;
use crate::metrics::BoxFuture;
use crate::rollout::Routes;

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

#[derive(Debug, thiserror::Error)]
pub enum LocalRouterError {
    #[error("the local router cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
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
}

struct Shared {
    /// The routes packed in one word (see `pack`), so a change is seen whole by every request:
    /// never the new primary weight with the old canary weight.
    routes: AtomicU64,
    backends: RwLock<Backends>,
    primary_requests: AtomicU64,
    canary_requests: AtomicU64,
    client: Client<HttpConnector, Body>,
}

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
        })
    }

    /// Where the proxy listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The current split.
    pub fn routes(&self) -> Routes {
        unpack(self.shared.routes.load(Ordering::Acquire))
    }

    /// Changes the split for every request that starts from now on.
    pub fn set(&self, routes: Routes) -> Result<(), RouterError> {
        if routes.primary > MAX_WEIGHT || routes.canary > MAX_WEIGHT {
            return Err(RouterError::Invalid(format!(
                "weights must be at most {MAX_WEIGHT}; got primary {} and canary {}",
                routes.primary, routes.canary
            )));
        }
        self.shared.routes.store(pack(routes), Ordering::Release);
        tracing::debug!(?routes, "local router routes");
        Ok(())
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
        (
            self.shared.primary_requests.load(Ordering::Relaxed),
            self.shared.canary_requests.load(Ordering::Relaxed),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_survive_packing() {
        for routes in [
            Routes::all_primary(),
            Routes::canary_weight(35),
            Routes {
                primary: MAX_WEIGHT,
                canary: MAX_WEIGHT,
                canary_match: true,
            },
            Routes {
                primary: 0,
                canary: 0,
                canary_match: false,
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
            ..Routes::all_primary()
        };
        assert_eq!(choose(ab, true, |_| 99), Some(Arm::Canary));
        assert_eq!(choose(ab, false, |_| 0), Some(Arm::Primary));
        let none = Routes {
            primary: 0,
            canary: 0,
            canary_match: false,
        };
        assert_eq!(choose(none, false, |_| 0), None);
    }
}
