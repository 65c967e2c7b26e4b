//! The canary state machine: pure, synchronous, driven by a virtual clock.

mod types;

pub use types::*;
