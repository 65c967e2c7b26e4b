//! `sluice controller`: the Kubernetes controller.

use std::net::SocketAddr;

use sluice_controller::run::{Options, RunError, run as run_controller};
use sluice_controller::shard::LabelSelector;
use sluice_core::api::RouterKind;

use super::args::Prometheus;
use super::exit::Exit;
use super::readable::readable;
use super::runtime::{self, Flavour};

#[derive(clap::Args)]
#[command(mut_arg("prometheus_address", |arg| arg.help(
    "Prometheus for MetricTemplates without spec.provider.address (also accepted as --prometheus)"
)))]
pub struct Args {
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    #[command(flatten)]
    prometheus: Prometheus,
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
    /// Reconcile only the Canaries with these labels, a Kubernetes label selector: one shard
    /// of a fleet split across controllers, e.g. `sharding.fluxcd.io/key=shard1`, and
    /// `!sharding.fluxcd.io/key` for the controller that takes the rest (Flux's convention).
    #[arg(long, value_name = "SELECTOR")]
    watch_label_selector: Option<String>,
    /// At most this many releases in flight at once; a new revision beyond it waits, queued,
    /// until one ends (default: no limit).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_releases: Option<u32>,
    /// Router for Canaries without spec.provider: gatewayapi, gatewayapi:v1, kubernetes, nginx,
    /// istio, gamma, smi:v1alpha2 or linkerd.
    #[arg(long, default_value = "gatewayapi")]
    router: RouterKind,
}

pub fn run(args: Args) -> Exit {
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let watch_label_selector = match args
        .watch_label_selector
        .as_deref()
        .map(LabelSelector::parse)
        .transpose()
    {
        Ok(selector) => selector,
        Err(e) => return Exit::USAGE.fail(e),
    };
    let options = Options {
        metrics_address: args.metrics_address,
        query_timeout: args.prometheus.query_timeout(),
        prometheus_address: args.prometheus.address,
        leader_election: args.leader_election,
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        identity,
        watch_namespace: args.watch_namespace,
        watch_label_selector,
        max_concurrent_releases: args.max_concurrent_releases,
        router: args.router,
    };
    let runtime = match runtime::build(Flavour::MultiThread { workers: None }) {
        Ok(runtime) => runtime,
        Err(e) => return Exit::FAILURE.fail(e),
    };
    match runtime.block_on(run_controller(options)) {
        Ok(()) => Exit::SUCCESS,
        Err(e) => {
            let exit = match e {
                RunError::Config(_) | RunError::Unreachable { .. } => Exit::UNREACHABLE,
                _ => Exit::FAILURE,
            };
            exit.fail(readable(&e.to_string()))
        }
    }
}
