//! The contract of a request/reply endpoint: the [`Endpoint`] trait that ties
//! a request to its service, name and response, and the [`Rejection`] a
//! service answers instead of a response. The runtime crate serves and calls
//! endpoints over NATS; this crate only says what they are.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

/// Header that carries the HTTP request ID into every hop.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";

/// One request/reply endpoint. Implemented by the request message.
pub trait Endpoint: Serialize + DeserializeOwned + Send + Sync + 'static {
    const SERVICE: &'static str;
    const NAME: &'static str;
    /// True when sending the request twice has the effect of sending it once
    /// (reads), so the client may retry it after a timeout. Requests that
    /// never reached a responder are always retried.
    const IDEMPOTENT: bool;
    /// The least time a caller waits for the answer (the client's own
    /// timeout when that is longer): heavy setup calls such as `batch_init`
    /// get a timeout that fits their work instead of a read's.
    const MIN_TIMEOUT: Duration = Duration::ZERO;
    /// True for long calls that the service stops when the caller stops
    /// waiting (see `runtime::cancel`); their handler gets a token.
    const CANCELLABLE: bool = false;
    type Response: Serialize + DeserializeOwned + Send + 'static;
}

/// Why a service refused a request. On the wire (the NATS service error
/// header) it travels as an HTTP-like code; everywhere else it is this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request is malformed or out of range.
    Invalid,
    NotFound,
    /// Valid, but the current state refuses it (insufficient stock or credit).
    Conflict,
    Unprocessable,
    /// The service cannot serve it now (its database is down).
    Unavailable,
    /// A fault of ours (a bug, or an answer we could not encode).
    Internal,
}

impl Refusal {
    /// The code sent in `Nats-Service-Error-Code`.
    pub fn code(self) -> u16 {
        match self {
            Refusal::Invalid => 400,
            Refusal::NotFound => 404,
            Refusal::Conflict => 409,
            Refusal::Unprocessable => 422,
            Refusal::Unavailable => 503,
            Refusal::Internal => 500,
        }
    }

    /// The refusal a received code stands for; unknown codes are faults.
    pub fn from_code(code: u16) -> Self {
        match code {
            400 => Refusal::Invalid,
            404 => Refusal::NotFound,
            409 => Refusal::Conflict,
            422 => Refusal::Unprocessable,
            503 => Refusal::Unavailable,
            _ => Refusal::Internal,
        }
    }
}

/// A service's refusal: what kind, and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({kind:?})")]
pub struct Rejection {
    pub kind: Refusal,
    pub message: String,
}

impl Rejection {
    pub fn new(kind: Refusal, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Refusal::Invalid, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Refusal::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Refusal::Conflict, message)
    }
    /// A fault of our own (database unreachable, bug). The message is logged
    /// by the service; clients see a generic text.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Refusal::Internal, message)
    }
}

impl From<crate::limits::OutOfBounds> for Rejection {
    fn from(e: crate::limits::OutOfBounds) -> Self {
        Rejection::invalid(e.to_string())
    }
}

/// Upper bound for the `batch_init` endpoints' `n`, `n_items` and
/// `n_users`, so one request cannot fill the disk.
pub const MAX_BATCH: i64 = 10_000_000;

/// Validates the `n` of a `batch_init`: not negative, at most [`MAX_BATCH`].
pub fn batch_size(n: i64) -> Result<i64, Rejection> {
    batch_range("n", n, 0)
}

/// Validates a `batch_init` count `name`: `min` to [`MAX_BATCH`].
pub fn batch_range(name: &str, v: i64, min: i64) -> Result<i64, Rejection> {
    if (min..=MAX_BATCH).contains(&v) {
        Ok(v)
    } else {
        Err(Rejection::invalid(format!(
            "{name} must be {min} to {MAX_BATCH}, got {v}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_codes_round_trip_and_unknown_codes_are_faults() {
        for kind in [
            Refusal::Invalid,
            Refusal::NotFound,
            Refusal::Conflict,
            Refusal::Unprocessable,
            Refusal::Unavailable,
            Refusal::Internal,
        ] {
            assert_eq!(Refusal::from_code(kind.code()), kind);
        }
        assert_eq!(Refusal::from_code(418), Refusal::Internal);
    }
}
