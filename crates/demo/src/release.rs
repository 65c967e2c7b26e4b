//! One demo release, driven through the real controller code: the Canary, its MetricTemplates
//! and a target Deployment are seeded into a `cluster::memory` cluster, the new version is
//! applied once the primary serves all traffic, and `controller::reconcile` runs once a second on
//! the wall clock (Prometheus's data is real-time) until the release ends.
//!
//! All progress is in the cluster: with a persisted cluster, a driver started again on the same
//! file carries on from the Canary's status (`sluice demo-controller` after a SIGKILL).

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use serde_json::{Value, json};

use super::app::AppConfig;
use super::stage::app_args;
use sluice_controller::cluster::memory::MemoryCluster;
use sluice_controller::cluster::{Cluster, ClusterError, ObjectRef};
use sluice_controller::hooks::Hooks;
use sluice_controller::observer::PrometheusObserver;
use sluice_controller::reconcile::{Context, ReconcileError, load_canary, reconcile};
use sluice_controller::router::{Router, Routers};
use sluice_core::api::ReleaseVerdict;
use sluice_core::api::{Canary, CanaryStatus, MetricTemplate, Phase};

/// The Canary the demo and the end-to-end tests release (documented in the file).
pub const CANARY_YAML: &str = include_str!("../../../e2e/canary.yaml");
/// The MetricTemplates its metrics name.
pub const TEMPLATES_YAML: &str = include_str!("../../../metrics-templates/app.yaml");

/// The image names only tell the versions apart in the Deployment; the processes are
/// `sluice demo-app` with the arguments the pod template lists.
const IMAGE: &str = "sluice-demo-app";

/// Seconds a Deployment of the memory cluster takes to become ready after a change.
const READY_DELAY: i64 = 1;

/// How long a metrics query of the analysis may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("the demo's {what} does not parse: {message}")]
    Parse { what: &'static str, message: String },
    #[error("the Canary is invalid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error("cannot set up webhooks: {0}")]
    Hooks(String),
    #[error("Canary {0} is not in the cluster")]
    NoCanary(String),
}

/// How a release ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Promoted,
    RolledBack,
    Inconclusive,
}

impl Verdict {
    pub fn headline(self) -> &'static str {
        match self {
            Verdict::Promoted => "PROMOTED",
            Verdict::RolledBack => "ROLLED BACK",
            Verdict::Inconclusive => "INCONCLUSIVE",
        }
    }

    /// The verdict of a release that has ended, from its status; `None` while it runs.
    pub fn of(status: &CanaryStatus) -> Option<Self> {
        if !status.ended() {
            return None;
        }
        Some(match status.verdict()? {
            ReleaseVerdict::Promoted => Verdict::Promoted,
            ReleaseVerdict::RolledBack => Verdict::RolledBack,
            ReleaseVerdict::Inconclusive => Verdict::Inconclusive,
        })
    }
}

/// The demo's Canary, from `CANARY_YAML`.
pub fn demo_canary() -> Result<Canary, ReleaseError> {
    serde_yaml_ng::from_str(CANARY_YAML).map_err(|e| ReleaseError::Parse {
        what: "Canary (e2e/canary.yaml)",
        message: e.to_string(),
    })
}

/// The MetricTemplates of `TEMPLATES_YAML`.
pub fn demo_templates() -> Result<Vec<MetricTemplate>, ReleaseError> {
    let parse = |message: String| ReleaseError::Parse {
        what: "MetricTemplates (metrics-templates/app.yaml)",
        message,
    };
    let mut templates = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(TEMPLATES_YAML) {
        let value: Value =
            serde::Deserialize::deserialize(document).map_err(|e| parse(e.to_string()))?;
        if value.get("kind").and_then(Value::as_str) == Some("MetricTemplate") {
            templates.push(serde_json::from_value(value).map_err(|e| parse(e.to_string()))?);
        }
    }
    Ok(templates)
}

/// The target Deployment running `app`: its pod template lists the `sluice demo-app` arguments,
/// so that the two versions differ the way the processes do.
pub fn target_deployment(namespace: &str, name: &str, app: &AppConfig) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": format!("{IMAGE}:{}", app.version),
                    "args": app_args(app),
                }]}
            }
        }
    })
}

/// One reconcile's result.
#[derive(Clone, Debug)]
pub struct Tick {
    pub status: CanaryStatus,
    /// Set once the new version's release has ended.
    pub verdict: Option<Verdict>,
}

/// Drives the Canary `namespace/name` of a memory cluster.
pub struct Release {
    cluster: Arc<MemoryCluster>,
    ctx: Context,
    namespace: String,
    name: String,
    target: String,
    new_version: AppConfig,
}

impl Release {
    /// `prometheus` answers the analysis' queries; `router` carries the weights out.
    pub fn new(
        cluster: Arc<MemoryCluster>,
        canary: &Canary,
        prometheus: &str,
        router: Arc<dyn Router>,
        new_version: AppConfig,
    ) -> Result<Self, ReleaseError> {
        let observer = Arc::new(PrometheusObserver::new(
            cluster.clone(),
            Some(prometheus.to_string()),
            QUERY_TIMEOUT,
        ));
        let hooks = Hooks::new().map_err(|e| ReleaseError::Hooks(e.to_string()))?;
        let ctx =
            Context::new(cluster.clone(), observer, hooks).with_routers(Routers::Only(router));
        Ok(Self {
            cluster,
            ctx,
            namespace: canary.namespace().unwrap_or_else(|| "default".into()),
            name: canary.name_any(),
            target: canary.spec.target_ref.name.clone(),
            new_version,
        })
    }

    /// Puts the Canary, its templates and the target Deployment running `current` into the
    /// cluster, unless the Canary is already there (a restarted driver). Returns whether it
    /// seeded. The templates lose their `spec.provider.address`, so that the analysis asks the
    /// Prometheus this driver was given.
    pub async fn seed(
        &self,
        canary: &Canary,
        templates: &[MetricTemplate],
        current: &AppConfig,
    ) -> Result<bool, ReleaseError> {
        if load_canary(self.cluster.as_ref(), &self.namespace, &self.name)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        self.cluster.set_now(super::prometheus::unix_now());
        self.cluster.set_ready_delay(READY_DELAY);
        for template in templates {
            let mut value = serde_json::to_value(template).map_err(|e| ReleaseError::Parse {
                what: "MetricTemplate",
                message: e.to_string(),
            })?;
            value["metadata"]["namespace"] = json!(self.namespace);
            if let Some(provider) = value
                .pointer_mut("/spec/provider")
                .and_then(Value::as_object_mut)
            {
                provider.remove("address");
            }
            self.cluster.apply(value).await?;
        }
        self.cluster
            .apply(target_deployment(&self.namespace, &self.target, current))
            .await?;
        let mut value = serde_json::to_value(canary).map_err(|e| ReleaseError::Parse {
            what: "Canary",
            message: e.to_string(),
        })?;
        value["metadata"]["namespace"] = json!(self.namespace);
        if canary.uid().is_none() {
            // Owner references of the generated objects need one, as the API server would give.
            value["metadata"]["uid"] = json!(format!("demo-{}", self.name));
        }
        if let Some(object) = value.as_object_mut() {
            // A status in the file would be taken for progress this cluster never made.
            object.remove("status");
        }
        self.cluster.apply(value).await?;
        Ok(true)
    }

    /// Whether the target already runs the new version.
    async fn new_version_applied(&self) -> Result<bool, ReleaseError> {
        let reference = ObjectRef::new("apps/v1", "Deployment", &self.namespace, &self.target);
        let image = self
            .cluster
            .get(&reference)
            .await?
            .and_then(|d| {
                d.pointer("/spec/template/spec/containers/0/image")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        Ok(image == format!("{IMAGE}:{}", self.new_version.version))
    }

    /// One reconcile at `now` (Unix seconds). Once the primary serves all traffic, the new
    /// version is applied to the target, which starts its release.
    pub async fn tick(&self, now: i64) -> Result<Tick, ReleaseError> {
        self.cluster.set_now(now);
        let key = format!("{}/{}", self.namespace, self.name);
        let canary = load_canary(self.cluster.as_ref(), &self.namespace, &self.name)
            .await?
            .ok_or_else(|| ReleaseError::NoCanary(key.clone()))?;
        let phase = canary.status.as_ref().and_then(|s| s.phase);
        let mut released = self.new_version_applied().await?;
        if phase == Some(Phase::Initialized) && !released {
            self.cluster
                .apply(target_deployment(
                    &self.namespace,
                    &self.target,
                    &self.new_version,
                ))
                .await?;
            released = true;
        }
        let outcome = reconcile(&self.ctx, &canary, now).await?;
        let status = outcome.decision.status;
        let verdict = if released { Verdict::of(&status) } else { None };
        Ok(Tick { status, verdict })
    }

    /// The Canary as stored now.
    pub async fn canary(&self) -> Result<Canary, ReleaseError> {
        load_canary(self.cluster.as_ref(), &self.namespace, &self.name)
            .await?
            .ok_or_else(|| ReleaseError::NoCanary(format!("{}/{}", self.namespace, self.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_canary_and_templates_parse_and_validate() {
        let canary = demo_canary().unwrap();
        sluice_core::api::validate::validate_canary(&canary).unwrap();
        assert_eq!(canary.spec.analysis.interval.as_secs(), 10);
        let templates = demo_templates().unwrap();
        let names: Vec<String> = templates.iter().map(|t| t.name_any()).collect();
        for metric in &canary.spec.analysis.metrics {
            let reference = metric.template_ref.as_ref().unwrap();
            assert!(names.contains(&reference.name), "{names:?}");
        }
    }

    #[test]
    fn verdicts_follow_the_phase_and_the_condition() {
        let mut status = CanaryStatus {
            phase: Some(Phase::Progressing),
            ..CanaryStatus::default()
        };
        assert_eq!(Verdict::of(&status), None);
        status.phase = Some(Phase::Succeeded);
        assert_eq!(Verdict::of(&status), Some(Verdict::Promoted));
        status.phase = Some(Phase::Failed);
        status.conditions.push(sluice_core::api::Condition {
            kind: sluice_core::api::PROMOTED.into(),
            status: "False".into(),
            reason: sluice_core::rollout::FAILED.into(),
            message: String::new(),
            last_transition_time: String::new(),
        });
        assert_eq!(Verdict::of(&status), Some(Verdict::RolledBack));
        status.conditions[0].reason = sluice_core::rollout::INCONCLUSIVE.into();
        assert_eq!(Verdict::of(&status), Some(Verdict::Inconclusive));
    }
}
