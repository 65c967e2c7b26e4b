//! Gateway API for service meshes (GAMMA): the Gateway API router's HTTPRoute, attached to the
//! apex Service instead of Gateways, which is how Linkerd, Istio ambient and Cilium shift
//! traffic between services inside the mesh. The route is the same object with the same weights
//! and matches; only its parent (and no hostnames) differ.

use std::sync::Arc;

use super::Registration;
use super::gateway_api::{self, Attach, GatewayApi};

pub const REGISTRATION: Registration = Registration {
    build: |cluster| Arc::new(GatewayApi::new(cluster, Attach::ApexService)),
    resources: gateway_api::REGISTRATION.resources,
};

/// The mesh HTTPRoute that sends traffic as `routes` says.
pub fn mesh_route(
    canary: &sluice_core::api::Canary,
    routes: sluice_core::rollout::Routes,
) -> Result<serde_json::Value, super::RouterError> {
    gateway_api::attached_route(canary, routes, Attach::ApexService)
}
