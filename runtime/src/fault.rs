//! How a failure is told apart: worth retrying as it is, or a fault in the
//! data that no retry mends. Its own module so that the error types of the
//! lower layers (db, jetstream) can say so without depending on the consumer
//! loop that acts on it.

/// Whether a failure is worth retrying as it is.
pub trait Fault: std::fmt::Display {
    /// True for faults outside the items (a database or NATS unreachable, a
    /// serialization failure or deadlock): the same batch is retried in
    /// place. False for faults in the items' data (a value out of range, a
    /// violated constraint, a message too large to publish): the batch is
    /// split until the failing item stands alone, and that item is rejected.
    fn is_transient(&self) -> bool;
}
