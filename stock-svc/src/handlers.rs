//! NATS endpoint handlers: validate, call the store, map errors to refusals.

use common::{
    messages::{stock::*, BatchInitDone},
    rpc::{batch_size, non_negative, Rejection},
};

use crate::store::{StockError, Store};

impl From<StockError> for Rejection {
    fn from(e: StockError) -> Self {
        match e {
            StockError::NotFound(_) => Rejection::not_found(e.to_string()),
            StockError::Insufficient(_) => Rejection::conflict(e.to_string()),
            StockError::Db(e) => e.into(),
        }
    }
}

pub async fn create_item(store: Store, req: CreateItem) -> Result<Item, Rejection> {
    Ok(store.create(non_negative("price", req.price)?).await?)
}

pub async fn find_item(store: Store, req: FindItem) -> Result<Item, Rejection> {
    Ok(store.find(&req.item_id).await?)
}

pub async fn add_stock(store: Store, req: AddStock) -> Result<Item, Rejection> {
    Ok(store
        .adjust(&req.item_id, non_negative("amount", req.amount)?)
        .await?)
}

pub async fn subtract_stock(store: Store, req: SubtractStock) -> Result<Item, Rejection> {
    Ok(store
        .adjust(&req.item_id, -non_negative("amount", req.amount)?)
        .await?)
}

pub async fn batch_init(store: Store, req: BatchInit) -> Result<BatchInitDone, Rejection> {
    let n = batch_size(req.n)?;
    store
        .batch_init(
            n,
            non_negative("starting_stock", req.starting_stock)?,
            non_negative("item_price", req.item_price)?,
        )
        .await?;
    Ok(BatchInitDone {
        msg: format!("Batch init for {n} items successful"),
    })
}
