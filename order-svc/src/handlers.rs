//! NATS endpoint handlers: validate, call the store, map errors to refusals.

use common::{
    messages::{order::*, BatchInitDone},
    rpc::{batch_range, batch_size, non_negative, Rejection},
};
use tokio_util::sync::CancellationToken;

use crate::store::{OrderError, Store};

impl From<OrderError> for Rejection {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::NotFound(_) => Rejection::not_found(e.to_string()),
            OrderError::AlreadyPaid(_) | OrderError::CheckoutInFlight(_) => {
                Rejection::conflict(e.to_string())
            }
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

pub async fn add_item(store: Store, req: AddItem) -> Result<Order, Rejection> {
    if req.quantity < 1 {
        return Err(Rejection::invalid("quantity must be at least 1"));
    }
    Ok(store
        .add_item(
            &req.order_id,
            &req.item_id,
            req.quantity,
            non_negative("unit_price", req.unit_price)?,
        )
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
    let price = non_negative("item_price", req.item_price)?;
    if price.checked_mul(2).is_none() {
        return Err(Rejection::invalid(
            "2 × item_price does not fit a 64-bit integer",
        ));
    }
    store
        .batch_init(
            crate::batch_init::Spec {
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

/// The sagas among `req.saga_ids` that are not final (for the ledgers'
/// retention in stock-svc and payment-svc).
pub async fn unfinished_sagas(store: Store, req: UnfinishedSagas) -> Result<Unfinished, Rejection> {
    if req.saga_ids.len() > common::retention::ASK_CHUNK as usize {
        return Err(Rejection::invalid(format!(
            "at most {} saga IDs per request",
            common::retention::ASK_CHUNK
        )));
    }
    Ok(Unfinished {
        saga_ids: store.unfinished(&req.saga_ids).await?,
    })
}
