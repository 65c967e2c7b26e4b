//! The demo and the cluster tests on a real Kubernetes API server: the local control plane that
//! `e2e/cluster/up.sh` starts on 127.0.0.1, or any cluster a kubeconfig names (kind, k3d).
//!
//! This module starts or joins the control plane, applies manifests as `kubectl apply
//! --server-side` would, and gives `sluice controller` what the Helm chart gives it: a
//! ServiceAccount bound to the chart's ClusterRole (rendered by `helm template`), never more.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};

use sluice_controller::error_chain::error_chain;

/// The field manager of what the demo and the tests apply (not the controller's `sluice`).
const FIELD_MANAGER: &str = "sluice-harness";

#[derive(Debug, thiserror::Error)]
pub enum ClusterSetupError {
    #[error("{script} failed ({status}); its output:\n{output}")]
    Script {
        script: PathBuf,
        status: String,
        output: String,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("{what}: {message}")]
    Api { what: String, message: String },
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterSetupError {
    let what = what.into();
    move |e| ClusterSetupError::Api {
        what,
        message: error_chain(&e),
    }
}

/// The control plane the demo or a test binary runs on.
pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    /// The state folder of a local control plane (its PIDs, logs and command lines); none for a
    /// cluster named by a kubeconfig.
    pub state: Option<PathBuf>,
    scripts: PathBuf,
}

impl ControlPlane {
    /// A cluster somebody else runs: nothing is started or stopped.
    pub fn existing(kubeconfig: PathBuf) -> Self {
        Self {
            kubeconfig,
            state: None,
            scripts: PathBuf::new(),
        }
    }

    /// Runs `scripts/up.sh` with its state in `state` (it builds the binaries first if the
    /// cache lacks them, and joins a control plane already running from `state`).
    pub fn up(scripts: &Path, state: &Path) -> Result<Self, ClusterSetupError> {
        let output = run_script(&scripts.join("up.sh"), state)?;
        let kubeconfig = output
            .lines()
            .last()
            .map(PathBuf::from)
            .filter(|p| p.is_file())
            .ok_or_else(|| ClusterSetupError::Script {
                script: scripts.join("up.sh"),
                status: "no kubeconfig printed".into(),
                output: output.clone(),
            })?;
        Ok(Self {
            kubeconfig,
            state: Some(state.to_path_buf()),
            scripts: scripts.to_path_buf(),
        })
    }

    /// Stops a local control plane (`down.sh`); a no-op for an existing cluster.
    pub fn down(&self) -> Result<(), ClusterSetupError> {
        match &self.state {
            Some(state) => run_script(&self.scripts.join("down.sh"), state).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Stops one component of a local control plane by its PID and starts it again with the
    /// same command line (`restart.sh`), waiting `pause` in between.
    pub fn restart(&self, component: &str, pause: Duration) -> Result<(), ClusterSetupError> {
        let Some(state) = &self.state else {
            return Err(ClusterSetupError::Manifest(
                "only a local control plane can be restarted".into(),
            ));
        };
        let script = self.scripts.join("restart.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(component)
            .arg(pause.as_secs_f64().to_string())
            .env("SLUICE_CLUSTER_STATE", state)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ClusterSetupError::Spawn {
                program: script.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(ClusterSetupError::Script {
                script,
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(())
    }

    /// A client with the kubeconfig's credentials (the local control plane's admin).
    pub async fn client(&self) -> Result<Client, ClusterSetupError> {
        client_for(&self.kubeconfig).await
    }
}

fn run_script(script: &Path, state: &Path) -> Result<String, ClusterSetupError> {
    let output = Command::new("bash")
        .arg(script)
        .env("SLUICE_CLUSTER_STATE", state)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ClusterSetupError::Spawn {
            program: script.to_path_buf(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(ClusterSetupError::Script {
            script: script.to_path_buf(),
            status: output.status.to_string(),
            output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
        });
    }
    Ok(stdout)
}

/// A client for the cluster and user of a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Result<Client, ClusterSetupError> {
    let bad = |message: String| ClusterSetupError::Kubeconfig {
        path: kubeconfig.to_path_buf(),
        message,
    };
    let file = Kubeconfig::read_from(kubeconfig).map_err(|e| bad(error_chain(&e)))?;
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| bad(error_chain(&e)))?;
    Client::try_from(config).map_err(|e| bad(error_chain(&e)))
}

/// Applies every document of a YAML stream (server-side, forced), in `namespace` when a
/// namespaced document names none. Returns the applied objects as the API server answered.
pub async fn apply_yaml(
    client: &Client,
    yaml: &str,
    namespace: Option<&str>,
) -> Result<Vec<Value>, ClusterSetupError> {
    let mut applied = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = <Value as serde::Deserialize>::deserialize(document)
            .map_err(|e| ClusterSetupError::Manifest(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        applied.push(apply(client, value, namespace).await?);
    }
    Ok(applied)
}

/// Applies one object (server-side, forced).
pub async fn apply(
    client: &Client,
    mut object: Value,
    namespace: Option<&str>,
) -> Result<Value, ClusterSetupError> {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (Some(api_version), Some(kind), Some(name)) =
        (text("/apiVersion"), text("/kind"), text("/metadata/name"))
    else {
        return Err(ClusterSetupError::Manifest(format!(
            "a document without apiVersion, kind or metadata.name: {}",
            object.to_string().chars().take(120).collect::<String>()
        )));
    };
    let (group, version) = api_version
        .split_once('/')
        .unwrap_or(("", api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &kind);
    let what = format!("{kind} {name}");
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(api_error(format!("discovery of {kind} ({api_version})")))?;
    let api: Api<DynamicObject> = if capabilities.scope == kube::discovery::Scope::Namespaced {
        let ns = text("/metadata/namespace")
            .or(namespace.map(str::to_string))
            .unwrap_or_else(|| "default".into());
        object["metadata"]["namespace"] = json!(ns);
        Api::namespaced_with(client.clone(), &ns, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let answer = api
        .patch(&name, &params, &Patch::Apply(&object))
        .await
        .map_err(api_error(format!("apply of {what}")))?;
    serde_json::to_value(answer).map_err(|e| ClusterSetupError::Manifest(e.to_string()))
}

/// Creates a namespace (or leaves it as it is).
pub async fn namespace(client: &Client, name: &str) -> Result<(), ClusterSetupError> {
    apply(
        client,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        None,
    )
    .await
    .map(|_| ())
}

/// The kinds of the chart's documents that give the controller its rights.
const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// Renders the chart with `helm template` for a release `release` in `namespace` and returns
/// its ServiceAccount, roles and bindings as a YAML stream (the Deployment and the rest left
/// out: the controller runs here as a process).
pub fn chart_rbac(
    helm: &Path,
    chart: &Path,
    release: &str,
    namespace: &str,
) -> Result<String, ClusterSetupError> {
    let output = Command::new(helm)
        .args(["template", release])
        .arg(chart)
        .args(["--namespace", namespace])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ClusterSetupError::Spawn {
            program: helm.to_path_buf(),
            source,
        })?;
    if !output.status.success() {
        return Err(ClusterSetupError::Script {
            script: helm.to_path_buf(),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let rendered = String::from_utf8_lossy(&output.stdout);
    let mut out = String::new();
    for document in serde_yaml_ng::Deserializer::from_str(&rendered) {
        let value = <Value as serde::Deserialize>::deserialize(document)
            .map_err(|e| ClusterSetupError::Manifest(e.to_string()))?;
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        if RBAC_KINDS.contains(&kind) {
            out.push_str("---\n");
            out.push_str(
                &serde_yaml_ng::to_string(&value)
                    .map_err(|e| ClusterSetupError::Manifest(e.to_string()))?,
            );
        }
    }
    Ok(out)
}

/// Writes a kubeconfig for the ServiceAccount `account` in `namespace`: the admin kubeconfig's
/// cluster with a bound token from the TokenRequest API (valid for `seconds`).
pub async fn service_account_kubeconfig(
    client: &Client,
    admin_kubeconfig: &Path,
    namespace: &str,
    account: &str,
    seconds: i64,
    out: &Path,
) -> Result<(), ClusterSetupError> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(seconds),
            ..Default::default()
        }),
        ..Default::default()
    };
    let answer: TokenRequest = accounts
        .create_subresource("token", account, &PostParams::default(), &request)
        .await
        .map_err(api_error(format!(
            "a token for ServiceAccount {namespace}/{account}"
        )))?;
    let token = answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| ClusterSetupError::Manifest("the TokenRequest has no token".into()))?;
    let bad = |message: String| ClusterSetupError::Kubeconfig {
        path: admin_kubeconfig.to_path_buf(),
        message,
    };
    let admin = Kubeconfig::read_from(admin_kubeconfig).map_err(|e| bad(error_chain(&e)))?;
    let context_name = admin
        .current_context
        .clone()
        .ok_or_else(|| bad("no current-context".into()))?;
    let cluster_name = admin
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .ok_or_else(|| bad(format!("no context {context_name:?}")))?;
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| bad(format!("no cluster {cluster_name:?}")))?;
    let mut cluster_entry = json!({"server": cluster.server});
    if let Some(ca) = &cluster.certificate_authority {
        cluster_entry["certificate-authority"] = json!(ca);
    }
    if let Some(data) = &cluster.certificate_authority_data {
        cluster_entry["certificate-authority-data"] = json!(data);
    }
    let file = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster_entry}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "cluster", "user": account, "namespace": namespace}}],
        "current-context": account,
    });
    let text =
        serde_yaml_ng::to_string(&file).map_err(|e| ClusterSetupError::Manifest(e.to_string()))?;
    std::fs::write(out, text).map_err(|source| ClusterSetupError::Write {
        path: out.to_path_buf(),
        source,
    })
}

/// The name of an object as `kubectl get` shows it, for logs.
pub fn display_name(object: &Value) -> String {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = serde_json::from_value::<DynamicObject>(object.clone())
        .map(|o| o.name_any())
        .unwrap_or_default();
    format!("{}/{name}", kind.to_lowercase())
}
