//! What every handler can reach.

use std::{sync::Arc, time::Duration};

use axum::{extract::FromRequestParts, http::request::Parts};
use deadpool_postgres::Pool;
use runtime::{
    config::{ConfigError, Vars},
    rpc::RpcClient,
};

use crate::requests::Requests;

/// The handlers' state. Shared behind one `Arc`: axum clones the state for
/// every request, and cloning the NATS clients inside each time showed up
/// in the profile.
pub type AppState = Arc<Shared>;

pub struct Shared {
    /// Request/reply to the services, for the standard endpoints.
    pub rpc: RpcClient,
    /// The api database (idempotency keys; the records go through
    /// `requests`).
    pub pool: Pool,
    pub requests: Requests,
    pub settings: Settings,
    pub webhooks: crate::webhooks::Settings,
    /// Whether the streams have room for new checkouts.
    pub backlog: crate::backlog::Backlog,
    /// Who may call the setup endpoints.
    pub setup: Arc<crate::setup::Access>,
}

/// Tunables of the checkout flow (loaded at start-up, see the README).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a plain (synchronous) checkout waits for its outcome, and
    /// how long any checkout waits to be accepted while PostgreSQL is down
    /// (`CHECKOUT_TIMEOUT_MS`, default 60 s). Only an outage longer than
    /// that reaches it; the answer then is a 503 that carries the
    /// `request_id` and `Location` of the accepted checkout.
    pub checkout_timeout: Duration,
    /// When the sweeper re-publishes a record still pending
    /// (`REPUBLISH_AFTER_MS`).
    pub republish_after: Duration,
    /// How often the sweeper looks (`SWEEP_INTERVAL_MS`).
    pub sweep_interval: Duration,
    /// How often a waiting client re-reads its record in case the wake-up
    /// announcement was lost (`WAIT_POLL_MS`).
    pub wait_poll: Duration,
    /// How long an Idempotency-Key is remembered (`IDEMPOTENCY_TTL_SECS`).
    pub idempotency_ttl: Duration,
    /// How long final request records are kept (`RETENTION_HOURS`).
    pub retention: Duration,
}

impl Settings {
    /// The part of these the request records' lifecycle needs.
    pub fn requests(&self, max_message_bytes: usize) -> crate::requests::Settings {
        crate::requests::Settings {
            max_message_bytes,
            republish_after: self.republish_after,
            sweep_interval: self.sweep_interval,
            wait_poll: self.wait_poll,
        }
    }

    /// Reads the checkout flow's variables; `retention` is the common
    /// `RETENTION_HOURS`.
    pub fn load(vars: &Vars, retention: Duration) -> Result<Self, ConfigError> {
        Ok(Self {
            checkout_timeout: vars.duration_ms("CHECKOUT_TIMEOUT_MS", Duration::from_secs(60))?,
            republish_after: vars.duration_ms("REPUBLISH_AFTER_MS", Duration::from_secs(10))?,
            sweep_interval: vars.interval_ms("SWEEP_INTERVAL_MS", Duration::from_secs(2))?,
            wait_poll: vars.interval_ms("WAIT_POLL_MS", Duration::from_secs(5))?,
            idempotency_ttl: Duration::from_secs(vars.parse("IDEMPOTENCY_TTL_SECS", 24 * 3600)?),
            retention,
        })
    }
}

/// Longest `x-request-id` a client may choose; it travels in every NATS hop.
pub const MAX_REQUEST_ID: usize = 128;

/// Middleware: a client's `x-request-id` that is longer than
/// [`MAX_REQUEST_ID`] or not printable ASCII is dropped (and a fresh one
/// made), so no client can put a large or odd value into every NATS hop.
pub async fn bound_request_id(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let ok = |v: &axum::http::HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| (0x21..0x7f).contains(c))
    };
    let headers = req.headers_mut();
    let values: Vec<_> = headers.get_all("x-request-id").iter().collect();
    if values.len() > 1 || values.first().is_some_and(|v| !ok(v)) {
        headers.remove("x-request-id");
    }
    next.run(req).await
}

/// The request's ID (`x-request-id`, set by the middleware when the client
/// gave none), carried into every NATS hop.
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        ))
    }
}
