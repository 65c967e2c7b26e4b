//! Turns a Canary's metrics into observations at one point in time: renders each template for
//! each arm, runs it, and shapes the result for the analysis.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::template::{Arm, RenderContext, RenderError, render};
use super::{Provider, QueryError, buckets, single_value};
use sluice_core::analysis::validate;
use sluice_core::analysis::{Observed, RequestCounts};
use sluice_core::api::duration::GoDuration;
use sluice_core::api::{Canary, ComparisonKind, MetricTemplate, ProviderSpec, TemplateRef};
use sluice_core::rollout::MetricsWindow;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{field}: no MetricTemplate {name:?} in namespace {namespace:?}; loaded: {loaded}")]
    MissingTemplate {
        field: String,
        name: String,
        namespace: String,
        loaded: String,
    },
    #[error(
        "{field}: MetricTemplate {name:?} in namespace {namespace:?} is loaded {count} times; keep one (the first would silently win)"
    )]
    DuplicateTemplate {
        field: String,
        name: String,
        namespace: String,
        count: usize,
    },
    #[error("{field}: {source}")]
    Render {
        field: String,
        source: Box<RenderError>,
    },
    #[error("MetricTemplate {template}: {message}")]
    Provider { template: String, message: String },
}

/// One metric's templates, resolved and rendered for both arms.
struct Plan {
    metric: String,
    kind: PlanKind,
    /// What the templates may refer to; `interval` is the metric's own window.
    ctx: RenderContext,
}

enum PlanKind {
    Guardrail(Query),
    ErrorRate {
        errors: [Query; 2],
        requests: [Query; 2],
    },
    Latency([Query; 2]),
}

/// A query, rendered over the metric's interval, and the provider that runs it. Guardrails run
/// it as it is (the evaluation time is a parameter); comparisons render it again over each
/// look's window.
struct Query {
    text: String,
    template: String,
    source: String,
    arm: Arm,
    provider: Arc<dyn Provider>,
}

impl Query {
    /// The query over `window` when one is given.
    fn over(&self, ctx: &RenderContext, window: Option<u64>) -> Result<Query, QueryError> {
        let text = match window {
            None => self.text.clone(),
            Some(seconds) => {
                let ctx = RenderContext {
                    interval: GoDuration::from_secs(seconds.max(1)),
                    ..ctx.clone()
                };
                render(&self.template, &self.source, &ctx, self.arm)
                    .map_err(|e| QueryError::Render(Box::new(e)))?
            }
        };
        Ok(Query {
            text,
            template: self.template.clone(),
            source: self.source.clone(),
            arm: self.arm,
            provider: self.provider.clone(),
        })
    }
}

/// The identity of a provider: the same template namespace (where its Secret is read) and the
/// same provider spec is the same HTTP client, however many queries use it.
fn provider_key(namespace: &str, template: &MetricTemplate) -> String {
    format!(
        "{namespace}/{}",
        serde_json::to_string(&template.spec.provider).unwrap_or_default()
    )
}

pub struct Collector {
    plans: Vec<Plan>,
}

impl Plan {
    fn parts(&self) -> Vec<(&'static str, &Query)> {
        match &self.kind {
            PlanKind::Guardrail(q) => vec![("value", q)],
            PlanKind::ErrorRate { errors, requests } => vec![
                ("canary errors", &errors[0]),
                ("primary errors", &errors[1]),
                ("canary requests", &requests[0]),
                ("primary requests", &requests[1]),
            ],
            PlanKind::Latency(q) => vec![("canary buckets", &q[0]), ("primary buckets", &q[1])],
        }
    }

    fn queries(&self) -> Vec<(&'static str, &str)> {
        self.parts()
            .into_iter()
            .map(|(label, q)| (label, q.text.as_str()))
            .collect()
    }

    /// The queries as this look ran them (comparisons over `window` when one is given).
    fn labelled_queries(&self, window: Option<u64>) -> Vec<String> {
        let window = window.filter(|_| !matches!(self.kind, PlanKind::Guardrail(_)));
        self.parts()
            .into_iter()
            .map(|(label, q)| {
                let text = q
                    .over(&self.ctx, window)
                    .map_or_else(|_| q.text.clone(), |q| q.text);
                format!("{label}: {}", text.trim_end())
            })
            .collect()
    }
}

/// The providers found unreachable in this interval, by address, with the first error.
#[derive(Default)]
struct Down(BTreeMap<String, QueryError>);

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
        // One provider (one HTTP client, one connection pool) per distinct provider spec: a
        // client per query ran a machine out of file descriptors at a few thousand metrics.
        let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
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
            let mut query =
                |reference: Option<&TemplateRef>, at: &str, arm: Arm| {
                    let field = format!("{field}.{at}");
                    let template = find(templates, reference, &namespace, &field)?;
                    let template_name = template.metadata.name.clone().unwrap_or_default();
                    let text = render(&template_name, &template.spec.query, &ctx, arm).map_err(
                        |source| CollectError::Render {
                            field: field.clone(),
                            source: Box::new(source),
                        },
                    )?;
                    let key = provider_key(
                        template.metadata.namespace.as_deref().unwrap_or(&namespace),
                        template,
                    );
                    let provider = match providers.get(&key) {
                        Some(provider) => provider.clone(),
                        None => {
                            let provider = connect(&template_name, &template.spec.provider)
                                .map_err(|message| CollectError::Provider {
                                    template: template_name.clone(),
                                    message,
                                })?;
                            providers.insert(key, provider.clone());
                            provider
                        }
                    };
                    Ok::<_, CollectError>(Query {
                        text,
                        template: template_name,
                        source: template.spec.query.clone(),
                        arm,
                        provider,
                    })
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
                ctx,
            });
        }
        Ok(Self { plans })
    }

    /// Every rendered query, labelled, for `analyse --output json` and for tests.
    pub fn queries(&self) -> Vec<(String, String)> {
        self.plans
            .iter()
            .flat_map(|plan| {
                plan.queries()
                    .into_iter()
                    .map(|(label, text)| (format!("{} {label}", plan.metric), text.to_string()))
            })
            .collect()
    }

    /// Observes the metrics at `at` (Unix seconds), each over its interval; or, with a
    /// `window`, the comparisons' running totals over its `comparison_seconds`, and the
    /// guardrails only when it asks for them. Each metric gets its own result, so the caller
    /// decides which errors stop it and which only hold the release.
    ///
    /// Every observation passes `analysis::validate` here, the one place observations are
    /// assembled: an impossible one becomes `QueryError::Impossible` (no data, with its queries).
    /// A provider found unreachable is not asked again in the same look: the remaining
    /// queries to it are `Skipped` with the first error, so an outage costs one timeout per
    /// provider, not one per query.
    pub async fn observe(
        &self,
        at: i64,
        window: Option<MetricsWindow>,
    ) -> Vec<(String, Result<Observed, QueryError>)> {
        let mut out = Vec::with_capacity(self.plans.len());
        let mut down = Down::default();
        let seconds = window.map(|w| w.comparison_seconds);
        for plan in &self.plans {
            let over = |q: &Query| q.over(&plan.ctx, seconds);
            let result = match &plan.kind {
                PlanKind::Guardrail(_) if window.is_some_and(|w| !w.guardrails) => continue,
                PlanKind::Guardrail(q) => scalar(q, at, &mut down).await.map(Observed::Value),
                PlanKind::ErrorRate { errors, requests } => {
                    match (
                        over(&errors[0]),
                        over(&errors[1]),
                        over(&requests[0]),
                        over(&requests[1]),
                    ) {
                        (Ok(e0), Ok(e1), Ok(r0), Ok(r1)) => {
                            error_counts(&[e0, e1], &[r0, r1], at, &mut down).await
                        }
                        (Err(e), ..) | (_, Err(e), ..) | (.., Err(e), _) | (.., Err(e)) => Err(e),
                    }
                }
                PlanKind::Latency([canary, primary]) => match (over(canary), over(primary)) {
                    (Ok(canary), Ok(primary)) => histograms(&canary, &primary, at, &mut down).await,
                    (Err(e), _) | (_, Err(e)) => Err(e),
                },
            };
            let result = result.and_then(|observed| {
                validate::observation(&observed)
                    .map(|()| observed)
                    .map_err(|source| QueryError::Impossible {
                        source,
                        queries: plan.labelled_queries(seconds),
                    })
            });
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
    let mut matching = templates.iter().filter(|t| {
        t.metadata.name.as_deref() == Some(&wanted_name) && namespace_of(t) == wanted_namespace
    });
    let first = matching.next();
    let others = matching.count();
    if first.is_some() && others > 0 {
        return Err(CollectError::DuplicateTemplate {
            field: field.to_string(),
            name: wanted_name,
            namespace: wanted_namespace,
            count: others + 1,
        });
    }
    first.ok_or_else(|| {
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

async fn run(query: &Query, at: i64, down: &mut Down) -> Result<Vec<super::Sample>, QueryError> {
    let address = query.provider.address().to_string();
    if let Some(first) = down.0.get(&address) {
        return Err(QueryError::Skipped {
            first: Box::new(first.clone()),
        });
    }
    let result = query.provider.query(&query.text, at).await;
    if let Err(e) = &result
        && e.is_unreachable()
    {
        down.0.insert(address, e.clone());
    }
    result
}

async fn scalar(query: &Query, at: i64, down: &mut Down) -> Result<f64, QueryError> {
    single_value(&query.text, &run(query, at, down).await?)
}

/// Requests and errors per arm. An empty error count is zero errors when the same arm's request
/// count is present: a healthy service often has no error series at all. An empty request count
/// is no data.
async fn error_counts(
    errors: &[Query; 2],
    requests: &[Query; 2],
    at: i64,
    down: &mut Down,
) -> Result<Observed, QueryError> {
    let mut arms = [RequestCounts {
        requests: 0.0,
        errors: 0.0,
    }; 2];
    for (arm, counts) in arms.iter_mut().enumerate() {
        counts.requests = scalar(&requests[arm], at, down).await?;
        counts.errors = match scalar(&errors[arm], at, down).await {
            Err(QueryError::Empty { .. }) => 0.0,
            other => other?,
        };
    }
    Ok(Observed::Counts {
        canary: arms[0],
        primary: arms[1],
    })
}

async fn histograms(
    canary: &Query,
    primary: &Query,
    at: i64,
    down: &mut Down,
) -> Result<Observed, QueryError> {
    let canary_buckets = buckets(&canary.text, &run(canary, at, down).await?)?;
    let primary_buckets = buckets(&primary.text, &run(primary, at, down).await?)?;
    Ok(Observed::Histograms {
        canary: canary_buckets,
        primary: primary_buckets,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::providers::{BoxFuture, Sample};

    /// Answers every query with one series of value 10 and records what it was asked.
    struct Recording(Mutex<Vec<String>>);

    impl Provider for Recording {
        fn query<'a>(
            &'a self,
            query: &'a str,
            _: i64,
        ) -> BoxFuture<'a, Result<Vec<Sample>, QueryError>> {
            if let Ok(mut asked) = self.0.lock() {
                asked.push(query.to_string());
            }
            Box::pin(async {
                Ok(vec![Sample {
                    labels: BTreeMap::new(),
                    value: 10.0,
                }])
            })
        }

        fn address(&self) -> &str {
            "recording"
        }
    }

    fn template(name: &str, query: &str) -> MetricTemplate {
        serde_yaml_ng::from_str(&format!(
            "{{apiVersion: sluice.dev/v1alpha1, kind: MetricTemplate, metadata: {{name: {name}, namespace: test}}, spec: {{provider: {{type: prometheus, address: 'http://127.0.0.1:9'}}, query: '{query}'}}}}"
        ))
        .unwrap()
    }

    #[test]
    fn comparisons_read_running_totals_and_checks_skip_guardrails() {
        let canary: Canary = serde_yaml_ng::from_str(
            "{apiVersion: sluice.dev/v1alpha1, kind: Canary, metadata: {name: app, namespace: test}, spec: {targetRef: {kind: Deployment, name: app}, analysis: {interval: 1m, stepWeight: 10, maxWeight: 50, metrics: [{name: errors, templateRef: {name: e}, comparison: {type: errorRate, requestsTemplateRef: {name: r}}}, {name: success, interval: 2m, templateRef: {name: s}, thresholdRange: {min: 99}}]}}}",
        )
        .unwrap();
        let templates = [
            template("e", "sum(increase(errors[{{ interval }}]))"),
            template("r", "sum(increase(requests[{{ interval }}]))"),
            template("s", "success[{{ interval }}]"),
        ];
        let recording = Arc::new(Recording(Mutex::new(Vec::new())));
        let provider: Arc<dyn Provider> = recording.clone();
        let collector = Collector::new(&canary, &templates, |_, _| Ok(provider.clone())).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let asked = |window| {
            recording.0.lock().unwrap().clear();
            let observed = runtime.block_on(collector.observe(0, window));
            let metrics: Vec<String> = observed.into_iter().map(|(m, _)| m).collect();
            (metrics, recording.0.lock().unwrap().clone())
        };
        // A check: the comparison over the 135 s since the canary's first traffic, no guardrail.
        let check = MetricsWindow {
            comparison_seconds: 135,
            guardrails: false,
        };
        let (metrics, queries) = asked(Some(check));
        assert_eq!(metrics, ["errors"]);
        assert_eq!(queries.len(), 4);
        assert!(
            queries.iter().all(|q| q.ends_with("[135s]))")),
            "{queries:?}"
        );
        // A step: the same, and the guardrail over its own interval.
        let (metrics, queries) = asked(Some(MetricsWindow {
            guardrails: true,
            ..check
        }));
        assert_eq!(metrics, ["errors", "success"]);
        assert_eq!(queries.last().map(String::as_str), Some("success[2m]"));
        // Without a window (a template's own check), every metric over its interval.
        let (_, queries) = asked(None);
        assert!(queries[0].ends_with("[1m]))"), "{queries:?}");
    }
}
