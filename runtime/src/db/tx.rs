//! Transactions in as few round trips as the work allows.
//!
//! A hot-path transaction reads, decides in memory, and writes. Sent one
//! statement at a time that costs a round trip per statement plus `BEGIN`
//! and `COMMIT` (six or seven for a batch of saga steps), and on a small
//! machine each round trip is two process wake-ups. [`Tx`] pipelines
//! instead: `BEGIN` travels with the reads ([`Tx::begin`]), the writes travel
//! with `COMMIT` ([`Tx::commit`]), so such a transaction takes two round
//! trips.
//!
//! Pipelining is safe only if every statement of a group reaches the server
//! before the group's `COMMIT`. tokio-postgres sends a statement the first
//! time its future is polled, as long as the statement is already prepared;
//! so a group is prepared first (from the connection's statement cache: no
//! round trip after the first use), then its futures are polled in order.
//! Statements are data ([`Stmt`]), never arbitrary futures, so no caller can
//! slip an await between two of them.
//!
//! PostgreSQL ends a transaction whose statement failed with the `COMMIT`
//! that follows (it rolls back), so a failed write never commits the others.
//! A row count the transaction depends on is checked by the server for the
//! same reason ([`Stmt::expect_rows`]): a check in Rust would come after the
//! `COMMIT` had already been sent.

use std::{
    borrow::Cow,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use deadpool_postgres::{Object, Pool};
use futures::{future::MaybeDone, StreamExt};
use tokio_postgres::{error::SqlState, types::ToSql, Row};

use super::DbError;

/// One statement and its parameters.
pub struct Stmt<'a> {
    sql: Cow<'a, str>,
    params: Vec<Box<dyn ToSql + Sync + Send + 'a>>,
    expect: Option<(u64, Mismatch)>,
}

/// What a wrong row count means (see [`Stmt::expect_rows`]).
#[derive(Debug, Clone)]
pub enum Mismatch {
    /// Someone else got there first: retry the whole unit
    /// ([`DbError::Conflict`], transient).
    Conflict(String),
    /// The rows contradict what the transaction read and locked: an
    /// internal fault ([`DbError::Inconsistent`], not transient).
    Inconsistent(String),
}

impl<'a> Stmt<'a> {
    pub fn new(sql: impl Into<Cow<'a, str>>) -> Self {
        Self {
            sql: sql.into(),
            params: Vec::new(),
            expect: None,
        }
    }

    /// Adds the next parameter (`$1`, `$2`, … in order).
    pub fn bind(mut self, param: impl ToSql + Sync + Send + 'a) -> Self {
        self.params.push(Box::new(param));
        self
    }

    /// The statement (an `INSERT`, `UPDATE` or `DELETE` without
    /// `RETURNING`) must change exactly `rows` rows, or the transaction
    /// fails with `mismatch`. The server checks it: PostgreSQL has no
    /// assertion statement, so the count is divided into, and a division
    /// by zero aborts the transaction before its `COMMIT`.
    pub fn expect_rows(mut self, rows: u64, mismatch: Mismatch) -> Self {
        let next = self.params.len() + 1;
        self.sql = Cow::Owned(format!(
            "WITH changed AS ({} RETURNING 1)
             SELECT 1 / (count(*) = ${next}::bigint)::int FROM changed",
            self.sql
        ));
        self.params.push(Box::new(rows as i64));
        self.expect = Some((rows, mismatch));
        self
    }
}

/// What one statement returned.
#[derive(Debug, Default)]
pub struct Output {
    pub rows: Vec<Row>,
    /// Rows inserted, updated, deleted or selected.
    pub affected: u64,
}

/// A transaction on a pooled connection. Dropped before it committed (an
/// error, a cancelled future), it is rolled back in the background before
/// the connection goes back to the pool.
pub struct Tx {
    conn: Option<Object>,
    /// `BEGIN` was sent and neither `COMMIT` nor `ROLLBACK` yet.
    open: bool,
}

impl Tx {
    /// Takes a connection from the pool; sends nothing yet.
    pub async fn new(pool: &Pool) -> Result<Self, DbError> {
        Ok(Self {
            conn: Some(super::get(pool).await?),
            open: false,
        })
    }

    /// The connection, for statements that need a result before the next
    /// can be written (rare paths; each is a round trip).
    pub fn client(&self) -> &deadpool_postgres::ClientWrapper {
        self.conn.as_ref().expect("present until dropped")
    }

    /// `BEGIN`, with `reads` behind it: one round trip.
    pub async fn begin(&mut self, reads: &[&Stmt<'_>]) -> Result<Vec<Output>, DbError> {
        self.open = true;
        pipeline(self.client(), Some("BEGIN"), reads, None).await
    }

    /// More statements inside the transaction: one round trip.
    pub async fn run(&self, stmts: &[&Stmt<'_>]) -> Result<Vec<Output>, DbError> {
        pipeline(self.client(), None, stmts, None).await
    }

    /// `writes` and `COMMIT`: one round trip. On an error nothing of the
    /// transaction is kept (the server turned the `COMMIT` into a rollback,
    /// or the connection is gone).
    pub async fn commit(mut self, writes: &[&Stmt<'_>]) -> Result<Vec<Output>, DbError> {
        let result = pipeline(self.client(), None, writes, Some("COMMIT")).await;
        // Sent either way: the transaction is over (committed or rolled
        // back), or the connection broke and is not reused.
        self.open = false;
        result
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.open {
            return;
        }
        // The connection must not go back to the pool inside a
        // transaction. Without a runtime to roll back on, it is discarded.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = conn.batch_execute("ROLLBACK").await {
                        tracing::debug!(error = %e, "cannot roll back; connection dropped");
                        drop(Object::take(conn));
                    }
                });
            }
            Err(_) => drop(Object::take(conn)),
        }
    }
}

type Pending<'c> = Pin<Box<dyn Future<Output = Result<Output, tokio_postgres::Error>> + Send + 'c>>;

/// Sends `before`, every statement and `after` back to back, then collects
/// every answer; the first error (in statement order) wins.
async fn pipeline(
    client: &deadpool_postgres::ClientWrapper,
    before: Option<&'static str>,
    stmts: &[&Stmt<'_>],
    after: Option<&'static str>,
) -> Result<Vec<Output>, DbError> {
    // Prepared first: a statement still to be prepared would be sent only
    // after its prepare's round trip, behind whatever followed it.
    let mut prepared = Vec::with_capacity(stmts.len());
    for s in stmts {
        prepared.push(client.prepare_cached(&s.sql).await?);
    }
    let mut futures: Vec<Pending<'_>> = Vec::with_capacity(stmts.len() + 2);
    if let Some(sql) = before {
        futures.push(Box::pin(simple(client, sql)));
    }
    for (s, statement) in stmts.iter().zip(prepared) {
        let params: Vec<&(dyn ToSql + Sync)> = s
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        futures.push(Box::pin(async move {
            let stream = client.query_raw(&statement, params).await?;
            futures::pin_mut!(stream);
            let mut rows = Vec::new();
            while let Some(row) = stream.next().await {
                rows.push(row?);
            }
            let affected = stream.rows_affected().unwrap_or(rows.len() as u64);
            Ok(Output { rows, affected })
        }));
    }
    if let Some(sql) = after {
        futures.push(Box::pin(simple(client, sql)));
    }
    let skip = usize::from(before.is_some());
    let results = InOrder::new(futures).await;
    let mut outputs = Vec::with_capacity(stmts.len());
    let mut first_error = None;
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(out) if i >= skip && i < skip + stmts.len() => outputs.push(out),
            Ok(_) => {}
            Err(e) if first_error.is_none() => {
                let stmt = i.checked_sub(skip).and_then(|i| stmts.get(i));
                first_error = Some(classify(e, stmt));
            }
            Err(_) => {}
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(outputs),
    }
}

async fn simple(
    client: &deadpool_postgres::ClientWrapper,
    sql: &'static str,
) -> Result<Output, tokio_postgres::Error> {
    client.batch_execute(sql).await?;
    Ok(Output::default())
}

/// A failed row-count check becomes the error its statement names.
fn classify(e: tokio_postgres::Error, stmt: Option<&&Stmt<'_>>) -> DbError {
    match stmt.and_then(|s| s.expect.as_ref()) {
        Some((rows, mismatch)) if e.code() == Some(&SqlState::DIVISION_BY_ZERO) => match mismatch {
            Mismatch::Conflict(what) => DbError::Conflict(format!("{what} (expected {rows} rows)")),
            Mismatch::Inconsistent(what) => {
                DbError::Inconsistent(format!("{what} (expected {rows} rows)"))
            }
        },
        _ => DbError::Query(e),
    }
}

/// Polls every future, always in the given order, until all are done: the
/// first poll of each therefore happens in order, which is what puts the
/// statements on the wire in order. (`join_all` makes no such promise for
/// long lists.)
struct InOrder<F: Future> {
    futures: Vec<Pin<Box<MaybeDone<F>>>>,
}

impl<F: Future> InOrder<F> {
    fn new(futures: Vec<F>) -> Self {
        Self {
            futures: futures
                .into_iter()
                .map(|f| Box::pin(futures::future::maybe_done(f)))
                .collect(),
        }
    }
}

impl<F: Future> Future for InOrder<F> {
    type Output = Vec<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut done = true;
        for f in self.futures.iter_mut() {
            done &= f.as_mut().poll(cx).is_ready();
        }
        if !done {
            return Poll::Pending;
        }
        Poll::Ready(
            self.futures
                .iter_mut()
                .filter_map(|f| f.as_mut().take_output())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_count_check_wraps_the_statement_and_binds_the_count_last() {
        let s = Stmt::new("UPDATE t SET x = 1 WHERE id = ANY($1)")
            .bind(vec![1_i64, 2])
            .expect_rows(2, Mismatch::Inconsistent("t rows".into()));
        assert!(s
            .sql
            .starts_with("WITH changed AS (UPDATE t SET x = 1 WHERE id = ANY($1) RETURNING 1)"));
        assert!(s.sql.contains("(count(*) = $2::bigint)::int"));
        assert_eq!(s.params.len(), 2);
    }

    #[tokio::test]
    async fn futures_are_first_polled_in_order() {
        use std::sync::{Arc, Mutex};
        let seen = Arc::new(Mutex::new(Vec::new()));
        let futures: Vec<Pin<Box<dyn Future<Output = usize> + Send>>> = (0..40_usize)
            .map(|i| {
                let seen = seen.clone();
                Box::pin(async move {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).push(i);
                    // Later ones finish first.
                    tokio::time::sleep(std::time::Duration::from_millis(40 - i as u64)).await;
                    i
                }) as Pin<Box<dyn Future<Output = usize> + Send>>
            })
            .collect();
        let out = InOrder::new(futures).await;
        assert_eq!(out, (0..40).collect::<Vec<_>>());
        assert_eq!(
            *seen.lock().unwrap_or_else(|e| e.into_inner()),
            (0..40).collect::<Vec<_>>()
        );
    }
}
