//! What the rollout sees and what it asks for. No Kubernetes types: the I/O layer summarises the
//! cluster into a `World`, and turns `Action`s into objects.

use std::collections::BTreeMap;

use crate::analysis::Observation;
use crate::api::{AlertSeverity, CanaryStatus, HookType};

/// A Deployment as the rollout sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// Replicas asked for in its spec.
    pub replicas: i32,
    /// Every replica of the current spec is updated and available.
    pub ready: bool,
    /// Why it is not ready, for the status.
    pub message: Option<String>,
}

/// The cluster as it stands, for one Canary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct World {
    /// The user's Deployment, which runs the canary.
    pub target: Option<Workload>,
    /// `<target>-primary`.
    pub primary: Option<Workload>,
    /// The target's revision: a hash of its pod template and of the data of the ConfigMaps and
    /// Secrets it references. `None` when the target does not exist.
    pub revision: Option<String>,
    /// Those ConfigMaps and Secrets (`configmap/NAME`, `secret/NAME`) and their hashes.
    pub tracked_configs: BTreeMap<String, String>,
    /// The target's kind when it is not a Deployment (refused with a clear status).
    pub unsupported_kind: Option<String>,
    /// The Canary's manual-control annotations (name to value), see `MANUAL_*`.
    pub annotations: BTreeMap<String, String>,
    /// The Canary's `metadata.generation`, recorded as the status's `observedGeneration`.
    pub generation: Option<i64>,
    /// Set when a release may not start now: the controller's `--max-concurrent-releases` are
    /// all in flight. A new revision then waits, and starts once one of them ends.
    pub release_queue: Option<ReleaseQueue>,
}

/// Why a release waits for a free slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseQueue {
    /// Releases of other Canaries in flight now.
    pub in_flight: u32,
    /// The controller's `--max-concurrent-releases`.
    pub limit: u32,
}

/// Promote the canary now, skipping what is left of the analysis.
pub const MANUAL_PROMOTE: &str = "sluice.dev/promote";
/// Roll back now.
pub const MANUAL_ABORT: &str = "sluice.dev/abort";
/// Run a failed release again without changing the Deployment.
pub const MANUAL_RETRY: &str = "sluice.dev/retry";

/// How a webhook went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookOutcome {
    /// Every hook of the type answered 2xx (or there are none).
    Passed,
    /// A hook failed after its retries: which one and why.
    Failed { hook: String, reason: String },
}

/// Results the I/O layer gathered because a previous call asked for them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inputs {
    /// The observations `Needs::metrics` asked for: running totals for the comparisons.
    pub observations: Option<Vec<Observation>>,
    /// The outcome of each gating or checking hook type that was asked.
    pub hooks: BTreeMap<HookType, HookOutcome>,
}

/// What the rollout needs before it can decide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub metrics: Option<MetricsWindow>,
    pub hooks: Vec<HookType>,
}

impl Needs {
    pub fn is_empty(&self) -> bool {
        self.metrics.is_none() && self.hooks.is_empty()
    }
}

/// What a look's observations cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsWindow {
    /// Comparisons report running totals over the last this many seconds: since the canary's
    /// first traffic (`status.evidence.countingSince`).
    pub comparison_seconds: u64,
    /// Guardrails are observed too, each over its own interval (an analysis step; a check
    /// between steps looks at the comparisons only).
    pub guardrails: bool,
}

/// Traffic split between the arms. With `canary_match` the router sends the requests that match
/// `analysis.match` to the canary (A/B testing), the rest by weight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Routes {
    pub primary: u32,
    pub canary: u32,
    #[serde(default)]
    pub canary_match: bool,
    /// A copy of the primary's requests also goes to the canary (blue/green with
    /// `analysis.mirror`); only routers that can mirror accept it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mirror: bool,
}

impl Routes {
    pub fn all_primary() -> Self {
        Self {
            primary: 100,
            canary: 0,
            canary_match: false,
            mirror: false,
        }
    }

    pub fn canary_weight(weight: u32) -> Self {
        Self {
            primary: 100 - weight.min(100),
            canary: weight.min(100),
            canary_match: false,
            mirror: false,
        }
    }
}

/// What the I/O layer must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create what a Canary needs and does not have yet: the `-primary` Deployment (from the
    /// target's spec) and its config copies and autoscaler, the apex, primary and canary
    /// Services, and the router's objects (all traffic to the primary). Existing objects are
    /// left as they are.
    Bootstrap,
    /// Set the target's replicas: 0 to idle the canary, or the primary's count to start one.
    ScaleTarget(i32),
    /// Copy the target's pod template and tracked configs to the primary.
    PromotePrimary,
    /// Point traffic.
    SetRoutes(Routes),
    /// Fire the notification hooks of a type (post-rollout, rollback, event).
    Notify(HookType),
    /// Record a Kubernetes Event on the Canary.
    Event {
        warning: bool,
        reason: String,
        message: String,
    },
    /// Tell the Canary's `analysis.alerts`; raised only when it has some, and once per key per
    /// release (`status.alerts`).
    Alert(AlertEvent),
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertKind {
    /// A release started (a new revision, or a retry).
    Started,
    /// An approval gate (confirm-rollout, confirm-traffic-increase, confirm-promotion) said no:
    /// the release waits for it.
    Waiting(HookType),
    /// The canary was promoted and the primary runs it.
    Promoted,
    /// The release was rolled back.
    RolledBack,
    /// The release ended without a verdict (no data until the deadline) and was rolled back.
    Inconclusive,
}

impl AlertKind {
    /// Flagger's severities for the same moments: a rollback is an error, a gate a warning.
    pub fn severity(self) -> AlertSeverity {
        match self {
            AlertKind::Started | AlertKind::Promoted => AlertSeverity::Info,
            AlertKind::Waiting(_) => AlertSeverity::Warn,
            AlertKind::RolledBack | AlertKind::Inconclusive => AlertSeverity::Error,
        }
    }

    /// The kind in words that fit a label: `started`, `waiting`, `promoted`, `rolled-back`,
    /// `inconclusive`.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Started => "started",
            AlertKind::Waiting(_) => "waiting",
            AlertKind::Promoted => "promoted",
            AlertKind::RolledBack => "rolled-back",
            AlertKind::Inconclusive => "inconclusive",
        }
    }
}

/// One alert: what happened and why, in the words of the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertEvent {
    pub kind: AlertKind,
    /// Its key in `status.alerts`: the kind's name, with the gate (and the weight it holds) for
    /// `Waiting`.
    pub key: String,
    /// For a rollback, what failed and by how much (the metric, canary against primary, the
    /// effect and its interval, the e-value against its line; or the guardrail, the deadline,
    /// the hook, the abort); for the others what the status says.
    pub reason: String,
}

/// The result of one step: what to do, the new status, and when to look again.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub status: CanaryStatus,
    /// Seconds until the next step is due.
    pub requeue_seconds: u64,
    /// The look taken in this step (an analysis step or a check), when there was one.
    pub judgement: Option<crate::analysis::Judgement>,
}

/// Either a decision, or what must be gathered first (then call again with it).
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Need(Needs),
    Done(Box<Decision>),
}
