//! The canary state machine: pure, synchronous, driven by a virtual clock. The same code runs in
//! the controller, in `sluice analyse`, in the demo, in the benchmark and in tests.

mod machine;
mod types;

pub use machine::{FAILED, INCONCLUSIVE, schedule, step, steps_to_promotion};
pub use types::*;
