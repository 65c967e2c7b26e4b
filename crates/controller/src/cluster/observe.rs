//! Reads the cluster into the `World` the rollout decides on: the target and the primary as
//! workloads, the target's revision and the configs it depends on, and the Canary's manual
//! controls.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use serde_json::Value;

use super::objects::{config_hash, primary_name, revision, tracked_configs};
use super::{Cause, Cluster, ClusterError, ObjectRef};
use sluice_core::api::Canary;
use sluice_core::rollout::{Workload, World};

/// Prefix of the Canary annotations the rollout reads (manual promote, abort, retry).
const CONTROL_PREFIX: &str = "sluice.dev/";

/// The world as it stands for one Canary. A target that is not a Deployment is reported in
/// `unsupported_kind` and nothing is read; missing objects are `None`; referenced ConfigMaps and
/// Secrets that do not exist are left out of the revision (an optional reference may never be
/// satisfied, and a required one keeps the target's pods from starting, which readiness shows).
pub async fn observe(cluster: &dyn Cluster, canary: &Canary) -> Result<World, ClusterError> {
    let target_ref = &canary.spec.target_ref;
    if target_ref.kind != "Deployment" {
        return Ok(World {
            unsupported_kind: Some(target_ref.kind.clone()),
            generation: canary.metadata.generation,
            ..World::default()
        });
    }
    let namespace = canary.namespace().unwrap_or_else(|| "default".into());
    // Every served version of Deployment is the same object; apps/v1 is the one that exists in
    // every supported Kubernetes, whatever apiVersion the Canary was written with.
    let deployment = |name: &str| ObjectRef::new("apps/v1", "Deployment", &namespace, name);

    let mut world = World {
        annotations: canary
            .annotations()
            .iter()
            .filter(|(name, _)| name.starts_with(CONTROL_PREFIX))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
        generation: canary.metadata.generation,
        ..World::default()
    };

    let primary_ref = deployment(&primary_name(&target_ref.name));
    world.primary = cluster.get(&primary_ref).await?.map(|p| workload(&p));

    let target_ref = deployment(&target_ref.name);
    let Some(target) = cluster.get(&target_ref).await? else {
        return Ok(world);
    };
    world.target = Some(workload(&target));
    let typed: Deployment = serde_json::from_value(target).map_err(|e| ClusterError::Invalid {
        object: target_ref.to_string(),
        message: e.to_string(),
        source: Cause::of(e),
    })?;
    let mut configs = BTreeMap::new();
    for (kind, name) in tracked_configs(&typed) {
        if let Some(config) = cluster.get(&kind.object_ref(&namespace, &name)).await? {
            configs.insert(kind.key(&name), config_hash(&config));
        }
    }
    world.revision = Some(revision(&typed, &configs));
    world.tracked_configs = configs;
    Ok(world)
}

/// A Deployment as the rollout sees it. Ready means the Deployment controller has seen the
/// current spec and every replica of it is updated and available, as `kubectl rollout status`
/// decides.
pub fn workload(deployment: &Value) -> Workload {
    let int = |pointer: &str| deployment.pointer(pointer).and_then(Value::as_i64);
    // Kubernetes defaults an unset replicas to 1.
    let replicas = int("/spec/replicas").unwrap_or(1);
    let generation = int("/metadata/generation").unwrap_or(0);
    let observed = int("/status/observedGeneration").unwrap_or(0);
    let updated = int("/status/updatedReplicas").unwrap_or(0);
    let available = int("/status/availableReplicas").unwrap_or(0);
    let name = deployment
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let message = if observed < generation {
        Some(format!(
            "waiting for Deployment {name} to be observed: generation {generation}, observed {observed}"
        ))
    } else if updated != replicas {
        Some(format!(
            "waiting for Deployment {name} to roll out: {updated} of {replicas} replicas updated"
        ))
    } else if available != replicas {
        Some(format!(
            "waiting for Deployment {name} to roll out: {available} of {replicas} updated replicas available"
        ))
    } else {
        None
    };
    Workload {
        replicas: i32::try_from(replicas.max(0)).unwrap_or(i32::MAX),
        ready: message.is_none(),
        message,
    }
}
