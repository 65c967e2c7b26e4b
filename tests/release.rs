//! Whole releases through `controller::reconcile` over the in-memory cluster, with the Gateway
//! API router: the objects sluice creates, every HTTPRoute weight it writes, and the phases.
//! The cluster is persisted to a file and reopened before every reconcile, as if the controller
//! restarted at every step.

mod receiver;

use std::path::Path;
use std::sync::{Arc, Mutex};

use receiver::Server;

use serde_json::{Value, json};
use sluice_controller::cluster::memory::MemoryCluster;
use sluice_controller::cluster::{Cluster, ObjectRef};
use sluice_controller::hooks::Hooks;
use sluice_controller::notify::alerts::{AlertOptions, Alerts};
use sluice_controller::observer::Observer;
use sluice_controller::providers::BoxFuture;
use sluice_controller::reconcile::{Context, load_canary, reconcile};
use sluice_core::analysis::{Observation, Observed, RequestCounts};
use sluice_core::api::{Canary, Phase};
use sluice_core::rollout::MetricsWindow;

const T0: i64 = 1_800_000_000;

/// Healthy or failing running totals (`canary_errors` a minute); counts how often it was asked.
struct Scripted {
    canary_errors: u64,
    asked: Mutex<u32>,
}

impl Observer for Scripted {
    fn observe<'a>(
        &'a self,
        _: &'a Canary,
        _: i64,
        window: MetricsWindow,
    ) -> BoxFuture<'a, Vec<Observation>> {
        // Running totals at 10 canary and 90 primary requests a second.
        let seconds = window.comparison_seconds as f64;
        *self.asked.lock().unwrap() += 1;
        let errors = self.canary_errors;
        Box::pin(async move {
            vec![Observation {
                metric: "errors".into(),
                result: Ok(Observed::Counts {
                    canary: RequestCounts {
                        requests: 10.0 * seconds,
                        errors: errors as f64 * seconds / 60.0,
                    },
                    primary: RequestCounts {
                        requests: 90.0 * seconds,
                        errors: 0.9 * seconds,
                    },
                }),
            }]
        })
    }
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn target(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{
                    "name": "podinfo", "image": image,
                    "envFrom": [{"configMapRef": {"name": "podinfo-config"}}]
                }]}
            }
        }
    })
}

fn canary() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "0000-1111"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898, "gatewayRefs": [{"name": "public", "namespace": "gateways"}], "hosts": ["podinfo.example.test"]},
            "analysis": {
                "interval": "1m", "threshold": 5, "stepWeight": 10, "maxWeight": 50,
                "metrics": [{"name": "errors", "templateRef": {"name": "app-errors"},
                             "comparison": {"type": "errorRate", "requestsTemplateRef": {"name": "app-requests"}}}]
            }
        }
    })
}

fn route_weights(cluster: &MemoryCluster) -> Option<(u64, u64)> {
    let route = block(cluster.get(&ObjectRef::new(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        "test",
        "podinfo",
    )))
    .unwrap()?;
    let refs = route
        .pointer("/spec/rules/0/backendRefs")?
        .as_array()?
        .clone();
    let weight = |name: &str| {
        refs.iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["weight"].as_u64())
            .unwrap_or(0)
    };
    Some((weight("podinfo-primary"), weight("podinfo-canary")))
}

struct Trail {
    /// Phase and canary weight after each reconcile.
    phases: Vec<(Phase, u32)>,
    /// Every change of the HTTPRoute's (primary, canary) weights, in order.
    routes: Vec<(u64, u64)>,
    now: i64,
}

/// Reconciles until the phase is one of `until` (after having left it), reopening the cluster
/// from `file` every time.
fn run(file: &Path, observer: Arc<dyn Observer>, start: i64, until: &[Phase], max: usize) -> Trail {
    run_with(file, observer, start, until, max, None)
}

/// `run`, with the alerts of `analysis.alerts` sent by each of these short-lived controllers
/// before it stops.
fn run_alerting(
    file: &Path,
    observer: Arc<dyn Observer>,
    start: i64,
    until: &[Phase],
    max: usize,
) -> Trail {
    let options = AlertOptions {
        backoff: std::time::Duration::from_millis(20),
        ..AlertOptions::default()
    };
    run_with(file, observer, start, until, max, Some(&options))
}

fn run_with(
    file: &Path,
    observer: Arc<dyn Observer>,
    start: i64,
    until: &[Phase],
    max: usize,
    alerts: Option<&AlertOptions>,
) -> Trail {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut trail = Trail {
        phases: Vec::new(),
        routes: Vec::new(),
        now: start,
    };
    let mut last_route = route_weights(&MemoryCluster::persisted(file.to_path_buf()).unwrap());
    for _ in 0..max {
        let cluster = Arc::new(MemoryCluster::persisted(file.to_path_buf()).unwrap());
        cluster.set_now(trail.now);
        let outcome = block(async {
            let hooks = Hooks::new().unwrap();
            let alerts = alerts.map(|o| Alerts::start(cluster.clone(), hooks.client(), o.clone()));
            let mut ctx = Context::new(cluster.clone(), observer.clone(), hooks);
            if let Some(alerts) = &alerts {
                ctx = ctx.with_notifier(alerts.clone());
            }
            let canary = load_canary(cluster.as_ref(), "test", "podinfo")
                .await
                .unwrap()
                .unwrap();
            let outcome = reconcile(&ctx, &canary, trail.now).await.unwrap();
            if let Some(alerts) = &alerts {
                tokio::time::timeout(std::time::Duration::from_secs(10), alerts.settled())
                    .await
                    .expect("the alerts outlived the test's bound");
            }
            outcome
        });
        let status = outcome.decision.status;
        trail
            .phases
            .push((status.phase.unwrap(), status.canary_weight));
        let route = route_weights(&cluster);
        if route != last_route {
            if let Some(r) = route {
                trail.routes.push(r);
            }
            last_route = route;
        }
        trail.now += outcome.decision.requeue_seconds as i64;
        if until.contains(&status.phase.unwrap()) && trail.phases.len() > 1 {
            break;
        }
    }
    trail
}

fn setup(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("cluster.json");
    let cluster = MemoryCluster::persisted(file.clone()).unwrap();
    cluster.set_now(T0);
    cluster.set_ready_delay(20);
    block(cluster.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "podinfo-config", "namespace": "test"},
        "data": {"color": "blue"}
    })))
    .unwrap();
    block(cluster.apply(target("podinfo:6.0.0"))).unwrap();
    block(cluster.apply(canary())).unwrap();
    file
}

fn dedup(phases: &[(Phase, u32)]) -> Vec<(Phase, u32)> {
    let mut out: Vec<(Phase, u32)> = phases.to_vec();
    out.dedup();
    out
}

#[test]
fn a_full_release_and_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let file = setup(dir.path());
    // 1% errors in both arms: enough events for the evidence to rule out a regression.
    let healthy = Arc::new(Scripted {
        canary_errors: 6,
        asked: Mutex::new(0),
    });

    // Bootstrap: primary, Services, config copy and HTTPRoute; the target scaled to zero.
    let init = run(&file, healthy.clone(), T0, &[Phase::Initialized], 10);
    assert_eq!(init.phases.last(), Some(&(Phase::Initialized, 0)));
    assert_eq!(init.routes, [(100, 0)]);
    let cluster = MemoryCluster::persisted(file.clone()).unwrap();
    let names = |kind: &str| -> Vec<String> {
        cluster
            .objects_of_kind(kind)
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("Deployment"), ["podinfo", "podinfo-primary"]);
    assert_eq!(
        names("Service"),
        ["podinfo", "podinfo-canary", "podinfo-primary"]
    );
    assert_eq!(
        names("ConfigMap"),
        ["podinfo-config", "podinfo-config-primary"]
    );
    let route = &cluster.objects_of_kind("HTTPRoute")[0];
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "public");
    assert_eq!(route["spec"]["hostnames"][0], "podinfo.example.test");
    let target_replicas = |c: &MemoryCluster| {
        block(c.get(&ObjectRef::new("apps/v1", "Deployment", "test", "podinfo")))
            .unwrap()
            .unwrap()["spec"]["replicas"]
            .clone()
    };
    assert_eq!(target_replicas(&cluster), 0);

    // A new image: the full release.
    block(cluster.apply(target("podinfo:6.0.1"))).unwrap();
    drop(cluster);
    let release = run(
        &file,
        healthy.clone(),
        init.now,
        &[Phase::Succeeded, Phase::Failed],
        60,
    );
    assert_eq!(
        dedup(&release.phases),
        [
            (Phase::Progressing, 0),
            (Phase::Progressing, 10),
            (Phase::Progressing, 20),
            (Phase::Progressing, 30),
            (Phase::Progressing, 40),
            (Phase::Progressing, 50),
            (Phase::Promoting, 50),
            (Phase::Finalising, 0),
            (Phase::Succeeded, 0),
        ]
    );
    assert_eq!(
        release.routes,
        [(90, 10), (80, 20), (70, 30), (60, 40), (50, 50), (100, 0)]
    );
    // Five one-minute steps, the comparisons looked at every 15 s: 20 looks.
    assert_eq!(*healthy.asked.lock().unwrap(), 20);
    let cluster = MemoryCluster::persisted(file.clone()).unwrap();
    let primary = block(cluster.get(&ObjectRef::new(
        "apps/v1",
        "Deployment",
        "test",
        "podinfo-primary",
    )))
    .unwrap()
    .unwrap();
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["image"],
        "podinfo:6.0.1"
    );
    assert_eq!(target_replicas(&cluster), 0);
    let reasons: Vec<String> = cluster
        .events()
        .iter()
        .map(|e| e.event.message.clone())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|m| m.contains("advance podinfo canary weight 30")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|m| m.contains("promotion completed")),
        "{reasons:?}"
    );

    // Another image, failing: rolled back within two analyses, traffic back to the primary.
    block(cluster.apply(target("podinfo:6.0.2"))).unwrap();
    drop(cluster);
    let rollback = run(
        &file,
        failing(),
        release.now,
        &[Phase::Succeeded, Phase::Failed],
        30,
    );
    assert_eq!(dedup(&rollback.phases), ROLLED_BACK_AT_ONCE);
    assert_eq!(rollback.routes, [(90, 10), (80, 20), (100, 0)]);
    let cluster = MemoryCluster::persisted(file).unwrap();
    let primary = block(cluster.get(&ObjectRef::new(
        "apps/v1",
        "Deployment",
        "test",
        "podinfo-primary",
    )))
    .unwrap()
    .unwrap();
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["image"],
        "podinfo:6.0.1"
    );
    assert_eq!(target_replicas(&cluster), 0);
    let stored = block(load_canary(&cluster, "test", "podinfo"))
        .unwrap()
        .unwrap();
    let status = stored.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
    assert!(
        status
            .message
            .unwrap()
            .contains("rolling back podinfo: errors:")
    );
    assert!(
        status.evidence.metrics[0]
            .sequential
            .as_ref()
            .unwrap()
            .rejected
    );
}

fn names(cluster: &MemoryCluster, kind: &str) -> Vec<String> {
    cluster
        .objects_of_kind(kind)
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn canary_ref() -> ObjectRef {
    ObjectRef::new("sluice.dev/v1alpha1", "Canary", "test", "podinfo")
}

fn finalizers(cluster: &MemoryCluster) -> Value {
    block(cluster.get(&canary_ref())).unwrap().unwrap()["metadata"]["finalizers"].clone()
}

fn healthy() -> Arc<Scripted> {
    Arc::new(Scripted {
        canary_errors: 6,
        asked: Mutex::new(0),
    })
}

/// 15% errors on the canary against 1% on the primary.
fn failing() -> Arc<Scripted> {
    Arc::new(Scripted {
        canary_errors: 90,
        asked: Mutex::new(0),
    })
}

/// A new image for the target: a new revision, which starts a release.
fn new_image(file: &Path, image: &str) {
    let cluster = MemoryCluster::persisted(file.to_path_buf()).unwrap();
    block(cluster.apply(target(image))).unwrap();
}

/// The trail of a release whose canary fails outright: its failure, as loud as one pod's burst,
/// is counted in full once it has lasted longer than a burst (issue 15), by the second step.
const ROLLED_BACK_AT_ONCE: [(Phase, u32); 4] = [
    (Phase::Progressing, 0),
    (Phase::Progressing, 10),
    (Phase::Progressing, 20),
    (Phase::Failed, 0),
];

/// A leader that dies after a step's Event and before its status write leaves the step to the
/// next leader, which makes it again from the same status: the Event is recorded once. A later
/// step with the same message (another release) is a new Event.
#[test]
fn a_step_made_again_from_the_same_status_records_its_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = setup(dir.path());
    let init = run(&file, healthy(), T0, &[Phase::Initialized], 10);
    new_image(&file, "podinfo:6.0.1");
    let mut now = init.now;
    let advances = |cluster: &MemoryCluster, weight: u32| {
        let step = format!("advance podinfo canary weight {weight}");
        cluster
            .events()
            .iter()
            .filter(|e| e.event.message == step)
            .count()
    };
    // Up to weight 10, then the step to 20 made twice from the status at 10.
    // Each look: the status it started from, when it ran, where it left the release.
    let mut look = || {
        let before = stored_status(&file);
        let at = now;
        let one = run(&file, healthy(), now, &[], 1);
        now = one.now;
        (before, at, one.phases[0])
    };
    let reached = (0..20).map(|_| look()).find(|l| l.2.1 == 10);
    assert_eq!(reached.map(|l| l.2), Some((Phase::Progressing, 10)));
    let (before, at, step) = (0..20).map(|_| look()).find(|l| l.2.1 != 10).unwrap();
    assert_eq!(step, (Phase::Progressing, 20));
    let cluster = MemoryCluster::persisted(file.clone()).unwrap();
    block(cluster.patch_status("test", "podinfo", &before)).unwrap();
    drop(cluster);
    let again = run(&file, healthy(), at, &[], 1);
    assert_eq!(again.phases, [(Phase::Progressing, 20)]);
    let cluster = MemoryCluster::persisted(file.clone()).unwrap();
    assert_eq!(advances(&cluster, 20), 1, "{:#?}", cluster.events());
    assert_eq!(advances(&cluster, 10), 1);
    drop(cluster);

    // The next step, and a whole second release, each with their own Events.
    let rest = run(&file, healthy(), again.now, &[Phase::Succeeded], 60);
    assert_eq!(rest.phases.last(), Some(&(Phase::Succeeded, 0)));
    new_image(&file, "podinfo:6.0.2");
    let second = run(&file, healthy(), rest.now, &[Phase::Succeeded], 60);
    assert_eq!(second.phases.last(), Some(&(Phase::Succeeded, 0)));
    let cluster = MemoryCluster::persisted(file).unwrap();
    for weight in [10, 20, 30, 40, 50] {
        assert_eq!(advances(&cluster, weight), 2, "weight {weight}");
    }
}

#[test]
fn a_deleted_canary_takes_what_it_made_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = setup(dir.path());
    let init = run(&file, healthy(), T0, &[Phase::Initialized], 10);
    assert_eq!(init.phases.last(), Some(&(Phase::Initialized, 0)));
    let cluster = MemoryCluster::persisted(file).unwrap();
    assert_eq!(
        finalizers(&cluster),
        Value::Null,
        "no revertOnDeletion, no finalizer"
    );
    cluster.delete(&canary_ref()).unwrap();
    assert!(cluster.objects_of_kind("Canary").is_empty());
    // Kubernetes' garbage collector deletes what the Canary owned: the target stays, at zero.
    assert_eq!(names(&cluster, "Deployment"), ["podinfo"]);
    assert!(names(&cluster, "Service").is_empty());
    assert!(names(&cluster, "HTTPRoute").is_empty());
    assert_eq!(names(&cluster, "ConfigMap"), ["podinfo-config"]);
}

#[test]
fn revert_on_deletion_hands_the_traffic_back_to_the_target_before_the_canary_goes() {
    use sluice_controller::finalize::{Finalized, finalize};
    let dir = tempfile::tempdir().unwrap();
    let file = setup(dir.path());
    let cluster = MemoryCluster::persisted(file.clone()).unwrap();
    let mut reverting = canary();
    reverting["spec"]["revertOnDeletion"] = json!(true);
    block(cluster.apply(reverting)).unwrap();
    drop(cluster);
    let init = run(&file, healthy(), T0, &[Phase::Initialized], 10);
    assert_eq!(init.phases.last(), Some(&(Phase::Initialized, 0)));

    let cluster = Arc::new(MemoryCluster::persisted(file.clone()).unwrap());
    assert_eq!(
        finalizers(&cluster),
        json!(["sluice.dev/revert-on-deletion"])
    );
    // Turned off, the finalizer goes; turned on again, it comes back.
    for (revert, expected) in [
        (false, json!([])),
        (true, json!(["sluice.dev/revert-on-deletion"])),
    ] {
        let mut edited = canary();
        edited["spec"]["revertOnDeletion"] = json!(revert);
        block(cluster.apply(edited)).unwrap();
        let ctx = Context::new(cluster.clone(), healthy(), Hooks::new().unwrap());
        let stored = block(load_canary(cluster.as_ref(), "test", "podinfo"))
            .unwrap()
            .unwrap();
        block(reconcile(&ctx, &stored, init.now)).unwrap();
        assert_eq!(finalizers(&cluster), expected);
    }

    cluster.delete(&canary_ref()).unwrap();
    // Held by the finalizer: marked, and everything still serving from the primary.
    let marked = block(cluster.get(&canary_ref())).unwrap().unwrap();
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    assert_eq!(
        names(&cluster, "Deployment"),
        ["podinfo", "podinfo-primary"]
    );

    let service = |name: &str| {
        block(cluster.get(&ObjectRef::new("v1", "Service", "test", name)))
            .unwrap()
            .unwrap()
    };
    let ctx = Context::new(cluster.clone(), healthy(), Hooks::new().unwrap());
    let mut now = init.now;
    let mut waits = 0;
    for _ in 0..20 {
        cluster.set_now(now);
        let Some(stored) = block(load_canary(cluster.as_ref(), "test", "podinfo")).unwrap() else {
            break;
        };
        match block(finalize(&ctx, &stored, now)).unwrap() {
            Finalized::Done => {}
            Finalized::Again(after) => {
                waits += 1;
                // While the target scales up, clients still reach the primary.
                assert_eq!(
                    service("podinfo")["spec"]["selector"]["app"],
                    "podinfo-primary"
                );
                now += after.as_secs() as i64;
            }
        }
    }
    assert!(
        cluster.objects_of_kind("Canary").is_empty(),
        "the Canary is deleted"
    );
    // The target took the primary's two replicas (Deployments here are ready 20 s after a
    // change, so the finalizer waited: one scale, then looks every 5 s).
    assert!(waits >= 4, "{waits} waits");
    assert_eq!(names(&cluster, "Deployment"), ["podinfo"]);
    let target = block(cluster.get(&ObjectRef::new("apps/v1", "Deployment", "test", "podinfo")))
        .unwrap()
        .unwrap();
    assert_eq!(target["spec"]["replicas"], 2);
    assert_eq!(target["status"]["availableReplicas"], 2);
    // The apex Service and the HTTPRoute stay, pointed at the target's pods, owned by nobody.
    assert_eq!(names(&cluster, "Service"), ["podinfo"]);
    let apex = service("podinfo");
    assert_eq!(apex["spec"]["selector"], json!({"app": "podinfo"}));
    assert_eq!(apex["metadata"]["ownerReferences"], json!([]));
    let route = &cluster.objects_of_kind("HTTPRoute")[0];
    assert_eq!(
        route["spec"]["rules"],
        json!([{"backendRefs": [{"name": "podinfo", "port": 9898}]}])
    );
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "public");
    assert_eq!(route["metadata"]["ownerReferences"], json!([]));
    assert_eq!(names(&cluster, "ConfigMap"), ["podinfo-config"]);
    let reasons: Vec<String> = cluster
        .events()
        .iter()
        .map(|e| e.event.reason.clone())
        .collect();
    assert!(
        reasons.contains(&"RevertScaling".to_string()),
        "{reasons:?}"
    );
    assert_eq!(
        reasons.last().map(String::as_str),
        Some("Reverted"),
        "{reasons:?}"
    );
}

/// The Canary of `setup` with `analysis.alerts` and webhooks added.
fn alerting_canary(alerts: Value, webhooks: Value) -> Value {
    let mut canary = canary();
    canary["spec"]["analysis"]["alerts"] = alerts;
    canary["spec"]["analysis"]["webhooks"] = webhooks;
    canary
}

fn stored_status(file: &Path) -> sluice_core::api::CanaryStatus {
    let cluster = MemoryCluster::persisted(file.to_path_buf()).unwrap();
    block(load_canary(&cluster, "test", "podinfo"))
        .unwrap()
        .unwrap()
        .status
        .unwrap()
}

/// A release about to start (initialized, then a new image). `make` gives, for the receiver,
/// the objects to add (AlertProviders, Secrets) and the Canary's `analysis.alerts` and
/// `webhooks`. The receiver serves from a runtime of its own, across the short-lived
/// controllers.
struct Alerting {
    server: Server,
    file: std::path::PathBuf,
    /// When the release may start.
    now: i64,
    _serving: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn alerting(make: impl FnOnce(&Server) -> (Vec<Value>, Value, Value)) -> Alerting {
    let serving = tokio::runtime::Runtime::new().unwrap();
    let server = serving.block_on(Server::start());
    let dir = tempfile::tempdir().unwrap();
    let file = setup(dir.path());
    let cluster = MemoryCluster::persisted(file.clone()).unwrap();
    let (objects, alerts, webhooks) = make(&server);
    for object in objects {
        block(cluster.apply(object)).unwrap();
    }
    block(cluster.apply(alerting_canary(alerts, webhooks))).unwrap();
    drop(cluster);
    let init = run(&file, healthy(), T0, &[Phase::Initialized], 10);
    new_image(&file, "podinfo:6.0.1");
    Alerting {
        server,
        file,
        now: init.now,
        _serving: serving,
        _dir: dir,
    }
}

fn alert_provider(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AlertProvider",
        "metadata": {"name": name, "namespace": "test"},
        "spec": spec
    })
}

#[test]
fn a_bad_canary_is_rolled_back_and_the_slack_alert_says_what_failed() {
    let release = alerting(|server| {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "slack-url", "namespace": "test"},
            "stringData": {"address": server.url("/ok/services/T0SECRET/B0SECRET/XXSECRET")}
        });
        let provider = alert_provider(
            "on-call",
            json!({"type": "slack", "channel": "releases", "secretRef": {"name": "slack-url"}}),
        );
        let alerts =
            json!([{"name": "on-call", "severity": "error", "providerRef": {"name": "on-call"}}]);
        (vec![secret, provider], alerts, json!([]))
    });
    let (server, file) = (&release.server, &release.file);
    let rollback = run_alerting(
        file,
        failing(),
        release.now,
        &[Phase::Succeeded, Phase::Failed],
        30,
    );
    assert_eq!(dedup(&rollback.phases), ROLLED_BACK_AT_ONCE);
    // One alert (the entry wants errors only: not the start), in Slack's format, through the
    // Secret's address.
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/ok/services/T0SECRET/B0SECRET/XXSECRET");
    let body = &seen[0].body;
    let first = body["text"].as_str().unwrap().lines().next().unwrap();
    assert!(
        first.starts_with("podinfo.test rolled back: errors: errors: canary 15."),
        "{first}"
    );
    assert!(first.contains("% (138/900) vs primary 1.0"), "{first}");
    assert!(
        first.contains("e-value") && first.contains("(rollback at 100)"),
        "{first}"
    );
    assert_eq!(body["blocks"][0]["type"], "header");
    assert_eq!(body["channel"], "releases");
    assert!(
        body.to_string()
            .contains("kubectl get canary podinfo -n test -o yaml"),
        "{body}"
    );
    let status = stored_status(file);
    assert_eq!(status.alerts, ["started", "rolled-back"]);
    let cluster = MemoryCluster::persisted(file.clone()).unwrap();
    let alert_events: Vec<String> = cluster
        .events()
        .into_iter()
        .filter(|e| e.event.reason.starts_with("Alert"))
        .map(|e| e.event.message)
        .collect();
    assert_eq!(
        alert_events,
        ["rolled-back alert sent to AlertProvider test/on-call (slack)"]
    );
    let written = format!(
        "{}\n{:?}",
        serde_json::to_string(&status).unwrap(),
        cluster.events()
    );
    assert!(!written.contains("SECRET"), "{written}");
    drop(cluster);

    // Restarted controllers that look at the failed release again tell nobody again.
    let later = run_alerting(file, failing(), rollback.now, &[], 3);
    assert_eq!(later.phases.len(), 3);
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_closed_gate_alerts_once_however_often_the_controller_restarts() {
    let release = alerting(|server| {
        let provider = alert_provider(
            "chat",
            json!({"type": "webhook", "address": server.url("/ok/chat")}),
        );
        let alerts = json!([{"name": "chat", "severity": "warn", "providerRef": {"name": "chat"}}]);
        let gate = json!([{"name": "approval", "type": "confirm-rollout", "url": server.url("/fail/gate")}]);
        (vec![provider], alerts, gate)
    });
    let (server, file) = (&release.server, &release.file);
    // Every reconcile is a new controller; the gate stays closed.
    let waiting = run_alerting(file, healthy(), release.now, &[], 8);
    assert_eq!(waiting.phases.last(), Some(&(Phase::Waiting, 0)));
    let told = |server: &Server| -> Vec<String> {
        server
            .seen()
            .into_iter()
            .filter(|s| s.path == "/ok/chat")
            .map(|s| s.body["metadata"]["alert"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(told(server), ["waiting"]);
    let gates = server.paths().iter().filter(|p| *p == "/fail/gate").count();
    assert!(gates >= 3, "the gate was asked {gates} times");
    let status = stored_status(file);
    assert_eq!(status.alerts, ["started", "waiting:confirm-rollout"]);

    // The status's record is what keeps it to one: without it, the next look tells again.
    let cluster = MemoryCluster::persisted(file.clone()).unwrap();
    let forgotten = sluice_core::api::CanaryStatus {
        alerts: Vec::new(),
        ..status
    };
    block(cluster.patch_status("test", "podinfo", &forgotten)).unwrap();
    drop(cluster);
    run_alerting(file, healthy(), waiting.now, &[], 1);
    assert_eq!(told(server), ["waiting", "waiting"]);
}

#[test]
fn a_slow_receiver_does_not_slow_the_rollback() {
    let release = alerting(|server| {
        let provider = alert_provider(
            "slow",
            json!({"type": "slack", "address": server.url("/slow")}),
        );
        let alerts = json!([{"name": "slow", "providerRef": {"name": "slow"}}]);
        (vec![provider], alerts, json!([]))
    });
    let (server, file) = (&release.server, &release.file);

    // One controller for the whole release; every alert waits on a receiver that takes
    // `receiver::SLOW` to answer.
    let observer: Arc<dyn Observer> = failing();
    let (slowest, phase) = block(async {
        let cluster = Arc::new(MemoryCluster::persisted(file.clone()).unwrap());
        let hooks = Hooks::new().unwrap();
        let alerts = Alerts::start(cluster.clone(), hooks.client(), AlertOptions::default());
        let ctx = Context::new(cluster.clone(), observer, hooks).with_notifier(alerts.clone());
        let mut now = release.now;
        let mut slowest = std::time::Duration::ZERO;
        let mut phase = Phase::Initialized;
        for _ in 0..20 {
            cluster.set_now(now);
            let canary = load_canary(cluster.as_ref(), "test", "podinfo")
                .await
                .unwrap()
                .unwrap();
            let started = std::time::Instant::now();
            let outcome = reconcile(&ctx, &canary, now).await.unwrap();
            slowest = slowest.max(started.elapsed());
            phase = outcome.decision.status.phase.unwrap();
            if phase == Phase::Failed {
                break;
            }
            now += outcome.decision.requeue_seconds as i64;
        }
        tokio::time::timeout(std::time::Duration::from_secs(20), alerts.settled())
            .await
            .expect("the alerts outlived the test's bound");
        (slowest, phase)
    });
    assert_eq!(phase, Phase::Failed);
    assert!(
        slowest < receiver::SLOW / 3,
        "a reconcile took {slowest:?}, the receiver {:?}",
        receiver::SLOW
    );
    // Both alerts arrived after all: the start and the rollback.
    let texts: Vec<String> = server
        .seen()
        .iter()
        .map(|s| s.body["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].starts_with("podinfo.test release started"),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with("podinfo.test rolled back: errors:"),
        "{texts:?}"
    );
}
