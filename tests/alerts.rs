//! The alerts of `analysis.alerts` through `sluice_controller::notify::alerts::Alerts`, sent to
//! a real HTTP receiver on 127.0.0.1 (`receiver`): each service's format with the fields it
//! requires, retries, the severity filter, a full queue, and secrets kept out of everything
//! people read.

mod receiver;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use receiver::{SLOW, Seen, Server};
use serde_json::{Value, json};
use sluice_controller::cluster::memory::MemoryCluster;
use sluice_controller::cluster::{Cluster, Event};
use sluice_controller::hooks::Hooks;
use sluice_controller::notify::alerts::{AlertOptions, Alerts};
use sluice_controller::notify::{Happened, Notification, Notifier};
use sluice_controller::telemetry::Metrics;
use sluice_core::api::{Canary, CanaryStatus, HookType, Phase};
use sluice_core::rollout::{AlertEvent, AlertKind};

/// No test may take longer than this, whatever the code under test does.
const BOUND: Duration = Duration::from_secs(10);

const REASON: &str = "errors: errors: canary 9.000% (54/600) vs primary 1.000% (54/5400); canary/primary ≈ 9.00 [4.10, 20]; e-value 1e6.1 (rollback at 100)";

/// Alerts over `cluster`, quick to retry.
fn alerts(cluster: &Arc<MemoryCluster>, metrics: &Arc<Metrics>, capacity: usize) -> Arc<Alerts> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Hooks::new().expect("HTTP client").client();
    Alerts::start(
        cluster.clone(),
        client,
        AlertOptions {
            capacity,
            backoff: Duration::from_millis(20),
            timeout: Duration::from_millis(800),
            metrics: Some(metrics.clone()),
            ..AlertOptions::default()
        },
    )
}

/// A Canary `podinfo` in `test` at weight 20, with these `analysis.alerts` entries.
fn canary(entries: Value) -> Canary {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "analysis": {"interval": "1m", "stepWeight": 10, "maxWeight": 50, "alerts": entries}
        },
        "status": {"phase": "Progressing", "canaryWeight": 20}
    }))
    .expect("a Canary")
}

fn status() -> CanaryStatus {
    serde_json::from_value(json!({
        "phase": "Failed",
        "metrics": [{"name": "errors", "kind": "errorRate", "lastOutcome": "errors: canary 9.000% (54/600) vs primary 1.000% (54/5400)"}]
    }))
    .expect("a status")
}

fn event(kind: AlertKind, reason: &str) -> AlertEvent {
    AlertEvent {
        kind,
        key: kind.name().into(),
        reason: reason.into(),
    }
}

fn rolled_back() -> AlertEvent {
    event(AlertKind::RolledBack, REASON)
}

/// A receiver, an empty memory cluster and sluice's metrics.
async fn fixture() -> (Server, Arc<MemoryCluster>, Arc<Metrics>) {
    (
        Server::start().await,
        Arc::new(MemoryCluster::new()),
        Arc::new(Metrics::new()),
    )
}

async fn provider(cluster: &MemoryCluster, name: &str, spec: Value) {
    cluster
        .apply(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AlertProvider",
            "metadata": {"name": name, "namespace": "test"},
            "spec": spec
        }))
        .await
        .expect("apply the AlertProvider");
}

/// Hands `alert` over as the reconcile does, and waits until it is sent or given up.
async fn raise(alerts: &Alerts, canary: &Canary, alert: &AlertEvent) {
    let status = status();
    let notification = Notification {
        canary,
        happened: Happened::Alert(alert),
        phase: Phase::Failed,
        status: &status,
        revision: "5f6d7c8b9a0e1234abcd",
    };
    alerts.notify(notification).await;
    tokio::time::timeout(BOUND, alerts.settled())
        .await
        .expect("the alerts outlived the test's bound");
}

fn events(cluster: &MemoryCluster) -> Vec<Event> {
    cluster.events().into_iter().map(|e| e.event).collect()
}

/// Sends a rollback alert through a provider of `kind` and returns what the receiver got.
async fn sent_as(kind: &str) -> Seen {
    let (server, cluster, metrics) = fixture().await;
    let path = format!("/ok/{kind}");
    provider(
        &cluster,
        "chat",
        json!({"type": kind, "address": server.url(&path), "channel": "on-call", "username": "release-bot"}),
    )
    .await;
    let canary = canary(json!([{"name": "chat", "providerRef": {"name": "chat"}}]));
    raise(&alerts(&cluster, &metrics, 16), &canary, &rolled_back()).await;
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, path);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    let sent = events(&cluster);
    assert_eq!(
        sent,
        [Event {
            warning: false,
            reason: "AlertSent".into(),
            message: format!("rolled-back alert sent to AlertProvider test/chat ({kind})"),
            key: None,
        }]
    );
    let text = metrics.encode();
    let series = format!(
        r#"sluice_alerts_total{{provider="test/chat",type="{kind}",event="rolled-back",outcome="sent"}} 1"#
    );
    assert!(text.contains(&series), "{text}");
    seen.into_iter().next().expect("one request")
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

/// The headline every format leads with: what failed and by how much.
fn assert_headline(first: &str) {
    assert!(
        first.starts_with(
            "podinfo.test rolled back: errors: errors: canary 9.000% (54/600) vs primary 1.000%"
        ),
        "{first}"
    );
    assert!(first.contains("e-value 1e6.1 (rollback at 100)"), "{first}");
}

#[tokio::test]
async fn slack_gets_blocks_with_a_text_fallback() {
    let body = sent_as("slack").await.body;
    // The fallback notifications show; its first line says what failed.
    assert_headline(text(&body["text"]).lines().next().unwrap());
    let blocks = body["blocks"].as_array().expect("blocks");
    assert!(blocks.len() <= 50, "Slack takes at most 50 blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(text(&blocks[0]["text"]["text"]).chars().count() <= 150);
    assert_eq!(blocks[1]["type"], "section");
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    assert_headline(text(&blocks[1]["text"]["text"]));
    for block in blocks {
        let kind = text(&block["type"]);
        assert!(["header", "section", "context"].contains(&kind), "{block}");
        if kind == "section" {
            // A section needs text or fields, each a text object.
            let fields = block["fields"].as_array();
            assert!(block["text"].is_object() || fields.is_some(), "{block}");
            for field in fields.into_iter().flatten() {
                assert_eq!(field["type"], "mrkdwn");
                assert!(text(&field["text"]).chars().count() <= 2000);
            }
        }
        if kind == "context" {
            let elements = block["elements"].as_array().expect("context elements");
            assert!(!elements.is_empty() && elements.len() <= 10);
        }
    }
    let all = body.to_string();
    assert!(all.contains("Traffic*\\ncanary weight 20%"), "{all}");
    assert!(
        all.contains("kubectl get canary podinfo -n test -o yaml"),
        "{all}"
    );
    assert_eq!(body["channel"], "on-call");
    assert_eq!(body["username"], "release-bot");
}

#[tokio::test]
async fn teams_gets_a_workflows_adaptive_card() {
    let body = sent_as("msteams").await.body;
    assert_eq!(body["type"], "message");
    let attachments = body["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachments[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    let body_elements = card["body"].as_array().expect("card body");
    assert_eq!(body_elements[0]["type"], "TextBlock");
    assert_eq!(body_elements[0]["color"], "Attention");
    assert_headline(text(&body_elements[1]["text"]));
    for element in body_elements {
        let kind = text(&element["type"]);
        assert!(["TextBlock", "FactSet"].contains(&kind), "{element}");
        if kind == "TextBlock" {
            assert!(element["text"].is_string(), "{element}");
        } else {
            for fact in element["facts"].as_array().expect("facts") {
                assert!(fact["title"].is_string() && fact["value"].is_string());
            }
        }
    }
    // Not the retired connector's MessageCard.
    assert!(body.get("@type").is_none(), "{body}");
}

#[tokio::test]
async fn discord_gets_embeds_within_its_limits() {
    let body = sent_as("discord").await.body;
    assert_headline(text(&body["content"]));
    assert!(text(&body["content"]).chars().count() <= 2000);
    assert_eq!(body["username"], "release-bot");
    let embeds = body["embeds"].as_array().expect("embeds");
    assert!(!embeds.is_empty() && embeds.len() <= 10);
    let embed = &embeds[0];
    assert_eq!(text(&embed["title"]), "podinfo.test rolled back");
    assert_headline(text(&embed["description"]));
    assert_eq!(embed["color"], 0xCF222E);
    let fields = embed["fields"].as_array().expect("fields");
    assert!(!fields.is_empty() && fields.len() <= 25);
    for field in fields {
        let (name, value) = (text(&field["name"]), text(&field["value"]));
        assert!(!name.is_empty() && name.chars().count() <= 256, "{field}");
        assert!(
            !value.is_empty() && value.chars().count() <= 1024,
            "{field}"
        );
    }
}

#[tokio::test]
async fn google_chat_gets_a_cards_v2_card() {
    let body = sent_as("gchat").await.body;
    assert_headline(text(&body["text"]));
    let cards = body["cardsV2"].as_array().expect("cardsV2");
    assert_eq!(cards.len(), 1);
    assert_eq!(cards[0]["cardId"], "sluice-test-podinfo");
    let card = &cards[0]["card"];
    assert_eq!(card["header"]["title"], "podinfo.test rolled back");
    let widgets = card["sections"][0]["widgets"].as_array().expect("widgets");
    assert_headline(text(&widgets[0]["textParagraph"]["text"]));
    for widget in &widgets[1..] {
        assert!(widget["decoratedText"]["text"].is_string(), "{widget}");
    }
    // Not the deprecated v1 `cards`.
    assert!(body.get("cards").is_none(), "{body}");
}

#[tokio::test]
async fn rocket_chat_gets_an_attachment() {
    let body = sent_as("rocket").await.body;
    assert_headline(text(&body["text"]));
    assert_eq!(body["channel"], "on-call");
    assert_eq!(body["alias"], "release-bot");
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["title"], "podinfo.test rolled back");
    assert_eq!(attachment["color"], "#CF222E");
    for field in attachment["fields"].as_array().expect("fields") {
        assert!(field["title"].is_string() && field["value"].is_string());
        assert!(field["short"].is_boolean());
    }
}

#[tokio::test]
async fn a_webhook_gets_flaggers_event_payload() {
    let body = sent_as("webhook").await.body;
    assert_eq!(body["name"], "podinfo");
    assert_eq!(body["namespace"], "test");
    assert_eq!(body["phase"], "Failed");
    assert_eq!(body["checksum"], "5f6d7c8b9a0e1234abcd");
    let metadata = &body["metadata"];
    assert_headline(text(&metadata["eventMessage"]));
    assert_eq!(metadata["eventType"], "Warning");
    assert_eq!(metadata["severity"], "error");
    assert_eq!(metadata["alert"], "rolled-back");
    let millis: i64 = text(&metadata["timestamp"]).parse().expect("milliseconds");
    assert!(millis > 1_700_000_000_000, "{millis}");
    // Flagger's metadata is a map of strings.
    for (key, value) in metadata.as_object().expect("metadata") {
        assert!(value.is_string(), "{key}: {value}");
    }
}

#[tokio::test]
async fn a_failing_receiver_is_tried_again_until_it_answers() {
    let (server, cluster, metrics) = fixture().await;
    provider(
        &cluster,
        "chat",
        json!({"type": "slack", "address": server.url("/flaky/chat")}),
    )
    .await;
    let chat = canary(json!([{"name": "chat", "providerRef": {"name": "chat"}}]));
    raise(&alerts(&cluster, &metrics, 16), &chat, &rolled_back()).await;
    // 500, 500, then 200: three tries, one alert.
    assert_eq!(
        server.paths(),
        ["/flaky/chat", "/flaky/chat", "/flaky/chat"]
    );
    let reasons: Vec<String> = events(&cluster).into_iter().map(|e| e.reason).collect();
    assert_eq!(reasons, ["AlertSent"]);

    // A receiver that never answers 2xx gets three tries and no more, then an AlertFailed.
    provider(
        &cluster,
        "down",
        json!({"type": "slack", "address": server.url("/fail/down")}),
    )
    .await;
    let down = canary(json!([{"name": "down", "providerRef": {"name": "down"}}]));
    raise(&alerts(&cluster, &metrics, 16), &down, &rolled_back()).await;
    let tries = server
        .paths()
        .into_iter()
        .filter(|p| p == "/fail/down")
        .count();
    assert_eq!(tries, 3);
    let last = events(&cluster).pop().expect("an Event");
    assert!(last.warning);
    assert_eq!(last.reason, "AlertFailed");
    assert!(
        last.message.starts_with("rolled-back alert to AlertProvider test/down failed: AlertProvider test/down (slack): answered HTTP 500"),
        "{}",
        last.message
    );
    assert!(
        last.message.ends_with("(after 3 attempts)"),
        "{}",
        last.message
    );
    let text = metrics.encode();
    assert!(
        text.contains(r#"sluice_alerts_total{provider="test/down",type="slack",event="rolled-back",outcome="failed"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn each_entry_gets_the_severities_it_asks_for() {
    let (server, cluster, metrics) = fixture().await;
    for severity in ["info", "warn", "error"] {
        let path = format!("/ok/{severity}");
        provider(
            &cluster,
            severity,
            json!({"type": "webhook", "address": server.url(&path)}),
        )
        .await;
    }
    // One entry without a severity: info, as in Flagger.
    let canary = canary(json!([
        {"name": "all", "severity": "info", "providerRef": {"name": "info"}},
        {"name": "default", "providerRef": {"name": "info", "namespace": "test"}},
        {"name": "warnings", "severity": "warn", "providerRef": {"name": "warn"}},
        {"name": "errors", "severity": "error", "providerRef": {"name": "error"}},
    ]));
    let alerts = alerts(&cluster, &metrics, 16);
    for alert in [
        event(AlertKind::Started, "new revision detected"),
        event(
            AlertKind::Waiting(HookType::ConfirmPromotion),
            "waiting for approval from confirm-promotion hook gate",
        ),
        event(AlertKind::Promoted, "promotion completed"),
        rolled_back(),
        event(AlertKind::Inconclusive, "inconclusive: no data"),
    ] {
        raise(&alerts, &canary, &alert).await;
    }
    let got = |path: &str| -> Vec<String> {
        server
            .seen()
            .into_iter()
            .filter(|s| s.path == path)
            .map(|s| text(&s.body["metadata"]["alert"]).to_string())
            .collect()
    };
    let everything = [
        "started",
        "started",
        "waiting",
        "waiting",
        "promoted",
        "promoted",
        "rolled-back",
        "rolled-back",
        "inconclusive",
        "inconclusive",
    ];
    assert_eq!(got("/ok/info"), everything);
    assert_eq!(got("/ok/warn"), ["waiting", "rolled-back", "inconclusive"]);
    assert_eq!(got("/ok/error"), ["rolled-back", "inconclusive"]);
}

#[tokio::test]
async fn a_full_queue_drops_the_alert_at_once_and_says_so() {
    let (server, cluster, metrics) = fixture().await;
    provider(
        &cluster,
        "slow",
        json!({"type": "slack", "address": server.url("/slow")}),
    )
    .await;
    let canary = canary(json!([{"name": "slow", "providerRef": {"name": "slow"}}]));
    let alerts = alerts(&cluster, &metrics, 1);
    let status = status();
    let alert = rolled_back();
    let started = Instant::now();
    // On this one-thread runtime the worker cannot take the first alert before the test
    // yields: the first fills the queue, the other two find it full. None of it waits for the
    // receiver, which takes longer than the timeout to answer.
    for _ in 0..3 {
        let notification = Notification {
            canary: &canary,
            happened: Happened::Alert(&alert),
            phase: Phase::Failed,
            status: &status,
            revision: "abc",
        };
        alerts.notify(notification).await;
    }
    let handed_over = started.elapsed();
    assert!(
        handed_over < SLOW / 10,
        "handing over waited {handed_over:?}"
    );
    tokio::time::timeout(BOUND, alerts.settled())
        .await
        .expect("settled");
    // The one alert that was queued had its three tries, each longer than the timeout.
    assert_eq!(server.paths(), ["/slow", "/slow", "/slow"]);
    let text = metrics.encode();
    assert!(
        text.contains(r#"sluice_alerts_total{provider="test/slow",type="unknown",event="rolled-back",outcome="failed"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"sluice_alerts_total{provider="test/slow",type="slack",event="rolled-back",outcome="failed"} 1"#),
        "{text}"
    );
    // The Events of the drops are written by tasks of their own; give them a moment.
    let deadline = Instant::now() + BOUND;
    loop {
        let dropped = events(&cluster)
            .into_iter()
            .filter(|e| {
                e.reason == "AlertFailed" && e.message.contains("dropped: the alert queue is full")
            })
            .count();
        if dropped == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", events(&cluster));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn a_secret_address_and_token_appear_in_no_log_event_or_metric() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("sluice_controller=trace")
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    // This test's runtime has one thread, so the worker's logs are captured too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let (server, cluster, metrics) = fixture().await;
    let secret_path = "/echo/T0SECRETPATH/B0SECRETPATH";
    let token = "xoxb-SECRETTOKEN";
    // A closed port: reqwest's connect error names the URL unless it is taken out.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_url = format!(
        "http://{}/services/T0SECRETCLOSED",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    for (name, address) in [
        ("echoing", server.url(secret_path)),
        ("closed", closed_url.clone()),
    ] {
        cluster
            .apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{name}-url"), "namespace": "test"},
                "stringData": {"address": address, "token": token}
            }))
            .await
            .expect("apply the Secret");
        // spec.address is wrong on purpose: the Secret's address wins, as in Flagger.
        provider(
            &cluster,
            name,
            json!({"type": "slack", "address": server.url("/ok/not-this-one"), "secretRef": {"name": format!("{name}-url")}}),
        )
        .await;
    }
    let canary = canary(json!([
        {"name": "echoing", "providerRef": {"name": "echoing"}},
        {"name": "closed", "providerRef": {"name": "closed"}},
    ]));
    raise(&alerts(&cluster, &metrics, 16), &canary, &rolled_back()).await;

    // The Secret's address and token were used ...
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|s| s.path == secret_path), "{seen:?}");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Bearer xoxb-SECRETTOKEN")
    );
    // ... and both failed, with reasons ...
    let failed: Vec<Event> = events(&cluster)
        .into_iter()
        .filter(|e| e.reason == "AlertFailed")
        .collect();
    assert_eq!(failed.len(), 2, "{:?}", events(&cluster));
    assert!(failed[0].message.contains("HTTP 500"), "{:?}", failed[0]);
    assert!(
        failed[0].message.contains("no such hook: [redacted]"),
        "{:?}",
        failed[0]
    );
    assert!(
        failed[1].message.contains("cannot connect"),
        "{:?}",
        failed[1]
    );
    let logs = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("UTF-8");
    assert!(logs.contains("alert failed"), "nothing captured: {logs}");
    // ... that name neither the address nor the token, nor do the logs or the metrics.
    let everything = format!("{:?}\n{logs}\n{}", events(&cluster), metrics.encode());
    for secret in ["SECRETPATH", "SECRETTOKEN", "SECRETCLOSED"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
}
