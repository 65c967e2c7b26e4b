//! `sluice controller`: the kube-runtime Controller around `reconcile`, leader election, the
//! health and metrics endpoints, and a graceful shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action as Requeue, Error as ControllerError};
use kube::runtime::reflector::{ObjectRef as WatchRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::Instrument;

use super::leader::Elector;
use super::observer::PrometheusObserver;
use super::reconcile::{Context, ReconcileError, reconcile};
use crate::cluster::Cluster;
use crate::cluster::apiserver::KubeCluster;
use crate::error_chain::error_chain;
use crate::finalize::{self, Finalized};
use crate::hooks::Hooks;
use crate::notify::alerts::{AlertOptions, Alerts};
use crate::shard::LabelSelector;
use crate::slots::ReleaseSlots;
use crate::telemetry::Metrics;
use sluice_core::api::validate::validate_canary;
use sluice_core::api::{Canary, Phase, RouterKind};

pub struct Options {
    pub metrics_address: SocketAddr,
    pub prometheus_address: Option<String>,
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub identity: String,
    pub watch_namespace: Option<String>,
    /// Only the Canaries with these labels (a Kubernetes label selector): one shard of a fleet
    /// that several controllers split, as Flux's `sharding.fluxcd.io/key` does.
    pub watch_label_selector: Option<LabelSelector>,
    pub router: RouterKind,
    pub query_timeout: Duration,
    /// At most this many releases in flight at once; a new revision beyond waits, queued.
    pub max_concurrent_releases: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "no Kubernetes configuration: {0}\n  sluice controller runs in a pod (in-cluster credentials) or with a kubeconfig (KUBECONFIG or ~/.kube/config)"
    )]
    Config(String),
    #[error("cannot reach the Kubernetes API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("cannot serve health and metrics on {address}: {reason}")]
    Listen { address: SocketAddr, reason: String },
    #[error(transparent)]
    Lease(#[from] super::leader::LeaseError),
    #[error("lost the leader lease; stopping so that another replica takes over")]
    LostLease,
    #[error("{0}")]
    Setup(String),
}

struct Data {
    ctx: Context,
    metrics: Arc<Metrics>,
    failures: Failures,
    /// `--watch-label-selector`: the Canaries of this shard.
    selector: Option<LabelSelector>,
}

/// The first retry after a failed reconcile, and the longest: a passing glitch is retried soon,
/// a lasting fault (RBAC, a missing CRD) does not keep the API server busy.
const BACKOFF_FIRST: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long to wait before reconciling a Canary again after `failures` failed reconciles in a
/// row (at least one): `BACKOFF_FIRST`, doubling, at most `BACKOFF_MAX`.
fn backoff(failures: u32) -> Duration {
    // 2^31 times anything is past the cap; the shift must not overflow.
    let doublings = failures.saturating_sub(1).min(31);
    BACKOFF_FIRST
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX)
}

/// Failed reconciles in a row, per Canary. An entry lives from a failure to the Canary's next
/// successful reconcile or until the Canary is gone, so the map holds only Canaries that are
/// failing now.
#[derive(Default)]
struct Failures(Mutex<HashMap<WatchRef<Canary>, u32>>);

impl Failures {
    /// Counts one more failure of `canary`; returns how many in a row.
    fn failed(&self, canary: WatchRef<Canary>) -> u32 {
        let mut counts = self.lock();
        let count = counts.entry(canary).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// The delay before retrying `canary`, from its failures so far.
    fn delay(&self, canary: &WatchRef<Canary>) -> Duration {
        backoff(self.lock().get(canary).copied().unwrap_or(1))
    }

    /// Forgets `canary`'s failures: it reconciled, or it is gone.
    fn forget(&self, canary: &WatchRef<Canary>) {
        self.lock().remove(canary);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WatchRef<Canary>, u32>> {
        // Counters cannot be left half-updated by a panic; carry on with them.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn now() -> i64 {
    crate::clock::unix_seconds()
}

/// Runs until SIGTERM or Ctrl-C (then returns Ok), or until an error that the controller cannot
/// carry on with.
pub async fn run(options: Options) -> Result<(), RunError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| RunError::Config(error_chain(&e)))?;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| RunError::Config(error_chain(&e)))?;
    let unreachable = |reason: String| RunError::Unreachable {
        url: url.clone(),
        reason,
    };
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(version)) => tracing::info!(%url, version = %version.git_version, "connected"),
        Ok(Err(e)) => return Err(unreachable(error_chain(&e))),
        Err(_) => return Err(unreachable("no answer within 10 s".into())),
    }

    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    spawn_signal_handler(stop_tx.clone());
    let server = serve(
        options.metrics_address,
        metrics.clone(),
        ready.clone(),
        stop_rx.clone(),
    )
    .await?;

    let elector = options.leader_election.then(|| {
        Elector::new(
            client.clone(),
            &options.lease_namespace,
            &options.lease_name,
            &options.identity,
            15,
        )
    });
    if let Some(elector) = &elector {
        if !wait_for_lease(elector, stop_rx.clone()).await? {
            return Ok(());
        }
        metrics.set_leader(true);
    }
    let lost = Arc::new(AtomicBool::new(false));
    if let Some(elector) = elector.clone() {
        spawn_renewal(elector, stop_tx.clone(), lost.clone());
    }

    let cluster: Arc<dyn Cluster> =
        Arc::new(KubeCluster::new(client.clone()).reporting_as(&options.identity));
    let hooks = Hooks::new().map_err(|e| RunError::Setup(e.to_string()))?;
    let observer = Arc::new(
        PrometheusObserver::new(
            cluster.clone(),
            options.prometheus_address.clone(),
            options.query_timeout,
        )
        .with_metrics(metrics.clone()),
    );
    // The alerts share the webhooks' HTTP client, and send from a task of their own.
    let alerts = Alerts::start(
        cluster.clone(),
        hooks.client(),
        AlertOptions {
            metrics: Some(metrics.clone()),
            ..AlertOptions::default()
        },
    );
    let slots = options
        .max_concurrent_releases
        .map(|limit| Arc::new(ReleaseSlots::new(limit)));
    let mut ctx = Context::new(cluster, observer, hooks)
        .with_default_router(options.router)
        .with_notifier(alerts.clone());
    if let Some(slots) = &slots {
        ctx = ctx.with_release_slots(slots.clone());
    }
    let data = Arc::new(Data {
        ctx,
        metrics: metrics.clone(),
        failures: Failures::default(),
        selector: options.watch_label_selector.clone(),
    });
    let forget = data.clone();

    let (canaries, deployments, configmaps, secrets) = match &options.watch_namespace {
        Some(ns) => (
            Api::<Canary>::namespaced(client.clone(), ns),
            Api::<PartialObjectMeta<Deployment>>::namespaced(client.clone(), ns),
            Api::<PartialObjectMeta<ConfigMap>>::namespaced(client.clone(), ns),
            Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::<Canary>::all(client.clone()),
            Api::<PartialObjectMeta<Deployment>>::all(client.clone()),
            Api::<PartialObjectMeta<ConfigMap>>::all(client.clone()),
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        ),
    };
    let mut canary_watch = watcher::Config::default();
    if let Some(selector) = &options.watch_label_selector {
        // The API server filters: another shard's Canaries are never seen, and one relabelled
        // out of the selector leaves the cache as if deleted (its new shard picks it up).
        canary_watch = canary_watch.labels(selector.as_str());
    }
    let controller = Controller::new(canaries, canary_watch);
    let store = controller.store();
    if let Some(slots) = &slots {
        slots.watch(store.clone());
    }
    let targets = store.clone();
    let tracked = store.clone();
    let tracked_secrets = store.clone();
    let mut stop = stop_rx.clone();
    ready.store(true, Ordering::SeqCst);
    // Deployments, ConfigMaps and Secrets only say when to reconcile, and every reconcile reads
    // what it needs afresh: their watches take metadata only (`Api<PartialObjectMeta<_>>` asks
    // the API server for nothing else; a change of spec, status or data changes the
    // resourceVersion, so it is still seen). A cluster's Secrets, Helm's releases among them,
    // then cost names and labels, not their data.
    controller
        // The primary Deployment is owned by its Canary.
        .owns(deployments.clone(), watcher::Config::default())
        // The target Deployment is not: find the Canaries that point at it.
        .watches(
            deployments,
            watcher::Config::default(),
            move |d: PartialObjectMeta<Deployment>| {
                canaries_targeting(&targets, d.namespace().as_deref(), &d.name_any())
            },
        )
        .watches(
            configmaps,
            watcher::Config::default(),
            move |c: PartialObjectMeta<ConfigMap>| {
                canaries_tracking(
                    &tracked,
                    "configmap",
                    &c.name_any(),
                    c.namespace().as_deref(),
                )
            },
        )
        .watches(
            secrets,
            watcher::Config::default(),
            move |s: PartialObjectMeta<Secret>| {
                canaries_tracking(
                    &tracked_secrets,
                    "secret",
                    &s.name_any(),
                    s.namespace().as_deref(),
                )
            },
        )
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .run(reconcile_canary, error_policy, data)
        .for_each(|result| {
            match result {
                Ok((object, _)) => tracing::debug!(canary = %object.name, "reconciled"),
                // A retry came due for a Canary deleted since it failed.
                Err(ControllerError::ObjectNotFound(object)) => {
                    let mut canary = WatchRef::<Canary>::new(&object.name);
                    canary.namespace = object.namespace.clone();
                    forget.failures.forget(&canary);
                    if let Some(slots) = &forget.ctx.slots {
                        slots.forget(&canary);
                    }
                    forget.metrics.forget(
                        object.namespace.as_deref().unwrap_or("default"),
                        &object.name,
                    );
                    tracing::debug!(canary = %object, "gone before its retry");
                }
                // Logged in the reconcile's span, with what happens next.
                Err(ControllerError::ReconcilerFailed(..)) => {}
                Err(e) => tracing::warn!(error = %error_chain(&e), "reconcile failed"),
            }
            std::future::ready(())
        })
        .await;
    ready.store(false, Ordering::SeqCst);
    // A rollback's alert raised just before SIGTERM still goes out, within a bound: the Pod's
    // grace period is 30 s by default and the Lease is handed over after this.
    if tokio::time::timeout(Duration::from_secs(10), alerts.settled())
        .await
        .is_err()
    {
        tracing::warn!("stopping with alerts not yet sent");
    }
    if let Some(elector) = &elector {
        elector.release().await;
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    if lost.load(Ordering::SeqCst) {
        return Err(RunError::LostLease);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Waits until this replica leads (true) or the process is asked to stop (false).
async fn wait_for_lease(
    elector: &Elector,
    mut stop: watch::Receiver<bool>,
) -> Result<bool, RunError> {
    loop {
        if elector.try_lead(now()).await? {
            tracing::info!("leading");
            return Ok(true);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.wait_for(|s| *s) => return Ok(false),
        }
    }
}

/// Renews the lease every few seconds; stops the controller when it cannot for longer than the
/// lease lasts, since another replica may lead by then.
fn spawn_renewal(elector: Elector, stop: watch::Sender<bool>, lost: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut last_renewed = now();
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if *stop.borrow() {
                return;
            }
            match elector.try_lead(now()).await {
                Ok(true) => last_renewed = now(),
                Ok(false) => {
                    tracing::error!("another replica took the leader lease");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew the leader lease");
                    if now() - last_renewed < elector.duration_seconds {
                        continue;
                    }
                    break;
                }
            }
        }
        lost.store(true, Ordering::SeqCst);
        let _ = stop.send(true);
    });
}

fn spawn_signal_handler(stop: watch::Sender<bool>) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
}

async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, RunError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| RunError::Listen {
            address,
            reason: e.to_string(),
        })?;
    Ok(serve_on(listener, metrics, ready, stop))
}

fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not leading or not watching yet",
                        )
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = metrics.encode();
                async move {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        );
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "health and metrics server failed");
        }
    })
}

fn canaries_targeting(
    store: &Store<Canary>,
    namespace: Option<&str>,
    name: &str,
) -> Vec<WatchRef<Canary>> {
    store
        .state()
        .iter()
        .filter(|c| c.namespace().as_deref() == namespace && c.spec.target_ref.name == name)
        .map(|c| WatchRef::from(c.as_ref()))
        .collect()
}

fn canaries_tracking(
    store: &Store<Canary>,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> Vec<WatchRef<Canary>> {
    let key = format!("{kind}/{name}");
    store
        .state()
        .iter()
        .filter(|c| c.namespace().as_deref() == namespace)
        .filter(|c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.tracked_configs.contains_key(&key))
        })
        .map(|c| WatchRef::from(c.as_ref()))
        .collect()
}

/// One reconcile in its own span, timed, counted and logged; a failure is counted towards the
/// Canary's backoff, which `error_policy` then applies.
async fn reconcile_canary(cached: Arc<Canary>, data: Arc<Data>) -> Result<Requeue, ReconcileError> {
    let namespace = cached.namespace().unwrap_or_else(|| "default".into());
    let name = cached.name_any();
    let span = tracing::info_span!(
        "reconcile",
        canary.namespace = %namespace,
        canary.name = %name,
        phase = tracing::field::Empty,
        requeue_seconds = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    let key = WatchRef::from_obj(cached.as_ref());
    let started = Instant::now();
    let result = reconcile_once(&namespace, &name, &data)
        .instrument(span.clone())
        .await;
    data.metrics.record_duration(started.elapsed());
    match &result {
        Ok(requeue) => {
            data.failures.forget(&key);
            span.in_scope(|| tracing::debug!(?requeue, "reconciled"));
        }
        Err(error) => {
            let label = error.metric_label();
            let failures = data.failures.failed(key);
            data.metrics.record_error(label);
            span.record("error", label);
            span.in_scope(|| {
                tracing::warn!(
                    error = %error_chain(error),
                    failures,
                    retry_in = ?backoff(failures),
                    "reconcile failed"
                )
            });
        }
    }
    result
}

async fn reconcile_once(
    namespace: &str,
    name: &str,
    data: &Data,
) -> Result<Requeue, ReconcileError> {
    // Read the Canary afresh: the watch cache can lag the status this controller wrote a moment
    // ago, and a reconcile of that older status would take the same step twice (seen on a real
    // API server: every transition recorded twice). One GET per reconcile buys exactness.
    let Some(canary) =
        super::reconcile::load_canary(data.ctx.cluster.as_ref(), namespace, name).await?
    else {
        data.metrics.forget(namespace, name);
        if let Some(slots) = &data.ctx.slots {
            slots.forget(&WatchRef::<Canary>::new(name).within(namespace));
        }
        return Ok(Requeue::await_change());
    };
    // Relabelled to another shard: that shard's from now on, though this one's cache may still
    // hold it for a moment.
    if let Some(selector) = &data.selector
        && !selector.matches(canary.labels())
    {
        tracing::info!(selector = selector.as_str(), "the Canary left this shard");
        data.metrics.forget(namespace, name);
        if let Some(slots) = &data.ctx.slots {
            slots.forget(&WatchRef::<Canary>::new(name).within(namespace));
        }
        return Ok(Requeue::await_change());
    }
    // Before validation: a Canary being deleted is let go whatever its spec.
    if finalize::is_deleted(&canary) {
        return match finalize::finalize(&data.ctx, &canary, now()).await? {
            Finalized::Done => {
                data.metrics.forget(namespace, name);
                Ok(Requeue::await_change())
            }
            Finalized::Again(after) => Ok(Requeue::requeue(after)),
        };
    }
    if let Err(errors) = validate_canary(&canary) {
        // Nothing is changed in the cluster for an invalid Canary; the status says what to fix.
        let old = canary.status.clone().unwrap_or_default();
        let message = errors.to_string();
        let mut status = old.clone();
        status.set_invalid(
            &message,
            canary.metadata.generation,
            &sluice_core::time::rfc3339(now()),
        );
        if status != old {
            if old.message.as_deref() != Some(message.as_str()) {
                let event = crate::cluster::Event {
                    warning: true,
                    reason: sluice_core::api::INVALID_SPEC.into(),
                    message: message.clone(),
                    key: None,
                };
                data.ctx.cluster.event(namespace, name, &event).await?;
            }
            data.ctx
                .cluster
                .patch_status(namespace, name, &status)
                .await?;
        }
        return Ok(Requeue::requeue(Duration::from_secs(300)));
    }
    let at = now();
    let outcome = reconcile(&data.ctx, &canary, at).await?;
    let results: Vec<(String, sluice_core::analysis::Outcome)> = outcome
        .decision
        .judgement
        .iter()
        .flat_map(|j| j.outcomes.iter().map(|o| (o.metric.clone(), o.outcome)))
        .collect();
    data.metrics.record(
        namespace,
        name,
        canary.status.as_ref(),
        &outcome.decision.status,
        &results,
        at,
    );
    data.metrics.record_evidence(
        namespace,
        name,
        &outcome.decision.status,
        canary.spec.analysis.alpha,
    );
    let span = tracing::Span::current();
    if let Some(phase) = outcome.decision.status.phase {
        span.record("phase", tracing::field::debug(phase));
    }
    let requeue_seconds = outcome.decision.requeue_seconds.max(1);
    span.record("requeue_seconds", requeue_seconds);
    if outcome.previous_phase != outcome.decision.status.phase {
        // The Canary's namespace and name are the span's.
        tracing::info!(
            from = ?outcome.previous_phase.unwrap_or(Phase::Initializing),
            to = ?outcome.decision.status.phase,
            weight = outcome.decision.status.canary_weight,
            "phase"
        );
    }
    Ok(Requeue::requeue(Duration::from_secs(requeue_seconds)))
}

/// Retries a failed Canary after its backoff; `reconcile_canary` has counted and logged the
/// failure.
fn error_policy(canary: Arc<Canary>, _error: &ReconcileError, data: Arc<Data>) -> Requeue {
    Requeue::requeue(data.failures.delay(&WatchRef::from_obj(canary.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        // No failure counted yet is treated as the first.
        assert_eq!(backoff(0), BACKOFF_FIRST);
        // Doublings past the width of the multiplier stay at the cap rather than overflow.
        assert_eq!(backoff(33), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn failures_count_per_canary_and_are_forgotten() {
        let failures = Failures::default();
        let podinfo = WatchRef::<Canary>::new("podinfo").within("test");
        let other = WatchRef::<Canary>::new("podinfo").within("prod");
        assert_eq!(failures.failed(podinfo.clone()), 1);
        assert_eq!(failures.failed(podinfo.clone()), 2);
        assert_eq!(failures.failed(podinfo.clone()), 3);
        assert_eq!(failures.delay(&podinfo), Duration::from_secs(20));
        assert_eq!(failures.failed(other.clone()), 1);
        assert_eq!(failures.delay(&other), Duration::from_secs(5));
        // A success starts the next failure from the first delay again, and frees the entry.
        failures.forget(&podinfo);
        assert_eq!(failures.delay(&podinfo), Duration::from_secs(5));
        assert_eq!(failures.failed(podinfo.clone()), 1);
        failures.forget(&podinfo);
        failures.forget(&other);
        assert!(failures.lock().is_empty());
    }

    #[tokio::test]
    async fn the_metrics_endpoint_serves_reconcile_errors_and_durations() {
        // reqwest is built without a default crypto provider, even for plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let metrics = Arc::new(Metrics::new());
        metrics.record_error("cluster_unreachable");
        metrics.record_duration(Duration::from_millis(20));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = serve_on(listener, metrics, Arc::new(AtomicBool::new(true)), stop_rx);
        let text = reqwest::get(format!("http://{address}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        assert!(
            text.contains(r#"sluice_reconcile_errors_total{error="cluster_unreachable"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("sluice_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        let _ = stop_tx.send(true);
        server.await.expect("server");
    }
}
