//! api: the only HTTP entry point.
//!
//! Serves the standard endpoints by calling the services over NATS
//! request/reply, plus the operations endpoints.

pub mod backlog;
pub mod body;
pub mod checkout;
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
use runtime::{bootstrap::Deps, rpc::RpcClient};
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

/// The standard benchmark expects the API on port 8000.
pub const DEFAULT_PORT: u16 = 8000;

#[derive(Debug, thiserror::Error)]
pub enum ApiStartError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    JetStream(#[from] runtime::jetstream::JetStreamError),
    #[error(transparent)]
    Webhooks(#[from] webhooks::worker::WorkerError),
    #[error(transparent)]
    Task(#[from] runtime::tasks::TaskFailed),
}

/// The whole HTTP surface; `ops` are the operations routes this listener
/// serves (all of them, or only `/health` when they have a listener of their
/// own, see `OPS_LISTEN_ADDR`).
pub fn router(state: AppState, ops: Router) -> Router {
    let api = Router::new()
        .merge(routes::stock::routes())
        .merge(routes::payment::routes())
        .merge(routes::orders::routes())
        .merge(checkout::routes())
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
    let js = runtime::jetstream::setup(&deps.nats, &deps.topology).await?;
    let settings = config.checkout;
    let mut tasks = runtime::tasks::Tasks::new();
    let webhooks = config.webhooks;
    let webhook_wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let backlog = backlog::Backlog::start(
        js.clone(),
        &deps.topology,
        deps.subjects.prefix(),
        &mut tasks,
    );
    let (requests, outcomes) = requests::Requests::start(
        deps.pool.clone(),
        js,
        deps.subjects.clone(),
        deps.topology.clone(),
        settings.requests(deps.config.max_message_bytes),
        webhook_wake.clone(),
        &mut tasks,
    );
    tasks.spawn("retention", {
        let (pool, stop) = (deps.pool.clone(), tasks.stop_token());
        let tables = vec![requests::RETAINED, idempotency::EXPIRED];
        let retention = settings.retention;
        async move {
            runtime::retention::run(pool, tables, retention, stop).await;
            Ok::<_, std::convert::Infallible>(())
        }
    });
    let worker = webhooks::worker::Worker::new(deps.pool.clone(), webhooks.clone())?;
    tasks.spawn("webhook worker", {
        let stop = tasks.stop_token();
        async move {
            worker.run(webhook_wake, stop).await;
            Ok::<_, std::convert::Infallible>(())
        }
    });
    tasks.spawn("webhook gauge", {
        let (pool, stop) = (deps.pool.clone(), tasks.stop_token());
        async move {
            webhooks::worker::report_pending(pool, stop).await;
            Ok::<_, std::convert::Infallible>(())
        }
    });
    let readiness = deps.readiness().with_consumers([outcomes]);
    let state = std::sync::Arc::new(state::Shared {
        rpc: RpcClient::new(deps.nats.clone(), deps.subjects.clone(), config.rpc_timeout),
        pool: deps.pool.clone(),
        requests,
        settings,
        webhooks,
        backlog,
        setup: std::sync::Arc::new(config.setup),
    });
    let draining = state.requests.draining();
    // Stopped last, so /ready and /metrics answer during the drain.
    let ops_stop = tokio_util::sync::CancellationToken::new();
    let (ops_routes, ops) = match runtime::bootstrap::listen_ops(&deps.config).await? {
        Some(ops_listener) => (
            runtime::http::ops::health_router(),
            Some(tokio::spawn(runtime::http::ops::serve(
                ops_listener,
                runtime::http::ops::standalone(runtime::http::ops::router(readiness)),
                ops_stop.clone().cancelled_owned(),
            ))),
        ),
        None => (runtime::http::ops::router(readiness), None),
    };
    let app = router(state, ops_routes);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP listening");
    }
    // Watches for the signal or a failed task; either begins the drain.
    let watcher = tokio::spawn({
        let draining = draining.clone();
        async move {
            let failure = tokio::select! {
                _ = shutdown => None,
                failed = tasks.failed() => Some(failed),
            };
            if let Some(failed) = &failure {
                tracing::error!(error = %failed, "stopping");
            }
            draining.cancel();
            (tasks, failure)
        }
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(draining.cancelled_owned())
        .await;
    let (tasks, failure) = watcher.await.map_err(std::io::Error::other)?;
    tasks.drain(runtime::bootstrap::DRAIN_GRACE).await;
    // What the drained tasks published (acks, announcements) may still sit
    // in the connection's buffer.
    if let Err(e) = deps.nats.flush().await {
        tracing::warn!(error = %e, "cannot flush NATS at shutdown");
    }
    ops_stop.cancel();
    if let Some(ops) = ops {
        ops.await.map_err(std::io::Error::other)??;
    }
    served?;
    match failure {
        Some(failed) => Err(failed.into()),
        None => Ok(()),
    }
}
