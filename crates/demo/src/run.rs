//! `sluice demo` (the whole release on this machine, shown live, then a report) and
//! `sluice demo-controller` (only the controller's loop, over a cluster kept in a file, steering a
//! router in another process: what the end-to-end tests kill and restart).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use tokio::time::MissedTickBehavior;

use super::cluster::ControlPlane;
use super::gateway::{Gateway, GatewayConfig};
use super::on_cluster::{ClusterRelease, ControllerProcess};
use super::prometheus::{self, PrometheusError};
use super::release::{self, Release, ReleaseError, Tick, Verdict};
use super::report;
use super::stage::{Scenario, Stage, StageConfig, StageError, pod_names};
use super::timeline::{self, Decision, Snapshot, Timeline, TrafficProbe};
use super::view::{self, View};
use crate::proxy::LocalRouterClient;
use sluice_controller::cluster::memory::MemoryCluster;
use sluice_core::api::{Canary, CanaryStatus, MetricTemplate, Phase};

/// How often the controller reconciles and the view redraws. The analysis itself runs once an
/// interval: the rollout counts each interval once, however often it is asked.
const TICK: Duration = Duration::from_secs(1);

/// The view keeps drawing this long after the verdict, so the report shows the traffic going
/// back to the primary.
const TAIL: f64 = 5.0;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Canary(#[from] sluice_controller::load::LoadError),
    #[error("{path}: invalid Canary: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot find the sluice executable to start the demo apps: {0}")]
    Executable(std::io::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("interrupted")]
    Interrupted,
    #[error("sluice demo --cluster: {0}")]
    Cluster(String),
}

impl DemoError {
    /// The exit code, as `sluice analyse` has them: 65 invalid input, 66 unreadable file, 69 a
    /// prerequisite missing or unreachable, 70 anything else, 130 interrupted.
    pub fn exit_code(&self) -> u8 {
        use sluice_controller::load::LoadError;
        match self {
            DemoError::Prometheus(_) => 69,
            DemoError::Stage(StageError::Prometheus(_)) => 69,
            DemoError::Canary(LoadError::Read { .. }) => 66,
            DemoError::Canary(_) | DemoError::Invalid { .. } => 65,
            DemoError::Usage(_) => 64,
            DemoError::Interrupted => 130,
            _ => 70,
        }
    }
}

/// The Canary to release: a file's, or the built-in copy of e2e/canary.yaml.
fn canary(path: Option<&Path>) -> Result<Canary, DemoError> {
    let (canary, name) = match path {
        Some(path) => (
            sluice_controller::load::canary_from_file(path)?,
            path.display().to_string(),
        ),
        None => (release::demo_canary()?, "e2e/canary.yaml".to_string()),
    };
    sluice_core::api::validate::validate_canary(&canary).map_err(|e| DemoError::Invalid {
        path: name.clone(),
        message: e.to_string(),
    })?;
    if canary.spec.analysis.metrics.is_empty() {
        return Err(DemoError::Invalid {
            path: name,
            message: "spec.analysis.metrics is empty; the demo shows an analysis".into(),
        });
    }
    Ok(canary)
}

use sluice_controller::clock::unix_seconds_f64 as unix_now;

/// Sleeps to just past the next whole second, so that each tick's `now` (whole seconds, as the
/// status keeps time) is as fresh as it can be and the intervals do not drift.
async fn align_to_second() {
    let fraction = unix_now().fract();
    tokio::time::sleep(Duration::from_secs_f64(1.02 - fraction)).await;
}

/// A folder removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self, DemoError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("sluice-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|source| DemoError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(Self(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct DemoOptions {
    pub scenario: Scenario,
    /// Requests per second; 0 for none.
    pub rate: f64,
    pub report: PathBuf,
    pub canary: Option<PathBuf>,
    /// The demo gives up (no verdict) after this.
    pub max_duration: Duration,
    /// Redraw in place (a terminal) or print plain lines.
    pub interactive: bool,
    /// Run on a real API server (`--cluster`) rather than over a memory cluster.
    pub cluster: Option<ClusterOptions>,
}

/// Where `sluice demo --cluster` finds what it needs from the repository.
pub struct ClusterOptions {
    /// `e2e/cluster/`: up.sh, down.sh, tools.sh.
    pub scripts: PathBuf,
    /// `charts/sluice/`, whose RBAC the controller runs with.
    pub chart: PathBuf,
    /// The crds/ the cluster gets (`sluice crd`).
    pub crds: String,
}

pub struct DemoOutcome {
    pub verdict: Option<Verdict>,
    pub report: PathBuf,
    pub timeline: PathBuf,
}

/// `sluice demo`.
pub async fn run_demo(
    options: DemoOptions,
    out: &mut impl Write,
) -> Result<DemoOutcome, DemoError> {
    let began = Instant::now();
    if !(options.rate.is_finite() && options.rate >= 0.0) {
        return Err(DemoError::Usage(format!(
            "--rate must be a number of requests per second, 0 or more; got {}",
            options.rate
        )));
    }
    let canary = canary(options.canary.as_deref())?;
    let templates = release::demo_templates()?;
    let prometheus_binary = prometheus::find_binary()?;
    let sluice = std::env::current_exe().map_err(DemoError::Executable)?;
    let scratch = ScratchDir::new()?;
    let namespace = canary.namespace().unwrap_or_else(|| "default".into());
    let target = canary.spec.target_ref.name.clone();
    let mut view = View::new(options.interactive);
    view.note(
        out,
        &format!(
            "sluice demo: scenario {}; starting Prometheus ({}), the primary and canary apps, the router and {} requests/s of load...",
            options.scenario.name(),
            prometheus_binary.display(),
            options.rate
        ),
    );
    let config = StageConfig {
        sluice,
        prometheus: prometheus_binary,
        dir: scratch.0.clone(),
        namespace: namespace.clone(),
        target: target.clone(),
        primary: Scenario::primary_app(),
        canary: options.scenario.canary_app(),
        rate: options.rate,
        max_duration: options.max_duration + Duration::from_secs(30),
        discover_pods: options.cluster.is_some(),
    };
    // Listening for Ctrl-C and SIGTERM from here on: a stop asked while the stage starts drops
    // what was started so far, and its processes with it.
    let (stop_tx, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        super::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stage = tokio::select! {
        stage = Stage::start(&config) => stage?,
        _ = stopped.wait_for(|stop| *stop) => return Err(DemoError::Interrupted),
    };
    let result = match &options.cluster {
        None => {
            drive_in_memory(
                &options, &canary, &templates, &stage, stopped, &mut view, out,
            )
            .await
        }
        Some(cluster) => {
            drive_on_cluster(
                &options, cluster, &canary, &templates, &stage, &scratch.0, stopped, &mut view, out,
            )
            .await
        }
    };
    let mut timeline = match result {
        Ok(timeline) => timeline,
        Err(e) => {
            stage.stop().await;
            return Err(e);
        }
    };
    timeline.routes = stage.router.history();
    stage.stop().await;
    drop(scratch);

    let mut json_path = options.report.with_extension("json");
    if json_path == options.report {
        json_path = options.report.with_extension("timeline.json");
    }
    write(&options.report, &report::html(&timeline))?;
    let json = serde_json::to_string_pretty(&timeline).unwrap_or_default();
    write(&json_path, &json)?;
    let shown = format!(
        "{} (and its data: {})",
        options.report.display(),
        json_path.display()
    );
    for line in view::verdict_lines(&timeline, &shown) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "Done in {} (start-up included).",
        view::clock(began.elapsed().as_secs_f64())
    );
    let _ = out.flush();
    Ok(DemoOutcome {
        verdict: timeline.decision.map(|d| d.verdict),
        report: options.report,
        timeline: json_path,
    })
}

fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    let failed = |source| DemoError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    std::fs::write(path, text).map_err(failed)
}

/// Who moves the release: the controller's reconcile in this process over a memory cluster, or
/// a `sluice controller` process on a real API server (then the demo only reads the status).
enum Driver<'a> {
    Memory(&'a Release),
    Cluster(&'a ClusterRelease),
}

impl Driver<'_> {
    async fn tick(&self, now: i64) -> Result<Tick, String> {
        match self {
            Driver::Memory(release) => release.tick(now).await.map_err(|e| e.to_string()),
            Driver::Cluster(release) => release.tick().await.map_err(|e| e.to_string()),
        }
    }

    async fn objects(&self) -> Vec<String> {
        match self {
            Driver::Memory(_) => Vec::new(),
            Driver::Cluster(release) => release.objects().await,
        }
    }
}

/// `sluice demo`: the release over a memory cluster, reconciled in this process.
async fn drive_in_memory(
    options: &DemoOptions,
    canary: &Canary,
    templates: &[MetricTemplate],
    stage: &Stage,
    stopped: tokio::sync::watch::Receiver<bool>,
    view: &mut View,
    out: &mut impl Write,
) -> Result<Timeline, DemoError> {
    let namespace = canary.namespace().unwrap_or_else(|| "default".into());
    let cluster = Arc::new(MemoryCluster::new());
    let url = stage.prometheus.url();
    let release = Release::new(
        cluster,
        canary,
        &url,
        stage.router.clone(),
        options.scenario.canary_app(),
    )?;
    release
        .seed(canary, templates, &Scenario::primary_app())
        .await?;
    let (primary_pod, canary_pod) = pod_names(&canary.spec.target_ref.name);
    let probe = TrafficProbe::new(&url, &namespace, &primary_pod, &canary_pod)?;
    drive_demo(
        options,
        canary,
        &Driver::Memory(&release),
        &probe,
        stopped,
        view,
        out,
    )
    .await
}

/// `sluice demo --cluster`: the release on a real API server (the local control plane, started
/// here unless it runs already or `KUBECONFIG` names a cluster), moved by the real
/// `sluice controller` with the chart's RBAC, its HTTPRoute followed by the local gateway.
#[allow(clippy::too_many_arguments)]
async fn drive_on_cluster(
    options: &DemoOptions,
    cluster: &ClusterOptions,
    canary: &Canary,
    templates: &[MetricTemplate],
    stage: &Stage,
    scratch: &Path,
    stopped: tokio::sync::watch::Receiver<bool>,
    view: &mut View,
    out: &mut impl Write,
) -> Result<Timeline, DemoError> {
    let setup = |e: &dyn std::fmt::Display| DemoError::Cluster(e.to_string());
    let state = std::env::var_os("SLUICE_CLUSTER_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("sluice-cluster"));
    let (plane, started_here) = match std::env::var_os("KUBECONFIG") {
        Some(kubeconfig) => (ControlPlane::existing(PathBuf::from(kubeconfig)), false),
        None => {
            let running = state.join("kubeconfig").is_file();
            view.note(
                out,
                if running {
                    "on the local control plane that runs already (e2e/cluster/up.sh)"
                } else {
                    "starting the local control plane (e2e/cluster/up.sh; the first run builds it, about 20 minutes)"
                },
            );
            let plane = ControlPlane::up(&cluster.scripts, &state).map_err(|e| setup(&e))?;
            (plane, !running)
        }
    };
    let result = async {
        let client = plane.client().await.map_err(|e| setup(&e))?;
        let tools = std::process::Command::new("bash")
            .arg(cluster.scripts.join("tools.sh"))
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| setup(&e))?;
        let helm = PathBuf::from(String::from_utf8_lossy(&tools.stdout).trim()).join("helm");
        let release = ClusterRelease::new(client.clone(), canary, options.scenario.canary_app());
        let url = stage.prometheus.url();
        let account = release
            .seed(
                &helm,
                &cluster.chart,
                &cluster.crds,
                canary,
                templates,
                &url,
                &Scenario::primary_app(),
            )
            .await
            .map_err(|e| setup(&e))?;
        let sluice = std::env::current_exe().map_err(DemoError::Executable)?;
        let namespace = canary.namespace().unwrap_or_else(|| "default".into());
        let controller = ControllerProcess::start(
            &sluice, &client, &plane, &namespace, &account, &url, scratch,
        )
        .await
        .map_err(|e| setup(&e))?;
        let (primary_app, canary_app) = stage.apps();
        let gateway = Gateway::start(GatewayConfig {
            client,
            canary: canary.clone(),
            router: stage.router.clone(),
            primary_app,
            canary_app,
            targets_file: stage.prometheus.discovery_file(),
        });
        let probe = TrafficProbe::for_target(&url, &namespace, &canary.spec.target_ref.name)?;
        let timeline = drive_demo(
            options,
            canary,
            &Driver::Cluster(&release),
            &probe,
            stopped,
            view,
            out,
        )
        .await;
        drop(gateway);
        controller.stop().await;
        timeline
    }
    .await;
    if started_here {
        view.note(
            out,
            "stopping the local control plane (e2e/cluster/down.sh)",
        );
        plane.down().map_err(|e| setup(&e))?;
    }
    result
}

/// The demo's loop: reconcile (or read the status), read the traffic, draw, once a second until
/// the verdict (and a few seconds more), an interruption, or `max_duration`.
async fn drive_demo(
    options: &DemoOptions,
    canary: &Canary,
    release: &Driver<'_>,
    probe: &TrafficProbe,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    view: &mut View,
    out: &mut impl Write,
) -> Result<Timeline, DemoError> {
    let namespace = canary.namespace().unwrap_or_else(|| "default".into());
    align_to_second().await;
    let mut timeline = Timeline {
        scenario: options.scenario.name().into(),
        title: None,
        canary: format!("{namespace}/{}", canary.name_any()),
        interval_seconds: canary.spec.analysis.interval.as_secs(),
        alpha: canary.spec.analysis.alpha,
        rate: options.rate,
        started_at: unix_now(),
        snapshots: Vec::new(),
        routes: Vec::new(),
        decision: None,
        status: None,
    };
    let deadline = Instant::now() + options.max_duration;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut status = CanaryStatus::default();
    let mut tail_until = None;
    // A promotion is decided when the release enters Promoting; it ends (Succeeded) once the
    // primary has rolled out, a few seconds later. The report marks the decision.
    let mut promoting_since: Option<(f64, u32, String)> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => {
                view.note(out, "interrupted: stopping the demo");
                return Err(DemoError::Interrupted);
            }
        }
        let at = unix_now();
        let now = at.floor() as i64;
        let mut problem = None;
        match release.tick(now).await {
            Ok(tick) => {
                status = tick.status;
                if status.phase == Some(Phase::Promoting) && promoting_since.is_none() {
                    promoting_since = Some((
                        at,
                        status.evidence.analysed_intervals,
                        promotion_reason(canary, &status),
                    ));
                }
                if let (Some(verdict), None) = (tick.verdict, &timeline.decision) {
                    let decision = match (&promoting_since, verdict) {
                        (Some((at, analysed, reason)), Verdict::Promoted) => Decision {
                            at: *at,
                            verdict,
                            reason: reason.clone(),
                            analysed_intervals: *analysed,
                        },
                        _ => Decision {
                            at,
                            verdict,
                            reason: status.message.clone().unwrap_or_default(),
                            analysed_intervals: status.evidence.analysed_intervals,
                        },
                    };
                    timeline.decision = Some(decision);
                    tail_until = Some(at + TAIL);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reconcile failed");
                problem = Some(format!("reconcile failed, retrying: {e}"));
            }
        }
        let traffic = probe.read(now).await;
        let (primary, canary_stats, traffic_error) = match traffic {
            Ok((p, c)) => (p, c, None),
            Err(e) => (Default::default(), Default::default(), Some(e)),
        };
        let snapshot = Snapshot {
            at,
            phase: status
                .phase
                .map_or("Initializing".into(), |p| format!("{p:?}")),
            weight: status.canary_weight,
            analysed_intervals: status.evidence.analysed_intervals,
            message: problem.unwrap_or_else(|| status.message.clone().unwrap_or_default()),
            primary,
            canary: canary_stats,
            evidence: timeline::evidence(&status),
            traffic_error,
            objects: release.objects().await,
        };
        view.draw(out, &timeline, &snapshot);
        timeline.snapshots.push(snapshot);
        if tail_until.is_some_and(|end| at >= end) {
            break;
        }
        if Instant::now() >= deadline {
            view.note(
                out,
                &format!(
                    "no verdict within --max-duration ({} s); stopping",
                    options.max_duration.as_secs()
                ),
            );
            break;
        }
    }
    timeline.status = Some(status);
    Ok(timeline)
}

/// Why a release is being promoted, in words: its schedule is done and each comparison's
/// evidence rules out a regression (the rollout's message at that point only says what it does).
fn promotion_reason(canary: &Canary, status: &CanaryStatus) -> String {
    let steps = sluice_core::rollout::steps_to_promotion(&canary.spec);
    let mut reason =
        format!("the schedule ran its {steps} steps and every comparison rules out a regression");
    for metric in &status.evidence.metrics {
        if let Some(outcome) = &metric.last_outcome {
            reason.push_str(&format!("\n  {}: {outcome}", metric.name));
        }
    }
    reason
}

pub struct ControllerOptions {
    pub cluster_file: PathBuf,
    pub prometheus: String,
    pub router: String,
    pub scenario: Scenario,
    pub canary: Option<PathBuf>,
    /// Exit once the release has a verdict.
    pub until_done: bool,
    pub max_duration: Duration,
}

/// `sluice demo-controller`: returns the verdict (with `until_done`), or `None` when stopped by
/// a signal or `max_duration` first.
pub async fn run_controller(
    options: ControllerOptions,
    out: &mut impl Write,
) -> Result<Option<Verdict>, DemoError> {
    let canary = canary(options.canary.as_deref())?;
    let router = LocalRouterClient::new(&options.router)
        .map_err(|e| DemoError::Usage(format!("--router: {e}")))?;
    let cluster = Arc::new(
        MemoryCluster::persisted(options.cluster_file.clone())
            .map_err(|e| DemoError::Release(e.into()))?,
    );
    let release = Release::new(
        cluster,
        &canary,
        &options.prometheus,
        Arc::new(router),
        options.scenario.canary_app(),
    )?;
    let seeded = release
        .seed(
            &canary,
            &release::demo_templates()?,
            &Scenario::primary_app(),
        )
        .await?;
    if seeded {
        let _ = writeln!(
            out,
            "seeded {} with Canary {}/{}",
            options.cluster_file.display(),
            canary.namespace().unwrap_or_default(),
            canary.name_any()
        );
    } else {
        let stored = release.canary().await?;
        let status = stored.status.unwrap_or_default();
        let _ = writeln!(
            out,
            "resuming from {}: phase {:?}, canary weight {}, {} analysed interval(s)",
            options.cluster_file.display(),
            status.phase,
            status.canary_weight,
            status.evidence.analysed_intervals
        );
    }
    let _ = out.flush();
    let deadline = Instant::now() + options.max_duration;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    let mut last = None;
    align_to_second().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut shutdown => return Ok(None),
        }
        let now = unix_now().floor() as i64;
        match release.tick(now).await {
            Ok(tick) => {
                let status = &tick.status;
                let key = (
                    status.phase,
                    status.canary_weight,
                    status.evidence.analysed_intervals,
                );
                if last != Some(key) {
                    let _ = writeln!(
                        out,
                        "{now} phase {:?} weight {} analysed {}: {}",
                        status.phase,
                        status.canary_weight,
                        status.evidence.analysed_intervals,
                        status.message.as_deref().unwrap_or_default()
                    );
                    let _ = out.flush();
                    last = Some(key);
                }
                if let Some(verdict) = tick.verdict
                    && options.until_done
                {
                    let _ = writeln!(out, "verdict: {}", verdict.headline());
                    return Ok(Some(verdict));
                }
            }
            Err(e) => {
                let _ = writeln!(out, "{now} reconcile failed, retrying: {e}");
            }
        }
        if Instant::now() >= deadline {
            let _ = writeln!(
                out,
                "no verdict within --max-duration ({} s)",
                options.max_duration.as_secs()
            );
            return Ok(None);
        }
    }
}
