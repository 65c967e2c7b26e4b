//! The canary state machine: pure, synchronous, driven by a virtual clock. The same code runs in
//! the controller, in `sluice analyse`, in the demo, in the benchmark and in tests.

mod machine;
mod types;

pub use crate::api::{FAILED, INCONCLUSIVE};
pub use machine::{schedule, step, steps_to_promotion};
pub use types::*;
