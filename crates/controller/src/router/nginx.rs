//! ingress-nginx: beside the user's Ingress (`spec.ingressRef`, which sends traffic to the apex
//! Service), a `<ingress>-canary` copy of it that sends to `<service>-canary`, marked as a canary
//! with `nginx.ingress.kubernetes.io/canary`. Its `canary-weight` is the canary's share; for A/B
//! testing `canary-by-header` (with `-value` or `-pattern`) and `canary-by-cookie` send the
//! matching requests to the canary, as Flagger maps `analysis.match`. The user's Ingress is
//! never written.

use std::sync::Arc;

use kube::ResourceExt;
use serde_json::{Map, Value, json};

use super::{Registration, Router, RouterError};
use crate::cluster::resources::Resource;
use crate::cluster::{Cluster, ObjectRef};
use crate::providers::BoxFuture;
use sluice_core::api::{Canary, StringMatch};
use sluice_core::rollout::Routes;

pub const API_VERSION: &str = "networking.k8s.io/v1";

pub const REGISTRATION: Registration = Registration {
    build: |cluster| Arc::new(Nginx::new(cluster)),
    resources: &[Resource::new(API_VERSION, "Ingress", "ingresses")],
};

/// The annotations ingress-nginx reads on a canary Ingress.
const PREFIX: &str = "nginx.ingress.kubernetes.io/canary";
const CANARY: &str = "nginx.ingress.kubernetes.io/canary";
const WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";
const BY_HEADER: &str = "nginx.ingress.kubernetes.io/canary-by-header";
const BY_HEADER_VALUE: &str = "nginx.ingress.kubernetes.io/canary-by-header-value";
const BY_HEADER_PATTERN: &str = "nginx.ingress.kubernetes.io/canary-by-header-pattern";
const BY_COOKIE: &str = "nginx.ingress.kubernetes.io/canary-by-cookie";

pub struct Nginx {
    pub cluster: Arc<dyn Cluster>,
}

impl Nginx {
    pub fn new(cluster: Arc<dyn Cluster>) -> Self {
        Self { cluster }
    }

    /// The user's Ingress, which must exist.
    async fn ingress(&self, canary: &Canary) -> Result<Value, RouterError> {
        let reference = ingress_ref(canary)?;
        self.cluster.get(&reference).await?.ok_or_else(|| {
            RouterError::Invalid(format!(
                "{reference} (spec.ingressRef) does not exist: the nginx router copies it for the \
                 canary"
            ))
        })
    }
}

fn namespace(canary: &Canary) -> String {
    canary.namespace().unwrap_or_else(|| "default".into())
}

fn ingress_ref(canary: &Canary) -> Result<ObjectRef, RouterError> {
    let reference = canary.spec.ingress_ref.as_ref().ok_or_else(|| {
        RouterError::Invalid(format!(
            "the nginx router needs spec.ingressRef: the Ingress that sends traffic to Service {}",
            canary.spec.service_name()
        ))
    })?;
    Ok(ObjectRef::new(
        API_VERSION,
        "Ingress",
        &namespace(canary),
        &reference.name,
    ))
}

fn canary_ingress_ref(canary: &Canary) -> Result<ObjectRef, RouterError> {
    let user = ingress_ref(canary)?;
    Ok(ObjectRef::new(
        API_VERSION,
        "Ingress",
        &user.namespace,
        &format!("{}-canary", user.name),
    ))
}

/// Points every backend of `spec` that names `from` at `to`; how many it changed.
fn redirect_backends(spec: &mut Value, from: &str, to: &str) -> usize {
    let mut changed = 0;
    let mut redirect = |backend: Option<&mut Value>| {
        if let Some(name) = backend.and_then(|b| b.pointer_mut("/service/name"))
            && name.as_str() == Some(from)
        {
            *name = json!(to);
            changed += 1;
        }
    };
    redirect(spec.get_mut("defaultBackend"));
    for rule in spec
        .get_mut("rules")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        for path in rule
            .pointer_mut("/http/paths")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            redirect(path.get_mut("backend"));
        }
    }
    changed
}

/// The canary Ingress for `routes`, from the user's Ingress.
pub fn canary_ingress(canary: &Canary, user: &Value, routes: Routes) -> Result<Value, RouterError> {
    let reference = canary_ingress_ref(canary)?;
    let apex = canary.spec.service_name();
    let mut spec = user.get("spec").cloned().unwrap_or_else(|| json!({}));
    if redirect_backends(&mut spec, &apex, &format!("{apex}-canary")) == 0 {
        return Err(RouterError::Invalid(format!(
            "{} (spec.ingressRef) sends no traffic to Service {apex}: point its backends at the \
             apex Service, which sluice keeps on the primary",
            ingress_ref(canary)?
        )));
    }
    // The user's own annotations (rewrites, timeouts, ...) apply to the canary's share too;
    // canary annotations of their own would fight sluice's.
    let mut annotations: Map<String, Value> = user
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    annotations.retain(|key, _| {
        !key.starts_with(PREFIX) && key != "kubectl.kubernetes.io/last-applied-configuration"
    });
    annotations.insert(CANARY.into(), json!("true"));
    annotations.insert(WEIGHT.into(), json!(routes.canary.min(100).to_string()));
    if routes.canary_match {
        for (key, value) in header_annotations(canary)? {
            annotations.insert(key.into(), json!(value));
        }
    }
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(reference.name));
    metadata.insert("namespace".into(), json!(reference.namespace));
    metadata.insert("annotations".into(), Value::Object(annotations));
    if let Some(owners) = super::owners(canary) {
        metadata.insert("ownerReferences".into(), owners);
    }
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": "Ingress",
        "metadata": Value::Object(metadata),
        "spec": spec,
    }))
}

/// `analysis.match` as ingress-nginx annotations, as Flagger maps it: the `cookie` header's
/// exact value names the cookie (`canary-by-cookie`; the request goes to the canary when it is
/// `always`), any other header becomes `canary-by-header` with an exact value or a pattern.
/// ingress-nginx has one header rule and one cookie rule per Ingress.
fn header_annotations(canary: &Canary) -> Result<Vec<(&'static str, String)>, RouterError> {
    let mut header: Option<(String, &StringMatch)> = None;
    let mut cookie: Option<String> = None;
    for (index, request) in canary.spec.analysis.matches.iter().enumerate() {
        for (name, matcher) in &request.headers {
            let field = format!("analysis.match[{index}].headers.{name}");
            if name.eq_ignore_ascii_case("cookie") {
                let exact = matcher.exact.clone().ok_or_else(|| {
                    RouterError::Invalid(format!(
                        "{field}: the nginx router matches a cookie by its name only; write the \
                         cookie's name as exact"
                    ))
                })?;
                if cookie.replace(exact).is_some() {
                    return Err(one_rule("cookie", &field));
                }
            } else if header.replace((name.clone(), matcher)).is_some() {
                return Err(one_rule("header", &field));
            }
        }
    }
    let mut out = Vec::new();
    if let Some((name, matcher)) = header {
        let field = format!("analysis.match headers.{name}");
        out.push((BY_HEADER, name.clone()));
        if let Some(exact) = &matcher.exact {
            out.push((BY_HEADER_VALUE, exact.clone()));
        } else if let Some(regex) = &matcher.regex {
            out.push((BY_HEADER_PATTERN, regex.clone()));
        } else if let Some(prefix) = &matcher.prefix {
            out.push((
                BY_HEADER_PATTERN,
                format!("^{}.*", super::gateway_api::quote_regex(prefix)),
            ));
        } else {
            return Err(RouterError::Invalid(format!(
                "{field} needs exact, prefix or regex"
            )));
        }
    }
    if let Some(name) = cookie {
        out.push((BY_COOKIE, name));
    }
    if out.is_empty() {
        return Err(RouterError::Invalid(
            "A/B testing needs analysis.match: without it there is nothing to send to the canary"
                .into(),
        ));
    }
    Ok(out)
}

fn one_rule(what: &str, field: &str) -> RouterError {
    RouterError::Invalid(format!(
        "{field}: ingress-nginx routes by one {what} only; keep one {what} match in analysis.match"
    ))
}

/// Where a stored canary Ingress sends traffic.
pub fn routes_of(canary_ingress: &Value) -> Result<Routes, RouterError> {
    let annotation = |key: &str| {
        canary_ingress
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    };
    let weight = annotation(WEIGHT).unwrap_or("0");
    let canary = weight
        .parse::<u32>()
        .ok()
        .filter(|w| *w <= 100)
        .ok_or_else(|| {
            RouterError::Invalid(format!(
                "the canary Ingress has {WEIGHT} {weight:?}, not a percentage"
            ))
        })?;
    Ok(Routes {
        primary: 100 - canary,
        canary,
        canary_match: annotation(BY_HEADER).is_some() || annotation(BY_COOKIE).is_some(),
        mirror: false,
    })
}

impl Router for Nginx {
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            let user = self.ingress(canary).await?;
            // An existing canary Ingress keeps its weight (a release may be under way) but takes
            // the user's current rules.
            let routes = match self.cluster.get(&canary_ingress_ref(canary)?).await? {
                Some(existing) => routes_of(&existing).unwrap_or_else(|_| Routes::all_primary()),
                None => Routes::all_primary(),
            };
            self.cluster
                .apply(canary_ingress(canary, &user, routes)?)
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
            super::refuse_mirror(routes, "nginx")?;
            let user = self.ingress(canary).await?;
            self.cluster
                .apply(canary_ingress(canary, &user, routes)?)
                .await?;
            Ok(())
        })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<Routes, RouterError>> {
        Box::pin(async move {
            let reference = canary_ingress_ref(canary)?;
            match self.cluster.get(&reference).await? {
                Some(ingress) => routes_of(&ingress),
                None => Err(RouterError::Invalid(format!(
                    "{reference} does not exist: the router has not been reconciled"
                ))),
            }
        })
    }

    /// The user's Ingress already sends everything to the apex Service, which the controller
    /// has handed back to the target; the canary Ingress goes with the Canary, at weight 0 so
    /// that nothing reaches `<service>-canary` before it does.
    fn finalize<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        self.set_routes(canary, Routes::all_primary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_read_back_and_bad_ones_refused() {
        let ingress = |weight: &str| json!({"metadata": {"annotations": {WEIGHT: weight}}});
        assert_eq!(
            routes_of(&ingress("30")).unwrap(),
            Routes::canary_weight(30)
        );
        assert!(routes_of(&ingress("130")).is_err());
        assert!(routes_of(&ingress("x")).is_err());
    }
}
