//! The subcommands: each module owns its arguments and returns an `Exit`.

pub mod analyse;
pub mod args;
pub mod bench;
pub mod controller;
pub mod crd;
pub mod demo;
pub mod demo_app;
pub mod demo_controller;
pub mod exit;
pub mod import;
pub mod kubectl;
pub mod readable;
pub mod runtime;
