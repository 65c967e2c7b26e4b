//! `sluice analyse` as a process, against a real Prometheus with backfilled releases.

mod common;

use common::release::{ReleaseSpec, app_metrics, recent_start, simulate};
use common::{Prometheus, sluice};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn analyse(prometheus: &str, start: i64, end: i64, extra: &[&str]) -> Run {
    let output = sluice()
        .args(["analyse", "--prometheus", prometheus])
        .args(["--canary", &format!("{ROOT}/examples/canary.yaml")])
        .args(["--templates", &format!("{ROOT}/metrics-templates/app.yaml")])
        .args(["--start", &start.to_string(), "--end", &end.to_string()])
        .args(extra)
        .output()
        .expect("run sluice");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

/// Three releases in one Prometheus, in namespaces of their own, an hour apart.
struct Releases {
    prometheus: Prometheus,
    healthy: i64,
    errors: i64,
    slow: i64,
    clean: i64,
}

fn releases() -> Releases {
    let healthy = recent_start(5);
    let errors = healthy + 3600;
    let slow = healthy + 7200;
    let clean = healthy + 10800;
    let mut text = String::new();
    let specs = [
        ReleaseSpec::healthy(1, healthy),
        ReleaseSpec {
            canary_errors: 0.051,
            ..ReleaseSpec::healthy(2, errors)
        },
        ReleaseSpec {
            canary_latency_factor: 2.0,
            ..ReleaseSpec::healthy(3, slow)
        },
        // S15: no errors at all in either arm, 80 requests/s.
        ReleaseSpec {
            requests_per_second: 80.0,
            primary_errors: 0.0,
            canary_errors: 0.0,
            ..ReleaseSpec::healthy(4, clean)
        },
    ];
    for spec in &specs {
        let pods = simulate(spec, "podinfo");
        let om = app_metrics(spec, &pods, "test");
        text.push_str(om.trim_end_matches("# EOF\n"));
    }
    text.push_str("# EOF\n");
    let text = merge_families(&text);
    let prometheus = Prometheus::start(&text, "sum(http_requests_total)", healthy + 300);
    Releases {
        prometheus,
        healthy,
        errors,
        slow,
        clean,
    }
}

/// OpenMetrics wants each family once: gather the samples of repeated families together.
fn merge_families(text: &str) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut bodies: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("# TYPE ") {
            current = header.to_string();
            if !order.contains(&current) {
                order.push(current.clone());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            bodies
                .entry(current.clone())
                .or_default()
                .push(line.to_string());
        }
    }
    let mut out = String::new();
    for family in order {
        out.push_str(&format!("# TYPE {family}\n"));
        // Series must stay contiguous and in time order: sort by series, stable in time.
        let mut lines = bodies.remove(&family).unwrap_or_default();
        lines.sort_by_key(|l| l.rsplitn(3, ' ').nth(2).map(str::to_string));
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

#[test]
fn verdicts_on_backfilled_releases() {
    let r = releases();
    let url = r.prometheus.url.clone();

    // +5 points of canary errors: rolled back within the first two intervals.
    println!("{}", analyse(&url, r.errors, r.errors + 600, &[]).stdout);
    let bad = analyse(&url, r.errors, r.errors + 600, &["--output", "json"]);
    assert_eq!(bad.code, 1, "{}\n{}", bad.stdout, bad.stderr);
    let report = json(&bad);
    assert_eq!(report["verdict"], "rollback");
    let reached = report["reachedAfterIntervals"].as_u64().unwrap();
    assert!(reached <= 2, "reached after {reached} intervals");
    // At a check within that interval, or at its step.
    let at = report["reachedAt"].as_str().unwrap();
    assert!(
        at > common_time(r.errors + 60 * (reached as i64 - 1)).as_str()
            && at <= common_time(r.errors + 60 * reached as i64).as_str(),
        "reached at {at}"
    );
    let errors = &report["metrics"][0];
    assert_eq!(errors["name"], "error-rate");
    assert!(errors["eValue"].as_f64().unwrap() >= 100.0, "{errors}");
    assert!(
        errors["canary"]["ratePercent"].as_f64().unwrap() > 3.0,
        "{errors}"
    );
    assert!(
        bad.stderr.contains("querying interval 1/10"),
        "{}",
        bad.stderr
    );

    // Healthy: promoted once the 5-step schedule has run.
    println!("{}", analyse(&url, r.healthy, r.healthy + 600, &[]).stdout);
    let good = analyse(&url, r.healthy, r.healthy + 600, &["--output", "json"]);
    assert_eq!(good.code, 0, "{}\n{}", good.stdout, good.stderr);
    let report = json(&good);
    assert_eq!(report["verdict"], "promote");
    assert_eq!(report["reachedAfterIntervals"], 5);
    let weights: Vec<u64> = report["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [10, 20, 30, 40, 50]);
    for metric in report["metrics"].as_array().unwrap() {
        if let Some(e) = metric["eValue"].as_f64() {
            assert!(e < 100.0, "{metric}");
        }
    }

    // No errors in either arm (S15): promoted, on the strength of the canary's own error rate
    // (bounded below the primary's plus comparison.tolerance) since no error can be compared.
    let clean = analyse(&url, r.clean, r.clean + 600, &[]);
    println!("{}", clean.stdout);
    let clean_json = analyse(&url, r.clean, r.clean + 600, &["--output", "json"]);
    assert_eq!(clean_json.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    let report = json(&clean_json);
    assert_eq!(report["verdict"], "promote");
    let reached = report["reachedAfterIntervals"].as_u64().unwrap();
    assert!(
        (5..=7).contains(&reached),
        "promoted after {reached} intervals"
    );

    // Latency twice the primary's: rolled back by the latency comparison.
    let slow = analyse(&url, r.slow, r.slow + 600, &[]);
    println!("{}", slow.stdout);
    assert_eq!(slow.code, 1, "{}\n{}", slow.stdout, slow.stderr);
    assert!(slow.stdout.contains("Verdict: ROLLBACK"), "{}", slow.stdout);
    assert!(
        slow.stdout.contains("latency: slow requests: canary"),
        "{}",
        slow.stdout
    );

    // A window with no release in it: no data, never a pass.
    let empty = analyse(
        &url,
        r.healthy - 4 * 3600,
        r.healthy - 4 * 3600 + 300,
        &["--output", "json"],
    );
    assert_eq!(empty.code, 2, "{}\n{}", empty.stdout, empty.stderr);
    assert_eq!(json(&empty)["verdict"], "inconclusive");
}

fn common_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn an_unreachable_prometheus_is_named() {
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let start = recent_start(1);
    let run = analyse(&url, start, start + 300, &[]);
    assert_eq!(run.code, 69, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(&url), "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot reach Prometheus"),
        "{}",
        run.stderr
    );
}

#[test]
fn invalid_promql_carries_prometheus_message() {
    let r = releases();
    let dir = tempfile::tempdir().unwrap();
    let broken = std::fs::read_to_string(format!("{ROOT}/metrics-templates/app.yaml"))
        .unwrap()
        .replace("sum(increase(http_requests_total{namespace=\"{{ namespace }}\",pod=~\"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)\"}[{{ interval }}]))", "sum(increase(http_requests_total[{{ interval }}])");
    std::fs::write(dir.path().join("app.yaml"), broken).unwrap();
    let output = sluice()
        .args(["analyse", "--prometheus", &r.prometheus.url])
        .args(["--canary", &format!("{ROOT}/examples/canary.yaml")])
        .arg("--templates")
        .arg(dir.path())
        .args([
            "--start",
            &r.healthy.to_string(),
            "--end",
            &(r.healthy + 300).to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(70), "{stderr}");
    assert!(stderr.contains("refused the query as invalid"), "{stderr}");
    assert!(stderr.contains("unclosed left parenthesis"), "{stderr}");
}

#[test]
fn bad_input_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let canary = std::fs::read_to_string(format!("{ROOT}/examples/canary.yaml")).unwrap();
    let path = dir.path().join("canary.yaml");
    std::fs::write(&path, canary.replace("alpha: 0.01", "alpha: 1.5")).unwrap();
    let output = sluice()
        .args(["analyse", "--prometheus", "http://127.0.0.1:9"])
        .arg("--canary")
        .arg(&path)
        .args(["--templates", &format!("{ROOT}/metrics-templates/app.yaml")])
        .args(["--start", "2026-11-20T10:00:00Z"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("spec.analysis.alpha"), "{stderr}");

    std::fs::write(
        &path,
        canary.replace("name: app-errors}", "name: app-errorz}"),
    )
    .unwrap();
    let output = sluice()
        .args(["analyse", "--prometheus", "http://127.0.0.1:9"])
        .arg("--canary")
        .arg(&path)
        .args(["--templates", &format!("{ROOT}/metrics-templates/app.yaml")])
        .args(["--start", "1700000000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("spec.analysis.metrics[0].templateRef") && stderr.contains("app-errorz"),
        "{stderr}"
    );

    let output = sluice()
        .args(["analyse", "--canary", "x.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
}

// ---------------------------------------------------------------------------------------------
// Issue 10 (robustness): template values cannot rewrite a query. More cases, against a fake
// Prometheus, are in tests/robustness.rs.

/// The injection, end to end: the errors template starts with a comment holding an
/// apostrophe (`# the arm's failed requests`), which made the old renderer take everything after
/// it for a single-quoted string, so a templateVariables value with a double quote ended the
/// real string and rewrote the query to `... * 0 or vector(0)`: zero errors, and a canary failing
/// 5% of its requests was promoted. Rendered by the lexer, the value stays inside its matcher
/// (`job!="..."` excludes nothing) and the release is rolled back. (With the old renderer this
/// test fails: exit 0, PROMOTE, 0 errors counted.)
#[test]
fn template_injection_through_a_comment_is_rolled_back() {
    let r = releases();
    let dir = tempfile::tempdir().unwrap();
    let templates = std::fs::read_to_string(format!("{ROOT}/metrics-templates/app.yaml"))
        .unwrap()
        .replace(
            "  query: |\n    sum(increase(http_requests_total{namespace=\"{{ namespace }}\",pod=~\"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)\",status=~\"5..\"}[{{ interval }}]))",
            "  query: |\n    # the arm's failed requests\n    sum(increase(http_requests_total{namespace=\"{{ namespace }}\",pod=~\"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)\",status=~\"5..\",job!=\"{{ variables.exclude }}\"}[{{ interval }}]))",
        );
    assert!(templates.contains("the arm's failed requests"));
    std::fs::write(dir.path().join("app.yaml"), templates).unwrap();
    let canary = std::fs::read_to_string(format!("{ROOT}/examples/canary.yaml"))
        .unwrap()
        .replace(
            "        templateRef: {name: app-errors}\n",
            "        templateRef: {name: app-errors}\n        templateVariables:\n          exclude: 'x\"}[1m])) * 0 or vector(0) #'\n",
        );
    assert!(canary.contains("vector(0)"));
    // Only the comparisons judge: with the guardrails the old renderer's release still failed
    // its success-rate checks after five intervals, and the injection would not show.
    let canary = canary
        .split("      - name: request-success-rate")
        .next()
        .unwrap()
        .to_string();
    let canary_path = dir.path().join("canary.yaml");
    std::fs::write(&canary_path, canary).unwrap();
    let output = sluice()
        .args(["analyse", "--prometheus", &r.prometheus.url])
        .arg("--canary")
        .arg(&canary_path)
        .arg("--templates")
        .arg(dir.path().join("app.yaml"))
        .args(["--start", &r.errors.to_string()])
        .args(["--end", &(r.errors + 600).to_string()])
        .args(["--output", "json"])
        .output()
        .unwrap();
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = json(&run);
    assert_eq!(report["verdict"], "rollback");
    assert!(
        report["metrics"][0]["canary"]["ratePercent"]
            .as_f64()
            .unwrap()
            > 3.0,
        "{}",
        report["metrics"][0]
    );
}
