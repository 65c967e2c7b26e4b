//! The resources users write, and the status sluice writes back. Depends on nothing of ours.

mod alert_provider;
mod canary;
pub mod duration;
mod metric_template;
mod router_kind;
mod status;
pub mod validate;

pub use alert_provider::*;
pub use canary::*;
pub use metric_template::*;
pub use router_kind::*;
pub use status::*;
