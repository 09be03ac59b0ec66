//! Operations endpoints served by every binary: `/health` (the process is
//! alive), `/ready` (its PostgreSQL and NATS answer) and `/metrics`.

use std::net::SocketAddr;

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use deadpool_postgres::Pool;
use serde_json::json;

/// What `/ready` checks.
#[derive(Clone)]
pub struct Readiness {
    pub pool: Pool,
    pub nats: async_nats::Client,
}

impl Readiness {
    pub async fn check(&self) -> (bool, bool) {
        tokio::join!(crate::db::ping(&self.pool), crate::nats::ping(&self.nats))
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

async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(r): State<Readiness>) -> impl IntoResponse {
    let (postgres, nats) = r.check().await;
    let status = if postgres && nats {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "not ready" },
        "postgres": postgres,
        "nats": nats,
    });
    (status, Json(body))
}

async fn metrics() -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::encode(),
    )
}

/// Serves `router` on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "HTTP listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
