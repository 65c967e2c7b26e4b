//! The routers over the in-memory cluster: the exact HTTPRoute the Gateway API router writes for
//! each kind of split, reading it back, and the Kubernetes router's selector switch.

use std::sync::Arc;

use serde_json::{Value, json};
use sluice_controller::cluster::memory::MemoryCluster;
use sluice_controller::cluster::{Cluster, ObjectRef, objects};
use sluice_controller::router::{self, Router, Routers};
use sluice_core::api::{Canary, RouterKind};
use sluice_core::rollout::Routes;

const UID: &str = "0b7c6f1e-4a55-4c4e-9a51-2f0c7d1e9b11";

fn canary() -> Canary {
    serde_yaml_ng::from_str(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: Canary
metadata:
  name: podinfo
  namespace: test
  uid: 0b7c6f1e-4a55-4c4e-9a51-2f0c7d1e9b11
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
    gatewayRefs:
      - name: public
        namespace: gateway-system
        sectionName: https
      - name: internal
    hosts:
      - podinfo.example.com
      - podinfo.test.svc
  analysis:
    interval: 1m
    iterations: 10
    match:
      - headers:
          x-canary:
            exact: insider
      - headers:
          cookie:
            regex: "^(.*?;)?(canary=always)(;.*)?$"
          user-agent:
            prefix: "Mozilla/5.0 (iPhone"
"#,
    )
    .unwrap()
}

fn route_ref() -> ObjectRef {
    ObjectRef::new(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        "test",
        "podinfo",
    )
}

async fn stored_route(cluster: &MemoryCluster) -> Value {
    let mut route = cluster.get(&route_ref()).await.unwrap().unwrap();
    // The in-memory cluster adds a generation; the rest is what the router wrote.
    route["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("generation");
    route
}

fn route_with_rules(rules: Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "ownerReferences": [{
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Canary",
                "name": "podinfo",
                "uid": UID,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "parentRefs": [
                {"name": "public", "namespace": "gateway-system", "sectionName": "https"},
                {"name": "internal"},
            ],
            "hostnames": ["podinfo.example.com", "podinfo.test.svc"],
            "rules": rules,
        },
    })
}

fn weighted(primary: u32, canary: u32) -> Value {
    json!({"backendRefs": [
        {"name": "podinfo-primary", "port": 9898, "weight": primary},
        {"name": "podinfo-canary", "port": 9898, "weight": canary},
    ]})
}

fn gateway(cluster: &Arc<MemoryCluster>) -> Arc<dyn Router> {
    router::build(RouterKind::GatewayApi, cluster.clone())
}

#[tokio::test]
async fn gateway_api_splits_by_weight() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = gateway(&cluster);
    let canary = canary();
    router
        .set_routes(&canary, Routes::canary_weight(10))
        .await
        .unwrap();
    assert_eq!(
        stored_route(&cluster).await,
        route_with_rules(json!([weighted(90, 10)]))
    );
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::canary_weight(10)
    );
}

#[tokio::test]
async fn gateway_api_sends_matching_requests_to_the_canary_for_ab_testing() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = gateway(&cluster);
    let canary = canary();
    let ab = Routes {
        canary_match: true,
        mirror: false,
        ..Routes::all_primary()
    };
    router.set_routes(&canary, ab).await.unwrap();
    let matched = json!({
        "matches": [
            {"headers": [{"name": "x-canary", "type": "Exact", "value": "insider"}]},
            {"headers": [
                {"name": "cookie", "type": "RegularExpression",
                 "value": "^(.*?;)?(canary=always)(;.*)?$"},
                {"name": "user-agent", "type": "RegularExpression",
                 "value": r"^Mozilla/5\.0 \(iPhone.*"},
            ]},
        ],
        "backendRefs": [
            {"name": "podinfo-primary", "port": 9898, "weight": 0},
            {"name": "podinfo-canary", "port": 9898, "weight": 100},
        ],
    });
    assert_eq!(
        stored_route(&cluster).await,
        route_with_rules(json!([matched, weighted(100, 0)]))
    );
    assert_eq!(router.get_routes(&canary).await.unwrap(), ab);

    // Back to the primary: the A/B rule goes away.
    router
        .set_routes(&canary, Routes::all_primary())
        .await
        .unwrap();
    assert_eq!(
        stored_route(&cluster).await,
        route_with_rules(json!([weighted(100, 0)]))
    );
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::all_primary()
    );
}

#[tokio::test]
async fn gateway_api_ab_testing_needs_header_matches() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = gateway(&cluster);
    let mut canary = canary();
    let ab = Routes {
        canary_match: true,
        mirror: false,
        ..Routes::all_primary()
    };
    canary.spec.analysis.matches[0].headers.clear();
    let error = router.set_routes(&canary, ab).await.unwrap_err();
    assert!(error.to_string().contains("analysis.match[0]"), "{error}");
    canary.spec.analysis.matches.clear();
    assert!(router.set_routes(&canary, ab).await.is_err());
    // Nothing was written.
    assert_eq!(cluster.get(&route_ref()).await.unwrap(), None);
}

#[tokio::test]
async fn gateway_api_reconcile_creates_the_route_then_keeps_its_weights() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = gateway(&cluster);
    let mut canary = canary();
    assert!(router.get_routes(&canary).await.is_err());

    router.reconcile(&canary).await.unwrap();
    assert_eq!(
        stored_route(&cluster).await,
        route_with_rules(json!([weighted(100, 0)]))
    );

    router
        .set_routes(&canary, Routes::canary_weight(30))
        .await
        .unwrap();
    // A new gateway in the Canary reaches the route; the release's weights stay.
    canary.spec.service.as_mut().unwrap().gateway_refs.pop();
    router.reconcile(&canary).await.unwrap();
    let route = stored_route(&cluster).await;
    assert_eq!(
        route["spec"]["parentRefs"],
        json!([{"name": "public", "namespace": "gateway-system", "sectionName": "https"}])
    );
    assert_eq!(route["spec"]["rules"], json!([weighted(70, 30)]));
}

#[tokio::test]
async fn gateway_api_reads_relative_and_defaulted_weights_as_percentages() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = gateway(&cluster);
    let canary = canary();
    // As an API server would store it after defaulting (path match, group, kind), with weights
    // someone edited by hand.
    let mut route = route_with_rules(json!([{
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [
            {"group": "", "kind": "Service", "name": "podinfo-primary", "port": 9898, "weight": 3},
            {"group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898, "weight": 1},
        ],
    }]));
    cluster.apply(route.clone()).await.unwrap();
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::canary_weight(25)
    );
    route["spec"]["rules"] = json!([{"backendRefs": [{"name": "other", "port": 80}]}]);
    cluster.apply(route).await.unwrap();
    let error = router.get_routes(&canary).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("sends no traffic to podinfo-primary"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Kubernetes Services

async fn cluster_with_services() -> Arc<MemoryCluster> {
    let cluster = Arc::new(MemoryCluster::new());
    let target = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "podinfo"}}},
    });
    for service in objects::services(&canary(), UID, &target).unwrap() {
        cluster.apply(service).await.unwrap();
    }
    cluster
}

async fn apex(cluster: &MemoryCluster) -> Value {
    cluster
        .get(&ObjectRef::new("v1", "Service", "test", "podinfo"))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn kubernetes_switches_the_apex_selector_between_the_arms() {
    let cluster = cluster_with_services().await;
    let router = router::build(RouterKind::Kubernetes, cluster.clone());
    let canary = canary();
    router.reconcile(&canary).await.unwrap();
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::all_primary()
    );
    let before = apex(&cluster).await;

    router
        .set_routes(&canary, Routes::canary_weight(100))
        .await
        .unwrap();
    let after = apex(&cluster).await;
    assert_eq!(
        after["spec"]["selector"],
        json!({"app.kubernetes.io/name": "podinfo"})
    );
    // Only the selector moved.
    assert_eq!(after["spec"]["ports"], before["spec"]["ports"]);
    assert_eq!(
        after["metadata"]["ownerReferences"],
        before["metadata"]["ownerReferences"]
    );
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::canary_weight(100)
    );

    router
        .set_routes(&canary, Routes::all_primary())
        .await
        .unwrap();
    assert_eq!(
        apex(&cluster).await["spec"]["selector"],
        json!({"app.kubernetes.io/name": "podinfo-primary"})
    );
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::all_primary()
    );
}

#[tokio::test]
async fn kubernetes_refuses_to_split_or_match() {
    let cluster = cluster_with_services().await;
    let router = router::build(RouterKind::Kubernetes, cluster.clone());
    let canary = canary();
    let error = router
        .set_routes(&canary, Routes::canary_weight(50))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("cannot split it 50/50"),
        "{error}"
    );
    let ab = Routes {
        canary_match: true,
        mirror: false,
        ..Routes::all_primary()
    };
    assert!(router.set_routes(&canary, ab).await.is_err());
    assert_eq!(
        apex(&cluster).await["spec"]["selector"],
        json!({"app.kubernetes.io/name": "podinfo-primary"})
    );
}

#[tokio::test]
async fn kubernetes_needs_the_services() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = router::build(RouterKind::Kubernetes, cluster);
    let error = router.reconcile(&canary()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Service test/podinfo does not exist"),
        "{error}"
    );
}

#[test]
fn providers_are_chosen_by_name() {
    for name in [
        "gatewayapi",
        "gatewayapi:v1",
        "kubernetes",
        "istio",
        "linkerd",
    ] {
        assert_eq!(name.parse::<RouterKind>().unwrap().name(), name);
    }
    let message = "appmesh".parse::<RouterKind>().unwrap_err().to_string();
    assert_eq!(
        message,
        "unknown router provider \"appmesh\"; known providers: gatewayapi, gatewayapi:v1, kubernetes, nginx, istio, gamma, smi:v1alpha2, linkerd"
    );
}

#[tokio::test]
async fn a_canary_gets_the_router_its_provider_names_else_the_default() {
    let cluster = cluster_with_services().await;
    let routers = Routers::new(cluster.clone(), RouterKind::Kubernetes);
    let mut canary = canary();
    // The Kubernetes router cannot split: a 50% weight tells the two apart.
    canary.spec.provider = None;
    let error = routers
        .for_canary(&canary)
        .unwrap()
        .set_routes(&canary, Routes::canary_weight(50))
        .await;
    assert!(
        error.is_err(),
        "the default (kubernetes) router split traffic"
    );
    canary.spec.provider = Some(RouterKind::GatewayApi);
    let router = routers.for_canary(&canary).unwrap();
    router.reconcile(&canary).await.unwrap();
    router
        .set_routes(&canary, Routes::canary_weight(50))
        .await
        .unwrap();
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::canary_weight(50)
    );
}

#[tokio::test]
async fn the_memory_cluster_refuses_kinds_no_router_declares() {
    // As the API-server adapter would: a router writing an undeclared kind fails in tests too.
    let cluster = MemoryCluster::new();
    let object = serde_json::json!({
        "apiVersion": "appmesh.k8s.aws/v1beta2", "kind": "VirtualRouter",
        "metadata": {"name": "podinfo", "namespace": "test"},
    });
    let error = cluster.apply(object).await.unwrap_err().to_string();
    assert!(
        error.contains("does not manage VirtualRouter objects"),
        "{error}"
    );
    let route = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "podinfo", "namespace": "test"},
    });
    cluster.apply(route).await.unwrap();
}

#[tokio::test]
async fn gateway_api_finalize_sends_everything_to_the_apex_and_keeps_the_route() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = gateway(&cluster);
    let canary = canary();
    router
        .set_routes(&canary, Routes::canary_weight(30))
        .await
        .unwrap();
    router.finalize(&canary).await.unwrap();
    let mut expected = route_with_rules(json!([
        {"backendRefs": [{"name": "podinfo", "port": 9898}]},
    ]));
    // An empty list: applied, it takes away the owner reference sluice set, so that the route
    // outlives the Canary.
    expected["metadata"]["ownerReferences"] = json!([]);
    assert_eq!(stored_route(&cluster).await, expected);
}

#[tokio::test]
async fn the_apex_handed_back_selects_the_targets_pods_and_has_no_owner() {
    let target = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"selector": {"matchLabels": {"app": "podinfo"}}},
    });
    let apex = objects::handed_back_apex(&canary(), &target).unwrap();
    assert_eq!(
        apex,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "podinfo", "namespace": "test", "ownerReferences": []},
            "spec": {
                "type": "ClusterIP",
                "selector": {"app": "podinfo"},
                "ports": [{"name": "http", "port": 9898, "protocol": "TCP", "targetPort": 9898}],
            },
        })
    );
    // The same Service the bootstrap made, but for the selector and the owner.
    let bootstrap = objects::services(&canary(), UID, &target).unwrap();
    assert_eq!(bootstrap[0]["spec"]["ports"], apex["spec"]["ports"]);
    assert_eq!(bootstrap[0]["spec"]["selector"]["app"], "podinfo-primary");
}

fn nginx_canary(ab: bool) -> Canary {
    let mut canary = serde_json::to_value(canary()).unwrap();
    canary["spec"]["provider"] = json!("nginx");
    canary["spec"]["ingressRef"] =
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"});
    canary["spec"]["analysis"]["match"] = if ab {
        json!([{"headers": {"x-canary": {"exact": "insider"}}},
               {"headers": {"cookie": {"exact": "canary"}}}])
    } else {
        json!([])
    };
    serde_json::from_value(canary).unwrap()
}

/// The user's Ingress: the apex Service behind a host, with an annotation of their own and a
/// canary annotation that must not be copied.
fn user_ingress() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "podinfo", "namespace": "test", "annotations": {
            "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
            "nginx.ingress.kubernetes.io/canary-weight": "77",
        }},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "podinfo.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}}},
                {"path": "/static", "pathType": "Prefix",
                 "backend": {"service": {"name": "cdn", "port": {"number": 80}}}},
            ]}}],
        },
    })
}

fn canary_ingress(annotations: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {
            "name": "podinfo-canary", "namespace": "test",
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary", "name": "podinfo",
                "uid": UID, "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "podinfo.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "podinfo-canary", "port": {"number": 9898}}}},
                {"path": "/static", "pathType": "Prefix",
                 "backend": {"service": {"name": "cdn", "port": {"number": 80}}}},
            ]}}],
        },
    })
}

async fn stored_canary_ingress(cluster: &MemoryCluster) -> Value {
    let reference = ObjectRef::new("networking.k8s.io/v1", "Ingress", "test", "podinfo-canary");
    let mut ingress = cluster.get(&reference).await.unwrap().unwrap();
    ingress["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("generation");
    ingress
}

#[tokio::test]
async fn nginx_adds_a_canary_ingress_by_weight_and_leaves_the_users_alone() {
    let cluster = Arc::new(MemoryCluster::new());
    cluster.apply(user_ingress()).await.unwrap();
    let router = router::build(RouterKind::Nginx, cluster.clone());
    let canary = nginx_canary(false);
    router.reconcile(&canary).await.unwrap();
    let base = |weight: &str| {
        json!({
            "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": weight,
        })
    };
    assert_eq!(
        stored_canary_ingress(&cluster).await,
        canary_ingress(base("0"))
    );
    router
        .set_routes(&canary, Routes::canary_weight(30))
        .await
        .unwrap();
    assert_eq!(
        stored_canary_ingress(&cluster).await,
        canary_ingress(base("30"))
    );
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::canary_weight(30)
    );
    // A reconcile keeps the weight of a release under way.
    router.reconcile(&canary).await.unwrap();
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::canary_weight(30)
    );
    router.finalize(&canary).await.unwrap();
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::all_primary()
    );
    let user = ObjectRef::new("networking.k8s.io/v1", "Ingress", "test", "podinfo");
    let mut stored = cluster.get(&user).await.unwrap().unwrap();
    stored["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("generation");
    assert_eq!(
        stored,
        user_ingress(),
        "the user's Ingress is never written"
    );
}

#[tokio::test]
async fn nginx_ab_testing_routes_by_header_and_cookie() {
    let cluster = Arc::new(MemoryCluster::new());
    cluster.apply(user_ingress()).await.unwrap();
    let router = router::build(RouterKind::Nginx, cluster.clone());
    let canary = nginx_canary(true);
    let ab = Routes {
        primary: 100,
        canary: 0,
        canary_match: true,
        mirror: false,
    };
    router.set_routes(&canary, ab).await.unwrap();
    assert_eq!(
        stored_canary_ingress(&cluster).await,
        canary_ingress(json!({
            "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": "0",
            "nginx.ingress.kubernetes.io/canary-by-header": "x-canary",
            "nginx.ingress.kubernetes.io/canary-by-header-value": "insider",
            "nginx.ingress.kubernetes.io/canary-by-cookie": "canary",
        }))
    );
    assert_eq!(router.get_routes(&canary).await.unwrap(), ab);
}

#[tokio::test]
async fn nginx_refuses_what_it_cannot_do_with_the_field_to_fix() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = router::build(RouterKind::Nginx, cluster.clone());
    let mut canary = nginx_canary(false);
    canary.spec.ingress_ref = None;
    let error = router.reconcile(&canary).await.unwrap_err().to_string();
    assert!(error.contains("spec.ingressRef"), "{error}");
    let canary = nginx_canary(false);
    let error = router.reconcile(&canary).await.unwrap_err().to_string();
    assert!(error.contains("does not exist"), "{error}");
    // An Ingress that does not send to the apex Service.
    let mut elsewhere = user_ingress();
    elsewhere["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] =
        json!("other");
    cluster.apply(elsewhere).await.unwrap();
    let error = router.reconcile(&canary).await.unwrap_err().to_string();
    assert!(
        error.contains("sends no traffic to Service podinfo"),
        "{error}"
    );
    // Two header matches: ingress-nginx has one header rule.
    cluster.apply(user_ingress()).await.unwrap();
    let mut two = serde_json::to_value(nginx_canary(true)).unwrap();
    two["spec"]["analysis"]["match"][1] = json!({"headers": {"x-other": {"exact": "1"}}});
    let two: Canary = serde_json::from_value(two).unwrap();
    let ab = Routes {
        primary: 100,
        canary: 0,
        canary_match: true,
        mirror: false,
    };
    let error = router.set_routes(&two, ab).await.unwrap_err().to_string();
    assert!(
        error.contains("analysis.match[1].headers.x-other"),
        "{error}"
    );
}

fn mesh_canary(provider: &str, edit: impl FnOnce(&mut Value)) -> Canary {
    let mut canary = serde_json::to_value(canary()).unwrap();
    canary["spec"]["provider"] = json!(provider);
    canary["spec"]["service"]["gateways"] =
        json!(["public-gateway.istio-system.svc.cluster.local", "mesh"]);
    edit(&mut canary);
    serde_json::from_value(canary).unwrap()
}

fn owned() -> Value {
    json!([{
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary", "name": "podinfo", "uid": UID,
        "controller": true, "blockOwnerDeletion": true,
    }])
}

async fn stored(cluster: &MemoryCluster, api_version: &str, kind: &str, name: &str) -> Value {
    let reference = ObjectRef::new(api_version, kind, "test", name);
    let mut object = cluster
        .get(&reference)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{reference} missing"));
    object["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("generation");
    object
}

const ISTIO: &str = "networking.istio.io/v1";

fn istio_destination(host: &str, weight: u32) -> Value {
    json!({"destination": {"host": host, "port": {"number": 9898}}, "weight": weight})
}

fn virtual_service(http: Value) -> Value {
    json!({
        "apiVersion": ISTIO, "kind": "VirtualService",
        "metadata": {"name": "podinfo", "namespace": "test", "ownerReferences": owned()},
        "spec": {
            "hosts": ["podinfo", "podinfo.example.com", "podinfo.test.svc"],
            "gateways": ["public-gateway.istio-system.svc.cluster.local", "mesh"],
            "http": http,
        },
    })
}

#[tokio::test]
async fn istio_weights_the_hosts_of_a_virtual_service_with_a_destination_rule_each() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = router::build(RouterKind::Istio, cluster.clone());
    let canary = mesh_canary("istio", |_| {});
    router.reconcile(&canary).await.unwrap();
    for host in ["podinfo-primary", "podinfo-canary"] {
        assert_eq!(
            stored(&cluster, ISTIO, "DestinationRule", host).await,
            json!({
                "apiVersion": ISTIO, "kind": "DestinationRule",
                "metadata": {"name": host, "namespace": "test", "ownerReferences": owned()},
                "spec": {"host": host},
            })
        );
    }
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::all_primary()
    );
    router
        .set_routes(&canary, Routes::canary_weight(30))
        .await
        .unwrap();
    assert_eq!(
        stored(&cluster, ISTIO, "VirtualService", "podinfo").await,
        virtual_service(json!([{"route": [
            istio_destination("podinfo-primary", 70),
            istio_destination("podinfo-canary", 30),
        ]}]))
    );
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::canary_weight(30)
    );
    // A second reconcile keeps the release's weights.
    router.reconcile(&canary).await.unwrap();
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::canary_weight(30)
    );
}

#[tokio::test]
async fn istio_sends_matching_requests_to_the_canary_first_for_ab_testing() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = router::build(RouterKind::Istio, cluster.clone());
    let canary = mesh_canary("istio", |_| {});
    let ab = Routes {
        primary: 100,
        canary: 0,
        canary_match: true,
        mirror: false,
    };
    router.set_routes(&canary, ab).await.unwrap();
    assert_eq!(
        stored(&cluster, ISTIO, "VirtualService", "podinfo").await,
        virtual_service(json!([
            {
                "match": [
                    {"headers": {"x-canary": {"exact": "insider"}}},
                    {"headers": {
                        "cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"},
                        "user-agent": {"prefix": "Mozilla/5.0 (iPhone"},
                    }},
                ],
                "route": [istio_destination("podinfo-primary", 0), istio_destination("podinfo-canary", 100)],
            },
            {"route": [istio_destination("podinfo-primary", 100), istio_destination("podinfo-canary", 0)]},
        ]))
    );
    assert_eq!(router.get_routes(&canary).await.unwrap(), ab);
}

#[tokio::test]
async fn istio_mirrors_the_primarys_traffic_to_the_canary_for_blue_green() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = router::build(RouterKind::Istio, cluster.clone());
    let canary = mesh_canary("istio", |c| {
        c["spec"]["analysis"]["match"] = json!([]);
        c["spec"]["analysis"]["mirror"] = json!(true);
        c["spec"]["analysis"]["mirrorWeight"] = json!(40);
    });
    let mirrored = Routes {
        mirror: true,
        ..Routes::all_primary()
    };
    router.set_routes(&canary, mirrored).await.unwrap();
    assert_eq!(
        stored(&cluster, ISTIO, "VirtualService", "podinfo").await,
        virtual_service(json!([{
            "route": [istio_destination("podinfo-primary", 100), istio_destination("podinfo-canary", 0)],
            "mirror": {"host": "podinfo-canary", "port": {"number": 9898}},
            "mirrorPercentage": {"value": 40.0},
        }]))
    );
    assert_eq!(router.get_routes(&canary).await.unwrap(), mirrored);
    // Promotion and rollback route without the mirror.
    router
        .set_routes(&canary, Routes::all_primary())
        .await
        .unwrap();
    let service = stored(&cluster, ISTIO, "VirtualService", "podinfo").await;
    assert!(
        service["spec"]["http"][0].get("mirror").is_none(),
        "{service}"
    );
}

#[tokio::test]
async fn istio_finalize_hands_the_apex_host_back_and_keeps_the_virtual_service() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = router::build(RouterKind::Istio, cluster.clone());
    let canary = mesh_canary("istio", |_| {});
    router.reconcile(&canary).await.unwrap();
    router.finalize(&canary).await.unwrap();
    let mut expected = virtual_service(json!([{"route": [
        {"destination": {"host": "podinfo", "port": {"number": 9898}}},
    ]}]));
    expected["metadata"]["ownerReferences"] = json!([]);
    assert_eq!(
        stored(&cluster, ISTIO, "VirtualService", "podinfo").await,
        expected
    );
}

#[tokio::test]
async fn only_istio_mirrors_the_others_say_which_field_to_change() {
    let cluster = Arc::new(MemoryCluster::new());
    let canary = mesh_canary("gatewayapi", |c| {
        c["spec"]["analysis"]["match"] = json!([]);
        c["spec"]["analysis"]["mirror"] = json!(true);
    });
    let mirrored = Routes {
        mirror: true,
        ..Routes::all_primary()
    };
    for kind in [
        RouterKind::GatewayApi,
        RouterKind::Gamma,
        RouterKind::Smi,
        RouterKind::Kubernetes,
    ] {
        let router = router::build(kind, cluster.clone());
        let err = router
            .set_routes(&canary, mirrored)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("spec.analysis.mirror: ") && err.contains("use provider istio"),
            "{kind}: {err}"
        );
    }
    // sluice analyse and the status say it before any router is asked.
    let errors = sluice_core::api::validate::validate_canary(&canary)
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("spec.analysis.mirror: the gatewayapi router cannot mirror traffic"),
        "{errors}"
    );
}

const GATEWAY: &str = "gateway.networking.k8s.io/v1";

#[tokio::test]
async fn gamma_attaches_the_httproute_to_the_apex_service() {
    let cluster = Arc::new(MemoryCluster::new());
    let router = router::build(RouterKind::Gamma, cluster.clone());
    let canary = mesh_canary("gamma", |_| {});
    router.reconcile(&canary).await.unwrap();
    let ab = Routes {
        primary: 100,
        canary: 0,
        canary_match: true,
        mirror: false,
    };
    router.set_routes(&canary, ab).await.unwrap();
    let expected_rules = {
        // The same rules as the north-south route: only the parent differs.
        let north_south = router::gateway_api::http_route(&canary, ab).unwrap();
        north_south["spec"]["rules"].clone()
    };
    assert_eq!(
        stored(&cluster, GATEWAY, "HTTPRoute", "podinfo").await,
        json!({
            "apiVersion": GATEWAY, "kind": "HTTPRoute",
            "metadata": {"name": "podinfo", "namespace": "test", "ownerReferences": owned()},
            "spec": {
                "parentRefs": [{"group": "", "kind": "Service", "name": "podinfo", "port": 9898}],
                "rules": expected_rules,
            },
        })
    );
    assert_eq!(router.get_routes(&canary).await.unwrap(), ab);
    router
        .set_routes(&canary, Routes::canary_weight(20))
        .await
        .unwrap();
    assert_eq!(
        stored(&cluster, GATEWAY, "HTTPRoute", "podinfo").await["spec"]["rules"],
        json!([weighted(80, 20)])
    );
    router.finalize(&canary).await.unwrap();
    let handed_back = stored(&cluster, GATEWAY, "HTTPRoute", "podinfo").await;
    assert_eq!(handed_back["metadata"]["ownerReferences"], json!([]));
    assert_eq!(
        handed_back["spec"]["rules"],
        json!([{"backendRefs": [{"name": "podinfo", "port": 9898}]}])
    );
    assert_eq!(
        handed_back["spec"]["parentRefs"][0]["kind"], "Service",
        "{handed_back}"
    );
}

const SMI: &str = "split.smi-spec.io/v1alpha2";

#[tokio::test]
async fn smi_splits_the_apex_by_backend_weight() {
    let cluster = Arc::new(MemoryCluster::new());
    // Flagger's `linkerd` and `smi:v1alpha2` are one router.
    for kind in [RouterKind::Smi, RouterKind::Linkerd] {
        let router = router::build(kind, cluster.clone());
        let canary = mesh_canary(kind.name(), |c| c["spec"]["analysis"]["match"] = json!([]));
        router.reconcile(&canary).await.unwrap();
        router
            .set_routes(&canary, Routes::canary_weight(25))
            .await
            .unwrap();
        assert_eq!(
            stored(&cluster, SMI, "TrafficSplit", "podinfo").await,
            json!({
                "apiVersion": SMI, "kind": "TrafficSplit",
                "metadata": {"name": "podinfo", "namespace": "test", "ownerReferences": owned()},
                "spec": {"service": "podinfo", "backends": [
                    {"service": "podinfo-primary", "weight": 75},
                    {"service": "podinfo-canary", "weight": 25},
                ]},
            })
        );
        assert_eq!(
            router.get_routes(&canary).await.unwrap(),
            Routes::canary_weight(25)
        );
        let ab = Routes {
            primary: 100,
            canary: 0,
            canary_match: true,
            mirror: false,
        };
        let err = router
            .set_routes(&canary, ab)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("spec.analysis.match: "), "{err}");
        router.finalize(&canary).await.unwrap();
        let split = stored(&cluster, SMI, "TrafficSplit", "podinfo").await;
        assert_eq!(split["metadata"]["ownerReferences"], json!([]));
        assert_eq!(
            split["spec"],
            json!({"service": "podinfo", "backends": [{"service": "podinfo", "weight": 100}]})
        );
        cluster
            .delete(&ObjectRef::new(SMI, "TrafficSplit", "test", "podinfo"))
            .unwrap();
    }
}

#[tokio::test]
async fn gateway_refs_take_flaggers_group_kind_and_port_for_a_service_parent() {
    // Flagger's Linkerd tutorial: provider gatewayapi with the apex Service as the parent.
    let cluster = Arc::new(MemoryCluster::new());
    let router = gateway(&cluster);
    let mut canary = serde_json::to_value(canary()).unwrap();
    canary["spec"]["service"]["gatewayRefs"] = json!([{"name": "podinfo", "namespace": "test", "group": "core", "kind": "Service", "port": 9898}]);
    canary["spec"]["service"]["hosts"] = json!([]);
    let canary: Canary = serde_json::from_value(canary).unwrap();
    router
        .set_routes(&canary, Routes::canary_weight(10))
        .await
        .unwrap();
    let route = stored_route(&cluster).await;
    assert_eq!(
        route["spec"]["parentRefs"],
        json!([{"name": "podinfo", "namespace": "test", "group": "", "kind": "Service", "port": 9898}])
    );
    assert!(route["spec"].get("hostnames").is_none(), "{route}");
}
