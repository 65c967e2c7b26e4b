//! The controller and everything that talks to the world: the cluster (`cluster`: the API server
//! and an in-memory stand-in), traffic routers (`router`), metrics providers (`providers`),
//! webhooks (`hooks`), notifiers (`notify`: webhooks and the alerts of `analysis.alerts`), the
//! one way to POST to a receiver (`http`), the reconcile loop and its observer (`reconcile`, `observer`, `run`,
//! `leader`), sluice's own metrics (`telemetry`), and `sluice analyse` (`replay`).
//!
//! The decisions themselves live in `sluice_core`; this crate gathers their inputs and applies
//! their outputs.

pub mod clock;
pub mod cluster;
pub mod error_chain;
pub mod finalize;
pub mod hooks;
pub mod http;
pub mod leader;
pub mod load;
pub mod notify;
pub mod observer;
pub mod providers;
pub mod reconcile;
pub mod replay;
pub mod router;
pub mod run;
pub mod shard;
pub mod slots;
pub mod telemetry;
