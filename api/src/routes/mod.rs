//! The standard endpoints (API.md §1), one module per service.

pub mod orders;
pub mod payment;
pub mod stock;
