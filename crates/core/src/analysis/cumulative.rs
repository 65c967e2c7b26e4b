//! From running totals to what is new since the last look.
//!
//! A check every 15 s cannot ask Prometheus for the last 15 s: at a 15-s scrape interval that
//! window holds one sample, and `increase()` needs two. So every check asks for the counts since
//! the canary's first traffic (`countingSince`) and subtracts what earlier looks counted. Each
//! request is counted once, a lost scrape is caught up by the next check, and the test sees the
//! same requests it would see at one look per interval.

use crate::api::{Counted, Evidence};

use super::{MetricOutcome, Observation, Observed, Outcome, RequestCounts};

/// The observations with each comparison's running totals replaced by what is new since the
/// totals recorded in `evidence` (the first look's totals are all new). Guardrails pass as they
/// are. Totals that fell (Prometheus' extrapolation, a lost series) count as nothing new.
pub fn new_since_last(evidence: &Evidence, totals: &[Observation]) -> Vec<Observation> {
    totals
        .iter()
        .map(|observation| {
            let counted = evidence
                .metrics
                .iter()
                .find(|m| m.name == observation.metric)
                .and_then(|m| m.counted.as_ref());
            let result = match (&observation.result, counted) {
                (Ok(observed), Some(counted)) => subtract(observed, counted),
                (other, _) => other.clone(),
            };
            Observation {
                metric: observation.metric.clone(),
                result,
            }
        })
        .collect()
}

/// Records the totals of every comparison whose look counted them. A look that had no data
/// (no request in an arm, say) leaves its totals for the next one, so nothing is skipped; totals
/// whose shape changed (a histogram bucket appeared) are recorded anyway and counting resumes
/// from them.
pub fn record(evidence: &mut Evidence, totals: &[Observation], outcomes: &[MetricOutcome]) {
    for observation in totals {
        let Ok(observed) = &observation.result else {
            continue;
        };
        let Some(arms) = arms(observed) else {
            continue;
        };
        let Some(metric) = evidence
            .metrics
            .iter_mut()
            .find(|m| m.name == observation.metric)
        else {
            continue;
        };
        let counted_now = outcomes
            .iter()
            .any(|o| o.metric == observation.metric && o.outcome != Outcome::NoData);
        let reshaped = metric.counted.as_ref().is_some_and(|c| {
            c.canary.len() != arms.canary.len() || c.primary.len() != arms.primary.len()
        });
        if counted_now || reshaped {
            metric.counted = Some(arms);
        }
    }
}

fn arms(observed: &Observed) -> Option<Counted> {
    match observed {
        Observed::Value(_) => None,
        Observed::Counts { canary, primary } => Some(Counted {
            canary: vec![canary.requests, canary.errors],
            primary: vec![primary.requests, primary.errors],
        }),
        Observed::Histograms { canary, primary } => Some(Counted {
            canary: canary.iter().map(|(_, count)| *count).collect(),
            primary: primary.iter().map(|(_, count)| *count).collect(),
        }),
    }
}

fn subtract(observed: &Observed, counted: &Counted) -> Result<Observed, String> {
    let new = |now: f64, before: f64| (now - before).max(0.0);
    match observed {
        Observed::Value(value) => Ok(Observed::Value(*value)),
        Observed::Counts { canary, primary } => {
            let arm = |now: &RequestCounts, before: &[f64]| match before {
                [requests, errors] => Ok(RequestCounts {
                    requests: new(now.requests, *requests),
                    errors: new(now.errors, *errors),
                }),
                _ => Err("the recorded totals are not request counts".to_string()),
            };
            Ok(Observed::Counts {
                canary: arm(canary, &counted.canary)?,
                primary: arm(primary, &counted.primary)?,
            })
        }
        Observed::Histograms { canary, primary } => {
            let arm = |now: &[(f64, f64)], before: &[f64]| {
                if now.len() != before.len() {
                    return Err(format!(
                        "the histogram's buckets changed since the last check ({} buckets, then {}); counting resumes at the next check",
                        before.len(),
                        now.len()
                    ));
                }
                // Differences of cumulative buckets, kept cumulative (never falling with `le`).
                let mut floor = 0.0f64;
                Ok(now
                    .iter()
                    .zip(before)
                    .map(|((le, count), before)| {
                        floor = floor.max(new(*count, *before));
                        (*le, floor)
                    })
                    .collect::<Vec<_>>())
            };
            Ok(Observed::Histograms {
                canary: arm(canary, &counted.canary)?,
                primary: arm(primary, &counted.primary)?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EvidenceKind, MetricEvidence};

    fn counts(requests: f64, errors: f64) -> Observation {
        let arm = RequestCounts { requests, errors };
        Observation {
            metric: "errors".into(),
            result: Ok(Observed::Counts {
                canary: arm,
                primary: arm,
            }),
        }
    }

    fn evidence() -> Evidence {
        Evidence {
            metrics: vec![MetricEvidence::new("errors", EvidenceKind::ErrorRate, None)],
            ..Evidence::default()
        }
    }

    fn outcome(outcome: Outcome) -> Vec<MetricOutcome> {
        vec![MetricOutcome {
            metric: "errors".into(),
            outcome,
            ready: false,
            message: String::new(),
            waiting: None,
            suspect: false,
        }]
    }

    #[test]
    fn each_request_is_counted_once() {
        let mut evidence = evidence();
        let mut seen = 0.0;
        // Totals as successive checks read them; one fell (extrapolation), one look had no data.
        for (total, result) in [
            (100.0, Outcome::Pass),
            (250.0, Outcome::NoData),
            (240.0, Outcome::Pass),
            (400.0, Outcome::Pass),
        ] {
            let new = new_since_last(&evidence, &[counts(total, total / 10.0)]);
            let Ok(Observed::Counts { canary, .. }) = &new[0].result else {
                panic!("{new:?}");
            };
            if result != Outcome::NoData {
                seen += canary.requests;
            }
            record(
                &mut evidence,
                &[counts(total, total / 10.0)],
                &outcome(result),
            );
        }
        assert_eq!(seen, 400.0);
    }

    #[test]
    fn histogram_differences_stay_cumulative() {
        let mut evidence = evidence();
        let before = Counted {
            canary: vec![10.0, 20.0, 30.0],
            primary: vec![10.0, 20.0, 30.0],
        };
        evidence.metrics[0].counted = Some(before);
        let now = vec![(0.1, 15.0), (0.5, 21.0), (f64::INFINITY, 40.0)];
        let totals = Observation {
            metric: "errors".into(),
            result: Ok(Observed::Histograms {
                canary: now.clone(),
                primary: now,
            }),
        };
        let new = new_since_last(&evidence, &[totals]);
        let Ok(Observed::Histograms { canary, .. }) = &new[0].result else {
            panic!("{new:?}");
        };
        assert_eq!(canary, &vec![(0.1, 5.0), (0.5, 5.0), (f64::INFINITY, 10.0)]);
    }
}
