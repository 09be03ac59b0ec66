//! `batch_init`: orders `"0"`..`"n-1"` with two random lines each, at
//! benchmark scale (a million orders in a few seconds), and safe to repeat or
//! to run concurrently.
//!
//! Everything happens in one transaction holding the database's setup lock
//! ([`runtime::setup::exclusive`]: a second init is refused while one runs,
//! and a caller that leaves cancels it): the tables are locked, the rows outside the range are set aside, both
//! tables are emptied with `TRUNCATE` (no million-row `DELETE`, no dead rows
//! left behind), their keys and indexes are dropped, the rows are streamed in
//! with `COPY … FREEZE`, and the keys and indexes are rebuilt from their own
//! catalog definitions: one sort each instead of millions of index insertions
//! and per-row foreign-key checks. Either all of it commits or nothing
//! changed.

use std::fmt::Write as _;

use bytes::BytesMut;
use deadpool_postgres::{Pool, Transaction};
use futures::SinkExt;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use runtime::db::DbError;
use runtime::setup::SetupError;
use tokio_util::sync::CancellationToken;

/// What one init makes (validated by the handler).
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub n: i64,
    pub n_items: i64,
    pub n_users: i64,
    pub item_price: i64,
}

/// COPY data is sent in chunks of about this many bytes.
const CHUNK: usize = 256 * 1024;

/// Memory for the index rebuilds (per transaction, not per connection).
const INDEX_BUILD_MEMORY: &str = "SET LOCAL maintenance_work_mem = '256MB'";

/// Orders whose ID is not one of `"0"`..`"n-1"` (`$1` = n): kept as they
/// are. The CASE guards the cast; AND may evaluate in any order.
const OUTSIDE_RANGE: &str = "NOT CASE WHEN length(id) <= 18 AND id ~ '^(0|[1-9][0-9]*)$'
                                 THEN id::bigint < $1 ELSE false END";

/// Every key and index of the order tables, foreign keys pointing at them
/// included: the statement that drops it and the one that recreates it from
/// its own definition, in drop order (foreign keys first). Read from the
/// catalog so that a migration adding an index needs no change here.
const KEYS_AND_INDEXES: &str = "
    SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname),
           format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
                  pg_get_constraintdef(c.oid)),
           CASE c.contype WHEN 'f' THEN 0 ELSE 1 END AS stage
    FROM pg_constraint c
    WHERE c.contype IN ('f', 'p', 'u', 'x')
      AND (c.conrelid = ANY($1::text[]::regclass[]) OR c.confrelid = ANY($1::text[]::regclass[]))
    UNION ALL
    SELECT format('DROP INDEX %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid), 2
    FROM pg_index i
    WHERE i.indrelid = ANY($1::text[]::regclass[])
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                      WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid
                        AND c.contype IN ('p', 'u', 'x'))
    ORDER BY 3, 1";

const TABLES: [&str; 2] = ["orders", "order_lines"];

/// Replaces orders `"0"`..`"n-1"` and their lines; returns the number of
/// orders made. Stops, changing nothing, when `stop` is cancelled.
pub async fn run(pool: &Pool, spec: Spec, stop: &CancellationToken) -> Result<u64, SetupError> {
    runtime::setup::exclusive(pool, stop, async |tx| init(tx, spec).await).await
}

async fn init(tx: &Transaction<'_>, spec: Spec) -> Result<u64, DbError> {
    tx.batch_execute(INDEX_BUILD_MEMORY).await?;
    // In the order every other transaction takes them (orders, then lines),
    // so that waiting for a checkout in flight cannot deadlock.
    tx.batch_execute("LOCK TABLE orders, order_lines IN ACCESS EXCLUSIVE MODE")
        .await?;
    let kept = set_aside(tx, spec.n).await?;

    let ddl: Vec<(String, String)> = tx
        .query(KEYS_AND_INDEXES, &[&TABLES.as_slice()])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (drop, _) in &ddl {
        tx.batch_execute(drop).await?;
    }
    tx.batch_execute("TRUNCATE orders, order_lines").await?;
    if kept {
        tx.batch_execute(
            "INSERT INTO orders SELECT * FROM kept_orders;
             INSERT INTO order_lines OVERRIDING SYSTEM VALUE SELECT * FROM kept_lines",
        )
        .await?;
    }

    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let total = 2 * spec.item_price;
    let made = copy_rows(
        tx,
        "COPY orders (id, user_id, paid, total_cost) FROM STDIN (FREEZE)",
        spec.n,
        |buf, g| {
            let user = rng.random_range(0..spec.n_users);
            writeln!(buf, "{g}\t{user}\tf\t{total}")
        },
    )
    .await?;
    // Two lines per order, with consecutive IDs (call order) from a block
    // taken from the identity sequence at once: a third of the time of
    // drawing them one by one.
    let first_line: i64 = tx
        .query_one(
            "SELECT nextval(pg_get_serial_sequence('order_lines', 'id'))",
            &[],
        )
        .await?
        .get(0);
    copy_rows(
        tx,
        "COPY order_lines (id, order_id, item_id, quantity, unit_price) FROM STDIN (FREEZE)",
        spec.n,
        |buf, g| {
            let (a, b) = (
                rng.random_range(0..spec.n_items),
                rng.random_range(0..spec.n_items),
            );
            let (id, price) = (first_line + 2 * g, spec.item_price);
            let next = id + 1;
            write!(
                buf,
                "{id}\t{g}\t{a}\t1\t{price}\n{next}\t{g}\t{b}\t1\t{price}\n"
            )
        },
    )
    .await?;
    if spec.n > 0 {
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('order_lines', 'id'), $1)",
            &[&(first_line + 2 * spec.n - 1)],
        )
        .await?;
    }

    for (_, create) in ddl.iter().rev() {
        tx.batch_execute(create).await?;
    }
    // Fresh statistics now, not at autovacuum's next round: without column
    // statistics the planner guesses that a checkout's `order_id = ANY(…)`
    // matches a tenth of the lines and scans them all (measured: 560
    // sequential scans of two million lines in a 30 s benchmark).
    tx.batch_execute("ANALYZE orders, order_lines").await?;
    Ok(made)
}

/// Copies the orders outside the range, with their lines, into temporary
/// tables dropped at commit. Returns whether there were any.
async fn set_aside(tx: &Transaction<'_>, n: i64) -> Result<bool, DbError> {
    tx.batch_execute(
        "CREATE TEMP TABLE kept_orders (LIKE orders) ON COMMIT DROP;
         CREATE TEMP TABLE kept_lines (LIKE order_lines) ON COMMIT DROP",
    )
    .await?;
    let kept = tx
        .execute(
            &format!("INSERT INTO kept_orders SELECT * FROM orders WHERE {OUTSIDE_RANGE}"),
            &[&n],
        )
        .await?;
    if kept > 0 {
        tx.batch_execute(
            "ANALYZE kept_orders;
             INSERT INTO kept_lines
             SELECT l.* FROM order_lines l WHERE l.order_id IN (SELECT id FROM kept_orders)",
        )
        .await?;
    }
    Ok(kept > 0)
}

/// Streams `rows` rows in COPY text format, `row(buf, i)` writing row `i`.
async fn copy_rows(
    tx: &Transaction<'_>,
    statement: &str,
    rows: i64,
    mut row: impl FnMut(&mut BytesMut, i64) -> std::fmt::Result,
) -> Result<u64, DbError> {
    let sink = tx.copy_in(statement).await?;
    let mut sink = std::pin::pin!(sink);
    let mut buf = BytesMut::with_capacity(CHUNK + 128);
    for i in 0..rows {
        // Writing to a BytesMut cannot fail.
        let _ = row(&mut buf, i);
        if buf.len() >= CHUNK {
            sink.send(buf.split().freeze()).await?;
        }
    }
    if !buf.is_empty() {
        sink.send(buf.split().freeze()).await?;
    }
    Ok(sink.as_mut().finish().await?)
}
