//! The objects sluice generates for a Canary, compared with reviewed YAML in `tests/golden/`, and
//! the observation of a cluster into the rollout's `World`.
//!
//! After an intended change to a builder, regenerate the golden files with
//! `UPDATE_GOLDEN=1 cargo test --test objects` and review the diff before committing it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};
use sluice_controller::cluster::memory::MemoryCluster;
use sluice_controller::cluster::objects::{self, ConfigKind, ObjectError};
use sluice_controller::cluster::observe::observe;
use sluice_controller::cluster::{Cluster, ObjectRef};
use sluice_core::api::Canary;
use sluice_core::rollout::World;

const CANARY_UID: &str = "0b7c6f1e-4a55-4c4e-9a51-2f0c7d1e9b11";

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

fn canary() -> Canary {
    serde_yaml_ng::from_str(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: Canary
metadata:
  name: podinfo
  namespace: test
  uid: 0b7c6f1e-4a55-4c4e-9a51-2f0c7d1e9b11
  annotations:
    sluice.dev/promote: "true"
    example.com/owner: web-team
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  autoscalerRef:
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    name: podinfo
  service:
    port: 80
    targetPort: 9898
  analysis:
    interval: 1m
    stepWeight: 10
    maxWeight: 50
"#,
    )
    .unwrap()
}

/// podinfo as a user would deploy it, read back from an API server (server-set fields included),
/// with a ConfigMap env reference, an envFrom Secret and a ConfigMap volume.
fn podinfo() -> Value {
    yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: test
  uid: 9d1f3c2a-5b6e-4f70-8a91-b2c3d4e5f607
  resourceVersion: "48213"
  generation: 3
  creationTimestamp: "2026-03-01T10:00:00Z"
  labels:
    app: podinfo
    kustomize.toolkit.fluxcd.io/name: apps
    kustomize.toolkit.fluxcd.io/namespace: flux-system
  annotations:
    deployment.kubernetes.io/revision: "3"
    kubectl.kubernetes.io/last-applied-configuration: '{"apiVersion":"apps/v1","kind":"Deployment"}'
    example.com/team: web
  managedFields:
    - manager: kubectl-client-side-apply
      operation: Update
      apiVersion: apps/v1
spec:
  replicas: 2
  minReadySeconds: 3
  revisionHistoryLimit: 5
  progressDeadlineSeconds: 60
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
  selector:
    matchLabels:
      app: podinfo
  template:
    metadata:
      labels:
        app: podinfo
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "9797"
    spec:
      containers:
        - name: podinfod
          image: ghcr.io/stefanprodan/podinfo:6.5.0
          imagePullPolicy: IfNotPresent
          command:
            - ./podinfo
            - --port=9898
            - --port-metrics=9797
            - --config-path=/etc/podinfo
          ports:
            - name: http
              containerPort: 9898
              protocol: TCP
            - name: http-metrics
              containerPort: 9797
              protocol: TCP
          env:
            - name: PODINFO_UI_COLOR
              valueFrom:
                configMapKeyRef:
                  name: podinfo-config
                  key: color
          envFrom:
            - secretRef:
                name: podinfo-secret
          readinessProbe:
            httpGet:
              path: /readyz
              port: 9898
          resources:
            requests:
              cpu: 100m
              memory: 64Mi
          volumeMounts:
            - name: config
              mountPath: /etc/podinfo
      volumes:
        - name: config
          configMap:
            name: podinfo-files
status:
  observedGeneration: 3
  replicas: 2
  updatedReplicas: 2
  availableReplicas: 2
"#,
    )
}

fn configs() -> Vec<Value> {
    vec![
        yaml(
            r##"
apiVersion: v1
kind: ConfigMap
metadata:
  name: podinfo-config
  namespace: test
  uid: 1a2b3c4d-0000-4000-8000-000000000001
  resourceVersion: "48100"
  labels:
    app: podinfo
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: "{}"
data:
  color: "#34577c"
"##,
        ),
        yaml(
            r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: podinfo-files
  namespace: test
data:
  config.yaml: |
    logLevel: info
"#,
        ),
        yaml(
            r#"
apiVersion: v1
kind: Secret
metadata:
  name: podinfo-secret
  namespace: test
type: Opaque
immutable: true
data:
  PODINFO_TOKEN: czNjcjN0
"#,
        ),
    ]
}

fn hpa() -> Value {
    yaml(
        r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: podinfo
  namespace: test
  resourceVersion: "48300"
  labels:
    app: podinfo
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  minReplicas: 2
  maxReplicas: 4
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 80
status:
  currentReplicas: 2
  desiredReplicas: 2
"#,
    )
}

fn typed(deployment: &Value) -> Deployment {
    serde_json::from_value(deployment.clone()).unwrap()
}

/// Compares `actual` with `tests/golden/<name>.yaml`, or rewrites the file when `UPDATE_GOLDEN`
/// is set. The comparison is of values, so the YAML's formatting is free.
fn golden(name: &str, actual: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.yaml"));
    let rendered = serde_yaml_ng::to_string(actual).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    let expected: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert!(
        &expected == actual,
        "{} differs from what was built:\n{rendered}\n(UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

#[test]
fn primary_deployment_matches_golden() {
    let primary = objects::primary_deployment(&canary(), CANARY_UID, &podinfo(), None).unwrap();
    golden("primary-deployment", &primary);
}

#[test]
fn primary_deployment_takes_the_given_replicas_and_never_zero() {
    let primary = objects::primary_deployment(&canary(), CANARY_UID, &podinfo(), Some(5)).unwrap();
    assert_eq!(primary["spec"]["replicas"], json!(5));
    // A target already scaled to zero still gets a serving primary.
    let mut idle = podinfo();
    idle["spec"]["replicas"] = json!(0);
    let primary = objects::primary_deployment(&canary(), CANARY_UID, &idle, None).unwrap();
    assert_eq!(primary["spec"]["replicas"], json!(1));
}

#[test]
fn promotion_copies_the_new_template_and_stamps_the_revision() {
    let mut target = podinfo();
    target["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("ghcr.io/stefanprodan/podinfo:6.5.1");
    let mut primary = objects::promote_primary(&canary(), CANARY_UID, &target, Some(2)).unwrap();
    objects::stamp_revision(&mut primary, "0123456789abcdef");
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("ghcr.io/stefanprodan/podinfo:6.5.1")
    );
    assert_eq!(
        primary["spec"]["template"]["metadata"]["annotations"]["sluice.dev/revision"],
        json!("0123456789abcdef")
    );
    assert_eq!(
        primary["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"],
        json!("true")
    );
}

#[test]
fn config_copies_match_golden() {
    golden(
        "config-copies",
        &Value::Array(objects::config_copies(&canary(), CANARY_UID, &configs())),
    );
}

#[test]
fn services_match_golden() {
    let services = objects::services(&canary(), CANARY_UID, &podinfo()).unwrap();
    golden("services", &Value::Array(services));
}

#[test]
fn services_follow_port_name_and_a_named_target_port() {
    let mut canary = canary();
    let service = canary.spec.service.as_mut().unwrap();
    service.name = Some("frontend".into());
    service.port_name = Some("grpc".into());
    service.target_port =
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into()));
    let services = objects::services(&canary, CANARY_UID, &podinfo()).unwrap();
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["frontend", "frontend-primary", "frontend-canary"]);
    assert_eq!(
        services[0]["spec"]["ports"],
        json!([{"name": "grpc", "port": 80, "protocol": "TCP", "targetPort": "http"}])
    );
}

#[test]
fn services_need_a_service_spec() {
    let mut canary = canary();
    canary.spec.service = None;
    let error = objects::services(&canary, CANARY_UID, &podinfo()).unwrap_err();
    assert!(matches!(error, ObjectError::NoService { .. }), "{error}");
}

#[test]
fn primary_autoscaler_matches_golden() {
    let hpa = objects::primary_autoscaler(&canary(), CANARY_UID, &hpa()).unwrap();
    golden("primary-hpa", &hpa);
}

#[test]
fn scale_body_matches_golden() {
    golden("scale", &objects::scale(&podinfo(), 0));
}

#[test]
fn tracked_configs_cover_env_env_from_volumes_projected_and_init_containers() {
    let mut target = podinfo();
    let pod = &mut target["spec"]["template"]["spec"];
    pod["initContainers"] = json!([{
        "name": "migrate",
        "image": "migrate:1",
        "env": [{"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}],
        "envFrom": [{"configMapRef": {"name": "podinfo-config"}}],
    }]);
    pod["volumes"].as_array_mut().unwrap().extend([
        json!({"name": "certs", "secret": {"secretName": "tls", "optional": true}}),
        json!({"name": "bundle", "projected": {"sources": [
            {"configMap": {"name": "ca"}},
            {"secret": {"name": "token"}},
            {"serviceAccountToken": {"path": "token"}},
        ]}}),
    ]);
    assert_eq!(
        objects::tracked_configs(&typed(&target)),
        [
            (ConfigKind::ConfigMap, "ca".to_string()),
            (ConfigKind::ConfigMap, "podinfo-config".to_string()),
            (ConfigKind::ConfigMap, "podinfo-files".to_string()),
            (ConfigKind::Secret, "db".to_string()),
            (ConfigKind::Secret, "podinfo-secret".to_string()),
            (ConfigKind::Secret, "tls".to_string()),
            (ConfigKind::Secret, "token".to_string()),
        ]
    );
    // Every one of them is rewritten in the primary, in init containers and projections too.
    let primary = objects::primary_deployment(&canary(), CANARY_UID, &target, None).unwrap();
    let pod = &primary["spec"]["template"]["spec"];
    assert_eq!(
        pod["initContainers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        json!("db-primary")
    );
    assert_eq!(
        pod["volumes"][2]["projected"]["sources"],
        json!([
            {"configMap": {"name": "ca-primary"}},
            {"secret": {"name": "token-primary"}},
            {"serviceAccountToken": {"path": "token"}},
        ])
    );
}

fn config_map(configs: &[Value]) -> BTreeMap<String, String> {
    configs
        .iter()
        .map(|c| {
            let kind = match c["kind"].as_str().unwrap() {
                "ConfigMap" => ConfigKind::ConfigMap,
                _ => ConfigKind::Secret,
            };
            (
                kind.key(c["metadata"]["name"].as_str().unwrap()),
                objects::config_hash(c),
            )
        })
        .collect()
}

#[test]
fn revisions_are_stable_and_follow_the_template_and_the_configs() {
    let target = typed(&podinfo());
    let configs = config_map(&configs());
    let revision = objects::revision(&target, &configs);
    assert_eq!(revision, objects::revision(&typed(&podinfo()), &configs));
    assert_eq!(revision.len(), 16);
    // Pinned: revisions are stored in Canary statuses, so a change of hash (or of how the
    // template is serialised) would start a release for every Canary after an upgrade. The value
    // is FNV-1a 64 of the sorted-key compact JSON of the template, then "\nKEY=HASH" per config,
    // reproduced independently outside Rust.
    assert_eq!(revision, "18aac1930c71af07");

    // Server-side bookkeeping and the Deployment's replicas are not part of a revision.
    let mut scaled = podinfo();
    scaled["spec"]["replicas"] = json!(0);
    scaled["metadata"]["resourceVersion"] = json!("50000");
    scaled["status"] = json!({});
    assert_eq!(objects::revision(&typed(&scaled), &configs), revision);

    let mut new_image = podinfo();
    new_image["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("ghcr.io/stefanprodan/podinfo:6.5.1");
    assert_ne!(objects::revision(&typed(&new_image), &configs), revision);

    let mut changed = configs_with_color("#ff0000");
    let changed_configs = config_map(&changed);
    assert_ne!(changed_configs, configs);
    assert_ne!(objects::revision(&target, &changed_configs), revision);
    // Only contents count: relabelling a ConfigMap is no release.
    changed = configs_with_color("#34577c");
    changed[0]["metadata"]["labels"]["extra"] = json!("yes");
    assert_eq!(objects::revision(&target, &config_map(&changed)), revision);
}

fn configs_with_color(color: &str) -> Vec<Value> {
    let mut configs = configs();
    configs[0]["data"]["color"] = json!(color);
    configs
}

#[test]
fn a_target_without_a_known_selector_label_is_refused_with_the_labels_looked_for() {
    let mut target = podinfo();
    target["spec"]["selector"]["matchLabels"] = json!({"component": "podinfo"});
    let error = objects::primary_deployment(&canary(), CANARY_UID, &target, None).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, ObjectError::NoSelectorLabel { .. }),
        "{message}"
    );
    for label in ["\"app\"", "\"name\"", "\"app.kubernetes.io/name\""] {
        assert!(message.contains(label), "{message}");
    }
    assert!(message.contains("Deployment test/podinfo"), "{message}");
    assert!(objects::services(&canary(), CANARY_UID, &target).is_err());
}

#[test]
fn selector_labels_are_tried_in_flaggers_order() {
    let mut target = podinfo();
    target["spec"]["selector"]["matchLabels"] =
        json!({"app.kubernetes.io/name": "web", "name": "podinfo-name"});
    target["spec"]["template"]["metadata"]["labels"] =
        json!({"app.kubernetes.io/name": "web", "name": "podinfo-name"});
    let primary = objects::primary_deployment(&canary(), CANARY_UID, &target, None).unwrap();
    assert_eq!(
        primary["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "web", "name": "podinfo-name-primary"})
    );
    assert_eq!(
        primary["spec"]["template"]["metadata"]["labels"],
        json!({"app.kubernetes.io/name": "web", "name": "podinfo-name-primary"})
    );
}

// ---------------------------------------------------------------------------------------------
// observe over the in-memory cluster

fn deployment_ref(name: &str) -> ObjectRef {
    ObjectRef::new("apps/v1", "Deployment", "test", name)
}

async fn cluster_with_podinfo() -> MemoryCluster {
    let cluster = MemoryCluster::new();
    let mut target = podinfo();
    // What a user applies: the server-set fields are the cluster's to fill.
    for field in ["uid", "resourceVersion", "generation", "managedFields"] {
        target["metadata"].as_object_mut().unwrap().remove(field);
    }
    cluster.apply(target).await.unwrap();
    for config in configs() {
        cluster.apply(config).await.unwrap();
    }
    cluster
}

#[tokio::test]
async fn observe_reads_workloads_revision_configs_and_controls() {
    let cluster = cluster_with_podinfo().await;
    let world = observe(&cluster, &canary()).await.unwrap();

    let target = world.target.as_ref().unwrap();
    assert_eq!((target.replicas, target.ready), (2, true));
    assert_eq!(world.primary, None);
    assert_eq!(
        world.tracked_configs.keys().collect::<Vec<_>>(),
        [
            "configmap/podinfo-config",
            "configmap/podinfo-files",
            "secret/podinfo-secret"
        ]
    );
    let stored = cluster
        .get(&deployment_ref("podinfo"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        world.revision.as_deref(),
        Some(objects::revision(&typed(&stored), &world.tracked_configs).as_str())
    );
    assert_eq!(
        world.annotations,
        BTreeMap::from([("sluice.dev/promote".to_string(), "true".to_string())])
    );

    // A changed ConfigMap value is a new revision; the pod template did not move.
    let mut config = configs()[0].clone();
    config["data"]["color"] = json!("#ff0000");
    cluster.apply(config).await.unwrap();
    let after = observe(&cluster, &canary()).await.unwrap();
    assert_ne!(after.revision, world.revision);
    assert_ne!(
        after.tracked_configs["configmap/podinfo-config"],
        world.tracked_configs["configmap/podinfo-config"]
    );
}

#[tokio::test]
async fn observe_skips_missing_configs() {
    let cluster = MemoryCluster::new();
    cluster.apply(podinfo()).await.unwrap();
    cluster.apply(configs()[1].clone()).await.unwrap();
    let world = observe(&cluster, &canary()).await.unwrap();
    assert_eq!(
        world.tracked_configs.keys().collect::<Vec<_>>(),
        ["configmap/podinfo-files"]
    );
    assert!(world.revision.is_some());
}

#[tokio::test]
async fn observe_follows_readiness_of_target_and_primary() {
    let cluster = cluster_with_podinfo().await;
    cluster.set_now(1_000);
    cluster.set_ready_delay(30);
    let primary = objects::primary_deployment(&canary(), CANARY_UID, &podinfo(), None).unwrap();
    cluster.apply(primary).await.unwrap();

    let world = observe(&cluster, &canary()).await.unwrap();
    let primary = world.primary.unwrap();
    assert_eq!((primary.replicas, primary.ready), (2, false));
    assert!(
        primary
            .message
            .as_deref()
            .unwrap()
            .contains("podinfo-primary"),
        "{:?}",
        primary.message
    );
    // The target was applied at time 0 and has long been ready.
    assert!(world.target.unwrap().ready);

    cluster.set_now(1_030);
    let world = observe(&cluster, &canary()).await.unwrap();
    assert_eq!(
        world.primary.as_ref().map(|p| (p.ready, p.message.clone())),
        Some((true, None))
    );

    cluster.hold_unready(&deployment_ref("podinfo"), true);
    let world = observe(&cluster, &canary()).await.unwrap();
    let target = world.target.unwrap();
    assert!(!target.ready);
    assert_eq!(
        target.message.as_deref(),
        Some("waiting for Deployment podinfo to roll out: 0 of 2 replicas updated")
    );
}

#[tokio::test]
async fn observe_reports_a_missing_target_as_none() {
    let cluster = MemoryCluster::new();
    let world = observe(&cluster, &canary()).await.unwrap();
    assert_eq!(
        world,
        World {
            annotations: BTreeMap::from([("sluice.dev/promote".into(), "true".into())]),
            ..World::default()
        }
    );
}

#[tokio::test]
async fn observe_refuses_kinds_other_than_deployment() {
    let cluster = cluster_with_podinfo().await;
    let mut canary = canary();
    canary.spec.target_ref.kind = "StatefulSet".into();
    let world = observe(&cluster, &canary).await.unwrap();
    assert_eq!(
        world,
        World {
            unsupported_kind: Some("StatefulSet".into()),
            ..World::default()
        }
    );
}

#[test]
fn workload_readiness_needs_the_current_generation_observed() {
    let deployment = json!({
        "metadata": {"name": "podinfo", "generation": 4},
        "spec": {"replicas": 3},
        "status": {"observedGeneration": 3, "updatedReplicas": 3, "availableReplicas": 3},
    });
    let workload = sluice_controller::cluster::observe::workload(&deployment);
    assert!(!workload.ready);
    assert_eq!(
        workload.message.as_deref(),
        Some("waiting for Deployment podinfo to be observed: generation 4, observed 3")
    );
    let deployment = json!({
        "metadata": {"name": "podinfo", "generation": 4},
        "spec": {"replicas": 3},
        "status": {"observedGeneration": 4, "updatedReplicas": 3, "availableReplicas": 2},
    });
    assert_eq!(
        sluice_controller::cluster::observe::workload(&deployment)
            .message
            .as_deref(),
        Some("waiting for Deployment podinfo to roll out: 2 of 3 updated replicas available")
    );
}
