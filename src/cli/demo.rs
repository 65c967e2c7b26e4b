//! `sluice demo`: a whole release on this machine, shown live.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use sluice_demo::run::{ClusterOptions, DemoOptions, run_demo};
use sluice_demo::stage::Scenario;
use sluice_demo::view::exit_code;

use super::crd;
use super::exit::Exit;
use super::runtime::{self, Flavour};

#[derive(clap::Args)]
pub struct Args {
    /// What the new version does: good (like the primary), errors (+5 points of errors),
    /// latency (twice as slow).
    #[arg(long, value_enum, default_value_t = Scenario::Good)]
    scenario: Scenario,
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

pub fn run(args: Args) -> Exit {
    let options = DemoOptions {
        scenario: args.scenario,
        rate: args.rate,
        report: args.report,
        canary: args.canary,
        max_duration: Duration::from_secs(args.max_duration.max(1)),
        interactive: std::io::stdout().is_terminal(),
        cluster: args.cluster.then(|| ClusterOptions {
            scripts: args.repository.join("e2e/cluster"),
            chart: args.repository.join("charts/sluice"),
            crds: crd::yaml(),
        }),
    };
    // Two workers: the load, the router and the view share them with the analysis' queries.
    let runtime = match runtime::build(Flavour::MultiThread { workers: Some(2) }) {
        Ok(runtime) => runtime,
        Err(e) => return Exit::DEMO_FAILED.fail(e),
    };
    let mut out = std::io::stdout();
    match runtime.block_on(run_demo(options, &mut out)) {
        Ok(outcome) => Exit::from_code(exit_code(outcome.verdict)),
        Err(e) => Exit::from_code(e.exit_code()).fail(e),
    }
}
