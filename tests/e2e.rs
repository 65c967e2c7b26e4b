//! End to end, with real processes on 127.0.0.1: a real Prometheus (Debian's package) scraping
//! two `sluice demo-app` processes, the local weighted router, steady load, and the controller's
//! own reconcile deciding. Each scenario is a test of its own with its own ports and folders, so
//! they can run in parallel; each asserts the traffic weights the router was given and the final
//! phase.
//!
//! (a)-(d) run `sluice demo` as a process and read the timeline it writes next to its report.
//! (e) and (f) start the stage here and run `sluice demo-controller` against it as a process, so
//! that the controller can be killed (e) or Prometheus can be (f) while the rest keeps running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sluice_controller::cluster::memory::MemoryCluster;
use sluice_controller::reconcile::load_canary;
use sluice_core::api::{CanaryStatus, Phase};
use sluice_demo::proxy::RouteChange;
use sluice_demo::release::{self, Verdict};
use sluice_demo::stage::{Scenario, Stage, StageConfig};
use sluice_demo::timeline::Timeline;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// The demo Canary's schedule: canary weights in order, then back to 0 on promotion.
const PROMOTED_WEIGHTS: [u32; 7] = [0, 10, 20, 30, 40, 50, 0];

/// Requests per second, as `sluice demo` sends by default.
const RATE: f64 = 150.0;

/// Longest a scenario may take before the test gives up (a run takes 40 s to 2 min).
const SCENARIO_LIMIT: Duration = Duration::from_secs(240);

fn prometheus_binary() -> PathBuf {
    sluice_demo::prometheus::find_binary().unwrap_or_else(|e| {
        panic!("{e}; the end-to-end tests need it (.ci/run installs it)");
    })
}

/// `sluice demo` as a child process. Dropped (a failed assertion included), it is asked to stop
/// with SIGTERM, so that it stops its own Prometheus and apps, and killed if it does not.
struct DemoProcess {
    child: Child,
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct DemoRun {
    status: ExitStatus,
    timeline: Timeline,
    output: String,
    report: PathBuf,
}

/// Runs `sluice demo ARGS` with its report in `dir`, and reads its timeline.
fn run_demo(dir: &Path, args: &[&str]) -> DemoRun {
    let report = dir.join("report.html");
    let log = dir.join("demo.log");
    let child = Command::new(SLUICE)
        .arg("demo")
        .args(args)
        .arg("--report")
        .arg(&report)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sluice demo");
    let mut demo = DemoProcess { child };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = demo.child.try_wait().expect("wait for sluice demo") {
            break status;
        }
        assert!(
            started.elapsed() < SCENARIO_LIMIT,
            "sluice demo {args:?} still running after {} s; its output so far:\n{}",
            SCENARIO_LIMIT.as_secs(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "sluice demo {args:?}: {status} after {:.0} s\n{output}",
        started.elapsed().as_secs_f64()
    );
    let json = std::fs::read_to_string(report.with_extension("json"))
        .unwrap_or_else(|e| panic!("no timeline next to the report ({e}); output:\n{output}"));
    let timeline: Timeline = serde_json::from_str(&json).expect("the timeline parses");
    DemoRun {
        status,
        timeline,
        output,
        report,
    }
}

/// The canary weights the router was given, repeated settings merged.
fn canary_weights(routes: &[RouteChange]) -> Vec<u32> {
    let mut weights: Vec<u32> = routes.iter().map(|r| r.routes.canary).collect();
    weights.dedup();
    for route in routes {
        assert_eq!(
            route.routes.primary + route.routes.canary,
            100,
            "{routes:?}"
        );
        assert!(!route.routes.canary_match);
    }
    weights
}

fn final_status(timeline: &Timeline) -> &CanaryStatus {
    timeline.status.as_ref().expect("the final status")
}

fn condition_reason(status: &CanaryStatus) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.kind == "Promoted")
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// A rolled-back release: traffic went up the schedule for a while, never to a promotion, then
/// all back to the primary, because of `metric`.
fn assert_rolled_back_by(run: &DemoRun, metric: &str) {
    assert_eq!(run.status.code(), Some(1), "{}", run.output);
    let decision = run.timeline.decision.as_ref().expect("a decision");
    assert_eq!(decision.verdict, Verdict::RolledBack);
    assert!(
        decision
            .reason
            .contains(&format!("rolling back podinfo: {metric}:")),
        "{}",
        decision.reason
    );
    // Caught within the first intervals. A failure as loud as one pod's burst is counted in
    // full once it has lasted longer than a burst (issue 15): about 50 s, which the demo's 10-s
    // intervals step through to the maximum weight (in 1-m intervals it is the first one or two).
    assert!(decision.analysed_intervals <= 8, "{decision:?}");
    let status = final_status(&run.timeline);
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(status.canary_weight, 0);
    assert_eq!(condition_reason(status), sluice_core::rollout::FAILED);
    let weights = canary_weights(&run.timeline.routes);
    assert!(weights.len() >= 3, "{weights:?}");
    assert_eq!(weights[..2], [0, 10], "{weights:?}");
    assert_eq!(weights.last(), Some(&0), "{weights:?}");
    let steps = &weights[1..weights.len() - 1];
    assert!(
        steps.windows(2).all(|w| w[1] == w[0] + 10) && steps.iter().all(|w| *w <= 50),
        "{weights:?}"
    );
    assert!(
        !run.timeline
            .snapshots
            .iter()
            .any(|s| s.phase == "Promoting" || s.phase == "Succeeded")
    );
}

#[test]
fn a_good_release_is_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_demo(dir.path(), &["--scenario", "good"]);
    assert_eq!(run.status.code(), Some(0), "{}", run.output);
    let decision = run.timeline.decision.as_ref().expect("a decision");
    assert_eq!(decision.verdict, Verdict::Promoted);
    let status = final_status(&run.timeline);
    assert_eq!(status.phase, Some(Phase::Succeeded));
    assert_eq!(condition_reason(status), "Succeeded");
    assert_eq!(canary_weights(&run.timeline.routes), PROMOTED_WEIGHTS);
    // Both comparisons had real traffic in both arms.
    for metric in &status.evidence.metrics {
        let test = metric.sequential.as_ref().expect("a comparison");
        assert!(
            test.canary.requests >= 1000 && test.primary.requests >= 1000,
            "{metric:?}"
        );
        assert!(!test.rejected);
    }
    // The traffic seen per arm follows the weight: at 50% both arms serve about the same.
    let at_half = run
        .timeline
        .snapshots
        .iter()
        .rfind(|s| s.phase == "Progressing" && s.weight == 50)
        .expect("a moment at 50%");
    let (p, c) = (
        at_half.primary.rps.unwrap_or_default(),
        at_half.canary.rps.unwrap_or_default(),
    );
    assert!(c > 0.25 * (p + c), "primary {p} rps, canary {c} rps");
    let page = std::fs::read_to_string(&run.report).unwrap();
    assert_eq!(page.matches("<svg").count(), 4);
    assert!(page.contains("PROMOTED"));
    assert!(run.output.contains("Verdict: PROMOTED"));
}

#[test]
fn five_more_points_of_errors_are_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_demo(dir.path(), &["--scenario", "errors"]);
    assert_rolled_back_by(&run, "error-rate");
}

#[test]
fn a_doubled_latency_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_demo(dir.path(), &["--scenario", "latency"]);
    assert_rolled_back_by(&run, "latency");
}

#[test]
fn without_traffic_the_release_holds_and_ends_inconclusive() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_demo(dir.path(), &["--scenario", "good", "--rate", "0"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.output);
    let decision = run.timeline.decision.as_ref().expect("a decision");
    assert_eq!(decision.verdict, Verdict::Inconclusive);
    let status = final_status(&run.timeline);
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(condition_reason(status), sluice_core::rollout::INCONCLUSIVE);
    assert!(
        decision.reason.contains("inconclusive: no data"),
        "{decision:?}"
    );
    // Held at the first step the whole time: never more traffic, never promoted.
    assert_eq!(canary_weights(&run.timeline.routes), [0, 10, 0]);
    assert!(run.timeline.snapshots.iter().all(|s| s.weight <= 10));
    assert!(
        !run.timeline
            .snapshots
            .iter()
            .any(|s| s.phase == "Promoting" || s.phase == "Succeeded")
    );
    // It ended at the deadline (60 s after the first step), not before.
    let first_step = run
        .timeline
        .routes
        .iter()
        .find(|r| r.routes.canary == 10)
        .expect("the first step");
    assert!(
        decision.at - first_step.at >= 60.0,
        "{decision:?} {first_step:?}"
    );
}

// ---- (e) and (f): the stage here, the controller as a process --------------------------------

fn runtime() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn start_stage(dir: &Path) -> Stage {
    let canary = release::demo_canary().unwrap();
    let config = StageConfig {
        sluice: PathBuf::from(SLUICE),
        prometheus: prometheus_binary(),
        dir: dir.join("stage"),
        namespace: "demo".into(),
        target: canary.spec.target_ref.name.clone(),
        primary: Scenario::primary_app(),
        canary: Scenario::Good.canary_app(),
        rate: RATE,
        max_duration: SCENARIO_LIMIT,
        discover_pods: false,
    };
    Stage::start(&config).await.expect("the stage starts")
}

/// `sluice demo-controller` over `file`, killed (SIGKILL) when dropped.
fn spawn_controller(dir: &Path, file: &Path, stage: &Stage, run: u32) -> tokio::process::Child {
    let log = dir.join(format!("controller-{run}.log"));
    tokio::process::Command::new(SLUICE)
        .arg("demo-controller")
        .arg("--cluster-file")
        .arg(file)
        .args(["--prometheus", &stage.prometheus.url()])
        .args(["--router", &stage.admin_url()])
        .args(["--until-done", "--max-duration", "300"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start sluice demo-controller")
}

/// The Canary's status as the controller last wrote it.
async fn stored_status(file: &Path) -> Option<CanaryStatus> {
    let cluster = MemoryCluster::persisted(file.to_path_buf()).ok()?;
    load_canary(&cluster, "demo", "podinfo")
        .await
        .ok()
        .flatten()?
        .status
}

/// What was seen of the release, polled from the cluster file every half second.
#[derive(Default)]
struct Watch {
    /// (seen at, status) whenever the phase, weight, analysed intervals or last analysis changed.
    changes: Vec<(f64, CanaryStatus)>,
}

impl Watch {
    async fn poll(&mut self, file: &Path) -> Option<CanaryStatus> {
        let status = stored_status(file).await?;
        let key = |s: &CanaryStatus| {
            (
                s.phase,
                s.canary_weight,
                s.evidence.analysed_intervals,
                s.last_analysis_time.clone(),
                s.message.clone(),
            )
        };
        if self
            .changes
            .last()
            .is_none_or(|(_, s)| key(s) != key(&status))
        {
            self.changes.push((unix_now(), status.clone()));
        }
        Some(status)
    }

    /// Polls until `done` holds for the stored status, or panics after `limit`.
    async fn until(
        &mut self,
        file: &Path,
        limit: Duration,
        what: &str,
        done: impl Fn(&CanaryStatus) -> bool,
    ) -> CanaryStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.poll(file).await
                && done(&status)
            {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "waited {} s for {what}; last status: {:?}",
                limit.as_secs(),
                self.changes.last().map(|(_, s)| s)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Polls until the controller exits; returns its exit status.
    async fn until_exit(
        &mut self,
        file: &Path,
        controller: &mut tokio::process::Child,
        limit: Duration,
    ) -> ExitStatus {
        let started = Instant::now();
        loop {
            self.poll(file).await;
            if let Ok(Some(status)) = controller.try_wait() {
                self.poll(file).await;
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the controller did not finish within {} s; last status: {:?}",
                limit.as_secs(),
                self.changes.last().map(|(_, s)| s)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every analysis counted exactly once: each new `lastAnalysisTime` after the first step
    /// comes with exactly one more analysed interval, one interval (give or take the second a
    /// tick takes) after the previous look; the count matches the time elapsed.
    fn assert_intervals_counted_once(&self, interval: i64) {
        let mut looks: Vec<(i64, u32)> = Vec::new();
        for (_, status) in &self.changes {
            let Some(time) = status.last_analysis_time.as_deref() else {
                continue;
            };
            let at = chrono::DateTime::parse_from_rfc3339(time)
                .expect("RFC 3339")
                .timestamp();
            match looks.last() {
                Some((last_at, _)) if *last_at == at => {}
                _ => looks.push((at, status.evidence.analysed_intervals)),
            }
        }
        assert!(looks.len() >= 3, "{looks:?}");
        assert_eq!(
            looks[0].1, 0,
            "the first step is not an analysis: {looks:?}"
        );
        for pair in looks.windows(2) {
            let ((t0, n0), (t1, n1)) = (pair[0], pair[1]);
            assert_eq!(n1, n0 + 1, "one more interval per look: {looks:?}");
            assert!(
                (interval..interval + 5).contains(&(t1 - t0)),
                "looks one interval apart, none lost: {looks:?}"
            );
        }
        let (first, _) = looks[0];
        let (last, count) = looks[looks.len() - 1];
        assert_eq!(
            i64::from(count),
            (last - first) / interval,
            "intervals counted vs elapsed: {looks:?}"
        );
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn interval() -> i64 {
    release::demo_canary()
        .unwrap()
        .spec
        .analysis
        .interval
        .as_secs() as i64
}

#[test]
fn a_controller_killed_mid_analysis_resumes_from_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.json");
    runtime().block_on(async {
        let stage = start_stage(dir.path()).await;
        let mut watch = Watch::default();
        let mut first = spawn_controller(dir.path(), &file, &stage, 1);
        let at_kill = watch
            .until(
                &file,
                Duration::from_secs(90),
                "two analysed intervals",
                |s| s.phase == Some(Phase::Progressing) && s.evidence.analysed_intervals >= 2,
            )
            .await;
        first.kill().await.expect("SIGKILL the controller");
        let killed_at = unix_now();
        // Whatever it wrote last is what the next one starts from.
        let at_kill = stored_status(&file).await.unwrap_or(at_kill);
        assert_eq!(at_kill.phase, Some(Phase::Progressing), "{at_kill:?}");
        eprintln!(
            "killed the controller at weight {} after {} analysed intervals",
            at_kill.canary_weight, at_kill.evidence.analysed_intervals
        );

        let mut second = spawn_controller(dir.path(), &file, &stage, 2);
        let exit = watch
            .until_exit(&file, &mut second, Duration::from_secs(150))
            .await;
        let log = std::fs::read_to_string(dir.path().join("controller-2.log")).unwrap();
        assert!(log.starts_with("resuming from"), "{log}");
        assert_eq!(exit.code(), Some(0), "{log}");
        let status = stored_status(&file).await.expect("the final status");
        assert_eq!(status.phase, Some(Phase::Succeeded));

        // The same weights as an uninterrupted release, and the first change after the restart
        // is the next step from where the killed controller had got to, not a new start.
        let history = stage.router.history();
        assert_eq!(canary_weights(&history), PROMOTED_WEIGHTS, "{history:?}");
        let next = history
            .iter()
            .find(|r| r.at > killed_at && r.routes.canary != at_kill.canary_weight)
            .expect("a change after the restart");
        assert_eq!(
            next.routes.canary,
            at_kill.canary_weight + 10,
            "{history:?}"
        );
        watch.assert_intervals_counted_once(interval());
        stage.stop().await;
    });
}

#[test]
fn a_prometheus_outage_holds_the_release_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.json");
    runtime().block_on(async {
        let mut stage = start_stage(dir.path()).await;
        let mut watch = Watch::default();
        let mut controller = spawn_controller(dir.path(), &file, &stage, 1);
        let before = watch
            .until(
                &file,
                Duration::from_secs(90),
                "two analysed intervals",
                |s| s.phase == Some(Phase::Progressing) && s.evidence.analysed_intervals >= 2,
            )
            .await;
        stage.prometheus.kill().await;
        let killed_at = unix_now();
        let changes_before = stage.router.history().len();

        // The next look finds no data and holds.
        let held = watch
            .until(
                &file,
                Duration::from_secs(30),
                "an analysis without Prometheus",
                |s| s.evidence.analysed_intervals > before.evidence.analysed_intervals,
            )
            .await;
        let outage = unix_now() - killed_at;
        assert!(
            held.message
                .as_deref()
                .is_some_and(|m| m.starts_with("holding, no data")),
            "{held:?}"
        );
        assert_eq!(held.phase, Some(Phase::Progressing));
        assert_eq!(held.canary_weight, before.canary_weight, "{held:?}");
        assert!(controller.try_wait().unwrap().is_none(), "still running");
        let held_weight = stage.router.routes().canary;
        assert_eq!(
            stage.router.history().len(),
            changes_before,
            "no traffic change while Prometheus is gone"
        );

        stage
            .prometheus
            .restart()
            .await
            .expect("Prometheus restarts");
        let restarted_at = unix_now();
        eprintln!(
            "Prometheus was down {:.0} s (kill to restart {:.0} s)",
            outage,
            restarted_at - killed_at
        );
        let exit = watch
            .until_exit(&file, &mut controller, Duration::from_secs(150))
            .await;
        let log = std::fs::read_to_string(dir.path().join("controller-1.log")).unwrap();
        assert_eq!(exit.code(), Some(0), "{log}");
        let status = stored_status(&file).await.expect("the final status");
        assert_eq!(status.phase, Some(Phase::Succeeded));

        // While Prometheus was gone: no weight change at all (the step of the look before the
        // kill was applied before its status was written) and no promotion.
        let history = stage.router.history();
        let during: Vec<&RouteChange> = history
            .iter()
            .filter(|r| r.at > killed_at && r.at < restarted_at)
            .collect();
        assert!(during.is_empty(), "{during:?} in {history:?}");
        assert_eq!(held_weight, before.canary_weight);
        for (at, s) in &watch.changes {
            if *at > killed_at + 1.0 && *at < restarted_at {
                assert!(
                    matches!(s.phase, Some(Phase::Progressing)),
                    "no promotion during the outage: {s:?}"
                );
                assert_eq!(s.canary_weight, held_weight, "{s:?}");
            }
        }
        // Once it was back, the release went on to the end of its schedule and was promoted.
        assert_eq!(canary_weights(&history), PROMOTED_WEIGHTS, "{history:?}");
        assert!(
            history
                .iter()
                .any(|r| r.at > restarted_at && r.routes.canary > held_weight),
            "{history:?}"
        );
        stage.stop().await;
    });
}
