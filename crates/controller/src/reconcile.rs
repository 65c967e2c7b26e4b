//! One reconcile of one Canary: observe the world, run the rollout's step, carry out its actions,
//! write the status. The same function serves the Kubernetes controller (over `cluster::apiserver`),
//! the demo and the tests (over `cluster::memory`).

use std::sync::Arc;

use kube::ResourceExt;
use serde_json::Value;

use super::observer::Observer;
use crate::cluster::objects::{self, ObjectError, primary_name};
use crate::cluster::observe::observe;
use crate::cluster::{Cause, Cluster, ClusterError, Event, ObjectRef};
use crate::hooks::Hooks;
use crate::notify::{Happened, Notification, Notifier};
use crate::router::{RouterError, Routers};
use crate::slots::ReleaseSlots;
use sluice_core::analysis::Observation;
use sluice_core::api::{Canary, CanaryStatus, HookType, Phase, RouterKind};
use sluice_core::rollout::{self, Action, Decision, HookOutcome, MetricsWindow};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("router: {0}")]
    Router(#[from] RouterError),
    #[error("Canary {canary}: {source}")]
    Object { canary: String, source: ObjectError },
    #[error("Canary {0}: the rollout kept asking for inputs")]
    Undecided(String),
}

impl ReconcileError {
    /// The `error` label of `sluice_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Cluster(e) | Self::Router(RouterError::Cluster(e)) => e.metric_label(),
            Self::Router(_) => "router",
            Self::Object { .. } => "object",
            Self::Undecided(_) => "undecided",
        }
    }
}

/// What reconciles need, shared by every Canary.
pub struct Context {
    pub cluster: Arc<dyn Cluster>,
    /// The Canary's webhooks as gates (`confirm-rollout`, `pre-rollout`, ...).
    pub hooks: Arc<Hooks>,
    pub observer: Arc<dyn Observer>,
    pub routers: Routers,
    /// Everyone told what a release did; the webhooks first.
    pub notifiers: Vec<Arc<dyn Notifier>>,
    /// `--max-concurrent-releases`, when set.
    pub slots: Option<Arc<ReleaseSlots>>,
}

impl Context {
    /// Every registered router over `cluster` (Gateway API for Canaries without
    /// `spec.provider`, until `with_default_router`), the webhooks as gates and as the first
    /// notifier.
    pub fn new(cluster: Arc<dyn Cluster>, observer: Arc<dyn Observer>, hooks: Hooks) -> Self {
        let hooks = Arc::new(hooks);
        Self {
            routers: Routers::new(cluster.clone(), RouterKind::GatewayApi),
            cluster,
            notifiers: vec![hooks.clone() as Arc<dyn Notifier>],
            hooks,
            observer,
            slots: None,
        }
    }

    /// At most `slots`' limit of releases in flight at once.
    pub fn with_release_slots(mut self, slots: Arc<ReleaseSlots>) -> Self {
        self.slots = Some(slots);
        self
    }

    /// The router of Canaries without `spec.provider` (the controller's `--router`).
    pub fn with_default_router(mut self, kind: RouterKind) -> Self {
        self.routers = self.routers.with_default(kind);
        self
    }

    /// Other routers than the registered ones, such as `Routers::Only` for the demo's proxy.
    pub fn with_routers(mut self, routers: Routers) -> Self {
        self.routers = routers;
        self
    }

    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    async fn notify(&self, notification: Notification<'_>) {
        for notifier in &self.notifiers {
            notifier.notify(notification).await;
        }
    }
}

/// What one reconcile did, for the caller's metrics and requeue.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub decision: Decision,
    pub previous_phase: Option<Phase>,
}

/// Reconciles `canary` at `now` (Unix seconds).
pub async fn reconcile(
    ctx: &Context,
    canary: &Canary,
    now: i64,
) -> Result<Outcome, ReconcileError> {
    let name = canary.name_any();
    let namespace = canary.namespace().unwrap_or_else(|| "default".into());
    let status = canary.status.clone().unwrap_or_default();
    crate::finalize::keep_finalizer(ctx, canary).await?;
    let mut world = observe(ctx.cluster.as_ref(), canary).await?;
    let phase = status.phase.unwrap_or(Phase::Initializing);
    let checksum = world.revision.clone().unwrap_or_default();
    let mut answers = Live {
        ctx,
        canary,
        phase,
        checksum: &checksum,
    };
    let undecided = |e: rollout::DriveError<std::convert::Infallible>| match e {
        rollout::DriveError::Answer(never) => match never {},
        rollout::DriveError::Undecided(_) => {
            ReconcileError::Undecided(format!("{namespace}/{name}"))
        }
    };
    let mut decision = rollout::drive(&canary.spec, &status, &world, now, &mut answers)
        .await
        .map_err(undecided)?;
    let key = kube::runtime::reflector::ObjectRef::from(canary);
    // A step that starts a release takes a slot first; without one it is decided again, queued.
    // Starting asks for no metrics, so the step is cheap to take twice.
    if let Some(slots) = &ctx.slots
        && !status.in_flight()
        && decision.status.in_flight()
        && let Err(queue) = slots.take(&key)
    {
        world.release_queue = Some(queue);
        decision = rollout::drive(&canary.spec, &status, &world, now, &mut answers)
            .await
            .map_err(undecided)?;
    }
    let new_phase = decision.status.phase.unwrap_or(phase);
    let done = Done {
        phase: new_phase,
        status: &decision.status,
        revision: &checksum,
    };
    for action in &decision.actions {
        carry_out(ctx, canary, &status, action, &done).await?;
    }
    if canary.status.as_ref() != Some(&decision.status) {
        ctx.cluster
            .patch_status(&namespace, &name, &decision.status)
            .await?;
    }
    if let Some(slots) = &ctx.slots {
        slots.settle(&key, &decision.status);
    }
    // Alerts only now that the status recording them (`status.alerts`) is written: a reconcile
    // that fails before the write runs its step again next time, alert included, so the alert
    // goes once. If the process dies right here it goes not at all: a duplicate page is worse
    // than a lost one, and the step's Event stays.
    for action in &decision.actions {
        if let Action::Alert(alert) = action {
            ctx.notify(done.notification(canary, Happened::Alert(alert)))
                .await;
        }
    }
    Ok(Outcome {
        decision,
        previous_phase: status.phase,
    })
}

/// The controller's answers: Prometheus through the observer, and the Canary's webhooks.
struct Live<'a> {
    ctx: &'a Context,
    canary: &'a Canary,
    phase: Phase,
    checksum: &'a str,
}

impl rollout::Answers for Live<'_> {
    /// Failed queries and hooks are answers too (no data, a failed gate), for the step to judge.
    type Error = std::convert::Infallible;

    async fn metrics(
        &mut self,
        window: MetricsWindow,
        now: i64,
    ) -> Result<Vec<Observation>, Self::Error> {
        Ok(self.ctx.observer.observe(self.canary, now, window).await)
    }

    async fn hook(&mut self, kind: HookType) -> Result<HookOutcome, Self::Error> {
        Ok(self
            .ctx
            .hooks
            .check(self.canary, kind, self.phase, self.checksum)
            .await)
    }
}

pub(crate) fn object_error(canary: &Canary) -> impl Fn(ObjectError) -> ReconcileError + '_ {
    move |source| ReconcileError::Object {
        canary: format!(
            "{}/{}",
            canary.namespace().unwrap_or_default(),
            canary.name_any()
        ),
        source,
    }
}

/// Where a step left the release, for the notifications of its actions.
struct Done<'a> {
    phase: Phase,
    status: &'a CanaryStatus,
    revision: &'a str,
}

impl<'a> Done<'a> {
    fn notification(&self, canary: &'a Canary, happened: Happened<'a>) -> Notification<'a> {
        Notification {
            canary,
            happened,
            phase: self.phase,
            status: self.status,
            revision: self.revision,
        }
    }
}

async fn carry_out(
    ctx: &Context,
    canary: &Canary,
    before: &CanaryStatus,
    action: &Action,
    done: &Done<'_>,
) -> Result<(), ReconcileError> {
    let checksum = done.revision;
    let namespace = canary.namespace().unwrap_or_else(|| "default".into());
    match action {
        Action::Bootstrap => bootstrap(ctx, canary).await,
        Action::ScaleTarget(replicas) => {
            if let Some(target) = target(ctx, canary).await? {
                ctx.cluster
                    .apply(objects::scale(&target, *replicas))
                    .await?;
            }
            Ok(())
        }
        Action::PromotePrimary => promote(ctx, canary, checksum).await,
        Action::SetRoutes(routes) => {
            ctx.routers
                .for_canary(canary)?
                .set_routes(canary, *routes)
                .await?;
            Ok(())
        }
        Action::Notify(kind) => {
            ctx.notify(done.notification(canary, Happened::Hook(*kind)))
                .await;
            Ok(())
        }
        // Told once the status is written (`reconcile`).
        Action::Alert(_) => Ok(()),
        Action::Event {
            warning,
            reason,
            message,
        } => {
            let uid = canary.uid().unwrap_or_default();
            let event = Event {
                warning: *warning,
                reason: reason.clone(),
                message: message.clone(),
                key: Some(objects::step_key(&uid, before, reason, message)),
            };
            if *warning {
                tracing::warn!(canary = %canary.name_any(), %namespace, %message, "event");
            } else {
                tracing::info!(canary = %canary.name_any(), %namespace, %message, "event");
            }
            ctx.cluster
                .event(&namespace, &canary.name_any(), &event)
                .await?;
            ctx.notify(done.notification(canary, Happened::Event(message)))
                .await;
            Ok(())
        }
    }
}

pub(crate) async fn target(
    ctx: &Context,
    canary: &Canary,
) -> Result<Option<Value>, ReconcileError> {
    let namespace = canary.namespace().unwrap_or_else(|| "default".into());
    let reference = ObjectRef::new(
        "apps/v1",
        "Deployment",
        &namespace,
        &canary.spec.target_ref.name,
    );
    Ok(ctx.cluster.get(&reference).await?)
}

/// The target's ConfigMaps and Secrets as they are now.
async fn configs(
    ctx: &Context,
    canary: &Canary,
    target: &Value,
) -> Result<Vec<Value>, ReconcileError> {
    let namespace = canary.namespace().unwrap_or_else(|| "default".into());
    let typed: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(target.clone())
        .map_err(|e| ClusterError::Invalid {
            object: format!("Deployment {namespace}/{}", canary.spec.target_ref.name),
            message: e.to_string(),
            source: Cause::of(e),
        })?;
    let mut found = Vec::new();
    for (kind, name) in objects::tracked_configs(&typed) {
        if let Some(config) = ctx.cluster.get(&kind.object_ref(&namespace, &name)).await? {
            found.push(config);
        }
    }
    Ok(found)
}

/// Creates what the Canary needs and does not have: config copies, the primary, its autoscaler,
/// the Services and the router's objects. An existing primary is left alone: it changes only on
/// promotion.
async fn bootstrap(ctx: &Context, canary: &Canary) -> Result<(), ReconcileError> {
    let Some(target) = target(ctx, canary).await? else {
        return Ok(());
    };
    let uid = canary.uid().unwrap_or_default();
    let namespace = canary.namespace().unwrap_or_else(|| "default".into());
    let primary_ref = ObjectRef::new(
        "apps/v1",
        "Deployment",
        &namespace,
        &primary_name(&canary.spec.target_ref.name),
    );
    if ctx.cluster.get(&primary_ref).await?.is_none() {
        for copy in objects::config_copies(canary, &uid, &configs(ctx, canary, &target).await?) {
            ctx.cluster.apply(copy).await?;
        }
        let primary = objects::primary_deployment(canary, &uid, &target, None)
            .map_err(object_error(canary))?;
        ctx.cluster.apply(primary).await?;
    }
    if let Some(reference) = &canary.spec.autoscaler_ref {
        let hpa_ref = ObjectRef::new(
            reference.api_version.as_deref().unwrap_or("autoscaling/v2"),
            &reference.kind,
            &namespace,
            &reference.name,
        );
        if let Some(hpa) = ctx.cluster.get(&hpa_ref).await? {
            let copy =
                objects::primary_autoscaler(canary, &uid, &hpa).map_err(object_error(canary))?;
            ctx.cluster.apply(copy).await?;
        }
    }
    for service in objects::services(canary, &uid, &target).map_err(object_error(canary))? {
        ctx.cluster.apply(service).await?;
    }
    ctx.routers.for_canary(canary)?.reconcile(canary).await?;
    Ok(())
}

/// Copies the canary's pod template and configs to the primary.
async fn promote(ctx: &Context, canary: &Canary, revision: &str) -> Result<(), ReconcileError> {
    let Some(target) = target(ctx, canary).await? else {
        return Ok(());
    };
    let uid = canary.uid().unwrap_or_default();
    for copy in objects::config_copies(canary, &uid, &configs(ctx, canary, &target).await?) {
        ctx.cluster.apply(copy).await?;
    }
    let namespace = canary.namespace().unwrap_or_else(|| "default".into());
    let primary_ref = ObjectRef::new(
        "apps/v1",
        "Deployment",
        &namespace,
        &primary_name(&canary.spec.target_ref.name),
    );
    let replicas = ctx
        .cluster
        .get(&primary_ref)
        .await?
        .and_then(|p| p.pointer("/spec/replicas").and_then(Value::as_i64))
        .and_then(|r| i32::try_from(r).ok());
    let mut primary =
        objects::promote_primary(canary, &uid, &target, replicas).map_err(object_error(canary))?;
    objects::stamp_revision(&mut primary, revision);
    ctx.cluster.apply(primary).await?;
    Ok(())
}

/// Reads a Canary stored in `cluster` (the memory cluster's way of being watched).
pub async fn load_canary(
    cluster: &dyn Cluster,
    namespace: &str,
    name: &str,
) -> Result<Option<Canary>, ClusterError> {
    let reference = ObjectRef::new("sluice.dev/v1alpha1", "Canary", namespace, name);
    match cluster.get(&reference).await? {
        None => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| ClusterError::Invalid {
                object: reference.to_string(),
                message: e.to_string(),
                source: Cause::of(e),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_labelled_by_kind_and_cluster_errors_by_their_own() {
        let unreachable = ClusterError::Unreachable {
            message: "connection refused".into(),
            source: None,
        };
        let labels = [
            ReconcileError::Cluster(unreachable.clone()).metric_label(),
            ReconcileError::Router(RouterError::Cluster(unreachable)).metric_label(),
            ReconcileError::Router(RouterError::Invalid("no such port".into())).metric_label(),
            ReconcileError::Object {
                canary: "test/podinfo".into(),
                source: ObjectError::NoService {
                    canary: "test/podinfo".into(),
                },
            }
            .metric_label(),
            ReconcileError::Undecided("test/podinfo".into()).metric_label(),
        ];
        assert_eq!(
            labels,
            [
                "cluster_unreachable",
                "cluster_unreachable",
                "router",
                "object",
                "undecided"
            ]
        );
    }
}
