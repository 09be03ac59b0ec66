//! The balance service behind stock-svc and payment-svc.
//!
//! Both keep accounts whose balance must not go negative (items and their
//! stock, users and their credit), serve plain endpoints to create, read
//! and adjust them, and apply the checkout saga's idempotent debit and its
//! compensation (reserve/release, charge/refund). That is one problem on
//! different tables, so it is solved once here; each binary says what makes
//! it itself by implementing [`Accounts`] and calls [`service::run`].
//!
//! - [`plan`]: decides a batch of saga steps in memory (pure);
//! - [`store`]: every SQL statement, the saga batch's transaction included;
//! - [`handlers`]: the request/reply endpoints;
//! - [`retention`]: the ledger's purge, of final sagas' rows only;
//! - [`service`]: the saga-step consumer and the wiring of it all.

pub mod handlers;
pub mod plan;
pub mod retention;
pub mod service;
pub mod store;

use contracts::{
    endpoint::Endpoint,
    messages::{saga::Step, BatchInitDone},
};
use serde::{de::DeserializeOwned, Serialize};
use tokio_postgres::Row;

pub use store::Tables;

/// The plain values that make a balance service stock-svc or payment-svc.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Name of the NATS service and of the JetStream durable consumer of
    /// its saga steps (`nats/jetstream.json`); labels their metrics.
    pub service: &'static str,
    /// The NATS service's description (`$SRV.INFO`).
    pub description: &'static str,
    /// What one account is called in refusals: `item {id} not found`.
    pub noun: &'static str,
    pub tables: Tables,
    /// The saga step that debits, and the one that compensates it.
    pub debit: Step,
    pub compensate: Step,
    /// Most JetStream messages (each a batch of step commands) applied in
    /// one transaction.
    pub max_messages: usize,
}

/// A request's value, with the field name its refusal quotes.
pub type Field = (&'static str, i64);

/// What a `batch_init` asks for: accounts `"0"`..`"n-1"` with this balance
/// and these attributes (in the order of [`Tables::attributes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    pub n: i64,
    pub balance: Field,
    pub attributes: Vec<Field>,
}

/// What makes a balance service stock-svc or payment-svc: its [`Spec`], its
/// wire types and how to read them. The endpoint names and response types
/// come with the request types ([`Endpoint`]).
pub trait Accounts: Send + Sync + 'static {
    const SPEC: Spec;

    /// One account on the wire.
    type Account: Serialize + DeserializeOwned + Send + 'static;
    /// Makes an account with a zero balance.
    type Create: Endpoint<Response = Self::Account>;
    type Find: Endpoint<Response = Self::Account>;
    type Add: Endpoint<Response = Self::Account>;
    type Subtract: Endpoint<Response = Self::Account>;
    type BatchInit: Endpoint<Response = BatchInitDone>;

    /// An account from a row with the columns `id`, the balance and the
    /// attributes of [`Spec::tables`].
    fn account(row: &Row) -> Self::Account;
    /// The attributes of the new account.
    fn create(req: &Self::Create) -> Vec<Field>;
    /// The account asked for.
    fn find(req: &Self::Find) -> &str;
    /// The account and the amount to add.
    fn add(req: &Self::Add) -> (&str, i64);
    /// The account and the amount to take.
    fn subtract(req: &Self::Subtract) -> (&str, i64);
    fn batch_init(req: &Self::BatchInit) -> Init;
}
