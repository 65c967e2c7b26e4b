//! What deleting a Canary with `revertOnDeletion` does next. The Canary owns the primary, the
//! Services and the router's objects, so Kubernetes deletes them with it; the finalizer holds
//! the deletion until the target, scaled to zero while the primary served, is serving again and
//! traffic points at it. Decided here, carried out by the controller, one step per reconcile.

use super::World;
use crate::api::CanarySpec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revert {
    /// Scale the target to this many replicas, then look again.
    ScaleTarget(i32),
    /// The target is scaling up; look again shortly. The primary still serves meanwhile.
    Wait { message: String },
    /// Point traffic at the target and let the deletion go on. `late` says why it was not ready
    /// when the progress deadline passed: a deletion is not held forever.
    HandBack { late: Option<String> },
    /// No target to hand traffic to: let the deletion go on.
    NoTarget,
}

/// The next step, `waited_seconds` after the deletion was asked for.
pub fn revert(spec: &CanarySpec, world: &World, waited_seconds: i64) -> Revert {
    let Some(target) = &world.target else {
        return Revert::NoTarget;
    };
    // As many pods as serve now; a target that never had a primary keeps its own count.
    let replicas = world
        .primary
        .as_ref()
        .map_or(target.replicas, |primary| primary.replicas)
        .max(1);
    if target.replicas < replicas {
        return Revert::ScaleTarget(replicas);
    }
    if target.ready {
        return Revert::HandBack { late: None };
    }
    let message = target.message.clone().unwrap_or_else(|| {
        format!(
            "waiting for Deployment {} to be ready",
            spec.target_ref.name
        )
    });
    if waited_seconds > i64::from(spec.progress_deadline_seconds()) {
        Revert::HandBack {
            late: Some(message),
        }
    } else {
        Revert::Wait { message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::Workload;

    fn spec() -> CanarySpec {
        serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "Deployment", "name": "podinfo"},
            "analysis": {"interval": "1m"},
            "progressDeadlineSeconds": 60,
        }))
        .unwrap()
    }

    fn workload(replicas: i32, ready: bool) -> Workload {
        Workload {
            replicas,
            ready,
            message: (!ready).then(|| "rolling out".to_string()),
        }
    }

    fn world(target: Option<Workload>, primary: Option<Workload>) -> World {
        World {
            target,
            primary,
            ..World::default()
        }
    }

    #[test]
    fn the_target_takes_the_primarys_replicas_then_the_traffic() {
        let spec = spec();
        let scaled_down = world(Some(workload(0, true)), Some(workload(3, true)));
        assert_eq!(revert(&spec, &scaled_down, 0), Revert::ScaleTarget(3));
        let rolling = world(Some(workload(3, false)), Some(workload(3, true)));
        assert_eq!(
            revert(&spec, &rolling, 10),
            Revert::Wait {
                message: "rolling out".into()
            }
        );
        let ready = world(Some(workload(3, true)), Some(workload(3, true)));
        assert_eq!(revert(&spec, &ready, 10), Revert::HandBack { late: None });
    }

    #[test]
    fn a_target_never_ready_is_handed_traffic_at_the_deadline() {
        let rolling = world(Some(workload(2, false)), Some(workload(2, true)));
        assert_eq!(
            revert(&spec(), &rolling, 61),
            Revert::HandBack {
                late: Some("rolling out".into())
            }
        );
    }

    #[test]
    fn without_a_primary_or_a_target() {
        // The release never started: the target keeps serving with at least one pod.
        let alone = world(Some(workload(0, true)), None);
        assert_eq!(revert(&spec(), &alone, 0), Revert::ScaleTarget(1));
        let bigger = world(Some(workload(4, true)), Some(workload(2, true)));
        assert_eq!(revert(&spec(), &bigger, 0), Revert::HandBack { late: None });
        assert_eq!(revert(&spec(), &world(None, None), 0), Revert::NoTarget);
    }
}
