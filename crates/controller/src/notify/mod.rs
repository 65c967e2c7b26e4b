//! Telling people what a release did: a small trait that each notifier (the Canary's webhooks
//! today; Slack, Teams, Discord and the rest as alert providers) implements in its own file.
//! Adding one is a file here and a `Context::with_notifier` line where the controller is built.

use sluice_core::api::{Canary, HookType, Phase};

use crate::providers::BoxFuture;

/// One thing worth telling: the rollout finished (`PostRollout`), rolled back (`Rollback`), or
/// recorded an Event (`Event`, with its message).
#[derive(Clone, Copy, Debug)]
pub struct Notification<'a> {
    pub canary: &'a Canary,
    pub kind: HookType,
    /// The phase the release is in after the step that raised it.
    pub phase: Phase,
    /// The target's pod-template checksum: which revision this is about.
    pub revision: &'a str,
    pub message: Option<&'a str>,
}

/// A notifier never fails a reconcile: it reports its own failures (logs, its own metrics),
/// because a release must not stop for a chat service that is down.
pub trait Notifier: Send + Sync {
    fn notify<'a>(&'a self, notification: Notification<'a>) -> BoxFuture<'a, ()>;
}
