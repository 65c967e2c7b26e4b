//! `kubectl sluice status NAME`: the release's evidence, conditions and recent Events; with
//! `--wait`, printed again when the release ends. The exit code says how it stands, for scripts.

use std::time::Duration;

use sluice_core::api::duration::GoDuration;
use sluice_core::api::{Canary, INVALID_SPEC, Phase, ReleaseVerdict, STALLED};

use super::super::exit::Exit;
use super::{Cluster, Connection, KubectlError, now, show};

/// How often `--wait` reads the Canary again.
const POLL: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
#[command(
    after_help = "Exit codes: 0 ready (the last release was promoted, or none yet), \
1 rolled back, 2 inconclusive, 3 in progress (or, with --wait, still so at --timeout), \
65 the spec is refused, 67 no such Canary, 69 the cluster cannot be reached."
)]
pub struct Args {
    name: String,
    #[command(flatten)]
    connection: Connection,
    /// Wait until the release under way ends, then print the status.
    #[arg(short, long)]
    wait: bool,
    /// With --wait: give up after this long (Go syntax: 90s, 10m).
    #[arg(long, default_value = "30m", requires = "wait")]
    timeout: GoDuration,
}

/// How the Canary stands, as an exit code.
pub fn exit_of(canary: &Canary) -> Exit {
    let Some(status) = &canary.status else {
        return Exit::IN_PROGRESS;
    };
    let invalid = status
        .conditions
        .iter()
        .any(|c| c.kind == STALLED && c.status == "True" && c.reason == INVALID_SPEC);
    if invalid {
        return Exit::INVALID_INPUT;
    }
    // A status written for an older spec says nothing yet about the spec as it is.
    if canary.metadata.generation.is_some()
        && status.observed_generation < canary.metadata.generation
    {
        return Exit::IN_PROGRESS;
    }
    match (status.phase, status.verdict()) {
        (Some(Phase::Initialized | Phase::Succeeded), _) => Exit::SUCCESS,
        (Some(Phase::Failed), Some(ReleaseVerdict::Inconclusive)) => Exit::INCONCLUSIVE,
        (Some(Phase::Failed), _) => Exit::ROLLBACK,
        _ => Exit::IN_PROGRESS,
    }
}

pub fn run(args: Args) -> Exit {
    super::block_on(status(&args))
}

async fn status(args: &Args) -> Result<Exit, KubectlError> {
    let cluster = args.connection.connect().await?;
    let mut canary = cluster.canary(&args.name).await?;
    if args.wait {
        let deadline = tokio::time::Instant::now() + args.timeout.as_duration();
        while exit_of(&canary) == Exit::IN_PROGRESS && tokio::time::Instant::now() < deadline {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = sluice_demo::shutdown_signal() => return Ok(Exit::INTERRUPTED),
            }
            canary = cluster.canary(&args.name).await?;
        }
    }
    print(&cluster, &canary).await?;
    Ok(exit_of(&canary))
}

async fn print(cluster: &Cluster, canary: &Canary) -> Result<(), KubectlError> {
    let name = canary.metadata.name.clone().unwrap_or_default();
    let events = cluster.events(&name).await?;
    for line in show::status_page(canary, &events, now()) {
        println!("{line}");
    }
    Ok(())
}
