//! What the load runs share: the load engine and its arguments, batch initialisation, the
//! operation mix and the operations, and the error of a run.

mod engine;
#[cfg(test)]
pub mod fixture;
mod init;
pub mod mix;
mod ops;

#[cfg(test)]
pub use engine::LoadOutcome;
pub use engine::{run_load, Ctx, LoadArgs, LoadMode, LoadPlan, LoadSummary, RequestFn};
pub use init::{batch_init, concurrent, InitArgs, InitReport};
pub use ops::{request_fn, Target};

use crate::verdict::VerdictError;
use api_client::ApiError;

/// Errors of a run (of the load engine and of every kind).
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("invalid parameters: {0}")]
    Params(String),
    #[error("set-up check failed: {0}")]
    Setup(String),
    #[error(transparent)]
    Verdict(#[from] VerdictError),
    #[error(transparent)]
    Mix(#[from] mix::MixError),
    #[error("webhook receiver: {0}")]
    Webhook(#[from] std::io::Error),
    #[error("{0}")]
    Unsupported(String),
    #[error("internal task failed: {0}")]
    Join(String),
}

#[cfg(test)]
mod tests;
