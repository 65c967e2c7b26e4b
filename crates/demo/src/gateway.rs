//! A local gateway for a Canary on a real cluster (the local control plane of `e2e/cluster/`, or
//! kind): real requests, split by the weights the controller wrote.
//!
//! The data plane is the local weighted router (`crate::proxy`) in front of two
//! `sluice demo-app` processes. Its weights are not set by sluice: the gateway watches, through
//! the API server, the object sluice's router writes (the HTTPRoute of the Gateway API and GAMMA
//! routers, Istio's VirtualService, SMI's TrafficSplit), and applies its weights as the gateway
//! or mesh would. Pods on a kwok node run no process, so the gateway also keeps Prometheus's
//! file-based service discovery pointing at the app processes under the names of the pods they
//! stand for: the analysis then sees, per arm, the traffic that arm really served, labelled as
//! Kubernetes service discovery would label it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

use super::prometheus::{ScrapeTarget, write_targets};
use crate::proxy::{LocalRouter, RouteChange};
use sluice_controller::cluster::objects::primary_name;
use sluice_controller::router::{ReadRoutes, gateway_api, istio, smi};
use sluice_core::api::{Canary, RouterKind};

/// What the gateway serves: one Canary's apex route, in front of one process per arm.
pub struct GatewayConfig {
    pub client: Client,
    pub canary: Canary,
    pub router: Arc<LocalRouter>,
    pub primary_app: SocketAddr,
    pub canary_app: SocketAddr,
    /// Prometheus's `file_sd_configs` file (see `PrometheusServer::start_discovering`).
    pub targets_file: PathBuf,
}

/// The running gateway. Dropping it stops both watches.
pub struct Gateway {
    tasks: Vec<JoinHandle<()>>,
    applied: Arc<Mutex<Vec<RouteChange>>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Gateway {
    pub fn start(config: GatewayConfig) -> Self {
        let namespace = config
            .canary
            .namespace()
            .unwrap_or_else(|| "default".into());
        let applied = Arc::new(Mutex::new(Vec::new()));
        let routes = tokio::spawn(follow_route(
            config.client.clone(),
            namespace.clone(),
            config.canary.clone(),
            config.router.clone(),
            applied.clone(),
        ));
        let pods = tokio::spawn(follow_pods(
            config.client,
            namespace,
            config.canary.spec.target_ref.name.clone(),
            config.primary_app,
            config.canary_app,
            config.targets_file,
        ));
        Self {
            tasks: vec![routes, pods],
            applied,
        }
    }

    /// Every split read from the route object and applied, oldest first (repeats left out).
    pub fn applied(&self) -> Vec<RouteChange> {
        self.applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The apex Service's name: every router's route object is named after it.
pub fn apex_name(canary: &Canary) -> String {
    canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_else(|| canary.spec.target_ref.name.clone())
}

/// The object that carries the Canary's split, as its router writes it, and how to read it: the
/// HTTPRoute (north-south, or the mesh's on the apex Service), Istio's VirtualService or SMI's
/// TrafficSplit. A gateway in front of the apex reads any of them as the mesh would.
fn route_object(canary: &Canary) -> Option<(ApiResource, ReadRoutes)> {
    let gvk = |group: &str, version: &str, kind: &str| GroupVersionKind::gvk(group, version, kind);
    match canary.spec.provider.unwrap_or(RouterKind::GatewayApi) {
        RouterKind::GatewayApi | RouterKind::GatewayApiV1 | RouterKind::Gamma => Some((
            ApiResource::from_gvk_with_plural(
                &gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
                "httproutes",
            ),
            gateway_api::routes_of,
        )),
        RouterKind::Istio => Some((
            ApiResource::from_gvk_with_plural(
                &gvk("networking.istio.io", "v1", "VirtualService"),
                "virtualservices",
            ),
            istio::routes_of,
        )),
        RouterKind::Smi | RouterKind::Linkerd => Some((
            ApiResource::from_gvk_with_plural(
                &gvk("split.smi-spec.io", "v1alpha2", "TrafficSplit"),
                "trafficsplits",
            ),
            smi::routes_of,
        )),
        RouterKind::Kubernetes | RouterKind::Nginx => None,
    }
}

async fn follow_route(
    client: Client,
    namespace: String,
    canary: Canary,
    router: Arc<LocalRouter>,
    applied: Arc<Mutex<Vec<RouteChange>>>,
) {
    let Some((resource, routes_of)) = route_object(&canary) else {
        tracing::error!(
            provider = ?canary.spec.provider,
            "the local gateway reads HTTPRoutes, VirtualServices and TrafficSplits only"
        );
        return;
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
    let name = apex_name(&canary);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    // The watcher lists again and resumes by itself after an API-server outage.
    let mut stream = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(next) = stream.next().await {
        let route = match next {
            Ok(route) => route,
            Err(e) => {
                tracing::debug!(error = %e, "route watch interrupted");
                continue;
            }
        };
        let value = match serde_json::to_value(&route) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(error = %e, kind = %resource.kind, "unreadable route");
                continue;
            }
        };
        match routes_of(&canary, &value) {
            Ok(routes) => {
                if let Err(e) = router.set(routes) {
                    tracing::warn!(error = %e, "cannot apply the route's weights");
                    continue;
                }
                let mut applied = applied.lock().unwrap_or_else(PoisonError::into_inner);
                if applied.last().map(|c| c.routes) != Some(routes) {
                    applied.push(RouteChange {
                        at: sluice_controller::clock::unix_seconds_f64(),
                        routes,
                    });
                    tracing::info!(
                        primary = routes.primary,
                        canary = routes.canary,
                        kind = %resource.kind,
                        "gateway applied the route"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, kind = %resource.kind, "route without readable weights")
            }
        }
    }
}

/// Which app process a pod of the release stands for, from its name: `<target>-primary-…` for
/// the primary, `<target>-<hash>-<id>` for the canary.
pub fn arm_of(pod: &str, target: &str) -> Option<bool> {
    let primary = format!("{}-", primary_name(target));
    if pod.starts_with(&primary) {
        return Some(true);
    }
    let rest = pod.strip_prefix(&format!("{target}-"))?;
    // A Deployment's pod: exactly two more segments.
    (rest.split('-').count() == 2).then_some(false)
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn follow_pods(
    client: Client,
    namespace: String,
    target: String,
    primary_app: SocketAddr,
    canary_app: SocketAddr,
    targets_file: PathBuf,
) {
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let (store, writer) = kube::runtime::reflector::store();
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .boxed();
    let mut written: Option<Vec<(String, String)>> = None;
    while let Some(next) = stream.next().await {
        if next.is_err() {
            continue;
        }
        // One process per arm, so one pod per arm: the first ready one by name. Two targets for
        // one process would count its requests twice.
        let mut primary = None::<String>;
        let mut canary = None::<String>;
        let mut names: Vec<(String, bool)> = store
            .state()
            .iter()
            .filter(|p| is_ready(p))
            .filter_map(|p| arm_of(&p.name_any(), &target).map(|arm| (p.name_any(), arm)))
            .collect();
        names.sort();
        for (name, is_primary) in names {
            let slot = if is_primary {
                &mut primary
            } else {
                &mut canary
            };
            slot.get_or_insert(name);
        }
        let mut targets = Vec::new();
        for (pod, address) in [(primary, primary_app), (canary, canary_app)] {
            if let Some(pod) = pod {
                targets.push(ScrapeTarget {
                    address,
                    namespace: namespace.clone(),
                    pod,
                });
            }
        }
        let key: Vec<(String, String)> = targets
            .iter()
            .map(|t| (t.address.to_string(), t.pod.clone()))
            .collect();
        if written.as_ref() == Some(&key) {
            continue;
        }
        match write_targets(&targets_file, &targets) {
            Ok(()) => {
                tracing::info!(targets = ?key, "gateway scrape targets");
                written = Some(key);
            }
            Err(e) => tracing::warn!(error = %e, "cannot write the scrape targets"),
        }
    }
}

/// The (primary, canary) weights of an HTTPRoute's weighted rule (the one without header
/// matches), by the backends' `-primary` and `-canary` names: for views and tests.
pub fn read_weights(route: &serde_json::Value) -> Option<(u32, u32)> {
    let rules = route["spec"]["rules"].as_array()?;
    let rule = rules
        .iter()
        .rev()
        .find(|r| r.get("matches").is_none() || r["matches"][0]["headers"].is_null())?;
    let mut primary = None;
    let mut canary = None;
    for backend in rule["backendRefs"].as_array()? {
        let weight = backend["weight"].as_u64().unwrap_or(1) as u32;
        match backend["name"].as_str()? {
            name if name.ends_with("-primary") => primary = Some(weight),
            name if name.ends_with("-canary") => canary = Some(weight),
            _ => {}
        }
    }
    Some((primary?, canary.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_told_apart_by_name() {
        assert_eq!(
            arm_of("podinfo-primary-7d9f8b6c5d-x2x9k", "podinfo"),
            Some(true)
        );
        assert_eq!(arm_of("podinfo-6c8d7f9b5-q4w8z", "podinfo"), Some(false));
        assert_eq!(arm_of("podinfo-other-6c8d7f9b5-q4w8z", "podinfo"), None);
        assert_eq!(arm_of("frontend-6c8d7f9b5-q4w8z", "podinfo"), None);
    }
}
