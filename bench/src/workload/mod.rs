//! Workloads and the load engine they share.

pub mod async_;
pub mod ceiling;
pub mod consistency;
mod init;
mod load;
pub mod mix;
pub mod soak;
pub mod stress;
pub mod sweep;

pub use init::{batch_init, concurrent, InitReport};
#[cfg(test)]
pub use load::LoadOutcome;
pub use load::{run_load, Ctx, LoadMode, LoadPlan, LoadSummary, RequestFn};

use crate::verdict::VerdictError;
use api_client::ApiError;

/// Errors of a workload run.
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
