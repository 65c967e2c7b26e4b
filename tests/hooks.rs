//! Webhooks through `sluice_controller::hooks::Hooks`, against a small HTTP server on 127.0.0.1 that records
//! what it receives (`receiver`).

mod receiver;

use std::future::Future;
use std::time::{Duration, Instant};

use receiver::{FAIL_BODY, SLOW, Server};
use serde_json::json;
use sluice_controller::hooks::Hooks;
use sluice_core::api::{Canary, HookType, Phase};
use sluice_core::rollout::HookOutcome;
use tokio::net::TcpListener;

/// No test may take longer than this, whatever the code under test does.
const BOUND: Duration = Duration::from_secs(5);

/// A Canary `podinfo` in `test` with these webhooks (YAML list items, one per line).
fn canary(webhooks: &[String]) -> Canary {
    let mut yaml = String::from(
        "apiVersion: sluice.dev/v1alpha1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis:
    interval: 1m
    stepWeight: 10
    maxWeight: 50
",
    );
    if !webhooks.is_empty() {
        yaml.push_str("    webhooks:\n");
    }
    for hook in webhooks {
        yaml.push_str("      - ");
        yaml.push_str(hook);
        yaml.push('\n');
    }
    serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("bad test Canary ({e}):\n{yaml}"))
}

fn hook(name: &str, kind: &str, url: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!("{{name: {name}, type: {kind}, url: \"{url}\"{extra}}}")
}

fn hooks() -> Hooks {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Hooks::new()
        .expect("webhook client")
        .with_backoff(Duration::from_millis(20))
}

async fn bounded<F: Future>(work: F) -> F::Output {
    tokio::time::timeout(BOUND, work)
        .await
        .expect("the webhook call outlived the test's bound")
}

async fn check(canary: &Canary, kind: HookType) -> HookOutcome {
    bounded(hooks().check(canary, kind, Phase::Progressing, "abc123")).await
}

fn failed(outcome: HookOutcome) -> (String, String) {
    match outcome {
        HookOutcome::Failed { hook, reason } => (hook, reason),
        HookOutcome::Passed => panic!("expected a failure, the hooks passed"),
    }
}

#[tokio::test]
async fn the_payload_is_flaggers() {
    let server = Server::start().await;
    let canary = canary(&[hook(
        "load-test",
        "rollout",
        &server.url("/ok"),
        "metadata: {cmd: \"hey -z 1m http://podinfo-canary.test:9898/\", type: cmd}",
    )]);
    let outcome =
        bounded(hooks().check(&canary, HookType::Rollout, Phase::Progressing, "abc123")).await;
    assert_eq!(outcome, HookOutcome::Passed);

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/ok");
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        seen[0].body,
        json!({
            "name": "podinfo",
            "namespace": "test",
            "phase": "Progressing",
            "checksum": "abc123",
            "metadata": {
                "cmd": "hey -z 1m http://podinfo-canary.test:9898/",
                "type": "cmd",
            },
        })
    );
}

#[tokio::test]
async fn the_phase_is_sent_as_given_and_metadata_is_empty_when_unset() {
    let server = Server::start().await;
    let canary = canary(&[hook("gate", "confirm-promotion", &server.url("/ok"), "")]);
    let outcome = bounded(hooks().check(
        &canary,
        HookType::ConfirmPromotion,
        Phase::WaitingPromotion,
        "rev-7",
    ))
    .await;
    assert_eq!(outcome, HookOutcome::Passed);
    assert_eq!(
        server.seen()[0].body,
        json!({
            "name": "podinfo",
            "namespace": "test",
            "phase": "WaitingPromotion",
            "checksum": "rev-7",
            "metadata": {},
        })
    );
}

#[tokio::test]
async fn a_gate_passes_on_2xx_and_fails_on_500_with_the_status_and_body() {
    let server = Server::start().await;
    let open = canary(&[hook("gate", "confirm-rollout", &server.url("/ok"), "")]);
    assert_eq!(
        check(&open, HookType::ConfirmRollout).await,
        HookOutcome::Passed
    );

    let closed = canary(&[hook("gate", "confirm-rollout", &server.url("/fail"), "")]);
    let (hook, reason) = failed(check(&closed, HookType::ConfirmRollout).await);
    assert_eq!(hook, "gate");
    assert!(reason.contains("500"), "{reason}");
    assert!(reason.contains(FAIL_BODY), "{reason}");
    // Webhook URLs may carry tokens; reasons end up in the status.
    assert!(!reason.contains(&server.addr.to_string()), "{reason}");
}

#[tokio::test]
async fn a_long_error_body_is_cut_to_200_chars() {
    let server = Server::start().await;
    let canary = canary(&[hook("gate", "confirm-rollout", &server.url("/big"), "")]);
    let (_, reason) = failed(check(&canary, HookType::ConfirmRollout).await);
    assert!(reason.contains("503"), "{reason}");
    let xs = reason.chars().filter(|&c| c == 'x').count();
    assert_eq!(xs, 200, "{reason}");
}

#[tokio::test]
async fn retries_recover_a_flaky_hook() {
    let server = Server::start().await;
    let canary = canary(&[hook(
        "flaky",
        "rollout",
        &server.url("/flaky/a"),
        "retries: 2",
    )]);
    assert_eq!(check(&canary, HookType::Rollout).await, HookOutcome::Passed);
    assert_eq!(server.paths(), ["/flaky/a", "/flaky/a", "/flaky/a"]);
}

#[tokio::test]
async fn without_retries_a_flaky_hook_fails_on_its_first_answer() {
    let server = Server::start().await;
    let canary = canary(&[hook("flaky", "rollout", &server.url("/flaky/b"), "")]);
    let (hook, reason) = failed(check(&canary, HookType::Rollout).await);
    assert_eq!(hook, "flaky");
    assert!(reason.contains("500"), "{reason}");
    assert!(reason.contains("not yet (1)"), "{reason}");
    assert_eq!(server.paths(), ["/flaky/b"]);
}

#[tokio::test]
async fn retries_that_run_out_report_the_last_answer_and_the_attempts() {
    let server = Server::start().await;
    let canary = canary(&[hook(
        "gate",
        "confirm-promotion",
        &server.url("/fail"),
        "retries: 2",
    )]);
    let (_, reason) = failed(check(&canary, HookType::ConfirmPromotion).await);
    assert!(reason.contains("500"), "{reason}");
    assert!(reason.contains("3 attempts"), "{reason}");
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn a_hook_slower_than_its_timeout_fails() {
    let server = Server::start().await;
    let canary = canary(&[hook(
        "slow",
        "pre-rollout",
        &server.url("/slow"),
        "timeout: 200ms",
    )]);
    let started = Instant::now();
    let (hook, reason) = failed(check(&canary, HookType::PreRollout).await);
    let took = started.elapsed();
    assert_eq!(hook, "slow");
    assert!(reason.contains("no answer within 200ms"), "{reason}");
    assert!(
        took >= Duration::from_millis(200) && took < SLOW,
        "took {took:?}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn an_unreachable_hook_fails_with_the_cause() {
    // A port that was just free: nothing listens on it.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("local addr").port()
    };
    let canary = canary(&[hook(
        "gone",
        "confirm-traffic-increase",
        &format!("http://127.0.0.1:{port}/ok"),
        "retries: 1",
    )]);
    let (hook, reason) = failed(check(&canary, HookType::ConfirmTrafficIncrease).await);
    assert_eq!(hook, "gone");
    assert!(reason.contains("cannot connect"), "{reason}");
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    assert!(reason.contains("2 attempts"), "{reason}");
}

#[tokio::test]
async fn only_hooks_of_the_asked_type_are_called() {
    let server = Server::start().await;
    let canary = canary(&[
        hook("pre", "pre-rollout", &server.url("/fail/pre"), ""),
        hook("step", "rollout", &server.url("/fail/step"), ""),
        hook("gate", "confirm-promotion", &server.url("/ok/gate"), ""),
        hook("after", "post-rollout", &server.url("/fail/after"), ""),
        hook("events", "event", &server.url("/fail/events"), ""),
    ]);
    assert_eq!(
        check(&canary, HookType::ConfirmPromotion).await,
        HookOutcome::Passed
    );
    assert_eq!(server.paths(), ["/ok/gate"]);

    assert_eq!(
        check(&canary, HookType::ConfirmRollout).await,
        HookOutcome::Passed,
        "no hook of a type passes"
    );
    assert_eq!(server.paths(), ["/ok/gate"]);
}

#[tokio::test]
async fn hooks_of_a_type_run_in_order_and_stop_at_the_first_failure() {
    let server = Server::start().await;
    let canary = canary(&[
        hook("one", "rollout", &server.url("/ok/one"), ""),
        hook("two", "rollout", &server.url("/ok/two"), ""),
        hook("three", "rollout", &server.url("/fail/three"), ""),
        hook("four", "rollout", &server.url("/ok/four"), ""),
    ]);
    let (hook, reason) = failed(check(&canary, HookType::Rollout).await);
    assert_eq!(hook, "three");
    assert!(reason.contains("500"), "{reason}");
    assert_eq!(server.paths(), ["/ok/one", "/ok/two", "/fail/three"]);
}

#[tokio::test]
async fn an_event_notification_carries_the_message() {
    let server = Server::start().await;
    let canary = canary(&[
        hook(
            "events",
            "event",
            &server.url("/ok/events"),
            "metadata: {team: web}",
        ),
        hook("after", "post-rollout", &server.url("/ok/after"), ""),
    ]);
    bounded(hooks().notify(
        &canary,
        HookType::Event,
        Phase::Progressing,
        "abc123",
        Some("Advance podinfo.test canary weight 20"),
    ))
    .await;
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/ok/events");
    assert_eq!(
        seen[0].body,
        json!({
            "name": "podinfo",
            "namespace": "test",
            "phase": "Progressing",
            "checksum": "abc123",
            "metadata": {
                "team": "web",
                "eventMessage": "Advance podinfo.test canary weight 20",
                "eventType": "Normal",
            },
        })
    );
}

#[tokio::test]
async fn other_notifications_carry_the_plain_payload() {
    let server = Server::start().await;
    let canary = canary(&[
        hook(
            "after",
            "post-rollout",
            &server.url("/ok/after"),
            "metadata: {a: b}",
        ),
        hook("undo", "rollback", &server.url("/ok/undo"), ""),
    ]);
    bounded(hooks().notify(
        &canary,
        HookType::PostRollout,
        Phase::Succeeded,
        "abc123",
        Some("ignored"),
    ))
    .await;
    let seen = server.seen();
    assert_eq!(server.paths(), ["/ok/after"]);
    assert_eq!(seen[0].body["phase"], "Succeeded");
    assert_eq!(seen[0].body["metadata"], json!({"a": "b"}));
}

#[tokio::test]
async fn notify_only_logs_failures_and_tries_every_hook() {
    let server = Server::start().await;
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("local addr").port()
    };
    let canary = canary(&[
        hook(
            "broken",
            "rollback",
            &server.url("/fail/first"),
            "retries: 1",
        ),
        hook("gone", "rollback", &format!("http://127.0.0.1:{port}/"), ""),
        hook("slow", "rollback", &server.url("/slow"), "timeout: 100ms"),
        hook("bad-url", "rollback", "not a url", ""),
        hook("last", "rollback", &server.url("/ok/last"), ""),
    ]);
    bounded(hooks().notify(&canary, HookType::Rollback, Phase::Failed, "abc123", None)).await;
    assert_eq!(
        server.paths(),
        ["/fail/first", "/fail/first", "/slow", "/ok/last"]
    );
}

#[tokio::test]
async fn a_canary_without_webhooks_passes_every_gate() {
    let canary = canary(&[]);
    for kind in [
        HookType::ConfirmRollout,
        HookType::PreRollout,
        HookType::Rollout,
        HookType::ConfirmTrafficIncrease,
        HookType::ConfirmPromotion,
    ] {
        assert_eq!(check(&canary, kind).await, HookOutcome::Passed, "{kind:?}");
    }
}
