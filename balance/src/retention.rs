//! The ledger's retention. A ledger row is a saga step's idempotency key
//! and what its compensation undoes, so it goes only once past the
//! retention *and* its saga is gone: order-svc, which owns the sagas and
//! purges a final one the retention after its completion, is asked which
//! of the old rows' sagas it still keeps (`order.unfinished_sagas`); when
//! it cannot say, nothing is purged. (Waiting for the saga to be merely
//! final is not enough: a checkout accepted long ago may complete now,
//! with a duplicate step command still on its way.)

use std::time::Duration;

use contracts::messages::order::UnfinishedSagas;
use deadpool_postgres::Pool;
use runtime::{
    retention::{PurgeError, Table},
    rpc::RpcClient,
};
use tokio_util::sync::CancellationToken;

/// How long the question to order-svc may take.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// The ledger `table` (keyed by saga ID, a UUIDv7) as a retained table.
pub fn ledger(table: &'static str) -> Table {
    Table {
        name: table,
        key: "saga_id",
        only: "true",
        age: runtime::retention::Age::V7Key,
    }
}

/// Deletes the ledger rows past `retention` whose saga order-svc no longer
/// keeps.
pub async fn purge(
    pool: &Pool,
    ledger: &Table,
    retention: Duration,
    order: &RpcClient,
) -> Result<u64, PurgeError> {
    runtime::retention::purge_finished(pool, ledger, retention, |saga_ids| async move {
        order
            .call(&UnfinishedSagas { saga_ids }, "")
            .await
            .map(|u| u.saga_ids)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    })
    .await
}

/// Purges every [`runtime::retention::EVERY`] until `stop`.
pub async fn run(
    pool: Pool,
    ledger: Table,
    retention: Duration,
    order: RpcClient,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(runtime::retention::EVERY) => {}
        }
        match purge(&pool, &ledger, retention, &order).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                table = ledger.name,
                rows = n,
                "purged rows past their retention"
            ),
            Err(e) => tracing::warn!(table = ledger.name, error = %e, "cannot purge old rows"),
        }
    }
}
