//! Deleting a Canary. It owns the primary, the Services and the router's objects, so Kubernetes
//! deletes them with it, and with them the traffic of a service whose target sluice scaled to
//! zero. With `revertOnDeletion` a finalizer holds the deletion while the target takes the
//! traffic back, one step per reconcile as `sluice_core::rollout::revert` decides: the target
//! scaled to the primary's replicas, then, once it is ready, the apex Service and the router's
//! objects pointed at its pods and left without an owner, then the finalizer removed.

use std::time::Duration;

use kube::ResourceExt;

use crate::cluster::objects;
use crate::cluster::observe::observe;
use crate::cluster::{ClusterError, Event};
use crate::reconcile::{Context, ReconcileError, object_error, target};
use sluice_core::api::Canary;
use sluice_core::rollout::{Revert, revert};

/// The finalizer sluice puts on a Canary with `revertOnDeletion`.
pub const FINALIZER: &str = "sluice.dev/revert-on-deletion";

/// How long to wait before looking again at a target that is scaling up.
const AGAIN: Duration = Duration::from_secs(5);

/// What a reconcile of a deleted Canary did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finalized {
    /// Nothing holds the deletion any more.
    Done,
    /// The target is scaling up: reconcile again after this long.
    Again(Duration),
}

pub fn is_deleted(canary: &Canary) -> bool {
    canary.metadata.deletion_timestamp.is_some()
}

fn has_finalizer(canary: &Canary) -> bool {
    canary.finalizers().iter().any(|f| f == FINALIZER)
}

/// Puts the finalizer on a Canary with `revertOnDeletion` and takes it off one without. Reads
/// nothing: the Canary in hand was just read.
pub async fn keep_finalizer(ctx: &Context, canary: &Canary) -> Result<(), ClusterError> {
    let wanted = canary.spec.revert_on_deletion;
    if has_finalizer(canary) == wanted {
        return Ok(());
    }
    let namespace = canary.namespace().unwrap_or_else(|| "default".into());
    ctx.cluster
        .set_finalizer(&namespace, &canary.name_any(), FINALIZER, wanted)
        .await
}

/// One step of handing traffic back to the target of a Canary being deleted, at `now` (Unix
/// seconds).
pub async fn finalize(
    ctx: &Context,
    canary: &Canary,
    now: i64,
) -> Result<Finalized, ReconcileError> {
    if !has_finalizer(canary) {
        return Ok(Finalized::Done);
    }
    let namespace = canary.namespace().unwrap_or_else(|| "default".into());
    let name = canary.name_any();
    let target_name = &canary.spec.target_ref.name;
    let world = observe(ctx.cluster.as_ref(), canary).await?;
    let waited = now - deleted_at(canary).unwrap_or(now);
    let event = |warning: bool, reason: &str, message: String| Event {
        warning,
        reason: reason.into(),
        message,
        key: None,
    };
    match revert(&canary.spec, &world, waited) {
        Revert::ScaleTarget(replicas) => {
            if let Some(target) = target(ctx, canary).await? {
                ctx.cluster.apply(objects::scale(&target, replicas)).await?;
            }
            let pods = if replicas == 1 { "replica" } else { "replicas" };
            let message = format!(
                "scaling Deployment {target_name} to {replicas} {pods} to take the traffic back \
                 before the Canary is deleted (revertOnDeletion)"
            );
            tracing::info!(canary = %name, %namespace, %message, "event");
            let scaling = event(false, "RevertScaling", message);
            ctx.cluster.event(&namespace, &name, &scaling).await?;
            Ok(Finalized::Again(AGAIN))
        }
        Revert::Wait { message } => {
            tracing::info!(canary = %name, %namespace, %message, "waiting to revert");
            Ok(Finalized::Again(AGAIN))
        }
        Revert::HandBack { late } => {
            if let Some(why) = late {
                let message = format!(
                    "handing the traffic back to Deployment {target_name} although it is not \
                     ready after {waited} s: {why}"
                );
                tracing::warn!(canary = %name, %namespace, %message, "event");
                let late = event(true, "RevertLate", message);
                ctx.cluster.event(&namespace, &name, &late).await?;
            }
            if let Some(target) = target(ctx, canary).await? {
                let apex =
                    objects::handed_back_apex(canary, &target).map_err(object_error(canary))?;
                ctx.cluster.apply(apex).await?;
                ctx.routers.for_canary(canary)?.finalize(canary).await?;
            }
            let message = format!(
                "traffic handed back to Deployment {target_name}: Service {} and the router's \
                 objects select its pods and are kept; the rest goes with the Canary",
                canary.spec.service_name()
            );
            tracing::info!(canary = %name, %namespace, %message, "event");
            let reverted = event(false, "Reverted", message);
            ctx.cluster.event(&namespace, &name, &reverted).await?;
            ctx.cluster
                .set_finalizer(&namespace, &name, FINALIZER, false)
                .await?;
            Ok(Finalized::Done)
        }
        Revert::NoTarget => {
            let message = format!(
                "Deployment {target_name} does not exist: there is nothing to hand the traffic \
                 back to, and the Canary's objects go with it"
            );
            tracing::warn!(canary = %name, %namespace, %message, "event");
            let missing = event(true, "RevertImpossible", message);
            ctx.cluster.event(&namespace, &name, &missing).await?;
            ctx.cluster
                .set_finalizer(&namespace, &name, FINALIZER, false)
                .await?;
            Ok(Finalized::Done)
        }
    }
}

/// When the deletion was asked for, Unix seconds.
fn deleted_at(canary: &Canary) -> Option<i64> {
    let stamp = serde_json::to_value(canary.metadata.deletion_timestamp.as_ref()?).ok()?;
    sluice_core::time::parse_rfc3339(stamp.as_str()?)
}
