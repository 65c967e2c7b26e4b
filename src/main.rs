//! The `sluice` command: parses the command line and hands it to the subcommand's module.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use cli::exit::Exit;
use cli::kubectl::{self, act::Action};
use cli::readable::ReadableStderr;
use cli::{analyse, bench, controller, crd, demo, demo_app, demo_controller, import};

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
    Analyse(analyse::Args),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// Run the verdict benchmark: sluice against Flagger-, Argo- and Kayenta-style policies and
    /// the SPRT oracle on the same simulated traffic (BENCHMARK.md).
    ///
    /// Exit codes: 0 done (and, with --check, sluice met its CI claims), 1 a claim failed.
    Bench(bench::Args),
    /// Run the Kubernetes controller (in-cluster credentials, or a kubeconfig).
    ///
    /// Exit codes: 0 after SIGTERM or Ctrl-C, 69 no reachable cluster, 1 other failures.
    Controller(controller::Args),
    /// Serve the demo workload: GET / with a set error rate and latency, /metrics, /healthz.
    ///
    /// Prints `listening on ADDRESS` as the first line on stdout; stops on Ctrl-C or SIGTERM.
    DemoApp(demo_app::Args),
    /// Run a whole release on this machine and show it live: a real Prometheus, the primary and
    /// canary apps, a weighted router and load on 127.0.0.1, judged by the real controller.
    ///
    /// Needs Prometheus (apt-get install prometheus). Writes an HTML report with charts.
    /// Exit codes: 0 promoted, 1 rolled back, 2 inconclusive or no verdict, 64 usage,
    /// 65 invalid Canary, 66 unreadable file, 69 Prometheus missing or not starting,
    /// 70 other failures, 130 interrupted.
    Demo(demo::Args),
    /// Run only the demo's controller loop over a memory cluster kept in a file, steering a
    /// local router through its admin API (used by the end-to-end tests, which kill and
    /// restart it mid-release).
    ///
    /// Seeds the file with the Canary when it has none, else resumes from the stored status.
    /// Exit codes: 0 promoted, 1 rolled back, 2 inconclusive or stopped before a verdict,
    /// 64 usage, 65 invalid Canary, 70 other failures.
    DemoController(demo_controller::Args),
    /// Turn another tool's resources into sluice's: `sluice import flagger FILE…`.
    ///
    /// Exit codes: 0 everything mapped, 2 output produced but something could not be mapped,
    /// 64 usage, 65 input that is not the tool's resource (file, document and field named),
    /// 66 unreadable file.
    Import(import::Args),
    /// List Canaries: phase, weight, intervals analysed and each comparison's verdict so far.
    ///
    /// Installed as `kubectl-sluice`, `kubectl sluice get`. Exit codes: 0 listed (none is no
    /// error), 67 no such Canary, 69 the cluster cannot be reached, 1 other failures.
    Get(kubectl::get::Args),
    /// Show a Canary's release: where it stands, the evidence, the conditions, recent Events.
    ///
    /// Exit codes: 0 ready, 1 rolled back, 2 inconclusive, 3 in progress, 65 spec refused,
    /// 67 no such Canary, 69 the cluster cannot be reached.
    Status(kubectl::status::Args),
    /// Promote the release under way now, without waiting for its analysis.
    ///
    /// Exit codes: 0 requested, 1 refused (no release under way, suspended) or failed,
    /// 67 no such Canary, 69 the cluster cannot be reached.
    Promote(kubectl::act::Args),
    /// Roll back the release under way now.
    ///
    /// Exit codes: as promote.
    Abort(kubectl::act::Args),
    /// Run a rolled-back release again, with the same revision.
    ///
    /// Exit codes: as promote (refused unless the last release failed).
    Retry(kubectl::act::Args),
    /// Hold the Canary where it is (spec.suspend): no step, no promotion, no rollback.
    ///
    /// Exit codes: 0 suspended (or already), 67 no such Canary, 69 unreachable, 1 failed.
    Suspend(kubectl::act::Args),
    /// Let a suspended Canary go on.
    ///
    /// Exit codes: as suspend.
    Resume(kubectl::act::Args),
    /// Follow a Canary's release live, as `sluice demo` shows it, until it ends.
    ///
    /// Exit codes: 0 promoted, 1 rolled back, 2 inconclusive, 3 still under way at --timeout,
    /// 67 no such Canary, 69 the cluster cannot be reached, 130 interrupted.
    Watch(kubectl::watch::Args),
}

/// Installed as `kubectl-sluice`, the binary is a kubectl plugin, and its help says so.
fn parse() -> Result<Cli, clap::Error> {
    let invoked = std::env::args_os()
        .next()
        .and_then(|arg| {
            std::path::Path::new(&arg)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let mut command = Cli::command();
    if invoked.starts_with("kubectl-sluice") {
        command = command.bin_name("kubectl sluice").name("kubectl sluice");
    }
    let matches = command.try_get_matches()?;
    Cli::from_arg_matches(&matches)
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version come this way too, and are no usage error.
            return if e.use_stderr() {
                Exit::USAGE
            } else {
                Exit::SUCCESS
            }
            .into();
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
    let exit = match cli.command {
        Command::Analyse(args) => analyse::run(args),
        Command::Crd => crd::run(),
        Command::Bench(args) => bench::run(args),
        Command::Controller(args) => controller::run(args),
        Command::DemoApp(args) => demo_app::run(args),
        Command::Demo(args) => demo::run(args),
        Command::DemoController(args) => demo_controller::run(args),
        Command::Import(args) => import::run(args),
        Command::Get(args) => kubectl::get::run(args),
        Command::Status(args) => kubectl::status::run(args),
        Command::Promote(args) => kubectl::act::run(Action::Promote, args),
        Command::Abort(args) => kubectl::act::run(Action::Abort, args),
        Command::Retry(args) => kubectl::act::run(Action::Retry, args),
        Command::Suspend(args) => kubectl::act::run(Action::Suspend, args),
        Command::Resume(args) => kubectl::act::run(Action::Resume, args),
        Command::Watch(args) => kubectl::watch::run(args),
    };
    exit.into()
}
