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

/// Every kind, in the order of the report's sections.
pub static ALL: [&dyn Shown; 6] = [
    &Listed::<Consistency>::new(),
    &Listed::<Stress>::new(),
    &Listed::<Async>::new(),
    &Listed::<Sweep>::new(),
    &Listed::<Soak>::new(),
    &Listed::<Ceiling>::new(),
];
