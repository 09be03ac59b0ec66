//! payment-svc: users and their credit.
//!
//! Serves the payment endpoints of the standard API over NATS request/reply,
//! and the checkout saga's charge/refund steps from JetStream.

pub mod handlers;
pub mod store;

use common::{
    bootstrap::Deps,
    ledger::{self, Tables},
    messages::saga::Step,
    rpc::Server,
};

mod embedded {
    refinery::embed_migrations!("../sql/payment");
}

/// The schema, applied at start-up.
pub fn migrations() -> refinery::Runner {
    embedded::migrations::runner()
}

/// The saga steps of this service, for the shared ledger engine.
pub const TABLES: Tables = Tables {
    accounts: "users",
    balance: "credit",
    ledger: "charges",
    debit: Step::Charge,
    compensate: Step::Refund,
};

/// Most JetStream messages (each a batch of step commands) applied in one
/// transaction.
pub const MAX_MESSAGES: usize = 64;

/// Default port of the operations endpoints.
pub const DEFAULT_PORT: u16 = 8003;

/// Serves every endpoint (the operations endpoints on `listener`) until
/// `shutdown` resolves.
pub async fn run(
    deps: Deps,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), common::bootstrap::RunError> {
    use common::messages::payment::*;
    let store = store::Store::new(deps.pool.clone());
    let mut server = Server::start(
        &deps.nats,
        &deps.subjects,
        "payment",
        "Users and credit",
        128,
    )
    .await?;
    server
        .add::<CreateUser, _, _, _>(store.clone(), handlers::create_user)
        .await?;
    server
        .add::<FindUser, _, _, _>(store.clone(), handlers::find_user)
        .await?;
    server
        .add::<AddFunds, _, _, _>(store.clone(), handlers::add_funds)
        .await?;
    server
        .add::<Pay, _, _, _>(store.clone(), handlers::pay)
        .await?;
    server
        .add::<BatchInit, _, _, _>(store.clone(), handlers::batch_init)
        .await?;
    ledger::run_service(
        &deps,
        server,
        listener,
        "payment",
        TABLES,
        MAX_MESSAGES,
        shutdown,
    )
    .await
}
