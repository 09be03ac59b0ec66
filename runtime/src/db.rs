//! PostgreSQL: the connection pool, migrations, and error classification.
//!
//! Every service owns one database. Its schema lives in `sql/<service>/` as
//! versioned refinery migrations, embedded in the binary and applied at
//! start-up under an advisory lock so that replicas starting together do not
//! race each other.

use std::time::Duration;

use backon::Retryable;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{error::SqlState, NoTls};

mod tx;

pub use tx::{Mismatch, Output, Stmt, Tx};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("cannot build the connection pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("cannot get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {}", describe(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] refinery::Error),
    /// A concurrent transaction got there first; retry the whole unit.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Rows that contradict what the transaction read and locked (a row
    /// count check failed): an internal fault, not transient.
    #[error("inconsistent: {0}")]
    Inconsistent(String),
    /// A stored value that names nothing known: refused, never read as
    /// some default. Not transient; an internal fault for the caller.
    #[error("stored value cannot be read: {0}")]
    Unreadable(#[from] contracts::messages::Unparsable),
}

/// tokio-postgres prints only "db error" for server errors; the server's
/// message, detail and constraint are what an operator needs.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                s.push_str(&format!(" ({detail})"));
            }
            if let Some(c) = db.constraint() {
                s.push_str(&format!(" [constraint {c}]"));
            }
            s
        }
        None => e.to_string(),
    }
}

impl DbError {
    /// The SQLSTATE of the underlying server error, if there is one.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            DbError::Query(e) => e.code(),
            DbError::Pool(deadpool_postgres::PoolError::Backend(e)) => e.code(),
            _ => None,
        }
    }

    /// A CHECK constraint refused the change (e.g. stock would go negative).
    pub fn is_check_violation(&self) -> bool {
        self.code() == Some(&SqlState::CHECK_VIOLATION)
    }

    /// An integer left the BIGINT range (e.g. adding to an almost-full counter).
    pub fn is_out_of_range(&self) -> bool {
        self.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE)
    }

    /// The server refused the data itself: SQLSTATE class 22 (data
    /// exception: out of range, invalid text, ...), 23 (integrity constraint
    /// violation) or 54 (program limit exceeded, e.g. an array too large).
    /// The same statement with the same values fails again; other values
    /// may pass.
    pub fn is_data_error(&self) -> bool {
        self.code().is_some_and(is_data_state)
    }

    /// Worth retrying as it is: everything but a data error and a
    /// misconfiguration. Connection and pool failures, serialization
    /// failures and deadlocks (class 40), a server shutting down or out of
    /// resources pass with time. So, deliberately, does an error that says
    /// nothing about the data (e.g. a broken statement after a bad deploy):
    /// retrying stalls the consumer visibly instead of failing every item.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Url(_)
            | DbError::Build(_)
            | DbError::Migrate(_)
            | DbError::Unreadable(_)
            | DbError::Inconsistent(_) => false,
            DbError::Pool(_) | DbError::Query(_) | DbError::Conflict(_) => !self.is_data_error(),
        }
    }
}

/// SQLSTATE classes 22, 23 and 54: see [`DbError::is_data_error`].
fn is_data_state(code: &SqlState) -> bool {
    matches!(code.code().get(..2), Some("22" | "23" | "54"))
}

impl crate::fault::Fault for DbError {
    fn is_transient(&self) -> bool {
        DbError::is_transient(self)
    }
}

/// How a service connection plans: each statement once (statements are
/// prepared once per connection, see [`query`]), and never as a sequential
/// scan.
///
/// Every statement a service runs finds its rows by key (a bounded batch of
/// them) or walks an index. Planning at every execution cost as much as
/// running the statement (measured: about a third of a hot-path
/// transaction's time at one client). A generic plan is made once, though,
/// maybe while a table is still empty (a fresh saga or ledger table), when
/// a sequential scan looks cheapest and would then be kept as the table
/// grows; with sequential scans off, that plan uses the index too. A
/// statement for which no index serves still scans (the setting only
/// prices the scan out). Bulk work opts back in for its own transaction
/// ([`crate::setup::exclusive`]).
pub const KEY_LOOKUP_PLANS: &str = "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off";

/// Builds a pool; connections are opened lazily.
pub fn pool(url: &str, size: usize) -> Result<Pool, DbError> {
    let mut pg: tokio_postgres::Config = url.parse().map_err(DbError::Url)?;
    let options = match pg.get_options() {
        Some(o) if !o.is_empty() => format!("{o} {KEY_LOOKUP_PLANS}"),
        _ => KEY_LOOKUP_PLANS.to_owned(),
    };
    pg.options(options);
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()?)
}

/// Builds the pool, waits (with backoff, about a minute) until the server
/// answers, and applies the embedded migrations.
pub async fn connect_and_migrate(
    url: &str,
    size: usize,
    migrations: refinery::Runner,
) -> Result<Pool, DbError> {
    let pool = pool(url, size)?;
    let check = || async { pool.get().await.map(drop) };
    check
        .retry(crate::retry::startup())
        .notify(|e, after| tracing::warn!(error = %e, ?after, "database not reachable yet"))
        .await?;
    migrate(&pool, migrations).await?;
    Ok(pool)
}

/// Applies migrations while holding a session advisory lock.
pub async fn migrate(pool: &Pool, migrations: refinery::Runner) -> Result<(), DbError> {
    // Arbitrary constant: "migrate" in ASCII. Unique per database, which is
    // all it needs to be since each service has its own.
    const LOCK_KEY: i64 = 0x006d_6967_7261_7465;
    let mut conn = pool.get().await?;
    conn.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = migrations.run_async(&mut **conn).await;
    conn.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await?;
    let report = result?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "applied migration");
    }
    Ok(())
}

/// A connection from the pool, timing the wait (`db_pool_wait_seconds`).
pub async fn get(pool: &Pool) -> Result<deadpool_postgres::Object, DbError> {
    let timer = crate::metrics::DB_POOL_WAIT.start_timer();
    let conn = pool.get().await?;
    timer.observe_duration();
    Ok(conn)
}

/// Runs a statement prepared once per connection (deadpool's statement
/// cache): the hot paths send each statement as one round trip with its
/// parameters instead of parsing and planning it again every time.
pub async fn query(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.query(&statement, params).await
}

/// Like [`query`], for a statement whose row count is what matters.
pub async fn execute(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.execute(&statement, params).await
}

/// Times a hot-path transaction (`db_transaction_duration_seconds`);
/// observed when dropped.
pub fn time_transaction(operation: &str) -> prometheus::HistogramTimer {
    crate::metrics::DB_TX_DURATION
        .with_label_values(&[operation])
        .start_timer()
}

/// True when the database answers a trivial query.
pub async fn ping(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(conn) => conn.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

/// Implements `From<DbError>`, `From<tokio_postgres::Error>` and
/// `From<deadpool_postgres::PoolError>` for a service error type whose
/// variant `$variant(DbError)` wraps database failures, so that `?` works on
/// every database call.
#[macro_export]
macro_rules! db_error_variant {
    ($ty:ty, $variant:path) => {
        impl From<$crate::db::DbError> for $ty {
            fn from(e: $crate::db::DbError) -> Self {
                $variant(e)
            }
        }
        impl From<tokio_postgres::Error> for $ty {
            fn from(e: tokio_postgres::Error) -> Self {
                $variant(e.into())
            }
        }
        impl From<deadpool_postgres::PoolError> for $ty {
            fn from(e: deadpool_postgres::PoolError) -> Self {
                $variant(e.into())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_that_are_not_about_the_data_are_transient() {
        for data in [
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
            SqlState::INVALID_TEXT_REPRESENTATION,
            SqlState::CHECK_VIOLATION,
            SqlState::UNIQUE_VIOLATION,
            SqlState::PROGRAM_LIMIT_EXCEEDED,
        ] {
            assert!(is_data_state(&data), "{data:?}");
        }
        for transient in [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::CONNECTION_FAILURE,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::UNDEFINED_TABLE,
        ] {
            assert!(!is_data_state(&transient), "{transient:?}");
        }
        assert!(DbError::Conflict("raced".into()).is_transient());
    }
}
