//! The one loop around `step`: a step says what it needs, the caller answers, the step runs
//! again with the answers, until it decides. The controller answers from Prometheus and the
//! webhooks, `sluice analyse` from Prometheus with every gate open, the benchmark from its
//! simulation; they differ only in their `Answers`.

use std::future::Future;

use super::{Decision, HookOutcome, Inputs, MetricsWindow, Needs, Step, World, step};
use crate::analysis::Observation;
use crate::api::{CanarySpec, CanaryStatus, HookType};

/// What a step can ask for. Async because the controller's answers are queries; answers that
/// are at hand are ready futures.
pub trait Answers {
    type Error;

    /// The observations of one look at `now`.
    fn metrics(
        &mut self,
        window: MetricsWindow,
        now: i64,
    ) -> impl Future<Output = Result<Vec<Observation>, Self::Error>>;

    /// How the hooks of one type went.
    fn hook(&mut self, kind: HookType) -> impl Future<Output = Result<HookOutcome, Self::Error>>;
}

#[derive(Debug, PartialEq)]
pub enum DriveError<E> {
    /// An answer could not be given.
    Answer(E),
    /// The step kept asking although everything it asked for was answered: a bug.
    Undecided(Needs),
}

/// Rounds of asking: metrics and hooks, then a gate that depends on the verdict, with room to
/// spare.
const ROUNDS: usize = 4;

/// Steps at `now` until a decision, answering each need once.
pub async fn drive<A: Answers>(
    spec: &CanarySpec,
    status: &CanaryStatus,
    world: &World,
    now: i64,
    answers: &mut A,
) -> Result<Decision, DriveError<A::Error>> {
    let mut inputs = Inputs::default();
    let mut last = Needs::default();
    for _ in 0..ROUNDS {
        let needs = match step(spec, status, world, &inputs, now) {
            Step::Done(decision) => return Ok(*decision),
            Step::Need(needs) => needs,
        };
        let mut answered = false;
        if let Some(window) = needs.metrics
            && inputs.observations.is_none()
        {
            let observations = answers
                .metrics(window, now)
                .await
                .map_err(DriveError::Answer)?;
            inputs.observations = Some(observations);
            answered = true;
        }
        for kind in &needs.hooks {
            if !inputs.hooks.contains_key(kind) {
                let outcome = answers.hook(*kind).await.map_err(DriveError::Answer)?;
                inputs.hooks.insert(*kind, outcome);
                answered = true;
            }
        }
        if !answered {
            return Err(DriveError::Undecided(needs));
        }
        last = needs;
    }
    Err(DriveError::Undecided(last))
}
