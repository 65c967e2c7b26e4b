//! The world as the rollout sees it: a small trait over Kubernetes objects, with a real
//! implementation (`kube.rs`) and a faithful in-process model (`memory.rs`) for tests, the demo
//! and the benchmark.
//!
//! Objects are plain JSON (`apiVersion`, `kind`, `metadata`, ...), so one trait serves every kind
//! the controller touches and routers can manage kinds sluice has no Rust types for (HTTPRoute).

pub mod apiserver;
pub mod memory;
pub mod objects;
pub mod observe;
pub mod resources;

use serde_json::Value;

use crate::providers::BoxFuture;
use sluice_core::api::CanaryStatus;

/// Names one object.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(api_version: &str, kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The reference of a JSON object, if it has apiVersion, kind and metadata.name.
    pub fn of(object: &Value, default_namespace: &str) -> Option<Self> {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Some(Self {
            api_version: text("/apiVersion")?,
            kind: text("/kind")?,
            namespace: text("/metadata/namespace").unwrap_or_else(|| default_namespace.to_string()),
            name: text("/metadata/name")?,
        })
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ClusterError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Unreachable(String),
    #[error("the Kubernetes API refused {action} of {object}: {message}")]
    Refused {
        action: &'static str,
        object: String,
        message: String,
    },
    #[error("{object} is not a valid object: {message}")]
    Invalid { object: String, message: String },
}

/// A Kubernetes Event about a Canary.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// The operations the controller needs, and no more.
pub trait Cluster: Send + Sync {
    /// The object, or `None` when it does not exist.
    fn get<'a>(
        &'a self,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Option<Value>, ClusterError>>;

    /// Creates or updates the fields of `object` that sluice manages (server-side apply, field
    /// manager `sluice`).
    fn apply<'a>(&'a self, object: Value) -> BoxFuture<'a, Result<(), ClusterError>>;

    /// Writes a Canary's status through the status subresource.
    fn patch_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a CanaryStatus,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;

    /// Records an Event on a Canary.
    fn event<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        event: &'a Event,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
}
