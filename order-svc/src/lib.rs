//! order-svc: orders and their lines; orchestrates the checkout saga.
//!
//! Serves the order endpoints of the standard API over NATS request/reply.

pub mod batch_init;
pub mod checkout;
pub mod handlers;
pub mod saga;
pub mod store;

use common::{bootstrap::Deps, rpc::Server};

mod embedded {
    refinery::embed_migrations!("../sql/order");
}

/// The schema, applied at start-up.
pub fn migrations() -> refinery::Runner {
    embedded::migrations::runner()
}

/// Most messages handled in one transaction.
pub const MAX_BATCH: usize = 256;

/// Default port of the operations endpoints.
pub const DEFAULT_PORT: u16 = 8001;

/// Serves every endpoint until `shutdown` resolves.
pub async fn run(
    deps: Deps,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), async_nats::Error> {
    use common::messages::order::*;
    let store = store::Store::new(deps.pool.clone());
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
        .add::<BatchInit, _, _, _>(store.clone(), handlers::batch_init)
        .await?;
    let js = common::jetstream::setup(&deps.nats, &deps.subjects).await?;
    let checkout = checkout::Checkout::new(deps.pool.clone(), js, deps.subjects.clone());
    let sagas = tokio::spawn(checkout.serve(MAX_BATCH));
    deps.serve(server, shutdown).await?;
    // Unacknowledged messages are redelivered to the next replica.
    sagas.abort();
    Ok(())
}
