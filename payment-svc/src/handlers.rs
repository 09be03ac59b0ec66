//! NATS endpoint handlers: validate, call the store, map errors to refusals.

use common::{
    messages::{payment::*, BatchInitDone},
    rpc::{batch_size, non_negative, Rejection},
};

use crate::store::{PaymentError, Store};

impl From<PaymentError> for Rejection {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::NotFound(_) => Rejection::not_found(e.to_string()),
            PaymentError::Insufficient(_) => Rejection::conflict(e.to_string()),
            PaymentError::Db(e) => e.into(),
        }
    }
}

pub async fn create_user(store: Store, _req: CreateUser) -> Result<User, Rejection> {
    Ok(store.create().await?)
}

pub async fn find_user(store: Store, req: FindUser) -> Result<User, Rejection> {
    Ok(store.find(&req.user_id).await?)
}

pub async fn add_funds(store: Store, req: AddFunds) -> Result<User, Rejection> {
    Ok(store
        .adjust(&req.user_id, non_negative("amount", req.amount)?)
        .await?)
}

pub async fn pay(store: Store, req: Pay) -> Result<User, Rejection> {
    Ok(store
        .adjust(&req.user_id, -non_negative("amount", req.amount)?)
        .await?)
}

pub async fn batch_init(store: Store, req: BatchInit) -> Result<BatchInitDone, Rejection> {
    let n = batch_size(req.n)?;
    store
        .batch_init(n, non_negative("starting_money", req.starting_money)?)
        .await?;
    Ok(BatchInitDone {
        msg: format!("Batch init for {n} users successful"),
    })
}
