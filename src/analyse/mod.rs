//! `sluice analyse`: replays a Canary's analysis over a past window, interval by interval, as
//! the controller would have run it.

pub mod report;

use serde::Serialize;

use crate::analysis::{self, Judgement, Observation, Verdict};
use crate::api::{Analysis, Evidence};
use crate::metrics::QueryError;
use crate::metrics::collect::Collector;

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
    /// The step at which the verdict was reached.
    pub reached: Option<u32>,
    pub reason: String,
    pub steps: Vec<Step>,
    pub evidence: Evidence,
    pub planned_intervals: u32,
}

/// The weights of the step schedule, one per analysis step.
pub fn schedule(analysis: &Analysis) -> Vec<u32> {
    if let Some(iterations) = analysis.iterations {
        // A/B and blue/green run at full canary exposure for their iterations.
        return vec![100; iterations.max(1) as usize];
    }
    if !analysis.step_weights.is_empty() {
        return analysis.step_weights.clone();
    }
    let step = analysis.step_weight.unwrap_or(10).max(1);
    let max = analysis.max_weight.unwrap_or(50).max(step);
    let mut weights: Vec<u32> = (1..).map(|i| i * step).take_while(|&w| w < max).collect();
    weights.push(max);
    weights
}

/// Replays the analysis over `[start, end]`, calling `progress(step, of, end_time)` before each
/// interval's queries. Stops at the first interval whose error is not "no data" (an outage or a
/// broken template), returning that error.
pub async fn replay(
    analysis: &Analysis,
    collector: &Collector,
    start: i64,
    end: i64,
    mut progress: impl FnMut(u32, u32, i64),
) -> Result<Replay, QueryError> {
    let interval = i64::try_from(analysis.interval.as_secs().max(1)).unwrap_or(i64::MAX);
    let planned = u32::try_from((end - start).max(0) / interval).unwrap_or(u32::MAX);
    let weights = schedule(analysis);
    let mut evidence = Evidence::default();
    let mut steps = Vec::new();
    // Steps passed so far: the schedule advances on intervals that neither failed nor lacked data.
    let mut advanced = 0usize;
    for index in 1..=planned {
        let at = start + i64::from(index) * interval;
        progress(index, planned, at);
        let mut observations = Vec::new();
        for (metric, result) in collector.observe(at).await {
            let result = match result {
                Ok(observed) => Ok(observed),
                Err(e) if e.is_no_data() => Err(e.to_string()),
                Err(e) => return Err(e),
            };
            observations.push(Observation { metric, result });
        }
        let judgement = analysis::judge(analysis, &mut evidence, &observations);
        let weight = weights[advanced.min(weights.len() - 1)];
        let verdict = judgement.verdict.clone();
        steps.push(Step {
            index,
            end: at,
            weight,
            judgement,
        });
        match verdict {
            Verdict::Rollback { metric, reason } => {
                return Ok(finish(
                    Outcome::Rollback,
                    Some(index),
                    format!("{metric}: {reason}"),
                    steps,
                    evidence,
                    planned,
                ));
            }
            Verdict::Ready | Verdict::Continue => {
                advanced += 1;
                if advanced >= weights.len() && verdict == Verdict::Ready {
                    let reason = format!(
                        "the schedule ran its {} steps and every metric has enough evidence of no regression",
                        weights.len()
                    );
                    return Ok(finish(
                        Outcome::Promote,
                        Some(index),
                        reason,
                        steps,
                        evidence,
                        planned,
                    ));
                }
            }
            Verdict::NoData { .. } | Verdict::FailedCheck { .. } => {}
        }
    }
    let reason = match steps.last().map(|s| &s.judgement.verdict) {
        None => "the window is shorter than one analysis interval".to_string(),
        Some(Verdict::NoData { reasons }) => {
            format!("the window ended without data: {}", reasons.join("; "))
        }
        Some(_) if advanced < weights.len() => format!(
            "the window ended after {advanced} of the schedule's {} steps",
            weights.len()
        ),
        Some(_) => {
            "the window ended before every metric had enough evidence (analysis.minSamplePerArm)"
                .to_string()
        }
    };
    Ok(finish(
        Outcome::Inconclusive,
        None,
        reason,
        steps,
        evidence,
        planned,
    ))
}

fn finish(
    outcome: Outcome,
    reached: Option<u32>,
    reason: String,
    steps: Vec<Step>,
    evidence: Evidence,
    planned_intervals: u32,
) -> Replay {
    Replay {
        outcome,
        reached,
        reason,
        steps,
        evidence,
        planned_intervals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(yaml: &str) -> Analysis {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn schedules_follow_flagger() {
        assert_eq!(
            schedule(&analysis("{stepWeight: 10, maxWeight: 50}")),
            [10, 20, 30, 40, 50]
        );
        assert_eq!(
            schedule(&analysis("{stepWeight: 20, maxWeight: 50}")),
            [20, 40, 50]
        );
        assert_eq!(schedule(&analysis("{stepWeights: [1, 5, 25]}")), [1, 5, 25]);
        assert_eq!(schedule(&analysis("{iterations: 3}")), [100, 100, 100]);
    }
}
