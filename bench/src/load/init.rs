//! Set-up through the API: `batch_init` of items, users and orders, and bounded concurrency
//! for the calls that populate one by one.

use super::WorkloadError;
use crate::duration::parse_duration;
use crate::progress::Ui;
use api_client::Api;
use clap::Args;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Runs `f(0..n)` with at most `concurrency` in flight; the first error aborts the rest.
pub async fn concurrent<T, F, Fut>(
    n: usize,
    concurrency: usize,
    bar: &ProgressBar,
    f: F,
) -> Result<Vec<T>, WorkloadError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, WorkloadError>> + Send + 'static,
    T: Send + 'static,
{
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut js = JoinSet::new();
    let mut next = 0usize;
    let concurrency = concurrency.max(1);
    loop {
        while next < n && js.len() < concurrency {
            let fut = f(next);
            let i = next;
            js.spawn(async move { (i, fut.await) });
            next += 1;
        }
        match js.join_next().await {
            None => break,
            Some(Ok((i, Ok(v)))) => {
                out[i] = Some(v);
                bar.inc(1);
            }
            Some(Ok((_, Err(e)))) => {
                js.abort_all();
                return Err(e);
            }
            Some(Err(e)) => {
                js.abort_all();
                return Err(WorkloadError::Join(e.to_string()));
            }
        }
    }
    out.into_iter()
        .collect::<Option<Vec<T>>>()
        .ok_or_else(|| WorkloadError::Join("a task finished without a result".into()))
}

/// Batch initialisation shared by `stress`, `async` and `sweep`.
#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// Items created by batch_init.
    #[arg(long, default_value_t = 100_000)]
    pub items: u64,
    /// Starting stock of each item.
    #[arg(long, default_value_t = 1_000_000)]
    pub stock: i64,
    /// Price of each item.
    #[arg(long, default_value_t = 1)]
    pub price: i64,
    /// Users created by batch_init.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Starting credit of each user.
    #[arg(long, default_value_t = 1_000_000)]
    pub credit: i64,
    /// Orders created by batch_init (the checkouts pick among them at random). A million, so
    /// that a run at thousands of checkouts/s rarely meets an order it already paid.
    #[arg(long, default_value_t = 1_000_000)]
    pub orders: u64,
    /// Do not call batch_init: reuse the data already there (the sizes must still match).
    /// Orders paid by earlier runs then check out without a saga, so such runs are cheaper
    /// and not comparable with runs on fresh data.
    #[arg(long)]
    pub skip_init: bool,
    /// Timeout of each batch_init call.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub init_timeout: Duration,
}

/// What batch initialisation did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitReport {
    pub skipped: bool,
    pub items: u64,
    pub stock: i64,
    pub price: i64,
    pub users: u64,
    pub credit: i64,
    pub orders: u64,
    pub seconds: f64,
}

/// Batch-initialises items, users and orders (unless --skip-init) and checks that the last of
/// each exists.
pub async fn batch_init(api: &Api, a: &InitArgs, ui: &Ui) -> Result<InitReport, WorkloadError> {
    if a.items == 0 || a.users == 0 || a.orders == 0 {
        return Err(WorkloadError::Params(
            "--items, --users and --orders must be >= 1".into(),
        ));
    }
    let t0 = Instant::now();
    if !a.skip_init {
        ui.note(format!(
            "batch_init: {} items (stock {}, price {}), {} users (credit {}), {} orders",
            a.items, a.stock, a.price, a.users, a.credit, a.orders
        ));
        api.batch_init_stock(a.items, a.stock, a.price, a.init_timeout)
            .await?;
        api.batch_init_users(a.users, a.credit, a.init_timeout)
            .await?;
        api.batch_init_orders(a.orders, a.items, a.users, a.price, a.init_timeout)
            .await?;
    } else {
        // A checkout of an order that an earlier run paid succeeds at once,
        // without reserving or charging: runs that reuse data get cheaper.
        ui.note(
            "--skip-init: orders paid by earlier runs check out without a saga; \
             compare runs only on fresh data",
        );
    }
    let last = |n: u64| (n - 1).to_string();
    api.find_item(&last(a.items)).await.map_err(|e| {
        WorkloadError::Setup(format!("item {} is not readable: {e}", last(a.items)))
    })?;
    api.find_user(&last(a.users)).await.map_err(|e| {
        WorkloadError::Setup(format!("user {} is not readable: {e}", last(a.users)))
    })?;
    api.find_order(&last(a.orders)).await.map_err(|e| {
        WorkloadError::Setup(format!("order {} is not readable: {e}", last(a.orders)))
    })?;
    Ok(InitReport {
        skipped: a.skip_init,
        items: a.items,
        stock: a.stock,
        price: a.price,
        users: a.users,
        credit: a.credit,
        orders: a.orders,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
