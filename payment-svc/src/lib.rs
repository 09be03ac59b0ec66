//! payment-svc: users and their credit.
//!
//! Serves the payment endpoints of the standard API over NATS request/reply,
//! and the checkout saga's charge/refund steps from JetStream. Both are the
//! balance service it shares with stock-svc ([`balance`]); this crate says
//! what makes it payment: users, whose balance is their credit, charged
//! into the `charges` ledger.

use balance::{Accounts, Field, Init, Spec, Tables};
use contracts::ids::UserId;
use contracts::messages::{payment::*, saga::Step};
use runtime::{bootstrap::Deps, service::RunError};
use tokio_postgres::Row;

mod embedded {
    refinery::embed_migrations!("../sql/payment");
}

/// The schema, applied at start-up.
pub fn migrations() -> refinery::Runner {
    embedded::migrations::runner()
}

/// Default port of the operations endpoints.
pub const DEFAULT_PORT: u16 = 8003;

/// Users and their credit.
pub struct Payment;

impl Accounts for Payment {
    const SPEC: Spec = Spec {
        service: "payment",
        description: "Users and credit",
        noun: "user",
        tables: Tables {
            accounts: "users",
            balance: "credit",
            attributes: &[],
            ledger: "charges",
        },
        debit: Step::Charge,
        compensate: Step::Refund,
        max_messages: 64,
    };

    type Account = User;
    type Create = CreateUser;
    type Find = FindUser;
    type Add = AddFunds;
    type Subtract = Pay;
    type BatchInit = BatchInit;

    fn account(row: &Row) -> User {
        User {
            user_id: UserId::new(row.get::<_, String>("id")),
            credit: row.get("credit"),
        }
    }
    fn create(_req: &CreateUser) -> Vec<Field> {
        Vec::new()
    }
    fn find(req: &FindUser) -> &str {
        req.user_id.as_str()
    }
    fn add(req: &AddFunds) -> (&str, i64) {
        (req.user_id.as_str(), req.amount)
    }
    fn subtract(req: &Pay) -> (&str, i64) {
        (req.user_id.as_str(), req.amount)
    }
    fn batch_init(req: &BatchInit) -> Init {
        Init {
            n: req.n,
            balance: ("starting_money", req.starting_money),
            attributes: Vec::new(),
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
    balance::service::run::<Payment>(deps, listener, shutdown).await
}
