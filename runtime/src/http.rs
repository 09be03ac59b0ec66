//! The HTTP every binary serves: RFC 9457 problem bodies and the operations
//! endpoints (`/health`, `/ready`, `/metrics`).

pub mod ops;
pub mod problem;
