//! The canary state machine: pure and driven by a virtual clock. `step` is synchronous; `drive`
//! loops over it, awaiting the answers its caller gives. The same code runs in the controller, in
//! `sluice analyse`, in the demo, in the benchmark and in tests.

mod drive;
mod machine;
mod revert;
mod types;

pub use crate::api::{FAILED, INCONCLUSIVE};
pub use drive::{Answers, DriveError, drive};
pub use machine::{schedule, step, steps_to_promotion};
pub use revert::{Revert, revert};
pub use types::*;
