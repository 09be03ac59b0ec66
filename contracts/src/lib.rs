//! The contracts between the checkout platform's binaries: what travels
//! between them and what it may hold.
//!
//! - [`endpoint`]: a request/reply endpoint (request, response, service,
//!   name) and the refusal a service may answer instead;
//! - [`messages`]: every endpoint's request and response, and the checkout
//!   saga's JetStream messages;
//! - [`subjects`]: the NATS subject and stream names;
//! - [`limits`]: the bounds of every quantity, price, amount and ID.
//!
//! Only data and its rules live here (no I/O, no runtime): a binary, a
//! client or the protocol model (`model/`) can depend on it cheaply. How
//! the messages are carried is the `runtime` crate's concern.

pub mod endpoint;
pub mod limits;
pub mod messages;
pub mod subjects;

pub use subjects::Subjects;
