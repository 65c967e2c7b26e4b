//! The analysers under comparison. sluice runs through its real state machine and judge; the
//! peers' policies are written here, as BENCHMARK.md defines them, and nowhere in sluice's
//! decision path.

use statrs::stats_tests::Alternative;
use statrs::stats_tests::mannwhitneyu::{MannWhitneyUMethod, mannwhitneyu};

use sluice_core::analysis::{Observation, Observed, RequestCounts};
use sluice_core::api::ReleaseVerdict;
use sluice_core::api::duration::GoDuration;
use sluice_core::api::{Canary, CanaryStatus, HookType, Phase};
use sluice_core::rollout::{self, HookOutcome, MetricsWindow, Workload, World};

/// One arm's counts over a read window; histogram buckets are cumulative, `+Inf` last.
#[derive(Clone, Debug, PartialEq)]
pub struct ArmCounts {
    pub requests: f64,
    pub errors: f64,
    pub buckets: Vec<(f64, f64)>,
}

/// What an analyser reads at a decision: each arm's counts, or nothing when no scrape landed.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub canary: Option<ArmCounts>,
    pub primary: Option<ArmCounts>,
}

/// The ground truth of one scrape window, for the oracle only.
#[derive(Clone, Debug, PartialEq)]
pub struct Truth {
    pub at: i64,
    pub canary_requests: u64,
    pub canary_errors: u64,
    pub canary_slow: u64,
    pub canary_error_probability: f64,
    pub primary_error_probability: f64,
    pub canary_slow_probability: f64,
    pub primary_slow_probability: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Go on with this canary weight.
    Weight(u32),
    Promote,
    Rollback,
    Inconclusive,
}

pub trait Policy {
    /// The canary's weight when it first takes traffic.
    fn start(&mut self) -> u32;
    /// Seconds between decisions.
    fn decision_every(&self) -> i64 {
        60
    }
    /// The window each decision reads at `t`: the last minute (or the last decision, when
    /// decisions are further apart).
    fn window(&self, _t: i64) -> i64 {
        self.decision_every().max(60)
    }
    /// Decides at `t` seconds from the start; `truth` covers the scrapes since the last decision.
    fn decide(&mut self, t: i64, window: &Window, truth: &[Truth]) -> Step;
}

/// Flagger's tutorial schedule: 10, 20, 30, 40, 50.
const WEIGHTS: [u32; 5] = [10, 20, 30, 40, 50];
const EPOCH: i64 = 1_800_000_000;

// ---- sluice ---------------------------------------------------------------------------------

/// sluice as configured by default: errors and latency compared with the primary, α = 1%.
pub struct Sluice {
    canary: Canary,
    status: CanaryStatus,
    world: World,
}

pub const SLUICE_CANARY: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: Canary
metadata: {name: bench, namespace: bench}
spec:
  targetRef: {kind: Deployment, name: bench}
  analysis:
    interval: 1m
    stepWeight: 10
    maxWeight: 50
    metrics:
      - name: errors
        templateRef: {name: errors}
        comparison: {type: errorRate, requestsTemplateRef: {name: requests}}
      - name: latency
        templateRef: {name: buckets}
        comparison: {type: latency, quantile: 0.99}
"#;

impl Sluice {
    pub fn new() -> Self {
        Self::with_canary(SLUICE_CANARY)
    }

    /// The same Canary with `analysis.checkInterval` set, when given.
    pub fn with_check_seconds(mut self, check_seconds: Option<u64>) -> Self {
        if let Some(seconds) = check_seconds {
            self.canary.spec.analysis.check_interval = Some(GoDuration::from_secs(seconds));
        }
        self
    }

    /// sluice with another Canary (its analysis must name the metrics `errors` and `latency`).
    pub fn with_canary(yaml: &str) -> Self {
        // The benchmark's own fixed YAML: a parse failure is a bug in the benchmark.
        let canary: Canary =
            serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("benchmark Canary: {e}"));
        // The simulator's arms: one canary pod, two primary pods.
        let ready = |replicas| {
            Some(Workload {
                replicas,
                ready: true,
                message: None,
            })
        };
        Self {
            canary,
            status: CanaryStatus {
                phase: Some(Phase::Initialized),
                last_applied_spec: Some("old".into()),
                ..CanaryStatus::default()
            },
            world: World {
                target: ready(1),
                primary: ready(2),
                revision: Some("new".into()),
                ..World::default()
            },
        }
    }

    /// Steps the state machine at `t` until it settles; returns the last decision's phase.
    fn settle(&mut self, t: i64, observations: Option<Vec<Observation>>) {
        let mut answers = Simulated { observations };
        for _ in 0..4 {
            let decision = rollout::drive(
                &self.canary.spec,
                &self.status,
                &self.world,
                EPOCH + t,
                &mut answers,
            );
            match ready(decision) {
                Some(Ok(decision)) => {
                    let moved = !decision.actions.is_empty();
                    self.status = decision.status;
                    if !moved || decision.judgement.is_some() {
                        return;
                    }
                }
                // Asked for what this look does not have (metrics between looks): wait.
                Some(Err(_)) | None => return,
            }
        }
    }
}

/// The benchmark's answers: the window's observations when the look has some, no webhooks.
struct Simulated {
    observations: Option<Vec<Observation>>,
}

/// A need the simulation cannot meet at this moment.
struct NotNow;

impl rollout::Answers for Simulated {
    type Error = NotNow;

    async fn metrics(&mut self, _: MetricsWindow, _: i64) -> Result<Vec<Observation>, NotNow> {
        self.observations.take().ok_or(NotNow)
    }

    async fn hook(&mut self, _: HookType) -> Result<HookOutcome, NotNow> {
        Err(NotNow)
    }
}

/// The output of a future that is ready at once, as the simulation's answers are; `None` if it
/// is not.
fn ready<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

impl Default for Sluice {
    fn default() -> Self {
        Self::new()
    }
}

fn observations(window: &Window) -> Vec<Observation> {
    let missing = |metric: &str| Observation {
        metric: metric.into(),
        result: Err("no scrape in the window".into()),
    };
    let (Some(c), Some(p)) = (&window.canary, &window.primary) else {
        return vec![missing("errors"), missing("latency")];
    };
    vec![
        Observation {
            metric: "errors".into(),
            result: Ok(Observed::Counts {
                canary: RequestCounts {
                    requests: c.requests,
                    errors: c.errors,
                },
                primary: RequestCounts {
                    requests: p.requests,
                    errors: p.errors,
                },
            }),
        },
        Observation {
            metric: "latency".into(),
            result: Ok(Observed::Histograms {
                canary: c.buckets.clone(),
                primary: p.buckets.clone(),
            }),
        },
    ]
}

impl Policy for Sluice {
    fn start(&mut self) -> u32 {
        self.settle(0, None);
        self.status.canary_weight
    }

    /// A look every `checkInterval`.
    fn decision_every(&self) -> i64 {
        self.canary.spec.analysis.check_seconds() as i64
    }

    /// Running totals since the canary's first traffic, as the controller queries them.
    fn window(&self, t: i64) -> i64 {
        t
    }

    fn decide(&mut self, t: i64, window: &Window, _: &[Truth]) -> Step {
        self.settle(t, Some(observations(window)));
        match self.status.verdict() {
            Some(ReleaseVerdict::Promoted) => Step::Promote,
            Some(ReleaseVerdict::RolledBack) => Step::Rollback,
            Some(ReleaseVerdict::Inconclusive) => Step::Inconclusive,
            None => Step::Weight(self.status.canary_weight),
        }
    }
}

// ---- shared helpers -----------------------------------------------------------------------

/// Prometheus' `histogram_quantile`: linear interpolation inside the bucket.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(previous.0);
            }
            let width = count - previous.1;
            let within = if width > 0.0 {
                (rank - previous.1) / width
            } else {
                1.0
            };
            return Some(previous.0 + (le - previous.0) * within);
        }
        previous = (le, count);
    }
    Some(previous.0)
}

/// Canary success rate in percent and p99 in ms, or None when there is no data (NaN in PromQL).
fn canary_checks(window: &Window) -> Option<(f64, f64)> {
    let c = window.canary.as_ref()?;
    if c.requests <= 0.0 {
        return None;
    }
    let success = 100.0 * (1.0 - c.errors / c.requests);
    let p99 = histogram_quantile(0.99, &c.buckets)? * 1000.0;
    Some((success, p99))
}

// ---- Flagger default --------------------------------------------------------------------------

/// Flagger's default checks: canary success rate >= 99% and p99 <= 500 ms each interval; a
/// missing value fails; failed checks never reset; roll back at 5; after a passing check at the
/// maximum weight, promote.
#[derive(Default)]
pub struct Flagger {
    step: usize,
    failed: u32,
}

impl Policy for Flagger {
    fn start(&mut self) -> u32 {
        WEIGHTS[0]
    }

    fn decide(&mut self, _: i64, window: &Window, _: &[Truth]) -> Step {
        let pass =
            canary_checks(window).is_some_and(|(success, p99)| success >= 99.0 && p99 <= 500.0);
        if !pass {
            self.failed += 1;
            if self.failed >= 5 {
                return Step::Rollback;
            }
            return Step::Weight(WEIGHTS[self.step]);
        }
        if self.step + 1 >= WEIGHTS.len() {
            return Step::Promote;
        }
        self.step += 1;
        Step::Weight(WEIGHTS[self.step])
    }
}

// ---- Argo-style ---------------------------------------------------------------------------

/// Argo Rollouts with a background analysis `result >= 0.99` every interval and
/// `failureLimit: 3` (fails on the 4th failure); steps of one interval each; a missing value is
/// an error, and the default `consecutiveErrorLimit: 4` fails on the 5th in a row.
#[derive(Default)]
pub struct Argo {
    step: usize,
    failures: u32,
    consecutive_errors: u32,
}

impl Policy for Argo {
    fn start(&mut self) -> u32 {
        WEIGHTS[0]
    }

    fn decide(&mut self, _: i64, window: &Window, _: &[Truth]) -> Step {
        match canary_checks(window) {
            None => {
                self.consecutive_errors += 1;
                if self.consecutive_errors > 4 {
                    return Step::Rollback;
                }
            }
            Some((success, _)) => {
                self.consecutive_errors = 0;
                if success / 100.0 < 0.99 {
                    self.failures += 1;
                    if self.failures > 3 {
                        return Step::Rollback;
                    }
                }
            }
        }
        // Argo's steps are pauses: they advance with time whatever the analysis says.
        if self.step + 1 >= WEIGHTS.len() {
            return Step::Promote;
        }
        self.step += 1;
        Step::Weight(WEIGHTS[self.step])
    }
}

// ---- Kayenta-style ------------------------------------------------------------------------

/// Kayenta's judge: per-minute error ratio and p99 per arm since the start, a Mann-Whitney U test
/// at 98% confidence per metric with direction "increase", groups errors 50 / latency 50, pass
/// 95 / marginal 75; an interval scoring at or below marginal fails fast; the weight advances
/// on a pass and the release is promoted after a pass at the maximum weight.
#[derive(Default)]
pub struct Kayenta {
    step: usize,
    errors: [Vec<f64>; 2],
    p99: [Vec<f64>; 2],
}

/// True when the canary's values are significantly higher than the baseline's.
fn increased(canary: &[f64], baseline: &[f64]) -> bool {
    if canary.len() < 2 || baseline.len() < 2 {
        return false;
    }
    // The normal approximation, as Kayenta's judge uses: statrs 0.19's exact method (chosen
    // automatically for small samples without ties) answers p = 1 when the samples are perfectly
    // separated, the strongest evidence there is.
    let method = MannWhitneyUMethod::AsymptoticInclContinuityCorrection;
    let Ok((_, p)) = mannwhitneyu(canary, baseline, method, Alternative::TwoSided) else {
        return false;
    };
    if p >= 0.02 {
        return false;
    }
    // Direction: the Hodges-Lehmann shift estimate, the median of pairwise differences.
    let mut differences: Vec<f64> = canary
        .iter()
        .flat_map(|c| baseline.iter().map(move |b| c - b))
        .collect();
    differences.sort_by(f64::total_cmp);
    differences[differences.len() / 2] > 0.0
}

impl Policy for Kayenta {
    fn start(&mut self) -> u32 {
        WEIGHTS[0]
    }

    fn decide(&mut self, _: i64, window: &Window, _: &[Truth]) -> Step {
        for (arm, counts) in [&window.canary, &window.primary].into_iter().enumerate() {
            let Some(c) = counts.as_ref().filter(|c| c.requests > 0.0) else {
                continue;
            };
            self.errors[arm].push(c.errors / c.requests);
            if let Some(p99) = histogram_quantile(0.99, &c.buckets) {
                self.p99[arm].push(p99);
            }
        }
        let errors_pass = !increased(&self.errors[0], &self.errors[1]);
        let latency_pass = !increased(&self.p99[0], &self.p99[1]);
        let score =
            50.0 * f64::from(u8::from(errors_pass)) + 50.0 * f64::from(u8::from(latency_pass));
        if score <= 75.0 {
            return Step::Rollback;
        }
        if score < 95.0 {
            return Step::Weight(WEIGHTS[self.step]);
        }
        if self.step + 1 >= WEIGHTS.len() {
            return Step::Promote;
        }
        self.step += 1;
        Step::Weight(WEIGHTS[self.step])
    }
}

// ---- Oracle -------------------------------------------------------------------------------

/// Wald's SPRT on every canary request, knowing the true error (and slow-request) probabilities
/// of both arms at every moment; α = 1%, β = 5%. It decides at every scrape; the weight steps
/// every minute; it promotes once the schedule is done and the test accepts "no regression".
/// For healthy releases its alternative is +1 point of errors.
#[derive(Default)]
pub struct Oracle {
    step: usize,
    llr_errors: f64,
    llr_slow: f64,
    seen: i64,
}

const ORACLE_ALPHA: f64 = 0.01;
const ORACLE_BETA: f64 = 0.05;

fn bernoulli_llr(events: u64, trials: u64, p0: f64, p1: f64) -> f64 {
    let p0 = p0.clamp(1e-9, 1.0 - 1e-9);
    let p1 = p1.clamp(1e-9, 1.0 - 1e-9);
    events as f64 * (p1 / p0).ln()
        + (trials - events.min(trials)) as f64 * ((1.0 - p1) / (1.0 - p0)).ln()
}

impl Policy for Oracle {
    fn start(&mut self) -> u32 {
        WEIGHTS[0]
    }

    fn decision_every(&self) -> i64 {
        super::sim::SCRAPE
    }

    fn decide(&mut self, t: i64, _: &Window, truth: &[Truth]) -> Step {
        for w in truth {
            let p0 = w.primary_error_probability;
            let p1 = if w.canary_error_probability > p0 {
                w.canary_error_probability
            } else {
                p0 + 0.01
            };
            self.llr_errors += bernoulli_llr(w.canary_errors, w.canary_requests, p0, p1);
            let s0 = w.primary_slow_probability;
            if w.canary_slow_probability > s0 {
                self.llr_slow += bernoulli_llr(
                    w.canary_slow,
                    w.canary_requests,
                    s0,
                    w.canary_slow_probability,
                );
            }
        }
        let upper = ((1.0 - ORACLE_BETA) / ORACLE_ALPHA).ln();
        let lower = (ORACLE_BETA / (1.0 - ORACLE_ALPHA)).ln();
        if self.llr_errors >= upper || self.llr_slow >= upper {
            return Step::Rollback;
        }
        self.seen = t;
        if t % 60 != 0 {
            return Step::Weight(WEIGHTS[self.step]);
        }
        if self.step + 1 < WEIGHTS.len() {
            self.step += 1;
            return Step::Weight(WEIGHTS[self.step]);
        }
        if self.llr_errors <= lower {
            return Step::Promote;
        }
        Step::Weight(WEIGHTS[self.step])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantile_interpolates_like_prometheus() {
        let buckets = [
            (0.1, 50.0),
            (0.2, 90.0),
            (0.4, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((histogram_quantile(0.5, &buckets).unwrap() - 0.1).abs() < 1e-12);
        assert!((histogram_quantile(0.7, &buckets).unwrap() - 0.15).abs() < 1e-12);
        assert!((histogram_quantile(0.99, &buckets).unwrap() - 0.38).abs() < 1e-12);
        assert_eq!(histogram_quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
    }

    #[test]
    fn kayenta_flags_five_separated_minutes() {
        // Five minutes of +5 points against the baseline: caught, as Kayenta's judge would.
        let canary = [0.046, 0.048, 0.051, 0.050, 0.043];
        // Distinct values: without ties statrs would pick its exact method.
        let baseline = [0.0009, 0.0013, 0.0011, 0.0008, 0.0010];
        assert!(increased(&canary, &baseline));
        assert!(
            !increased(&canary[..4], &baseline[..4]),
            "p is about 0.03 with four minutes"
        );
    }

    #[test]
    fn kayenta_sees_a_clear_increase_only() {
        let low = [0.0, 0.001, 0.0, 0.002, 0.001, 0.0];
        let high = [0.05, 0.06, 0.04, 0.05, 0.055, 0.045];
        assert!(increased(&high, &low));
        assert!(!increased(&low, &high));
        assert!(!increased(&low, &low));
    }
}
