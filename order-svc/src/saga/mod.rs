//! The checkout saga: its decisions ([`machine`], free of I/O, also run by
//! the protocol model), the two JetStream consumers that drive it
//! ([`consumers`]) and the statements on the `sagas` table ([`store`]).
//! The orders it takes and frees are [`crate::orders`]'s.

pub mod consumers;
pub mod error;
pub(crate) mod machine;
pub mod store;

pub use machine::{admit, Admission, Basket, OrderState, Outgoing, Saga, State};
