//! The standard endpoints (API.md §1), one module per service, and the
//! checkout with its request records.

pub mod checkout;
pub mod forward;
pub mod orders;
pub mod payment;
pub mod stock;
