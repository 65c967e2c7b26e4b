//! `MetricTemplate`: a named query against a metrics provider, as in Flagger.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A query that the analysis renders for each arm and runs against a provider.
///
/// Field names follow Flagger's `flagger.app/v1beta1` `MetricTemplate`, so a Flagger template
/// moves over by changing its `apiVersion`.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "MetricTemplate",
    namespaced,
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider.type"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricTemplateSpec {
    pub provider: ProviderSpec,
    /// The query, with `{{ variable }}` placeholders: namespace, name, target, service, arm,
    /// arm_service, interval and variables.<key>.
    pub query: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderSpec {
    #[serde(rename = "type")]
    pub kind: ProviderKind,
    /// Base URL of the provider's HTTP API, e.g. `http://prometheus.monitoring:9090`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A Secret in the template's namespace with `username` and `password` (basic auth) or
    /// `token` (bearer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
    /// Extra HTTP headers sent with every query (Go's `http.Header` shape, as in Flagger).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Prometheus,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretReference {
    pub name: String,
}
