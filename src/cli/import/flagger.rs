//! Flagger's `flagger.app/v1beta1` Canaries, MetricTemplates and AlertProviders turned into
//! sluice's. Pure: a parsed YAML document in, the sluice object and what was changed or left
//! behind out. The mapping walks each Flagger object field by field and takes what it maps, so
//! whatever is left at the end is reported by name instead of being dropped unnoticed.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};
use sluice_controller::providers::lexer::lex_template;
// The routers' own escaping, so that a suffix means in the regex what the routers write.
use sluice_controller::router::gateway_api::quote_regex;
use sluice_core::api::duration::GoDuration;
use sluice_core::api::validate::validate_canary;
use sluice_core::api::{
    Alert, AlertProvider, AlertProviderKind, AlertProviderSpec, AlertSeverity, Analysis, Canary,
    CanarySpec, Comparison, ComparisonKind, GatewayRef, HookType, MetricCheck, MetricTemplate,
    MetricTemplateSpec, ProviderKind, ProviderSpec, RequestMatch, RouterKind, SecretReference,
    ServiceSpec, StringMatch, TargetRef, TemplateRef, ThresholdRange, Webhook,
};

pub const FLAGGER_API_VERSION: &str = "flagger.app/v1beta1";

/// A Flagger object that is not one: a field of the wrong type, or a required one missing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct InputError {
    pub field: String,
    pub message: String,
}

fn input_error(field: impl Into<String>, message: impl Into<String>) -> InputError {
    InputError {
        field: field.into(),
        message: message.into(),
    }
}

/// What happened to one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Kept with another name or value.
    Changed,
    /// Added by the import (sluice's comparisons).
    Added,
    /// Left behind: sluice has nothing that does what the field did.
    NotMapped,
    /// The produced object is not one sluice accepts (`validate_canary`).
    Invalid,
    /// Something the user must do or know.
    Note,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Changed => "changed",
            Kind::Added => "added",
            Kind::NotMapped => "not mapped",
            Kind::Invalid => "invalid",
            Kind::Note => "note",
        }
    }

    /// Whether the output lacks something the input said.
    pub fn is_loss(self) -> bool {
        matches!(self, Kind::NotMapped | Kind::Invalid)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub field: String,
    pub message: String,
}

#[derive(Clone, Debug)]
pub enum Object {
    Canary(Box<Canary>),
    MetricTemplate(MetricTemplate),
    AlertProvider(AlertProvider),
}

/// One Flagger object's result: the sluice object (none when it cannot exist in sluice) and
/// the findings, in the order of the input's fields.
#[derive(Clone, Debug)]
pub struct Converted {
    /// `Canary test/podinfo`, for the report.
    pub title: String,
    pub object: Option<Object>,
    pub findings: Vec<Finding>,
}

/// The ready MetricTemplates of `metrics-templates/`, one file per data source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    App,
    Istio,
    Linkerd,
    Nginx,
    Envoy,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::App => "app",
            Source::Istio => "istio",
            Source::Linkerd => "linkerd",
            Source::Nginx => "nginx",
            Source::Envoy => "envoy",
        }
    }

    /// The source whose metrics Flagger's built-in queries read for `router`
    /// (`pkg/metrics/observers/factory.go`): the mesh's own for Istio, Linkerd and NGINX, the
    /// application's `http_request_duration_seconds` for `kubernetes` and the Gateway API.
    fn for_router(router: Option<RouterKind>) -> Source {
        match router {
            Some(RouterKind::Istio) => Source::Istio,
            Some(RouterKind::Linkerd | RouterKind::Smi) => Source::Linkerd,
            Some(RouterKind::Nginx) => Source::Nginx,
            _ => Source::App,
        }
    }
}

/// How to convert, from the command line.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The template file for the built-in metrics, instead of the one the provider implies.
    pub metrics: Option<Source>,
    /// Names of the imported MetricTemplates whose queries used Flagger's `{{ ingress }}`, now
    /// `{{ variables.ingress }}`: the Canaries' metrics naming them get the variable.
    pub ingress_templates: BTreeSet<String>,
}

/// The Flagger object in `document`, converted; `None` for a document that is not Flagger's
/// (other apiVersions are left out, as `kubectl apply` users keep them in the same files).
pub fn convert(document: Value, options: &Options) -> Result<Option<Converted>, InputError> {
    let mut top = Fields::new(document, "")?;
    let api_version = top.string("apiVersion")?.unwrap_or_default();
    let kind = top.string("kind")?.unwrap_or_default();
    if api_version != FLAGGER_API_VERSION {
        return Ok(None);
    }
    let mut findings = Vec::new();
    let metadata = metadata(&mut top, &mut findings)?;
    let title = format!(
        "{kind} {}{}",
        metadata
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default(),
        metadata.name.as_deref().unwrap_or_default()
    );
    if top.take("status").is_some() {
        findings.push(note("status", "left out: sluice writes its own status"));
    }
    let spec = top.child_required("spec")?;
    let object = match kind.as_str() {
        "Canary" => Some(Object::Canary(Box::new(canary(
            metadata,
            spec,
            options,
            &mut findings,
        )?))),
        "MetricTemplate" => {
            metric_template(metadata, spec, &mut findings)?.map(Object::MetricTemplate)
        }
        "AlertProvider" => {
            alert_provider(metadata, spec, &mut findings)?.map(Object::AlertProvider)
        }
        other => {
            return Err(input_error(
                "kind",
                format!(
                    "{other:?} is not a Flagger kind; expected Canary, MetricTemplate or AlertProvider"
                ),
            ));
        }
    };
    top.rest(&mut findings);
    Ok(Some(Converted {
        title,
        object,
        findings,
    }))
}

/// The names of the MetricTemplates in `document` whose query uses `{{ ingress }}`, read before
/// the Canaries are converted.
pub fn uses_ingress(document: &Value) -> Option<String> {
    if document.get("apiVersion")?.as_str()? != FLAGGER_API_VERSION
        || document.get("kind")?.as_str()? != "MetricTemplate"
    {
        return None;
    }
    let query = document.get("spec")?.get("query")?.as_str()?;
    let (_, holes) = lex_template(query).ok()?;
    holes
        .iter()
        .any(|hole| hole.variable == "ingress")
        .then(|| {
            document
                .get("metadata")?
                .get("name")?
                .as_str()
                .map(str::to_string)
        })
        .flatten()
}

fn note(field: impl Into<String>, message: impl Into<String>) -> Finding {
    finding(Kind::Note, field, message)
}

fn finding(kind: Kind, field: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding {
        kind,
        field: field.into(),
        message: message.into(),
    }
}

/// The object's fields, taken one by one; what is left is reported as not mapped.
struct Fields {
    path: String,
    map: Map<String, Value>,
}

impl Fields {
    fn new(value: Value, path: &str) -> Result<Fields, InputError> {
        match value {
            Value::Object(map) => Ok(Fields {
                path: path.to_string(),
                map,
            }),
            Value::Null => Ok(Fields {
                path: path.to_string(),
                map: Map::new(),
            }),
            other => Err(input_error(
                display_path(path),
                format!("must be a mapping, found {}", type_name(&other)),
            )),
        }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of `key`, removed; YAML's `null` is the same as leaving the key out.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn typed<T: serde::de::DeserializeOwned>(
        &mut self,
        key: &str,
        what: &str,
    ) -> Result<Option<T>, InputError> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => serde_json::from_value(value.clone())
                .map(Some)
                .map_err(|_| {
                    input_error(
                        self.field(key),
                        format!("must be {what}, found {}", short(&value)),
                    )
                }),
        }
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, InputError> {
        self.typed(key, "a string")
    }

    fn required_string(&mut self, key: &str) -> Result<String, InputError> {
        self.string(key)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| input_error(self.field(key), "is required"))
    }

    fn u32(&mut self, key: &str) -> Result<Option<u32>, InputError> {
        self.typed(key, "a whole number from 0 to 4294967295")
    }

    fn f64(&mut self, key: &str) -> Result<Option<f64>, InputError> {
        self.typed(key, "a number")
    }

    fn bool(&mut self, key: &str) -> Result<bool, InputError> {
        Ok(self.typed(key, "true or false")?.unwrap_or(false))
    }

    fn duration(&mut self, key: &str) -> Result<Option<GoDuration>, InputError> {
        match self.string(key)? {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|e| input_error(self.field(key), format!("{e}"))),
        }
    }

    fn strings(&mut self, key: &str) -> Result<Vec<String>, InputError> {
        Ok(self.typed(key, "a list of strings")?.unwrap_or_default())
    }

    fn string_map(&mut self, key: &str) -> Result<BTreeMap<String, String>, InputError> {
        Ok(self
            .typed(key, "a mapping of strings to strings")?
            .unwrap_or_default())
    }

    fn child(&mut self, key: &str) -> Result<Option<Fields>, InputError> {
        let path = self.field(key);
        self.take(key).map(|v| Fields::new(v, &path)).transpose()
    }

    fn child_required(&mut self, key: &str) -> Result<Fields, InputError> {
        self.child(key)?
            .ok_or_else(|| input_error(self.field(key), "is required"))
    }

    fn list(&mut self, key: &str) -> Result<Vec<Fields>, InputError> {
        let path = self.field(key);
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| Fields::new(item, &format!("{path}[{i}]")))
                .collect(),
            Some(other) => Err(input_error(
                path,
                format!("must be a list, found {}", type_name(&other)),
            )),
        }
    }

    /// Reports every field not taken: as not mapped, or as a note when its value is empty
    /// (`false`, `""`, `{}`), which says nothing sluice loses.
    fn rest(self, findings: &mut Vec<Finding>) {
        for (key, value) in self.map {
            let field = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if is_empty(&value) {
                findings.push(note(field, "left out: empty or false, as sluice's default"));
            } else {
                findings.push(finding(Kind::NotMapped, field, unmapped_reason(&key)));
            }
        }
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "(document)".into()
    } else {
        path.to_string()
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// Why a Flagger field has no counterpart, by its name: what the user can do instead.
fn unmapped_reason(key: &str) -> String {
    let why = match key {
        "trafficPolicy" => {
            "sluice's Istio DestinationRules carry the host only; keep the policy in a DestinationRule of your own"
        }
        "retries" | "timeout" | "corsPolicy" | "headers" | "rewrite" | "backendTimeout" => {
            "sluice's routers do not set it yet; the route is written without it"
        }
        "match" => {
            "the apex route has no request matches in sluice; only analysis.match (A/B) is kept"
        }
        "sessionAffinity" => "sluice has no session affinity for canary traffic yet",
        "primaryReadyThreshold" | "canaryReadyThreshold" => {
            "sluice waits for every replica to be ready (progressDeadlineSeconds bounds the wait)"
        }
        "portDiscovery" => "sluice exposes service.port (and targetPort) only",
        "metricsServer" => {
            "sluice reads the Prometheus address from each MetricTemplate's spec.provider.address"
        }
        "query" => {
            "inline queries are gone (deprecated in Flagger too): put the query in a MetricTemplate and name it in templateRef"
        }
        "routeRef" | "upstreamRef" => "for routers sluice does not have (APISIX, Gloo)",
        "primaryScalerQueries" | "primaryScalerReplicas" => {
            "sluice copies the HorizontalPodAutoscaler as it is"
        }
        "region" => "for CloudWatch, which sluice does not query",
        "port" => "sluice's HTTPRoute parents name a Gateway and its sectionName, not a port",
        "disableTLS" => "sluice always verifies TLS for webhooks",
        "apex" | "primary" | "canary" | "unmanagedMetadata" => {
            "sluice does not add labels or annotations to the Services it writes"
        }
        "mirror" => "Gateway API request mirroring of the apex route is not written by sluice",
        _ => "sluice has no such field",
    };
    why.to_string()
}

/// Kept: name, namespace, labels, annotations. What the API server fills in is left out.
fn metadata(top: &mut Fields, findings: &mut Vec<Finding>) -> Result<ObjectMeta, InputError> {
    let mut meta = top.child_required("metadata")?;
    let name = meta.required_string("name")?;
    let namespace = meta.string("namespace")?;
    let labels = meta.string_map("labels")?;
    let mut annotations = meta.string_map("annotations")?;
    // kubectl's copy of the Flagger object: applied as it is, it would describe the old kind.
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    for server_set in [
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "selfLink",
        "finalizers",
        "ownerReferences",
    ] {
        meta.take(server_set);
    }
    meta.rest(findings);
    Ok(ObjectMeta {
        name: Some(name),
        namespace,
        labels: (!labels.is_empty()).then_some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..ObjectMeta::default()
    })
}

fn reference(
    mut fields: Fields,
    default_kind: &str,
    findings: &mut Vec<Finding>,
) -> Result<TargetRef, InputError> {
    let api_version = fields.string("apiVersion")?;
    let kind = match fields.string("kind")? {
        Some(kind) => kind,
        None => {
            findings.push(finding(
                Kind::Changed,
                fields.field("kind"),
                format!("set to {default_kind}, which Flagger assumes; sluice needs it written"),
            ));
            default_kind.to_string()
        }
    };
    let name = fields.required_string("name")?;
    fields.rest(findings);
    Ok(TargetRef {
        api_version,
        kind,
        name,
    })
}

fn canary(
    metadata: ObjectMeta,
    mut spec: Fields,
    options: &Options,
    findings: &mut Vec<Finding>,
) -> Result<Canary, InputError> {
    let namespace = metadata.namespace.clone();
    let provider_text = spec.string("provider")?;
    let target_ref = reference(spec.child_required("targetRef")?, "Deployment", findings)?;
    let autoscaler_ref = spec
        .child("autoscalerRef")?
        .map(|f| reference(f, "HorizontalPodAutoscaler", findings))
        .transpose()?;
    let ingress_ref = spec
        .child("ingressRef")?
        .map(|f| reference(f, "Ingress", findings))
        .transpose()?;
    let (service, mesh_parent) = match spec.child("service")? {
        Some(fields) => {
            let (service, mesh_parent) = service(fields, findings)?;
            (Some(service), mesh_parent)
        }
        None => (None, false),
    };
    let provider = router(provider_text.as_deref(), mesh_parent, findings);
    let analysis_fields = match (spec.child("analysis")?, spec.child("canaryAnalysis")?) {
        (Some(analysis), _) => analysis,
        (None, Some(old)) => {
            findings.push(finding(
                Kind::Changed,
                "spec.canaryAnalysis",
                "renamed spec.analysis (Flagger's current name)",
            ));
            old
        }
        (None, None) => Fields::new(Value::Null, "spec.analysis")?,
    };
    let source = options
        .metrics
        .unwrap_or_else(|| Source::for_router(provider));
    let context = MetricContext {
        source,
        ingress: ingress_ref.as_ref().map(|r| r.name.clone()),
        ingress_templates: &options.ingress_templates,
        namespace: namespace.clone(),
        explicit_source: options.metrics.is_some(),
        provider,
    };
    let analysis = analysis(analysis_fields, &context, findings)?;
    let progress_deadline_seconds = spec.u32("progressDeadlineSeconds")?;
    let skip_analysis = spec.bool("skipAnalysis")?;
    let revert_on_deletion = spec.bool("revertOnDeletion")?;
    let suspend = spec.bool("suspend")?;
    spec.rest(findings);
    let mut canary = Canary::new(
        metadata.name.as_deref().unwrap_or_default(),
        CanarySpec {
            target_ref,
            provider,
            service,
            ingress_ref,
            analysis,
            autoscaler_ref,
            progress_deadline_seconds,
            skip_analysis,
            suspend,
            revert_on_deletion,
        },
    );
    canary.metadata = metadata;
    if let Err(errors) = validate_canary(&canary) {
        for error in errors.0 {
            findings.push(finding(Kind::Invalid, error.field, error.message));
        }
    }
    Ok(canary)
}

/// `service`, and whether a gatewayRef is a Service (a GAMMA mesh route).
fn service(
    mut fields: Fields,
    findings: &mut Vec<Finding>,
) -> Result<(ServiceSpec, bool), InputError> {
    let name = fields.string("name")?;
    let port = fields
        .typed::<u16>("port", "a port number from 1 to 65535")?
        .ok_or_else(|| input_error(fields.field("port"), "is required"))?;
    let port_name = fields.string("portName")?;
    let target_port = match fields.take("targetPort") {
        None => None,
        Some(Value::Number(n)) => Some(IntOrString::Int(
            n.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| {
                    input_error(
                        fields.field("targetPort"),
                        "must be a port number or a port name",
                    )
                })?,
        )),
        Some(Value::String(s)) => Some(IntOrString::String(s)),
        Some(other) => {
            return Err(input_error(
                fields.field("targetPort"),
                format!(
                    "must be a port number or a port name, found {}",
                    type_name(&other)
                ),
            ));
        }
    };
    let gateways = fields.strings("gateways")?;
    let hosts = fields.strings("hosts")?;
    let mut gateway_refs = Vec::new();
    let mut mesh_parent = false;
    for mut reference in fields.list("gatewayRefs")? {
        let kind = reference.string("kind")?;
        let group = reference.string("group")?;
        let name = reference.required_string("name")?;
        let namespace = reference.string("namespace")?;
        let section_name = reference.string("sectionName")?;
        if kind.as_deref() == Some("Service") {
            // sluice's GAMMA route always attaches to the apex Service, on service.port.
            mesh_parent = true;
            reference.take("port");
            findings.push(finding(
                Kind::Changed,
                reference.path.clone(),
                format!(
                    "the Service parent {name} is implied by provider gamma (sluice attaches the mesh route to the apex Service)"
                ),
            ));
        } else {
            if kind.as_deref().is_some_and(|k| k != "Gateway")
                || group
                    .as_deref()
                    .is_some_and(|g| g != "gateway.networking.k8s.io")
            {
                findings.push(finding(
                    Kind::NotMapped,
                    reference.path.clone(),
                    format!(
                        "parent {}/{} is not a Gateway or a Service; the import keeps Gateways (set group and kind in gatewayRefs by hand to keep it)",
                        group.unwrap_or_default(),
                        kind.unwrap_or_default()
                    ),
                ));
            }
            gateway_refs.push(GatewayRef {
                name,
                namespace,
                section_name,
                group: None,
                kind: None,
                port: None,
            });
        }
        reference.rest(findings);
    }
    if mesh_parent && !gateway_refs.is_empty() {
        findings.push(finding(
            Kind::NotMapped,
            fields.field("gatewayRefs"),
            "a Service and Gateways together: the gamma route has the apex Service as its only parent; the Gateways are left out",
        ));
        gateway_refs.clear();
    }
    fields.rest(findings);
    Ok((
        ServiceSpec {
            name,
            port,
            port_name,
            target_port,
            gateway_refs,
            hosts,
            gateways,
        },
        mesh_parent,
    ))
}

/// Flagger's provider names to sluice's routers (README, "Routers").
fn router(
    provider: Option<&str>,
    mesh_parent: bool,
    findings: &mut Vec<Finding>,
) -> Option<RouterKind> {
    let field = "spec.provider";
    let gateway_api = |findings: &mut Vec<Finding>, given: &str, kind: RouterKind| {
        if mesh_parent {
            findings.push(finding(
                Kind::Changed,
                field,
                format!(
                    "{given} -> gamma: a Service in service.gatewayRefs is a mesh (GAMMA) route"
                ),
            ));
            Some(RouterKind::Gamma)
        } else {
            if given != kind.name() {
                findings.push(finding(
                    Kind::Changed,
                    field,
                    format!("{given} -> {kind}: sluice writes Gateway API v1 HTTPRoutes"),
                ));
            }
            Some(kind)
        }
    };
    match provider {
        None if mesh_parent => {
            findings.push(finding(
                Kind::Changed,
                field,
                "set to gamma: a Service in service.gatewayRefs is a mesh (GAMMA) route, which Flagger's gatewayapi router writes",
            ));
            Some(RouterKind::Gamma)
        }
        None => {
            findings.push(note(
                field,
                "not set: the controller's --router decides, as Flagger's -mesh-provider did",
            ));
            None
        }
        Some(given @ ("gatewayapi:v1beta1" | "gatewayapi:v1")) => {
            gateway_api(findings, given, RouterKind::GatewayApiV1)
        }
        Some(given @ "gatewayapi") => gateway_api(findings, given, RouterKind::GatewayApi),
        Some(given) => match given.parse::<RouterKind>() {
            Ok(kind) => Some(kind),
            Err(_) => {
                findings.push(finding(
                    Kind::NotMapped,
                    field,
                    format!(
                        "{given:?} has no sluice router (sluice has {}); most ingress controllers also implement the Gateway API: use gatewayapi:v1. Left out, so the controller's --router decides",
                        RouterKind::names().join(", ")
                    ),
                ));
                None
            }
        },
    }
}

struct MetricContext<'a> {
    source: Source,
    ingress: Option<String>,
    ingress_templates: &'a BTreeSet<String>,
    namespace: Option<String>,
    explicit_source: bool,
    provider: Option<RouterKind>,
}

fn analysis(
    mut fields: Fields,
    context: &MetricContext,
    findings: &mut Vec<Finding>,
) -> Result<Analysis, InputError> {
    let interval = fields.duration("interval")?;
    let iterations = fields.u32("iterations")?;
    let mirror = fields.typed::<bool>("mirror", "true or false")?;
    let mirror_weight = fields.u32("mirrorWeight")?;
    let max_weight = fields.u32("maxWeight")?;
    let step_weight = fields.u32("stepWeight")?;
    let step_weights = fields
        .typed::<Vec<u32>>("stepWeights", "a list of whole numbers")?
        .unwrap_or_default();
    let step_weight_promotion = fields.u32("stepWeightPromotion")?;
    let threshold = fields.u32("threshold")?;
    let alerts = fields
        .list("alerts")?
        .into_iter()
        .map(|f| alert(f, findings))
        .collect::<Result<Vec<_>, _>>()?;
    let webhooks = fields
        .list("webhooks")?
        .into_iter()
        .map(|f| webhook(f, findings))
        .collect::<Result<Vec<_>, _>>()?;
    let matches = fields
        .list("match")?
        .into_iter()
        .map(|f| request_match(f, findings))
        .collect::<Result<Vec<_>, _>>()?;
    let metrics_path = fields.field("metrics");
    let metrics = metrics(fields.list("metrics")?, &metrics_path, context, findings)?;
    fields.rest(findings);
    // Built from sluice's own defaults (alpha, minSamplePerArm, ...), then Flagger's fields.
    let mut analysis: Analysis = serde_json::from_value(serde_json::json!({"iterations": 1}))
        .map_err(|e| input_error("spec.analysis", e.to_string()))?;
    if let Some(interval) = interval {
        analysis.interval = interval;
    }
    if let Some(threshold) = threshold {
        analysis.threshold = threshold;
    }
    analysis.iterations = iterations;
    analysis.mirror = mirror;
    analysis.mirror_weight = mirror_weight;
    analysis.max_weight = max_weight;
    analysis.step_weight = step_weight;
    analysis.step_weights = step_weights;
    analysis.step_weight_promotion = step_weight_promotion;
    analysis.alerts = alerts;
    analysis.webhooks = webhooks;
    analysis.matches = matches;
    analysis.metrics = metrics;
    Ok(analysis)
}

fn alert(mut fields: Fields, findings: &mut Vec<Finding>) -> Result<Alert, InputError> {
    let name = fields.required_string("name")?;
    let severity = fields.typed::<AlertSeverity>("severity", "info, warn or error")?;
    let mut provider = fields.child_required("providerRef")?;
    let provider_ref = TemplateRef {
        name: provider.required_string("name")?,
        namespace: provider.string("namespace")?,
    };
    provider.rest(findings);
    fields.rest(findings);
    Ok(Alert {
        name,
        severity,
        provider_ref,
    })
}

fn webhook(mut fields: Fields, findings: &mut Vec<Finding>) -> Result<Webhook, InputError> {
    let kind = fields
        .typed::<HookType>(
            "type",
            "one of confirm-rollout, pre-rollout, rollout, confirm-traffic-increase, confirm-promotion, post-rollout, rollback, event",
        )?
        .unwrap_or_default();
    let name = fields.required_string("name")?;
    let url = fields.required_string("url")?;
    let timeout = fields.duration("timeout")?;
    let retries = fields.u32("retries")?;
    let metadata = fields.string_map("metadata")?;
    let mute_alert = fields.bool("muteAlert")?;
    fields.rest(findings);
    Ok(Webhook {
        name,
        kind,
        url,
        timeout,
        retries,
        metadata,
        mute_alert,
    })
}

fn request_match(
    mut fields: Fields,
    findings: &mut Vec<Finding>,
) -> Result<RequestMatch, InputError> {
    let mut headers = BTreeMap::new();
    if let Some(mut map) = fields.child("headers")? {
        let names: Vec<String> = map.map.keys().cloned().collect();
        for name in names {
            let mut string = map.child_required(&name)?;
            let exact = string.string("exact")?;
            let prefix = string.string("prefix")?;
            let mut regex = string.string("regex")?;
            if let Some(suffix) = string.string("suffix")? {
                // RE2 matches the whole value in Istio and the Gateway API, as a suffix needs.
                let pattern = format!(".*{}", quote_regex(&suffix));
                findings.push(finding(
                    Kind::Changed,
                    string.field("suffix"),
                    format!("written as regex {pattern:?} (sluice has exact, prefix and regex)"),
                ));
                regex = Some(pattern);
            }
            string.rest(findings);
            headers.insert(
                name,
                StringMatch {
                    exact,
                    prefix,
                    regex,
                },
            );
        }
        map.rest(findings);
    }
    fields.rest(findings);
    Ok(RequestMatch { headers })
}

/// Flagger's built-in metrics, by name, with the ready template of each source that answers
/// the same question.
const SUCCESS_RATE: &str = "request-success-rate";
const DURATION: &str = "request-duration";

fn metrics(
    list: Vec<Fields>,
    path: &str,
    context: &MetricContext,
    findings: &mut Vec<Finding>,
) -> Result<Vec<MetricCheck>, InputError> {
    let source = context.source.name();
    let mut out = Vec::new();
    let mut built_in = BTreeSet::new();
    for mut fields in list {
        let field = fields.path.clone();
        let name = fields.required_string("name")?;
        let interval = fields.duration("interval")?;
        let old_threshold = fields.f64("threshold")?;
        let mut threshold_range = match fields.child("thresholdRange")? {
            None => None,
            Some(mut range) => {
                let parsed = ThresholdRange {
                    min: range.f64("min")?,
                    max: range.f64("max")?,
                };
                range.rest(findings);
                Some(parsed)
            }
        };
        let template_ref = match fields.child("templateRef")? {
            None => None,
            Some(mut reference) => {
                let parsed = TemplateRef {
                    name: reference.required_string("name")?,
                    namespace: reference.string("namespace")?,
                };
                // apiVersion and kind can only name a MetricTemplate.
                reference.take("apiVersion");
                reference.take("kind");
                reference.rest(findings);
                Some(parsed)
            }
        };
        let mut template_variables = fields.string_map("templateVariables")?;
        let is_built_in = template_ref.is_none() && (name == SUCCESS_RATE || name == DURATION);
        let template_ref = if is_built_in {
            let template = if name == SUCCESS_RATE {
                format!("{source}-success-rate")
            } else {
                format!("{source}-latency-p99")
            };
            findings.push(finding(
                Kind::Changed,
                field.clone(),
                format!(
                    "{name}: Flagger's built-in query -> templateRef {template} (metrics-templates/{source}.yaml), thresholdRange kept as a guardrail{}",
                    if name == DURATION { " (milliseconds, as in Flagger)" } else { "" }
                ),
            ));
            built_in.insert(name.clone());
            Some(TemplateRef {
                name: template,
                namespace: None,
            })
        } else {
            template_ref
        };
        if template_ref.is_none() {
            // An inline `query` (deprecated) or a metric Flagger itself would refuse.
            findings.push(finding(
                Kind::NotMapped,
                field.clone(),
                format!(
                    "{name}: no templateRef and not one of Flagger's built-in metrics ({SUCCESS_RATE}, {DURATION}); the metric is left out"
                ),
            ));
            fields.rest(findings);
            continue;
        }
        if let Some(threshold) = old_threshold
            && threshold_range.is_none()
        {
            // Flagger's deprecated threshold: a floor for the success rate, a ceiling otherwise.
            let range = if name == SUCCESS_RATE {
                ThresholdRange {
                    min: Some(threshold),
                    max: None,
                }
            } else {
                ThresholdRange {
                    min: None,
                    max: Some(threshold),
                }
            };
            findings.push(finding(
                Kind::Changed,
                format!("{field}.threshold"),
                format!(
                    "Flagger's deprecated threshold {threshold} written as thresholdRange.{}",
                    if range.min.is_some() { "min" } else { "max" }
                ),
            ));
            threshold_range = Some(range);
        }
        if let (Some(ingress), Some(reference)) = (&context.ingress, &template_ref)
            && !template_variables.contains_key("ingress")
            && ((is_built_in && context.source == Source::Nginx)
                || context.ingress_templates.contains(&reference.name))
        {
            findings.push(finding(
                Kind::Added,
                format!("{field}.templateVariables.ingress"),
                format!(
                    "{ingress}, from spec.ingressRef: Flagger's {{{{ ingress }}}} is {{{{ variables.ingress }}}} in sluice"
                ),
            ));
            template_variables.insert("ingress".into(), ingress.clone());
        }
        fields.rest(findings);
        if threshold_range.is_none() {
            findings.push(finding(
                Kind::NotMapped,
                field.clone(),
                format!(
                    "{name}: no thresholdRange; a sluice guardrail needs one (Flagger only recorded the value)"
                ),
            ));
            continue;
        }
        out.push(MetricCheck {
            name,
            interval,
            threshold_range,
            template_ref,
            template_variables,
            comparison: None,
        });
    }
    if built_in.is_empty() {
        return Ok(out);
    }
    let variables = match (context.source, &context.ingress) {
        (Source::Nginx, Some(ingress)) => {
            BTreeMap::from([("ingress".to_string(), ingress.clone())])
        }
        _ => BTreeMap::new(),
    };
    let mut add = |kind: ComparisonKind, name: &str, template: String, requests: Option<String>| {
        let mut name = name.to_string();
        if out.iter().any(|m| m.name == name) {
            name = format!("{name}-vs-primary");
        }
        let what = match kind {
            ComparisonKind::ErrorRate => {
                "errorRate comparison: the canary's 5xx rate against the primary's"
            }
            ComparisonKind::Latency => {
                "latency comparison: the canary's share of requests slower than the primary's p99, against the primary's share"
            }
        };
        findings.push(finding(
            Kind::Added,
            path.to_string(),
            format!(
                "{name}: {what} ({template}{})",
                requests
                    .as_deref()
                    .map(|r| format!(", {r}"))
                    .unwrap_or_default()
            ),
        ));
        out.push(MetricCheck {
            name,
            interval: None,
            threshold_range: None,
            template_ref: Some(TemplateRef {
                name: template,
                namespace: None,
            }),
            template_variables: variables.clone(),
            comparison: Some(Comparison {
                kind,
                requests_template_ref: requests.map(|name| TemplateRef {
                    name,
                    namespace: None,
                }),
                quantile: (kind == ComparisonKind::Latency).then_some(0.99),
                max_regression: None,
                tolerance: None,
            }),
        });
    };
    if built_in.contains(SUCCESS_RATE) {
        add(
            ComparisonKind::ErrorRate,
            "error-rate",
            format!("{source}-errors"),
            Some(format!("{source}-requests")),
        );
    }
    if built_in.contains(DURATION) {
        add(
            ComparisonKind::Latency,
            "latency",
            format!("{source}-latency-buckets"),
            None,
        );
    }
    let namespace = context
        .namespace
        .as_deref()
        .map(|n| format!(" -n {n}"))
        .unwrap_or_default();
    let why = if context.explicit_source {
        "chosen with --metrics".to_string()
    } else {
        match context.provider {
            Some(RouterKind::Istio | RouterKind::Linkerd | RouterKind::Smi | RouterKind::Nginx) => {
                "the mesh's own metrics, as Flagger's built-in queries read them".to_string()
            }
            _ => "the application's http_requests_total and http_request_duration_seconds, which Flagger's built-in queries read for the Gateway API and kubernetes providers; --metrics istio|linkerd|envoy|... picks another".to_string(),
        }
    };
    findings.push(note(
        path,
        format!(
            "apply the templates: kubectl apply -f metrics-templates/{source}.yaml{namespace} (set spec.provider.address to your Prometheus); {source}: {why}"
        ),
    ));
    if context.source == Source::Nginx && context.ingress.is_none() {
        findings.push(finding(
            Kind::NotMapped,
            path,
            "the nginx templates select by Ingress (templateVariables.ingress), and the Canary has no spec.ingressRef to take it from",
        ));
    }
    Ok(out)
}

fn metric_template(
    metadata: ObjectMeta,
    mut spec: Fields,
    findings: &mut Vec<Finding>,
) -> Result<Option<MetricTemplate>, InputError> {
    let mut provider = spec.child_required("provider")?;
    let kind = provider
        .string("type")?
        .unwrap_or_else(|| "prometheus".into());
    let address = provider.string("address")?;
    let headers = provider
        .typed::<BTreeMap<String, Vec<String>>>(
            "headers",
            "a mapping of header names to lists of values",
        )?
        .unwrap_or_default();
    let secret_ref = match provider.child("secretRef")? {
        None => None,
        Some(mut reference) => {
            let name = reference.required_string("name")?;
            reference.rest(findings);
            Some(SecretReference { name })
        }
    };
    let insecure_skip_verify = provider.bool("insecureSkipVerify")?;
    provider.rest(findings);
    let query = spec.required_string("query")?;
    spec.rest(findings);
    if kind != "prometheus" {
        findings.push(finding(
            Kind::NotMapped,
            "spec.provider.type",
            format!(
                "{kind:?}: sluice queries Prometheus only (and Prometheus-compatible APIs: Thanos, Mimir, VictoriaMetrics...); the template is left out"
            ),
        ));
        return Ok(None);
    }
    if secret_ref.is_some() {
        findings.push(note(
            "spec.provider.secretRef",
            "the Secret is read as in Flagger: username and password (basic auth), or token (bearer)",
        ));
    }
    let query = placeholders(&query, findings);
    let mut template = MetricTemplate::new(
        metadata.name.as_deref().unwrap_or_default(),
        MetricTemplateSpec {
            provider: ProviderSpec {
                kind: ProviderKind::Prometheus,
                address,
                secret_ref,
                headers,
                insecure_skip_verify,
            },
            query,
        },
    );
    template.metadata = metadata;
    Ok(Some(template))
}

/// Flagger's placeholders in sluice's spelling. Both use `{{ name }}`; Flagger's `ingress` is
/// sluice's `variables.ingress`, and what Go's templates allow beyond a name (pipes, `.Field`,
/// `-` trimming) stays as written and is reported.
fn placeholders(query: &str, findings: &mut Vec<Finding>) -> String {
    let field = "spec.query";
    let holes = match lex_template(query) {
        Ok((_, holes)) => holes,
        Err(e) => {
            findings.push(finding(
                Kind::NotMapped,
                field,
                format!("sluice cannot read the query's placeholders ({e}); kept as written, fix it before applying"),
            ));
            return query.to_string();
        }
    };
    let mut out = String::with_capacity(query.len());
    let mut copied = 0;
    for hole in holes {
        let variable = hole.variable.as_str();
        let keep = matches!(
            variable,
            "name" | "namespace" | "target" | "service" | "interval"
        ) || variable
            .strip_prefix("variables.")
            .is_some_and(|key| !key.is_empty() && !key.contains([' ', '.', '|']));
        if keep {
            continue;
        }
        out.push_str(&query[copied..hole.start]);
        copied = hole.end;
        if variable == "ingress" {
            out.push_str("{{ variables.ingress }}");
            findings.push(finding(
                Kind::Changed,
                field,
                "{{ ingress }} -> {{ variables.ingress }}: the Canaries' metrics give it in templateVariables.ingress (the import adds it from spec.ingressRef)",
            ));
        } else {
            out.push_str(&query[hole.start..hole.end]);
            findings.push(finding(
                Kind::NotMapped,
                field,
                format!(
                    "{{{{ {variable} }}}}: sluice knows namespace, name, target, service, arm, arm_service, interval and variables.KEY; kept as written, rewrite it before applying"
                ),
            ));
        }
    }
    out.push_str(&query[copied..]);
    out
}

fn alert_provider(
    metadata: ObjectMeta,
    mut spec: Fields,
    findings: &mut Vec<Finding>,
) -> Result<Option<AlertProvider>, InputError> {
    let kind_text = spec.required_string("type")?;
    let channel = spec.string("channel")?;
    let username = spec.string("username")?;
    let address = spec.string("address")?;
    let proxy = spec.string("proxy")?;
    let secret_ref = match spec.child("secretRef")? {
        None => None,
        Some(mut reference) => {
            let name = reference.required_string("name")?;
            reference.rest(findings);
            Some(SecretReference { name })
        }
    };
    spec.rest(findings);
    // `webhook` is sluice's own type, not Flagger's: a Flagger provider never names it.
    let kind = match serde_json::from_value::<AlertProviderKind>(Value::String(kind_text.clone())) {
        Ok(kind) if kind != AlertProviderKind::Webhook => kind,
        _ => {
            findings.push(finding(
                Kind::NotMapped,
                "spec.type",
                format!(
                    "{kind_text:?}: sluice sends to slack, msteams, discord, gchat and rocket (and any receiver of Flagger's event payload as type webhook); the provider is left out"
                ),
            ));
            return Ok(None);
        }
    };
    if kind == AlertProviderKind::Msteams {
        findings.push(note(
            "spec.type",
            "msteams: sluice posts to a Teams Workflows webhook (\"Post to a channel when a webhook request is received\"); Office 365 connector URLs, which Flagger used, are retired: put the Workflows URL in the address (or the Secret's address key)",
        ));
    }
    let mut provider = AlertProvider::new(
        metadata.name.as_deref().unwrap_or_default(),
        AlertProviderSpec {
            kind,
            channel,
            username,
            address,
            proxy,
            secret_ref,
        },
    );
    provider.metadata = metadata;
    Ok(Some(provider))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template_query(query: &str) -> (String, Vec<Finding>) {
        let mut findings = Vec::new();
        (placeholders(query, &mut findings), findings)
    }

    #[test]
    fn placeholders_sluice_knows_stay_and_ingress_becomes_a_variable() {
        let (query, findings) = template_query(
            r#"sum(rate(x{namespace="{{ namespace }}",pod=~"{{target}}-.*",d="{{ variables.direction }}"}[{{ interval }}]))"#,
        );
        assert!(findings.is_empty(), "{findings:?}");
        assert!(query.contains("{{target}}"));
        let (query, findings) = template_query(r#"x{ingress="{{ ingress }}"}"#);
        assert_eq!(query, r#"x{ingress="{{ variables.ingress }}"}"#);
        assert_eq!(findings[0].kind, Kind::Changed);
        let (query, findings) = template_query(r#"x{route="{{ route }}"}"#);
        assert_eq!(query, r#"x{route="{{ route }}"}"#);
        assert_eq!(findings[0].kind, Kind::NotMapped);
        assert!(findings[0].message.contains("{{ route }}"), "{findings:?}");
    }
}
