//! `kubectl sluice`: the commands people and scripts run against Canaries on a cluster. The
//! `sluice` binary installed as `kubectl-sluice` on the PATH is a kubectl plugin: kubectl hands
//! it every argument, so the usual `--kubeconfig`, `--context` and `-n`/`-A` are parsed here.
//!
//! Reading (`get`, `status`, `watch`) and acting (`promote`, `abort`, `retry`, `suspend`,
//! `resume`) both go through the Canary alone: an action is an annotation or a spec field the
//! controller carries out, so that it works with any number of controller replicas and is seen
//! in the Canary's history.

pub mod act;
pub mod get;
pub mod show;
pub mod status;
pub mod watch;

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use sluice_controller::error_chain::error_chain;
use sluice_core::api::Canary;

use super::exit::Exit;
use super::readable::readable;

/// How to reach the cluster and which namespace, as kubectl takes them.
#[derive(clap::Args, Clone, Debug)]
pub struct Connection {
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the pod's
    /// in-cluster credentials).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: the current context).
    #[arg(long)]
    context: Option<String>,
    /// The namespace (default: the context's namespace, else "default").
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KubectlError {
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),
    #[error("cannot reach the cluster: {0}")]
    Unreachable(String),
    #[error("canary {namespace}/{name} not found (kubectl sluice get -A lists every Canary)")]
    NotFound { namespace: String, name: String },
    #[error("{what}: {message}")]
    Api { what: String, message: String },
    /// An action that does not apply to the Canary as it stands, with why.
    #[error("{0}")]
    Refused(String),
}

impl KubectlError {
    fn exit(&self) -> Exit {
        match self {
            Self::Config(_) | Self::Unreachable(_) => Exit::UNREACHABLE,
            Self::NotFound { .. } => Exit::NOT_FOUND,
            Self::Api { .. } | Self::Refused(_) => Exit::FAILURE,
        }
    }

    /// The exit code, after printing the error as every subcommand does.
    pub fn fail(self) -> Exit {
        let exit = self.exit();
        exit.fail(readable(&self.to_string()))
    }

    /// A request that failed: unreachable (no answer at all) is told apart from an answer that
    /// said no, which names what was asked.
    fn from_kube(what: &str, error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(status) => Self::Api {
                what: what.to_string(),
                message: format!("{} ({})", status.message, status.reason),
            },
            kube::Error::HyperError(_)
            | kube::Error::Service(_)
            | kube::Error::Auth(_)
            | kube::Error::TlsRequired
            | kube::Error::RustlsTls(_) => Self::Unreachable(error_chain(&error)),
            _ => Self::Api {
                what: what.to_string(),
                message: error_chain(&error),
            },
        }
    }
}

/// A client and the namespace the command works in.
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
}

impl Connection {
    pub async fn connect(&self) -> Result<Cluster, KubectlError> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let file = Kubeconfig::read_from(path).map_err(|e| {
                    KubectlError::Config(format!("{}: {}", path.display(), error_chain(&e)))
                })?;
                Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| KubectlError::Config(error_chain(&e)))?
            }
            (None, Some(_)) => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| KubectlError::Config(error_chain(&e)))?,
            (None, None) => Config::infer()
                .await
                .map_err(|e| KubectlError::Config(error_chain(&e)))?,
        };
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| KubectlError::Config(error_chain(&e)))?;
        Ok(Cluster { client, namespace })
    }
}

impl Cluster {
    pub fn canaries(&self) -> Api<Canary> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn canary(&self, name: &str) -> Result<Canary, KubectlError> {
        self.canaries()
            .get_opt(name)
            .await
            .map_err(|e| KubectlError::from_kube(&format!("reading canary {name}"), e))?
            .ok_or_else(|| KubectlError::NotFound {
                namespace: self.namespace.clone(),
                name: name.to_string(),
            })
    }

    /// The Events about a Canary, oldest first. The controller records them through
    /// events.k8s.io; the core API serves the same objects with a field selector on the object
    /// they are about.
    pub async fn events(&self, name: &str) -> Result<Vec<Event>, KubectlError> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = format!("involvedObject.kind=Canary,involvedObject.name={name}");
        let mut events = api
            .list(&ListParams::default().fields(&selector))
            .await
            .map_err(|e| KubectlError::from_kube(&format!("reading the events of {name}"), e))?
            .items;
        events.sort_by_key(show::event_time);
        Ok(events)
    }
}

/// Runs a command to its end on a one-thread runtime (each waits on one request at a time): its
/// exit code, or its error printed with the error's code.
pub fn block_on(command: impl std::future::Future<Output = Result<Exit, KubectlError>>) -> Exit {
    let runtime = match super::runtime::build(super::runtime::Flavour::CurrentThread) {
        Ok(runtime) => runtime,
        Err(e) => return Exit::FAILURE.fail(e),
    };
    runtime.block_on(command).unwrap_or_else(KubectlError::fail)
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
