//! Webhooks through `sluice_controller::hooks::Hooks`, against a small HTTP server on 127.0.0.1 that records
//! what it receives.

use std::collections::HashMap;
use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_controller::hooks::Hooks;
use sluice_core::api::{Canary, HookType, Phase};
use sluice_core::rollout::HookOutcome;
use tokio::net::{TcpListener, TcpStream};

const FAIL_BODY: &str = "deliberate failure from the test server";
/// Longer than any webhook timeout used here, shorter than the test's own bound.
const SLOW: Duration = Duration::from_millis(1500);
/// No test may take longer than this, whatever the code under test does.
const BOUND: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    content_type: Option<String>,
    body: Value,
}

/// Answers by the first path segment: `/ok` 200, `/fail` 500 with a body, `/big` 503 with a
/// long body, `/flaky` 500 twice then 200 (counted per full path), `/slow` after `SLOW`.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let flaky: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, record.clone(), flaky.clone()));
            }
        });
        Self { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn paths(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.path).collect()
    }
}

async fn serve(
    stream: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    flaky: Arc<Mutex<HashMap<String, u32>>>,
) {
    let Some((head, body)) = read_request(&stream).await else {
        return;
    };
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let content_type = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-type")
            .then(|| value.trim().to_string())
    });
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().expect("lock").push(Seen {
        method,
        path: path.clone(),
        content_type,
        body,
    });

    let segment = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let (status, text) = match segment {
        "ok" => ("200 OK", String::new()),
        "fail" => ("500 Internal Server Error", FAIL_BODY.to_string()),
        "big" => ("503 Service Unavailable", "x".repeat(5000)),
        "flaky" => {
            let calls = {
                let mut counts = flaky.lock().expect("lock");
                let count = counts.entry(path.clone()).or_default();
                *count += 1;
                *count
            };
            if calls <= 2 {
                ("500 Internal Server Error", format!("not yet ({calls})"))
            } else {
                ("200 OK", String::new())
            }
        }
        "slow" => {
            tokio::time::sleep(SLOW).await;
            ("200 OK", String::new())
        }
        _ => ("404 Not Found", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    // The client may have given up (timeouts): a failed write is expected then.
    let _ = write_all(&stream, response.as_bytes()).await;
}

/// The head (as text) and the body of one HTTP/1.1 request with a Content-Length.
async fn read_request(stream: &TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if read_some(stream, &mut buf).await? == 0 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        if read_some(stream, &mut buf).await? == 0 {
            return None;
        }
    }
    Some((head, buf[head_end..head_end + length].to_vec()))
}

// tokio is built without io-util here, so read and write through readiness.
async fn read_some(stream: &TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        stream.readable().await.ok()?;
        match stream.try_read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Some(n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

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
