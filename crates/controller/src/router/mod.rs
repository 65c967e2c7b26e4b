//! Traffic: a small trait, one file per router, chosen by name. Adding a router is adding a file
//! and a line in `for_provider`.

use crate::cluster::ClusterError;
use crate::providers::BoxFuture;
use sluice_core::api::Canary;
use sluice_core::rollout::Routes;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RouterError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{0}")]
    Invalid(String),
}

pub trait Router: Send + Sync {
    /// Creates the router's objects for a Canary if missing, with all traffic to the primary.
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>>;

    /// Points traffic.
    fn set_routes<'a>(
        &'a self,
        canary: &'a Canary,
        routes: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>>;

    /// Where traffic points now.
    fn get_routes<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<Routes, RouterError>>;
}

pub mod gateway_api;
pub mod kubernetes;

/// The provider names `for_provider` knows.
pub const PROVIDERS: [&str; 3] = ["gatewayapi", "gatewayapi:v1", "kubernetes"];

/// The router for a provider name, as Flagger's `--mesh-provider` / `spec.provider` spell them.
pub fn for_provider(
    provider: &str,
    cluster: std::sync::Arc<dyn crate::cluster::Cluster>,
) -> Result<Box<dyn Router>, RouterError> {
    match provider {
        "gatewayapi" | "gatewayapi:v1" => Ok(Box::new(gateway_api::GatewayApi::new(cluster))),
        "kubernetes" => Ok(Box::new(kubernetes::KubernetesService::new(cluster))),
        other => Err(RouterError::Invalid(format!(
            "unknown router provider {other:?}; known providers: {}",
            PROVIDERS.join(", ")
        ))),
    }
}
