//! `--max-concurrent-releases`: at most so many releases in flight at once on this controller
//! (a shard counts its own). A release takes a slot when the step that starts it is decided and
//! gives it back when a reconcile finds it ended, so that two Canaries reconciled at the same
//! moment cannot both take the last one.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use kube::runtime::reflector::{ObjectRef, Store};
use sluice_core::api::{Canary, CanaryStatus};
use sluice_core::rollout::ReleaseQueue;

pub struct ReleaseSlots {
    limit: u32,
    /// Canaries this process saw start a release and not yet end.
    holders: Mutex<HashSet<ObjectRef<Canary>>>,
    /// The controller's cache of Canaries: releases in flight when this process started (or
    /// started by another replica before a leader change) are counted from their status.
    cache: OnceLock<Store<Canary>>,
}

impl ReleaseSlots {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            holders: Mutex::default(),
            cache: OnceLock::new(),
        }
    }

    /// The Canaries the controller watches, once its watch exists.
    pub fn watch(&self, store: Store<Canary>) {
        let _ = self.cache.set(store);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ObjectRef<Canary>>> {
        // A set of names cannot be left half-updated by a panic; carry on with it.
        self.holders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for `canary`'s release, or says how many others hold them all.
    pub fn take(&self, canary: &ObjectRef<Canary>) -> Result<(), ReleaseQueue> {
        let mut holders = self.lock();
        if holders.contains(canary) {
            return Ok(());
        }
        let mut others: HashSet<ObjectRef<Canary>> = holders.clone();
        if let Some(cache) = self.cache.get() {
            others.extend(
                cache
                    .state()
                    .iter()
                    .filter(|c| c.status.as_ref().is_some_and(CanaryStatus::in_flight))
                    .map(|c| ObjectRef::from(c.as_ref())),
            );
        }
        others.remove(canary);
        let in_flight = u32::try_from(others.len()).unwrap_or(u32::MAX);
        if in_flight >= self.limit {
            return Err(ReleaseQueue {
                in_flight,
                limit: self.limit,
            });
        }
        holders.insert(canary.clone());
        Ok(())
    }

    /// After a reconcile: a release that is not (or no longer) in flight gives its slot back.
    pub fn settle(&self, canary: &ObjectRef<Canary>, status: &CanaryStatus) {
        if !status.in_flight() {
            self.lock().remove(canary);
        }
    }

    /// The Canary is gone.
    pub fn forget(&self, canary: &ObjectRef<Canary>) {
        self.lock().remove(canary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::api::Phase;

    fn key(name: &str) -> ObjectRef<Canary> {
        ObjectRef::new(name).within("test")
    }

    fn status(phase: Phase) -> CanaryStatus {
        CanaryStatus {
            phase: Some(phase),
            ..CanaryStatus::default()
        }
    }

    #[test]
    fn at_most_the_limit_hold_a_slot_and_an_ended_release_frees_its_own() {
        let slots = ReleaseSlots::new(2);
        assert_eq!(slots.take(&key("a")), Ok(()));
        assert_eq!(slots.take(&key("b")), Ok(()));
        // Taking again what it holds is no second slot.
        assert_eq!(slots.take(&key("a")), Ok(()));
        assert_eq!(
            slots.take(&key("c")),
            Err(ReleaseQueue {
                in_flight: 2,
                limit: 2
            })
        );
        // Still in flight: nothing freed.
        slots.settle(&key("a"), &status(Phase::Progressing));
        assert!(slots.take(&key("c")).is_err());
        slots.settle(&key("a"), &status(Phase::Succeeded));
        assert_eq!(slots.take(&key("c")), Ok(()));
        slots.forget(&key("b"));
        assert_eq!(slots.take(&key("d")), Ok(()));
        assert!(slots.take(&key("e")).is_err());
    }
}
