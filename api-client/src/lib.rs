//! A client of the standard checkout API (`docs/API.md` §1 and the asynchronous
//! request-record extension): typed calls over one reused connection pool.
//!
//! Shared by the benchmark harness (`bench`, which drives thousands of requests per second
//! through [`Api::probe`] and the checkout calls) and the end-to-end test kit (`testkit`), so
//! that neither depends on the other.

mod api;
mod records;
mod status;

pub use api::{seg, Api, ApiError};
pub use records::{AsyncMode, ItemState, OrderLine, OrderState, Polled, RequestRecord, Submitted};
pub use reqwest::Method;
pub use status::Status;
