//! The workload kinds, one module each: its arguments, how it runs and how it is shown (see
//! [`crate::kind::Workload`]).

pub mod async_;
pub mod ceiling;
pub mod consistency;
pub mod soak;
pub mod stress;
pub mod sweep;

use crate::kind::{Listed, Shown};

pub use async_::Async;
pub use ceiling::Ceiling;
pub use consistency::Consistency;
pub use soak::Soak;
pub use stress::Stress;
pub use sweep::Sweep;

static CONSISTENCY: Listed<Consistency> = Listed::new();
static STRESS: Listed<Stress> = Listed::new();
static ASYNC: Listed<Async> = Listed::new();
static SWEEP: Listed<Sweep> = Listed::new();
static SOAK: Listed<Soak> = Listed::new();
static CEILING: Listed<Ceiling> = Listed::new();

/// Every kind, in the order of the report's sections.
pub static ALL: [&dyn Shown; 6] = [&CONSISTENCY, &STRESS, &ASYNC, &SWEEP, &SOAK, &CEILING];
