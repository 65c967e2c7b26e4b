//! Hostile and careless input, as issue 10 probed it: every case ends in a clear error with the
//! exit code the README promises, or in "no data", and never in a promotion on bad evidence.
//!
//! The Prometheus here is a fake one: a real HTTP server on 127.0.0.1 in a thread of this test,
//! answering what each case needs (an error status with a text body, broken JSON, impossible
//! numbers, or nothing at all). The real Prometheus cases are in tests/analyse.rs and
//! tests/templates.rs. docs/robustness.md lists each class with the test that shows it.

mod common;

#[path = "../fuzz/src/cases.rs"]
mod cases;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::sluice;
use proptest::prelude::*;
use sluice_controller::providers::lexer::{Quote, TokenKind, lex, lex_template, unquote};
use sluice_controller::providers::template::{Arm, RenderContext, RenderError, render};
use sluice_core::api::duration::GoDuration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------------------------------------
// Seed corpus of the fuzz targets (fuzz/), replayed through the same checks.

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(ROOT).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "too few seeds in {}", dir.display());
    files
}

#[test]
fn fuzz_seed_corpus_replays_clean() {
    for file in corpus("render") {
        cases::render_case(&std::fs::read(&file).unwrap());
    }
    for file in corpus("load") {
        let started = Instant::now();
        cases::load_case(&std::fs::read(&file).unwrap());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{} took {:?}",
            file.display(),
            started.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering: the property.

fn ctx(values: &[String]) -> RenderContext {
    RenderContext {
        namespace: "shop".into(),
        name: "checkout".into(),
        target: "checkout".into(),
        service: "checkout".into(),
        interval: GoDuration::from_secs(60),
        variables: values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("v{i}"), v.clone()))
            .collect(),
    }
}

/// Templates with a placeholder in every context the lexer knows, after the comment with an
/// apostrophe that fooled the old scanner.
const TEMPLATES: [&str; 6] = [
    "# the arm's failed requests\nsum(increase(x{status=~\"{{ variables.v0 }}\",job!='{{ variables.v1 }}'}[{{ variables.v2 }}]))",
    "x{a=`{{ variables.v0 }}`} # {{ variables.v1 }}\n/ {{ variables.v2 }}",
    "{{ variables.v0 }}_total{a=\"pre\\\"{{ variables.v1 }}\\\\\"} > {{ variables.v2 }}",
    "rate(y{b=\"{{ variables.v0 }}{{ variables.v1 }}\"}[5m:{{ variables.v2 }}]) # it's \"fine\"",
    "'{{ variables.v0 }}' # {{ variables.v1 }}'\nz{c=\"{{ variables.v2 }}\"}",
    "histogram_quantile(0.99, sum by (le) (rate(h{pod=~\"{{ target }}-{{ variables.v0 }}\"}[{{ interval }}]))) * {{ variables.v1 }} # {{ variables.v2 }}",
];

/// Values built from the characters that end strings, comments and tokens.
fn hostile_value() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("`".to_string()),
        Just("\\".to_string()),
        Just("\n".to_string()),
        Just("\r".to_string()),
        Just("#".to_string()),
        Just("}".to_string()),
        Just("]".to_string()),
        Just(")".to_string()),
        Just(" or vector(1) ".to_string()),
        Just("{{".to_string()),
        Just("\u{fffd}".to_string()),
        "[a-z0-9_:.]{1,4}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// For arbitrary values, a rendered query lexes to the template's token sequence with only
    /// the placeholders' tokens changed: every other token keeps its kind and its text, a
    /// string keeps its quote and reads back (unquoted as Prometheus does) as exactly the value,
    /// a comment stays one comment. Values in strings are never refused; elsewhere a value that
    /// cannot be placed is refused, never placed.
    #[test]
    fn rendered_queries_keep_the_template_structure(
        template in 0..TEMPLATES.len(),
        values in prop::collection::vec(hostile_value(), 3),
    ) {
        let template = TEMPLATES[template];
        let ctx = ctx(&values);
        let (tokens, holes) = lex_template(template).unwrap();
        match render("t", template, &ctx, Arm::Canary) {
            Ok(out) => {
                let after = lex(&out).unwrap();
                prop_assert_eq!(after.len(), tokens.len(), "{:?}", out);
                for (index, (before, now)) in tokens.iter().zip(&after).enumerate() {
                    let filled: Vec<_> = holes.iter().filter(|h| h.token == index).collect();
                    if filled.is_empty() {
                        prop_assert_eq!(before.kind, now.kind);
                        prop_assert_eq!(before.text(template), now.text(&out));
                        continue;
                    }
                    match before.kind {
                        TokenKind::Word => prop_assert!(matches!(
                            now.kind,
                            TokenKind::Identifier | TokenKind::Number | TokenKind::Duration
                        )),
                        kind => prop_assert_eq!(kind, now.kind),
                    }
                    // A string holding exactly one placeholder reads back as its value.
                    if let TokenKind::String(quote) = before.kind
                        && quote != Quote::Backtick
                        && filled.len() == 1
                        && before.end - before.start == filled[0].end - filled[0].start + 2
                    {
                        let value = ctx.lookup(&filled[0].variable, Arm::Canary).unwrap();
                        prop_assert_eq!(unquote(now.text(&out)), Some(value));
                    }
                }
            }
            Err(e) => {
                // Only contexts that cannot hold every value may refuse one.
                let refusable = matches!(
                    e,
                    RenderError::UnsafeBareValue { .. }
                        | RenderError::BacktickInRawString { .. }
                        | RenderError::LineBreakInComment { .. }
                        | RenderError::StructureChanged { .. }
                );
                prop_assert!(refusable, "{e}");
                let only_strings = holes.iter().all(|h| {
                    matches!(tokens[h.token].kind, TokenKind::String(Quote::Double | Quote::Single))
                });
                prop_assert!(!only_strings, "a value in a string was refused: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A fake Prometheus: a real HTTP/1.1 server on 127.0.0.1 (keep-alive, so client reuse shows in
// the count of connections).

#[derive(Clone)]
enum Answer {
    /// Status, content type, body.
    Reply(u16, &'static str, String),
    /// Accept the request and never answer.
    Hang,
}

struct FakePrometheus {
    url: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakePrometheus {
    /// `answer(query)` is called with each request's decoded PromQL (or the path, for other
    /// requests).
    fn start(answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let answer = Arc::new(answer);
        let thread = {
            let (connections, requests, stop) =
                (connections.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut workers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::SeqCst);
                            let (answer, requests, stop) =
                                (answer.clone(), requests.clone(), stop.clone());
                            workers.push(std::thread::spawn(move || {
                                serve_connection(stream, &*answer, &requests, &stop)
                            }));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                for worker in workers {
                    let _ = worker.join();
                }
            })
        };
        Self {
            url,
            connections,
            requests,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    answer: &(dyn Fn(&str) -> Answer + Send + Sync),
    requests: &AtomicUsize,
    stop: &AtomicBool,
) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while !stop.load(Ordering::SeqCst) {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => continue,
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).is_err() || header == "\r\n" || header.is_empty() {
                break;
            }
            if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        requests.fetch_add(1, Ordering::SeqCst);
        let target = request_line.split(' ').nth(1).unwrap_or("/").to_string();
        let form = match target.split_once('?') {
            Some((_, query)) => query.to_string(),
            None => String::from_utf8_lossy(&body).into_owned(),
        };
        let promql = form
            .split('&')
            .find_map(|pair| pair.strip_prefix("query="))
            .map(decode)
            .unwrap_or(target);
        match answer(&promql) {
            Answer::Reply(status, content_type, body) => {
                let _ = write!(
                    writer,
                    "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
            Answer::Hang => {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
        }
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json(status: u16, body: &str) -> Answer {
    Answer::Reply(status, "application/json", body.to_string())
}

/// An instant vector of `(labels, value)`; values as Prometheus writes them ("+Inf", "NaN").
fn vector(series: &[(&str, &str)]) -> Answer {
    let result: Vec<String> = series
        .iter()
        .map(|(labels, value)| {
            format!(r#"{{"metric":{{{labels}}},"value":[1700000000,"{value}"]}}"#)
        })
        .collect();
    json(
        200,
        &format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            result.join(",")
        ),
    )
}

fn value(v: &str) -> Answer {
    vector(&[("", v)])
}

// ---------------------------------------------------------------------------------------------
// Running `sluice analyse` against it.

const START: i64 = 1_700_000_000;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// A folder with a Canary (`analysis` is the YAML under `spec.analysis`, indented 4) and the
/// templates `errors`, `requests`, `buckets`, `value` pointing at `url`.
fn setup(url: &str, analysis: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let canary = format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Canary\nmetadata: {{name: app, namespace: test}}\nspec:\n  targetRef: {{kind: Deployment, name: app}}\n  analysis:\n    interval: 1m\n    stepWeight: 10\n    maxWeight: 50\n{analysis}"
    );
    std::fs::write(dir.path().join("canary.yaml"), canary).unwrap();
    let mut templates = String::new();
    for (name, query) in [
        ("errors", "errors{arm=\"{{ arm }}\"}"),
        ("requests", "requests{arm=\"{{ arm }}\"}"),
        ("buckets", "buckets{arm=\"{{ arm }}\"}"),
        ("value", "value{metric=\"{{ variables.id }}\"}"),
    ] {
        templates.push_str(&format!(
            "---\napiVersion: sluice.dev/v1alpha1\nkind: MetricTemplate\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  provider: {{type: prometheus, address: '{url}'}}\n  query: '{}'\n",
            query.replace('\'', "''")
        ));
    }
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("templates/all.yaml"), templates).unwrap();
    dir
}

fn analyse(dir: &Path, intervals: i64, extra: &[&str]) -> Run {
    let started = Instant::now();
    let output = sluice()
        .arg("analyse")
        .arg("--canary")
        .arg(dir.join("canary.yaml"))
        .arg("--templates")
        .arg(dir.join("templates"))
        .args(["--start", &START.to_string()])
        .args(["--end", &(START + 60 * intervals).to_string()])
        .args(extra)
        .output()
        .expect("run sluice");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}

const ERROR_RATE: &str = "    metrics:\n      - name: errors\n        templateRef: {name: errors}\n        comparison: {type: errorRate, requestsTemplateRef: {name: requests}}\n";
const LATENCY: &str = "    metrics:\n      - name: latency\n        templateRef: {name: buckets}\n        comparison: {type: latency}\n";
const GUARDRAIL: &str = "    metrics:\n      - name: guard\n        templateRef: {name: value}\n        templateVariables: {id: a}\n        thresholdRange: {min: 1, max: 100}\n";

/// Each impossible observation holds the release as no data (exit 2, never 0), and the message
/// names the problem, the value and the queries.
#[test]
fn impossible_observations_hold_the_release_and_name_the_value() {
    struct Case {
        metric: &'static str,
        canary: Answer,
        primary: Answer,
        expect: &'static str,
    }
    let buckets = |b: &[(&'static str, &'static str)]| {
        let labels: Vec<(String, &str)> = b
            .iter()
            .map(|(le, v)| (format!(r#""le":"{le}""#), *v))
            .collect();
        let refs: Vec<(&str, &str)> = labels.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        vector(&refs)
    };
    let healthy = || buckets(&[("0.1", "900"), ("0.5", "990"), ("+Inf", "1000")]);
    let cases = vec![
        // (canary errors, canary requests) in the answer pair below: errors first.
        Case {
            metric: ERROR_RATE,
            canary: value("-5"),
            primary: value("1"),
            expect: "canary's failed-request count is -5",
        },
        Case {
            metric: ERROR_RATE,
            canary: value("120"),
            primary: value("1"),
            expect: "failed requests (120) exceed its requests (100)",
        },
        Case {
            metric: ERROR_RATE,
            canary: value("1e19"),
            primary: value("1"),
            expect: "above 1e12",
        },
        Case {
            metric: ERROR_RATE,
            canary: value("+Inf"),
            primary: value("1"),
            expect: "canary's failed-request count is inf",
        },
        Case {
            metric: ERROR_RATE,
            canary: value("1"),
            primary: value("100"),
            expect: "every request of the primary failed",
        },
        Case {
            metric: LATENCY,
            canary: buckets(&[("0.1", "50"), ("0.5", "20"), ("+Inf", "60")]),
            primary: healthy(),
            expect: "bucket le=0.5 counts 20, fewer than le=0.1 with 50",
        },
        Case {
            metric: LATENCY,
            canary: buckets(&[("0.1", "5"), ("+Inf", "-1")]),
            primary: healthy(),
            expect: "canary's bucket le=inf is -1",
        },
        Case {
            metric: GUARDRAIL,
            canary: value("+Inf"),
            primary: value("0"),
            expect: "the value is inf",
        },
        Case {
            metric: GUARDRAIL,
            canary: value("-Inf"),
            primary: value("0"),
            expect: "the value is -inf",
        },
    ];
    for case in cases {
        let (canary, primary) = (case.canary.clone(), case.primary.clone());
        let server = FakePrometheus::start(move |query| {
            let arm_is = |arm: &str| query.contains(&format!("arm=\"{arm}\""));
            if query.starts_with("requests") {
                value("100")
            } else if query.starts_with("value") || arm_is("canary") {
                canary.clone()
            } else {
                primary.clone()
            }
        });
        let dir = setup(&server.url, case.metric);
        let run = analyse(dir.path(), 3, &[]);
        let all = format!("{}\n{}", run.stdout, run.stderr);
        assert_eq!(run.code, 2, "{}: {all}", case.expect);
        assert!(all.contains("impossible observation"), "{all}");
        assert!(all.contains(case.expect), "{}: {all}", case.expect);
        assert!(
            all.contains("arm=\\\"canary\\\"")
                || all.contains("arm=\"canary\"")
                || all.contains("value{metric="),
            "the query is named: {all}"
        );
    }
}

/// An error status with a text body, a 2xx answer that is not JSON and broken JSON are
/// answers: Prometheus (or what stands at its address) was reached and refused, exit 70.
#[test]
fn refusals_exit_70_and_say_what_answered() {
    let cases = [
        (
            Answer::Reply(401, "text/plain", "Unauthorized".into()),
            "HTTP 401",
        ),
        (
            Answer::Reply(429, "text/plain", "slow down".into()),
            "HTTP 429",
        ),
        (
            Answer::Reply(503, "text/plain", "upstream down".into()),
            "HTTP 503",
        ),
        (
            Answer::Reply(500, "text/html", "<html><body>oops</body></html>".into()),
            "HTTP 500",
        ),
        (json(200, "{\"status\":\"success\",\"data\":"), "JSON"),
        (
            Answer::Reply(200, "text/html", "<html>login</html>".into()),
            "not JSON",
        ),
    ];
    for (answer, expect) in cases {
        let server = FakePrometheus::start(move |_| answer.clone());
        let dir = setup(&server.url, GUARDRAIL);
        let run = analyse(dir.path(), 2, &[]);
        assert_eq!(run.code, 70, "{expect}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(expect), "{expect}: {}", run.stderr);
        assert!(run.stderr.contains(&server.url), "{}", run.stderr);
        assert!(!run.stderr.contains("<html"), "{}", run.stderr);
    }
}

/// A Prometheus that accepts and never answers: the first timeout decides the interval (exit
/// 69), the other metrics' queries are not sent, so it takes one timeout, not one per metric.
#[test]
fn an_unresponsive_prometheus_costs_one_timeout() {
    let server = FakePrometheus::start(|_| Answer::Hang);
    let mut metrics = String::from("    metrics:\n");
    for i in 0..8 {
        metrics.push_str(&format!(
            "      - name: guard{i}\n        templateRef: {{name: value}}\n        templateVariables: {{id: m{i}}}\n        thresholdRange: {{min: 1}}\n"
        ));
    }
    let dir = setup(&server.url, &metrics);
    let run = analyse(dir.path(), 3, &["--query-timeout", "1"]);
    assert_eq!(run.code, 69, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("did not answer within 1 s"),
        "{}",
        run.stderr
    );
    // Eight metrics at one second each would take eight seconds.
    assert!(run.took < Duration::from_secs(4), "took {:?}", run.took);
    println!(
        "8 metrics, unresponsive Prometheus, --query-timeout 1: exit 69 after {:?}",
        run.took
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

/// Hundreds of metrics share one HTTP client, so one kept-alive connection serves them all.
#[test]
fn one_http_client_serves_every_query() {
    let server = FakePrometheus::start(|_| value("50"));
    let mut metrics = String::from("    metrics:\n");
    for i in 0..300 {
        metrics.push_str(&format!(
            "      - name: guard{i}\n        templateRef: {{name: value}}\n        templateVariables: {{id: m{i}}}\n        thresholdRange: {{min: 1}}\n"
        ));
    }
    let dir = setup(&server.url, &metrics);
    let run = analyse(dir.path(), 2, &[]);
    assert!(matches!(run.code, 0 | 2), "{}\n{}", run.stdout, run.stderr);
    let requests = server.requests.load(Ordering::SeqCst);
    let connections = server.connections.load(Ordering::SeqCst);
    assert!(requests >= 300, "{requests} requests");
    assert!(
        connections <= 2,
        "{connections} connections for {requests} requests"
    );
}

#[test]
fn the_controller_keeps_its_http_clients_across_checks() {
    use sluice_controller::cluster::Cluster;
    use sluice_controller::observer::{Observer, PrometheusObserver};
    use sluice_core::rollout::MetricsWindow;

    let _ = rustls::crypto::ring::default_provider().install_default();
    // 50 requests and 1 error per arm, whatever the window.
    let server =
        FakePrometheus::start(|query| value(if query.contains("errors") { "1" } else { "50" }));
    let cluster = Arc::new(sluice_controller::cluster::memory::MemoryCluster::new());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for name in ["errors", "requests"] {
        let template = serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": "test"},
            "spec": {"provider": {"type": "prometheus", "address": server.url},
                     "query": format!("sum(increase({name}[{{{{ interval }}}}]))")}
        });
        runtime.block_on(cluster.apply(template)).unwrap();
    }
    let canary: sluice_core::api::Canary = serde_yaml_ng::from_str(
        "{apiVersion: sluice.dev/v1alpha1, kind: Canary, metadata: {name: app, namespace: test}, spec: {targetRef: {kind: Deployment, name: app}, analysis: {interval: 1m, stepWeight: 10, maxWeight: 50, metrics: [{name: errors, templateRef: {name: errors}, comparison: {type: errorRate, requestsTemplateRef: {name: requests}}}]}}}",
    )
    .unwrap();
    let observer = PrometheusObserver::new(cluster, None, Duration::from_secs(5));
    // Twenty checks, four queries each, through one client.
    for check in 1..=20u64 {
        let window = MetricsWindow {
            comparison_seconds: 15 * check,
            guardrails: check % 4 == 0,
        };
        let observed = runtime.block_on(observer.observe(&canary, 1_800_000_000, window));
        assert!(observed[0].result.is_ok(), "{observed:?}");
    }
    let requests = server.requests.load(Ordering::SeqCst);
    let connections = server.connections.load(Ordering::SeqCst);
    assert_eq!(requests, 80);
    assert!(
        connections <= 2,
        "{connections} connections for {requests} requests"
    );
}

// ---------------------------------------------------------------------------------------------
// Command line and input bounds.

fn sluice_output(args: &[&str]) -> Run {
    let started = Instant::now();
    let output = sluice().args(args).output().expect("run sluice");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}

#[test]
fn command_line_mistakes_exit_64_naming_the_flag() {
    let canary = format!("{ROOT}/examples/canary.yaml");
    let templates = format!("{ROOT}/metrics-templates/app.yaml");
    let base = ["analyse", "--canary", &canary, "--templates", &templates];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        sluice_output(&args)
    };
    let bad_url = run(&["--prometheus", "not a url", "--start", "1700000000"]);
    assert_eq!(bad_url.code, 64, "{}", bad_url.stderr);
    assert!(
        bad_url.stderr.contains("--prometheus"),
        "{}",
        bad_url.stderr
    );
    let ftp = run(&["--prometheus", "ftp://x", "--start", "1700000000"]);
    assert_eq!(ftp.code, 64, "{}", ftp.stderr);
    for start in ["9223372036854775000", "-5", "99999-01-01T00:00:00Z"] {
        let far = run(&["--prometheus", "http://127.0.0.1:9", "--start", start]);
        assert_eq!(far.code, 64, "{start}: {}", far.stderr);
        assert!(far.stderr.contains("--start"), "{}", far.stderr);
        assert!(
            far.took < Duration::from_secs(5),
            "{start} took {:?}",
            far.took
        );
    }
    let zero = run(&[
        "--prometheus",
        "http://127.0.0.1:9",
        "--start",
        "1700000000",
        "--query-timeout",
        "0",
    ]);
    assert_eq!(zero.code, 64, "{}", zero.stderr);
    // The simulator scrapes every 15 s: other check intervals would not be what they claim.
    let odd = sluice_output(&["bench", "--seeds", "1", "--check-interval", "20"]);
    assert_eq!(odd.code, 64, "{}", odd.stderr);
    assert!(odd.stderr.contains("--check-interval 20"), "{}", odd.stderr);
}

#[test]
fn endless_and_deep_files_are_refused_fast() {
    let templates = format!("{ROOT}/metrics-templates/app.yaml");
    let analyse_canary = |canary: &Path| {
        sluice_output(&[
            "analyse",
            "--prometheus",
            "http://127.0.0.1:9",
            "--canary",
            canary.to_str().unwrap(),
            "--templates",
            &templates,
            "--start",
            "1700000000",
        ])
    };
    let zero = analyse_canary(Path::new("/dev/zero"));
    assert_eq!(zero.code, 65, "{}", zero.stderr);
    assert!(
        zero.stderr.contains("larger than 2097152 bytes"),
        "{}",
        zero.stderr
    );
    assert!(
        zero.took < Duration::from_secs(5),
        "/dev/zero took {:?}",
        zero.took
    );

    let dir = tempfile::tempdir().unwrap();
    let shapes = [
        (
            "flow",
            format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        (
            "block",
            (0..600).map(|i| format!("{}k:\n", " ".repeat(i))).collect(),
        ),
        ("dashes", format!("{}x\n", "- ".repeat(100_000))),
        ("mixed", format!("a: it's\nb: {}\n", "{a: ".repeat(50_000))),
    ];
    for (name, text) in shapes {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, &text).unwrap();
        let run = analyse_canary(&path);
        assert_eq!(run.code, 65, "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains("nests collections more than 64 deep"),
            "{name}: {}",
            run.stderr
        );
        assert!(
            run.took < Duration::from_secs(2),
            "{name} ({} KB) took {:?}",
            text.len() / 1000,
            run.took
        );
        println!("{name}: {} KB refused in {:?}", text.len() / 1000, run.took);
    }

    let big = dir.path().join("big.yaml");
    let list: String = (0..400_000).map(|i| format!("- {i}\n")).collect();
    std::fs::write(&big, format!("kind: Canary\nitems:\n{list}")).unwrap();
    let run = analyse_canary(&big);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("larger than"), "{}", run.stderr);
    println!(
        "a {} MB list refused in {:?}",
        list.len() / 1_000_000,
        run.took
    );
}

#[test]
fn a_template_name_loaded_twice_is_refused() {
    let server = FakePrometheus::start(|_| value("50"));
    let dir = setup(&server.url, GUARDRAIL);
    let again = std::fs::read_to_string(dir.path().join("templates/all.yaml")).unwrap();
    std::fs::write(dir.path().join("templates/copy.yaml"), again).unwrap();
    let run = analyse(dir.path(), 2, &[]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("\"value\" in namespace \"test\" is loaded 2 times"),
        "{}",
        run.stderr
    );
}

/// `sluice controller` pointed at a web server that answers HTML: a short error, no page, and
/// no colour codes in a log that is not a terminal.
#[test]
fn the_controller_against_a_web_server_says_so_without_the_page_or_colours() {
    let page = format!(
        "<!DOCTYPE html><html><body>{}</body></html>",
        "welcome ".repeat(200)
    );
    let server = FakePrometheus::start(move |_| Answer::Reply(200, "text/html", page.clone()));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: '{}'}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n",
            server.url
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = sluice()
        .args([
            "controller",
            "--metrics-address",
            "127.0.0.1:0",
            "--leader-election",
            "false",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("SLUICE_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sluice controller");
    // It must give up by itself; if it does not, it is stopped by its PID.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("still running after 30 s: {stderr}"));
    assert_ne!(status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a non-terminal log: {stderr:?}"
    );
    assert!(
        !stderr.contains("<html") && !stderr.contains("welcome welcome"),
        "{stderr}"
    );
    assert!(stderr.contains("HTML page"), "{stderr}");
}
