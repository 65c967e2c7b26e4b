//! Traffic: a small trait, one file per router, chosen by `spec.provider`. Adding a router is a
//! file here, a `RouterKind` variant in sluice-core and a line in `registration`.

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

    /// The Canary is being deleted with `revertOnDeletion` and the apex Service already selects
    /// the target's pods: sends all traffic through the apex Service and keeps (un-owns) the
    /// objects that carry it, so that they outlive the Canary.
    fn finalize<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>>;
}

pub mod gamma;
pub mod gateway_api;
pub mod istio;
pub mod kubernetes;
pub mod nginx;
pub mod smi;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::cluster::resources::{self, Resource};
use sluice_core::api::RouterKind;

/// What the controller needs to know of a router: how to build it over a cluster, and the
/// resources it reads and writes beyond `resources::CORE` (the API-server adapter's table and the
/// chart's ClusterRole follow from these).
#[derive(Clone, Copy)]
pub struct Registration {
    pub build: fn(Arc<dyn Cluster>) -> Arc<dyn Router>,
    pub resources: &'static [Resource],
}

/// The router of each provider: one line per router. The match is exhaustive, so a new
/// `RouterKind` does not compile until it is registered here.
pub fn registration(kind: RouterKind) -> Registration {
    match kind {
        RouterKind::GatewayApi | RouterKind::GatewayApiV1 => gateway_api::REGISTRATION,
        RouterKind::Kubernetes => kubernetes::REGISTRATION,
        RouterKind::Nginx => nginx::REGISTRATION,
        RouterKind::Istio => istio::REGISTRATION,
        RouterKind::Gamma => gamma::REGISTRATION,
        RouterKind::Smi | RouterKind::Linkerd => smi::REGISTRATION,
    }
}

/// The Canary's namespace, `default` for one built without.
pub(crate) fn namespace(canary: &Canary) -> String {
    kube::ResourceExt::namespace(canary).unwrap_or_else(|| "default".into())
}

/// The ownerReferences that make a router's object go with its Canary. A Canary read from the
/// API server always has a uid; one built in process (a test, a dry run) has none, and an owner
/// reference without a uid would be refused, so there is none then.
pub(crate) fn owners(canary: &Canary) -> Option<serde_json::Value> {
    canary
        .metadata
        .uid
        .as_deref()
        .map(|uid| serde_json::json!([crate::cluster::objects::owner_reference(canary, uid)]))
}

/// Only routers that can copy traffic take `Routes::mirror`; the others say so rather than
/// analyse a canary that receives nothing.
pub fn refuse_mirror(routes: Routes, router: &str) -> Result<(), RouterError> {
    if routes.mirror {
        return Err(RouterError::Invalid(format!(
            "spec.analysis.mirror: the {router} router cannot mirror traffic; use provider istio \
             or remove mirror"
        )));
    }
    Ok(())
}

/// One header condition of `analysis.match`, as each router spells it.
pub(crate) enum HeaderMatch<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Regex(&'a str),
}

/// `analysis.match`, checked once for every router: entries are alternatives, the headers of an
/// entry all apply (as in Flagger). Each entry is `one` of its (header, condition) pairs. Refused:
/// no entry (nothing would go to the canary), an entry without headers or a header without a
/// condition (it would match every request and send all traffic to the canary).
pub(crate) fn header_matches<T>(
    canary: &Canary,
    one: impl Fn(Vec<(&str, HeaderMatch<'_>)>) -> T,
) -> Result<Vec<T>, RouterError> {
    let entries = &canary.spec.analysis.matches;
    if entries.is_empty() {
        return Err(RouterError::Invalid(
            "A/B testing needs analysis.match: without it there is nothing to send to the canary"
                .into(),
        ));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        if entry.headers.is_empty() {
            return Err(RouterError::Invalid(format!(
                "analysis.match[{index}] has no headers: it would send every request to the canary"
            )));
        }
        let mut headers = Vec::with_capacity(entry.headers.len());
        for (name, matcher) in &entry.headers {
            let condition = match (&matcher.exact, &matcher.prefix, &matcher.regex) {
                (Some(exact), _, _) => HeaderMatch::Exact(exact),
                (None, Some(prefix), _) => HeaderMatch::Prefix(prefix),
                (None, None, Some(regex)) => HeaderMatch::Regex(regex),
                (None, None, None) => {
                    return Err(RouterError::Invalid(format!(
                        "analysis.match[{index}].headers.{name} needs exact, prefix or regex"
                    )));
                }
            };
            headers.push((name.as_str(), condition));
        }
        out.push(one(headers));
    }
    Ok(out)
}

/// How a router reads the split back from the one object that carries it.
pub type ReadRoutes = fn(&Canary, &serde_json::Value) -> Result<Routes, RouterError>;

/// The split the router's object `reference` holds now, for a reconcile that rewrites it: an
/// existing object keeps its weights (a release may be under way); a missing one, or one whose
/// weights cannot be read, starts on the primary, the state it is created in.
pub(crate) async fn kept_routes(
    cluster: &dyn Cluster,
    reference: &crate::cluster::ObjectRef,
    canary: &Canary,
    read: ReadRoutes,
) -> Result<Routes, RouterError> {
    Ok(match cluster.get(reference).await? {
        Some(existing) => read(canary, &existing).unwrap_or_else(|_| Routes::all_primary()),
        None => Routes::all_primary(),
    })
}

/// Where the router's object `reference` sends traffic; an error when it does not exist.
pub(crate) async fn stored_routes(
    cluster: &dyn Cluster,
    reference: crate::cluster::ObjectRef,
    canary: &Canary,
    read: ReadRoutes,
) -> Result<Routes, RouterError> {
    match cluster.get(&reference).await? {
        Some(object) => read(canary, &object),
        None => Err(RouterError::Invalid(format!(
            "{reference} does not exist: the router has not been reconciled"
        ))),
    }
}

/// `part` of `total` as a rounded percentage (`total` > 0).
pub(crate) fn percent(part: u64, total: u64) -> u32 {
    u32::try_from((part * 100 + total / 2) / total).unwrap_or(100)
}

/// The router of `kind` over `cluster`.
pub fn build(kind: RouterKind, cluster: Arc<dyn Cluster>) -> Arc<dyn Router> {
    (registration(kind).build)(cluster)
}

/// Every resource sluice manages: the core ones and each router's, once each.
pub fn managed_resources() -> Vec<Resource> {
    let mut all: Vec<Resource> = resources::CORE.to_vec();
    for kind in RouterKind::ALL {
        for resource in registration(kind).resources {
            if !all.contains(resource) {
                all.push(*resource);
            }
        }
    }
    all
}

/// The routers of one controller, each built once, and which one a Canary gets.
#[derive(Clone)]
pub enum Routers {
    /// Every registered router; Canaries without `spec.provider` get `default` (the
    /// controller's `--router`).
    ByProvider {
        default: RouterKind,
        routers: BTreeMap<RouterKind, Arc<dyn Router>>,
    },
    /// One router for every Canary whatever its provider: a router that steers traffic no
    /// Kubernetes object describes, such as the demo's local proxy.
    Only(Arc<dyn Router>),
}

impl Routers {
    /// Every registered router over `cluster`, with `default` for Canaries without a provider.
    pub fn new(cluster: Arc<dyn Cluster>, default: RouterKind) -> Self {
        let routers = RouterKind::ALL
            .into_iter()
            .map(|kind| (kind, build(kind, cluster.clone())))
            .collect();
        Self::ByProvider { default, routers }
    }

    /// The same routers with another default; `Only` has none to change.
    pub fn with_default(self, kind: RouterKind) -> Self {
        match self {
            Self::ByProvider { routers, .. } => Self::ByProvider {
                default: kind,
                routers,
            },
            only @ Self::Only(_) => only,
        }
    }

    /// The router of `canary`: its `spec.provider`, else the default.
    pub fn for_canary(&self, canary: &Canary) -> Result<Arc<dyn Router>, RouterError> {
        match self {
            Self::Only(router) => Ok(router.clone()),
            Self::ByProvider { default, routers } => {
                let kind = canary.spec.provider.unwrap_or(*default);
                routers.get(&kind).cloned().ok_or_else(|| {
                    RouterError::Invalid(format!("no router is registered for provider {kind}"))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_router_resource_is_managed_once() {
        let all = managed_resources();
        for kind in RouterKind::ALL {
            for resource in registration(kind).resources {
                assert_eq!(
                    all.iter().filter(|r| *r == resource).count(),
                    1,
                    "{resource:?}"
                );
            }
        }
        assert!(all.iter().any(|r| r.kind == "HTTPRoute"));
    }
}
