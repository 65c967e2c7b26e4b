//! Blue/green without a mesh: the apex Service's selector points at the primary's pods or at the
//! canary's, all or nothing. During the analysis the canary is reached through
//! `<service>-canary`; this router cannot split traffic or route by header.

use std::sync::Arc;

use kube::ResourceExt;
use serde_json::{Map, Value, json};

use super::{Registration, Router, RouterError};
use crate::cluster::objects::primary_name;
use crate::cluster::{Cluster, ObjectRef};
use crate::providers::BoxFuture;
use sluice_core::api::Canary;
use sluice_core::rollout::Routes;

/// Services only, which every Canary has anyway (`resources::CORE`).
pub const REGISTRATION: Registration = Registration {
    build: |cluster| Arc::new(KubernetesService::new(cluster)),
    resources: &[],
};

pub struct KubernetesService {
    pub cluster: Arc<dyn Cluster>,
}

impl KubernetesService {
    pub fn new(cluster: Arc<dyn Cluster>) -> Self {
        Self { cluster }
    }

    fn service_ref(canary: &Canary, name: &str) -> ObjectRef {
        let namespace = canary.namespace().unwrap_or_else(|| "default".into());
        ObjectRef::new("v1", "Service", &namespace, name)
    }

    /// A Service the bootstrap creates; its absence is an error, not something to fix here.
    async fn service(&self, canary: &Canary, name: &str) -> Result<Value, RouterError> {
        let reference = Self::service_ref(canary, name);
        self.cluster.get(&reference).await?.ok_or_else(|| {
            RouterError::Invalid(format!(
                "{reference} does not exist: the Canary's Services have not been created yet"
            ))
        })
    }

    /// The selectors of the apex, primary and canary Services.
    async fn selectors(&self, canary: &Canary) -> Result<[Value; 3], RouterError> {
        let apex = canary.spec.service_name();
        let mut out = [Value::Null, Value::Null, Value::Null];
        for (slot, name) in
            out.iter_mut()
                .zip([apex.clone(), primary_name(&apex), format!("{apex}-canary")])
        {
            *slot = selector(&self.service(canary, &name).await?);
        }
        Ok(out)
    }
}

fn selector(service: &Value) -> Value {
    service
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or(Value::Null)
}

impl Router for KubernetesService {
    fn reconcile<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            self.service(canary, &canary.spec.service_name()).await?;
            Ok(())
        })
    }

    fn set_routes<'a>(
        &'a self,
        canary: &'a Canary,
        routes: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            super::refuse_mirror(routes, "kubernetes")?;
            if routes.canary_match {
                return Err(RouterError::Invalid(
                    "the kubernetes router cannot route requests by header (A/B testing); use a \
                     router that can, such as gatewayapi"
                        .into(),
                ));
            }
            let to_canary = match (routes.primary, routes.canary) {
                (_, 0) => false,
                (0, 100) => true,
                (p, c) => {
                    return Err(RouterError::Invalid(format!(
                        "the kubernetes router sends all traffic to the primary or all to the \
                         canary and cannot split it {p}/{c}; use the blue/green strategy \
                         (analysis.iterations) or a router that splits, such as gatewayapi"
                    )));
                }
            };
            let apex_name = canary.spec.service_name();
            let apex = self.service(canary, &apex_name).await?;
            // The pods to select are the ones the primary or canary Service selects, which the
            // bootstrap derived from the target's selector label.
            let arm = if to_canary {
                format!("{apex_name}-canary")
            } else {
                primary_name(&apex_name)
            };
            let wanted = selector(&self.service(canary, &arm).await?);
            if wanted.as_object().is_none_or(Map::is_empty) {
                return Err(RouterError::Invalid(format!(
                    "Service {arm} has no selector to copy to Service {apex_name}"
                )));
            }
            // Server-side apply forgets the fields a manager stops sending, so the body repeats
            // everything the bootstrap set on the apex (ports, type, owner), not only the selector.
            let mut metadata = Map::new();
            metadata.insert("name".into(), json!(apex_name));
            metadata.insert(
                "namespace".into(),
                json!(canary.namespace().unwrap_or_else(|| "default".into())),
            );
            if let Some(owners) = apex.pointer("/metadata/ownerReferences") {
                metadata.insert("ownerReferences".into(), owners.clone());
            }
            let mut spec = Map::new();
            for field in ["type", "ports"] {
                if let Some(v) = apex.pointer(&format!("/spec/{field}")) {
                    spec.insert(field.into(), v.clone());
                }
            }
            spec.insert("selector".into(), wanted);
            self.cluster
                .apply(json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": Value::Object(metadata),
                    "spec": Value::Object(spec),
                }))
                .await?;
            Ok(())
        })
    }

    /// The apex Service is this router's only object, and the controller has handed it back.
    fn finalize<'a>(&'a self, _canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async { Ok(()) })
    }

    fn get_routes<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<Routes, RouterError>> {
        Box::pin(async move {
            let [apex, primary, canary_pods] = self.selectors(canary).await?;
            if apex == primary {
                Ok(Routes::all_primary())
            } else if apex == canary_pods {
                Ok(Routes::canary_weight(100))
            } else {
                Err(RouterError::Invalid(format!(
                    "Service {} selects {apex}, neither the primary's pods ({primary}) nor the \
                     canary's ({canary_pods})",
                    canary.spec.service_name()
                )))
            }
        })
    }
}
