//! `sluice demo-app`: the demo workload.

use std::io::Write;
use std::net::SocketAddr;

use sluice_demo::app::{self, AppConfig, AppError};

use super::exit::Exit;
use super::runtime::{self, Flavour};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
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

pub fn run(args: Args) -> Exit {
    let config = AppConfig {
        version: args.version,
        error_rate: args.error_rate,
        latency_median_ms: args.latency_median_ms,
        latency_sigma: args.latency_sigma,
        latency_factor: args.latency_factor,
    };
    // The tests and the demo read the address from the first line, so it goes out at once.
    let announce = |address| {
        println!("listening on {address}");
        let _ = std::io::stdout().flush();
    };
    let runtime = match runtime::build(Flavour::CurrentThread) {
        Ok(runtime) => runtime,
        Err(e) => return Exit::FAILURE.fail(e),
    };
    match runtime.block_on(app::run(config, args.listen, announce)) {
        Ok(()) => Exit::SUCCESS,
        Err(e @ AppError::Invalid { .. }) => Exit::USAGE.fail(e),
        Err(e) => Exit::FAILURE.fail(e),
    }
}
