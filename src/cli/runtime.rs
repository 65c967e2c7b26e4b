//! The tokio runtime every async subcommand runs on.

use tokio::runtime::{Builder, Runtime};

pub enum Flavour {
    /// One thread: a command that mostly waits on one thing at a time.
    CurrentThread,
    /// A pool of `workers` threads, or one per core when `None`.
    MultiThread { workers: Option<usize> },
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start the async runtime: {0}")]
pub struct RuntimeError(#[source] std::io::Error);

/// The runtime is returned rather than run here so that it lives, as before, until the
/// subcommand has printed its result: dropping it waits for blocking tasks.
pub fn build(flavour: Flavour) -> Result<Runtime, RuntimeError> {
    let mut builder = match flavour {
        Flavour::CurrentThread => Builder::new_current_thread(),
        Flavour::MultiThread { workers } => {
            let mut builder = Builder::new_multi_thread();
            if let Some(workers) = workers {
                builder.worker_threads(workers);
            }
            builder
        }
    };
    builder.enable_all().build().map_err(RuntimeError)
}
