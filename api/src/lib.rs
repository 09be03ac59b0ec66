//! api: the only HTTP entry point.
//!
//! Serves the standard endpoints by calling the services over NATS
//! request/reply, plus the operations endpoints.

pub mod background;
pub mod body;
pub mod checkout;
pub mod config;
pub mod idempotency;
pub mod openapi;
pub mod params;
pub mod problem;
pub mod records;
pub mod routes;
pub mod state;
pub mod waiters;
pub mod webhooks;
pub mod writer;

use axum::{http::StatusCode, middleware, response::Response, Router};
use common::{bootstrap::Deps, rpc::RpcClient};
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
    JetStream(#[from] common::jetstream::JetStreamError),
    #[error(transparent)]
    Webhooks(#[from] webhooks::worker::WorkerError),
    #[error(transparent)]
    Task(#[from] common::tasks::TaskFailed),
}

/// The whole HTTP surface.
pub fn router(state: AppState, readiness: common::ops::Readiness) -> Router {
    let api = Router::new()
        .merge(routes::stock::routes())
        .merge(routes::payment::routes())
        .merge(routes::orders::routes())
        .merge(checkout::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .with_state(state);
    api.merge(common::ops::router(readiness))
        .merge(openapi::routes())
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
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
                .layer(middleware::from_fn(common::metrics::track_http))
                // Every 4xx/5xx below is a problem document (RFC 9457).
                .layer(middleware::from_fn(common::problem::normalize))
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
            "WEBHOOK_SECRET not set: signing webhooks with the public development secret"
        );
    }
    let js = common::jetstream::setup(&deps.nats, &deps.topology).await?;
    let settings = config.checkout;
    let mut tasks = common::tasks::Tasks::new();
    let writer = writer::Writer::start(
        deps.pool.clone(),
        js.clone(),
        deps.subjects.clone(),
        settings.republish_after,
        &mut tasks,
    );
    let state = AppState {
        rpc: RpcClient::new(deps.nats.clone(), deps.subjects.clone(), config.rpc_timeout),
        pool: deps.pool.clone(),
        js: js.clone(),
        subjects: deps.subjects.clone(),
        waiters: Default::default(),
        writer,
        settings: settings.clone(),
        webhooks: config.webhooks,
        webhook_wake: Default::default(),
        draining: Default::default(),
    };
    let worker = webhooks::worker::Worker::new(deps.pool.clone(), state.webhooks.clone())?;
    let outcomes = common::consumer::Consumer::new(
        js,
        deps.topology.clone(),
        "api-outcomes",
        background::MAX_MESSAGES,
    );
    let readiness = deps.readiness().with_consumers([outcomes.liveness.clone()]);
    let stop = tasks.stop_token();
    tasks.spawn(
        "announcement listener",
        background::listen_for_final(
            deps.nats.clone(),
            deps.subjects.requests_final(),
            state.waiters.clone(),
            stop.clone(),
        ),
    );
    tasks.spawn("outcome consumer", {
        let (s, stop) = (state.clone(), stop.clone());
        async move {
            background::consume_outcomes(s, outcomes, stop).await;
            Ok::<_, std::convert::Infallible>(())
        }
    });
    tasks.spawn("sweeper", {
        let (s, stop) = (state.clone(), stop.clone());
        async move {
            background::sweep(s, stop).await;
            Ok::<_, std::convert::Infallible>(())
        }
    });
    tasks.spawn("webhook worker", {
        let (wake, stop) = (state.webhook_wake.clone(), stop.clone());
        async move {
            worker.run(wake, stop).await;
            Ok::<_, std::convert::Infallible>(())
        }
    });
    tasks.spawn("pending gauges", {
        let (pool, stop) = (deps.pool.clone(), stop.clone());
        async move {
            webhooks::worker::report_pending(pool, stop).await;
            Ok::<_, std::convert::Infallible>(())
        }
    });
    let draining = state.draining.clone();
    let app = router(state, readiness);
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
    tasks.drain(common::bootstrap::DRAIN_GRACE).await;
    served?;
    match failure {
        Some(failed) => Err(failed.into()),
        None => Ok(()),
    }
}
