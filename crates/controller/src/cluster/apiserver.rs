//! The `Cluster` over a real Kubernetes API server, through kube-rs.
//!
//! Objects stay JSON end to end: each `ObjectRef` is resolved to its REST resource from the
//! kinds sluice manages (`resources::CORE` and each router's), read and written as
//! `DynamicObject`s.

use ::kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use ::kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use ::kube::{Client, Resource, ResourceExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as EventsV1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use serde_json::{Value, json};

use std::sync::Arc;

use super::resources;
use super::{Cause, Cluster, ClusterError, Event, ObjectRef};
use crate::error_chain::error_chain;
use crate::providers::BoxFuture;
use sluice_core::api::{Canary, CanaryStatus};

/// The field manager of every write, and the reporting controller of Events.
pub const FIELD_MANAGER: &str = "sluice";

/// The `action` of the Events sluice records: they all report what a reconcile did.
const EVENT_ACTION: &str = "Reconcile";

/// events.k8s.io/v1 refuses (422) a reason or action over 128 bytes and a note over 1 KiB; an
/// Event cut short is worth more than a reconcile failed for want of it.
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

/// The REST resource of an object, from the resources sluice manages.
fn api_resource(
    known: &[resources::Resource],
    object: &ObjectRef,
) -> Result<ApiResource, ClusterError> {
    let resource = resources::resolve(known, object)?;
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(resource.group(), resource.version(), resource.kind),
        resource.plural,
    ))
}

/// The Kubernetes API as a `Cluster`.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    reporter: Reporter,
    resources: Arc<[resources::Resource]>,
}

impl KubeCluster {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            // The instance is the host name, which in a pod is the pod's name: Events then tell
            // which replica of the controller recorded them.
            reporter: Reporter::from(FIELD_MANAGER),
            resources: crate::router::managed_resources().into(),
        }
    }

    /// Events name `identity` (the controller's `--identity`, its Lease holder name) as the
    /// instance that recorded them: with shards or several processes on one host, they tell
    /// which controller took each step.
    pub fn reporting_as(mut self, identity: &str) -> Self {
        self.reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity.to_string()),
        };
        self
    }

    fn api(&self, object: &ObjectRef) -> Result<Api<DynamicObject>, ClusterError> {
        let resource = api_resource(&self.resources, object)?;
        Ok(Api::namespaced_with(
            self.client.clone(),
            &object.namespace,
            &resource,
        ))
    }
}

fn canary_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef::new(
        &Canary::api_version(&()),
        &Canary::kind(&()),
        namespace,
        name,
    )
}

/// Sorts a kube-rs error into the cluster's three cases: the API server answered no (with its
/// own words), the request could not be made or answered, or an object could not be encoded or
/// decoded.
fn cluster_error(action: &'static str, object: &ObjectRef, error: ::kube::Error) -> ClusterError {
    match error {
        ::kube::Error::Api(status) => {
            let mut message = if status.message.is_empty() {
                status.reason.clone()
            } else {
                status.message.clone()
            };
            match (status.reason.is_empty(), status.code) {
                (true, 0) => {}
                (true, code) => message.push_str(&format!(" (HTTP {code})")),
                (false, 0) => message.push_str(&format!(" ({})", status.reason)),
                (false, code) => message.push_str(&format!(" ({}, HTTP {code})", status.reason)),
            }
            ClusterError::Refused {
                action,
                object: object.to_string(),
                message,
            }
        }
        ::kube::Error::SerdeError(e) => ClusterError::Invalid {
            object: object.to_string(),
            message: format!("the Kubernetes API answered {action} with an unreadable object: {e}"),
            source: Cause::of(e),
        },
        ::kube::Error::BuildRequest(e) => ClusterError::Invalid {
            object: object.to_string(),
            message: error_chain(&e),
            source: Cause::of(e),
        },
        other => ClusterError::Unreachable {
            message: format!("{action} of {object}: {}", error_chain(&other)),
            source: Cause::of(other),
        },
    }
}

/// `text` cut to at most `limit` bytes on a character boundary, marked with an ellipsis when cut.
fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let ellipsis = '…';
    let mut end = limit.saturating_sub(ellipsis.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text[..end].to_string();
    out.push(ellipsis);
    out
}

impl Cluster for KubeCluster {
    fn get<'a>(
        &'a self,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Option<Value>, ClusterError>> {
        Box::pin(async move {
            let found = self
                .api(object)?
                .get_opt(&object.name)
                .await
                .map_err(|e| cluster_error("a read", object, e))?;
            found
                .map(|o| {
                    serde_json::to_value(o).map_err(|e| ClusterError::Invalid {
                        object: object.to_string(),
                        message: e.to_string(),
                        source: Cause::of(e),
                    })
                })
                .transpose()
        })
    }

    fn apply<'a>(&'a self, object: Value) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            // The same default namespace as the memory model, so both read a body alike.
            let reference =
                ObjectRef::of(&object, "default").ok_or_else(|| ClusterError::Invalid {
                    object: object.to_string().chars().take(80).collect(),
                    message: "needs apiVersion, kind and metadata.name".into(),
                    source: None,
                })?;
            tracing::debug!(object = %reference, "server-side apply");
            // Forced: sluice owns what it writes, including the target's spec.replicas, which a
            // previous manager such as kubectl may hold; without force that is a 409 conflict.
            let params = PatchParams::apply(FIELD_MANAGER).force();
            self.api(&reference)?
                .patch(&reference.name, &params, &Patch::Apply(&object))
                .await
                .map_err(|e| cluster_error("an apply", &reference, e))?;
            Ok(())
        })
    }

    fn patch_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a CanaryStatus,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let reference = canary_ref(namespace, name);
            let invalid = |e: serde_json::Error| ClusterError::Invalid {
                object: reference.to_string(),
                message: e.to_string(),
                source: Cause::of(e),
            };
            let status = serde_json::to_value(status).map_err(invalid)?;
            // The status is replaced whole, as the memory model does. A merge patch would keep
            // every field the new status leaves out (empty evidence is not serialised), so a new
            // release would inherit the last one's sequential tests, `rejected` included.
            // `add` on an existing member replaces it, and creates it on a Canary without one.
            let operations = json!([{"op": "add", "path": "/status", "value": status}]);
            // The type is kube's re-export of json-patch, enabled by kube's `runtime` feature.
            let patch = Patch::<()>::Json(serde_json::from_value(operations).map_err(invalid)?);
            tracing::debug!(canary = %reference, "status update");
            // Read as a DynamicObject: the answer is not used, and a write that succeeded must not
            // be reported as failed because the echoed Canary does not parse.
            self.api(&reference)?
                .patch_status(name, &PatchParams::default(), &patch)
                .await
                .map_err(|e| cluster_error("a status update", &reference, e))?;
            Ok(())
        })
    }

    fn event<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        event: &'a Event,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let reference = canary_ref(namespace, name);
            // `kubectl describe` finds an object's Events by its uid, which the trait does not
            // carry: read it, with the metadata-only form of GET.
            let canary = Api::<Canary>::namespaced(self.client.clone(), namespace)
                .get_metadata(name)
                .await
                .map_err(|e| cluster_error("an event", &reference, e))?;
            // A recorder per Event: a shared one folds Events of the same type and reason into a
            // series and keeps the first note, so "advance weight 20" would be followed by a
            // second count of "advance weight 10" rather than by its own message.
            let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
            let kube_event = KubeEvent {
                type_: if event.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: truncate(&event.reason, REASON_LIMIT),
                note: Some(truncate(&event.message, NOTE_LIMIT)),
                action: EVENT_ACTION.into(),
                secondary: None,
            };
            tracing::debug!(canary = %reference, reason = %event.reason, "recording an event");
            let regarding = canary.object_ref(&());
            let Some(key) = &event.key else {
                return recorder
                    .publish(&kube_event, &regarding)
                    .await
                    .map_err(|e| cluster_error("an event", &reference, e));
            };
            // Named by its step, so that the step made again creates nothing new (409).
            let keyed = KeyedEvent {
                name: event_name(name, key),
                event: &kube_event,
                reporter: &self.reporter,
            };
            match Api::<EventsV1>::namespaced(self.client.clone(), namespace)
                .create(&PostParams::default(), &keyed.object(regarding))
                .await
            {
                Ok(_) => Ok(()),
                Err(::kube::Error::Api(status)) if status.is_already_exists() => {
                    tracing::debug!(canary = %reference, key, "the step's event is already recorded");
                    Ok(())
                }
                Err(e) => Err(cluster_error("an event", &reference, e)),
            }
        })
    }

    fn set_finalizer<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        finalizer: &'a str,
        present: bool,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let reference = canary_ref(namespace, name);
            let api = self.api(&reference)?;
            let canary = api
                .get_metadata(name)
                .await
                .map_err(|e| cluster_error("a read", &reference, e))?;
            let Some(finalizers) = super::with_finalizer(canary.finalizers(), finalizer, present)
            else {
                return Ok(());
            };
            // A merge patch replaces the list whole; the resourceVersion read makes it refused
            // (409, retried by the next reconcile) if someone changed the finalizers meanwhile.
            let patch = json!({"metadata": {
                "resourceVersion": canary.resource_version(),
                "finalizers": finalizers,
            }});
            tracing::debug!(canary = %reference, finalizer, present, "finalizer");
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| cluster_error("a finalizer update", &reference, e))?;
            Ok(())
        })
    }
}

/// An Event's name: `NAME.KEY`, the Canary's name cut short where the whole would pass the
/// 253 bytes a name may have.
fn event_name(canary: &str, key: &str) -> String {
    let room = NAME_LIMIT.saturating_sub(key.len() + 1);
    // Object names are ASCII, so any cut is a character boundary.
    let head = canary.get(..room).unwrap_or(canary);
    format!("{}.{key}", head.trim_end_matches(['.', '-']))
}

const NAME_LIMIT: usize = 253;

/// An Event recorded under a name of sluice's choosing, with the fields kube's `Recorder` fills.
struct KeyedEvent<'a> {
    name: String,
    event: &'a KubeEvent,
    reporter: &'a Reporter,
}

impl KeyedEvent<'_> {
    fn object(&self, regarding: ObjectReference) -> EventsV1 {
        let reporter = self.reporter;
        EventsV1 {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(self.event.action.clone()),
            reason: Some(self.event.reason.clone()),
            note: self.event.note.clone(),
            type_: Some(
                match self.event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            regarding: Some(regarding),
            reporting_controller: Some(reporter.controller.clone()),
            reporting_instance: Some(
                reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| reporter.controller.clone()),
            ),
            ..EventsV1::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::managed_resources;
    use sluice_core::api::MetricTemplate;

    #[test]
    fn the_table_agrees_with_the_custom_resources() {
        for (name, api_version, kind, plural) in [
            (
                "x",
                Canary::api_version(&()),
                Canary::kind(&()),
                Canary::plural(&()),
            ),
            (
                "y",
                MetricTemplate::api_version(&()),
                MetricTemplate::kind(&()),
                MetricTemplate::plural(&()),
            ),
        ] {
            let resource = api_resource(
                &managed_resources(),
                &ObjectRef::new(&api_version, &kind, "ns", name),
            )
            .unwrap();
            assert_eq!(resource.plural, plural);
            assert_eq!(resource.group, "sluice.dev");
        }
    }

    #[test]
    fn core_kinds_have_the_empty_group() {
        let resource = api_resource(
            &managed_resources(),
            &ObjectRef::new("v1", "ConfigMap", "ns", "c"),
        )
        .unwrap();
        assert_eq!(
            (resource.group.as_str(), resource.version.as_str()),
            ("", "v1")
        );
        let route = ObjectRef::new("gateway.networking.k8s.io/v1", "HTTPRoute", "ns", "r");
        assert_eq!(
            api_resource(&managed_resources(), &route).unwrap().plural,
            "httproutes"
        );
    }

    #[test]
    fn unknown_kinds_and_versions_are_named() {
        for (api_version, kind) in [
            ("appmesh.k8s.aws/v1beta2", "VirtualRouter"),
            ("networking.istio.io/v1alpha3", "VirtualService"),
            ("apps/v1beta1", "Deployment"),
        ] {
            let error = api_resource(
                &managed_resources(),
                &ObjectRef::new(api_version, kind, "ns", "n"),
            )
            .unwrap_err();
            let ClusterError::Invalid { message, .. } = error else {
                panic!("expected Invalid, got {error:?}");
            };
            assert!(message.contains(kind), "{message}");
            assert!(message.contains(api_version), "{message}");
        }
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate(&"é".repeat(600), NOTE_LIMIT);
        assert!(cut.len() <= NOTE_LIMIT, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}
