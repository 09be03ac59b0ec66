//! Operations endpoints served by every binary: `/health` (the process is
//! alive), `/ready` (its PostgreSQL and NATS answer and its JetStream
//! consumers are pulling) and `/metrics`.

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use deadpool_postgres::Pool;
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

async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(r): State<Readiness>) -> impl IntoResponse {
    let (postgres, nats) = r.check().await;
    let consumers: serde_json::Map<String, serde_json::Value> = r
        .consumers
        .iter()
        .map(|c| (c.name.to_owned(), json!(c.is_up())))
        .collect();
    let pulling = r.consumers.iter().all(Liveness::is_up);
    let status = if postgres && nats && pulling {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "not ready" },
        "postgres": postgres,
        "nats": nats,
        "consumers": consumers,
    });
    (status, Json(body))
}

async fn metrics() -> impl IntoResponse {
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
