//! `sluice demo --cluster`: the demo's release on a real API server (the local control plane of
//! `e2e/cluster/`, or the cluster `KUBECONFIG` names). The real `sluice controller` runs as a
//! process of its own with the chart's RBAC; the demo only applies the new version, reads the
//! Canary's status for its view, and shows the objects as `kubectl get` would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::app::AppConfig;
use super::cluster::{self as plane, ClusterSetupError, ControlPlane};
use super::gateway::read_weights;
use super::release::{Tick, Verdict, target_deployment};
use sluice_core::api::{Canary, MetricTemplate, Phase};

#[derive(Debug, thiserror::Error)]
pub enum OnClusterError {
    #[error(transparent)]
    Setup(#[from] ClusterSetupError),
    #[error("{what}: {message}")]
    Api { what: String, message: String },
    #[error("cannot start sluice controller ({binary}): {source}")]
    Controller {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
}

fn api_error(what: &str) -> impl FnOnce(kube::Error) -> OnClusterError + '_ {
    move |e| OnClusterError::Api {
        what: what.to_string(),
        message: sluice_controller::error_chain::error_chain(&e),
    }
}

/// The demo's Canary on a cluster.
pub struct ClusterRelease {
    client: Client,
    namespace: String,
    name: String,
    target: String,
    new_version: AppConfig,
}

impl ClusterRelease {
    pub fn new(client: Client, canary: &Canary, new_version: AppConfig) -> Self {
        Self {
            client,
            namespace: canary.namespace().unwrap_or_else(|| "default".into()),
            name: canary.name_any(),
            target: canary.spec.target_ref.name.clone(),
            new_version,
        }
    }

    /// A fresh namespace (the last demo's deleted first), the CRDs, the chart's RBAC for the
    /// controller, the templates (asking `prometheus`), the target running `current` and the
    /// Canary.
    #[allow(clippy::too_many_arguments)]
    pub async fn seed(
        &self,
        helm: &Path,
        chart: &Path,
        crds: &str,
        canary: &Canary,
        templates: &[MetricTemplate],
        prometheus: &str,
        current: &AppConfig,
    ) -> Result<String, OnClusterError> {
        plane::apply_yaml(&self.client, crds, None).await?;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if namespaces
            .get_opt(&self.namespace)
            .await
            .map_err(api_error("namespace"))?
            .is_some()
        {
            let _ = namespaces
                .delete(&self.namespace, &DeleteParams::default())
                .await;
            for _ in 0..240 {
                if namespaces
                    .get_opt(&self.namespace)
                    .await
                    .map_err(api_error("namespace"))?
                    .is_none()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        // The CRDs may take a moment to be served after they are applied.
        for _ in 0..40 {
            let gvk = GroupVersionKind::gvk("sluice.dev", "v1alpha1", "Canary");
            if kube::discovery::pinned_kind(&self.client, &gvk)
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        plane::namespace(&self.client, &self.namespace).await?;
        let release = format!("sluice-{}", self.namespace);
        let rbac = plane::chart_rbac(helm, chart, &release, &self.namespace)?;
        plane::apply_yaml(&self.client, &rbac, Some(&self.namespace)).await?;
        for template in templates {
            let mut value =
                serde_json::to_value(template).map_err(|e| OnClusterError::Parse(e.to_string()))?;
            value["metadata"]["namespace"] = json!(self.namespace);
            value["spec"]["provider"]["address"] = json!(prometheus);
            plane::apply(&self.client, value, None).await?;
        }
        plane::apply(
            &self.client,
            target_deployment(&self.namespace, &self.target, current),
            None,
        )
        .await?;
        let mut value =
            serde_json::to_value(canary).map_err(|e| OnClusterError::Parse(e.to_string()))?;
        value["metadata"]["namespace"] = json!(self.namespace);
        if let Some(object) = value.as_object_mut() {
            object.remove("status");
        }
        value["metadata"].as_object_mut().map(|m| m.remove("uid"));
        plane::apply(&self.client, value, None).await?;
        Ok(release)
    }

    async fn api(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Api<DynamicObject>, OnClusterError> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(api_error(kind))?;
        Ok(Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &resource,
        ))
    }

    /// Reads the Canary; once it is Initialized, applies the new version to the target, which
    /// starts the release. The controller does everything else.
    pub async fn tick(&self) -> Result<Tick, OnClusterError> {
        let canaries: Api<Canary> = Api::namespaced(self.client.clone(), &self.namespace);
        let canary = canaries
            .get(&self.name)
            .await
            .map_err(api_error("Canary"))?;
        let status = canary.status.clone().unwrap_or_default();
        let deployments = self.api("apps/v1", "Deployment").await?;
        let target = deployments
            .get(&self.target)
            .await
            .map_err(api_error("Deployment"))?;
        let new_image = target_deployment(&self.namespace, &self.target, &self.new_version)["spec"]
            ["template"]["spec"]["containers"][0]["image"]
            .clone();
        let mut released =
            target.data["spec"]["template"]["spec"]["containers"][0]["image"] == new_image;
        if status.phase == Some(Phase::Initialized) && !released {
            let new = target_deployment(&self.namespace, &self.target, &self.new_version);
            let patch = json!({"spec": {"template": new["spec"]["template"]}});
            deployments
                .patch(&self.target, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_error("new version"))?;
            released = true;
        }
        let verdict = if released { Verdict::of(&status) } else { None };
        Ok(Tick { status, verdict })
    }

    /// The release's objects, one line each, as `kubectl get` shows them.
    pub async fn objects(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Ok(api) = self.api("apps/v1", "Deployment").await
            && let Ok(list) = api.list(&Default::default()).await
        {
            for d in list.items {
                let want = d.data["spec"]["replicas"].as_i64().unwrap_or(0);
                let ready = d.data["status"]["readyReplicas"].as_i64().unwrap_or(0);
                let image = d.data["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                lines.push(format!(
                    "deployment.apps/{:<18} {ready}/{want} ready   {image}",
                    d.name_any()
                ));
            }
        }
        if let Ok(api) = self.api("v1", "Service").await
            && let Ok(list) = api.list(&Default::default()).await
        {
            let names: Vec<String> = list.items.iter().map(|s| s.name_any()).collect();
            lines.push(format!("service/{}", names.join(", service/")));
        }
        if let Ok(api) = self.api("gateway.networking.k8s.io/v1", "HTTPRoute").await
            && let Ok(list) = api.list(&Default::default()).await
        {
            for route in list.items {
                let value = serde_json::to_value(&route).unwrap_or(Value::Null);
                let weights = read_weights(&value)
                    .map(|(p, c)| format!("{}-primary={p} {}-canary={c}", self.target, self.target))
                    .unwrap_or_else(|| "no weights".into());
                lines.push(format!("httproute/{:<25} {weights}", route.name_any()));
            }
        }
        lines
    }
}

/// A `sluice controller` process of the demo, as the chart's ServiceAccount in one namespace;
/// killed when dropped.
pub struct ControllerProcess {
    child: tokio::process::Child,
}

impl ControllerProcess {
    pub async fn start(
        sluice: &Path,
        client: &Client,
        plane: &ControlPlane,
        namespace: &str,
        account: &str,
        prometheus: &str,
        dir: &Path,
    ) -> Result<Self, OnClusterError> {
        let kubeconfig = dir.join("controller.kubeconfig");
        plane::service_account_kubeconfig(
            client,
            &plane.kubeconfig,
            namespace,
            account,
            3600,
            &kubeconfig,
        )
        .await?;
        let log = dir.join("controller.log");
        let file = |path: &Path| {
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| OnClusterError::Controller {
                    binary: sluice.to_path_buf(),
                    source,
                })
        };
        let child = tokio::process::Command::new(sluice)
            .arg("controller")
            .args(["--metrics-address", "127.0.0.1:0"])
            .args(["--prometheus-address", prometheus])
            .args(["--watch-namespace", namespace])
            .args(["--lease-namespace", namespace])
            .args(["--identity", "sluice-demo"])
            .env("KUBECONFIG", &kubeconfig)
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file(&log)?)
            .stderr(file(&log)?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| OnClusterError::Controller {
                binary: sluice.to_path_buf(),
                source,
            })?;
        Ok(Self { child })
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
