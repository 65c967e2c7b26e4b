//! Istio: a VirtualService named after the apex Service, for the apex host (and
//! `service.hosts`, through `service.gateways`), that weights the `<service>-primary` and
//! `<service>-canary` hosts, and a DestinationRule for each of the two, as Flagger makes them.
//! For A/B testing a first HTTP route sends the requests matching `analysis.match` to the canary;
//! for blue/green with `analysis.mirror` the primary's route also mirrors to the canary.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{
    HeaderMatch, Registration, Router, RouterError, header_matches, kept_routes, namespace, owners,
    percent, stored_routes,
};
use crate::cluster::objects::primary_name;
use crate::cluster::resources::Resource;
use crate::cluster::{Cluster, ObjectRef};
use crate::providers::BoxFuture;
use sluice_core::api::Canary;
use sluice_core::rollout::Routes;

pub const API_VERSION: &str = "networking.istio.io/v1";

pub const REGISTRATION: Registration = Registration {
    build: |cluster| Arc::new(Istio::new(cluster)),
    resources: &[
        Resource::new(API_VERSION, "VirtualService", "virtualservices"),
        Resource::new(API_VERSION, "DestinationRule", "destinationrules"),
    ],
};

pub struct Istio {
    pub cluster: Arc<dyn Cluster>,
}

impl Istio {
    pub fn new(cluster: Arc<dyn Cluster>) -> Self {
        Self { cluster }
    }
}

fn service_ref(canary: &Canary) -> ObjectRef {
    ObjectRef::new(
        API_VERSION,
        "VirtualService",
        &namespace(canary),
        &canary.spec.service_name(),
    )
}

fn canary_host(apex: &str) -> String {
    format!("{apex}-canary")
}

/// A destination of a route: a host of the namespace, on the Canary's port when it names one.
fn destination(canary: &Canary, host: &str) -> Value {
    match &canary.spec.service {
        Some(service) => json!({"host": host, "port": {"number": service.port}}),
        None => json!({"host": host}),
    }
}

/// The DestinationRule of one of the two hosts. Flagger makes them so that users can hang a
/// traffic policy on each arm; sluice's have none of their own.
pub fn destination_rule(canary: &Canary, host: &str) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(host));
    metadata.insert("namespace".into(), json!(namespace(canary)));
    if let Some(owners) = owners(canary) {
        metadata.insert("ownerReferences".into(), owners);
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": Value::Object(metadata),
        "spec": {"host": host},
    })
}

/// The VirtualService that sends traffic as `routes` says.
pub fn virtual_service(canary: &Canary, routes: Routes) -> Result<Value, RouterError> {
    let apex = canary.spec.service_name();
    if routes.primary + routes.canary == 0 {
        return Err(RouterError::Invalid(format!(
            "refusing to route no traffic to either arm of VirtualService {}/{apex}",
            namespace(canary)
        )));
    }
    let (primary, canary_arm) = (primary_name(&apex), canary_host(&apex));
    let weighted = |p: u32, c: u32| {
        json!([
            {"destination": destination(canary, &primary), "weight": p},
            {"destination": destination(canary, &canary_arm), "weight": c},
        ])
    };
    let mut http = Vec::new();
    if routes.canary_match {
        http.push(json!({"match": matches(canary)?, "route": weighted(0, 100)}));
    }
    let mut rest = Map::new();
    rest.insert("route".into(), weighted(routes.primary, routes.canary));
    if routes.mirror {
        rest.insert("mirror".into(), destination(canary, &canary_arm));
        let share = canary.spec.analysis.mirror_weight.unwrap_or(100);
        rest.insert(
            "mirrorPercentage".into(),
            json!({"value": f64::from(share)}),
        );
    }
    http.push(Value::Object(rest));
    Ok(service(canary, http, owners(canary)))
}

/// The VirtualService left when the Canary is deleted with `revertOnDeletion`: every request to
/// the apex host, whose Service then selects the target's pods, and no owner.
pub fn handed_back_service(canary: &Canary) -> Value {
    let apex = canary.spec.service_name();
    let http = vec![json!({"route": [{"destination": destination(canary, &apex)}]})];
    service(canary, http, Some(json!([])))
}

fn service(canary: &Canary, http: Vec<Value>, owners: Option<Value>) -> Value {
    let apex = canary.spec.service_name();
    let mut hosts = vec![apex.clone()];
    let mut spec = Map::new();
    if let Some(service) = &canary.spec.service {
        hosts.extend(service.hosts.iter().filter(|h| **h != apex).cloned());
        if !service.gateways.is_empty() {
            spec.insert("gateways".into(), json!(service.gateways));
        }
    }
    spec.insert("hosts".into(), json!(hosts));
    spec.insert("http".into(), Value::Array(http));
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(apex));
    metadata.insert("namespace".into(), json!(namespace(canary)));
    if let Some(owners) = owners {
        metadata.insert("ownerReferences".into(), owners);
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": Value::Object(metadata),
        "spec": Value::Object(spec),
    })
}

/// `analysis.match` as Istio HTTP matches: Istio's string matches are sluice's.
fn matches(canary: &Canary) -> Result<Value, RouterError> {
    header_matches(canary, |headers| {
        let headers: Map<String, Value> = headers
            .into_iter()
            .map(|(name, condition)| {
                let condition = match condition {
                    HeaderMatch::Exact(exact) => json!({"exact": exact}),
                    HeaderMatch::Prefix(prefix) => json!({"prefix": prefix}),
                    HeaderMatch::Regex(regex) => json!({"regex": regex}),
                };
                (name.to_string(), condition)
            })
            .collect();
        json!({"headers": headers})
    })
    .map(Value::Array)
}

/// The weight an HTTP route gives a host: 0 when it is not a destination, 100 when it is the only
/// one and has no weight (Istio's default).
fn weight(route: &Value, host: &str) -> u64 {
    let destinations: Vec<&Value> = route
        .get("route")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let alone = destinations.len() == 1;
    destinations
        .iter()
        .filter(|d| d.pointer("/destination/host").and_then(Value::as_str) == Some(host))
        .map(|d| {
            d.get("weight")
                .and_then(Value::as_u64)
                .unwrap_or(if alone { 100 } else { 0 })
        })
        .sum()
}

fn has_match(route: &Value) -> bool {
    route
        .get("match")
        .and_then(Value::as_array)
        .is_some_and(|m| !m.is_empty())
}

/// Where a stored VirtualService sends traffic.
pub fn routes_of(canary: &Canary, service: &Value) -> Result<Routes, RouterError> {
    let apex = canary.spec.service_name();
    let (primary, canary_arm) = (primary_name(&apex), canary_host(&apex));
    let http: Vec<&Value> = service
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let unreadable = |why: &str| {
        RouterError::Invalid(format!("VirtualService {}/{apex} {why}", namespace(canary)))
    };
    let canary_match = http
        .iter()
        .any(|r| has_match(r) && weight(r, &canary_arm) > 0);
    let rest = http
        .iter()
        .rev()
        .find(|r| !has_match(r))
        .ok_or_else(|| unreadable("has no HTTP route for requests without matching headers"))?;
    let (p, c) = (weight(rest, &primary), weight(rest, &canary_arm));
    if p + c == 0 {
        return Err(unreadable(&format!(
            "sends no traffic to {primary} or {canary_arm}"
        )));
    }
    let canary_percent = percent(c, p + c);
    Ok(Routes {
        primary: 100 - canary_percent,
        canary: canary_percent,
        canary_match,
        mirror: rest.pointer("/mirror/host").and_then(Value::as_str) == Some(canary_arm.as_str()),
    })
}

impl Router for Istio {
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            let apex = canary.spec.service_name();
            for host in [primary_name(&apex), canary_host(&apex)] {
                self.cluster.apply(destination_rule(canary, &host)).await?;
            }
            let routes = kept_routes(
                self.cluster.as_ref(),
                &service_ref(canary),
                canary,
                routes_of,
            )
            .await?;
            self.cluster.apply(virtual_service(canary, routes)?).await?;
            Ok(())
        })
    }

    fn set_routes<'a>(
        &'a self,
        canary: &'a Canary,
        routes: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            self.cluster.apply(virtual_service(canary, routes)?).await?;
            Ok(())
        })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<Routes, RouterError>> {
        Box::pin(stored_routes(
            self.cluster.as_ref(),
            service_ref(canary),
            canary,
            routes_of,
        ))
    }

    fn finalize<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        // The DestinationRules go with the Canary (they are owned), as do the hosts they name.
        Box::pin(async move {
            self.cluster.apply(handed_back_service(canary)).await?;
            Ok(())
        })
    }
}
