//! order-svc: orders and their lines; orchestrates the checkout saga.
//!
//! Serves the order endpoints of the standard API over NATS request/reply.

pub mod handlers;
pub mod orders;
pub mod saga;

use runtime::{
    bootstrap::Deps,
    service::{RunError, Service},
};

mod embedded {
    refinery::embed_migrations!("../sql/order");
}

/// The schema, applied at start-up.
pub fn migrations() -> refinery::Runner {
    embedded::migrations::runner()
}

/// Most JetStream messages (each a batch of items) handled in one
/// transaction.
pub const MAX_MESSAGES: usize = 64;

/// What order-svc keeps for `RETENTION_HOURS` only: final sagas, aged from
/// their completion (long enough that no redelivered checkout or step can
/// come after its saga is gone, even when the checkout completed long
/// after its acceptance), and dead letters (an operator reads them within
/// that time or not at all).
pub const RETAINED: [runtime::retention::Table; 2] = [
    runtime::retention::Table {
        name: "sagas",
        key: "id",
        only: "state IN ('succeeded', 'failed')",
        // Walks the key: `completed_at` has no index, so ending a saga is
        // a HOT update (sql/order/V7).
        age: runtime::retention::Age::V7KeyThen("completed_at"),
    },
    runtime::retention::Table {
        name: "dead_letters",
        key: "id",
        only: "true",
        age: runtime::retention::Age::Column("received_at"),
    },
];

/// Default port of the operations endpoints.
pub const DEFAULT_PORT: u16 = 8001;

/// Serves every endpoint (the operations endpoints on `listener`) until
/// `shutdown` resolves (or a background task fails, which is returned).
pub async fn run(
    deps: Deps,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let store = orders::Store::new(deps.pool.clone(), deps.config.max_lines_per_order);
    let sagas = saga::store::Sagas::new(deps.pool.clone());
    let service = Service::new(deps).await?;
    let deps = service.deps();
    let checkout = saga::consumers::Checkout::new(
        deps.pool.clone(),
        service.js().clone(),
        deps.subjects.clone(),
        deps.config.max_message_bytes,
        deps.config.max_lines_per_order,
    );
    service
        .endpoints("order", "Orders and checkout")
        .endpoint(store.clone(), handlers::create_order)
        .endpoint(store.clone(), handlers::find_order)
        .endpoint(store.clone(), handlers::add_item)
        .cancellable(store, handlers::batch_init)
        .endpoint(sagas.clone(), handlers::unfinished_sagas)
        .endpoint(sagas, handlers::saga_outcomes)
        .consumer("order-checkout", MAX_MESSAGES, |stop| {
            checkout.requests(stop)
        })
        .consumer("order-steps", MAX_MESSAGES, |stop| checkout.results(stop))
        .retain(RETAINED.to_vec())
        .run(listener, shutdown)
        .await
}
