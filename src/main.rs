//! The `sluice` command.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kube::CustomResourceExt;

use sluice_controller::providers::Credentials;
use sluice_controller::providers::Provider;
use sluice_controller::providers::collect::Collector;
use sluice_controller::providers::prometheus::PrometheusProvider;
use sluice_controller::replay::{self, Outcome, report};
use sluice_core::api::{self, Canary, MetricTemplate, ProviderSpec};

/// Exit codes, documented in the README.
mod exit {
    pub const PROMOTE: u8 = 0;
    pub const ROLLBACK: u8 = 1;
    pub const INCONCLUSIVE: u8 = 2;
    pub const USAGE: u8 = 64;
    pub const INVALID_INPUT: u8 = 65;
    pub const NO_INPUT: u8 = 66;
    pub const UNREACHABLE: u8 = 69;
    pub const QUERY_FAILED: u8 = 70;
}

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Progressive delivery for Kubernetes, judged by anytime-valid sequential tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a Canary's analysis against Prometheus over a past window and print the verdict.
    ///
    /// Exit codes: 0 promote, 1 rollback, 2 inconclusive, 64 usage, 65 invalid Canary or
    /// MetricTemplate, 66 unreadable file, 69 Prometheus unreachable, 70 query refused.
    Analyse(AnalyseArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// Run the verdict benchmark: sluice against Flagger-, Argo- and Kayenta-style policies and
    /// the SPRT oracle on the same simulated traffic (BENCHMARK.md).
    ///
    /// Exit codes: 0 done (and, with --check, sluice met its CI claims), 1 a claim failed.
    Bench(BenchArgs),
    /// Run the Kubernetes controller (in-cluster credentials, or a kubeconfig).
    ///
    /// Exit codes: 0 after SIGTERM or Ctrl-C, 69 no reachable cluster, 1 other failures.
    Controller(ControllerArgs),
    /// Serve the demo workload: GET / with a set error rate and latency, /metrics, /healthz.
    ///
    /// Prints `listening on ADDRESS` as the first line on stdout; stops on Ctrl-C or SIGTERM.
    DemoApp(DemoAppArgs),
    /// Run a whole release on this machine and show it live: a real Prometheus, the primary and
    /// canary apps, a weighted router and load on 127.0.0.1, judged by the real controller.
    ///
    /// Needs Prometheus (apt-get install prometheus). Writes an HTML report with charts.
    /// Exit codes: 0 promoted, 1 rolled back, 2 inconclusive or no verdict, 64 usage,
    /// 65 invalid Canary, 66 unreadable file, 69 Prometheus missing or not starting,
    /// 70 other failures, 130 interrupted.
    Demo(DemoArgs),
    /// Run only the demo's controller loop over a memory cluster kept in a file, steering a
    /// local router through its admin API (used by the end-to-end tests, which kill and
    /// restart it mid-release).
    ///
    /// Seeds the file with the Canary when it has none, else resumes from the stored status.
    /// Exit codes: 0 promoted, 1 rolled back, 2 inconclusive or stopped before a verdict,
    /// 64 usage, 65 invalid Canary, 70 other failures.
    DemoController(DemoControllerArgs),
}

#[derive(clap::Args)]
struct AnalyseArgs {
    /// Prometheus base URL; overrides the templates' spec.provider.address.
    #[arg(long, value_name = "URL", value_parser = parse_base_url)]
    prometheus: Option<String>,
    /// The Canary to replay (YAML; sluice.dev/v1alpha1 or flagger.app/v1beta1).
    #[arg(long, value_name = "FILE")]
    canary: PathBuf,
    /// MetricTemplate file or folder (searched for .yaml/.yml); repeatable.
    #[arg(long = "templates", value_name = "PATH", required = true)]
    templates: Vec<PathBuf>,
    /// Secret manifests named by templates' spec.provider.secretRef; repeatable.
    #[arg(long = "secret", value_name = "FILE")]
    secrets: Vec<PathBuf>,
    /// Start of the window: RFC 3339 or Unix seconds. The canary's first interval starts here.
    #[arg(long, value_parser = parse_time)]
    start: i64,
    /// End of the window: RFC 3339 or Unix seconds. Defaults to now.
    #[arg(long, value_parser = parse_time)]
    end: Option<i64>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Timeout for each query, in seconds (1 to 3600): the longest one query may take,
    /// connecting included. A provider that times out is not asked again in that interval.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    query_timeout: u64,
}

#[derive(clap::Args)]
struct DemoAppArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Reported in every answer's body.
    #[arg(long, default_value = "v1")]
    version: String,
    /// Fraction of requests answered 500.
    #[arg(long, default_value_t = 0.001)]
    error_rate: f64,
    /// Median latency (lognormal), in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    latency_median_ms: f64,
    /// Spread of the latency: the standard deviation of its logarithm.
    #[arg(long, default_value_t = 0.5)]
    latency_sigma: f64,
    /// Multiplies every latency.
    #[arg(long, default_value_t = 1.0)]
    latency_factor: f64,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// What the new version does: good (like the primary), errors (+5 points of errors),
    /// latency (twice as slow).
    #[arg(long, value_enum, default_value_t = sluice_demo::stage::Scenario::Good)]
    scenario: sluice_demo::stage::Scenario,
    /// Requests per second through the router (0: no traffic, which ends inconclusive).
    #[arg(long, default_value_t = 150.0)]
    rate: f64,
    /// The HTML report; its data goes next to it with the extension .json.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "target/sluice-demo/report.html"
    )]
    report: PathBuf,
    /// The Canary to release (default: the built-in copy of e2e/canary.yaml).
    #[arg(long, value_name = "FILE")]
    canary: Option<PathBuf>,
    /// Stop without a verdict after this many seconds.
    #[arg(long, default_value_t = 300)]
    max_duration: u64,
    /// Run on a real Kubernetes API server: the cluster KUBECONFIG names, else the local
    /// control plane of e2e/cluster/ (started, and stopped afterwards, unless it runs already).
    /// The real `sluice controller` moves the release with the chart's RBAC.
    #[arg(long)]
    cluster: bool,
    /// Where --cluster finds the repository's e2e/cluster/ scripts and charts/sluice/ chart.
    #[arg(long, value_name = "DIR", default_value = ".")]
    repository: PathBuf,
}

#[derive(clap::Args)]
struct DemoControllerArgs {
    /// The memory cluster's file: created and seeded if missing, resumed from otherwise.
    #[arg(long, value_name = "FILE")]
    cluster_file: PathBuf,
    /// Prometheus base URL for the analysis.
    #[arg(long, value_name = "URL")]
    prometheus: String,
    /// The local router's admin API, e.g. http://127.0.0.1:7000.
    #[arg(long, value_name = "URL")]
    router: String,
    /// The new version applied to the target (see `sluice demo --scenario`).
    #[arg(long, value_enum, default_value_t = sluice_demo::stage::Scenario::Good)]
    scenario: sluice_demo::stage::Scenario,
    /// The Canary to seed (default: the built-in copy of e2e/canary.yaml).
    #[arg(long, value_name = "FILE")]
    canary: Option<PathBuf>,
    /// Exit when the release has a verdict (else run until SIGTERM or Ctrl-C).
    #[arg(long)]
    until_done: bool,
    /// Stop after this many seconds whatever happens.
    #[arg(long, default_value_t = 600)]
    max_duration: u64,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// The CI mode: 1,000 seeds for sluice and 300 for the other policies, and --check.
    #[arg(long)]
    quick: bool,
    /// Seeded runs per scenario and policy (the full mode uses at least 2,000).
    #[arg(long, default_value_t = 2000)]
    seeds: u64,
    /// Only these scenarios (comma-separated ids, e.g. S1,S3).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Only these policies: sluice, flagger, argo, kayenta, oracle.
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
    /// Folder for verdicts.md and verdicts.json.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Fail (exit 1) when sluice breaks its CI claims: a false-rollback upper bound above 1.5%
    /// on a healthy scenario, or detection below 99% on S3 or S4.
    #[arg(long)]
    check: bool,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_address: std::net::SocketAddr,
    /// Prometheus for MetricTemplates without spec.provider.address.
    #[arg(long, value_name = "URL", value_parser = parse_base_url)]
    prometheus_address: Option<String>,
    /// Only one replica reconciles; the others stand by (a Lease in --lease-namespace).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    #[arg(long, default_value = "sluice-leader")]
    lease_name: String,
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's name in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Watch one namespace only (default: all).
    #[arg(long)]
    watch_namespace: Option<String>,
    /// Router for Canaries without spec.provider: gatewayapi, gatewayapi:v1 or kubernetes.
    #[arg(long, default_value = "gatewayapi")]
    router: sluice_core::api::RouterKind,
    /// Timeout for each metrics query, in seconds (1 to 3600).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    query_timeout: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// The latest time accepted, 9999-12-31T23:59:59Z: later ones overflow the replay's clock
/// (a start near i64::MAX never reached its end) and no Prometheus holds them.
const LATEST_TIME: i64 = 253_402_300_799;

fn parse_time(text: &str) -> Result<i64, String> {
    let seconds = match text.parse::<i64>() {
        Ok(seconds) => seconds,
        Err(_) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp())
            .map_err(|e| {
                format!("{text:?} is neither RFC 3339 (2026-11-20T10:00:00Z) nor Unix seconds: {e}")
            })?,
    };
    if !(0..=LATEST_TIME).contains(&seconds) {
        return Err(format!(
            "{text:?} is outside 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z"
        ));
    }
    Ok(seconds)
}

/// A Prometheus base URL: http or https with a host. Checked when the command line is parsed,
/// so a typo is a usage error naming the flag, not a template that "cannot be rendered".
fn parse_base_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text)
        .map_err(|e| format!("{text:?} is not a URL ({e}); write it like http://127.0.0.1:9090"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{text:?} is not an http(s) URL with a host; write it like http://127.0.0.1:9090"
        ));
    }
    Ok(text.to_string())
}

/// An error for a terminal or a log: an HTML page in it (a proxy's or a web server's answer
/// where an API was expected) is replaced by a note saying so, instead of the raw page.
fn readable(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let mut text = match ["<!doctype", "<html", "<head", "<body"]
        .iter()
        .filter_map(|tag| lower.find(tag))
        .min()
    {
        Some(at) => {
            let end = lower
                .rfind("</html>")
                .map_or(message.len(), |i| i + "</html>".len());
            format!(
                "{}(an HTML page: the server is a web server or a proxy, not the API expected; check the URL){}",
                &message[..at],
                &message[end.max(at)..]
            )
        }
        None => message.to_string(),
    };
    // kube's words when an answer is not JSON, e.g. an HTML page or a plain-text error.
    if text.contains("Error deserializing response") && !text.contains("HTML page") {
        text.push_str(
            " (the server's answer is not a Kubernetes API's JSON: check the kubeconfig's server URL)",
        );
    }
    text
}

/// Log lines pass through `readable` on their way to stderr: kube's client logs a whole answer
/// at warn when it is not JSON, which for a web server is a page of HTML.
struct ReadableStderr;

impl std::io::Write for ReadableStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(readable(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    // The demo shows the release's warnings in its view; logged as well, they would break the
    // redraw in place.
    let default_log = if matches!(cli.command, Command::Demo(_)) {
        "error"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_writer(|| ReadableStderr)
        // Colour codes only for a person at a terminal: in a pod's log or a pipe they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .init();
    // kube and reqwest share one TLS provider; installing it first avoids a run-time panic.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Crd => {
            print!("{}", crds());
            ExitCode::SUCCESS
        }
        Command::Controller(args) => run_controller(args),
        Command::Demo(args) => run_demo(args),
        Command::DemoController(args) => run_demo_controller(args),
        Command::Bench(args) => run_bench(args),
        Command::DemoApp(args) => {
            use sluice_demo::app::{self, AppConfig, AppError};
            let config = AppConfig {
                version: args.version,
                error_rate: args.error_rate,
                latency_median_ms: args.latency_median_ms,
                latency_sigma: args.latency_sigma,
                latency_factor: args.latency_factor,
            };
            let announce = |address| {
                println!("listening on {address}");
                let _ = std::io::stdout().flush();
            };
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| (1, format!("cannot start the async runtime: {e}")))
                .and_then(|runtime| {
                    runtime
                        .block_on(app::run(config, args.listen, announce))
                        .map_err(|e| match e {
                            AppError::Invalid { .. } => (exit::USAGE, e.to_string()),
                            e => (1, e.to_string()),
                        })
                });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err((code, message)) => {
                    eprintln!("error: {message}");
                    ExitCode::from(code)
                }
            }
        }
        Command::Analyse(args) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run_analyse(args)) {
                Ok(code) => ExitCode::from(code),
                Err((code, message)) => {
                    eprintln!("error: {message}");
                    ExitCode::from(code)
                }
            }
        }
    }
}

fn run_bench(args: BenchArgs) -> ExitCode {
    use sluice_bench::{self as bench, POLICIES, report, scenario};
    let all = scenario::all();
    let scenarios: Vec<_> = if args.scenarios.is_empty() {
        all.clone()
    } else {
        all.iter()
            .filter(|s| args.scenarios.iter().any(|id| id == s.id))
            .cloned()
            .collect()
    };
    let unknown: Vec<&String> = args
        .scenarios
        .iter()
        .filter(|id| !all.iter().any(|s| s.id == id.as_str()))
        .collect();
    let bad_policy: Vec<&String> = args
        .policies
        .iter()
        .filter(|p| !POLICIES.contains(&p.as_str()))
        .collect();
    if !unknown.is_empty() || !bad_policy.is_empty() {
        let ids: Vec<&str> = all.iter().map(|s| s.id).collect();
        eprintln!(
            "error: unknown --scenarios {unknown:?} or --policies {bad_policy:?}; scenarios: {}; policies: {}",
            ids.join(","),
            POLICIES.join(",")
        );
        return ExitCode::from(exit::USAGE);
    }
    let policies: Vec<&str> = if args.policies.is_empty() {
        POLICIES.to_vec()
    } else {
        POLICIES
            .iter()
            .copied()
            .filter(|p| args.policies.iter().any(|a| a == p))
            .collect()
    };
    let started = std::time::Instant::now();
    let cells = if args.quick {
        bench::quick(&scenarios, &policies, args.threads)
    } else {
        bench::run(&scenarios, &policies, args.seeds, args.threads)
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let titles: Vec<(String, String)> = scenarios
        .iter()
        .map(|s| (s.id.to_string(), s.title.to_string()))
        .collect();
    let markdown = report::markdown(&cells, &titles, &command);
    println!("{markdown}");
    eprintln!("benchmark took {:.0} s", started.elapsed().as_secs_f64());
    if let Some(dir) = &args.out {
        let json = serde_json::to_string_pretty(&cells).unwrap_or_default();
        let written = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(dir.join("verdicts.md"), &markdown))
            .and_then(|_| std::fs::write(dir.join("verdicts.json"), json));
        if let Err(e) = written {
            eprintln!("error: cannot write {}: {e}", dir.display());
            return ExitCode::from(exit::NO_INPUT);
        }
    }
    if args.check || args.quick {
        let failures = bench::check(&cells);
        for failure in &failures {
            eprintln!("claim failed: {}", failure.0);
        }
        if !failures.is_empty() {
            return ExitCode::FAILURE;
        }
        eprintln!("sluice's CI claims hold");
    }
    ExitCode::SUCCESS
}

fn run_controller(args: ControllerArgs) -> ExitCode {
    use sluice_controller::run::{Options, RunError, run};
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let options = Options {
        metrics_address: args.metrics_address,
        prometheus_address: args.prometheus_address,
        leader_election: args.leader_election,
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        identity,
        watch_namespace: args.watch_namespace,
        router: args.router,
        query_timeout: Duration::from_secs(args.query_timeout.max(1)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", readable(&e.to_string()));
            let code = match e {
                RunError::Config(_) | RunError::Unreachable { .. } => exit::UNREACHABLE,
                _ => 1,
            };
            ExitCode::from(code)
        }
    }
}

fn run_demo(args: DemoArgs) -> ExitCode {
    use sluice_demo::run::{DemoOptions, run_demo};
    use sluice_demo::view::exit_code;
    let options = DemoOptions {
        scenario: args.scenario,
        rate: args.rate,
        report: args.report,
        canary: args.canary,
        max_duration: Duration::from_secs(args.max_duration.max(1)),
        interactive: std::io::stdout().is_terminal(),
        cluster: args.cluster.then(|| sluice_demo::run::ClusterOptions {
            scripts: args.repository.join("e2e/cluster"),
            chart: args.repository.join("charts/sluice"),
            crds: crds(),
        }),
    };
    // Two workers: the load, the router and the view share them with the analysis' queries.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    let mut out = std::io::stdout();
    match runtime.block_on(run_demo(options, &mut out)) {
        Ok(outcome) => ExitCode::from(exit_code(outcome.verdict)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run_demo_controller(args: DemoControllerArgs) -> ExitCode {
    use sluice_demo::run::{ControllerOptions, run_controller};
    use sluice_demo::view::exit_code;
    let options = ControllerOptions {
        cluster_file: args.cluster_file,
        prometheus: args.prometheus,
        router: args.router,
        scenario: args.scenario,
        canary: args.canary,
        until_done: args.until_done,
        max_duration: Duration::from_secs(args.max_duration.max(1)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    let mut out = std::io::stdout();
    match runtime.block_on(run_controller(options, &mut out)) {
        Ok(verdict) => ExitCode::from(exit_code(verdict)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn crds() -> String {
    let mut out = String::new();
    for crd in [Canary::crd(), MetricTemplate::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd).unwrap_or_default());
    }
    out
}

type Failure = (u8, String);

fn load_error(e: sluice_controller::load::LoadError) -> Failure {
    let code = match e {
        sluice_controller::load::LoadError::Read { .. } => exit::NO_INPUT,
        _ => exit::INVALID_INPUT,
    };
    (code, e.to_string())
}

async fn run_analyse(args: AnalyseArgs) -> Result<u8, Failure> {
    let canary = sluice_controller::load::canary_from_file(&args.canary).map_err(load_error)?;
    api::validate::validate_canary(&canary).map_err(|e| {
        (
            exit::INVALID_INPUT,
            format!("{}: {e}", args.canary.display()),
        )
    })?;
    if canary.spec.analysis.metrics.is_empty() {
        return Err((
            exit::INVALID_INPUT,
            format!(
                "{}: spec.analysis.metrics is empty; there is nothing to analyse",
                args.canary.display()
            ),
        ));
    }
    let mut templates = Vec::new();
    for path in &args.templates {
        templates.extend(sluice_controller::load::templates_from_path(path).map_err(load_error)?);
    }
    let secrets = load_secrets(&args.secrets)?;
    let end = args.end.unwrap_or_else(|| chrono::Utc::now().timestamp());
    if end <= args.start {
        return Err((
            exit::USAGE,
            format!("--end ({end}) must be after --start ({})", args.start),
        ));
    }
    let timeout = Duration::from_secs(args.query_timeout.max(1));
    let override_address = args.prometheus.clone();
    let mut addresses = Vec::new();
    let connect = |template: &str, spec: &ProviderSpec| -> Result<Arc<dyn Provider>, String> {
        let address = override_address
            .clone()
            .or_else(|| spec.address.clone())
            .ok_or("spec.provider.address is not set; set it or pass --prometheus URL")?;
        let credentials = credentials(spec, &secrets)?;
        let provider = PrometheusProvider::new(spec, &address, &credentials, timeout)
            .map_err(|e| e.to_string())?;
        tracing::debug!(template, address, "provider");
        addresses.push(address);
        Ok(Arc::new(provider))
    };
    let collector = Collector::new(&canary, &templates, connect).map_err(|e| {
        (
            exit::INVALID_INPUT,
            format!("{}: {e}", args.canary.display()),
        )
    })?;
    addresses.dedup();
    let analysis = &canary.spec.analysis;
    let interactive = std::io::stderr().is_terminal();
    let progress = |step: u32, of: u32, at: i64| {
        let line = format!(
            "querying interval {step}/{of}, first check at {}",
            report::rfc3339(at)
        );
        let mut err = std::io::stderr();
        if interactive {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
    };
    let result = replay::replay(&canary, &collector, args.start, end, progress).await;
    if interactive {
        eprintln!();
    }
    let replay = result.map_err(|e| {
        let code = if e.is_unreachable() {
            exit::UNREACHABLE
        } else {
            exit::QUERY_FAILED
        };
        (code, e.to_string())
    })?;
    let ctx = report::Context {
        name: canary.metadata.name.clone().unwrap_or_default(),
        namespace: canary
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        prometheus: addresses.first().cloned(),
        start: args.start,
        end,
        analysis,
    };
    let built = report::build(&ctx, &replay);
    match args.output {
        Output::Text => print!("{}", report::text(&built)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&built)
                .map_err(|e| (exit::QUERY_FAILED, e.to_string()))?
        ),
    }
    Ok(match replay.outcome {
        Outcome::Promote => exit::PROMOTE,
        Outcome::Rollback => exit::ROLLBACK,
        Outcome::Inconclusive => exit::INCONCLUSIVE,
    })
}

/// Secrets by name, from manifests given with --secret.
fn load_secrets(paths: &[PathBuf]) -> Result<BTreeMap<String, BTreeMap<String, String>>, Failure> {
    let mut secrets = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                exit::NO_INPUT,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_yaml_ng::from_str(&text).map_err(|e| {
                (
                    exit::INVALID_INPUT,
                    format!("{}: not a Secret: {e}", path.display()),
                )
            })?;
        let name = secret
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| file_stem(path));
        let mut values = BTreeMap::new();
        for (key, bytes) in secret.data.unwrap_or_default() {
            values.insert(key, String::from_utf8_lossy(&bytes.0).into_owned());
        }
        values.extend(secret.string_data.unwrap_or_default());
        secrets.insert(name, values);
    }
    Ok(secrets)
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn credentials(
    spec: &ProviderSpec,
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Credentials, String> {
    let Some(reference) = &spec.secret_ref else {
        return Ok(Credentials::None);
    };
    let secret = secrets.get(&reference.name).ok_or_else(|| {
        format!("spec.provider.secretRef: Secret {:?} was not given; pass its manifest with --secret FILE", reference.name)
    })?;
    if let Some(token) = secret.get("token") {
        return Ok(Credentials::Bearer(token.clone()));
    }
    match (secret.get("username"), secret.get("password")) {
        (Some(username), Some(password)) => Ok(Credentials::Basic {
            username: username.clone(),
            password: password.clone(),
        }),
        _ => Err(format!(
            "Secret {:?} needs the key token (bearer) or the keys username and password (basic auth)",
            reference.name
        )),
    }
}
