//! SMI: a TrafficSplit (`split.smi-spec.io/v1alpha2`, the version Linkerd's SMI extension
//! serves) named after the apex Service, that splits the apex's traffic between
//! `<service>-primary` and `<service>-canary` by weight. SMI's splits have no header matches
//! and no mirroring: A/B testing and mirroring are refused with the field to change.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{
    Registration, Router, RouterError, kept_routes, namespace, owners, percent, refuse_mirror,
    stored_routes,
};
use crate::cluster::objects::primary_name;
use crate::cluster::resources::Resource;
use crate::cluster::{Cluster, ObjectRef};
use crate::providers::BoxFuture;
use sluice_core::api::Canary;
use sluice_core::rollout::Routes;

pub const API_VERSION: &str = "split.smi-spec.io/v1alpha2";

pub const REGISTRATION: Registration = Registration {
    build: |cluster| Arc::new(Smi::new(cluster)),
    resources: &[Resource::new(API_VERSION, "TrafficSplit", "trafficsplits")],
};

pub struct Smi {
    pub cluster: Arc<dyn Cluster>,
}

impl Smi {
    pub fn new(cluster: Arc<dyn Cluster>) -> Self {
        Self { cluster }
    }
}

fn split_ref(canary: &Canary) -> ObjectRef {
    ObjectRef::new(
        API_VERSION,
        "TrafficSplit",
        &namespace(canary),
        &canary.spec.service_name(),
    )
}

fn canary_service(apex: &str) -> String {
    format!("{apex}-canary")
}

/// The TrafficSplit that sends traffic as `routes` says.
pub fn traffic_split(canary: &Canary, routes: Routes) -> Result<Value, RouterError> {
    refuse_mirror(routes, "SMI")?;
    if routes.canary_match {
        return Err(RouterError::Invalid(
            "spec.analysis.match: an SMI TrafficSplit cannot route by header or cookie; use \
             provider istio, gamma or nginx for A/B testing"
                .into(),
        ));
    }
    let apex = canary.spec.service_name();
    if routes.primary + routes.canary == 0 {
        return Err(RouterError::Invalid(format!(
            "refusing to route no traffic to either arm of TrafficSplit {}/{apex}",
            namespace(canary)
        )));
    }
    let backends = json!([
        {"service": primary_name(&apex), "weight": routes.primary},
        {"service": canary_service(&apex), "weight": routes.canary},
    ]);
    Ok(split(canary, backends, owners(canary)))
}

/// The TrafficSplit left when the Canary is deleted with `revertOnDeletion`: all of the apex's
/// traffic to the apex Service itself, which then selects the target's pods, and no owner.
pub fn handed_back_split(canary: &Canary) -> Value {
    let apex = canary.spec.service_name();
    split(
        canary,
        json!([{"service": apex, "weight": 100}]),
        Some(json!([])),
    )
}

fn split(canary: &Canary, backends: Value, owners: Option<Value>) -> Value {
    let apex = canary.spec.service_name();
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(apex));
    metadata.insert("namespace".into(), json!(namespace(canary)));
    if let Some(owners) = owners {
        metadata.insert("ownerReferences".into(), owners);
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "TrafficSplit",
        "metadata": Value::Object(metadata),
        "spec": {"service": apex, "backends": backends},
    })
}

/// Where a stored TrafficSplit sends traffic; weights are relative.
pub fn routes_of(canary: &Canary, split: &Value) -> Result<Routes, RouterError> {
    let apex = canary.spec.service_name();
    let (primary, canary_backend) = (primary_name(&apex), canary_service(&apex));
    let weight = |service: &str| -> u64 {
        split
            .pointer("/spec/backends")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|b| b.get("service").and_then(Value::as_str) == Some(service))
            .filter_map(|b| b.get("weight").and_then(Value::as_u64))
            .sum()
    };
    let (p, c) = (weight(&primary), weight(&canary_backend));
    if p + c == 0 {
        return Err(RouterError::Invalid(format!(
            "TrafficSplit {}/{apex} sends no traffic to {primary} or {canary_backend}",
            namespace(canary)
        )));
    }
    let canary_percent = percent(c, p + c);
    Ok(Routes {
        primary: 100 - canary_percent,
        canary: canary_percent,
        canary_match: false,
        mirror: false,
    })
}

impl Router for Smi {
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            let routes =
                kept_routes(self.cluster.as_ref(), &split_ref(canary), canary, routes_of).await?;
            self.cluster.apply(traffic_split(canary, routes)?).await?;
            Ok(())
        })
    }

    fn set_routes<'a>(
        &'a self,
        canary: &'a Canary,
        routes: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            self.cluster.apply(traffic_split(canary, routes)?).await?;
            Ok(())
        })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<Routes, RouterError>> {
        Box::pin(stored_routes(
            self.cluster.as_ref(),
            split_ref(canary),
            canary,
            routes_of,
        ))
    }

    fn finalize<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            self.cluster.apply(handed_back_split(canary)).await?;
            Ok(())
        })
    }
}
