//! Pure builders of the objects sluice generates for a Canary, shaped as Flagger makes them: the
//! `<target>-primary` Deployment, `-primary` copies of the ConfigMaps and Secrets the pod template
//! uses, the apex, primary and canary Services, the primary's autoscaler, and the body that scales
//! the target. No I/O: the controller reads the inputs and applies the outputs.
//!
//! Objects are JSON so that the fields of the target sluice does not know about survive the copy;
//! `k8s_openapi` types are used only where reading is easier typed.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use serde_json::{Map, Value, json};

use sluice_core::api::{Canary, CanaryStatus};

/// The labels that tell the primary's pods from the canary's, tried in this order (Flagger's
/// default `selectorLabels`).
pub const SELECTOR_LABELS: [&str; 3] = ["app", "name", "app.kubernetes.io/name"];

/// Appended to the names (and selector label values) of the primary's objects.
pub const PRIMARY_SUFFIX: &str = "-primary";

/// The Canary kind's apiVersion, for owner references.
pub const CANARY_API_VERSION: &str = "sluice.dev/v1alpha1";

/// Pod-template annotation carrying the revision the primary runs. A ConfigMap change leaves the
/// pod template as it was, so without it promoting such a change would not restart the primary's
/// pods and environment variables read from the ConfigMap would stay stale.
pub const REVISION_ANNOTATION: &str = "sluice.dev/revision";

/// Annotations that describe the target object itself: copied, they would be wrong or misleading
/// on the generated object.
const OWN_ANNOTATIONS: [&str; 2] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
];

/// Flux marks what it owns with `*.toolkit.fluxcd.io/*` labels and annotations; copied onto a
/// generated object they would make Flux treat it as its own and prune or overwrite it.
const GITOPS_MARKER: &str = "toolkit.fluxcd.io";

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ObjectError {
    #[error(
        "{object}: spec.selector.matchLabels has none of the labels {looked_for:?}; sluice needs one \
         to tell the primary's pods from the canary's"
    )]
    NoSelectorLabel {
        object: String,
        looked_for: Vec<String>,
    },
    #[error("Canary {canary} has no spec.service; its port is needed to create the Services")]
    NoService { canary: String },
    #[error("{object} is not a valid object: {message}")]
    Invalid { object: String, message: String },
}

/// The two kinds of configuration a pod template can reference and sluice tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    pub fn kind(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "ConfigMap",
            ConfigKind::Secret => "Secret",
        }
    }

    /// The key in `World::tracked_configs`: `configmap/NAME` or `secret/NAME`.
    pub fn key(self, name: &str) -> String {
        match self {
            ConfigKind::ConfigMap => format!("configmap/{name}"),
            ConfigKind::Secret => format!("secret/{name}"),
        }
    }

    pub fn object_ref(self, namespace: &str, name: &str) -> super::ObjectRef {
        super::ObjectRef::new("v1", self.kind(), namespace, name)
    }
}

// ---------------------------------------------------------------------------------------------
// Tracked configuration and revisions

/// Calls `visit` with every ConfigMap or Secret name a pod spec references: env `valueFrom`,
/// `envFrom`, and `configMap`, `secret` and `projected` volumes, in init containers too. One walk
/// serves both reading (what to track) and rewriting (the primary's references), so the two can
/// never disagree.
fn visit_config_refs(pod_spec: &mut Value, visit: &mut impl FnMut(ConfigKind, &mut Value)) {
    let mut at = |parent: &mut Value, pointer: &str, kind: ConfigKind| {
        if let Some(name) = parent.pointer_mut(pointer) {
            visit(kind, name);
        }
    };
    for list in ["initContainers", "containers"] {
        for container in items_mut(pod_spec, list) {
            for env in items_mut(container, "env") {
                at(
                    env,
                    "/valueFrom/configMapKeyRef/name",
                    ConfigKind::ConfigMap,
                );
                at(env, "/valueFrom/secretKeyRef/name", ConfigKind::Secret);
            }
            for source in items_mut(container, "envFrom") {
                at(source, "/configMapRef/name", ConfigKind::ConfigMap);
                at(source, "/secretRef/name", ConfigKind::Secret);
            }
        }
    }
    for volume in items_mut(pod_spec, "volumes") {
        at(volume, "/configMap/name", ConfigKind::ConfigMap);
        at(volume, "/secret/secretName", ConfigKind::Secret);
        if let Some(sources) = volume.pointer_mut("/projected/sources") {
            for source in sources.as_array_mut().into_iter().flatten() {
                at(source, "/configMap/name", ConfigKind::ConfigMap);
                at(source, "/secret/name", ConfigKind::Secret);
            }
        }
    }
}

fn items_mut<'a>(object: &'a mut Value, field: &str) -> impl Iterator<Item = &'a mut Value> {
    object
        .get_mut(field)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// The ConfigMaps and Secrets the target's pod template references, deduplicated and sorted.
/// Optional references are included: whether they exist is for the reader to find out.
pub fn tracked_configs(target: &Deployment) -> Vec<(ConfigKind, String)> {
    let pod_spec = target
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|pod| serde_json::to_value(pod).ok());
    let Some(mut pod_spec) = pod_spec else {
        return Vec::new();
    };
    let mut found = BTreeSet::new();
    visit_config_refs(&mut pod_spec, &mut |kind, name| {
        if let Some(name) = name.as_str().filter(|n| !n.is_empty()) {
            found.insert((kind, name.to_string()));
        }
    });
    found.into_iter().collect()
}

/// The target's revision: a hash of its pod template and of the tracked configs' hashes
/// (`configs` maps `configmap/NAME` and `secret/NAME` to `config_hash`). It changes exactly when
/// a release is due: a new template, or new data in a config the template uses.
pub fn revision(target: &Deployment, configs: &BTreeMap<String, String>) -> String {
    let template = serde_json::to_value(&target.spec.template).unwrap_or(Value::Null);
    let mut hash = Fnv64::new();
    hash.write(canonical_json(&template).as_bytes());
    for (key, value) in configs {
        // Separators that cannot occur in keys or hex hashes keep entries from running together.
        hash.write(b"\n");
        hash.write(key.as_bytes());
        hash.write(b"=");
        hash.write(value.as_bytes());
    }
    hash.hex()
}

/// A hash of a ConfigMap's or Secret's contents (`data` and `binaryData`), not its metadata: a
/// relabelled config is no reason for a release.
pub fn config_hash(config: &Value) -> String {
    let contents = json!({
        "data": config.get("data").cloned().unwrap_or(Value::Null),
        "binaryData": config.get("binaryData").cloned().unwrap_or(Value::Null),
    });
    let mut hash = Fnv64::new();
    hash.write(canonical_json(&contents).as_bytes());
    hash.hex()
}

/// The identity of a step's Event: the Canary (its uid, so a Canary deleted and created again
/// starts afresh), the status the step started from, and what the Event says. A step made again
/// from the same status, by a new leader or after a failed status write, has the same key; any
/// other step starts from another status (the last one wrote its own).
pub fn step_key(uid: &str, before: &CanaryStatus, reason: &str, message: &str) -> String {
    let before = serde_json::to_value(before).unwrap_or(Value::Null);
    let mut hash = Fnv64::new();
    for part in [uid, &canonical_json(&before), reason, message] {
        hash.write(part.as_bytes());
        // A byte no part holds keeps the parts from running together.
        hash.write(&[0]);
    }
    hash.hex()
}

/// FNV-1a, 64 bits. Written here rather than taken from `std::hash`, whose algorithms may change
/// between Rust releases: revisions are stored in Canary statuses and must compare equal across
/// controller versions and platforms. It detects changes; it is not meant to resist forgery.
struct Fnv64(u64);

impl Fnv64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// JSON with object keys sorted, whatever order the map keeps them in (serde_json keeps insertion
/// order when any crate in the build turns on its `preserve_order` feature).
fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata shared by every generated object

fn canary_namespace(canary: &Canary) -> String {
    canary.namespace().unwrap_or_else(|| "default".into())
}

/// The owner reference that makes Kubernetes delete a generated object with its Canary.
pub fn owner_reference(canary: &Canary, canary_uid: &str) -> Value {
    json!({
        "apiVersion": CANARY_API_VERSION,
        "kind": "Canary",
        "name": canary.name_any(),
        "uid": canary_uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn string_map(object: &Value, pointer: &str) -> Map<String, Value> {
    object
        .pointer(pointer)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The source's labels worth carrying to a generated object.
fn carried_labels(source: &Value) -> Map<String, Value> {
    let mut labels = string_map(source, "/metadata/labels");
    labels.retain(|key, _| !key.contains(GITOPS_MARKER));
    labels
}

/// The source's annotations worth carrying to a generated object.
fn carried_annotations(source: &Value) -> Map<String, Value> {
    let mut annotations = string_map(source, "/metadata/annotations");
    annotations
        .retain(|key, _| !key.contains(GITOPS_MARKER) && !OWN_ANNOTATIONS.contains(&key.as_str()));
    annotations
}

/// `metadata` of a generated object: name, the Canary's namespace, the given labels and
/// annotations (left out when empty, so applying does not write empty maps), the owner reference.
fn metadata(
    canary: &Canary,
    canary_uid: &str,
    name: &str,
    labels: Map<String, Value>,
    annotations: Map<String, Value>,
) -> Value {
    let mut meta = Map::new();
    meta.insert("name".into(), json!(name));
    meta.insert("namespace".into(), json!(canary_namespace(canary)));
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    meta.insert(
        "ownerReferences".into(),
        json!([owner_reference(canary, canary_uid)]),
    );
    Value::Object(meta)
}

/// Sets the member at `path`, turning whatever is in the way into objects: the builders write into
/// copies of user objects, and a malformed field is better replaced than a panic.
fn set(object: &mut Value, path: &[&str], value: Value) {
    let mut at = object;
    for key in path {
        if !at.is_object() {
            *at = json!({});
        }
        at = &mut at[*key];
    }
    *at = value;
}

fn describe(object: &Value) -> String {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
    format!(
        "{} {}/{}",
        text("/kind").unwrap_or("object"),
        text("/metadata/namespace").unwrap_or("?"),
        text("/metadata/name").unwrap_or("?")
    )
}

fn name_of(object: &Value) -> Result<&str, ObjectError> {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or_else(|| ObjectError::Invalid {
            object: describe(object),
            message: "metadata.name is missing".into(),
        })
}

pub fn primary_name(name: &str) -> String {
    format!("{name}{PRIMARY_SUFFIX}")
}

/// The label that selects the target's pods and its value: the first of `SELECTOR_LABELS` in
/// `spec.selector.matchLabels`.
pub fn selector_label(target: &Value) -> Result<(String, String), ObjectError> {
    let match_labels = target.pointer("/spec/selector/matchLabels");
    SELECTOR_LABELS
        .iter()
        .find_map(|label| {
            let value = match_labels?.get(*label)?.as_str()?;
            Some((label.to_string(), value.to_string()))
        })
        .ok_or_else(|| ObjectError::NoSelectorLabel {
            object: describe(target),
            looked_for: SELECTOR_LABELS.iter().map(|l| l.to_string()).collect(),
        })
}

// ---------------------------------------------------------------------------------------------
// The primary Deployment and its configs

/// `<target>-primary`: the target's pod template with the selector label's value `X` turned into
/// `X-primary` (selector, template and object labels), and references to ConfigMaps and Secrets
/// turned into references to their `-primary` copies, so that a changed config reaches the
/// primary only on promotion. Replicas are `primary_replicas`, else the target's, else 1: the
/// target may already be scaled to zero when the primary is (re)created, and a primary with no
/// pods would serve nothing.
pub fn primary_deployment(
    canary: &Canary,
    canary_uid: &str,
    target: &Value,
    primary_replicas: Option<i32>,
) -> Result<Value, ObjectError> {
    let name = primary_name(name_of(target)?);
    let (label, value) = selector_label(target)?;
    let primary_value = json!(primary_name(&value));

    let mut labels = carried_labels(target);
    labels.insert(label.clone(), primary_value.clone());

    let spec = target.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut template = spec.get("template").cloned().unwrap_or_else(|| json!({}));
    set(
        &mut template,
        &["metadata", "labels", &label],
        primary_value.clone(),
    );
    if let Some(pod_spec) = template.get_mut("spec") {
        visit_config_refs(pod_spec, &mut |_, name| {
            if let Some(text) = name.as_str() {
                *name = json!(primary_name(text));
            }
        });
    }
    let mut selector = spec.get("selector").cloned().unwrap_or_else(|| json!({}));
    set(&mut selector, &["matchLabels", &label], primary_value);

    let replicas = primary_replicas.unwrap_or_else(|| {
        spec.get("replicas")
            .and_then(Value::as_i64)
            .and_then(|r| i32::try_from(r).ok())
            .filter(|r| *r > 0)
            .unwrap_or(1)
    });

    // The fields that shape how the Deployment rolls out and what it runs; `paused` and anything
    // the target's owner uses to steer the target itself stay behind.
    let mut primary_spec = Map::new();
    for field in [
        "minReadySeconds",
        "progressDeadlineSeconds",
        "revisionHistoryLimit",
        "strategy",
    ] {
        if let Some(v) = spec.get(field) {
            primary_spec.insert(field.into(), v.clone());
        }
    }
    primary_spec.insert("replicas".into(), json!(replicas));
    primary_spec.insert("selector".into(), selector);
    primary_spec.insert("template".into(), template);

    Ok(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(canary, canary_uid, &name, labels, carried_annotations(target)),
        "spec": Value::Object(primary_spec),
    }))
}

/// The primary with the target's current pod template, for promotion. The same object as at
/// bootstrap: applying it over the existing primary replaces the template.
pub fn promote_primary(
    canary: &Canary,
    canary_uid: &str,
    target: &Value,
    primary_replicas: Option<i32>,
) -> Result<Value, ObjectError> {
    primary_deployment(canary, canary_uid, target, primary_replicas)
}

/// Marks a primary Deployment's pod template with the revision it runs (see
/// `REVISION_ANNOTATION`), so that promoting a config-only change rolls the primary's pods.
pub fn stamp_revision(primary: &mut Value, revision: &str) {
    set(
        primary,
        &[
            "spec",
            "template",
            "metadata",
            "annotations",
            REVISION_ANNOTATION,
        ],
        json!(revision),
    );
}

/// `-primary` copies of ConfigMaps and Secrets, which the primary's pods reference.
pub fn config_copies(canary: &Canary, canary_uid: &str, configs: &[Value]) -> Vec<Value> {
    configs
        .iter()
        .filter_map(|config| {
            let kind = config.get("kind").and_then(Value::as_str)?;
            let name = config.pointer("/metadata/name").and_then(Value::as_str)?;
            let mut copy = json!({
                "apiVersion": "v1",
                "kind": kind,
                "metadata": metadata(
                    canary,
                    canary_uid,
                    &primary_name(name),
                    carried_labels(config),
                    carried_annotations(config),
                ),
            });
            // `type` only exists on Secrets; `immutable` is left behind so that the copy can be
            // updated on the next promotion.
            for field in ["type", "data", "binaryData"] {
                if let Some(v) = config.get(field) {
                    copy[field] = v.clone();
                }
            }
            Some(copy)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Services, autoscaler, scaling

/// Flagger's three ClusterIP Services: the apex `<service>` and `<service>-primary` select the
/// primary's pods, `<service>-canary` the canary's. The routers split traffic between the last
/// two; the apex is the name clients already use.
pub fn services(
    canary: &Canary,
    canary_uid: &str,
    target: &Value,
) -> Result<Vec<Value>, ObjectError> {
    let port = service_port(canary)?;
    let (label, value) = selector_label(target)?;
    let apex = canary.spec.service_name();
    let make = |name: String, pods: String| {
        let metadata = metadata(canary, canary_uid, &name, Map::new(), Map::new());
        service(metadata, &label, pods, &port)
    };
    Ok(vec![
        make(apex.clone(), primary_name(&value)),
        make(primary_name(&apex), primary_name(&value)),
        make(format!("{apex}-canary"), value),
    ])
}

/// The apex Service handed back to the target when the Canary is deleted with
/// `revertOnDeletion`: it selects the target's own pods and has no owner, so that it outlives
/// the Canary (an empty list, so that applying it removes the owner reference sluice set).
pub fn handed_back_apex(canary: &Canary, target: &Value) -> Result<Value, ObjectError> {
    let port = service_port(canary)?;
    let (label, value) = selector_label(target)?;
    let mut metadata = metadata(
        canary,
        "",
        &canary.spec.service_name(),
        Map::new(),
        Map::new(),
    );
    metadata["ownerReferences"] = json!([]);
    Ok(service(metadata, &label, value, &port))
}

/// The port of the Canary's Services, from `spec.service`.
fn service_port(canary: &Canary) -> Result<Value, ObjectError> {
    let service = canary
        .spec
        .service
        .as_ref()
        .ok_or_else(|| ObjectError::NoService {
            canary: format!("{}/{}", canary_namespace(canary), canary.name_any()),
        })?;
    let target_port = match &service.target_port {
        Some(port) => serde_json::to_value(port).map_err(|e| ObjectError::Invalid {
            object: format!("Canary {}", canary.name_any()),
            message: format!("spec.service.targetPort: {e}"),
        })?,
        None => json!(service.port),
    };
    Ok(json!({
        "name": service.port_name.as_deref().unwrap_or("http"),
        "port": service.port,
        "protocol": "TCP",
        "targetPort": target_port,
    }))
}

fn service(metadata: Value, label: &str, pods: String, port: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": {label: pods},
            "ports": [port.clone()],
        },
    })
}

/// `<hpa>-primary`: the target's HorizontalPodAutoscaler aimed at `<target>-primary`.
pub fn primary_autoscaler(
    canary: &Canary,
    canary_uid: &str,
    hpa: &Value,
) -> Result<Value, ObjectError> {
    let name = primary_name(name_of(hpa)?);
    let mut spec = hpa.get("spec").cloned().unwrap_or_else(|| json!({}));
    set(
        &mut spec,
        &["scaleTargetRef", "name"],
        json!(primary_name(&canary.spec.target_ref.name)),
    );
    Ok(json!({
        "apiVersion": hpa.get("apiVersion").cloned().unwrap_or_else(|| json!("autoscaling/v2")),
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(
            canary,
            canary_uid,
            &name,
            carried_labels(hpa),
            carried_annotations(hpa),
        ),
        "spec": spec,
    }))
}

/// The apply body that sets a workload's replicas and nothing else, so that the fields its owner
/// manages (the pod template above all) stay theirs.
pub fn scale(target: &Value, replicas: i32) -> Value {
    let field = |pointer: &str| target.pointer(pointer).cloned().unwrap_or(Value::Null);
    json!({
        "apiVersion": field("/apiVersion"),
        "kind": field("/kind"),
        "metadata": {
            "name": field("/metadata/name"),
            "namespace": field("/metadata/namespace"),
        },
        "spec": {"replicas": replicas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_published_test_vectors() {
        let hash = |s: &str| {
            let mut h = Fnv64::new();
            h.write(s.as_bytes());
            h.hex()
        };
        assert_eq!(hash(""), "cbf29ce484222325");
        assert_eq!(hash("a"), "af63dc4c8601ec8c");
        assert_eq!(hash("foobar"), "85944171f73967e8");
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let mut a = Map::new();
        a.insert("b".into(), json!(1));
        a.insert(
            "a".into(),
            json!({"y": [1, {"d": 2, "c": "x\"y"}], "x": null}),
        );
        assert_eq!(
            canonical_json(&Value::Object(a)),
            r#"{"a":{"x":null,"y":[1,{"c":"x\"y","d":2}]},"b":1}"#
        );
    }
}
