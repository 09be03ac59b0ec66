//! stock-svc: items, their price and stock.
//!
//! Serves the stock endpoints of the standard API over NATS request/reply,
//! and the checkout saga's reserve/release steps from JetStream. Both are
//! the balance service it shares with payment-svc ([`balance`]); this crate
//! says what makes it stock: items, whose balance is their stock and which
//! carry a price, reserved into the `reservations` ledger.

use balance::{Accounts, Field, Init, Spec, Tables};
use contracts::ids::ItemId;
use contracts::messages::{saga::Step, stock::*};
use runtime::{bootstrap::Deps, service::RunError};
use tokio_postgres::Row;

mod embedded {
    refinery::embed_migrations!("../sql/stock");
}

/// The schema, applied at start-up.
pub fn migrations() -> refinery::Runner {
    embedded::migrations::runner()
}

/// Default port of the operations endpoints.
pub const DEFAULT_PORT: u16 = 8002;

/// Items and their stock.
pub struct Stock;

impl Accounts for Stock {
    const SPEC: Spec = Spec {
        service: "stock",
        description: "Items, prices and stock",
        noun: "item",
        tables: Tables {
            accounts: "items",
            balance: "stock",
            attributes: &["price"],
            ledger: "reservations",
        },
        debit: Step::Reserve,
        compensate: Step::Release,
        max_messages: 64,
    };

    type Account = Item;
    type Create = CreateItem;
    type Find = FindItem;
    type Add = AddStock;
    type Subtract = SubtractStock;
    type BatchInit = BatchInit;

    fn account(row: &Row) -> Item {
        Item {
            item_id: ItemId::new(row.get::<_, String>("id")),
            stock: row.get("stock"),
            price: row.get("price"),
        }
    }
    fn create(req: &CreateItem) -> Vec<Field> {
        vec![("price", req.price)]
    }
    fn find(req: &FindItem) -> &str {
        req.item_id.as_str()
    }
    fn add(req: &AddStock) -> (&str, i64) {
        (req.item_id.as_str(), req.amount)
    }
    fn subtract(req: &SubtractStock) -> (&str, i64) {
        (req.item_id.as_str(), req.amount)
    }
    fn batch_init(req: &BatchInit) -> Init {
        Init {
            n: req.n,
            balance: ("starting_stock", req.starting_stock),
            attributes: vec![("item_price", req.item_price)],
        }
    }
}

/// Serves every endpoint (the operations endpoints on `listener`) until
/// `shutdown` resolves.
pub async fn run(
    deps: Deps,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    balance::service::run::<Stock>(deps, listener, shutdown).await
}
