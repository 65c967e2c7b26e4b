//! sluice's pure core: the resources users write (`api`), the rollout state machine (`rollout`)
//! and the statistics that judge a canary against its primary (`analysis`).
//!
//! Nothing here does I/O: this crate's Cargo.toml has no Kubernetes client, async runtime or HTTP
//! client, and its `clippy.toml` refuses the file system, so the controller, the demo and the
//! bench all drive the same decisions and none of them can reach back into this crate.

pub mod analysis;
pub mod api;
pub mod rollout;
pub mod time;
