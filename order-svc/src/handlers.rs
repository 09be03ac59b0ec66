//! NATS endpoint handlers: validate, call the store, map errors to refusals.

use contracts::{
    endpoint::{batch_range, batch_size, Rejection},
    limits::{Price, Quantity},
    messages::{order::*, BatchInitDone},
};
use tokio_util::sync::CancellationToken;

use crate::{
    orders::{OrderError, Store},
    saga::store::Sagas,
};

impl From<OrderError> for Rejection {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::NotFound(_) => Rejection::not_found(e.to_string()),
            OrderError::AlreadyPaid(_)
            | OrderError::CheckoutInFlight(_)
            | OrderError::TooManyLines { .. } => Rejection::conflict(e.to_string()),
            OrderError::Limit(_) => Rejection::invalid(e.to_string()),
            OrderError::Db(e) => e.into(),
        }
    }
}

pub async fn create_order(store: Store, req: CreateOrder) -> Result<Order, Rejection> {
    Ok(store.create(&req.user_id).await?)
}

pub async fn find_order(store: Store, req: FindOrder) -> Result<Order, Rejection> {
    Ok(store.find(&req.order_id).await?)
}

pub async fn add_item(store: Store, req: AddItem) -> Result<LineAdded, Rejection> {
    let quantity = Quantity::new("quantity", req.quantity)?;
    let unit_price = Price::new("unit_price", req.unit_price)?;
    Ok(store
        .add_item(&req.order_id, &req.item_id, quantity, unit_price)
        .await?)
}

/// Stopped (rolled back) when `stop` is cancelled: its caller left.
pub async fn batch_init(
    store: Store,
    req: BatchInit,
    stop: CancellationToken,
) -> Result<BatchInitDone, Rejection> {
    let n = batch_size(req.n)?;
    let n_items = batch_range("n_items", req.n_items, 1)?;
    let n_users = batch_range("n_users", req.n_users, 1)?;
    // Each order's total is 2 × item_price, far inside MAX_AMOUNT.
    let price = Price::new("item_price", req.item_price)?.get();
    store
        .batch_init(
            crate::orders::batch_init::Spec {
                n,
                n_items,
                n_users,
                item_price: price,
            },
            &stop,
        )
        .await?;
    Ok(BatchInitDone {
        msg: format!("Batch init for {n} orders successful"),
    })
}

/// The sagas among `req.saga_ids` that order-svc still keeps, final or not
/// (for the ledgers' retention in stock-svc and payment-svc).
pub async fn unfinished_sagas(sagas: Sagas, req: UnfinishedSagas) -> Result<Unfinished, Rejection> {
    if req.saga_ids.len() > UnfinishedSagas::MAX_IDS {
        return Err(Rejection::invalid(format!(
            "at most {} saga IDs per request",
            UnfinishedSagas::MAX_IDS
        )));
    }
    Ok(Unfinished {
        saga_ids: sagas.kept(&req.saga_ids).await?,
    })
}

/// The outcomes of the sagas among `req.saga_ids` that ended (for `api`'s
/// reads of records not finalised yet).
pub async fn saga_outcomes(sagas: Sagas, req: SagaOutcomes) -> Result<Outcomes, Rejection> {
    if req.saga_ids.len() > SagaOutcomes::MAX_IDS {
        return Err(Rejection::invalid(format!(
            "at most {} saga IDs per request",
            SagaOutcomes::MAX_IDS
        )));
    }
    Ok(Outcomes {
        outcomes: sagas.outcomes(&req.saga_ids).await?,
    })
}
