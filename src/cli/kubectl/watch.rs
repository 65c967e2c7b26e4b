//! `kubectl sluice watch NAME`: the live view of `sluice demo`, on a Canary of a cluster. Once a
//! second it reads the Canary (and, with `--prometheus`, each arm's traffic) and redraws; it
//! ends when a release ends (one under way, or the next one), with that release's exit code.

use std::io::IsTerminal;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::Api;
use sluice_core::api::Canary;
use sluice_core::api::duration::GoDuration;
use sluice_demo::timeline::{self, Snapshot, Timeline, TrafficProbe};
use sluice_demo::view::View;

use super::super::exit::Exit;
use super::status::exit_of;
use super::{Cluster, Connection, KubectlError};

const TICK: Duration = Duration::from_secs(1);

#[derive(clap::Args)]
#[command(
    after_help = "Exit codes: as `kubectl sluice status`: 0 promoted, 1 rolled back, \
2 inconclusive, 3 still under way at --timeout, 67 no such Canary, 69 the cluster cannot be \
reached, 130 interrupted."
)]
pub struct Args {
    name: String,
    #[command(flatten)]
    connection: Connection,
    /// Prometheus that scrapes the target's pods (`http_requests_total` and
    /// `http_request_duration_seconds` by pod, as the demo app serves them): adds each arm's
    /// requests per second, error rate and p99 to the view.
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
    /// Give up after this long (Go syntax: 90s, 10m).
    #[arg(long, default_value = "1h")]
    timeout: GoDuration,
}

pub fn run(args: Args) -> Exit {
    super::block_on(watch(&args))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

async fn watch(args: &Args) -> Result<Exit, KubectlError> {
    let cluster = args.connection.connect().await?;
    let canary = cluster.canary(&args.name).await?;
    let target = canary.spec.target_ref.name.clone();
    let probe = match &args.prometheus {
        Some(url) => Some(
            TrafficProbe::for_target(url, &cluster.namespace, &target)
                .map_err(|e| KubectlError::Config(format!("--prometheus {url}: {e}")))?,
        ),
        None => None,
    };
    let mut timeline = Timeline {
        scenario: String::new(),
        title: Some("kubectl sluice watch".into()),
        canary: format!("{}/{}", cluster.namespace, args.name),
        interval_seconds: canary.spec.analysis.interval.as_secs(),
        alpha: canary.spec.analysis.alpha,
        rate: 0.0,
        started_at: unix_now(),
        snapshots: Vec::new(),
        routes: Vec::new(),
        decision: None,
        status: None,
    };
    let mut out = std::io::stdout();
    let mut view = View::new(out.is_terminal());
    let deadline = tokio::time::Instant::now() + args.timeout.as_duration();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // A release can start and end between two looks (a retry promoted by hand at once): a
    // Canary at rest that is not as it was at the start tells that one ended too.
    let at_start = resting_state(&canary);
    let mut seen_in_flight = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = sluice_demo::shutdown_signal() => {
                view.note(&mut out, "interrupted");
                return Ok(Exit::INTERRUPTED);
            }
        }
        let canary = cluster.canary(&args.name).await?;
        let snapshot = snapshot(&cluster, &canary, probe.as_ref()).await;
        view.draw(&mut out, &timeline, &snapshot);
        timeline.snapshots.push(snapshot);
        // Only the last snapshot is drawn; the rest would only grow.
        if timeline.snapshots.len() > 1 {
            timeline.snapshots.remove(0);
        }
        let exit = exit_of(&canary);
        if exit == Exit::IN_PROGRESS {
            seen_in_flight = true;
        } else if seen_in_flight
            || exit == Exit::INVALID_INPUT
            || resting_state(&canary) != at_start
        {
            let status = canary.status.clone().unwrap_or_default();
            view.note(
                &mut out,
                &format!(
                    "release ended: {:?}: {}",
                    status
                        .phase
                        .unwrap_or(sluice_core::api::Phase::Initializing),
                    status.message.unwrap_or_default()
                ),
            );
            return Ok(exit);
        }
        if tokio::time::Instant::now() >= deadline {
            view.note(
                &mut out,
                &format!("no end within --timeout ({}); stopping", args.timeout),
            );
            return Ok(Exit::IN_PROGRESS);
        }
    }
}

/// What changes when a release starts or ends: the phase and when it was entered, the
/// revision, and the manual actions carried out (a retry changes only those).
fn resting_state(canary: &Canary) -> impl PartialEq + use<> {
    let status = canary.status.clone().unwrap_or_default();
    (
        status.phase,
        status.last_transition_time,
        status.last_applied_spec,
        status.handled_actions,
    )
}

async fn snapshot(cluster: &Cluster, canary: &Canary, probe: Option<&TrafficProbe>) -> Snapshot {
    let status = canary.status.clone().unwrap_or_default();
    let at = unix_now();
    let (primary, canary_arm, traffic_error) = match probe {
        Some(probe) => match probe.read(at.floor() as i64).await {
            Ok((p, c)) => (p, c, None),
            Err(e) => (Default::default(), Default::default(), Some(e)),
        },
        None => (
            Default::default(),
            Default::default(),
            Some("per-arm traffic: pass --prometheus URL".to_string()),
        ),
    };
    let mut phase = status
        .phase
        .map_or("Initializing".into(), |p| format!("{p:?}"));
    if canary.spec.suspend {
        phase.push_str(" (suspended)");
    }
    Snapshot {
        at,
        phase,
        weight: status.canary_weight,
        analysed_intervals: status.evidence.analysed_intervals,
        message: status.message.clone().unwrap_or_default(),
        primary,
        canary: canary_arm,
        evidence: timeline::evidence(&status),
        traffic_error,
        objects: objects(cluster, &canary.spec.target_ref.name).await,
    }
}

/// The target and its primary, one line each, as `kubectl get` shows them.
async fn objects(cluster: &Cluster, target: &str) -> Vec<String> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut lines = Vec::new();
    for name in [format!("{target}-primary"), target.to_string()] {
        let Ok(Some(d)) = api.get_opt(&name).await else {
            continue;
        };
        let want = d.spec.replicas.unwrap_or(0);
        let ready = d
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        let image = d
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        lines.push(format!(
            "deployment.apps/{:<18} {ready}/{want} ready   {image}",
            d.name_any()
        ));
    }
    lines
}
