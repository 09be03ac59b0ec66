//! Wire messages between the binaries.
//!
//! [`stock`], [`payment`] and [`order`] hold the request/reply endpoints
//! behind the standard HTTP API; each request type names its response. The
//! checkout saga's JetStream messages live in [`saga`].

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::ids::{ItemId, OrderId, UserId};

/// Implements [`Endpoint`] for a request type.
macro_rules! endpoint {
    ($req:ty => $resp:ty, $service:literal, $name:literal, idempotent: $idem:literal) => {
        impl Endpoint for $req {
            const SERVICE: &'static str = $service;
            const NAME: &'static str = $name;
            const IDEMPOTENT: bool = $idem;
            type Response = $resp;
        }
    };
    ($req:ty => $resp:ty, $service:literal, $name:literal, idempotent: $idem:literal,
     min_timeout: $timeout:expr, cancellable) => {
        impl Endpoint for $req {
            const SERVICE: &'static str = $service;
            const NAME: &'static str = $name;
            const IDEMPOTENT: bool = $idem;
            const MIN_TIMEOUT: std::time::Duration = $timeout;
            const CANCELLABLE: bool = true;
            type Response = $resp;
        }
    };
}

/// How long a caller waits for a `batch_init`: up to [`crate::endpoint::MAX_BATCH`]
/// rows (about a minute). Never retried after a timeout: the service stops
/// the call when its caller stops waiting (see `runtime::cancel`), and a
/// second call while one runs is refused.
const BATCH_INIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Answer of the `batch_init` endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct BatchInitDone {
    pub msg: String,
}

pub mod stock;

pub mod payment;

pub mod order;

pub mod saga;

/// A stored or received spelling that names no known value: an error
/// carrying it, never a silent default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct Unparsable {
    pub kind: &'static str,
    pub value: String,
}

impl Unparsable {
    pub fn new(kind: &'static str, value: &str) -> Self {
        Self {
            kind,
            value: value.to_owned(),
        }
    }
}
