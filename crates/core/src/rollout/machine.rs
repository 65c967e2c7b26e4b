//! One step of a release: `(spec, status, world, inputs, now) -> actions + new status`.
//!
//! The phases and their order are Flagger's. Each call looks at where the release stands and
//! moves it at most one step, so calling it again with the same inputs is harmless, and a
//! controller that restarts resumes from the status alone.

use crate::analysis::{self, Verdict};
use crate::api::{CanarySpec, CanaryStatus, Condition, Evidence, HookType, Phase, Strategy};
use crate::time::{parse_rfc3339, rfc3339};

use super::types::*;

use crate::api::{FAILED, INCONCLUSIVE};

/// Seconds between readiness checks while waiting for a Deployment.
const READINESS_POLL: u64 = 10;

/// The canary weights of the step schedule (canary strategy).
pub fn schedule(spec: &CanarySpec) -> Vec<u32> {
    let analysis = &spec.analysis;
    if !analysis.step_weights.is_empty() {
        return analysis.step_weights.clone();
    }
    let step = analysis.step_weight.unwrap_or(10).clamp(1, 100);
    let max = analysis.max_weight.unwrap_or(50).clamp(step, 100);
    let mut weights: Vec<u32> = (1..).map(|i| i * step).take_while(|&w| w < max).collect();
    weights.push(max);
    weights
}

/// Analysis steps before a promotion: the schedule's length, or `iterations`.
pub fn steps_to_promotion(spec: &CanarySpec) -> u32 {
    match spec.strategy() {
        Strategy::Canary => schedule(spec).len() as u32,
        Strategy::ABTesting | Strategy::BlueGreen => spec.analysis.iterations.unwrap_or(1).max(1),
    }
}

fn parse_time(text: &Option<String>) -> Option<i64> {
    text.as_deref().and_then(parse_rfc3339)
}

/// Runs one step. See the module docs.
pub fn step(
    spec: &CanarySpec,
    status: &CanaryStatus,
    world: &World,
    inputs: &Inputs,
    now: i64,
) -> Step {
    let mut run = Run {
        spec,
        world,
        inputs,
        now,
        status: status.clone(),
        actions: Vec::new(),
        judgement: None,
        requeue: spec.analysis.interval.as_secs().max(1),
        needs: Needs::default(),
    };
    run.step();
    if !run.needs.is_empty() {
        return Step::Need(run.needs);
    }
    run.status.set_health(world.generation, &rfc3339(now));
    Step::Done(Box::new(Decision {
        actions: run.actions,
        status: run.status,
        requeue_seconds: run.requeue,
        judgement: run.judgement,
    }))
}

struct Run<'a> {
    spec: &'a CanarySpec,
    world: &'a World,
    inputs: &'a Inputs,
    now: i64,
    status: CanaryStatus,
    actions: Vec<Action>,
    requeue: u64,
    needs: Needs,
    judgement: Option<analysis::Judgement>,
}

impl Run<'_> {
    fn step(&mut self) {
        if let Some(kind) = &self.world.unsupported_kind {
            let message = format!(
                "spec.targetRef.kind: sluice releases Deployments only, found {kind:?}; point targetRef at a Deployment"
            );
            self.hold_with_warning("UnsupportedTarget", message);
            return;
        }
        let (Some(target), Some(revision)) =
            (self.world.target.clone(), self.world.revision.clone())
        else {
            let message = format!(
                "spec.targetRef: Deployment {:?} not found; create it or fix the name",
                self.spec.target_ref.name
            );
            self.hold_with_warning("TargetNotFound", message);
            return;
        };
        if self.spec.suspend {
            self.status.message = Some("suspended (spec.suspend)".into());
            return;
        }
        match self.status.phase.unwrap_or(Phase::Initializing) {
            Phase::Initializing => self.initialize(&revision),
            Phase::Initialized | Phase::Succeeded | Phase::Failed => self.idle(&target, &revision),
            Phase::Progressing | Phase::Waiting | Phase::WaitingPromotion => {
                self.progress(&target, &revision)
            }
            Phase::Promoting => self.promoting(),
            Phase::Finalising => self.finalise(&revision),
        }
    }

    // ---- helpers -------------------------------------------------------------------------

    fn hold_with_warning(&mut self, reason: &str, message: String) {
        if self.status.message.as_deref() != Some(message.as_str()) {
            self.event(true, reason, &message);
        }
        self.status.message = Some(message);
    }

    fn event(&mut self, warning: bool, reason: &str, message: &str) {
        self.actions.push(Action::Event {
            warning,
            reason: reason.to_string(),
            message: message.to_string(),
        });
    }

    /// Raises an alert for the Canary's `analysis.alerts`, unless it has none or this release
    /// raised `key` already. The key goes into the status that this step writes, so that a step
    /// run again does not raise it twice.
    fn alert(&mut self, kind: AlertKind, key: &str, reason: &str) {
        if self.spec.analysis.alerts.is_empty() || self.status.alerts.iter().any(|k| k == key) {
            return;
        }
        self.status.alerts.push(key.to_string());
        self.actions.push(Action::Alert(AlertEvent {
            kind,
            key: key.to_string(),
            reason: reason.to_string(),
        }));
    }

    /// A gate that said no: one alert per gate (and per weight it holds) and release.
    fn alert_waiting(&mut self, gate: HookType, message: &str) {
        let mut key = format!("waiting:{}", hook_name(gate));
        if gate == HookType::ConfirmTrafficIncrease {
            key.push_str(&format!("@{}", self.status.canary_weight));
        }
        self.alert(AlertKind::Waiting(gate), &key, message);
    }

    fn set_phase(&mut self, phase: Phase) {
        if self.status.phase != Some(phase) {
            self.status.phase = Some(phase);
            self.status.last_transition_time = Some(rfc3339(self.now));
        }
    }

    fn set_condition(&mut self, status: &str, reason: &str, message: &str) {
        let now = rfc3339(self.now);
        let existing = self
            .status
            .conditions
            .iter_mut()
            .find(|c| c.kind == crate::api::PROMOTED);
        match existing {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                }
                c.status = status.into();
                c.reason = reason.into();
                c.message = message.into();
            }
            None => self.status.conditions.push(Condition {
                kind: crate::api::PROMOTED.into(),
                status: status.into(),
                reason: reason.into(),
                message: message.into(),
                last_transition_time: now,
            }),
        }
    }

    /// The outcome of a hook type, or `None` after asking the caller to run it.
    fn hook(&mut self, kind: HookType) -> Option<HookOutcome> {
        if !self.spec.analysis.webhooks.iter().any(|w| w.kind == kind) {
            return Some(HookOutcome::Passed);
        }
        match self.inputs.hooks.get(&kind) {
            Some(outcome) => Some(outcome.clone()),
            None => {
                self.needs.hooks.push(kind);
                None
            }
        }
    }

    /// Whether a manual action is asked by annotation and not yet handled.
    fn manual_pending(&self, annotation: &str) -> bool {
        self.world
            .annotations
            .get(annotation)
            .is_some_and(|value| self.status.handled_actions.get(annotation) != Some(value))
    }

    /// A manual action asked by annotation and not yet handled; marks it handled.
    fn manual(&mut self, annotation: &str) -> bool {
        if !self.manual_pending(annotation) {
            return false;
        }
        let Some(value) = self.world.annotations.get(annotation) else {
            return false;
        };
        self.status
            .handled_actions
            .insert(annotation.to_string(), value.clone());
        true
    }

    fn deadline_passed(&self, since: Option<i64>) -> bool {
        let since = since.unwrap_or(self.now);
        self.now - since > i64::from(self.spec.progress_deadline_seconds())
    }

    fn primary_replicas(&self) -> i32 {
        self.world.primary.as_ref().map_or(1, |p| p.replicas.max(1))
    }

    // ---- phases ----------------------------------------------------------------------------

    fn initialize(&mut self, revision: &str) {
        self.set_phase(Phase::Initializing);
        self.actions.push(Action::Bootstrap);
        match &self.world.primary {
            Some(primary) if primary.ready => {
                self.actions.push(Action::ScaleTarget(0));
                self.set_phase(Phase::Initialized);
                self.status.last_applied_spec = Some(revision.to_string());
                self.status.last_promoted_spec = Some(revision.to_string());
                self.status.tracked_configs = self.world.tracked_configs.clone();
                self.status.message = Some("initialized: the primary serves all traffic".into());
                self.set_condition("True", "Initialized", "the primary serves all traffic");
                let message = format!(
                    "Initialization done! {}-primary serves all traffic",
                    self.spec.target_ref.name
                );
                self.event(false, "Synced", &message);
            }
            Some(primary) => {
                self.status.message = Some(format!(
                    "waiting for {}-primary to be ready: {}",
                    self.spec.target_ref.name,
                    primary.message.clone().unwrap_or_default()
                ));
                self.requeue = READINESS_POLL;
            }
            None => {
                self.status.message =
                    Some(format!("creating {}-primary", self.spec.target_ref.name));
                self.requeue = READINESS_POLL.min(self.requeue);
            }
        }
    }

    fn idle(&mut self, target: &Workload, revision: &str) {
        let new_revision = self.status.last_applied_spec.as_deref() != Some(revision);
        let retry_asked =
            self.status.phase == Some(Phase::Failed) && self.manual_pending(MANUAL_RETRY);
        if (new_revision || retry_asked)
            && let Some(queue) = self.world.release_queue
        {
            // Neither the revision nor the retry is taken as handled: both start the release
            // once a slot is free.
            let message = format!(
                "queued: {} releases in flight, as many as --max-concurrent-releases ({}) allows; this one starts when one of them ends",
                queue.in_flight, queue.limit
            );
            if self.status.message.as_deref() != Some(message.as_str()) {
                self.event(false, "Queued", &message);
            }
            self.status.message = Some(message);
            self.requeue = READINESS_POLL.min(self.requeue);
            return;
        }
        let retry = retry_asked && self.manual(MANUAL_RETRY);
        if new_revision || retry {
            let reason = if retry {
                "retry requested"
            } else {
                "new revision detected"
            };
            self.start_release(revision, reason);
            return;
        }
        // Between releases the canary stays at zero, whoever scaled it.
        if target.replicas > 0 {
            self.actions.push(Action::ScaleTarget(0));
        }
    }

    fn start_release(&mut self, revision: &str, why: &str) {
        self.set_phase(Phase::Progressing);
        self.status.canary_weight = 0;
        self.status.iterations = 0;
        self.status.evidence = Evidence::default();
        self.status.last_applied_spec = Some(revision.to_string());
        self.status.tracked_configs = self.world.tracked_configs.clone();
        self.status.last_step_time = Some(rfc3339(self.now));
        self.status.last_analysis_time = None;
        self.status.last_check_time = None;
        self.set_condition("Unknown", "Progressing", "release started");
        // A new release: what the last one raised may be raised again.
        self.status.alerts.clear();
        self.actions.push(Action::SetRoutes(Routes::all_primary()));
        self.actions
            .push(Action::ScaleTarget(self.primary_replicas()));
        let message = format!(
            "{why}: starting the release of {}",
            self.spec.target_ref.name
        );
        self.status.message = Some(message.clone());
        self.event(false, "Synced", &message);
        self.alert(AlertKind::Started, AlertKind::Started.name(), &message);
        self.requeue = READINESS_POLL.min(self.requeue);
    }

    fn progress(&mut self, target: &Workload, revision: &str) {
        if self.status.last_applied_spec.as_deref() != Some(revision) {
            self.start_release(revision, "new revision during the analysis");
            return;
        }
        if self.manual(MANUAL_ABORT) {
            self.rollback("aborted by the sluice.dev/abort annotation");
            return;
        }
        if self.manual(MANUAL_PROMOTE) {
            self.event(
                false,
                "Synced",
                "promotion requested by the sluice.dev/promote annotation",
            );
            self.promote();
            return;
        }
        if !target.ready {
            let since = parse_time(&self.status.last_step_time);
            if self.deadline_passed(since) {
                let message = format!(
                    "canary {} not ready within progressDeadlineSeconds ({}s): {}",
                    self.spec.target_ref.name,
                    self.spec.progress_deadline_seconds(),
                    target.message.clone().unwrap_or_default()
                );
                self.rollback(&message);
            } else {
                self.status.message = Some(format!(
                    "waiting for the canary to be ready: {}",
                    target.message.clone().unwrap_or_default()
                ));
                self.requeue = READINESS_POLL.min(self.requeue);
            }
            return;
        }
        if self.spec.skip_analysis {
            self.event(false, "Synced", "analysis skipped (spec.skipAnalysis)");
            self.promote();
            return;
        }
        if self.status.last_analysis_time.is_none() {
            self.open_release();
        } else {
            self.analyse();
        }
    }

    /// Before any traffic: the confirm-rollout gate and pre-rollout hooks, then the first step.
    fn open_release(&mut self) {
        match self.hook(HookType::ConfirmRollout) {
            None => return,
            Some(HookOutcome::Failed { hook, reason }) => {
                self.set_phase(Phase::Waiting);
                let message =
                    format!("waiting for approval from confirm-rollout hook {hook}: {reason}");
                self.alert_waiting(HookType::ConfirmRollout, &message);
                self.status.message = Some(message);
                return;
            }
            Some(HookOutcome::Passed) => {}
        }
        match self.hook(HookType::PreRollout) {
            None => return,
            Some(HookOutcome::Failed { hook, reason }) => {
                self.failed_check(&format!("pre-rollout hook {hook} failed: {reason}"));
                return;
            }
            Some(HookOutcome::Passed) => {}
        }
        self.set_phase(Phase::Progressing);
        self.status.last_analysis_time = Some(rfc3339(self.now));
        self.status.last_check_time = Some(rfc3339(self.now));
        self.status.evidence.counting_since = Some(rfc3339(self.now));
        self.requeue = self.spec.analysis.check_seconds().min(self.requeue);
        self.status.last_step_time = Some(rfc3339(self.now));
        match self.spec.strategy() {
            Strategy::Canary => {
                let first = schedule(self.spec)[0];
                self.set_weight(first);
            }
            Strategy::ABTesting => {
                self.actions.push(Action::SetRoutes(Routes {
                    primary: 100,
                    canary: 0,
                    canary_match: true,
                    mirror: false,
                }));
                let message = "A/B testing: requests matching analysis.match go to the canary";
                self.status.message = Some(message.into());
                self.event(false, "Synced", message);
            }
            Strategy::BlueGreen if self.spec.analysis.mirror == Some(true) => {
                self.actions.push(Action::SetRoutes(Routes {
                    mirror: true,
                    ..Routes::all_primary()
                }));
                let message =
                    "blue/green: analysing the canary on a mirror of the primary's traffic";
                self.status.message = Some(message.into());
                self.event(false, "Synced", message);
            }
            Strategy::BlueGreen => {
                let message = "blue/green: analysing the canary before it takes traffic";
                self.status.message = Some(message.into());
                self.event(false, "Synced", message);
            }
        }
    }

    fn set_weight(&mut self, weight: u32) {
        self.status.canary_weight = weight;
        self.actions
            .push(Action::SetRoutes(Routes::canary_weight(weight)));
        let message = format!(
            "advance {} canary weight {weight}",
            self.spec.target_ref.name
        );
        self.status.message = Some(message.clone());
        self.event(false, "Synced", &message);
    }

    /// A failed check that is not the analysis' own (a hook): counts towards the threshold.
    fn failed_check(&mut self, message: &str) {
        self.status.evidence.failed_checks += 1;
        if self.status.evidence.failed_checks >= self.spec.analysis.threshold {
            self.rollback(&format!(
                "{message}; {} failed checks reached the threshold of {}",
                self.status.evidence.failed_checks, self.spec.analysis.threshold
            ));
        } else {
            self.status.message = Some(message.into());
            self.event(true, "Synced", message);
        }
    }

    fn analyse(&mut self) {
        let last_step = parse_time(&self.status.last_analysis_time).unwrap_or(self.now);
        let last_look = parse_time(&self.status.last_check_time)
            .unwrap_or(last_step)
            .max(last_step);
        let analysis = &self.spec.analysis;
        let check = analysis.check_seconds() as i64;
        let step_due = last_step + analysis.interval.as_secs().max(1) as i64;
        let due = step_due.min(last_look + check);
        // Every request is counted once, at the first look after it, whatever else waits.
        if self.now < due {
            self.requeue = (due - self.now) as u64;
            return;
        }
        let step = self.now >= step_due;
        // A status written before `countingSince` existed counts from its last step.
        let since = self
            .status
            .evidence
            .counting_since
            .get_or_insert_with(|| rfc3339(last_step))
            .clone();
        let since = parse_time(&Some(since)).unwrap_or(last_step);
        let rollout_hook = if step {
            self.hook(HookType::Rollout)
        } else {
            Some(HookOutcome::Passed)
        };
        let Some(totals) = self.inputs.observations.clone() else {
            self.needs.metrics = Some(MetricsWindow {
                comparison_seconds: (self.now - since).max(1) as u64,
                guardrails: step,
            });
            return;
        };
        let Some(rollout_hook) = rollout_hook else {
            return;
        };
        let observations = analysis::cumulative::new_since_last(&self.status.evidence, &totals);
        let replicas = |w: &Option<Workload>| {
            w.as_ref()
                .map_or(0, |w| u32::try_from(w.replicas).unwrap_or(0))
        };
        let look = analysis::Look {
            elapsed: (self.now - since).max(1) as u64,
            step,
            pods: analysis::sequential::Pods {
                canary: replicas(&self.world.target),
                primary: replicas(&self.world.primary),
            },
        };
        let judgement = analysis::judge_look(
            &self.spec.analysis,
            &mut self.status.evidence,
            &observations,
            look,
        );
        analysis::cumulative::record(&mut self.status.evidence, &totals, &judgement.outcomes);
        self.judgement = Some(judgement.clone());
        self.status.last_check_time = Some(rfc3339(self.now));
        // The next look: a check, or the next step if that comes first.
        self.requeue = if step {
            check as u64
        } else {
            check.min(step_due - self.now).max(1) as u64
        };
        if !step {
            // Between steps a rollback acts, and a promotion that the last step held only for
            // its evidence; the schedule, holds and guardrails keep their once-per-interval
            // meaning.
            match judgement.verdict {
                Verdict::Rollback { metric, reason } => {
                    self.rollback(&format!("{metric}: {reason}"))
                }
                Verdict::Ready if self.status.evidence.awaiting_evidence => self.advance(Ok(())),
                _ => {}
            }
            return;
        }
        self.status.evidence.awaiting_evidence = false;
        self.status.last_analysis_time = Some(rfc3339(self.now));
        if let HookOutcome::Failed { hook, reason } = rollout_hook {
            self.failed_check(&format!("rollout hook {hook} failed: {reason}"));
            return;
        }
        match judgement.verdict {
            Verdict::Rollback { metric, reason } => self.rollback(&format!("{metric}: {reason}")),
            Verdict::FailedCheck {
                metric,
                failed_checks,
                threshold,
            } => {
                let message = format!(
                    "{metric} check failed ({failed_checks} of threshold {threshold}); holding"
                );
                self.status.message = Some(message.clone());
                self.event(true, "Synced", &message);
            }
            Verdict::NoData { reasons } => {
                let since = parse_time(&self.status.last_step_time);
                if self.deadline_passed(since) {
                    self.inconclusive(&reasons.join("; "));
                } else {
                    self.status.message = Some(format!("holding, no data: {}", reasons.join("; ")));
                }
            }
            Verdict::Hold { metric, reason } => {
                let headline = format!(
                    "holding at weight {}: {metric} leans towards a rollback",
                    self.status.canary_weight
                );
                // One Event when the hold starts; the status carries each interval's evidence.
                let already = self
                    .status
                    .message
                    .as_deref()
                    .is_some_and(|m| m.starts_with(&headline));
                if !already {
                    self.event(true, "Synced", &headline);
                }
                self.status.message = Some(format!("{headline} ({reason})"));
            }
            Verdict::Continue => self.advance(Err(analysis::waiting(&judgement.outcomes))),
            Verdict::Ready => self.advance(Ok(())),
        }
    }

    /// No verdict by the deadline: sluice never promotes without evidence.
    fn inconclusive(&mut self, reasons: &str) {
        self.roll_back(
            INCONCLUSIVE,
            &format!(
                "inconclusive: no data for progressDeadlineSeconds ({}s): {reasons}",
                self.spec.progress_deadline_seconds()
            ),
        );
    }

    /// Steps the schedule; once it is done, promotes when `ready`, or says what is missing.
    fn advance(&mut self, ready: Result<(), String>) {
        let steps = steps_to_promotion(self.spec);
        match self.spec.strategy() {
            Strategy::Canary => {
                let weights = schedule(self.spec);
                let position = weights
                    .iter()
                    .position(|&w| w >= self.status.canary_weight)
                    .unwrap_or(0);
                if position + 1 < weights.len() {
                    match self.hook(HookType::ConfirmTrafficIncrease) {
                        None => {}
                        Some(HookOutcome::Failed { hook, reason }) => {
                            let message = format!(
                                "waiting for approval from confirm-traffic-increase hook {hook}: {reason}"
                            );
                            self.alert_waiting(HookType::ConfirmTrafficIncrease, &message);
                            self.status.message = Some(message);
                        }
                        Some(HookOutcome::Passed) => {
                            self.status.last_step_time = Some(rfc3339(self.now));
                            self.set_weight(weights[position + 1]);
                        }
                    }
                    return;
                }
            }
            Strategy::ABTesting | Strategy::BlueGreen => {
                if self.status.iterations < steps {
                    self.status.iterations += 1;
                    self.status.last_step_time = Some(rfc3339(self.now));
                }
                if self.status.iterations < steps {
                    self.status.message =
                        Some(format!("iteration {} of {steps}", self.status.iterations));
                    return;
                }
            }
        }
        if let Err(missing) = ready {
            self.status.evidence.awaiting_evidence = true;
            self.status.message = Some(format!(
                "schedule done; holding for the evidence a promotion needs: {missing}"
            ));
            return;
        }
        self.status.evidence.awaiting_evidence = false;
        match self.hook(HookType::ConfirmPromotion) {
            None => {}
            Some(HookOutcome::Failed { hook, reason }) => {
                self.set_phase(Phase::WaitingPromotion);
                let message =
                    format!("waiting for approval from confirm-promotion hook {hook}: {reason}");
                self.alert_waiting(HookType::ConfirmPromotion, &message);
                self.status.message = Some(message);
            }
            Some(HookOutcome::Passed) => self.promote(),
        }
    }

    fn promote(&mut self) {
        if self.spec.strategy() == Strategy::BlueGreen {
            // Blue/green switches all traffic to the analysed canary while the primary updates.
            self.actions
                .push(Action::SetRoutes(Routes::canary_weight(100)));
            self.status.canary_weight = 100;
        }
        self.set_phase(Phase::Promoting);
        self.status.last_step_time = Some(rfc3339(self.now));
        self.actions.push(Action::PromotePrimary);
        let message = format!(
            "copying {} template spec to {}-primary",
            self.spec.target_ref.name, self.spec.target_ref.name
        );
        self.status.message = Some(message.clone());
        self.event(false, "Synced", &message);
        self.requeue = READINESS_POLL.min(self.requeue);
    }

    fn promoting(&mut self) {
        match &self.world.primary {
            Some(primary) if primary.ready => {
                self.set_phase(Phase::Finalising);
                self.status.last_step_time = Some(rfc3339(self.now));
                self.route_back_to_primary();
            }
            primary => {
                let message = primary
                    .as_ref()
                    .and_then(|p| p.message.clone())
                    .unwrap_or_default();
                if self.deadline_passed(parse_time(&self.status.last_step_time)) {
                    self.set_phase(Phase::Failed);
                    self.actions.push(Action::SetRoutes(Routes::all_primary()));
                    let text =
                        format!("the primary did not become ready after the promotion: {message}");
                    self.status.message = Some(text.clone());
                    self.set_condition("False", "Failed", &text);
                    self.event(true, "Synced", &text);
                    self.alert(AlertKind::RolledBack, AlertKind::RolledBack.name(), &text);
                } else {
                    self.status.message =
                        Some(format!("waiting for the primary to roll out: {message}"));
                    self.requeue = READINESS_POLL.min(self.requeue);
                }
            }
        }
    }

    /// Shifts traffic back to the (now promoted) primary: at once, or by stepWeightPromotion.
    fn route_back_to_primary(&mut self) {
        let step = self
            .spec
            .analysis
            .step_weight_promotion
            .unwrap_or(100)
            .max(1);
        let weight = self.status.canary_weight.saturating_sub(step);
        self.status.canary_weight = weight;
        self.actions
            .push(Action::SetRoutes(Routes::canary_weight(weight)));
        if weight > 0 {
            self.status.message = Some(format!("promoting: canary weight {weight}"));
        }
    }

    fn finalise(&mut self, revision: &str) {
        if self.status.canary_weight > 0 {
            let due = parse_time(&self.status.last_step_time).unwrap_or(self.now)
                + self.spec.analysis.interval.as_secs() as i64;
            if self.now < due {
                self.requeue = (due - self.now) as u64;
                return;
            }
            self.status.last_step_time = Some(rfc3339(self.now));
            self.route_back_to_primary();
            if self.status.canary_weight > 0 {
                return;
            }
        }
        self.actions.push(Action::ScaleTarget(0));
        self.set_phase(Phase::Succeeded);
        self.status.last_promoted_spec = Some(revision.to_string());
        let message = format!(
            "promotion completed: {}-primary runs the new revision",
            self.spec.target_ref.name
        );
        self.status.message = Some(message.clone());
        self.set_condition("True", "Succeeded", &message);
        self.actions.push(Action::Notify(HookType::PostRollout));
        self.event(false, "Synced", &message);
        self.alert(AlertKind::Promoted, AlertKind::Promoted.name(), &message);
    }

    fn rollback(&mut self, reason: &str) {
        self.roll_back(FAILED, reason);
    }

    fn roll_back(&mut self, code: &str, reason: &str) {
        self.actions.push(Action::SetRoutes(Routes::all_primary()));
        self.actions.push(Action::ScaleTarget(0));
        self.status.canary_weight = 0;
        self.set_phase(Phase::Failed);
        let message = format!("rolling back {}: {reason}", self.spec.target_ref.name);
        self.status.message = Some(message.clone());
        self.set_condition("False", code, &message);
        self.actions.push(Action::Notify(HookType::Rollback));
        self.event(true, "Synced", &message);
        let kind = if code == INCONCLUSIVE {
            AlertKind::Inconclusive
        } else {
            AlertKind::RolledBack
        };
        self.alert(kind, kind.name(), reason);
    }
}

/// A hook type as the Canary spells it (`confirm-rollout`, ...).
fn hook_name(kind: HookType) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{kind:?}"))
}
