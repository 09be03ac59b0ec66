//! order-svc: orders and their lines; orchestrates the checkout saga.
//!
//! Serves the order endpoints of the standard API over NATS request/reply.

pub mod handlers;
pub mod orders;
pub mod saga;

use runtime::{bootstrap::Deps, rpc::Server, tasks::Tasks};

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
        // Walks `sagas_by_completion` (sql/order/V6).
        age: runtime::retention::Age::Column("completed_at"),
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
/// `shutdown` resolves (or a background task
/// fails, which is returned).
pub async fn run(
    deps: Deps,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), runtime::bootstrap::RunError> {
    use contracts::messages::order::*;
    let store = orders::Store::new(deps.pool.clone(), deps.config.max_lines_per_order);
    let mut server = Server::start(
        &deps.nats,
        &deps.subjects,
        "order",
        "Orders and checkout",
        128,
    )
    .await?;
    server
        .add::<CreateOrder, _, _, _>(store.clone(), handlers::create_order)
        .await?;
    server
        .add::<FindOrder, _, _, _>(store.clone(), handlers::find_order)
        .await?;
    server
        .add::<AddItem, _, _, _>(store.clone(), handlers::add_item)
        .await?;
    server
        .add_cancellable::<BatchInit, _, _, _>(store.clone(), handlers::batch_init)
        .await?;
    server
        .add::<UnfinishedSagas, _, _, _>(store.clone(), handlers::unfinished_sagas)
        .await?;
    let js = runtime::jetstream::setup(&deps.nats, &deps.topology).await?;
    let mut tasks = Tasks::new();
    let checkout = saga::Checkout::new(
        deps.pool.clone(),
        js,
        deps.subjects.clone(),
        deps.topology.clone(),
        deps.config.max_message_bytes,
        deps.config.max_lines_per_order,
    );
    let consumers = checkout.spawn(&mut tasks, MAX_MESSAGES);
    let (pool, stop) = (deps.pool.clone(), tasks.stop_token());
    let retention = deps.config.retention;
    tasks.spawn("retention", async move {
        runtime::retention::run(pool, RETAINED.to_vec(), retention, stop).await;
        Ok::<_, std::convert::Infallible>(())
    });
    let readiness = deps.readiness().with_consumers(consumers);
    deps.serve(server, tasks, readiness, listener, shutdown)
        .await?;
    Ok(())
}
