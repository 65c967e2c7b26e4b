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

use std::sync::Arc;

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

/// What went wrong with the cluster. The messages say everything people need; the error beneath
/// is kept as the source as well, for callers that look at it (and for `error_chain`, which does
/// not repeat what a message already says).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ClusterError {
    #[error("cannot reach the Kubernetes API: {message}")]
    Unreachable {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// The API server's own answer: its Status (message, reason, code) is all in `message`, and
    /// kube's error for it has no cause beneath, so there is no source to keep.
    #[error("the Kubernetes API refused {action} of {object}: {message}")]
    Refused {
        action: &'static str,
        object: String,
        message: String,
    },
    #[error("{object} is not a valid object: {message}")]
    Invalid {
        object: String,
        message: String,
        #[source]
        source: Option<Cause>,
    },
}

impl ClusterError {
    /// The `error` label of `sluice_reconcile_errors_total`: one per variant, so that the series
    /// stay few and say which way the cluster failed.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "cluster_unreachable",
            Self::Refused { .. } => "cluster_refused",
            Self::Invalid { .. } => "invalid_object",
        }
    }
}

/// The error beneath a `ClusterError`. Shared, so that `ClusterError` stays `Clone` (routers'
/// errors and tests clone and compare it); two causes are equal when they say the same thing,
/// since errors such as `kube::Error` cannot be compared.
#[derive(Clone, Debug)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// `Some(Cause)`, for the `source` field.
    pub fn of(error: impl std::error::Error + Send + Sync + 'static) -> Option<Self> {
        Some(Self::new(error))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    // The wrapper is invisible in a chain: the wrapped error's own causes come next.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

/// A Kubernetes Event about a Canary.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub warning: bool,
    pub reason: String,
    pub message: String,
    /// The step that records it (`objects::step_key`): an Event with a key is recorded once,
    /// however often its step runs. A leader that dies between a step's Event and its status
    /// write leaves the step to the next leader, which makes it again from the same status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
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

    /// Adds (`present`) or removes `finalizer` on a Canary; nothing when it is so already. Not
    /// an apply: the user owns the Canary, and an apply of its metadata by sluice's field manager
    /// would take fields from them.
    fn set_finalizer<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        finalizer: &'a str,
        present: bool,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
}

/// `finalizers` with `finalizer` added or removed; `None` when that changes nothing.
pub fn with_finalizer(
    finalizers: &[String],
    finalizer: &str,
    present: bool,
) -> Option<Vec<String>> {
    let has = finalizers.iter().any(|f| f == finalizer);
    match (has, present) {
        (false, true) => {
            let mut out = finalizers.to_vec();
            out.push(finalizer.to_string());
            Some(out)
        }
        (true, false) => Some(
            finalizers
                .iter()
                .filter(|f| *f != finalizer)
                .cloned()
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_chain::error_chain;
    use std::error::Error as _;

    #[test]
    fn a_cause_is_kept_as_the_source_and_not_repeated() {
        let parse = serde_json::from_str::<Value>("{").unwrap_err();
        let error = ClusterError::Invalid {
            object: "Canary test/podinfo".into(),
            message: parse.to_string(),
            source: Cause::of(parse),
        };
        let source = error.source().expect("a source");
        assert!(source.downcast_ref::<Cause>().is_some(), "{source:?}");
        assert_eq!(
            error.to_string(),
            "Canary test/podinfo is not a valid object: EOF while parsing an object at line 1 column 1"
        );
        assert_eq!(error_chain(&error), error.to_string());
        // Clones share the cause, and compare equal.
        assert_eq!(error.clone(), error);
    }

    #[test]
    fn each_variant_has_its_metric_label() {
        let unreachable = ClusterError::Unreachable {
            message: "a read of Deployment test/podinfo: connection refused".into(),
            source: None,
        };
        let refused = ClusterError::Refused {
            action: "an apply",
            object: "Deployment test/podinfo".into(),
            message: "forbidden".into(),
        };
        let invalid = ClusterError::Invalid {
            object: "Deployment test/podinfo".into(),
            message: "not JSON".into(),
            source: None,
        };
        assert_eq!(unreachable.metric_label(), "cluster_unreachable");
        assert_eq!(refused.metric_label(), "cluster_refused");
        assert_eq!(invalid.metric_label(), "invalid_object");
    }
}
