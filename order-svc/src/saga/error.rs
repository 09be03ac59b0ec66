//! Why a batch of the checkout saga failed, and whether retrying it can
//! help: shared by the consumers and the `sagas` statements.

use contracts::{
    ids::{ItemId, OrderId},
    limits::OutOfBounds,
    messages::Unparsable,
};
use runtime::{consumer::Fault, db::DbError, jetstream::JetStreamError};
use uuid::Uuid;

use crate::orders::OrderError;

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error(transparent)]
    Db(DbError),
    #[error(transparent)]
    JetStream(#[from] JetStreamError),
    #[error(transparent)]
    Orders(#[from] OrderError),
    #[error("{0}")]
    Inconsistent(String),
    #[error("order {order_id} cannot be checked out: the quantities of item {item_id} sum past the 64-bit range")]
    InvalidOrder { order_id: OrderId, item_id: ItemId },
    /// A stored saga row that is not a saga: an internal fault.
    #[error("stored saga {id} cannot be read: {source}")]
    StoredSaga {
        id: Uuid,
        #[source]
        source: StoredSagaError,
    },
}

runtime::db_error_variant!(CheckoutError, CheckoutError::Db);

impl Fault for CheckoutError {
    fn is_transient(&self) -> bool {
        match self {
            CheckoutError::Db(e) => e.is_transient(),
            CheckoutError::JetStream(e) => e.is_transient(),
            CheckoutError::Orders(OrderError::Db(e)) => e.is_transient(),
            // A batch that contradicts the database, an order that can
            // never be checked out, a saga row that cannot be read: the
            // items are at fault (isolated, never answered from a guess).
            CheckoutError::Orders(_)
            | CheckoutError::Inconsistent(_)
            | CheckoutError::InvalidOrder { .. }
            | CheckoutError::StoredSaga { .. } => false,
        }
    }
}

/// Why a stored saga row cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StoredSagaError {
    #[error(transparent)]
    Unparsable(#[from] Unparsable),
    #[error(transparent)]
    Amount(#[from] OutOfBounds),
    #[error("its items do not decode: {0}")]
    Items(#[from] serde_json::Error),
    #[error("it is {0} but has no user, amount and items")]
    NotStarted(&'static str),
}
