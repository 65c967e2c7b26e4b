//! Turns a Canary's metrics into observations at one point in time: renders each template for
//! each arm, runs it, and shapes the result for the analysis.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::template::{Arm, RenderContext, RenderError, render};
use super::{Provider, QueryError, buckets, single_value};
use crate::analysis::{Observed, RequestCounts};
use crate::api::{Canary, ComparisonKind, MetricTemplate, ProviderSpec, TemplateRef};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{field}: no MetricTemplate {name:?} in namespace {namespace:?}; loaded: {loaded}")]
    MissingTemplate {
        field: String,
        name: String,
        namespace: String,
        loaded: String,
    },
    #[error("{field}: {source}")]
    Render { field: String, source: RenderError },
    #[error("MetricTemplate {template}: {message}")]
    Provider { template: String, message: String },
}

/// One metric's templates, resolved and rendered for both arms.
struct Plan {
    metric: String,
    kind: PlanKind,
}

enum PlanKind {
    Guardrail(Query),
    ErrorRate {
        errors: [Query; 2],
        requests: [Query; 2],
    },
    Latency([Query; 2]),
}

/// A rendered query and the provider that runs it. Queries are rendered once: nothing in them
/// changes between intervals, the evaluation time is a parameter.
struct Query {
    text: String,
    provider: Arc<dyn Provider>,
}

pub struct Collector {
    plans: Vec<Plan>,
}

impl Collector {
    /// Resolves and renders every template the Canary's metrics name. `connect` gives the
    /// provider for a template.
    pub fn new(
        canary: &Canary,
        templates: &[MetricTemplate],
        mut connect: impl FnMut(&str, &ProviderSpec) -> Result<Arc<dyn Provider>, String>,
    ) -> Result<Self, CollectError> {
        let namespace = canary
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = canary.metadata.name.clone().unwrap_or_default();
        let target = canary.spec.target_ref.name.clone();
        let service = canary
            .spec
            .service
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| target.clone());
        let analysis = &canary.spec.analysis;
        let mut plans = Vec::new();
        for (index, metric) in analysis.metrics.iter().enumerate() {
            let field = format!("spec.analysis.metrics[{index}]");
            let ctx = RenderContext {
                namespace: namespace.clone(),
                name: name.clone(),
                target: target.clone(),
                service: service.clone(),
                interval: metric.interval.unwrap_or(analysis.interval),
                variables: metric.template_variables.clone(),
            };
            let mut query = |reference: Option<&TemplateRef>, at: &str, arm: Arm| {
                let field = format!("{field}.{at}");
                let template = find(templates, reference, &namespace, &field)?;
                let template_name = template.metadata.name.clone().unwrap_or_default();
                let text =
                    render(&template_name, &template.spec.query, &ctx, arm).map_err(|source| {
                        CollectError::Render {
                            field: field.clone(),
                            source,
                        }
                    })?;
                let provider =
                    connect(&template_name, &template.spec.provider).map_err(|message| {
                        CollectError::Provider {
                            template: template_name.clone(),
                            message,
                        }
                    })?;
                Ok::<_, CollectError>(Query { text, provider })
            };
            let reference = metric.template_ref.as_ref();
            let kind = match metric.comparison.as_ref() {
                None => PlanKind::Guardrail(query(reference, "templateRef", Arm::Canary)?),
                Some(c) if c.kind == ComparisonKind::Latency => PlanKind::Latency([
                    query(reference, "templateRef", Arm::Canary)?,
                    query(reference, "templateRef", Arm::Primary)?,
                ]),
                Some(c) => {
                    let requests = c.requests_template_ref.as_ref();
                    let at = "comparison.requestsTemplateRef";
                    PlanKind::ErrorRate {
                        errors: [
                            query(reference, "templateRef", Arm::Canary)?,
                            query(reference, "templateRef", Arm::Primary)?,
                        ],
                        requests: [
                            query(requests, at, Arm::Canary)?,
                            query(requests, at, Arm::Primary)?,
                        ],
                    }
                }
            };
            plans.push(Plan {
                metric: metric.name.clone(),
                kind,
            });
        }
        Ok(Self { plans })
    }

    /// Every rendered query, labelled, for `analyse --output json` and for tests.
    pub fn queries(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for plan in &self.plans {
            let mut push = |label: &str, q: &Query| {
                out.push((format!("{} {label}", plan.metric), q.text.clone()))
            };
            match &plan.kind {
                PlanKind::Guardrail(q) => push("value", q),
                PlanKind::ErrorRate { errors, requests } => {
                    push("canary errors", &errors[0]);
                    push("primary errors", &errors[1]);
                    push("canary requests", &requests[0]);
                    push("primary requests", &requests[1]);
                }
                PlanKind::Latency(q) => {
                    push("canary buckets", &q[0]);
                    push("primary buckets", &q[1]);
                }
            }
        }
        out
    }

    /// Observes every metric at `at` (Unix seconds). Each metric gets its own result, so the
    /// caller decides which errors stop it and which only hold the release.
    pub async fn observe(&self, at: i64) -> Vec<(String, Result<Observed, QueryError>)> {
        let mut out = Vec::with_capacity(self.plans.len());
        for plan in &self.plans {
            let result = match &plan.kind {
                PlanKind::Guardrail(q) => scalar(q, at).await.map(Observed::Value),
                PlanKind::ErrorRate { errors, requests } => {
                    error_counts(errors, requests, at).await
                }
                PlanKind::Latency([canary, primary]) => histograms(canary, primary, at).await,
            };
            out.push((plan.metric.clone(), result));
        }
        out
    }
}

fn find<'a>(
    templates: &'a [MetricTemplate],
    reference: Option<&TemplateRef>,
    canary_namespace: &str,
    field: &str,
) -> Result<&'a MetricTemplate, CollectError> {
    let namespace_of = |t: &MetricTemplate| {
        t.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| canary_namespace.to_string())
    };
    let wanted_name = reference.map(|r| r.name.clone()).unwrap_or_default();
    let wanted_namespace = reference
        .and_then(|r| r.namespace.clone())
        .unwrap_or_else(|| canary_namespace.to_string());
    templates
        .iter()
        .find(|t| {
            t.metadata.name.as_deref() == Some(&wanted_name) && namespace_of(t) == wanted_namespace
        })
        .ok_or_else(|| {
            let loaded: BTreeMap<String, ()> = templates
                .iter()
                .map(|t| {
                    (
                        format!(
                            "{}/{}",
                            namespace_of(t),
                            t.metadata.name.clone().unwrap_or_default()
                        ),
                        (),
                    )
                })
                .collect();
            CollectError::MissingTemplate {
                field: field.to_string(),
                name: wanted_name,
                namespace: wanted_namespace,
                loaded: loaded.into_keys().collect::<Vec<_>>().join(", "),
            }
        })
}

async fn run(query: &Query, at: i64) -> Result<Vec<super::Sample>, QueryError> {
    query.provider.query(&query.text, at).await
}

async fn scalar(query: &Query, at: i64) -> Result<f64, QueryError> {
    single_value(&query.text, &run(query, at).await?)
}

/// Requests and errors per arm. An empty error count is zero errors when the same arm's request
/// count is present: a healthy service often has no error series at all. An empty request count
/// is no data.
async fn error_counts(
    errors: &[Query; 2],
    requests: &[Query; 2],
    at: i64,
) -> Result<Observed, QueryError> {
    let mut arms = [RequestCounts {
        requests: 0.0,
        errors: 0.0,
    }; 2];
    for (arm, counts) in arms.iter_mut().enumerate() {
        counts.requests = scalar(&requests[arm], at).await?;
        counts.errors = match scalar(&errors[arm], at).await {
            Err(QueryError::Empty { .. }) => 0.0,
            other => other?,
        };
    }
    Ok(Observed::Counts {
        canary: arms[0],
        primary: arms[1],
    })
}

async fn histograms(canary: &Query, primary: &Query, at: i64) -> Result<Observed, QueryError> {
    let canary_buckets = buckets(&canary.text, &run(canary, at).await?)?;
    let primary_buckets = buckets(&primary.text, &run(primary, at).await?)?;
    Ok(Observed::Histograms {
        canary: canary_buckets,
        primary: primary_buckets,
    })
}
