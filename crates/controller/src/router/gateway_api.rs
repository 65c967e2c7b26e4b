//! Gateway API: one HTTPRoute named after the apex Service, attached to the Canary's
//! `service.gatewayRefs`, that splits traffic between `<service>-primary` and `<service>-canary`
//! by backend weight, and for A/B testing first sends the requests matching `analysis.match` to
//! the canary.

use std::sync::Arc;

use kube::ResourceExt;
use serde_json::{Map, Value, json};

use super::{
    HeaderMatch, Registration, Router, RouterError, kept_routes, namespace, owners, percent,
    refuse_mirror, stored_routes,
};
use crate::cluster::objects::primary_name;
use crate::cluster::resources::Resource;
use crate::cluster::{Cluster, ObjectRef};
use crate::providers::BoxFuture;
use sluice_core::api::{Canary, ServiceSpec};
use sluice_core::rollout::Routes;

pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";

pub const REGISTRATION: Registration = Registration {
    build: |cluster| Arc::new(GatewayApi::new(cluster, Attach::Gateways)),
    resources: &[Resource::new(API_VERSION, "HTTPRoute", "httproutes")],
};

/// What the HTTPRoute attaches to: the Canary's Gateways (north-south), or the apex Service
/// itself, the way service meshes read HTTPRoutes for traffic inside the mesh (GAMMA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    Gateways,
    ApexService,
}

pub struct GatewayApi {
    pub cluster: Arc<dyn Cluster>,
    pub attach: Attach,
}

impl GatewayApi {
    pub fn new(cluster: Arc<dyn Cluster>, attach: Attach) -> Self {
        Self { cluster, attach }
    }
}

fn route_ref(canary: &Canary) -> ObjectRef {
    ObjectRef::new(
        API_VERSION,
        "HTTPRoute",
        &namespace(canary),
        &canary.spec.service_name(),
    )
}

fn service(canary: &Canary) -> Result<&ServiceSpec, RouterError> {
    canary.spec.service.as_ref().ok_or_else(|| {
        RouterError::Invalid(format!(
            "Canary {}/{} has no spec.service: the Gateway API router needs its port",
            namespace(canary),
            canary.name_any()
        ))
    })
}

fn canary_service(apex: &str) -> String {
    format!("{apex}-canary")
}

/// The HTTPRoute that sends traffic as `routes` says, attached to the Canary's Gateways.
pub fn http_route(canary: &Canary, routes: Routes) -> Result<Value, RouterError> {
    attached_route(canary, routes, Attach::Gateways)
}

/// The HTTPRoute that sends traffic as `routes` says, attached as `attach` says.
pub fn attached_route(
    canary: &Canary,
    routes: Routes,
    attach: Attach,
) -> Result<Value, RouterError> {
    refuse_mirror(routes, "Gateway API")?;
    let service = service(canary)?;
    let apex = canary.spec.service_name();
    // Gateways answer 500 to a rule whose backends all weigh 0: refuse rather than drop traffic.
    if routes.primary + routes.canary == 0 {
        return Err(RouterError::Invalid(format!(
            "refusing to route no traffic to either arm of HTTPRoute {}/{apex}",
            namespace(canary)
        )));
    }
    let backends = |primary: u32, canary_weight: u32| {
        json!([
            {"name": primary_name(&apex), "port": service.port, "weight": primary},
            {"name": canary_service(&apex), "port": service.port, "weight": canary_weight},
        ])
    };
    let mut rules = Vec::new();
    if routes.canary_match {
        // Both backends are listed, the primary at weight 0, so that every rule has the same shape
        // and switching a rule between arms is a change of weights only.
        rules.push(json!({
            "matches": header_matches(canary)?,
            "backendRefs": backends(0, 100),
        }));
    }
    rules.push(json!({"backendRefs": backends(routes.primary, routes.canary)}));
    Ok(route(canary, service, attach, rules, owners(canary)))
}

/// The HTTPRoute left when the Canary is deleted with `revertOnDeletion`: every request to the
/// apex Service, which then selects the target's pods, and no owner (an empty list, so that
/// applying it removes the one sluice set).
pub fn handed_back_route(canary: &Canary, attach: Attach) -> Result<Value, RouterError> {
    let service = service(canary)?;
    let backend = json!([{"name": canary.spec.service_name(), "port": service.port}]);
    let rules = vec![json!({"backendRefs": backend})];
    Ok(route(canary, service, attach, rules, Some(json!([]))))
}

/// An HTTPRoute named after the apex Service with `rules`, attached as `attach` says;
/// `owners` as its ownerReferences, left out when `None`.
fn route(
    canary: &Canary,
    service: &ServiceSpec,
    attach: Attach,
    rules: Vec<Value>,
    owners: Option<Value>,
) -> Value {
    let mut spec = Map::new();
    match attach {
        Attach::Gateways => {
            spec.insert("parentRefs".into(), Value::Array(gateway_parents(service)));
            if !service.hosts.is_empty() {
                spec.insert("hostnames".into(), json!(service.hosts));
            }
        }
        // A mesh route has no hostnames: the parent Service is what it matches.
        Attach::ApexService => {
            let parent = json!({"group": "", "kind": "Service",
                "name": canary.spec.service_name(), "port": service.port});
            spec.insert("parentRefs".into(), json!([parent]));
        }
    }
    spec.insert("rules".into(), Value::Array(rules));

    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(canary.spec.service_name()));
    metadata.insert("namespace".into(), json!(namespace(canary)));
    if let Some(owners) = owners {
        metadata.insert("ownerReferences".into(), owners);
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": Value::Object(metadata),
        "spec": Value::Object(spec),
    })
}

/// The Canary's `service.gatewayRefs` as parentRefs.
fn gateway_parents(service: &ServiceSpec) -> Vec<Value> {
    service
        .gateway_refs
        .iter()
        .map(|gateway| {
            let mut parent = Map::new();
            parent.insert("name".into(), json!(gateway.name));
            if let Some(ns) = &gateway.namespace {
                parent.insert("namespace".into(), json!(ns));
            }
            if let Some(section) = &gateway.section_name {
                parent.insert("sectionName".into(), json!(section));
            }
            // Flagger writes the core group as `core`; the Gateway API spells it "".
            if let Some(group) = &gateway.group {
                let group = if group == "core" { "" } else { group.as_str() };
                parent.insert("group".into(), json!(group));
            }
            if let Some(kind) = &gateway.kind {
                parent.insert("kind".into(), json!(kind));
            }
            if let Some(port) = gateway.port {
                parent.insert("port".into(), json!(port));
            }
            Value::Object(parent)
        })
        .collect()
}

/// `analysis.match` as HTTPRoute matches. Gateway API header matches are Exact or
/// RegularExpression; a prefix becomes an anchored regular expression.
fn header_matches(canary: &Canary) -> Result<Value, RouterError> {
    super::header_matches(canary, |headers| {
        let headers: Vec<Value> = headers
            .into_iter()
            .map(|(name, condition)| {
                let (kind, value) = match condition {
                    HeaderMatch::Exact(exact) => ("Exact", exact.to_string()),
                    HeaderMatch::Prefix(prefix) => {
                        ("RegularExpression", format!("^{}.*", quote_regex(prefix)))
                    }
                    HeaderMatch::Regex(regex) => ("RegularExpression", regex.to_string()),
                };
                json!({"name": name, "type": kind, "value": value})
            })
            .collect();
        json!({"headers": headers})
    })
    .map(Value::Array)
}

/// Escapes the metacharacters of RE2 and ECMAScript-like syntaxes, the dialects gateways use.
pub fn quote_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether a rule selects requests by header (the A/B rule) rather than taking the rest. Path
/// matches do not count: API servers default a rule without matches to `PathPrefix /`.
fn has_header_match(rule: &Value) -> bool {
    rule.get("matches")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|m| {
            m.get("headers")
                .and_then(Value::as_array)
                .is_some_and(|h| !h.is_empty())
        })
}

/// The weight a rule gives a backend: 0 when it is not listed, 1 when listed without a weight
/// (the Gateway API default).
fn weight(rule: &Value, backend: &str) -> u64 {
    rule.get("backendRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|b| b.get("name").and_then(Value::as_str) == Some(backend))
        .map(|b| b.get("weight").and_then(Value::as_u64).unwrap_or(1))
        .sum()
}

/// Where a stored HTTPRoute sends traffic. Weights are relative in the Gateway API; they are read
/// back as percentages.
pub fn routes_of(canary: &Canary, route: &Value) -> Result<Routes, RouterError> {
    let apex = canary.spec.service_name();
    let (primary, canary_backend) = (primary_name(&apex), canary_service(&apex));
    let rules: Vec<&Value> = route
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let canary_match = rules
        .iter()
        .any(|r| has_header_match(r) && weight(r, &canary_backend) > 0);
    let unreadable =
        |why: &str| RouterError::Invalid(format!("HTTPRoute {}/{} {why}", namespace(canary), apex));
    // The last rule without header matches takes the requests no other rule took.
    let rest = rules
        .iter()
        .rev()
        .find(|r| !has_header_match(r))
        .ok_or_else(|| unreadable("has no rule for requests without matching headers"))?;
    let (p, c) = (weight(rest, &primary), weight(rest, &canary_backend));
    let total = p + c;
    if total == 0 {
        return Err(unreadable(&format!(
            "sends no traffic to {primary} or {canary_backend}"
        )));
    }
    let canary_percent = percent(c, total);
    Ok(Routes {
        primary: 100 - canary_percent,
        canary: canary_percent,
        canary_match,
        mirror: false,
    })
}

impl Router for GatewayApi {
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            // The route keeps its weights but takes the Canary's current gateways and hosts.
            let routes =
                kept_routes(self.cluster.as_ref(), &route_ref(canary), canary, routes_of).await?;
            self.cluster
                .apply(attached_route(canary, routes, self.attach)?)
                .await?;
            Ok(())
        })
    }

    fn set_routes<'a>(
        &'a self,
        canary: &'a Canary,
        routes: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            self.cluster
                .apply(attached_route(canary, routes, self.attach)?)
                .await?;
            Ok(())
        })
    }

    fn finalize<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            self.cluster
                .apply(handed_back_route(canary, self.attach)?)
                .await?;
            Ok(())
        })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<Routes, RouterError>> {
        Box::pin(stored_routes(
            self.cluster.as_ref(),
            route_ref(canary),
            canary,
            routes_of,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_quoted() {
        assert_eq!(quote_regex("v1.2+(beta)"), r"v1\.2\+\(beta\)");
        assert_eq!(quote_regex("plain"), "plain");
    }
}
