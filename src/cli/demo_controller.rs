//! `sluice demo-controller`: the demo's controller loop alone, over a memory cluster in a file.

use std::path::PathBuf;
use std::time::Duration;

use sluice_demo::run::{ControllerOptions, run_controller};
use sluice_demo::stage::Scenario;
use sluice_demo::view::exit_code;

use super::args::RequiredPrometheus;
use super::exit::Exit;
use super::runtime::{self, Flavour};

#[derive(clap::Args)]
pub struct Args {
    /// The memory cluster's file: created and seeded if missing, resumed from otherwise.
    #[arg(long, value_name = "FILE")]
    cluster_file: PathBuf,
    #[command(flatten)]
    prometheus: RequiredPrometheus,
    /// The local router's admin API, e.g. http://127.0.0.1:7000.
    #[arg(long, value_name = "URL")]
    router: String,
    /// The new version applied to the target (see `sluice demo --scenario`).
    #[arg(long, value_enum, default_value_t = Scenario::Good)]
    scenario: Scenario,
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

pub fn run(args: Args) -> Exit {
    let options = ControllerOptions {
        cluster_file: args.cluster_file,
        prometheus: args.prometheus.address,
        router: args.router,
        scenario: args.scenario,
        canary: args.canary,
        until_done: args.until_done,
        max_duration: Duration::from_secs(args.max_duration.max(1)),
    };
    let runtime = match runtime::build(Flavour::CurrentThread) {
        Ok(runtime) => runtime,
        Err(e) => return Exit::DEMO_FAILED.fail(e),
    };
    let mut out = std::io::stdout();
    match runtime.block_on(run_controller(options, &mut out)) {
        Ok(verdict) => Exit::from_code(exit_code(verdict)),
        Err(e) => Exit::from_code(e.exit_code()).fail(e),
    }
}
