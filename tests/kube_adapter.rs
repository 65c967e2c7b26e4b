//! `cluster::kube` through a real `kube::Client` whose transport is a tower-test mock: every HTTP
//! call the adapter makes is checked in order (method, path with query, content type, body) and
//! answered as an API server would. Any call not in the script fails the test, and so does a
//! script left unfinished.
//!
//! The last two tests run one reconcile of a real release step through
//! `controller::reconcile` over the adapter, and pin the whole conversation with the API server.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use sluice_controller::cluster::apiserver::KubeCluster;
use sluice_controller::cluster::{Cluster, ClusterError, Event, ObjectRef, objects};
use sluice_controller::hooks::Hooks;
use sluice_controller::observer::Observer;
use sluice_controller::providers::BoxFuture;
use sluice_controller::reconcile::{Context, Outcome, reconcile};
use sluice_controller::router::gateway_api::http_route;
use sluice_core::analysis::{Observation, Observed, RequestCounts};
use sluice_core::api::{Canary, CanaryStatus, Phase};
use sluice_core::rollout::MetricsWindow;
use sluice_core::rollout::Routes;
use tower_test::mock;

const UID: &str = "6f1e0b7c-4a55-4c4e-9a51-2f0c7d1e9b11";
const T0: i64 = 1_800_000_000;
/// Far more than any exchange here needs; a hung exchange fails instead of hanging the suite.
const LIMIT: Duration = Duration::from_secs(20);

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/test/deployments";
const CONFIGMAPS: &str = "/api/v1/namespaces/test/configmaps";
const SERVICES: &str = "/api/v1/namespaces/test/services";
const HTTPROUTES: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/test/httproutes";
const CANARIES: &str = "/apis/sluice.dev/v1alpha1/namespaces/test/canaries";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/test/events";
/// What kube-rs appends to a server-side apply with `PatchParams::apply("sluice").force()`. The
/// empty first pair is kube's: its query builder starts from the path ending in `?` and separates
/// every pair with `&`. API servers ignore it.
const APPLY: &str = "?&force=true&fieldManager=sluice";
const APPLY_PATCH: &str = "application/apply-patch+yaml";
const JSON_PATCH: &str = "application/json-patch+json";
const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

// ---------------------------------------------------------------------------------------------
// The mocked API server

/// What the client must send.
enum Sent {
    Nothing,
    Exactly(Value),
    /// Bodies with server-made or time-dependent parts (Event names and times).
    Matching(Box<dyn Fn(&Value) + Send>),
}

enum Reply {
    Json(StatusCode, Value),
    /// The connection goes away without an answer.
    Hangup,
    /// The transport fails with this error, as a refused connection does.
    Fail(std::io::Error),
}

/// One expected HTTP call and its answer.
struct Call {
    method: Method,
    uri: String,
    content_type: Option<&'static str>,
    accept: Option<&'static str>,
    sent: Sent,
    reply: Reply,
}

impl Call {
    fn new(method: Method, uri: String, content_type: Option<&'static str>, sent: Sent) -> Self {
        Self {
            method,
            uri,
            content_type,
            accept: None,
            sent,
            reply: Reply::Json(StatusCode::OK, json!({})),
        }
    }

    fn get(uri: String) -> Self {
        Self::new(Method::GET, uri, None, Sent::Nothing)
    }

    /// A server-side apply of exactly `body`.
    fn apply(uri: String, body: Value) -> Self {
        Self::new(Method::PATCH, uri, Some(APPLY_PATCH), Sent::Exactly(body))
    }

    fn json_patch(uri: String, check: impl Fn(&Value) + Send + 'static) -> Self {
        Self::new(
            Method::PATCH,
            uri,
            Some(JSON_PATCH),
            Sent::Matching(Box::new(check)),
        )
    }

    fn post(uri: String, check: impl Fn(&Value) + Send + 'static) -> Self {
        Self::new(
            Method::POST,
            uri,
            Some("application/json"),
            Sent::Matching(Box::new(check)),
        )
    }

    fn accept(mut self, accept: &'static str) -> Self {
        self.accept = Some(accept);
        self
    }

    fn reply(mut self, status: u16, body: Value) -> Self {
        let status = StatusCode::from_u16(status).unwrap();
        self.reply = Reply::Json(status, body);
        self
    }

    /// Answers a write with the object as stored: what the client sent plus server metadata.
    fn echo(mut self) -> Self {
        if let Sent::Exactly(body) = &self.sent {
            self.reply = Reply::Json(StatusCode::OK, stored(body.clone(), 1));
        }
        self
    }

    fn hang_up(mut self) -> Self {
        self.reply = Reply::Hangup;
        self
    }

    fn fail(mut self, error: std::io::Error) -> Self {
        self.reply = Reply::Fail(error);
        self
    }
}

/// Plays the API server: takes each request in turn, checks it against the script, answers it,
/// then refuses anything more.
async fn api_server(mut handle: mock::Handle<Request<Body>, Response<Body>>, script: Vec<Call>) {
    let total = script.len();
    for (i, call) in script.into_iter().enumerate() {
        let what = format!("call {} of {total} ({} {})", i + 1, call.method, call.uri);
        let Some((request, respond)) = handle.next_request().await else {
            panic!("{what} was expected, but the client made no more requests");
        };
        let (parts, body) = request.into_parts();
        assert_eq!(
            (&parts.method, parts.uri.to_string()),
            (&call.method, call.uri.clone()),
            "{what}: method and path"
        );
        let header = |name: http::header::HeaderName| {
            parts
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        if let Some(content_type) = call.content_type {
            assert_eq!(
                header(http::header::CONTENT_TYPE).as_deref(),
                Some(content_type),
                "{what}: content type"
            );
        }
        if let Some(accept) = call.accept {
            assert_eq!(
                header(http::header::ACCEPT).as_deref(),
                Some(accept),
                "{what}: accept"
            );
        }
        let bytes = body.collect_bytes().await.unwrap();
        match call.sent {
            Sent::Nothing => assert!(bytes.is_empty(), "{what}: unexpected body {bytes:?}"),
            Sent::Exactly(expected) => {
                let sent: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(sent, expected, "{what}: body");
            }
            Sent::Matching(check) => check(&serde_json::from_slice(&bytes).unwrap()),
        }
        match call.reply {
            Reply::Json(status, body) => respond.send_response(
                Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            ),
            Reply::Hangup => drop(respond),
            Reply::Fail(error) => respond.send_error(error),
        }
    }
    if let Some((request, _)) = handle.next_request().await {
        panic!(
            "unexpected request after the {total} expected: {} {}",
            request.method(),
            request.uri()
        );
    }
}

/// Runs `code` with a client whose every request goes through `script`, within `LIMIT`. The
/// script's verdict is taken before `code`'s result is returned, so that a failed expectation
/// reports itself rather than the error the client saw when the mock stopped answering.
async fn exchange<T, F>(script: Vec<Call>, code: impl FnOnce(kube::Client) -> F) -> T
where
    F: Future<Output = T>,
{
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let server = tokio::spawn(api_server(handle, script));
    tokio::time::timeout(LIMIT, async move {
        // `code` owns the client; once it is done every copy is gone and the server sees the end.
        let out = code(client).await;
        if let Err(failure) = server.await {
            std::panic::resume_unwind(failure.into_panic());
        }
        out
    })
    .await
    .expect("the exchange with the mocked API server did not finish in time")
}

// ---------------------------------------------------------------------------------------------
// Objects as an API server holds them

/// `object` with the metadata the API server adds, and for a Deployment the status of a
/// finished rollout.
fn stored(mut object: Value, generation: i64) -> Value {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("x")
        .to_string();
    let meta = object["metadata"].as_object_mut().unwrap();
    meta.insert("uid".into(), json!(format!("uid-of-{name}")));
    meta.insert("resourceVersion".into(), json!("4242"));
    meta.insert("generation".into(), json!(generation));
    meta.insert("creationTimestamp".into(), json!("2027-01-15T08:00:00Z"));
    if object["kind"] == "Deployment" {
        let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
        object["status"] = json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        });
    }
    object
}

fn not_found(resource: &str, group: &str, name: &str) -> Value {
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{qualified} \"{name}\" not found"),
        "reason": "NotFound",
        "details": {"name": name, "group": group, "kind": resource},
        "code": 404
    })
}

fn canary_json() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary",
        "metadata": {
            "name": "podinfo", "namespace": "test", "uid": UID,
            "resourceVersion": "4100", "generation": 1
        },
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {
                "port": 9898,
                "gatewayRefs": [{"name": "public", "namespace": "gateways"}],
                "hosts": ["podinfo.example.test"]
            },
            "analysis": {
                "interval": "1m", "threshold": 5, "stepWeight": 10, "maxWeight": 50,
                "metrics": [{
                    "name": "errors", "templateRef": {"name": "app-errors"},
                    "comparison": {"type": "errorRate", "requestsTemplateRef": {"name": "app-requests"}}
                }]
            }
        }
    })
}

fn canary() -> Canary {
    serde_json::from_value(canary_json()).unwrap()
}

/// The user's Deployment, as written.
fn target(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "podinfo", "namespace": "test",
            "labels": {"app": "podinfo"},
            "annotations": {"deployment.kubernetes.io/revision": "3"}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{
                    "name": "podinfo", "image": image,
                    "ports": [{"containerPort": 9898, "name": "http", "protocol": "TCP"}],
                    "envFrom": [{"configMapRef": {"name": "podinfo-config"}}]
                }]}
            }
        }
    })
}

fn config_map() -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "podinfo-config", "namespace": "test"},
        "data": {"color": "blue"}
    })
}

/// The canary's `metadata`, as a metadata-only GET answers.
fn canary_metadata() -> Value {
    json!({
        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": {
            "name": "podinfo", "namespace": "test", "uid": UID,
            "resourceVersion": "4100", "generation": 1,
            "creationTimestamp": "2027-01-15T08:00:00Z"
        }
    })
}

fn deployment_ref(name: &str) -> ObjectRef {
    ObjectRef::new("apps/v1", "Deployment", "test", name)
}

/// The Events API call for `reason` and `note` about the Canary, answered with the stored Event.
fn event_calls(warning: bool, reason: &'static str, note: String) -> Vec<Call> {
    let kind = if warning { "Warning" } else { "Normal" };
    vec![
        Call::get(format!("{CANARIES}/podinfo"))
            .accept(METADATA_ONLY)
            .reply(200, canary_metadata()),
        Call::post(format!("{EVENTS}?"), move |event| {
            assert_eq!(event["apiVersion"], "events.k8s.io/v1");
            assert_eq!(event["kind"], "Event");
            assert_eq!(event["type"], kind);
            assert_eq!(event["reason"], reason);
            assert_eq!(event["note"], note.as_str());
            assert_eq!(event["action"], "Reconcile");
            assert_eq!(event["reportingController"], "sluice");
            assert!(
                event["reportingInstance"]
                    .as_str()
                    .is_some_and(|i| !i.is_empty())
            );
            assert!(event["eventTime"].is_string(), "{event}");
            assert_eq!(
                event["regarding"],
                json!({
                    "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary",
                    "namespace": "test", "name": "podinfo", "uid": UID
                })
            );
            assert_eq!(event["metadata"]["namespace"], "test");
            let name = event["metadata"]["name"].as_str().unwrap();
            assert!(name.starts_with("podinfo."), "{name}");
        })
        .reply(
            201,
            json!({
                "apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {
                    "name": "podinfo.18a6b3c1d2e3f4a5", "namespace": "test",
                    "uid": "event-uid", "resourceVersion": "4300"
                },
                "eventTime": "2027-01-15T08:01:00.000000Z",
                "reportingController": "sluice", "reportingInstance": "sluice-7d9f8-abcde",
                "action": "Reconcile", "reason": reason, "type": kind,
                "regarding": {
                    "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary",
                    "namespace": "test", "name": "podinfo", "uid": UID
                }
            }),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The four operations

#[tokio::test]
async fn get_reads_a_deployment_and_maps_404_to_none() {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "podinfo", "namespace": "test",
            "uid": "9a1e2b3c-0000-4000-8000-000000000001", "resourceVersion": "4011",
            "generation": 3, "creationTimestamp": "2027-01-15T08:00:00Z",
            "labels": {"app": "podinfo"},
            "annotations": {"deployment.kubernetes.io/revision": "3"},
            "managedFields": [{
                "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                "time": "2027-01-15T08:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}}
            }]
        },
        "spec": target("podinfo:6.0.0")["spec"].clone(),
        "status": {
            "observedGeneration": 3, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 2, "availableReplicas": 2,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]
        }
    });
    let served = deployment.clone();
    let (found, missing) = exchange(
        vec![
            Call::get(format!("{DEPLOYMENTS}/podinfo")).reply(200, served),
            Call::get(format!("{DEPLOYMENTS}/podinfo-primary"))
                .reply(404, not_found("deployments", "apps", "podinfo-primary")),
        ],
        |client| async move {
            let cluster = KubeCluster::new(client);
            let found = cluster.get(&deployment_ref("podinfo")).await;
            let missing = cluster.get(&deployment_ref("podinfo-primary")).await;
            (found, missing)
        },
    )
    .await;
    // The object comes back as the server sent it, metadata included.
    assert_eq!(found.unwrap(), Some(deployment));
    assert_eq!(missing.unwrap(), None);
}

#[tokio::test]
async fn apply_is_a_forced_server_side_apply_of_the_exact_object() {
    let primary = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "podinfo-primary", "namespace": "test",
            "labels": {"app": "podinfo-primary"},
            "ownerReferences": [{
                "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary", "name": "podinfo",
                "uid": UID, "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "podinfo-primary"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo-primary"}},
                "spec": {"containers": [{
                    "name": "podinfo", "image": "podinfo:6.0.0",
                    "ports": [{"containerPort": 9898, "name": "http", "protocol": "TCP"}],
                    "envFrom": [{"configMapRef": {"name": "podinfo-config-primary"}}]
                }]}
            }
        }
    });
    let body = primary.clone();
    let result = exchange(
        vec![Call::apply(format!("{DEPLOYMENTS}/podinfo-primary{APPLY}"), primary).echo()],
        |client| async move { KubeCluster::new(client).apply(body).await },
    )
    .await;
    result.unwrap();
}

#[tokio::test]
async fn apply_writes_the_http_route_with_its_weights() {
    let canary = canary();
    let route = http_route(&canary, Routes::canary_weight(10)).unwrap();
    let backends = json!([
        {"name": "podinfo-primary", "port": 9898, "weight": 90},
        {"name": "podinfo-canary", "port": 9898, "weight": 10}
    ]);
    assert_eq!(
        route,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {
                "name": "podinfo", "namespace": "test",
                "ownerReferences": [{
                    "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary", "name": "podinfo",
                    "uid": UID, "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": {
                "parentRefs": [{"name": "public", "namespace": "gateways"}],
                "hostnames": ["podinfo.example.test"],
                "rules": [{"backendRefs": backends}]
            }
        })
    );
    let body = route.clone();
    exchange(
        vec![Call::apply(format!("{HTTPROUTES}/podinfo{APPLY}"), route).echo()],
        |client| async move { KubeCluster::new(client).apply(body).await },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn patch_status_replaces_the_status_through_its_subresource() {
    let status: CanaryStatus = serde_json::from_value(json!({
        "phase": "Progressing", "canaryWeight": 20,
        "lastTransitionTime": "2027-01-15T08:00:00Z",
        "message": "advance podinfo canary weight 20",
        "trackedConfigs": {"configmap/podinfo-config": "0123456789abcdef"},
        "analysedIntervals": 1, "failedChecks": 0
    }))
    .unwrap();
    let expected = json!([{
        "op": "add", "path": "/status",
        "value": {
            "phase": "Progressing", "canaryWeight": 20, "iterations": 0,
            "lastTransitionTime": "2027-01-15T08:00:00Z",
            "message": "advance podinfo canary weight 20",
            "trackedConfigs": {"configmap/podinfo-config": "0123456789abcdef"},
            "analysedIntervals": 1, "failedChecks": 0
        }
    }]);
    let mut answer = canary_json();
    answer["status"] = expected[0]["value"].clone();
    exchange(
        vec![
            Call::json_patch(format!("{CANARIES}/podinfo/status?"), move |sent| {
                assert_eq!(sent, &expected);
            })
            .reply(200, answer),
        ],
        |client| async move {
            KubeCluster::new(client)
                .patch_status("test", "podinfo", &status)
                .await
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_event_is_recorded_on_the_canary_with_its_uid() {
    let note = "advance podinfo canary weight 20";
    exchange(
        event_calls(false, "Synced", note.into()),
        |client| async move {
            let event = Event {
                warning: false,
                reason: "Synced".into(),
                message: note.into(),
                key: None,
            };
            KubeCluster::new(client)
                .event("test", "podinfo", &event)
                .await
        },
    )
    .await
    .unwrap();
}

/// A step's Event is named by its step: made again (a new leader, a failed status write), it is
/// refused as already there, and that is success, not a second Event.
#[tokio::test]
async fn a_step_event_already_recorded_is_not_recorded_again() {
    let note = "advance podinfo canary weight 20";
    let key = objects::step_key(UID, &CanaryStatus::default(), "Synced", note);
    let name = format!("podinfo.{key}");
    let mut calls = event_calls(false, "Synced", note.into());
    let expected = name.clone();
    calls[1] = Call::post(format!("{EVENTS}?"), move |event| {
        assert_eq!(event["metadata"]["name"], expected.as_str());
        assert_eq!(event["note"], note);
    })
    .reply(
        409,
        json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("events.events.k8s.io \"{name}\" already exists"),
            "reason": "AlreadyExists", "code": 409,
            "details": {"name": name, "group": "events.k8s.io", "kind": "events"}
        }),
    );
    exchange(calls, |client| async move {
        let event = Event {
            warning: false,
            reason: "Synced".into(),
            message: note.into(),
            key: Some(key),
        };
        KubeCluster::new(client)
            .event("test", "podinfo", &event)
            .await
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_overlong_event_note_is_cut_to_what_the_events_api_accepts() {
    let long = "x".repeat(3000);
    let cut = format!("{}…", "x".repeat(1021));
    exchange(event_calls(true, "Synced", cut), |client| async move {
        let event = Event {
            warning: true,
            reason: "Synced".into(),
            message: long,
            key: None,
        };
        KubeCluster::new(client)
            .event("test", "podinfo", &event)
            .await
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_forbidden_write_is_refused_with_the_servers_message() {
    let message = "deployments.apps \"podinfo-primary\" is forbidden: User \
                   \"system:serviceaccount:sluice:sluice\" cannot patch resource \"deployments\" \
                   in API group \"apps\" in the namespace \"test\"";
    let scale = objects::scale(&stored(target("podinfo:6.0.0"), 1), 0);
    let body = scale.clone();
    let error = exchange(
        vec![
            Call::apply(format!("{DEPLOYMENTS}/podinfo{APPLY}"), scale).reply(
                403,
                json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": message, "reason": "Forbidden",
                    "details": {"name": "podinfo-primary", "group": "apps", "kind": "deployments"},
                    "code": 403
                }),
            ),
        ],
        |client| async move { KubeCluster::new(client).apply(body).await },
    )
    .await
    .unwrap_err();
    assert_eq!(
        error,
        ClusterError::Refused {
            action: "an apply",
            object: "Deployment test/podinfo".into(),
            message: format!("{message} (Forbidden, HTTP 403)"),
        }
    );
}

#[tokio::test]
async fn a_lost_connection_is_unreachable() {
    let error = exchange(
        vec![Call::get(format!("{DEPLOYMENTS}/podinfo")).hang_up()],
        |client| async move {
            KubeCluster::new(client)
                .get(&deployment_ref("podinfo"))
                .await
        },
    )
    .await
    .unwrap_err();
    let ClusterError::Unreachable { message, .. } = &error else {
        panic!("expected Unreachable, got {error:?}");
    };
    assert!(
        message.starts_with("a read of Deployment test/podinfo: "),
        "{message}"
    );
}

#[tokio::test]
async fn a_transport_error_is_unreachable_with_its_cause() {
    let refused = std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "tcp connect error: Connection refused (os error 111)",
    );
    let error = exchange(
        vec![Call::get(format!("{CANARIES}/podinfo")).fail(refused)],
        |client| async move {
            let canary = ObjectRef::new("sluice.dev/v1alpha1", "Canary", "test", "podinfo");
            KubeCluster::new(client).get(&canary).await
        },
    )
    .await
    .unwrap_err();
    let ClusterError::Unreachable { message, .. } = &error else {
        panic!("expected Unreachable, got {error:?}");
    };
    assert!(
        message.contains("Connection refused (os error 111)"),
        "{message}"
    );
    // kube's error is kept beneath, and a log line built from the chain says it once.
    assert!(std::error::Error::source(&error).is_some(), "{error:?}");
    let chain = sluice_controller::error_chain::error_chain(&error);
    assert_eq!(
        chain.matches("Connection refused (os error 111)").count(),
        1,
        "{chain}"
    );
}

#[tokio::test]
async fn a_kind_sluice_does_not_manage_is_invalid_before_any_request() {
    let error = exchange(vec![], |client| async move {
        KubeCluster::new(client)
            .apply(json!({
                "apiVersion": "appmesh.k8s.aws/v1beta2", "kind": "VirtualRouter",
                "metadata": {"name": "podinfo", "namespace": "test"}
            }))
            .await
    })
    .await
    .unwrap_err();
    let ClusterError::Invalid {
        object, message, ..
    } = &error
    else {
        panic!("expected Invalid, got {error:?}");
    };
    assert_eq!(object, "VirtualRouter test/podinfo");
    assert!(message.contains("VirtualRouter"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// One reconcile, end to end

/// Healthy counts for both arms, from no server at all: the metrics are not under test here.
struct Healthy;

impl Observer for Healthy {
    fn observe<'a>(
        &'a self,
        _: &'a Canary,
        _: i64,
        window: MetricsWindow,
    ) -> BoxFuture<'a, Vec<Observation>> {
        // Running totals at 10 canary and 90 primary requests a second.
        let seconds = window.comparison_seconds as f64;
        Box::pin(async move {
            vec![Observation {
                metric: "errors".into(),
                result: Ok(Observed::Counts {
                    canary: RequestCounts {
                        requests: 10.0 * seconds,
                        errors: seconds / 60.0,
                    },
                    primary: RequestCounts {
                        requests: 90.0 * seconds,
                        errors: 5.0 * seconds / 60.0,
                    },
                }),
            }]
        })
    }
}

/// Runs one reconcile of `canary` at `now` over the mocked API server.
async fn reconcile_once(script: Vec<Call>, canary: Canary, now: i64) -> Outcome {
    let _ = rustls::crypto::ring::default_provider().install_default();
    exchange(script, |client| async move {
        let ctx = Context::new(
            Arc::new(KubeCluster::new(client)),
            Arc::new(Healthy),
            Hooks::new().unwrap(),
        );
        reconcile(&ctx, &canary, now).await
    })
    .await
    .unwrap()
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A fresh Canary: the reads of `observe`, then the bootstrap's reads and writes in order
/// (config copy, primary, Services, HTTPRoute at 100/0), then the status.
#[tokio::test]
async fn bootstrap_of_a_fresh_canary() {
    let canary = canary();
    let target_object = stored(target("podinfo:6.0.0"), 1);
    let config = stored(config_map(), 1);
    // The generated objects' shapes are pinned by tests/golden; what this test pins is that each
    // reaches the API server intact, in order, at its own URL.
    let copies = objects::config_copies(&canary, UID, std::slice::from_ref(&config));
    let primary = objects::primary_deployment(&canary, UID, &target_object, None).unwrap();
    let services = objects::services(&canary, UID, &target_object).unwrap();
    let route = http_route(&canary, Routes::all_primary()).unwrap();
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"],
        json!([
            {"name": "podinfo-primary", "port": 9898, "weight": 100},
            {"name": "podinfo-canary", "port": 9898, "weight": 0}
        ])
    );
    // kstatus's conditions for the Canary's generation, beside Flagger's fields.
    let condition = |kind: &str, status: &str| {
        json!({"type": kind, "status": status, "reason": "Initializing",
               "message": "creating podinfo-primary", "lastTransitionTime": rfc3339(T0)})
    };
    let status = json!({
        "phase": "Initializing", "canaryWeight": 0, "iterations": 0,
        "lastTransitionTime": rfc3339(T0),
        "message": "creating podinfo-primary",
        "conditions": [condition("Ready", "False"), condition("Reconciling", "True")],
        "observedGeneration": 1,
        "analysedIntervals": 0, "failedChecks": 0
    });
    let primary_missing = || {
        Call::get(format!("{DEPLOYMENTS}/podinfo-primary"))
            .reply(404, not_found("deployments", "apps", "podinfo-primary"))
    };
    let mut answered_status = canary_json();
    answered_status["status"] = status.clone();
    let script = vec![
        // observe: the primary, the target, the ConfigMap its pods read
        primary_missing(),
        Call::get(format!("{DEPLOYMENTS}/podinfo")).reply(200, target_object.clone()),
        Call::get(format!("{CONFIGMAPS}/podinfo-config")).reply(200, config.clone()),
        // bootstrap: reads again what it builds from
        Call::get(format!("{DEPLOYMENTS}/podinfo")).reply(200, target_object.clone()),
        primary_missing(),
        Call::get(format!("{CONFIGMAPS}/podinfo-config")).reply(200, config.clone()),
        Call::apply(
            format!("{CONFIGMAPS}/podinfo-config-primary{APPLY}"),
            copies[0].clone(),
        )
        .echo(),
        Call::apply(format!("{DEPLOYMENTS}/podinfo-primary{APPLY}"), primary).echo(),
        Call::apply(format!("{SERVICES}/podinfo{APPLY}"), services[0].clone()).echo(),
        Call::apply(
            format!("{SERVICES}/podinfo-primary{APPLY}"),
            services[1].clone(),
        )
        .echo(),
        Call::apply(
            format!("{SERVICES}/podinfo-canary{APPLY}"),
            services[2].clone(),
        )
        .echo(),
        Call::get(format!("{HTTPROUTES}/podinfo")).reply(
            404,
            not_found("httproutes", "gateway.networking.k8s.io", "podinfo"),
        ),
        Call::apply(format!("{HTTPROUTES}/podinfo{APPLY}"), route).echo(),
        Call::json_patch(format!("{CANARIES}/podinfo/status?"), move |sent| {
            assert_eq!(
                sent,
                &json!([{"op": "add", "path": "/status", "value": status}])
            );
        })
        .reply(200, answered_status),
    ];
    assert_eq!(copies.len(), 1);
    assert_eq!(services.len(), 3);
    let outcome = reconcile_once(script, canary, T0).await;
    assert_eq!(outcome.decision.status.phase, Some(Phase::Initializing));
    assert_eq!(outcome.previous_phase, None);
}

/// A release at weight 10 whose interval is due: the reads of `observe`, the HTTPRoute moved to
/// 80/20, the Event that says so, then the status with the new weight and the evidence.
#[tokio::test]
async fn a_progressing_step_moves_the_canary_from_10_to_20() {
    let now = T0 + 3600;
    let target_object = stored(target("podinfo:6.0.1"), 2);
    let config = stored(config_map(), 1);
    let primary = stored(
        objects::primary_deployment(&canary(), UID, &target("podinfo:6.0.0"), None).unwrap(),
        1,
    );
    // The revision `observe` will compute for this target and ConfigMap.
    let typed: k8s_openapi::api::apps::v1::Deployment =
        serde_json::from_value(target_object.clone()).unwrap();
    let tracked = std::collections::BTreeMap::from([(
        "configmap/podinfo-config".to_string(),
        objects::config_hash(&config),
    )]);
    let revision = objects::revision(&typed, &tracked);

    let mut canary_json = canary_json();
    canary_json["status"] = json!({
        "phase": "Progressing", "canaryWeight": 10, "iterations": 0,
        "lastTransitionTime": rfc3339(now - 120),
        "message": "advance podinfo canary weight 10",
        "conditions": [{
            "type": "Promoted", "status": "Unknown", "reason": "Progressing",
            "message": "release started", "lastTransitionTime": rfc3339(now - 120)
        }],
        "lastAppliedSpec": revision,
        "lastPromotedSpec": "00000000000000aa",
        "trackedConfigs": tracked,
        "lastStepTime": rfc3339(now - 60),
        "lastAnalysisTime": rfc3339(now - 60),
        "analysedIntervals": 0, "failedChecks": 0
    });
    let canary: Canary = serde_json::from_value(canary_json.clone()).unwrap();
    let route = http_route(&canary, Routes::canary_weight(20)).unwrap();
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"],
        json!([
            {"name": "podinfo-primary", "port": 9898, "weight": 80},
            {"name": "podinfo-canary", "port": 9898, "weight": 20}
        ])
    );

    let written = Arc::new(Mutex::new(Value::Null));
    let keep = written.clone();
    let mut script = vec![
        Call::get(format!("{DEPLOYMENTS}/podinfo-primary")).reply(200, primary),
        Call::get(format!("{DEPLOYMENTS}/podinfo")).reply(200, target_object),
        Call::get(format!("{CONFIGMAPS}/podinfo-config")).reply(200, config),
        Call::apply(format!("{HTTPROUTES}/podinfo{APPLY}"), route).echo(),
    ];
    script.extend(event_calls(
        false,
        "Synced",
        "advance podinfo canary weight 20".into(),
    ));
    let step_time = rfc3339(now);
    script.push(
        Call::json_patch(format!("{CANARIES}/podinfo/status?"), move |sent| {
            let [operation] = sent.as_array().unwrap().as_slice() else {
                panic!("one operation expected: {sent}");
            };
            assert_eq!(
                (&operation["op"], &operation["path"]),
                (&json!("add"), &json!("/status"))
            );
            let status = &operation["value"];
            assert_eq!(status["phase"], "Progressing");
            assert_eq!(status["canaryWeight"], 20);
            assert_eq!(status["message"], "advance podinfo canary weight 20");
            assert_eq!(status["lastStepTime"], step_time.as_str());
            assert_eq!(status["lastAnalysisTime"], step_time.as_str());
            assert_eq!(status["analysedIntervals"], 1);
            // The sequential test's sufficient statistics travel in the status.
            assert_eq!(
                status["metrics"][0]["sequential"]["canary"],
                json!({"requests": 600, "events": 1})
            );
            *keep.lock().unwrap() = status.clone();
        })
        .reply(200, canary_json),
    );
    let outcome = reconcile_once(script, canary, now).await;
    assert_eq!(outcome.decision.status.canary_weight, 20);
    // What was sent is the status the rollout decided, whole. Both sides go through the same
    // text-to-`Value` parse: serde_json's default float parsing can land one ULP off the value
    // that was printed, so the decided status is compared as it reads back, not as it was.
    let decided = serde_json::to_string(&outcome.decision.status).unwrap();
    let decided: Value = serde_json::from_str(&decided).unwrap();
    assert_eq!(*written.lock().unwrap(), decided);
}

// ---------------------------------------------------------------------------------------------
// Leader election: the Lease conversation

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/sluice/leases";

fn lease(holder: &str, renewed: i64, version: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "sluice-leader", "namespace": "sluice", "resourceVersion": version},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": rfc3339_micro(renewed), "renewTime": rfc3339_micro(renewed),
                 "leaseTransitions": 0}
    })
}

fn rfc3339_micro(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn elector(client: kube::Client) -> sluice_controller::leader::Elector {
    sluice_controller::leader::Elector::new(client, "sluice", "sluice-leader", "replica-a", 15)
}

#[tokio::test]
async fn the_first_replica_creates_the_lease_and_leads() {
    let script = vec![
        Call::get(format!("{LEASES}/sluice-leader")).reply(
            404,
            not_found("leases", "coordination.k8s.io", "sluice-leader"),
        ),
        Call::post(format!("{LEASES}?"), |body| {
            assert_eq!(body["spec"]["holderIdentity"], "replica-a");
            assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
            assert_eq!(body["spec"]["renewTime"], rfc3339_micro(T0));
            assert_eq!(body["spec"]["leaseTransitions"], 0);
        })
        .reply(201, lease("replica-a", T0, "1")),
    ];
    let leads = exchange(script, |client| async move {
        elector(client).try_lead(T0).await.unwrap()
    })
    .await;
    assert!(leads);
}

#[tokio::test]
async fn a_standby_waits_while_the_lease_is_fresh_and_takes_it_when_it_lapses() {
    // Held by another replica 5 s ago: no write, no leadership.
    let fresh = vec![
        Call::get(format!("{LEASES}/sluice-leader")).reply(200, lease("replica-b", T0 - 5, "7")),
    ];
    let leads = exchange(fresh, |client| async move {
        elector(client).try_lead(T0).await.unwrap()
    })
    .await;
    assert!(!leads);

    // Not renewed for 20 s (the lease lasts 15): taken over with the lease's resourceVersion.
    let lapsed = vec![
        Call::get(format!("{LEASES}/sluice-leader")).reply(200, lease("replica-b", T0 - 20, "7")),
        Call::new(
            Method::PUT,
            format!("{LEASES}/sluice-leader?"),
            Some("application/json"),
            Sent::Matching(Box::new(|body: &Value| {
                assert_eq!(body["metadata"]["resourceVersion"], "7");
                assert_eq!(body["spec"]["holderIdentity"], "replica-a");
                assert_eq!(body["spec"]["leaseTransitions"], 1);
            })),
        )
        .reply(200, lease("replica-a", T0, "8")),
    ];
    let leads = exchange(lapsed, |client| async move {
        elector(client).try_lead(T0).await.unwrap()
    })
    .await;
    assert!(leads);
}

#[tokio::test]
async fn of_two_replicas_racing_for_a_lapsed_lease_the_loser_follows() {
    let script = vec![
        Call::get(format!("{LEASES}/sluice-leader")).reply(200, lease("replica-b", T0 - 60, "7")),
        Call::new(
            Method::PUT,
            format!("{LEASES}/sluice-leader?"),
            Some("application/json"),
            Sent::Matching(Box::new(|_: &Value| {})),
        )
        .reply(
            409,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
                   "message": "Operation cannot be fulfilled on leases.coordination.k8s.io \"sluice-leader\": the object has been modified"}),
        ),
    ];
    let leads = exchange(script, |client| async move {
        elector(client).try_lead(T0).await.unwrap()
    })
    .await;
    assert!(!leads);
}
