//! api: the only HTTP entry point.
//!
//! Serves the standard endpoints by calling the services over NATS
//! request/reply, plus the operations endpoints.

pub mod backlog;
pub mod body;
pub mod config;
pub mod idempotency;
pub mod openapi;
pub mod params;
pub mod problem;
pub mod requests;
pub mod routes;
pub mod setup;
pub mod state;
pub mod webhooks;

use axum::{http::StatusCode, middleware, response::Response, Router};
use runtime::{bootstrap::Deps, rpc::RpcClient, service::Service};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

pub use state::AppState;

mod embedded {
    refinery::embed_migrations!("../sql/api");
}

/// The schema, applied at start-up.
pub fn migrations() -> refinery::Runner {
    embedded::migrations::runner()
}

pub use config::DEFAULT_PORT;

#[derive(Debug, thiserror::Error)]
pub enum ApiStartError {
    #[error(transparent)]
    Webhooks(#[from] webhooks::worker::WorkerError),
    #[error(transparent)]
    Run(#[from] runtime::service::RunError),
}

/// The whole HTTP surface; `ops` are the operations routes this listener
/// serves (all of them, or only `/health` when they have a listener of their
/// own, see `OPS_LISTEN_ADDR`).
pub fn router(state: AppState, ops: Router) -> Router {
    let api = Router::new()
        .merge(routes::stock::routes())
        .merge(routes::payment::routes())
        .merge(routes::orders::routes())
        .merge(routes::checkout::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .layer(middleware::from_fn_with_state(
            state.setup.clone(),
            setup::gate,
        ))
        .with_state(state);
    api.merge(ops)
        .merge(openapi::routes())
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(state::bound_request_id))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
                        let request_id = req
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        // Debug level: at the default level no span (and
                        // no line) per request.
                        tracing::debug_span!("http", method = %req.method(), uri = %req.uri(), %request_id)
                    }),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::custom(|_| {
                    problem::problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
                }))
                .layer(middleware::from_fn(runtime::metrics::track_http))
                // Every 4xx/5xx below is a problem document (RFC 9457).
                .layer(middleware::from_fn(runtime::http::problem::normalize))
                .layer(middleware::from_fn(body::check))
                .layer(body::limit()),
        )
}

async fn not_found() -> Response {
    problem::problem(StatusCode::NOT_FOUND, "not-found", "no such endpoint")
}

/// Serves HTTP on `listener` until `shutdown` resolves, or until a
/// background task fails (returned, so the binary exits non-zero).
///
/// Shutdown drains: stop accepting connections; let clients waiting for an
/// outcome get it (or, after a short drain period, their request record);
/// then stop the background tasks, each finishing and acknowledging what it
/// holds.
pub async fn run(
    deps: Deps,
    config: config::ApiSettings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ApiStartError> {
    if config.webhooks.uses_dev_secret() {
        tracing::warn!(
            "WEBHOOK_SECRET not set and WEBHOOK_SECRET_DEV=true: signing webhooks with the \
             public development secret; receivers cannot tell them from forgeries"
        );
    }
    let mut service = Service::new(deps).await?;
    let (deps, js) = (service.deps().clone(), service.js().clone());
    let webhook_wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let backlog = backlog::Backlog::start(
        js.clone(),
        &deps.topology,
        deps.subjects.prefix(),
        service.tasks(),
    );
    let rpc = RpcClient::new(deps.nats.clone(), deps.subjects.clone(), config.rpc_timeout);
    let requests = requests::Requests::start(
        deps.pool.clone(),
        js,
        deps.subjects.clone(),
        config.requests,
        webhook_wake.clone(),
        rpc.clone(),
        service.tasks(),
    );
    let worker = webhooks::worker::Worker::new(deps.pool.clone(), config.webhooks.clone())?;
    let (draining, outcomes) = (requests.draining(), requests.outcomes());
    let state = std::sync::Arc::new(state::Shared {
        rpc,
        pool: deps.pool.clone(),
        requests,
        settings: config.http,
        webhooks: config.webhooks,
        backlog,
        setup: std::sync::Arc::new(config.setup),
    });
    service
        .consumer("api-outcomes", requests::OUTCOME_MESSAGES, |_| outcomes)
        .retain(vec![requests::RETAINED, idempotency::EXPIRED])
        .task("webhook worker", |stop| worker.run(webhook_wake, stop))
        .task("webhook gauge", |stop| {
            webhooks::worker::report_pending(deps.pool, stop)
        })
        .http(draining, |ops| router(state, ops))
        .run(listener, shutdown)
        .await?;
    Ok(())
}
