//! stock-svc: items, their price and stock.
//!
//! Serves the stock endpoints of the standard API over NATS request/reply,
//! and the checkout saga's reserve/release steps from JetStream.

pub mod handlers;
pub mod store;

use common::{
    bootstrap::Deps,
    ledger::{self, Tables},
    messages::saga::Step,
    rpc::Server,
};

mod embedded {
    refinery::embed_migrations!("../sql/stock");
}

/// The schema, applied at start-up.
pub fn migrations() -> refinery::Runner {
    embedded::migrations::runner()
}

/// The saga steps of this service, for the shared ledger engine.
pub const TABLES: Tables = Tables {
    accounts: "items",
    balance: "stock",
    ledger: "reservations",
    debit: Step::Reserve,
    compensate: Step::Release,
};

/// Most JetStream messages (each a batch of step commands) applied in one
/// transaction.
pub const MAX_MESSAGES: usize = 64;

/// Default port of the operations endpoints.
pub const DEFAULT_PORT: u16 = 8002;

/// Serves every endpoint (the operations endpoints on `listener`) until
/// `shutdown` resolves.
pub async fn run(
    deps: Deps,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), common::bootstrap::RunError> {
    use common::messages::stock::*;
    let store = store::Store::new(deps.pool.clone());
    let mut server = Server::start(
        &deps.nats,
        &deps.subjects,
        "stock",
        "Items, prices and stock",
        128,
    )
    .await?;
    server
        .add::<CreateItem, _, _, _>(store.clone(), handlers::create_item)
        .await?;
    server
        .add::<FindItem, _, _, _>(store.clone(), handlers::find_item)
        .await?;
    server
        .add::<AddStock, _, _, _>(store.clone(), handlers::add_stock)
        .await?;
    server
        .add::<SubtractStock, _, _, _>(store.clone(), handlers::subtract_stock)
        .await?;
    server
        .add::<BatchInit, _, _, _>(store.clone(), handlers::batch_init)
        .await?;

    ledger::run_service(
        &deps,
        server,
        listener,
        "stock",
        TABLES,
        MAX_MESSAGES,
        shutdown,
    )
    .await
}
