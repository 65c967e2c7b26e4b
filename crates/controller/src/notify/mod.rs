//! Telling people what a release did: a small trait that each notifier implements (the Canary's
//! webhooks in `hooks`, the chat services and webhooks of `analysis.alerts` in `alerts`).
//! Adding one is a file here and a `Context::with_notifier` line where the controller is built.

pub mod alerts;
mod discord;
mod gchat;
pub mod message;
mod msteams;
mod rocket;
mod slack;
mod webhook;

use sluice_core::api::{Canary, CanaryStatus, HookType, Phase};
use sluice_core::rollout::AlertEvent;

use crate::providers::BoxFuture;

/// What happened.
#[derive(Clone, Copy, Debug)]
pub enum Happened<'a> {
    /// The rollout finished (`PostRollout`) or rolled back (`Rollback`): the notification
    /// webhooks of that type.
    Hook(HookType),
    /// sluice recorded a Kubernetes Event on the Canary, with this message.
    Event(&'a str),
    /// An alert for `analysis.alerts`. Told after the status that records it (`status.alerts`)
    /// is written, so that a step run again never tells it twice.
    Alert(&'a AlertEvent),
}

/// One thing worth telling.
#[derive(Clone, Copy, Debug)]
pub struct Notification<'a> {
    /// The Canary as the step found it (its status from before the step).
    pub canary: &'a Canary,
    pub happened: Happened<'a>,
    /// The phase the release is in after the step that raised it.
    pub phase: Phase,
    /// The status after that step: the evidence as it stands.
    pub status: &'a CanaryStatus,
    /// The target's pod-template checksum: which revision this is about.
    pub revision: &'a str,
}

/// A notifier never fails a reconcile: it reports its own failures (logs, Events, its own
/// metrics), because a release must not stop for a chat service that is down.
pub trait Notifier: Send + Sync {
    fn notify<'a>(&'a self, notification: Notification<'a>) -> BoxFuture<'a, ()>;
}
