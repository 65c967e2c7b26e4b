//! `sluice analyse`: replays a Canary's analysis over a past window, check by check and
//! interval by interval, as the controller would have run it.

pub mod report;

use serde::Serialize;

use crate::providers::QueryError;
use crate::providers::collect::Collector;
use sluice_core::analysis::{Judgement, Observation, Verdict};
use sluice_core::api::ReleaseVerdict;
use sluice_core::api::{Canary, CanaryStatus, Evidence, HookType, Phase};
use sluice_core::rollout::{self, DriveError, HookOutcome, MetricsWindow, Workload, World};

/// How the release ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Promote,
    Rollback,
    Inconclusive,
}

/// One interval of the replay.
#[derive(Clone, Debug)]
pub struct Step {
    pub index: u32,
    /// Unix seconds at the end of the interval (the queries' evaluation time).
    pub end: i64,
    /// The canary weight the controller would have had during this interval.
    pub weight: u32,
    pub judgement: Judgement,
}

#[derive(Clone, Debug)]
pub struct Replay {
    pub outcome: Outcome,
    /// The analysis interval (from 1) at which the verdict was reached.
    pub reached: Option<u32>,
    pub reason: String,
    pub steps: Vec<Step>,
    pub evidence: Evidence,
    pub planned_intervals: u32,
}

/// Replays the release over `[start, end]` with the real state machine: both Deployments ready,
/// a new revision released at `start`, gates open and webhooks passing (a replay calls no hooks),
/// and the metrics of each check read from Prometheus. `progress(interval, of, time)` is
/// called before each interval's queries. Stops at the first error that is not "no data" (an
/// outage or a broken template), returning it. `pods` are the replicas that served each arm.
pub async fn replay(
    canary: &Canary,
    collector: &Collector,
    start: i64,
    end: i64,
    pods: sluice_core::analysis::sequential::Pods,
    mut progress: impl FnMut(u32, u32, i64),
) -> Result<Replay, QueryError> {
    let spec = &canary.spec;
    let interval = i64::try_from(spec.analysis.interval.as_secs().max(1)).unwrap_or(i64::MAX);
    let planned = u32::try_from((end - start).max(0) / interval).unwrap_or(u32::MAX);
    let ready = |replicas: u32| {
        Some(Workload {
            replicas: i32::try_from(replicas).unwrap_or(i32::MAX),
            ready: true,
            message: None,
        })
    };
    let world = World {
        target: ready(pods.canary),
        primary: ready(pods.primary),
        revision: Some("replayed".into()),
        ..World::default()
    };
    let mut status = CanaryStatus {
        phase: Some(Phase::Initialized),
        last_applied_spec: Some("before".into()),
        last_promoted_spec: Some("before".into()),
        ..CanaryStatus::default()
    };
    let mut steps = Vec::new();
    let mut now = start;
    let mut answers = Replayed {
        collector,
        progress: &mut progress,
        planned,
        judged: 0,
        announced: 0,
    };
    let mut still = 0;
    while now <= end && still < 8 {
        let decision = match rollout::drive(spec, &status, &world, now, &mut answers).await {
            Ok(decision) => decision,
            Err(DriveError::Answer(error)) => return Err(error),
            Err(DriveError::Undecided(needs)) => {
                let reason = format!("internal: the replay cannot provide {needs:?}");
                return Ok(finish(
                    Outcome::Inconclusive,
                    None,
                    reason,
                    steps,
                    status,
                    planned,
                ));
            }
        };
        let judged = answers.judged;
        // Steps, and a rollback at a check between them (counted in the interval it ends).
        let shown = |j: &Judgement| j.step || matches!(j.verdict, Verdict::Rollback { .. });
        let between = decision.judgement.as_ref().is_some_and(|j| !j.step);
        let interval_index = if between { judged + 1 } else { judged };
        if let Some(judgement) = decision.judgement.clone().filter(shown) {
            steps.push(Step {
                index: interval_index,
                end: now,
                weight: status.canary_weight,
                judgement,
            });
        }
        let moved = !decision.actions.is_empty();
        status = decision.status;
        let reached = Some(interval_index);
        let reason = status.message.clone().unwrap_or_default();
        match status.verdict() {
            Some(ReleaseVerdict::Promoted) => {
                let reason = format!(
                    "the {} steps of the schedule passed and every comparison ruled out its regression margin",
                    rollout::steps_to_promotion(spec)
                );
                return Ok(finish(
                    Outcome::Promote,
                    reached,
                    reason,
                    steps,
                    status,
                    planned,
                ));
            }
            Some(ended) => {
                let outcome = if ended == ReleaseVerdict::Inconclusive {
                    Outcome::Inconclusive
                } else {
                    Outcome::Rollback
                };
                return Ok(finish(outcome, reached, reason, steps, status, planned));
            }
            None => {}
        }
        // The replayed world never changes on its own: steps that only wait for it (readiness
        // polls right after the release starts) are taken at once, so that analysis intervals
        // line up with `start`.
        let requeue = decision.requeue_seconds as i64;
        if moved && requeue < interval {
            still += 1;
        } else {
            still = 0;
            now += requeue.max(1);
        }
    }
    let reason = match steps.last().map(|s| &s.judgement.verdict) {
        None => "the window is shorter than one analysis interval".to_string(),
        Some(Verdict::NoData { reasons }) => {
            format!("the window ended without data: {}", reasons.join("; "))
        }
        Some(_) => format!(
            "the window ended before a verdict: {}",
            status.message.clone().unwrap_or_default()
        ),
    };
    Ok(finish(
        Outcome::Inconclusive,
        None,
        reason,
        steps,
        status,
        planned,
    ))
}

/// The replay's answers: the metrics from Prometheus, every gate open and every webhook passing
/// (a replay calls no hooks).
struct Replayed<'a, P> {
    collector: &'a Collector,
    progress: &'a mut P,
    planned: u32,
    /// Analysis steps looked at so far.
    judged: u32,
    /// The last interval `progress` was told about.
    announced: u32,
}

impl<P: FnMut(u32, u32, i64)> rollout::Answers for Replayed<'_, P> {
    type Error = QueryError;

    /// One interval's observations. No data is recorded as such (it holds the release); any
    /// other error stops the replay.
    async fn metrics(
        &mut self,
        window: MetricsWindow,
        now: i64,
    ) -> Result<Vec<Observation>, QueryError> {
        // Once per interval, at its first look.
        if self.announced <= self.judged {
            self.announced = self.judged + 1;
            (self.progress)(self.announced, self.planned, now);
        }
        if window.guardrails {
            self.judged += 1;
        }
        let mut observations = Vec::new();
        for (metric, result) in self.collector.observe(now, Some(window)).await {
            let result = match result {
                Ok(observed) => Ok(observed),
                Err(e) if e.is_no_data() => Err(e.to_string()),
                Err(e) => return Err(e),
            };
            observations.push(Observation { metric, result });
        }
        Ok(observations)
    }

    async fn hook(&mut self, _kind: HookType) -> Result<HookOutcome, QueryError> {
        Ok(HookOutcome::Passed)
    }
}

fn finish(
    outcome: Outcome,
    reached: Option<u32>,
    reason: String,
    steps: Vec<Step>,
    status: CanaryStatus,
    planned_intervals: u32,
) -> Replay {
    Replay {
        outcome,
        reached,
        reason,
        steps,
        evidence: status.evidence,
        planned_intervals,
    }
}
