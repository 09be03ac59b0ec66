//! What every handler can reach.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};
use deadpool_postgres::Pool;
use runtime::rpc::RpcClient;

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
    pub settings: crate::config::HttpSettings,
    pub webhooks: crate::webhooks::Settings,
    /// Whether the streams have room for new checkouts.
    pub backlog: crate::backlog::Backlog,
    /// Who may call the setup endpoints.
    pub setup: Arc<crate::setup::Access>,
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
