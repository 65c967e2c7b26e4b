//! The controller against a real Kubernetes control plane: kube-apiserver, etcd,
//! kube-controller-manager, kube-scheduler and kwok, built from their Go modules and started on
//! 127.0.0.1 by `e2e/cluster/up.sh` (see e2e/cluster/README.md).
//!
//! One control plane per test binary, shared by its tests, each test in a namespace of its own
//! with its own `sluice controller` process, which runs as the chart's ServiceAccount with the
//! chart's RBAC (rendered by `helm template`), never as an administrator.
//!
//! Which control plane: `SLUICE_TEST_KUBECONFIG` names any cluster (kind, k3d; the fault tests
//! that restart the API server are skipped there); else the one `bash e2e/cluster/up.sh` runs,
//! if any; else the harness starts a private one and a watcher process stops it, by its PIDs,
//! as soon as this test binary exits.
//!
//! The traffic is real: a local gateway (`sluice_demo::gateway`) watches the HTTPRoute the
//! controller writes and splits requests between two `sluice demo-app` processes by its weights;
//! Prometheus scrapes those processes under the names of the kwok pods they stand for. The
//! weights the controller writes are what the analysis sees.

#[path = "support/flagger_docs.rs"]
mod flagger_docs;
#[path = "support/cluster.rs"]
mod harness;
mod receiver;

use std::time::{Duration, Instant};

use harness::{Controller, Release, TestNamespace, read_route_weights};
use serde_json::json;
use sluice_demo::stage::Scenario;

/// The demo Canary's schedule, read back from the HTTPRoute: canary weights in order, then back
/// to 0 on promotion.
const PROMOTED: [u32; 7] = [0, 10, 20, 30, 40, 50, 0];

/// Longest a release may take here (one runs in about 80 s: 5 steps of 10 s plus start-up).
const RELEASE_LIMIT: Duration = Duration::from_secs(300);

/// Each step of the schedule was made exactly once, by the Events recorded on the Canary.
fn each_step_once(notes: &[String]) {
    for weight in [10, 20, 30, 40, 50] {
        let step = format!("canary weight {weight}");
        let times = notes
            .iter()
            .filter(|n| n.starts_with("advance") && n.ends_with(&step))
            .count();
        assert_eq!(times, 1, "the step to {weight} is made once: {notes:#?}");
    }
}

fn is_subsequence(part: &[u32], whole: &[u32]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.any(|w| w == p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_are_accepted_and_cel_rules_refuse_bad_canaries() {
    let ns = TestNamespace::new("crds").await;
    for crd in [
        "canaries.sluice.dev",
        "metrictemplates.sluice.dev",
        "alertproviders.sluice.dev",
    ] {
        let conditions = ns.crd_conditions(crd).await;
        assert_eq!(
            conditions.get("Established").map(String::as_str),
            Some("True"),
            "{crd}: {conditions:?}"
        );
        assert_eq!(
            conditions.get("NonStructuralSchema"),
            None,
            "{crd} must have a structural schema: {conditions:?}"
        );
    }
    // Every CEL rule in the CRD has a bad example here: a new rule without one fails this test.
    let cases = harness::cel_cases();
    let rules = harness::crd_rule_messages();
    for message in &rules {
        assert!(
            cases.iter().any(|c| c.message == message),
            "the CEL rule {message:?} has no bad example in harness::cel_cases"
        );
    }
    for case in &cases {
        let refused = ns.create_canary_expecting_refusal(&case.analysis).await;
        assert!(
            refused.contains(case.message),
            "{}: expected {:?} in the API server's answer, got {refused}",
            case.name,
            case.message
        );
    }
    // The example Canary and the demo's are accepted as they are.
    ns.apply_file("examples/canary.yaml").await;
    ns.apply_file("e2e/canary.yaml").await;
    // And a Flagger-shaped AlertProvider.
    ns.apply_file("examples/alert-provider.yaml").await;
    let provider = ns
        .get("sluice.dev/v1alpha1", "AlertProvider", "on-call")
        .await;
    assert_eq!(provider["spec"]["type"], "slack", "{provider}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_rbac_is_enough_and_no_more() {
    let ns = TestNamespace::new("rbac").await;
    let as_controller = ns.controller_client().await;
    // What the controller does is allowed ...
    for (what, result) in harness::allowed_requests(&as_controller, &ns.name).await {
        assert!(result.is_ok(), "{what} must be allowed: {result:?}");
    }
    // ... and what it never does is refused by the API server.
    for (what, result) in harness::forbidden_requests(&as_controller, &ns.name).await {
        let error = result.expect_err(&format!("{what} must be refused"));
        assert!(
            error.contains("forbidden") || error.contains("Forbidden") || error.contains("403"),
            "{what}: expected 403, got {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_steps_the_httproute_and_is_promoted() {
    let release = Release::start("promote", Scenario::Good).await;
    let _controller = Controller::start(&release.ns, &release.prometheus_url(), "a", true).await;
    release.wait_initialized().await;
    // The generated objects, as the real API server holds them.
    let primary = release
        .ns
        .get("apps/v1", "Deployment", "podinfo-primary")
        .await;
    assert_eq!(primary["status"]["availableReplicas"], 1, "{primary}");
    for service in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        release.ns.get("v1", "Service", service).await;
    }
    let route = release
        .ns
        .get("gateway.networking.k8s.io/v1", "HTTPRoute", "podinfo")
        .await;
    assert_eq!(read_route_weights(&route), Some((100, 0)), "{route}");
    assert_eq!(
        release.ns.get("apps/v1", "Deployment", "podinfo").await["spec"]["replicas"],
        0
    );
    let initialized = release.canary().await;
    let (health, _) = harness::argocd_health(&initialized);
    assert_eq!(health, "Healthy");
    let (kstatus, message) = harness::kstatus(&initialized);
    assert_eq!(kstatus, "Current", "{message}");
    // A spec edited and not yet seen by the controller: the API server has bumped the generation,
    // the status still speaks of the one before. Both must wait for the controller.
    let mut unobserved = initialized.clone();
    unobserved["metadata"]["generation"] = json!(
        initialized["status"]["observedGeneration"]
            .as_i64()
            .expect("observedGeneration")
            + 1
    );
    let (health, message) = harness::argocd_health(&unobserved);
    assert_eq!(health, "Progressing", "{message}");
    let (kstatus, message) = harness::kstatus(&unobserved);
    assert_eq!(kstatus, "InProgress", "{message}");
    assert!(message.contains("latest observed generation"), "{message}");
    // kstatus's limit, told in the README: no status at all is Current, where Argo CD waits.
    let mut unseen = initialized.clone();
    unseen.as_object_mut().expect("an object").remove("status");
    assert_eq!(harness::argocd_health(&unseen).0, "Progressing");
    assert_eq!(harness::kstatus(&unseen).0, "Current");

    let started = Instant::now();
    release.new_image("podinfo:1.1.0").await;
    release
        .wait_status(Duration::from_secs(60), |s| s["phase"] == "Progressing")
        .await;
    // What GitOps tools wait on, mid-release: kstatus's InProgress, Argo CD's Progressing.
    let canary = release.canary().await;
    assert_eq!(
        condition(&canary, "Reconciling"),
        Some("True".into()),
        "{canary}"
    );
    let (health, message) = harness::argocd_health(&canary);
    assert_eq!(health, "Progressing", "{message}");
    let (kstatus, message) = harness::kstatus(&canary);
    assert_eq!(kstatus, "InProgress", "{message}");
    eprintln!("mid-release: kstatus {kstatus}: {message}");
    let weights = release.follow_until_done(RELEASE_LIMIT).await;
    let took = started.elapsed();
    eprintln!("promotion: HTTPRoute weights {weights:?} in {took:.0?}");
    assert_eq!(
        release.phase().await,
        "Succeeded",
        "{}",
        release.describe().await
    );
    // Every weight the gateway applied, from before the mid-release look.
    assert_eq!(release.weights(), PROMOTED, "{}", release.describe().await);
    let canary = release.canary().await;
    assert_eq!(condition(&canary, "Ready"), Some("True".into()), "{canary}");
    assert_eq!(condition(&canary, "Reconciling"), None, "{canary}");
    assert_eq!(
        canary["status"]["observedGeneration"], canary["metadata"]["generation"],
        "{canary}"
    );
    let (health, message) = harness::argocd_health(&canary);
    assert_eq!(health, "Healthy", "{message}");
    let (kstatus, message) = harness::kstatus(&canary);
    assert_eq!(kstatus, "Current", "{message}");
    let primary = release
        .ns
        .get("apps/v1", "Deployment", "podinfo-primary")
        .await;
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["image"], "podinfo:1.1.0",
        "promotion copies the pod template to the primary"
    );
    assert_eq!(
        release.ns.get("apps/v1", "Deployment", "podinfo").await["spec"]["replicas"],
        0
    );
    // The gateway applied the same steps to real traffic, and the canary served some of it.
    let applied: Vec<u32> = release
        .gateway
        .applied()
        .iter()
        .map(|c| c.routes.canary)
        .collect();
    assert_eq!(applied, PROMOTED);
    let (_, canary_requests) = release.stage.router.counts();
    assert!(
        canary_requests > 100,
        "the canary served {canary_requests} requests"
    );
    release.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_for_the_traffic_it_served() {
    let release = Release::start("rollback", Scenario::Errors).await;
    let _controller = Controller::start(&release.ns, &release.prometheus_url(), "a", true).await;
    release.wait_initialized().await;
    release.new_image("podinfo:1.1.0").await;
    let weights = release.follow_until_done(RELEASE_LIMIT).await;
    eprintln!("rollback: HTTPRoute weights {weights:?}");
    let status = release.status().await;
    assert_eq!(status["phase"], "Failed", "{}", release.describe().await);
    assert_eq!(weights.first(), Some(&0));
    assert_eq!(weights.last(), Some(&0));
    assert!(weights.len() >= 3 && weights[1] == 10, "{weights:?}");
    let message = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Promoted"))
        .map(|c| c["message"].to_string())
        .unwrap_or_default();
    assert!(message.contains("error-rate"), "the cause: {message}");
    // A rollback fails what waits on the Canary: kstatus's Failed, Argo CD's Degraded.
    let canary = release.canary().await;
    assert_eq!(
        condition(&canary, "Stalled"),
        Some("True".into()),
        "{canary}"
    );
    let (health, why) = harness::argocd_health(&canary);
    assert_eq!(health, "Degraded", "{why}");
    assert!(
        why.starts_with("RolledBack: ") && why.contains("error-rate"),
        "{why}"
    );
    let (kstatus, why) = harness::kstatus(&canary);
    assert_eq!(kstatus, "Failed", "{why}");
    assert!(why.contains("error-rate"), "the cause: {why}");
    eprintln!("rolled back: kstatus {kstatus}: {why}");
    let primary = release
        .ns
        .get("apps/v1", "Deployment", "podinfo-primary")
        .await;
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["image"], "podinfo:1.0.0",
        "a rollback leaves the primary as it was"
    );
    assert_eq!(
        release.ns.get("apps/v1", "Deployment", "podinfo").await["spec"]["replicas"],
        0
    );
    release.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_through_istio_splits_real_traffic_and_its_rollback_alerts_slack_with_the_cause()
{
    let server = receiver::Server::start().await;
    // The gateway follows the VirtualService the Istio router writes, as Istio's proxies would.
    let release = Release::start_edited("istio", Scenario::Errors, &|canary| {
        canary["spec"]["provider"] = json!("istio");
        canary["spec"]["analysis"]["alerts"] =
            json!([{"name": "on-call", "severity": "error", "providerRef": {"name": "on-call"}}]);
    })
    .await;
    release
        .ns
        .apply(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "slack-url"},
            "stringData": {"address": server.url("/ok/services/T0/B0/SECRET")}
        }))
        .await;
    release
        .ns
        .apply(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AlertProvider",
            "metadata": {"name": "on-call"},
            "spec": {"type": "slack", "secretRef": {"name": "slack-url"}}
        }))
        .await;
    let _controller = Controller::start(&release.ns, &release.prometheus_url(), "a", true).await;
    release.wait_initialized().await;
    assert!(
        release
            .ns
            .get_opt("gateway.networking.k8s.io/v1", "HTTPRoute", "podinfo")
            .await
            .is_none(),
        "the Istio router writes no HTTPRoute"
    );
    release.new_image("podinfo:1.1.0").await;
    let weights = release.follow_until_done(RELEASE_LIMIT).await;
    eprintln!("istio rollback: VirtualService weights {weights:?}");
    let status = release.status().await;
    assert_eq!(status["phase"], "Failed", "{}", release.describe().await);
    assert!(weights.len() >= 3 && weights[1] == 10, "{weights:?}");
    assert_eq!(weights.last(), Some(&0));
    let (_, canary_requests) = release.stage.router.counts();
    assert!(canary_requests > 0, "the canary served no request");
    let service = release
        .ns
        .get("networking.istio.io/v1", "VirtualService", "podinfo")
        .await;
    assert_eq!(
        service["spec"]["http"][0]["route"][0]["weight"], 100,
        "{service}"
    );
    eventually("the rollback's alert", Duration::from_secs(30), || async {
        !server.seen().is_empty()
    })
    .await;
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/ok/services/T0/B0/SECRET");
    let text = seen[0].body["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.contains(" rolled back: error-rate: errors: canary ")
            && first.contains(" vs primary "),
        "{first}"
    );
    assert!(first.contains("e-value"), "{first}");
    assert!(seen[0].body["blocks"].is_array(), "{}", seen[0].body);
    let described = release.describe().await;
    // Event notes, and the last lines of the controller's log.
    assert!(
        described.contains("rolled-back alert sent to AlertProvider"),
        "{described}"
    );
    assert!(!described.contains("SECRET"), "{described}");
    release.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_configmap_starts_a_release() {
    let release = Release::start_with_config("config", Scenario::Good).await;
    let _controller = Controller::start(&release.ns, &release.prometheus_url(), "a", true).await;
    release.wait_initialized().await;
    let copy = release
        .ns
        .get("v1", "ConfigMap", "podinfo-config-primary")
        .await;
    assert_eq!(copy["data"]["color"], "blue", "{copy}");
    release
        .ns
        .apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "podinfo-config"}, "data": {"color": "green"}}))
        .await;
    let status = release
        .wait_status(Duration::from_secs(60), |s| {
            s["phase"] == "Progressing" && s["canaryWeight"].as_u64().unwrap_or(0) > 0
        })
        .await;
    eprintln!("config change: {}", status["phase"]);
    // Followed from the first step on: the wait above may have seen weight 10 already.
    let weights = release.follow_until_done(RELEASE_LIMIT).await;
    assert!(
        weights.len() >= 6 && PROMOTED.ends_with(&weights),
        "{weights:?}\n{}",
        release.describe().await
    );
    let copy = release
        .ns
        .get("v1", "ConfigMap", "podinfo-config-primary")
        .await;
    assert_eq!(
        copy["data"]["color"], "green",
        "promotion copies the config: {copy}"
    );
    release.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_controller_resumes_the_same_release_at_the_same_weight() {
    let release = Release::start("sigkill", Scenario::Good).await;
    let mut controller = Controller::start(&release.ns, &release.prometheus_url(), "a", true).await;
    release.wait_initialized().await;
    release.new_image("podinfo:1.1.0").await;
    release.follow_until_weight(20, RELEASE_LIMIT).await;
    let before = release.status().await;
    controller.kill();
    eprintln!("SIGKILL at weight 20, iterations {}", before["iterations"]);
    // Nothing moves while no controller runs.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(release.route_weights().await, Some((80, 20)));
    let _restarted = Controller::start(&release.ns, &release.prometheus_url(), "a2", true).await;
    release.follow_until_done(RELEASE_LIMIT).await;
    // Every change of the HTTPRoute since the Canary was created, as the gateway watched it.
    let weights = release.weights();
    eprintln!("after restart: {weights:?}");
    assert_eq!(weights, PROMOTED, "{}", release.describe().await);
    assert_eq!(release.phase().await, "Succeeded");
    release.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_when_the_leader_is_killed() {
    let release = Release::start("leader", Scenario::Good).await;
    let mut a = Controller::start(&release.ns, &release.prometheus_url(), "replica-a", true).await;
    release.wait_for_leader("replica-a").await;
    let mut b = Controller::start(&release.ns, &release.prometheus_url(), "replica-b", true).await;
    release.wait_initialized().await;
    release.new_image("podinfo:1.1.0").await;
    release.follow_until_weight(20, RELEASE_LIMIT).await;
    let leader = release.lease_holder().await;
    assert_eq!(leader.as_deref(), Some("replica-a"));
    let killed = Instant::now();
    a.kill();
    let new_leader = release.wait_for_leader("replica-b").await;
    let takeover = killed.elapsed();
    eprintln!("leader killed; replica-b leads after {takeover:.1?}");
    assert!(
        takeover <= Duration::from_secs(15 + 5),
        "the lease lasts 15 s; takeover took {takeover:?} ({new_leader})"
    );
    release.follow_until_done(RELEASE_LIMIT).await;
    // Every change of the HTTPRoute since the Canary was created, as the gateway watched it.
    let weights = release.weights();
    let steps: Vec<(u32, f64)> = release
        .gateway
        .applied()
        .iter()
        .map(|c| (c.routes.canary, c.at))
        .collect();
    eprintln!("leader change: {weights:?}; applied at {steps:?}");
    // No step done twice, none skipped.
    assert_eq!(weights, PROMOTED, "{}", release.describe().await);
    each_step_once(&release.event_notes().await);
    b.kill();
    release.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_goes_on_after_the_api_server_restarts() {
    if !harness::is_local() {
        eprintln!(
            "skipped: the API server of a cluster named by SLUICE_TEST_KUBECONFIG is not ours to restart"
        );
        return;
    }
    // Alone on the control plane: the other tests' controllers would meet the outage too.
    let release = Release::start_alone("apiserver", Scenario::Good).await;
    let mut controller = Controller::start(&release.ns, &release.prometheus_url(), "a", true).await;
    release.wait_initialized().await;
    release.new_image("podinfo:1.1.0").await;
    release.follow_until_weight(20, RELEASE_LIMIT).await;
    let down = Instant::now();
    harness::restart_apiserver(Duration::from_secs(3));
    let outage = down.elapsed();
    eprintln!("API server back after {outage:.1?}");
    // An outage longer than the lease (15 s) makes the controller exit, as it must: it can no
    // longer know that it leads. Its Deployment's pod would be restarted; so is the process.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if !controller.is_running() {
        let log = std::fs::read_to_string(&controller.log).unwrap_or_default();
        assert!(
            outage > Duration::from_secs(15) && log.contains("lost the leader lease"),
            "the controller exited after a {outage:?} outage:\n{log}"
        );
        eprintln!(
            "the controller exited (lease lost during the outage); restarted, as kubelet would"
        );
        controller = Controller::start(&release.ns, &release.prometheus_url(), "a2", true).await;
    }
    release.follow_until_done(RELEASE_LIMIT).await;
    drop(controller);
    // Every change of the HTTPRoute since the Canary was created, as the gateway watched it.
    let weights = release.weights();
    eprintln!("API server restart: {weights:?}");
    // The gateway's own watch was cut by the outage too and may have missed a short-lived step
    // while it backed off; the Events say which steps the controller made: each one, once.
    assert!(
        is_subsequence(&weights, &PROMOTED) && weights.first() == Some(&0),
        "{weights:?}"
    );
    each_step_once(&release.event_notes().await);
    assert_eq!(release.phase().await, "Succeeded");
    release.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_during_a_step_are_not_lost() {
    let release = Release::start("conflict", Scenario::Good).await;
    let _controller = Controller::start(&release.ns, &release.prometheus_url(), "a", true).await;
    release.wait_initialized().await;
    release.new_image("podinfo:1.1.0").await;
    release.follow_until_weight(10, RELEASE_LIMIT).await;
    // Read-modify-write with the resourceVersion read, as kubectl edit does, while the
    // controller writes the status: a conflict is retried from a fresh read, never lost.
    let conflicts = release.edit_canary_repeatedly(8).await;
    eprintln!("edits made; {conflicts} conflict(s) retried");
    assert!(conflicts >= 1, "the stale edit must meet a conflict");
    release.follow_until_done(RELEASE_LIMIT).await;
    // Every change of the HTTPRoute since the Canary was created, as the gateway watched it.
    let weights = release.weights();
    assert_eq!(weights, PROMOTED, "{}", release.describe().await);
    let canary = release.canary().await;
    assert_eq!(canary["metadata"]["annotations"]["example.com/edit"], "8");
    assert_eq!(
        canary["spec"]["analysis"]["threshold"], 13,
        "the last edit of the spec stays"
    );
    assert_eq!(canary["status"]["phase"], "Succeeded");
    release.stop().await;
}

/// Waits until `done` holds, polling every 250 ms.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> F,
) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_deleted_with_revert_on_deletion_hands_its_traffic_back_to_the_target() {
    use kube::api::{DeleteParams, Patch, PatchParams};
    let release = Release::start("revert", Scenario::Good).await;
    let canaries = release.ns.api("sluice.dev/v1alpha1", "Canary").await;
    let revert = json!({"spec": {"revertOnDeletion": true}});
    canaries
        .patch("podinfo", &PatchParams::default(), &Patch::Merge(&revert))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _controller = Controller::start(&release.ns, &release.prometheus_url(), "a", true).await;
    release.wait_initialized().await;
    let ns = &release.ns;
    eventually("the finalizer", Duration::from_secs(30), || async {
        ns.get("sluice.dev/v1alpha1", "Canary", "podinfo").await["metadata"]["finalizers"]
            == json!(["sluice.dev/revert-on-deletion"])
    })
    .await;
    assert_eq!(
        ns.get("apps/v1", "Deployment", "podinfo").await["spec"]["replicas"],
        0
    );

    let asked = Instant::now();
    canaries
        .delete("podinfo", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(
        "the Canary's deletion",
        Duration::from_secs(120),
        || async {
            ns.get_opt("sluice.dev/v1alpha1", "Canary", "podinfo")
                .await
                .is_none()
        },
    )
    .await;
    eprintln!(
        "revert on deletion: the Canary went {:.0?} after the delete",
        asked.elapsed()
    );
    // Then kube-controller-manager's garbage collector takes what the Canary still owned.
    eventually(
        "the primary's garbage collection",
        Duration::from_secs(60),
        || async {
            ns.get_opt("apps/v1", "Deployment", "podinfo-primary")
                .await
                .is_none()
        },
    )
    .await;
    for generated in ["podinfo-primary", "podinfo-canary"] {
        eventually(generated, Duration::from_secs(60), || async {
            ns.get_opt("v1", "Service", generated).await.is_none()
        })
        .await;
    }
    // The target serves with the primary's replica count, through the apex Service and the
    // HTTPRoute, which stay without an owner.
    let target = ns.get("apps/v1", "Deployment", "podinfo").await;
    assert_eq!(target["spec"]["replicas"], 1, "{target}");
    assert_eq!(target["status"]["availableReplicas"], 1, "{target}");
    let apex = ns.get("v1", "Service", "podinfo").await;
    assert_eq!(
        apex["spec"]["selector"],
        json!({"app": "podinfo"}),
        "{apex}"
    );
    assert!(apex["metadata"]["ownerReferences"].is_null(), "{apex}");
    let route = ns
        .get("gateway.networking.k8s.io/v1", "HTTPRoute", "podinfo")
        .await;
    let backends = &route["spec"]["rules"][0]["backendRefs"];
    assert_eq!(backends.as_array().map(Vec::len), Some(1), "{route}");
    assert_eq!(backends[0]["name"], "podinfo", "{route}");
    assert!(route["metadata"]["ownerReferences"].is_null(), "{route}");
    let notes = release.event_notes().await;
    eprintln!(
        "revert on deletion: events {:?}",
        &notes[notes.len().saturating_sub(3)..]
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("traffic handed back to Deployment podinfo")),
        "{notes:?}"
    );
    release.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nginx_routers_canary_ingress_is_accepted_and_steered_on_a_real_api_server() {
    use sluice_controller::cluster::Cluster;
    use sluice_controller::cluster::apiserver::KubeCluster;
    use sluice_core::api::{Canary, RouterKind};
    use sluice_core::rollout::Routes;
    use std::sync::Arc;
    let ns = TestNamespace::new("nginx").await;
    ns.apply(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "podinfo",
                     "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "podinfo.example.com",
            "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}}}]}}]},
    }))
    .await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/canary.yaml");
    let text = std::fs::read_to_string(file).expect("e2e/canary.yaml");
    let mut canary: serde_json::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    canary["metadata"]["namespace"] = json!(ns.name);
    canary["spec"]["provider"] = json!("nginx");
    canary["spec"]["ingressRef"] =
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"});
    let analysis = canary["spec"]["analysis"]
        .as_object_mut()
        .expect("analysis");
    analysis.remove("stepWeight");
    analysis.remove("maxWeight");
    analysis.insert("iterations".into(), json!(5));
    analysis.insert(
        "match".into(),
        json!([{"headers": {"x-canary": {"exact": "insider"}}}]),
    );
    // Through the CRD's schema and rules: the fields the router reads are accepted as written.
    ns.apply(canary).await;
    let stored: Canary =
        serde_json::from_value(ns.get("sluice.dev/v1alpha1", "Canary", "podinfo").await)
            .expect("a Canary");
    let cluster: Arc<dyn Cluster> = Arc::new(KubeCluster::new(ns.client.clone()));
    let router = sluice_controller::router::build(RouterKind::Nginx, cluster);
    router.reconcile(&stored).await.expect("reconcile");
    router
        .set_routes(&stored, Routes::canary_weight(40))
        .await
        .expect("weight 40");
    let ingress = ns
        .get("networking.k8s.io/v1", "Ingress", "podinfo-canary")
        .await;
    let annotations = &ingress["metadata"]["annotations"];
    assert_eq!(annotations["nginx.ingress.kubernetes.io/canary"], "true");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-weight"],
        "40"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-body-size"],
        "8m"
    );
    let path = &ingress["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(
        path["backend"]["service"]["name"], "podinfo-canary",
        "{ingress}"
    );
    assert_eq!(
        ingress["metadata"]["ownerReferences"][0]["uid"],
        json!(stored.metadata.uid),
        "{ingress}"
    );
    assert_eq!(
        router.get_routes(&stored).await.unwrap(),
        Routes::canary_weight(40)
    );
    // A/B testing, then weights again: server-side apply drops the header rule sluice stops
    // sending.
    let ab = Routes {
        primary: 100,
        canary: 0,
        canary_match: true,
        mirror: false,
    };
    router.set_routes(&stored, ab).await.expect("A/B");
    let header = |ingress: &serde_json::Value| {
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header"].clone()
    };
    let ingress = ns
        .get("networking.k8s.io/v1", "Ingress", "podinfo-canary")
        .await;
    assert_eq!(header(&ingress), "x-canary", "{ingress}");
    assert_eq!(router.get_routes(&stored).await.unwrap(), ab);
    router
        .set_routes(&stored, Routes::canary_weight(10))
        .await
        .expect("weight 10");
    let ingress = ns
        .get("networking.k8s.io/v1", "Ingress", "podinfo-canary")
        .await;
    assert!(header(&ingress).is_null(), "{ingress}");
    assert_eq!(
        router.get_routes(&stored).await.unwrap(),
        Routes::canary_weight(10)
    );
    // The user's Ingress is as they wrote it.
    let user = ns.get("networking.k8s.io/v1", "Ingress", "podinfo").await;
    assert_eq!(
        user["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "podinfo"
    );
}

/// The e2e Canary in `ns` with `provider`, read back through the CRD as the controller reads it.
async fn stored_canary(
    ns: &TestNamespace,
    provider: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> sluice_core::api::Canary {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/canary.yaml");
    let text = std::fs::read_to_string(file).expect("e2e/canary.yaml");
    let mut canary: serde_json::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    canary["metadata"]["namespace"] = json!(ns.name);
    canary["spec"]["provider"] = json!(provider);
    edit(&mut canary);
    ns.apply(canary).await;
    serde_json::from_value(ns.get("sluice.dev/v1alpha1", "Canary", "podinfo").await)
        .expect("a Canary")
}

/// Blue/green or A/B instead of the e2e Canary's weights.
fn by_iterations(canary: &mut serde_json::Value, matches: serde_json::Value) {
    let analysis = canary["spec"]["analysis"]
        .as_object_mut()
        .expect("analysis");
    analysis.remove("stepWeight");
    analysis.remove("maxWeight");
    analysis.insert("iterations".into(), json!(5));
    if matches.is_null() {
        analysis.insert("mirror".into(), json!(true));
        analysis.insert("mirrorWeight".into(), json!(50));
    } else {
        analysis.insert("match".into(), matches);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_routers_objects_are_accepted_by_the_meshes_own_crds() {
    use sluice_controller::cluster::Cluster;
    use sluice_controller::cluster::apiserver::KubeCluster;
    use sluice_core::api::RouterKind;
    use sluice_core::rollout::Routes;
    use std::sync::Arc;
    let ab = Routes {
        primary: 100,
        canary: 0,
        canary_match: true,
        mirror: false,
    };
    let mirrored = Routes {
        mirror: true,
        ..Routes::all_primary()
    };
    let header = json!([{"headers": {"x-canary": {"exact": "insider"}}},
                        {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}]);
    // (router, how the Canary releases, the splits it is asked for, the object it writes)
    let cases = [
        (
            RouterKind::Istio,
            header.clone(),
            vec![Routes::canary_weight(40), ab],
            ("networking.istio.io/v1", "VirtualService"),
        ),
        (
            RouterKind::Istio,
            serde_json::Value::Null,
            vec![mirrored],
            ("networking.istio.io/v1", "VirtualService"),
        ),
        (
            RouterKind::Gamma,
            header.clone(),
            vec![Routes::canary_weight(40), ab],
            ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ),
        (
            RouterKind::Smi,
            json!([]),
            vec![Routes::canary_weight(40)],
            ("split.smi-spec.io/v1alpha2", "TrafficSplit"),
        ),
    ];
    for (i, (kind, matches, splits, (api_version, object_kind))) in cases.into_iter().enumerate() {
        let ns = TestNamespace::new(&format!("mesh{i}")).await;
        let canary = stored_canary(&ns, kind.name(), |c| {
            if !(matches.is_array() && matches.as_array().is_some_and(Vec::is_empty)) {
                by_iterations(c, matches.clone());
            }
        })
        .await;
        let cluster: Arc<dyn Cluster> = Arc::new(KubeCluster::new(ns.client.clone()));
        let router = sluice_controller::router::build(kind, cluster);
        // Every write goes through the mesh's CRD schema and its validation rules.
        router.reconcile(&canary).await.expect("reconcile");
        assert_eq!(
            router.get_routes(&canary).await.unwrap(),
            Routes::all_primary()
        );
        for routes in splits {
            router
                .set_routes(&canary, routes)
                .await
                .unwrap_or_else(|e| panic!("{kind} {routes:?}: {e}"));
            assert_eq!(router.get_routes(&canary).await.unwrap(), routes, "{kind}");
        }
        let object = ns.get(api_version, object_kind, "podinfo").await;
        assert_eq!(
            object["metadata"]["ownerReferences"][0]["uid"],
            json!(canary.metadata.uid),
            "{object}"
        );
        if kind == RouterKind::Istio {
            for host in ["podinfo-primary", "podinfo-canary"] {
                let rule = ns
                    .get("networking.istio.io/v1", "DestinationRule", host)
                    .await;
                assert_eq!(rule["spec"]["host"], host);
            }
        }
        // Deletion with revertOnDeletion: the object stays, un-owned, pointing at the apex.
        router.finalize(&canary).await.expect("finalize");
        let object = ns.get(api_version, object_kind, "podinfo").await;
        assert!(
            object["metadata"].get("ownerReferences").is_none()
                || object["metadata"]["ownerReferences"] == json!([]),
            "{object}"
        );
        eprintln!("{kind}: {object_kind} accepted and steered");
    }
}

/// The status of the Canary's condition of `kind`, if it has one.
fn condition(canary: &serde_json::Value, kind: &str) -> Option<String> {
    canary["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .map(str::to_string)
}

/// `kubectl sluice` on a real release, installed as `kubectl-sluice`: it lists and shows the
/// release, suspends and resumes it, aborts it, retries it, promotes it and watches it to its
/// end, each with the exit code a script branches on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sluice_follows_and_steers_a_release() {
    let release = Release::start("kubectl", Scenario::Good).await;
    let _controller = Controller::start(&release.ns, &release.prometheus_url(), "a", true).await;
    let plugin = harness::Plugin::install(&release.ns);
    release.wait_initialized().await;
    let ran = plugin.run(&["get"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME     PHASE"), "{ran:?}");
    assert!(lines[1].starts_with("podinfo  Initialized  0%"), "{ran:?}");
    assert_eq!(plugin.run(&["status", "podinfo"]).await.code, 0);

    release.new_image("podinfo:1.1.0").await;
    // At 20% one interval has been judged: there is evidence to show.
    release.follow_until_weight(20, RELEASE_LIMIT).await;
    // Mid-release: the weight, the comparisons so far, the conditions and the Events.
    let ran = plugin.run(&["get", "podinfo"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("podinfo  Progressing  20%"), "{ran:?}");
    assert!(ran.stdout.contains("error-rate=ok(e="), "{ran:?}");
    // The same Canary as an object, for scripts: kubectl's shape, without managedFields.
    let ran = plugin.run(&["get", "podinfo", "-o", "json"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let object: serde_json::Value = serde_json::from_str(&ran.stdout).expect("JSON");
    assert_eq!(object["kind"], "Canary", "{object}");
    assert_eq!(object["status"]["canaryWeight"], 20, "{object}");
    assert!(
        object["metadata"].get("managedFields").is_none(),
        "{object}"
    );
    let ran = plugin.run(&["get", "-o", "yaml"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let list: serde_json::Value = serde_yaml_ng::from_str(&ran.stdout).expect("YAML");
    assert_eq!(list["kind"], "List", "{ran:?}");
    assert_eq!(list["items"][0]["kind"], "Canary", "{ran:?}");
    assert!(ran.stdout.contains("name: podinfo"), "{ran:?}");
    let ran = plugin.run(&["status", "podinfo"]).await;
    assert_eq!(ran.code, 3, "in progress: {ran:?}");
    for part in [
        "Canary:     ",
        "Phase:      Progressing",
        "Verdict:    none yet",
        "METRIC",
        " / ",
        "ok (",
        "Reconciling  True",
        "Synced",
    ] {
        assert!(ran.stdout.contains(part), "missing {part:?}: {ran:?}");
    }

    // Suspended, it holds; promote is refused with what to do.
    let ran = plugin.run(&["suspend", "podinfo"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    release
        .wait_status(Duration::from_secs(30), |s| {
            s["message"] == "suspended (spec.suspend)"
        })
        .await;
    let ran = plugin.run(&["get"]).await;
    assert!(ran.stdout.contains("Progressing (suspended)"), "{ran:?}");
    let ran = plugin.run(&["promote", "podinfo"]).await;
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.stderr.contains("kubectl sluice resume podinfo"),
        "{ran:?}"
    );
    assert_eq!(plugin.run(&["resume", "podinfo"]).await.code, 0);

    // Aborted: rolled back, and `status --wait` says so with exit code 1.
    let ran = plugin.run(&["abort", "podinfo"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let ran = plugin
        .run_within(
            Duration::from_secs(90),
            &["status", "podinfo", "--wait", "--timeout", "80s"],
        )
        .await;
    assert_eq!(ran.code, 1, "rolled back: {ran:?}");
    assert!(ran.stdout.contains("Verdict:    rolled back"), "{ran:?}");
    assert!(ran.stdout.contains("sluice.dev/abort"), "{ran:?}");
    let ran = plugin.run(&["promote", "podinfo"]).await;
    assert_eq!(ran.code, 1, "nothing to promote: {ran:?}");
    assert!(ran.stderr.contains("phase Failed"), "{ran:?}");

    // Retried and promoted by hand, followed live by `watch` to its end.
    let ran = plugin.run(&["retry", "podinfo"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    release
        .wait_status(Duration::from_secs(60), |s| s["phase"] == "Progressing")
        .await;
    let prometheus = release.prometheus_url();
    let watch = plugin.spawn(&[
        "watch",
        "podinfo",
        "--timeout",
        "4m",
        "--prometheus",
        &prometheus,
    ]);
    // Its first look comes at once, the next ones every second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ran = plugin.run(&["promote", "podinfo"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let watched = tokio::time::timeout(Duration::from_secs(240), watch.wait_with_output())
        .await
        .expect("watch ends with the release")
        .expect("watch output");
    let out = String::from_utf8_lossy(&watched.stdout);
    eprintln!("$ kubectl sluice watch podinfo\n{out}");
    assert_eq!(watched.status.code(), Some(0), "promoted: {out}");
    assert!(out.contains("Progressing weight"), "{out}");
    // Each arm's traffic, from the Prometheus that scrapes the pods.
    assert!(
        out.lines()
            .any(|l| l.contains("| req/s ") && !l.contains("req/s –/–")),
        "{out}"
    );
    assert!(out.contains("release ended: Succeeded"), "{out}");
    let ran = plugin.run(&["status", "podinfo"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("Verdict:    promoted"), "{ran:?}");

    // A Canary that does not exist, and a cluster that cannot be reached.
    let ran = plugin.run(&["status", "nope"]).await;
    assert_eq!(ran.code, 67, "{ran:?}");
    assert!(ran.stderr.contains("canary"), "{ran:?}");
    let ran = plugin
        .run(&["get", "--kubeconfig", "/nonexistent/kubeconfig"])
        .await;
    assert_eq!(ran.code, 69, "{ran:?}");
}

/// A Prometheus scraping the controller's `/metrics` every second, as the chart's ServiceMonitor
/// does: under the target labels Kubernetes discovery gives the controller's pod (another
/// namespace than the Canaries'), with `honor_labels` so the Canaries' own `namespace` wins.
async fn scrape_controller(
    release: &Release,
    controller: &Controller,
) -> sluice_demo::prometheus::PrometheusServer {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sluice\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n        labels: {{namespace: sluice-system, pod: sluice-5d8f7c6b9-x7k2p}}\n",
        controller.metrics
    );
    let binary = sluice_demo::prometheus::find_binary().unwrap_or_else(|e| panic!("{e}"));
    let dir = release.ns.dir.path().join("monitoring");
    sluice_demo::prometheus::PrometheusServer::start_with(&binary, &dir, &config)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The dashboard's query with Grafana's variables as a user viewing this Canary would have
/// them; panics on a variable it does not know, so a new one cannot go untested.
fn dashboard_query(expr: &str, namespace: &str, canary: &str) -> String {
    let query = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "15m")
        .replace("${namespace}", namespace)
        .replace("$namespace", namespace)
        .replace("${canary}", canary)
        .replace("$canary", canary);
    assert!(
        !query.contains('$'),
        "a variable this test does not set: {query}"
    );
    query
}

/// The PromQL equivalent of Grafana's `label_values(SELECTOR, LABEL)`.
fn label_values_query(variable: &str) -> (String, String) {
    let inner = variable
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values query: {variable}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .unwrap_or_else(|| panic!("label_values without a label: {variable}"));
    let label = label.trim().to_string();
    (format!("group by ({label}) ({})", selector.trim()), label)
}

/// Runs `query` on `prometheus` until it returns a series with a finite value, for up to
/// `limit`; the last answer otherwise.
async fn query_until_data(
    prometheus: &sluice_controller::providers::prometheus::PrometheusProvider,
    query: &str,
    limit: Duration,
) -> Result<Vec<sluice_controller::providers::Sample>, String> {
    use sluice_controller::providers::Provider;
    let started = Instant::now();
    loop {
        let answer = prometheus
            .query(query, sluice_controller::clock::unix_seconds())
            .await;
        let last = match answer {
            Ok(samples) if samples.iter().any(|s| s.value.is_finite()) => return Ok(samples),
            Ok(samples) => format!("no data: {samples:?}"),
            Err(e) => e.to_string(),
        };
        if started.elapsed() > limit {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_has_data_from_a_real_controller() {
    // A guardrail whose provider is down, so that its looks are query errors; the error-rate
    // comparison still rolls the canary back.
    let release = Release::start_edited("dashboard", Scenario::Errors, &|canary| {
        let metrics = canary["spec"]["analysis"]["metrics"]
            .as_array_mut()
            .expect("the demo Canary's metrics");
        metrics.push(
            json!({"name": "uptime", "templateRef": {"name": "unreachable"},
            "thresholdRange": {"min": 1}}),
        );
    })
    .await;
    release
        .ns
        .apply(
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "MetricTemplate",
            "metadata": {"name": "unreachable"},
            // Port 1 of 127.0.0.1: nothing listens, every query is refused at once.
            "spec": {"provider": {"type": "prometheus", "address": "http://127.0.0.1:1"},
                "query": "min(up)"}}),
        )
        .await;
    // A second Canary whose router cannot work (its Ingress does not exist), so that
    // reconciles fail for a reason the dashboard shows.
    release
        .ns
        .apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "backend", "labels": {"app": "backend"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "backend"}},
                "template": {"metadata": {"labels": {"app": "backend"}},
                    "spec": {"containers": [{"name": "backend", "image": "backend:1.0.0",
                        "ports": [{"containerPort": 8080, "name": "http"}]}]}}}}))
        .await;
    release
        .ns
        .apply(
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Canary",
            "metadata": {"name": "backend"},
            "spec": {"provider": "nginx",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "backend"},
                "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "name": "missing"},
                "service": {"port": 8080},
                "analysis": {"interval": "10s", "threshold": 5, "stepWeight": 10,
                    "maxWeight": 50}}}),
        )
        .await;
    let controller = Controller::start(&release.ns, &release.prometheus_url(), "a", true).await;
    let monitoring = scrape_controller(&release, &controller).await;
    release.wait_initialized().await;
    release.new_image("podinfo:1.1.0").await;
    let started = Instant::now();
    let weights = release.follow_until_done(RELEASE_LIMIT).await;
    let status = release.status().await;
    assert_eq!(status["phase"], "Failed", "{}", release.describe().await);
    eprintln!(
        "dashboard: rolled back in {:.1?}, HTTPRoute weights {weights:?}",
        started.elapsed()
    );

    let prometheus = sluice_demo::prometheus::provider(&monitoring.url(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    let ns = release.ns.name.clone();
    // The rollback as the metrics tell it: the error-rate e-value at or above its line, and the
    // broken guardrail's looks counted as query errors.
    for (what, query) in [
        (
            "the error-rate e-value crossed 1/alpha",
            format!(
                r#"sluice_canary_e_value{{namespace="{ns}",name="podinfo",metric="error-rate"}} >= on (namespace, name) group_left sluice_canary_e_value_threshold"#
            ),
        ),
        (
            "the unreachable guardrail's looks are query errors",
            format!(
                r#"sluice_metric_query_errors_total{{namespace="{ns}",name="podinfo",metric="uptime"}} > 0"#
            ),
        ),
        (
            "a rolled-back release is counted",
            r#"sluice_releases_total{outcome="failed"} > 0"#.to_string(),
        ),
        (
            "the broken router's reconciles are counted",
            r#"sluice_reconcile_errors_total{error="router"} > 0"#.to_string(),
        ),
    ] {
        if let Err(last) = query_until_data(&prometheus, &query, Duration::from_secs(30)).await {
            panic!("{what}: {query}\n  {last}\n{}", release.describe().await);
        }
    }

    let path = format!(
        "{}/charts/sluice/dashboards/sluice.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard"))
            .expect("the dashboard is JSON");
    let mut failures = Vec::new();
    // The template variables list this Canary, as a user picks it.
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        let Some(definition) = variable["query"]["query"].as_str() else {
            continue;
        };
        let (query, label) = label_values_query(&dashboard_query(definition, &ns, "podinfo"));
        let wanted = if label == "namespace" {
            ns.as_str()
        } else {
            "podinfo"
        };
        match query_until_data(&prometheus, &query, Duration::from_secs(10)).await {
            Ok(samples)
                if samples
                    .iter()
                    .any(|s| s.labels.get(&label).map(String::as_str) == Some(wanted)) => {}
            other => failures.push(format!(
                "variable {}: {definition}\n  as {query}\n  lacks {wanted}: {other:?}",
                variable["name"]
            )),
        }
    }
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            let query = dashboard_query(expr, &ns, "podinfo");
            queries += 1;
            if let Err(last) = query_until_data(&prometheus, &query, Duration::from_secs(10)).await
            {
                failures.push(format!(
                    "panel {title:?}, target {}: {query}\n  {last}",
                    target["refId"]
                ));
            }
        }
    }
    assert!(queries >= 8, "only {queries} queries in the dashboard");
    assert!(
        failures.is_empty(),
        "dashboard queries without data on a Prometheus scraping the controller:\n{}",
        failures.join("\n")
    );
    drop(monitoring);
    drop(controller);
    release.stop().await;
}

/// The Canaries' Events, as (reporting instance, note), oldest first.
async fn events_by_instance(ns: &TestNamespace, canary: &str) -> Vec<(String, String)> {
    let events = ns.api("events.k8s.io/v1", "Event").await;
    let mut list: Vec<(String, String, String)> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| {
            e.data["regarding"]["kind"] == "Canary" && e.data["regarding"]["name"] == canary
        })
        .map(|e| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
            (
                text(&e.data["eventTime"]),
                text(&e.data["reportingInstance"]),
                text(&e.data["note"]),
            )
        })
        .collect();
    list.sort();
    list.into_iter().map(|(_, who, note)| (who, note)).collect()
}

/// A second Canary, `backend`, for a Deployment `backend`: the release's, renamed and unlabelled.
async fn add_backend(release: &Release) {
    let backend = |v: serde_json::Value| -> serde_json::Value {
        serde_json::from_str(&v.to_string().replace("podinfo", "backend")).expect("JSON")
    };
    release
        .ns
        .apply(backend(harness::deployment("podinfo:1.0.0", false)))
        .await;
    let mut second = release.canary().await;
    for field in ["status", "metadata"] {
        second.as_object_mut().expect("object").remove(field);
    }
    second["metadata"] = json!({"name": "podinfo", "namespace": release.ns.name});
    release.ns.apply(backend(second)).await;
}

async fn wait_phase(ns: &TestNamespace, canary: &str, phase: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ns.get("sluice.dev/v1alpha1", "Canary", canary).await["status"]["phase"] != phase {
        assert!(Instant::now() < deadline, "{canary} never {phase}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `--max-concurrent-releases 1` on a real API server: of two new revisions one is released and
/// the other waits, queued, with why in its status; promoted by hand, the first frees its slot
/// and the second starts. Never are both in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_concurrent_releases_a_release_waits_queued() {
    let release = Release::start("limit", Scenario::Good).await;
    add_backend(&release).await;
    let _controller = Controller::start_with(
        &release.ns,
        &release.prometheus_url(),
        "a",
        true,
        &["--max-concurrent-releases", "1"],
    )
    .await;
    release.wait_initialized().await;
    wait_phase(&release.ns, "backend", "Initialized").await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "backend", "image": "podinfo:1.1.0"}]}}}});
    release
        .ns
        .api("apps/v1", "Deployment")
        .await
        .patch(
            "backend",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(&patch),
        )
        .await
        .expect("backend's new image");
    release.new_image("podinfo:1.1.0").await;
    let in_flight = |s: &serde_json::Value| {
        [
            "Progressing",
            "Waiting",
            "WaitingPromotion",
            "Promoting",
            "Finalising",
        ]
        .contains(&s["phase"].as_str().unwrap_or(""))
    };
    let canary = |name: &'static str| {
        let ns = &release.ns;
        async move { ns.get("sluice.dev/v1alpha1", "Canary", name).await["status"].clone() }
    };
    // One goes, the other waits with why; never both.
    let queued = |s: &serde_json::Value| {
        s["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("queued: 1 releases in flight")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (going, waiting) = loop {
        let (p, b) = (canary("podinfo").await, canary("backend").await);
        assert!(
            !(in_flight(&p) && in_flight(&b)),
            "both in flight: {p}\n{b}"
        );
        if in_flight(&p) && queued(&b) {
            break ("podinfo", "backend");
        }
        if in_flight(&b) && queued(&p) {
            break ("backend", "podinfo");
        }
        assert!(Instant::now() < deadline, "no release queued: {p}\n{b}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(canary(waiting).await["phase"], "Initialized");
    let notes = events_by_instance(&release.ns, waiting).await;
    assert_eq!(
        notes
            .iter()
            .filter(|(_, n)| n.starts_with("queued:"))
            .count(),
        1,
        "{notes:?}"
    );
    // The first ends (promoted by hand): the second takes the slot.
    let canaries = release.ns.api("sluice.dev/v1alpha1", "Canary").await;
    let promote = json!({"metadata": {"annotations": {"sluice.dev/promote": "now"}}});
    canaries
        .patch(
            going,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&promote),
        )
        .await
        .expect("promote");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (g, w) = (canary(going).await, canary(waiting).await);
        assert!(
            !(in_flight(&g) && in_flight(&w)),
            "both in flight: {g}\n{w}"
        );
        if g["phase"] == "Succeeded" && in_flight(&w) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queued release never started: {g}\n{w}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Two shards split the Canaries of a cluster by Flux's label, `sharding.fluxcd.io/key`: each
/// Canary is reconciled by exactly one, and one relabelled moves to the other shard, which
/// carries on from its status (no second initialization) and runs its next release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_the_canaries_and_a_relabelled_one_moves() {
    const KEY: &str = "sharding.fluxcd.io/key";
    let release = Release::start_edited("shards", Scenario::Good, &|c| {
        c["metadata"]["labels"] = json!({KEY: "one"});
    })
    .await;
    // A second Canary, in no shard, for another Deployment.
    add_backend(&release).await;

    let prometheus = release.prometheus_url();
    let _one = Controller::start_with(
        &release.ns,
        &prometheus,
        "shard-one",
        true,
        &[
            "--watch-label-selector",
            &format!("{KEY}=one"),
            "--lease-name",
            "sluice-one",
        ],
    )
    .await;
    let _rest = Controller::start_with(
        &release.ns,
        &prometheus,
        "shard-rest",
        true,
        &[
            "--watch-label-selector",
            &format!("!{KEY}"),
            "--lease-name",
            "sluice-rest",
        ],
    )
    .await;
    release.wait_initialized().await;
    wait_phase(&release.ns, "backend", "Initialized").await;
    // Each Canary's steps were taken by its own shard alone.
    let who = |events: &[(String, String)]| {
        let mut who: Vec<String> = events.iter().map(|(w, _)| w.clone()).collect();
        who.dedup();
        who
    };
    let podinfo = events_by_instance(&release.ns, "podinfo").await;
    assert_eq!(who(&podinfo), ["shard-one"], "{podinfo:?}");
    let backend_events = events_by_instance(&release.ns, "backend").await;
    assert_eq!(who(&backend_events), ["shard-rest"], "{backend_events:?}");

    // Relabelled out of shard one: the other shard takes it over from its status.
    let canaries = release.ns.api("sluice.dev/v1alpha1", "Canary").await;
    canaries
        .patch(
            "podinfo",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {KEY: null}}})),
        )
        .await
        .expect("relabel");
    release.new_image("podinfo:1.1.0").await;
    release.follow_until_done(RELEASE_LIMIT).await;
    assert_eq!(
        release.phase().await,
        "Succeeded",
        "{}",
        release.describe().await
    );
    let after: Vec<(String, String)> =
        events_by_instance(&release.ns, "podinfo").await[podinfo.len()..].to_vec();
    assert_eq!(who(&after), ["shard-rest"], "{after:?}");
    assert!(
        !after
            .iter()
            .any(|(_, note)| note.contains("Initialization")),
        "initialized again: {after:?}"
    );
    assert!(
        after
            .iter()
            .any(|(_, note)| note.contains("promotion completed")),
        "{after:?}"
    );
}

/// What `sluice import flagger` makes of Flagger's documented objects is accepted by the real API
/// server as it stands: the CRDs' schemas and CEL rules judge every object (a server-side dry
/// run in a test namespace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flagger_imports_output_is_accepted_by_the_api_server() {
    use std::io::Write;
    let ns = TestNamespace::new("import").await;
    let mut accepted = Vec::new();
    for (input_name, input) in [
        ("istio", flagger_docs::ISTIO),
        ("gamma", flagger_docs::GAMMA),
        (
            "templates and providers",
            flagger_docs::TEMPLATES_AND_PROVIDERS,
        ),
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["import", "flagger", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sluice import runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("input");
        let output = child.wait_with_output().expect("sluice import ends");
        let report = String::from_utf8_lossy(&output.stderr);
        // 2: produced, with something it could not map (named in the report).
        assert!(
            matches!(output.status.code(), Some(0 | 2)),
            "{input_name}: {report}"
        );
        let text = String::from_utf8(output.stdout).expect("YAML");
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let mut value: serde_json::Value =
                serde::Deserialize::deserialize(document).expect("YAML");
            if value.is_null() {
                continue;
            }
            value["metadata"]["namespace"] = json!(ns.name);
            let api_version = value["apiVersion"].as_str().unwrap_or("").to_string();
            let kind = value["kind"].as_str().unwrap_or("").to_string();
            let name = value["metadata"]["name"].as_str().unwrap_or("").to_string();
            let object: kube::api::DynamicObject =
                serde_json::from_value(value).expect("an object");
            let params = kube::api::PostParams {
                dry_run: true,
                ..Default::default()
            };
            ns.api(&api_version, &kind)
                .await
                .create(&params, &object)
                .await
                .unwrap_or_else(|e| panic!("{input_name}: {kind} {name} refused: {e}\n{text}"));
            accepted.push(format!("{kind}/{name}"));
        }
    }
    // The Istio and the GAMMA Canaries, the MetricTemplate and the AlertProviders.
    assert!(
        accepted.iter().filter(|o| o.starts_with("Canary/")).count() == 2,
        "{accepted:?}"
    );
    assert!(
        accepted.iter().any(|o| o.starts_with("MetricTemplate/")),
        "{accepted:?}"
    );
    assert!(
        accepted
            .iter()
            .filter(|o| o.starts_with("AlertProvider/"))
            .count()
            >= 2,
        "{accepted:?}"
    );
}
