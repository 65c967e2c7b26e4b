//! `sluice controller`: the kube-runtime Controller around `reconcile`, leader election, the
//! health and metrics endpoints, and a graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::{ObjectRef as WatchRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use super::leader::Elector;
use super::observer::PrometheusObserver;
use super::reconcile::{Context, ReconcileError, reconcile};
use crate::cluster::Cluster;
use crate::cluster::apiserver::KubeCluster;
use crate::error_chain::error_chain;
use crate::hooks::Hooks;
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
    pub router: RouterKind,
    pub query_timeout: Duration,
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
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
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

    let cluster: Arc<dyn Cluster> = Arc::new(KubeCluster::new(client.clone()));
    let hooks = Hooks::new().map_err(|e| RunError::Setup(e.to_string()))?;
    let observer = Arc::new(PrometheusObserver::new(
        cluster.clone(),
        options.prometheus_address.clone(),
        options.query_timeout,
    ));
    let data = Arc::new(Data {
        ctx: Context::new(cluster, observer, hooks).with_default_router(options.router),
        metrics: metrics.clone(),
    });

    let (canaries, deployments, configmaps, secrets) = match &options.watch_namespace {
        Some(ns) => (
            Api::<Canary>::namespaced(client.clone(), ns),
            Api::<Deployment>::namespaced(client.clone(), ns),
            Api::<ConfigMap>::namespaced(client.clone(), ns),
            Api::<Secret>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::<Canary>::all(client.clone()),
            Api::<Deployment>::all(client.clone()),
            Api::<ConfigMap>::all(client.clone()),
            Api::<Secret>::all(client.clone()),
        ),
    };
    let controller = Controller::new(canaries, watcher::Config::default());
    let store = controller.store();
    let targets = store.clone();
    let tracked = store.clone();
    let tracked_secrets = store.clone();
    let mut stop = stop_rx.clone();
    ready.store(true, Ordering::SeqCst);
    controller
        // The primary Deployment is owned by its Canary.
        .owns(deployments.clone(), watcher::Config::default())
        // The target Deployment is not: find the Canaries that point at it.
        .watches(deployments, watcher::Config::default(), move |d| {
            canaries_targeting(&targets, &d)
        })
        .watches(
            configmaps,
            watcher::Config::default(),
            move |c: ConfigMap| {
                canaries_tracking(
                    &tracked,
                    "configmap",
                    &c.name_any(),
                    c.namespace().as_deref(),
                )
            },
        )
        .watches(secrets, watcher::Config::default(), move |s: Secret| {
            canaries_tracking(
                &tracked_secrets,
                "secret",
                &s.name_any(),
                s.namespace().as_deref(),
            )
        })
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .run(reconcile_canary, error_policy, data)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(canary = %object.name, "reconciled"),
                Err(e) => tracing::warn!(error = %error_chain(&e), "reconcile failed"),
            }
        })
        .await;
    ready.store(false, Ordering::SeqCst);
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
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, RunError> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| RunError::Listen {
            address,
            reason: e.to_string(),
        })?;
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
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "health and metrics server failed");
        }
    }))
}

fn canaries_targeting(store: &Store<Canary>, deployment: &Deployment) -> Vec<WatchRef<Canary>> {
    let namespace = deployment.namespace();
    let name = deployment.name_any();
    store
        .state()
        .iter()
        .filter(|c| c.namespace() == namespace && c.spec.target_ref.name == name)
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

async fn reconcile_canary(cached: Arc<Canary>, data: Arc<Data>) -> Result<Requeue, ReconcileError> {
    let namespace = cached.namespace().unwrap_or_else(|| "default".into());
    let name = cached.name_any();
    // Read the Canary afresh: the watch cache can lag the status this controller wrote a moment
    // ago, and a reconcile of that older status would take the same step twice (seen on a real
    // API server: every transition recorded twice). One GET per reconcile buys exactness.
    let Some(canary) =
        super::reconcile::load_canary(data.ctx.cluster.as_ref(), &namespace, &name).await?
    else {
        return Ok(Requeue::await_change());
    };
    if let Err(errors) = validate_canary(&canary) {
        // Nothing is changed in the cluster for an invalid Canary; the status says what to fix.
        let mut status = canary.status.clone().unwrap_or_default();
        let message = errors.to_string();
        if status.message.as_deref() != Some(message.as_str()) {
            let event = crate::cluster::Event {
                warning: true,
                reason: "InvalidSpec".into(),
                message: message.clone(),
            };
            data.ctx.cluster.event(&namespace, &name, &event).await?;
            status.message = Some(message);
            data.ctx
                .cluster
                .patch_status(&namespace, &name, &status)
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
        &namespace,
        &name,
        canary.status.as_ref(),
        &outcome.decision.status,
        &results,
        at,
    );
    if outcome.previous_phase != outcome.decision.status.phase {
        tracing::info!(
            %namespace, %name,
            from = ?outcome.previous_phase.unwrap_or(Phase::Initializing),
            to = ?outcome.decision.status.phase,
            weight = outcome.decision.status.canary_weight,
            "phase"
        );
    }
    Ok(Requeue::requeue(Duration::from_secs(
        outcome.decision.requeue_seconds.max(1),
    )))
}

fn error_policy(canary: Arc<Canary>, error: &ReconcileError, data: Arc<Data>) -> Requeue {
    tracing::warn!(canary = %canary.name_any(), error = %error, "reconcile failed; retrying in 30 s");
    data.metrics.record_error();
    Requeue::requeue(Duration::from_secs(30))
}
