//! Operations endpoints served by every binary: `/health` (the process is
//! alive), `/ready` (its PostgreSQL and NATS answer and its JetStream
//! consumers are pulling) and `/metrics`.
//!
//! By default they share the binary's listener. With `OPS_LISTEN_ADDR` all
//! three are served there and the main listener keeps only `/health` (load
//! balancers probe it where the traffic goes), so a deployment can publish
//! the main port and keep metrics and readiness details internal.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::json;

use crate::consumer::Liveness;

/// What `/ready` checks.
#[derive(Clone)]
pub struct Readiness {
    pub pool: Pool,
    pub nats: async_nats::Client,
    pub consumers: Vec<Liveness>,
}

impl Readiness {
    pub async fn check(&self) -> (bool, bool) {
        tokio::join!(crate::db::ping(&self.pool), crate::nats::ping(&self.nats))
    }

    /// Also reports these consumers.
    pub fn with_consumers(mut self, consumers: impl IntoIterator<Item = Liveness>) -> Self {
        self.consumers.extend(consumers);
        self
    }
}

/// The three operations routes (callers add the HTTP metrics layer).
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

/// `/health` alone: what the main listener keeps when the operations
/// endpoints have a listener of their own.
pub fn health_router() -> Router {
    Router::new().route("/health", get(health))
}

/// `routes` as a server of its own: a problem document for anything else,
/// HTTP metrics.
pub fn standalone(routes: Router) -> Router {
    routes
        .fallback(|| async {
            crate::http::problem::response(
                StatusCode::NOT_FOUND,
                "not-found",
                "no such endpoint",
                Default::default(),
            )
        })
        .layer(axum::middleware::from_fn(crate::http::problem::normalize))
        .layer(axum::middleware::from_fn(crate::metrics::track_http))
}

/// `GET /health`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `GET /ready`'s answer when both dependencies answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    pub status: String,
    pub postgres: bool,
    pub nats: bool,
    /// Each JetStream consumer of the binary: is its pull stream open?
    pub consumers: std::collections::BTreeMap<String, bool>,
}

/// The process is alive.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Its PostgreSQL and NATS answer.
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, description = "PostgreSQL and NATS answer and every JetStream consumer pulls", body = Ready),
    (status = 503, description = "PostgreSQL or NATS does not answer, or a consumer is not \
        pulling; the problem document carries the `postgres` and `nats` booleans and `consumers`",
        body = crate::http::problem::Problem, content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds to wait before asking again")))))]
pub async fn ready(State(r): State<Readiness>) -> Response {
    let (postgres, nats) = r.check().await;
    let consumers: std::collections::BTreeMap<String, bool> = r
        .consumers
        .iter()
        .map(|c| (c.name.to_owned(), c.is_up()))
        .collect();
    let pulling = r.consumers.iter().all(Liveness::is_up);
    if postgres && nats && pulling {
        return Json(Ready {
            status: "ready".into(),
            postgres,
            nats,
            consumers,
        })
        .into_response();
    }
    let mut ext = serde_json::Map::new();
    ext.insert("postgres".into(), json!(postgres));
    ext.insert("nats".into(), json!(nats));
    ext.insert("consumers".into(), json!(consumers));
    let down: Vec<&str> = [
        (postgres, "PostgreSQL unreachable"),
        (nats, "NATS unreachable"),
        (pulling, "a JetStream consumer is not pulling"),
    ]
    .iter()
    .filter(|(up, _)| !up)
    .map(|(_, what)| *what)
    .collect();
    crate::http::problem::response(
        StatusCode::SERVICE_UNAVAILABLE,
        "not-ready",
        &format!("not ready: {}", down.join("; ")),
        ext,
    )
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8")))]
pub async fn metrics() -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::encode(),
    )
}

/// Serves `router` on `listener` until `shutdown` resolves. Taking a bound
/// listener lets tests bind port 0.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP listening");
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
