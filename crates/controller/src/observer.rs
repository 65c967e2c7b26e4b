//! Metrics for the controller: the Canary's MetricTemplates read from the cluster, rendered and
//! run against Prometheus. Every failure becomes "no data" with its reason, so an outage or a
//! broken template holds the release (and is reported) but never passes it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::cluster::{Cluster, ObjectRef};
use crate::providers::collect::Collector;
use crate::providers::{self, BoxFuture, Credentials, Provider};
use crate::telemetry::Metrics;
use sluice_core::analysis::Observation;
use sluice_core::api::{Canary, MetricTemplate, ProviderSpec};
use sluice_core::rollout::MetricsWindow;

/// Where the rollout's observations come from.
pub trait Observer: Send + Sync {
    /// The Canary's metrics at `at` (Unix seconds) as `window` asks: the comparisons' running
    /// totals, and the guardrails over their interval when it is an analysis step.
    fn observe<'a>(
        &'a self,
        canary: &'a Canary,
        at: i64,
        window: MetricsWindow,
    ) -> BoxFuture<'a, Vec<Observation>>;
}

pub struct PrometheusObserver {
    cluster: Arc<dyn Cluster>,
    /// Used for templates without `spec.provider.address`.
    default_address: Option<String>,
    timeout: Duration,
    /// Providers (HTTP clients and their connection pools) by what makes them: the comparisons
    /// look every check, and a client per look would mean a new pool every 15 s per template.
    providers: std::sync::Mutex<BTreeMap<String, Arc<dyn Provider>>>,
    /// Where failed queries are counted (`sluice_metric_query_errors_total`), if anywhere.
    metrics: Option<Arc<Metrics>>,
}

/// Distinct provider configurations kept before the cache starts again (rotated credentials
/// leave old entries behind).
const MAX_CACHED_PROVIDERS: usize = 1024;

impl PrometheusObserver {
    pub fn new(
        cluster: Arc<dyn Cluster>,
        default_address: Option<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            cluster,
            default_address,
            timeout,
            providers: std::sync::Mutex::new(BTreeMap::new()),
            metrics: None,
        }
    }

    /// Counts the looks whose queries failed in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Counts a metric that could not be measured for another reason than a lack of data: an
    /// outage or a mistake, which holds the release as no data does but is someone's to fix.
    fn count_error(&self, canary: &Canary, metric: &str) {
        if let Some(metrics) = &self.metrics {
            let namespace = canary.namespace().unwrap_or_else(|| "default".into());
            metrics.record_query_error(&namespace, &canary.name_any(), metric);
        }
    }

    async fn templates(&self, canary: &Canary) -> Result<Vec<MetricTemplate>, String> {
        let namespace = canary.namespace().unwrap_or_else(|| "default".into());
        let mut references = Vec::new();
        for metric in &canary.spec.analysis.metrics {
            references.extend(metric.template_ref.iter());
            references.extend(
                metric
                    .comparison
                    .iter()
                    .filter_map(|c| c.requests_template_ref.as_ref()),
            );
        }
        let mut templates = Vec::new();
        for reference in references {
            let ns = reference
                .namespace
                .clone()
                .unwrap_or_else(|| namespace.clone());
            let object = ObjectRef::new(
                "sluice.dev/v1alpha1",
                "MetricTemplate",
                &ns,
                &reference.name,
            );
            match self.cluster.get(&object).await {
                Ok(Some(value)) => {
                    let template: MetricTemplate = serde_json::from_value(value)
                        .map_err(|e| format!("{object} is invalid: {e}"))?;
                    templates.push(template);
                }
                Ok(None) => return Err(format!("{object} not found")),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(templates)
    }

    async fn credentials(
        &self,
        namespace: &str,
        spec: &ProviderSpec,
    ) -> Result<Credentials, String> {
        let Some(reference) = &spec.secret_ref else {
            return Ok(Credentials::None);
        };
        let object = ObjectRef::new("v1", "Secret", namespace, &reference.name);
        let secret = self
            .cluster
            .get(&object)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("spec.provider.secretRef: {object} not found"))?;
        let secret: Secret =
            serde_json::from_value(secret).map_err(|e| format!("{object} is invalid: {e}"))?;
        Credentials::from_secret(&secret).map_err(|e| format!("spec.provider.secretRef: {e}"))
    }

    /// The provider for this configuration, built on first use.
    fn provider(
        &self,
        spec: &ProviderSpec,
        address: &str,
        credentials: &Credentials,
    ) -> Result<Arc<dyn Provider>, String> {
        let key = format!(
            "{address}\n{}\n{credentials:?}",
            serde_json::to_string(spec).unwrap_or_default()
        );
        // A poisoned lock only means another reconcile panicked; the map is still usable.
        let mut cache = self
            .providers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(provider) = cache.get(&key) {
            return Ok(provider.clone());
        }
        let provider = providers::connect(spec, address, credentials, self.timeout)
            .map_err(|e| e.to_string())?;
        if cache.len() >= MAX_CACHED_PROVIDERS {
            cache.clear();
        }
        cache.insert(key, provider.clone());
        Ok(provider)
    }

    async fn collect(
        &self,
        canary: &Canary,
        at: i64,
        window: MetricsWindow,
    ) -> Result<Vec<Observation>, String> {
        let templates = self.templates(canary).await?;
        let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        for template in &templates {
            let name = template.name_any();
            let namespace = template
                .namespace()
                .unwrap_or_else(|| canary.namespace().unwrap_or_default());
            let spec = &template.spec.provider;
            let address = spec
                .address
                .clone()
                .or_else(|| self.default_address.clone())
                .ok_or_else(|| format!("MetricTemplate {name}: spec.provider.address is not set and the controller has no --prometheus-address"))?;
            let credentials = self.credentials(&namespace, spec).await?;
            let provider = self
                .provider(spec, &address, &credentials)
                .map_err(|e| format!("MetricTemplate {name}: {e}"))?;
            providers.insert(name, provider);
        }
        let collector = Collector::new(canary, &templates, |name, _| {
            providers
                .get(name)
                .cloned()
                .ok_or_else(|| format!("no provider for {name}"))
        })
        .map_err(|e| e.to_string())?;
        Ok(collector
            .observe(at, Some(window))
            .await
            .into_iter()
            .map(|(metric, result)| {
                if let Err(e) = &result
                    && !e.is_no_data()
                {
                    self.count_error(canary, &metric);
                }
                Observation {
                    metric,
                    result: result.map_err(|e| e.to_string()),
                }
            })
            .collect())
    }
}

impl Observer for PrometheusObserver {
    fn observe<'a>(
        &'a self,
        canary: &'a Canary,
        at: i64,
        window: MetricsWindow,
    ) -> BoxFuture<'a, Vec<Observation>> {
        Box::pin(async move {
            match self.collect(canary, at, window).await {
                Ok(observations) => observations,
                // Nothing could be asked: every metric of this look failed.
                Err(reason) => canary
                    .spec
                    .analysis
                    .metrics
                    .iter()
                    .filter(|m| window.guardrails || m.comparison.is_some())
                    .map(|m| {
                        self.count_error(canary, &m.name);
                        Observation {
                            metric: m.name.clone(),
                            result: Err(reason.clone()),
                        }
                    })
                    .collect(),
            }
        })
    }
}
