//! The rollout state machine as tables over a virtual clock: given a status, a world and the
//! time, the exact actions and the next status.

use std::collections::BTreeMap;

use sluice_core::analysis::{Observation, Observed, RequestCounts};
use sluice_core::api::{Canary, CanaryStatus, HookType, Phase};
use sluice_core::rollout::{
    Action, AlertEvent, AlertKind, Decision, HookOutcome, Inputs, MANUAL_ABORT, MANUAL_PROMOTE,
    MANUAL_RETRY, Needs, ReleaseQueue, Routes, Step, Workload, World, step,
};

const T0: i64 = 1_800_000_000;

/// A Canary whose comparisons look once per interval: the tables below count steps.
fn canary(analysis_extra: &str) -> Canary {
    canary_checking("1m", analysis_extra)
}

fn canary_checking(check: &str, analysis_extra: &str) -> Canary {
    let yaml = format!(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: Canary
metadata: {{name: podinfo, namespace: test}}
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  service: {{port: 9898}}
  progressDeadlineSeconds: 300
  analysis:
    interval: 1m
    checkInterval: {check}
    threshold: 2
{analysis_extra}
    metrics:
      - name: errors
        templateRef: {{name: app-errors}}
        comparison: {{type: errorRate, requestsTemplateRef: {{name: app-requests}}}}
"#
    );
    serde_yaml_ng::from_str(&yaml).unwrap()
}

fn canary_strategy() -> Canary {
    canary("    stepWeight: 10\n    maxWeight: 50")
}

fn ready(replicas: i32) -> Option<Workload> {
    Some(Workload {
        replicas,
        ready: true,
        message: None,
    })
}

fn world(revision: &str) -> World {
    World {
        target: ready(0),
        primary: ready(2),
        revision: Some(revision.into()),
        ..World::default()
    }
}

fn healthy() -> Vec<Observation> {
    counts(600, 6, 5400, 54)
}

fn failing() -> Vec<Observation> {
    counts(600, 30, 5400, 5)
}

fn counts(nc: u64, ec: u64, np: u64, ep: u64) -> Vec<Observation> {
    vec![Observation {
        metric: "errors".into(),
        result: Ok(Observed::Counts {
            canary: RequestCounts {
                requests: nc as f64,
                errors: ec as f64,
            },
            primary: RequestCounts {
                requests: np as f64,
                errors: ep as f64,
            },
        }),
    }]
}

/// Adds one look's counts to the running totals the machine is given (it counts what is new
/// since its last look); no data passes as it is.
fn add(totals: &mut Vec<Observation>, look: Vec<Observation>) -> Vec<Observation> {
    look.into_iter()
        .map(|o| {
            let Ok(Observed::Counts { canary, primary }) = o.result else {
                return o;
            };
            let sum = |a: RequestCounts, b: RequestCounts| RequestCounts {
                requests: a.requests + b.requests,
                errors: a.errors + b.errors,
            };
            let total = match totals.iter_mut().find(|t| t.metric == o.metric) {
                Some(t) => t,
                None => {
                    let zero = RequestCounts {
                        requests: 0.0,
                        errors: 0.0,
                    };
                    totals.push(Observation {
                        metric: o.metric.clone(),
                        result: Ok(Observed::Counts {
                            canary: zero,
                            primary: zero,
                        }),
                    });
                    totals.last_mut().unwrap()
                }
            };
            if let Ok(Observed::Counts {
                canary: c,
                primary: p,
            }) = &mut total.result
            {
                *c = sum(*c, canary);
                *p = sum(*p, primary);
            }
            total.clone()
        })
        .collect()
}

fn no_data() -> Vec<Observation> {
    vec![Observation {
        metric: "errors".into(),
        result: Err("the query returned no data".into()),
    }]
}

fn done(step: Step) -> Decision {
    match step {
        Step::Done(d) => *d,
        Step::Need(n) => panic!("needs {n:?}"),
    }
}

fn routes(actions: &[Action]) -> Vec<Routes> {
    actions
        .iter()
        .filter_map(|a| {
            if let Action::SetRoutes(r) = a {
                Some(*r)
            } else {
                None
            }
        })
        .collect()
}

fn no_events(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::Event { .. }))
        .cloned()
        .collect()
}

/// Drives a release to its end: feeds `observe(step)` whenever metrics are asked, the hook
/// outcomes in `hooks`, and moves the clock to each requeue. Returns the phase and weight after
/// each decision, and every decision. A fresh JSON round trip of the status between steps stands
/// for a controller restart at every step.
struct Drive {
    trail: Vec<(Phase, u32)>,
    decisions: Vec<Decision>,
    status: CanaryStatus,
    now: i64,
}

fn drive(
    canary: &Canary,
    mut status: CanaryStatus,
    world: &mut World,
    observe: &dyn Fn(usize) -> Vec<Observation>,
    hooks: &BTreeMap<HookType, HookOutcome>,
    max_steps: usize,
) -> Drive {
    let mut now = T0;
    let mut trail = Vec::new();
    let mut decisions = Vec::new();
    let mut analyses = 0;
    let mut totals = Vec::new();
    for _ in 0..max_steps {
        let mut inputs = Inputs {
            hooks: hooks.clone(),
            ..Inputs::default()
        };
        let decision = loop {
            match step(&canary.spec, &status, world, &inputs, now) {
                Step::Done(d) => break *d,
                Step::Need(Needs { metrics, .. }) => {
                    assert!(
                        metrics.is_some() && inputs.observations.is_none(),
                        "asked for what it had"
                    );
                    if status.evidence.metrics.is_empty() {
                        totals.clear();
                    }
                    inputs.observations = Some(add(&mut totals, observe(analyses)));
                    analyses += 1;
                }
            }
        };
        // Apply what the world would do.
        for action in &decision.actions {
            match action {
                Action::ScaleTarget(n) => world.target.as_mut().unwrap().replicas = *n,
                Action::PromotePrimary => world.primary.as_mut().unwrap().ready = false,
                _ => {}
            }
        }
        // A restart between every two steps: only the serialised status survives.
        let json = serde_json::to_string(&decision.status).unwrap();
        status = serde_json::from_str(&json).unwrap();
        trail.push((status.phase.unwrap(), status.canary_weight));
        let finished = matches!(status.phase, Some(Phase::Succeeded | Phase::Failed));
        decisions.push(decision.clone());
        if finished {
            break;
        }
        now += decision.requeue_seconds as i64;
        // The primary finishes its rollout by the next look.
        if let Some(p) = world.primary.as_mut() {
            p.ready = true;
        }
    }
    Drive {
        trail,
        decisions,
        status,
        now,
    }
}

fn initialized(canary: &Canary) -> CanaryStatus {
    let mut w = world("rev1");
    w.primary = None;
    let first = done(step(
        &canary.spec,
        &CanaryStatus::default(),
        &w,
        &Inputs::default(),
        T0,
    ));
    assert_eq!(first.status.phase, Some(Phase::Initializing));
    assert_eq!(no_events(&first.actions), [Action::Bootstrap]);
    let w = world("rev1");
    let second = done(step(
        &canary.spec,
        &first.status,
        &w,
        &Inputs::default(),
        T0 + 10,
    ));
    assert_eq!(second.status.phase, Some(Phase::Initialized));
    assert_eq!(
        no_events(&second.actions),
        [Action::Bootstrap, Action::ScaleTarget(0)]
    );
    assert_eq!(second.status.last_applied_spec.as_deref(), Some("rev1"));
    second.status
}

#[test]
fn a_healthy_release_steps_through_flaggers_phases() {
    let c = canary_strategy();
    let status = initialized(&c);
    let mut w = world("rev2");
    let d = drive(&c, status, &mut w, &|_| healthy(), &BTreeMap::new(), 40);
    let expected = [
        (Phase::Progressing, 0),
        (Phase::Progressing, 10),
        (Phase::Progressing, 20),
        (Phase::Progressing, 30),
        (Phase::Progressing, 40),
        (Phase::Progressing, 50),
        (Phase::Promoting, 50),
        (Phase::Finalising, 0),
        (Phase::Succeeded, 0),
    ];
    assert_eq!(d.trail, expected);
    let all_routes: Vec<Routes> = d
        .decisions
        .iter()
        .flat_map(|x| routes(&x.actions))
        .collect();
    let weights: Vec<u32> = all_routes.iter().map(|r| r.canary).collect();
    assert_eq!(weights, [0, 10, 20, 30, 40, 50, 0]);
    assert!(all_routes.iter().all(|r| r.primary + r.canary == 100));
    let last = d.decisions.last().unwrap();
    assert_eq!(
        no_events(&last.actions),
        [
            Action::ScaleTarget(0),
            Action::Notify(HookType::PostRollout)
        ]
    );
    assert_eq!(d.status.last_promoted_spec.as_deref(), Some("rev2"));
    assert_eq!(d.status.conditions[0].status, "True");
    // Five analyses at one-minute intervals, then the promotion.
    assert_eq!(d.status.evidence.analysed_intervals, 5);
    assert!(d.now - T0 >= 5 * 60, "{}", d.now - T0);
}

#[test]
fn a_failing_canary_is_rolled_back_never_promoted() {
    // One look a minute (checkInterval 1m): a failure as loud as one pod's burst is counted in
    // full only once it has been loud in more looks than a burst can touch, and each look one
    // look late (issue 15), so at this cadence it reaches the schedule's end, is held there
    // without a promotion, and is rolled back. At the default 15-s checks it is the second step.
    let c = canary_strategy();
    let status = initialized(&c);
    let mut w = world("rev2");
    let d = drive(&c, status, &mut w, &|_| failing(), &BTreeMap::new(), 20);
    assert_eq!(
        d.trail,
        [
            (Phase::Progressing, 0),
            (Phase::Progressing, 10),
            (Phase::Progressing, 20),
            (Phase::Progressing, 30),
            (Phase::Progressing, 40),
            (Phase::Progressing, 50),
            (Phase::Progressing, 50),
            (Phase::Failed, 0)
        ]
    );
    let last = d.decisions.last().unwrap();
    assert_eq!(
        no_events(&last.actions),
        [
            Action::SetRoutes(Routes::all_primary()),
            Action::ScaleTarget(0),
            Action::Notify(HookType::Rollback)
        ]
    );
    assert!(
        d.status.message.as_deref().unwrap().contains("errors:"),
        "{:?}",
        d.status.message
    );
    assert_eq!(d.status.conditions[0].status, "False");
}

#[test]
fn checks_between_steps_roll_back_early_and_steps_stay_once_per_interval() {
    // Every 15 s the comparisons look; traffic steps once a minute.
    let c = canary_checking("15s", "    stepWeight: 10\n    maxWeight: 50");
    let status = initialized(&c);
    let mut w = world("rev2");
    let quarter = |n: usize| {
        if n < 8 {
            counts(150, 1, 1350, 13)
        } else {
            counts(150, 15, 1350, 2)
        }
    };
    let d = drive(&c, status, &mut w, &quarter, &BTreeMap::new(), 40);
    // Two healthy minutes (four looks each) step 10 → 30; the regression, as loud as a burst,
    // is counted in full once it has been loud for more looks than a burst can touch, one look
    // late (issue 15): at a check of the fourth minute, before its step.
    assert_eq!(d.trail.last(), Some(&(Phase::Failed, 0)));
    assert_eq!(d.trail.iter().map(|(_, w)| *w).max(), Some(40));
    let rolled_at = d.now - T0;
    assert_eq!(d.status.evidence.analysed_intervals, 3);
    assert!(rolled_at > 180 && rolled_at < 240, "{rolled_at}");
    assert!(d.status.last_check_time.is_some());
}

#[test]
fn a_release_waiting_only_for_evidence_is_promoted_at_the_first_check_that_has_it() {
    // 150 canary requests a check: the five steps have 3,000; minSamplePerArm 3,300 is reached
    // two checks after the last step.
    let c = canary_checking(
        "15s",
        "    stepWeight: 10\n    maxWeight: 50\n    minSamplePerArm: 3300",
    );
    let status = initialized(&c);
    let mut w = world("rev2");
    let d = drive(
        &c,
        status,
        &mut w,
        &|_| counts(150, 1, 1350, 13),
        &BTreeMap::new(),
        60,
    );
    let promoting = d
        .decisions
        .iter()
        .find(|d| d.status.phase == Some(Phase::Promoting))
        .expect("promoted");
    assert_eq!(promoting.status.evidence.analysed_intervals, 5);
    let waited = promoting.status.message.clone().unwrap_or_default();
    let at = promoting.status.last_step_time.clone().unwrap_or_default();
    let last_step = promoting
        .status
        .last_analysis_time
        .clone()
        .unwrap_or_default();
    assert!(
        at > last_step,
        "promoted at {at}, a check after the step at {last_step}: {waited}"
    );
}

#[test]
fn a_regression_that_appears_later_is_rolled_back_where_it_appears() {
    let c = canary_strategy();
    let status = initialized(&c);
    let mut w = world("rev2");
    let d = drive(
        &c,
        status,
        &mut w,
        &|n| if n < 2 { healthy() } else { failing() },
        &BTreeMap::new(),
        20,
    );
    // Loud from the third look a minute: counted in full two looks later (see above).
    assert_eq!(d.trail.last(), Some(&(Phase::Failed, 0)));
    assert_eq!(d.trail[d.trail.len() - 2], (Phase::Progressing, 50));
}

#[test]
fn no_data_holds_and_becomes_inconclusive_at_the_deadline() {
    let c = canary_strategy();
    let status = initialized(&c);
    let mut w = world("rev2");
    let d = drive(&c, status, &mut w, &|_| no_data(), &BTreeMap::new(), 30);
    // Never more than the first step, never promoted; failed after progressDeadlineSeconds.
    assert!(
        d.trail.iter().all(|(_, weight)| *weight <= 10),
        "{:?}",
        d.trail
    );
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .contains("inconclusive"),
        "{:?}",
        d.status.message
    );
    assert!(
        d.now - T0 > 300 && d.now - T0 <= 300 + 2 * 60,
        "{}",
        d.now - T0
    );
}

#[test]
fn not_enough_evidence_holds_at_the_maximum_weight() {
    let c = canary("    stepWeight: 25\n    maxWeight: 50\n    minSamplePerArm: 2000");
    let status = initialized(&c);
    let mut w = world("rev2");
    let d = drive(&c, status, &mut w, &|_| healthy(), &BTreeMap::new(), 40);
    // 600 canary requests an interval: 2000 are reached in the fourth analysis.
    let at_max = d
        .trail
        .iter()
        .filter(|t| **t == (Phase::Progressing, 50))
        .count();
    assert_eq!(at_max, 3, "{:?}", d.trail);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
}

#[test]
fn gates_hold_the_release() {
    let c = canary(
        "    stepWeight: 25\n    maxWeight: 50\n    webhooks:\n      - {name: approve, type: confirm-rollout, url: 'http://127.0.0.1:1/'}\n      - {name: promote, type: confirm-promotion, url: 'http://127.0.0.1:1/'}",
    );
    let status = initialized(&c);
    let mut w = world("rev2");
    let closed = HookOutcome::Failed {
        hook: "approve".into(),
        reason: "HTTP 403".into(),
    };
    // Closed rollout gate: waiting, no traffic to the canary.
    let mut hooks = BTreeMap::new();
    hooks.insert(HookType::ConfirmRollout, closed.clone());
    hooks.insert(HookType::ConfirmPromotion, HookOutcome::Passed);
    let d = drive(&c, status.clone(), &mut w, &|_| healthy(), &hooks, 5);
    assert!(
        d.trail[1..].iter().all(|t| *t == (Phase::Waiting, 0)),
        "{:?}",
        d.trail
    );
    // Open rollout gate, closed promotion gate: analysis goes on, promotion waits.
    hooks.insert(HookType::ConfirmRollout, HookOutcome::Passed);
    hooks.insert(HookType::ConfirmPromotion, closed);
    let mut w = world("rev2");
    let d = drive(&c, status.clone(), &mut w, &|_| healthy(), &hooks, 8);
    assert_eq!(
        d.trail.last(),
        Some(&(Phase::WaitingPromotion, 50)),
        "{:?}",
        d.trail
    );
    // Asking for the gate: the first step needs it, and says so.
    let started = done(step(
        &c.spec,
        &status,
        &world("rev2"),
        &Inputs::default(),
        T0,
    ));
    let need = step(
        &c.spec,
        &started.status,
        &world("rev2"),
        &Inputs::default(),
        T0 + 10,
    );
    assert_eq!(
        need,
        Step::Need(Needs {
            metrics: None,
            hooks: vec![HookType::ConfirmRollout]
        })
    );
}

#[test]
fn failing_rollout_hooks_count_as_failed_checks() {
    let c = canary(
        "    stepWeight: 10\n    maxWeight: 50\n    webhooks:\n      - {name: smoke, type: rollout, url: 'http://127.0.0.1:1/'}",
    );
    let status = initialized(&c);
    let mut w = world("rev2");
    let mut hooks = BTreeMap::new();
    hooks.insert(
        HookType::Rollout,
        HookOutcome::Failed {
            hook: "smoke".into(),
            reason: "HTTP 500".into(),
        },
    );
    let d = drive(&c, status, &mut w, &|_| healthy(), &hooks, 10);
    // threshold 2: two failed checks, then the rollback.
    assert_eq!(
        d.trail,
        [
            (Phase::Progressing, 0),
            (Phase::Progressing, 10),
            (Phase::Progressing, 10),
            (Phase::Failed, 0)
        ]
    );
    assert!(
        d.status
            .message
            .unwrap()
            .contains("rollout hook smoke failed")
    );
}

#[test]
fn a_new_revision_mid_analysis_restarts_from_zero() {
    let c = canary_strategy();
    let status = initialized(&c);
    let mut w = world("rev2");
    let d = drive(&c, status, &mut w, &|_| healthy(), &BTreeMap::new(), 3);
    assert_eq!(d.status.canary_weight, 20);
    let w3 = world("rev3");
    let restarted = done(step(
        &c.spec,
        &d.status,
        &w3,
        &Inputs::default(),
        d.now + 60,
    ));
    assert_eq!(restarted.status.canary_weight, 0);
    assert_eq!(restarted.status.phase, Some(Phase::Progressing));
    assert_eq!(restarted.status.last_applied_spec.as_deref(), Some("rev3"));
    assert_eq!(restarted.status.evidence.analysed_intervals, 0);
    assert_eq!(routes(&restarted.actions), [Routes::all_primary()]);
}

#[test]
fn a_canary_that_never_gets_ready_fails_at_the_deadline() {
    let c = canary_strategy();
    let status = initialized(&c);
    let mut w = world("rev2");
    w.target = Some(Workload {
        replicas: 2,
        ready: false,
        message: Some("0 of 2 available".into()),
    });
    let d = drive(&c, status, &mut w, &|_| healthy(), &BTreeMap::new(), 100);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert!(d.trail.iter().all(|t| t.1 == 0));
    assert!(
        d.status
            .message
            .unwrap()
            .contains("not ready within progressDeadlineSeconds")
    );
}

#[test]
fn annotations_promote_abort_and_retry() {
    let c = canary_strategy();
    let status = initialized(&c);
    let mut w = world("rev2");
    let d = drive(&c, status, &mut w, &|_| healthy(), &BTreeMap::new(), 2);
    assert_eq!(d.status.canary_weight, 10);

    let mut promote = world("rev2");
    promote
        .annotations
        .insert(MANUAL_PROMOTE.into(), "now".into());
    let p = done(step(
        &c.spec,
        &d.status,
        &promote,
        &Inputs::default(),
        d.now,
    ));
    assert_eq!(p.status.phase, Some(Phase::Promoting));
    assert!(p.actions.contains(&Action::PromotePrimary));

    let mut abort = world("rev2");
    abort.annotations.insert(MANUAL_ABORT.into(), "1".into());
    let a = done(step(&c.spec, &d.status, &abort, &Inputs::default(), d.now));
    assert_eq!(a.status.phase, Some(Phase::Failed));
    // The same annotation value is not acted on twice; a retry runs the same revision again.
    let mut retry = abort.clone();
    let again = done(step(
        &c.spec,
        &a.status,
        &retry,
        &Inputs::default(),
        d.now + 1,
    ));
    assert_eq!(again.status.phase, Some(Phase::Failed));
    retry.annotations.insert(MANUAL_RETRY.into(), "1".into());
    let r = done(step(
        &c.spec,
        &a.status,
        &retry,
        &Inputs::default(),
        d.now + 2,
    ));
    assert_eq!(r.status.phase, Some(Phase::Progressing));
    assert_eq!(r.status.last_applied_spec.as_deref(), Some("rev2"));
}

#[test]
fn blue_green_with_mirror_analyses_on_a_copy_of_the_traffic_then_switches() {
    let c = canary("    iterations: 3\n    mirror: true\n    mirrorWeight: 50");
    let status = initialized(&c);
    let mut w = world("rev2");
    let d = drive(&c, status, &mut w, &|_| healthy(), &BTreeMap::new(), 20);
    let every: Vec<Routes> = d
        .decisions
        .iter()
        .flat_map(|decision| routes(&decision.actions))
        .collect();
    let mirrored = Routes {
        mirror: true,
        ..Routes::all_primary()
    };
    // A new revision starts on the primary; mirrored while analysed, then all traffic to the
    // canary while the primary updates, then back to the primary without a mirror.
    assert_eq!(
        every,
        [
            Routes::all_primary(),
            mirrored,
            Routes::canary_weight(100),
            Routes::all_primary()
        ]
    );
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    // Without mirror, blue/green sends the canary nothing while it is analysed.
    let plain = canary("    iterations: 3");
    let mut w = world("rev2");
    let d = drive(
        &plain,
        initialized(&plain),
        &mut w,
        &|_| healthy(),
        &BTreeMap::new(),
        20,
    );
    let every: Vec<Routes> = d
        .decisions
        .iter()
        .flat_map(|x| routes(&x.actions))
        .collect();
    assert!(!every.iter().any(|r| r.mirror), "{every:?}");
}

#[test]
fn ab_testing_routes_matching_requests_then_promotes() {
    let c = canary("    iterations: 3\n    match:\n      - headers: {x-canary: {exact: insider}}");
    let status = initialized(&c);
    let mut w = world("rev2");
    let d = drive(&c, status, &mut w, &|_| healthy(), &BTreeMap::new(), 20);
    let first_routes = routes(&d.decisions[1].actions);
    assert_eq!(
        first_routes,
        [Routes {
            primary: 100,
            canary: 0,
            canary_match: true,
            mirror: false
        }]
    );
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    assert_eq!(d.status.iterations, 3);
    assert_eq!(d.status.evidence.analysed_intervals, 3);
}

#[test]
fn blue_green_switches_all_traffic_then_back_to_the_promoted_primary() {
    let c = canary("    iterations: 2");
    let status = initialized(&c);
    let mut w = world("rev2");
    let d = drive(&c, status, &mut w, &|_| healthy(), &BTreeMap::new(), 20);
    let all: Vec<u32> = d
        .decisions
        .iter()
        .flat_map(|x| routes(&x.actions))
        .map(|r| r.canary)
        .collect();
    assert_eq!(all, [0, 100, 0]);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
}

#[test]
fn step_weight_promotion_shifts_traffic_back_in_steps() {
    let c = canary("    stepWeight: 25\n    maxWeight: 50\n    stepWeightPromotion: 20");
    let status = initialized(&c);
    let mut w = world("rev2");
    let d = drive(&c, status, &mut w, &|_| healthy(), &BTreeMap::new(), 30);
    let all: Vec<u32> = d
        .decisions
        .iter()
        .flat_map(|x| routes(&x.actions))
        .map(|r| r.canary)
        .collect();
    assert_eq!(all, [0, 25, 50, 30, 10, 0]);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
}

#[test]
fn an_idle_canary_is_kept_at_zero_and_an_unsupported_target_is_named() {
    let c = canary_strategy();
    let status = initialized(&c);
    let mut w = world("rev1");
    w.target = ready(3);
    let d = done(step(&c.spec, &status, &w, &Inputs::default(), T0));
    assert_eq!(no_events(&d.actions), [Action::ScaleTarget(0)]);
    let mut odd = world("rev1");
    odd.unsupported_kind = Some("StatefulSet".into());
    let d = done(step(&c.spec, &status, &odd, &Inputs::default(), T0));
    assert!(d.status.message.unwrap().contains("spec.targetRef.kind"));
    assert!(matches!(
        d.actions[..],
        [Action::Event { warning: true, .. }]
    ));
}

fn alerts_of(decisions: &[Decision]) -> Vec<AlertEvent> {
    decisions
        .iter()
        .flat_map(|d| d.actions.iter())
        .filter_map(|a| match a {
            Action::Alert(alert) => Some(alert.clone()),
            _ => None,
        })
        .collect()
}

const ALERTING: &str = "    stepWeight: 10\n    maxWeight: 50\n    alerts:\n      - {name: on-call, providerRef: {name: slack}}";

#[test]
fn a_rollback_raises_its_alert_with_what_failed_and_by_how_much() {
    let c = canary(ALERTING);
    let mut w = world("rev2");
    let d = drive(
        &c,
        initialized(&c),
        &mut w,
        &|_| failing(),
        &BTreeMap::new(),
        20,
    );
    assert_eq!(d.status.phase, Some(Phase::Failed));
    let alerts = alerts_of(&d.decisions);
    let kinds: Vec<AlertKind> = alerts.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [AlertKind::Started, AlertKind::RolledBack]);
    let reason = &alerts[1].reason;
    assert!(
        reason.starts_with("errors: errors: canary 5.000% (")
            && reason.contains("vs primary 0.093% ("),
        "{reason}"
    );
    assert!(
        reason.contains("e-value") && reason.contains("(rollback at 100)"),
        "{reason}"
    );
    assert_eq!(d.status.alerts, ["started", "rolled-back"]);

    // Without analysis.alerts nothing is raised and nothing recorded.
    let quiet = canary_strategy();
    let mut w = world("rev2");
    let d = drive(
        &quiet,
        initialized(&quiet),
        &mut w,
        &|_| failing(),
        &BTreeMap::new(),
        20,
    );
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert!(alerts_of(&d.decisions).is_empty());
    assert!(d.status.alerts.is_empty());
}

#[test]
fn a_closed_gate_raises_one_alert_per_release_and_a_new_release_raises_again() {
    let c = canary(&format!(
        "{ALERTING}\n    webhooks:\n      - {{name: approve, type: confirm-rollout, url: 'http://127.0.0.1:1/'}}"
    ));
    let closed = BTreeMap::from([(
        HookType::ConfirmRollout,
        HookOutcome::Failed {
            hook: "approve".into(),
            reason: "answered HTTP 403".into(),
        },
    )]);
    let mut w = world("rev2");
    let d = drive(&c, initialized(&c), &mut w, &|_| healthy(), &closed, 6);
    assert_eq!(d.status.phase, Some(Phase::Waiting));
    let alerts = alerts_of(&d.decisions);
    let kinds: Vec<AlertKind> = alerts.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            AlertKind::Started,
            AlertKind::Waiting(HookType::ConfirmRollout)
        ]
    );
    assert_eq!(
        alerts[1].reason,
        "waiting for approval from confirm-rollout hook approve: answered HTTP 403"
    );
    assert_eq!(d.status.alerts, ["started", "waiting:confirm-rollout"]);
    // A new revision is a new release: its start and its gate are told again.
    let mut w = world("rev3");
    let again = drive(&c, d.status, &mut w, &|_| healthy(), &closed, 6);
    let kinds: Vec<AlertKind> = alerts_of(&again.decisions).iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            AlertKind::Started,
            AlertKind::Waiting(HookType::ConfirmRollout)
        ]
    );
}

/// `--max-concurrent-releases`: a new revision (or a retry) without a free slot waits, with
/// what it waits for, and takes neither the revision nor the retry as handled; it starts once
/// a slot is free.
#[test]
fn a_release_without_a_free_slot_waits_queued_and_starts_when_one_is_free() {
    let c = canary_strategy();
    let status = initialized(&c);
    let mut queued = world("rev2");
    queued.release_queue = Some(ReleaseQueue {
        in_flight: 3,
        limit: 3,
    });
    let q = done(step(&c.spec, &status, &queued, &Inputs::default(), T0 + 20));
    assert_eq!(q.status.phase, Some(Phase::Initialized));
    assert_eq!(q.status.last_applied_spec.as_deref(), Some("rev1"));
    let message = "queued: 3 releases in flight, as many as --max-concurrent-releases (3) allows; this one starts when one of them ends";
    assert_eq!(q.status.message.as_deref(), Some(message));
    assert!(
        q.actions
            .iter()
            .any(|a| matches!(a, Action::Event { reason, .. } if reason == "Queued")),
        "{:?}",
        q.actions
    );
    assert!(q.requeue_seconds <= 10, "{}", q.requeue_seconds);
    // Still queued: the same message, no second Event.
    let again = done(step(
        &c.spec,
        &q.status,
        &queued,
        &Inputs::default(),
        T0 + 30,
    ));
    assert_eq!(again.actions, no_events(&again.actions), "no second Event");
    // A slot is free: the release starts.
    let free = world("rev2");
    let started = done(step(
        &c.spec,
        &again.status,
        &free,
        &Inputs::default(),
        T0 + 40,
    ));
    assert_eq!(started.status.phase, Some(Phase::Progressing));
    assert_eq!(started.status.last_applied_spec.as_deref(), Some("rev2"));

    // A retry asked while queued is carried out once a slot is free.
    let mut failed = started.status.clone();
    failed.phase = Some(Phase::Failed);
    let mut retry = queued.clone();
    retry.annotations.insert(MANUAL_RETRY.into(), "1".into());
    let held = done(step(&c.spec, &failed, &retry, &Inputs::default(), T0 + 50));
    assert_eq!(held.status.phase, Some(Phase::Failed));
    assert!(held.status.handled_actions.is_empty(), "{:?}", held.status);
    retry.release_queue = None;
    let retried = done(step(
        &c.spec,
        &held.status,
        &retry,
        &Inputs::default(),
        T0 + 60,
    ));
    assert_eq!(retried.status.phase, Some(Phase::Progressing));
}
