//! sluice: progressive delivery for Kubernetes, judged by anytime-valid sequential tests.

pub mod analyse;
pub mod analysis;
pub mod api;
pub mod bench;
pub mod cluster;
pub mod controller;
pub mod demo;
pub mod error_chain;
pub mod hooks;
pub mod metrics;
pub mod rollout;
pub mod router;
