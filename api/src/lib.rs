//! api: the only HTTP entry point.
//!
//! Serves the standard endpoints by calling the services over NATS
//! request/reply, plus the operations endpoints.

pub mod background;
pub mod body;
pub mod checkout;
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

use std::time::Duration;

use axum::{http::StatusCode, middleware, response::Response, Router};
use common::{bootstrap::Deps, config, rpc::RpcClient};
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
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    JetStream(#[from] common::jetstream::JetStreamError),
    #[error(transparent)]
    Webhooks(#[from] webhooks::worker::WorkerError),
}

/// The whole HTTP surface.
pub fn router(state: AppState, deps: &Deps) -> Router {
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
    api.merge(common::ops::router(deps.readiness()))
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
                        tracing::info_span!("http", method = %req.method(), uri = %req.uri(), %request_id)
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

/// Serves HTTP until `shutdown` resolves.
pub async fn run(
    deps: Deps,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ApiStartError> {
    let timeout = config::duration_ms_var("RPC_TIMEOUT_MS", Duration::from_secs(30))?;
    let js = common::jetstream::setup(&deps.nats, &deps.subjects).await?;
    let settings = state::Settings::from_env()?;
    let state = AppState {
        rpc: RpcClient::new(deps.nats.clone(), deps.subjects.clone(), timeout),
        pool: deps.pool.clone(),
        js,
        subjects: deps.subjects.clone(),
        waiters: Default::default(),
        writer: writer::Writer::start(deps.pool.clone(), settings.republish_after, 2),
        settings: settings.clone(),
        webhooks: webhooks::Settings::from_env()?,
        webhook_wake: Default::default(),
    };
    let worker = webhooks::worker::Worker::new(deps.pool.clone(), state.webhooks.clone())?;
    let mut background = tokio::task::JoinSet::new();
    background.spawn(background::listen_for_final(
        deps.nats.clone(),
        deps.subjects.request_final_all(),
        state.waiters.clone(),
    ));
    {
        let s = state.clone();
        background.spawn(async move {
            if let Err(e) = background::consume_outcomes(s).await {
                tracing::error!(error = %e, "outcome consumer stopped");
            }
            Ok(())
        });
    }
    {
        let s = state.clone();
        background.spawn(async move {
            background::sweep(s).await;
            Ok(())
        });
    }
    background.spawn({
        let wake = state.webhook_wake.clone();
        async move {
            worker.run(wake).await;
            Ok(())
        }
    });
    background.spawn({
        let pool = deps.pool.clone();
        async move {
            webhooks::worker::report_pending(pool).await;
            Ok(())
        }
    });
    let app = router(state, &deps);
    let served = common::ops::serve(deps.config.listen_addr, app, shutdown).await;
    // In-flight outcomes stay unacknowledged and go to another replica.
    background.abort_all();
    served?;
    Ok(())
}
