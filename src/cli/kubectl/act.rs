//! `kubectl sluice promote|abort|retry|suspend|resume NAME`: each asks the controller through
//! the Canary, an annotation (carried out once per value) or `spec.suspend`, after checking that
//! the action applies to the release as it stands, so that a mistyped command says why instead
//! of doing nothing.

use kube::api::{Patch, PatchParams};
use serde_json::json;
use sluice_core::api::{Canary, Phase};
use sluice_core::rollout::{MANUAL_ABORT, MANUAL_PROMOTE, MANUAL_RETRY};

use super::super::exit::Exit;
use super::{Connection, KubectlError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Promote,
    Abort,
    Retry,
    Suspend,
    Resume,
}

#[derive(clap::Args)]
pub struct Args {
    name: String,
    #[command(flatten)]
    connection: Connection,
}

/// What the action changes on the Canary, or why it does not apply.
pub fn plan(action: Action, canary: &Canary, stamp: &str) -> Result<Plan, String> {
    let name = canary.metadata.name.clone().unwrap_or_default();
    let phase = canary
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(Phase::Initializing);
    let in_flight = matches!(
        phase,
        Phase::Progressing | Phase::Waiting | Phase::WaitingPromotion
    );
    let suspended = canary.spec.suspend;
    let annotate = |key: &str, said: String| Plan::Patch {
        patch: json!({"metadata": {"annotations": {key: stamp}}}),
        said,
    };
    match action {
        Action::Promote | Action::Abort if suspended => Err(format!(
            "canary {name} is suspended: nothing moves until `kubectl sluice resume {name}`"
        )),
        Action::Promote if in_flight => Ok(annotate(
            MANUAL_PROMOTE,
            format!("canary {name}: promotion requested; the controller promotes at its next step"),
        )),
        Action::Abort if in_flight => Ok(annotate(
            MANUAL_ABORT,
            format!("canary {name}: abort requested; the controller rolls back at its next step"),
        )),
        Action::Promote | Action::Abort => Err(format!(
            "canary {name} has no release under way (phase {phase:?}); a release starts when the target's pod template changes"
        )),
        Action::Retry if phase == Phase::Failed => Ok(annotate(
            MANUAL_RETRY,
            format!("canary {name}: retry requested; the controller starts the release again"),
        )),
        Action::Retry => Err(format!(
            "canary {name} did not fail (phase {phase:?}): only a rolled-back release can be retried"
        )),
        Action::Suspend if suspended => {
            Ok(Plan::Nothing(format!("canary {name} is suspended already")))
        }
        Action::Suspend => Ok(Plan::Patch {
            patch: json!({"spec": {"suspend": true}}),
            said: format!("canary {name} suspended: the release holds where it is"),
        }),
        Action::Resume if !suspended => {
            Ok(Plan::Nothing(format!("canary {name} is not suspended")))
        }
        Action::Resume => Ok(Plan::Patch {
            patch: json!({"spec": {"suspend": false}}),
            said: format!("canary {name} resumed"),
        }),
    }
}

#[derive(Debug, PartialEq)]
pub enum Plan {
    /// A merge patch of the Canary, and what to tell once it is applied.
    Patch {
        patch: serde_json::Value,
        said: String,
    },
    /// Already so: nothing to change.
    Nothing(String),
}

pub fn run(action: Action, args: Args) -> Exit {
    super::block_on(async {
        println!("{}", act(action, &args).await?);
        Ok(Exit::SUCCESS)
    })
}

async fn act(action: Action, args: &Args) -> Result<String, KubectlError> {
    let cluster = args.connection.connect().await?;
    let canary = cluster.canary(&args.name).await?;
    // Each request needs a value not handled before: the time, to the millisecond.
    let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    match plan(action, &canary, &stamp).map_err(KubectlError::Refused)? {
        Plan::Nothing(said) => Ok(said),
        Plan::Patch { patch, said } => {
            cluster
                .canaries()
                .patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| {
                    KubectlError::from_kube(&format!("updating canary {}", args.name), e)
                })?;
            Ok(said)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(phase: &str, suspend: bool) -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"kind": "Deployment", "name": "podinfo"},
                "suspend": suspend,
                "analysis": {"interval": "10s"}
            },
            "status": {"phase": phase}
        }))
        .expect("a Canary")
    }

    #[test]
    fn promote_and_abort_apply_only_to_a_release_in_flight() {
        let stamp = "2026-12-04T10:00:00.000Z";
        let plan_of = |action, phase| plan(action, &canary(phase, false), stamp);
        assert_eq!(
            plan_of(Action::Promote, "Progressing"),
            Ok(Plan::Patch {
                patch: json!({"metadata": {"annotations": {"sluice.dev/promote": stamp}}}),
                said:
                    "canary podinfo: promotion requested; the controller promotes at its next step"
                        .into()
            })
        );
        assert!(matches!(
            plan_of(Action::Abort, "WaitingPromotion"),
            Ok(Plan::Patch { .. })
        ));
        let refused = plan_of(Action::Promote, "Succeeded").expect_err("nothing to promote");
        assert!(
            refused.contains("no release under way (phase Succeeded)"),
            "{refused}"
        );
        assert!(plan_of(Action::Abort, "Failed").is_err());
        let suspended =
            plan(Action::Promote, &canary("Progressing", true), stamp).expect_err("suspended");
        assert!(
            suspended.contains("kubectl sluice resume podinfo"),
            "{suspended}"
        );
    }

    #[test]
    fn retry_applies_only_after_a_failure() {
        let stamp = "s";
        assert!(matches!(
            plan(Action::Retry, &canary("Failed", false), stamp),
            Ok(Plan::Patch { .. })
        ));
        let refused =
            plan(Action::Retry, &canary("Succeeded", false), stamp).expect_err("no failure");
        assert!(refused.contains("only a rolled-back release"), "{refused}");
    }

    #[test]
    fn suspend_and_resume_set_the_spec_and_are_idempotent() {
        let stamp = "s";
        assert_eq!(
            plan(Action::Suspend, &canary("Progressing", false), stamp),
            Ok(Plan::Patch {
                patch: json!({"spec": {"suspend": true}}),
                said: "canary podinfo suspended: the release holds where it is".into()
            })
        );
        assert!(matches!(
            plan(Action::Suspend, &canary("Progressing", true), stamp),
            Ok(Plan::Nothing(_))
        ));
        assert!(matches!(
            plan(Action::Resume, &canary("Progressing", true), stamp),
            Ok(Plan::Patch { .. })
        ));
        assert!(matches!(
            plan(Action::Resume, &canary("Progressing", false), stamp),
            Ok(Plan::Nothing(_))
        ));
    }
}
