//! The request/reply endpoints of a balance service: validate, call the
//! store, map errors to refusals.

use contracts::{
    endpoint::{batch_size, Rejection},
    limits::{Amount, Balance, Price},
    messages::BatchInitDone,
};

use tokio_util::sync::CancellationToken;

use crate::{
    store::{AccountError, Store},
    Accounts, Field,
};

impl From<AccountError> for Rejection {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::NotFound { .. } => Rejection::not_found(e.to_string()),
            AccountError::Insufficient { .. } => Rejection::conflict(e.to_string()),
            AccountError::AboveMax { .. } => Rejection::invalid(e.to_string()),
            AccountError::Db(e) => e.into(),
        }
    }
}

/// Checks the attributes (stock's price) against the price bounds,
/// naming the first one outside.
fn prices(fields: &[Field]) -> Result<Vec<i64>, Rejection> {
    fields
        .iter()
        .map(|(name, value)| Ok(Price::new(name, *value)?.get()))
        .collect()
}

pub async fn create<A: Accounts>(store: Store, req: A::Create) -> Result<A::Account, Rejection> {
    let attributes = prices(&A::create(&req))?;
    Ok(A::account(&store.create(&attributes).await?))
}

pub async fn find<A: Accounts>(store: Store, req: A::Find) -> Result<A::Account, Rejection> {
    Ok(A::account(&store.find(A::find(&req)).await?))
}

pub async fn add<A: Accounts>(store: Store, req: A::Add) -> Result<A::Account, Rejection> {
    let (id, amount) = A::add(&req);
    let row = store.add(id, Amount::new("amount", amount)?).await?;
    Ok(A::account(&row))
}

pub async fn subtract<A: Accounts>(
    store: Store,
    req: A::Subtract,
) -> Result<A::Account, Rejection> {
    let (id, amount) = A::subtract(&req);
    let row = store
        .adjust(id, -Amount::new("amount", amount)?.get())
        .await?;
    Ok(A::account(&row))
}

/// Stopped (rolled back) when `stop` is cancelled: its caller left.
pub async fn batch_init<A: Accounts>(
    store: Store,
    req: A::BatchInit,
    stop: CancellationToken,
) -> Result<BatchInitDone, Rejection> {
    let init = A::batch_init(&req);
    let n = batch_size(init.n)?;
    let (name, balance) = init.balance;
    let balance = Balance::new(name, balance)?.get();
    let attributes = prices(&init.attributes)?;
    store.batch_init(n, balance, &attributes, &stop).await?;
    Ok(BatchInitDone {
        msg: format!("Batch init for {n} {}s successful", store.noun()),
    })
}
