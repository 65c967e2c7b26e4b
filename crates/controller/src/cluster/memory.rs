//! A faithful in-process model of the parts of Kubernetes the controller uses: objects stored as
//! JSON, server-side apply as a merge, Deployments that become ready after a delay on a virtual
//! clock, the Canary status subresource, and Events. It can persist itself to a file, so that a
//! process killed mid-release resumes from what it had written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::resources::{self, Resource};
use super::{Cause, Cluster, ClusterError, Event, ObjectRef};
use crate::providers::BoxFuture;
use sluice_core::api::CanaryStatus;

#[derive(Default, Serialize, Deserialize)]
struct State {
    objects: BTreeMap<String, Value>,
    events: Vec<RecordedEvent>,
    /// Virtual time, Unix seconds.
    now: i64,
    /// Seconds a Deployment takes to become ready after its pod template or replicas change.
    ready_delay: i64,
    /// When each Deployment last changed (key to time).
    rolled_at: BTreeMap<String, i64>,
    /// Deployments held unready by a test.
    unready: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub namespace: String,
    pub name: String,
    pub at: i64,
    pub event: Event,
}

pub struct MemoryCluster {
    state: Mutex<State>,
    file: Option<PathBuf>,
    /// The kinds the API-server adapter can reach: a router that writes another kind fails here
    /// as it would against a real cluster, not only in production.
    resources: Vec<Resource>,
}

fn key(r: &ObjectRef) -> String {
    format!("{}|{}|{}|{}", r.api_version, r.kind, r.namespace, r.name)
}

impl Default for MemoryCluster {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCluster {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            file: None,
            resources: crate::router::managed_resources(),
        }
    }

    /// A cluster kept in `file`: loaded from it when it exists, written after every change.
    pub fn persisted(file: PathBuf) -> Result<Self, ClusterError> {
        let state = match std::fs::read_to_string(&file) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| ClusterError::Invalid {
                object: file.display().to_string(),
                message: e.to_string(),
                source: Cause::of(e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                return Err(ClusterError::Unreachable {
                    message: format!("{}: {e}", file.display()),
                    source: Cause::of(e),
                });
            }
        };
        Ok(Self {
            state: Mutex::new(state),
            file: Some(file),
            resources: crate::router::managed_resources(),
        })
    }

    fn with<T>(&self, change: bool, f: impl FnOnce(&mut State) -> T) -> Result<T, ClusterError> {
        let mut state = self.state.lock().map_err(|_| ClusterError::Unreachable {
            message: "memory cluster lock poisoned".into(),
            source: None,
        })?;
        let out = f(&mut state);
        if change && let Some(file) = &self.file {
            let text = serde_json::to_string(&*state).map_err(|e| ClusterError::Unreachable {
                message: e.to_string(),
                source: Cause::of(e),
            })?;
            let partial = file.with_extension("tmp");
            std::fs::write(&partial, text)
                .and_then(|_| std::fs::rename(&partial, file))
                .map_err(|e| ClusterError::Unreachable {
                    message: format!("{}: {e}", file.display()),
                    source: Cause::of(e),
                })?;
        }
        Ok(out)
    }

    /// Sets the virtual clock.
    pub fn set_now(&self, now: i64) {
        let _ = self.with(true, |s| s.now = now);
    }

    pub fn now(&self) -> i64 {
        self.with(false, |s| s.now).unwrap_or_default()
    }

    /// Deployments become ready `seconds` after they change.
    pub fn set_ready_delay(&self, seconds: i64) {
        let _ = self.with(true, |s| s.ready_delay = seconds);
    }

    /// Holds a Deployment unready (true) or lets it become ready (false).
    pub fn hold_unready(&self, object: &ObjectRef, unready: bool) {
        let _ = self.with(true, |s| {
            if unready {
                s.unready.insert(key(object));
            } else {
                s.unready.remove(&key(object));
            }
        });
    }

    /// Every stored object of a kind, in name order.
    pub fn objects_of_kind(&self, kind: &str) -> Vec<Value> {
        self.with(false, |s| {
            s.objects
                .values()
                .filter(|o| o.get("kind").and_then(Value::as_str) == Some(kind))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
    }

    /// Deletes an object as the API server and its garbage collector do: one with finalizers is
    /// only marked (`metadata.deletionTimestamp`) until they are removed; one without goes, and
    /// so, in turn, do the objects it alone owns.
    pub fn delete(&self, object: &ObjectRef) -> Result<(), ClusterError> {
        self.with(true, |s| delete_in(s, &key(object)))
    }

    pub fn events(&self) -> Vec<RecordedEvent> {
        self.with(false, |s| s.events.clone()).unwrap_or_default()
    }

    /// The object with a Deployment's status filled in as a Deployment controller would.
    fn with_status(state: &State, k: &str, object: &Value) -> Value {
        let mut object = object.clone();
        if object.get("kind").and_then(Value::as_str) != Some("Deployment") {
            return object;
        }
        let replicas = object
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = object
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let rolled = state.rolled_at.get(k).copied().unwrap_or(i64::MIN / 2);
        let ready = !state.unready.contains(k) && state.now >= rolled + state.ready_delay;
        let available = if ready { replicas } else { 0 };
        object["status"] = json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": available,
            "readyReplicas": available,
            "availableReplicas": available,
        });
        object
    }
}

fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn delete_in(state: &mut State, k: &str) {
    let now = state.now;
    let Some(object) = state.objects.get_mut(k) else {
        return;
    };
    if !finalizers(object).is_empty() {
        if object.pointer("/metadata/deletionTimestamp").is_none() {
            object["metadata"]["deletionTimestamp"] = json!(sluice_core::time::rfc3339(now));
        }
        return;
    }
    let Some(gone) = state.objects.remove(k) else {
        return;
    };
    state.rolled_at.remove(k);
    // Background cascading deletion: dependents whose every owner is gone go too.
    let dependents: Vec<String> = state
        .objects
        .iter()
        .filter(|(_, o)| {
            let owners = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            owners.iter().any(|owner| owns(owner, &gone))
                && owners
                    .iter()
                    .all(|owner| !owner_exists(&state.objects, owner, o))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for dependent in dependents {
        delete_in(state, &dependent);
    }
}

/// Whether an owner reference names `object`: same kind and name, and the same uid where both
/// have one (objects built in tests often have none).
fn owns(owner: &Value, object: &Value) -> bool {
    let text = |v: &Value, pointer: &str| {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let uid_matches = match (text(owner, "/uid"), text(object, "/metadata/uid")) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => a == b,
        _ => true,
    };
    text(owner, "/kind") == text(object, "/kind")
        && text(owner, "/name") == text(object, "/metadata/name")
        && uid_matches
}

/// Whether the owner an owner reference of `dependent` names is still stored (owners are in the
/// dependent's namespace).
fn owner_exists(objects: &BTreeMap<String, Value>, owner: &Value, dependent: &Value) -> bool {
    let namespace = dependent.pointer("/metadata/namespace");
    objects
        .values()
        .any(|o| o.pointer("/metadata/namespace") == namespace && owns(owner, o))
}

/// JSON merge (RFC 7386), which is what applying a full object with one field manager amounts to.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl Cluster for MemoryCluster {
    fn get<'a>(
        &'a self,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Option<Value>, ClusterError>> {
        Box::pin(async move {
            resources::resolve(&self.resources, object)?;
            self.with(false, |s| {
                let k = key(object);
                s.objects.get(&k).map(|o| Self::with_status(s, &k, o))
            })
        })
    }

    fn apply<'a>(&'a self, object: Value) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let reference =
                ObjectRef::of(&object, "default").ok_or_else(|| ClusterError::Invalid {
                    object: object.to_string().chars().take(80).collect(),
                    message: "needs apiVersion, kind and metadata.name".into(),
                    source: None,
                })?;
            resources::resolve(&self.resources, &reference)?;
            self.with(true, |s| {
                let k = key(&reference);
                let mut stored = s.objects.get(&k).cloned().unwrap_or_else(|| json!({}));
                let before_spec = stored.get("spec").cloned();
                let generation = stored
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let mut incoming = object;
                // Status belongs to its subresource; apply never writes it.
                if let Some(map) = incoming.as_object_mut() {
                    map.remove("status");
                }
                merge(&mut stored, &incoming);
                stored["metadata"]["namespace"] = json!(reference.namespace);
                let changed = stored.get("spec").cloned() != before_spec;
                if changed || generation == 0 {
                    stored["metadata"]["generation"] = json!(generation + 1);
                    s.rolled_at.insert(k.clone(), s.now);
                }
                s.objects.insert(k, stored);
            })
        })
    }

    fn patch_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a CanaryStatus,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let reference = ObjectRef::new("sluice.dev/v1alpha1", "Canary", namespace, name);
            let status = serde_json::to_value(status).map_err(|e| ClusterError::Invalid {
                object: reference.to_string(),
                message: e.to_string(),
                source: Cause::of(e),
            })?;
            self.with(true, |s| match s.objects.get_mut(&key(&reference)) {
                Some(canary) => {
                    canary["status"] = status;
                    Ok(())
                }
                None => Err(ClusterError::Refused {
                    action: "a status update",
                    object: reference.to_string(),
                    message: "not found".into(),
                }),
            })?
        })
    }

    fn event<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        event: &'a Event,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            self.with(true, |s| {
                let at = s.now;
                // As the API server does for a keyed Event: its name is taken (409), nothing new.
                let recorded = |e: &RecordedEvent| {
                    e.namespace == namespace && e.name == name && e.event.key == event.key
                };
                if event.key.is_some() && s.events.iter().any(recorded) {
                    return;
                }
                s.events.push(RecordedEvent {
                    namespace: namespace.into(),
                    name: name.into(),
                    at,
                    event: event.clone(),
                })
            })
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
            let reference = ObjectRef::new("sluice.dev/v1alpha1", "Canary", namespace, name);
            self.with(true, |s| {
                let k = key(&reference);
                let Some(canary) = s.objects.get_mut(&k) else {
                    return Err(ClusterError::Refused {
                        action: "a finalizer update",
                        object: reference.to_string(),
                        message: "not found".into(),
                    });
                };
                let Some(list) = super::with_finalizer(&finalizers(canary), finalizer, present)
                else {
                    return Ok(());
                };
                canary["metadata"]["finalizers"] = json!(list);
                // The API server deletes an object marked for deletion once its last finalizer
                // is removed.
                if list.is_empty() && canary.pointer("/metadata/deletionTimestamp").is_some() {
                    delete_in(s, &k);
                }
                Ok(())
            })?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(image: &str, replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "app", "namespace": "ns"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}}
        })
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn deployments_become_ready_after_the_delay() {
        let cluster = MemoryCluster::new();
        cluster.set_ready_delay(30);
        cluster.set_now(100);
        let r = ObjectRef::new("apps/v1", "Deployment", "ns", "app");
        block(cluster.apply(deployment("v1", 2))).unwrap();
        let ready = |c: &MemoryCluster| {
            block(c.get(&r)).unwrap().unwrap()["status"]["readyReplicas"].as_i64()
        };
        assert_eq!(ready(&cluster), Some(0));
        cluster.set_now(130);
        assert_eq!(ready(&cluster), Some(2));
        // A new pod template rolls out again; the same spec applied again does not.
        block(cluster.apply(deployment("v1", 2))).unwrap();
        assert_eq!(ready(&cluster), Some(2));
        block(cluster.apply(deployment("v2", 2))).unwrap();
        assert_eq!(ready(&cluster), Some(0));
        let generation =
            block(cluster.get(&r)).unwrap().unwrap()["metadata"]["generation"].as_i64();
        assert_eq!(generation, Some(2));
    }

    #[test]
    fn state_survives_a_restart_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster.json");
        {
            let cluster = MemoryCluster::persisted(file.clone()).unwrap();
            cluster.set_now(42);
            block(cluster.apply(deployment("v1", 1))).unwrap();
        }
        let cluster = MemoryCluster::persisted(file).unwrap();
        assert_eq!(cluster.now(), 42);
        assert_eq!(cluster.objects_of_kind("Deployment").len(), 1);
    }
}
