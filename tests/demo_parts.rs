//! The parts of `sluice demo` with real sockets on 127.0.0.1: two demo apps (a healthy v1 and a
//! v2 that fails 20% of requests and is twice as slow), the local weighted router in front of
//! them, the load generator, and `sluice demo-app` as a process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_controller::router::Router;
use sluice_core::api::Canary;
use sluice_core::rollout::Routes;
use sluice_demo::app::{self, AppConfig, DURATION_BUCKETS};
use sluice_demo::load;
use sluice_demo::proxy::{INSIDER_HEADER, INSIDER_VALUE, LocalRouter};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

/// Latencies small enough that hundreds of requests take a fraction of a second, large enough
/// that v2's doubling shows over the scheduling noise.
const MEDIAN_MS: f64 = 5.0;

fn v1() -> AppConfig {
    AppConfig {
        version: "v1".into(),
        error_rate: 0.0,
        latency_median_ms: MEDIAN_MS,
        latency_sigma: 0.5,
        latency_factor: 1.0,
    }
}

fn v2() -> AppConfig {
    AppConfig {
        version: "v2".into(),
        error_rate: 0.2,
        latency_factor: 2.0,
        ..v1()
    }
}

fn canary() -> Canary {
    serde_yaml_ng::from_str(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: Canary
metadata:
  name: demo
  namespace: demo
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: demo
  service:
    port: 8080
  analysis:
    interval: 10s
    match:
      - headers:
          x-canary:
            exact: insider
"#,
    )
    .expect("the demo Canary parses")
}

/// One in-process app; the runtime's end stops it.
struct RunningApp {
    address: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start_app(config: AppConfig) -> RunningApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind an app");
    let address = listener.local_addr().expect("app address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app::serve(config, listener, async {
        let _ = stopped.await;
    }));
    RunningApp {
        address,
        _stop: stop,
    }
}

struct Fixture {
    primary: RunningApp,
    canary: RunningApp,
    router: LocalRouter,
    client: reqwest::Client,
}

impl Fixture {
    async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let primary = start_app(v1()).await;
        let canary = start_app(v2()).await;
        let router = LocalRouter::start(
            "127.0.0.1:0".parse().unwrap(),
            primary.address,
            canary.address,
        )
        .await
        .expect("the local router starts");
        // A proxy from the environment must not stand between the test and 127.0.0.1.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        Self {
            primary,
            canary,
            router,
            client,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.router.address())
    }

    /// Sends `n` requests through the router, 32 at a time; returns (status, version) of each.
    async fn send(&self, n: usize, insider: bool) -> Vec<(u16, String)> {
        let slots = Arc::new(Semaphore::new(32));
        let mut tasks = JoinSet::new();
        for _ in 0..n {
            let slot = slots.clone().acquire_owned().await.unwrap();
            let mut request = self.client.get(self.url());
            if insider {
                request = request.header(INSIDER_HEADER, INSIDER_VALUE);
            }
            tasks.spawn(async move {
                let response = request.send().await.expect("an answer through the router");
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.expect("a JSON body");
                drop(slot);
                (status, body["version"].as_str().unwrap_or("?").to_string())
            });
        }
        tasks.join_all().await
    }

    async fn scrape(&self, address: SocketAddr) -> (String, String) {
        let response = self
            .client
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        (content_type, response.text().await.unwrap())
    }
}

fn versions(answers: &[(u16, String)]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (_, version) in answers {
        *out.entry(version.clone()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn router_splits_by_weight_and_by_header() {
    let f = Fixture::start().await;
    let canary = canary();
    assert_eq!(
        f.router.get_routes(&canary).await.unwrap(),
        Routes::all_primary()
    );
    f.router.reconcile(&canary).await.unwrap();

    let answers = f.send(40, false).await;
    assert_eq!(versions(&answers), BTreeMap::from([("v1".into(), 40)]));
    assert!(answers.iter().all(|(status, _)| *status == 200));

    f.router
        .set_routes(&canary, Routes::canary_weight(50))
        .await
        .unwrap();
    assert_eq!(
        f.router.get_routes(&canary).await.unwrap(),
        Routes::canary_weight(50)
    );
    let answers = f.send(400, false).await;
    let by_version = versions(&answers);
    let (v1, v2) = (by_version["v1"], by_version["v2"]);
    assert_eq!(v1 + v2, 400);
    // Binomial(400, 0.5): mean 200, standard deviation 10; five deviations either side fail
    // about once in two million runs.
    assert!((150..=250).contains(&v2), "v1 {v1}, v2 {v2}");
    // v2 fails a fifth of its requests; the router passes its 500s through untouched.
    assert!(
        answers
            .iter()
            .any(|(status, version)| *status == 500 && version == "v2")
    );
    assert!(
        answers
            .iter()
            .all(|(status, version)| version == "v2" || *status == 200)
    );

    f.router
        .set_routes(&canary, Routes::canary_weight(100))
        .await
        .unwrap();
    let answers = f.send(40, false).await;
    assert_eq!(versions(&answers), BTreeMap::from([("v2".into(), 40)]));

    let ab = Routes {
        canary_match: true,
        mirror: false,
        ..Routes::all_primary()
    };
    f.router.set_routes(&canary, ab).await.unwrap();
    let insiders = f.send(30, true).await;
    assert_eq!(versions(&insiders), BTreeMap::from([("v2".into(), 30)]));
    let others = f.send(30, false).await;
    assert_eq!(versions(&others), BTreeMap::from([("v1".into(), 30)]));

    // The router's own counts agree with who answered.
    assert_eq!(
        f.router.counts(),
        (40 + v1 as u64 + 30, v2 as u64 + 40 + 30)
    );
    // A restarted deployment can come back on another address.
    f.router.set(Routes::all_primary()).unwrap();
    f.router.set_backends(f.canary.address, f.primary.address);
    let answers = f.send(10, false).await;
    assert_eq!(versions(&answers), BTreeMap::from([("v2".into(), 10)]));

    let url = f.url();
    f.router.shutdown().await;
    assert!(
        f.client.get(url).send().await.is_err(),
        "the router still answers"
    );
}

/// One sample line of the text exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value: f64 = value.parse().expect("a number");
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("closing brace");
                    let labels = inner
                        .split(',')
                        .map(|pair| {
                            let (key, quoted) = pair.split_once('=').expect("label=value");
                            (key.to_string(), quoted.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            (name, labels, value)
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
    samples
        .iter()
        .find(|(n, labels, _)| {
            n == name && label.is_none_or(|(k, v)| labels.get(k).map(String::as_str) == Some(v))
        })
        .map(|(_, _, value)| *value)
        .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
}

/// Checks one app's exposition against the requests it served; returns (5xx count, mean latency).
fn check_exposition(text: &str, served: u64) -> (f64, f64) {
    assert!(text.contains("# TYPE http_requests counter"), "{text}");
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
    assert!(text.ends_with("# EOF\n"));
    let samples = samples(text);
    // No namespace or pod labels: Prometheus attaches those as target labels.
    assert!(
        samples
            .iter()
            .all(|(_, labels, _)| !labels.contains_key("pod") && !labels.contains_key("namespace"))
    );
    let ok = value(&samples, "http_requests_total", Some(("status", "200")));
    let failed = value(&samples, "http_requests_total", Some(("status", "500")));
    assert_eq!(ok + failed, served as f64);

    let buckets: Vec<(String, f64)> = samples
        .iter()
        .filter(|(n, _, _)| n == "http_request_duration_seconds_bucket")
        .map(|(_, labels, value)| (labels["le"].clone(), *value))
        .collect();
    let bounds: Vec<f64> = buckets
        .iter()
        .map(|(le, _)| match le.as_str() {
            "+Inf" => f64::INFINITY,
            le => le.parse().expect("a bucket bound"),
        })
        .collect();
    let mut expected = DURATION_BUCKETS.to_vec();
    expected.push(f64::INFINITY);
    assert_eq!(bounds, expected);
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "cumulative: {buckets:?}"
    );
    let count = value(&samples, "http_request_duration_seconds_count", None);
    let sum = value(&samples, "http_request_duration_seconds_sum", None);
    assert_eq!(buckets.last().unwrap().1, count);
    assert_eq!(count, served as f64);
    (failed, sum / count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_expose_counter_and_histogram() {
    let f = Fixture::start().await;
    f.router.set(Routes::canary_weight(50)).unwrap();
    f.send(300, false).await;
    // Scrapes and health checks are not application traffic and must not count.
    let health = f
        .client
        .get(format!("http://{}/healthz", f.primary.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let (to_primary, to_canary) = f.router.counts();
    assert_eq!(to_primary + to_canary, 300);

    let (content_type, primary_text) = f.scrape(f.primary.address).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let (primary_errors, primary_mean) = check_exposition(&primary_text, to_primary);
    let (_, canary_text) = f.scrape(f.canary.address).await;
    let (canary_errors, canary_mean) = check_exposition(&canary_text, to_canary);

    assert_eq!(primary_errors, 0.0);
    // Binomial(~150, 0.2): a share of 0.2 give or take 0.033; both bounds are beyond five of those.
    let share = canary_errors / to_canary as f64;
    assert!((0.03..0.4).contains(&share), "canary error share {share}");
    // v2 is twice as slow (medians 5 ms and 10 ms).
    assert!(
        canary_mean > 1.3 * primary_mean,
        "mean latency: primary {primary_mean}, canary {canary_mean}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_generator_keeps_its_rate_and_ends() {
    let f = Fixture::start().await;
    let started = Instant::now();
    let report = load::run_load(
        f.router.address(),
        100.0,
        Duration::from_secs(2),
        std::future::pending(),
    )
    .await;
    let wall = started.elapsed();
    assert!((170..=230).contains(&report.sent), "{report:?}");
    assert_eq!(report.skipped, 0, "{report:?}");
    assert_eq!(report.ok, report.sent, "{report:?}");
    assert!(wall < Duration::from_secs(3), "took {wall:?}");
    assert_eq!(f.router.counts(), (report.sent, 0));

    // A stop ends the run early; what is in flight still gets its answer.
    let started = Instant::now();
    let report = load::run_load(
        f.router.address(),
        100.0,
        Duration::from_secs(30),
        tokio::time::sleep(Duration::from_millis(300)),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2), "{report:?}");
    assert!((20..=40).contains(&report.sent), "{report:?}");
    assert_eq!(report.ok, report.sent, "{report:?}");

    // Nothing listening: every request fails, none hangs.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let report = load::run_load(
        closed,
        50.0,
        Duration::from_millis(200),
        std::future::pending(),
    )
    .await;
    assert_eq!(report.failed, report.sent, "{report:?}");
    assert!(report.sent >= 8, "{report:?}");
}

/// Kills the process when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_app_runs_as_a_process() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "demo-app",
                "--listen",
                "127.0.0.1:0",
                "--version",
                "v3",
                "--error-rate",
                "0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice demo-app"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = line_tx.send(line);
    });
    let line = line_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the address within 10 s");
    let address: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line {line:?}"))
        .parse()
        .unwrap();
    assert!(address.ip().is_loopback());
    assert_ne!(address.port(), 0);

    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let health = client
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let answer: serde_json::Value = client
        .get(format!("http://{address}/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer, serde_json::json!({"version": "v3"}));

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(
        client
            .get(format!("http://{address}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[test]
fn demo_app_refuses_bad_settings() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo-app", "--error-rate", "1.5"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error-rate"), "{stderr}");
}
