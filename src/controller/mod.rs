//! The controller: reconcile one Canary (`reconcile.rs`, shared with the demo and tests), its
//! metrics source (`observer.rs`).

pub mod leader;
pub mod metrics;
pub mod observer;
pub mod reconcile;
pub mod run;
