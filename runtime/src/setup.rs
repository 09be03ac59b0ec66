//! How a setup call (`batch_init`) runs on a service's database: one
//! transaction, one at a time per database across replicas, refused at once
//! while another runs, and stopped (rolled back) when its caller leaves.

use deadpool_postgres::{Pool, Transaction};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use crate::db::DbError;
use contracts::endpoint::{Refusal, Rejection};

/// Why a setup call did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("another batch_init is running on this service; retry when it has finished")]
    Busy,
    #[error("cancelled: the caller stopped waiting")]
    Cancelled,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for SetupError {
    fn from(e: tokio_postgres::Error) -> Self {
        SetupError::Db(e.into())
    }
}

impl From<SetupError> for Rejection {
    fn from(e: SetupError) -> Self {
        match e {
            SetupError::Busy => Rejection::conflict(e.to_string()),
            // Nobody hears this answer: the caller has gone.
            SetupError::Cancelled => Rejection::new(Refusal::Unavailable, e.to_string()),
            SetupError::Db(e) => e.into(),
        }
    }
}

/// Arbitrary advisory lock key: "batchini" in ASCII.
const LOCK_KEY: i64 = 0x6261_7463_6869_6e69;

/// Runs `work` in a transaction that holds the database's setup lock, and
/// commits. Refused with [`SetupError::Busy`] when another holds it (no
/// queue of waiting inits, each of which would lock tables in turn). When
/// `stop` is cancelled the running statement is cancelled on the server
/// and the connection discarded: the transaction rolls back and the lock
/// is released within moments, whatever statement was running.
pub async fn exclusive<T>(
    pool: &Pool,
    stop: &CancellationToken,
    work: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, DbError>,
) -> Result<T, SetupError> {
    let mut conn = crate::db::get(pool).await?;
    let cancel = conn.cancel_token();
    let run = async {
        let tx = conn.transaction().await?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await?
            .get(0);
        if !locked {
            return Err(SetupError::Busy);
        }
        // Bulk work: planned for the data at hand, sequential scans
        // allowed (a service connection plans for key lookups, see
        // `crate::db::KEY_LOOKUP_PLANS`).
        tx.batch_execute(
            "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL enable_seqscan = on",
        )
        .await?;
        let value = work(&tx).await?;
        tx.commit().await?;
        Ok(value)
    };
    let outcome = tokio::select! {
        outcome = run => outcome,
        _ = stop.cancelled() => Err(SetupError::Cancelled),
    };
    if matches!(outcome, Err(SetupError::Cancelled)) {
        // The dropped future left a statement running (an index build can
        // take minutes): cancel it, then close the connection so that the
        // server rolls back instead of a pooled connection doing it later.
        if let Err(e) = cancel.cancel_query(NoTls).await {
            tracing::warn!(error = %e, "cannot cancel a setup statement; closing its connection");
        }
        drop(deadpool_postgres::Object::take(conn));
    }
    outcome
}
