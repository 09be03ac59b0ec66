//! Bounded tables: rows are deleted once older than a retention period,
//! aged by their key (a UUIDv7, whose first 48 bits are its creation time
//! in milliseconds; the purge walks the primary key index), by a
//! timestamp column (the purge walks that column's index), or by both (the
//! purge walks the key, and the column needs no index).
//!
//! The retention must be far longer than any redelivery or re-publish can
//! come late *after the work is over* (JetStream redelivers within seconds
//! to minutes; the sweeper gives up re-publishing never, but a record stays
//! pending and is never purged): the rows purged here are the idempotency
//! keys of work that is long over. So a row that marks work as done (a
//! final saga, a final request record) is aged from its completion, not
//! from its key: work accepted long ago may have completed a moment ago
//! (after an outage), with duplicates still on their way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Most rows deleted per statement, so a purge never holds locks for long.
const CHUNK: i64 = 5_000;

/// How often a purge runs.
pub const EVERY: Duration = Duration::from_secs(60);

/// One table to keep bounded.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    /// The primary key column (the purge walks it in order).
    pub key: &'static str,
    /// Only rows matching this SQL condition go (e.g. only final sagas).
    pub only: &'static str,
    /// How a row's age is known.
    pub age: Age,
}

/// How a purge tells a row's age.
#[derive(Debug, Clone, Copy)]
pub enum Age {
    /// The key is a UUIDv7, whose time is the row's creation: no other
    /// index is needed.
    V7Key,
    /// A timestamp column (e.g. `completed_at`). The purge walks it in
    /// order, so give the table an index on it (a partial one `WHERE
    /// column IS NOT NULL` serves) unless the table stays small.
    Column(&'static str),
    /// A UUIDv7 key and a timestamp column set later than the key's time
    /// (a completion comes after its acceptance): a row goes once the
    /// column is older than the retention, found by walking the key (a row
    /// whose column is that old has an older key too). So the column needs
    /// no index, and the update that sets it stays HOT (it changes no
    /// indexed column: no index entry is written).
    V7KeyThen(&'static str),
    /// A column holding each row's own expiry: the row goes once it is
    /// past, whatever the retention.
    Expires(&'static str),
}

/// The smallest UUIDv7 of time `t`: every ID created before `t` is lower.
pub fn v7_floor(t: SystemTime) -> Uuid {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// Deletes the rows of `table` older than `retention`; returns how many.
pub async fn purge(
    pool: &Pool,
    table: &Table,
    retention: Duration,
) -> Result<u64, crate::db::DbError> {
    let cutoff = v7_floor(SystemTime::now() - retention);
    // Each chunk walks the index of what ages the row, oldest first; `$1`
    // is the key's floor or the age in seconds.
    let (older, walk, by_key) = match table.age {
        Age::V7Key => (format!("{} < $1", table.key), table.key, true),
        Age::Column(c) | Age::Expires(c) => (
            format!("{c} < now() - $1::float8 * interval '1 second'"),
            c,
            false,
        ),
        Age::V7KeyThen(c) => return purge_walking_key(pool, table, c, retention).await,
    };
    let sql = format!(
        "DELETE FROM {name} WHERE {key} IN (
             SELECT {key} FROM {name} WHERE {older} AND ({only})
             ORDER BY {walk} LIMIT $2)",
        name = table.name,
        key = table.key,
        only = table.only,
    );
    let seconds = match table.age {
        Age::Expires(_) => 0.0,
        _ => retention.as_secs_f64(),
    };
    let conn = crate::db::get(pool).await?;
    let mut total = 0;
    loop {
        let n = if by_key {
            crate::db::execute(&conn, &sql, &[&cutoff, &CHUNK]).await?
        } else {
            crate::db::execute(&conn, &sql, &[&seconds, &CHUNK]).await?
        };
        total += n;
        if n < CHUNK as u64 {
            return Ok(total);
        }
    }
}

/// [`purge`] for [`Age::V7KeyThen`]: walks the key below the retention's
/// floor, deleting the rows whose `column` is past the retention too. The
/// walk goes on after the last key deleted, so the rows it passes over
/// (accepted long ago, completed recently) are not read again by every
/// chunk.
async fn purge_walking_key(
    pool: &Pool,
    table: &Table,
    column: &str,
    retention: Duration,
) -> Result<u64, crate::db::DbError> {
    let cutoff = v7_floor(SystemTime::now() - retention);
    let seconds = retention.as_secs_f64();
    let sql = format!(
        "DELETE FROM {name} WHERE {key} IN (
             SELECT {key} FROM {name}
             WHERE {key} > $1 AND {key} < $2
               AND {column} < now() - $3::float8 * interval '1 second' AND ({only})
             ORDER BY {key} LIMIT $4)
         RETURNING {key}",
        name = table.name,
        key = table.key,
        only = table.only,
    );
    let conn = crate::db::get(pool).await?;
    let (mut after, mut total) = (Uuid::nil(), 0);
    loop {
        let gone = crate::db::query(&conn, &sql, &[&after, &cutoff, &seconds, &CHUNK]).await?;
        total += gone.len() as u64;
        if gone.len() < CHUNK as usize {
            return Ok(total);
        }
        match gone.iter().map(|r| r.get::<_, Uuid>(0)).max() {
            Some(last) => after = last,
            None => return Ok(total),
        }
    }
}

/// Why [`purge_finished`] purged nothing more.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// Whether the rows' work is over could not be learnt: keep them.
    #[error("cannot tell which sagas are over")]
    Unknown(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Most keys asked about at once (one NATS request).
pub const ASK_CHUNK: i64 = contracts::messages::order::UnfinishedSagas::MAX_IDS as i64;

/// Like [`purge`], for a table keyed by UUIDv7 whose rows belong to a saga
/// another service owns: of the rows past the retention, those whose saga
/// `unfinished` names (its owner still keeps it: not final yet, or final
/// for less than the retention, whatever the row's age) stay. When
/// `unfinished` fails, nothing more is purged this time.
pub async fn purge_finished<F, Fut>(
    pool: &Pool,
    table: &Table,
    retention: Duration,
    unfinished: F,
) -> Result<u64, PurgeError>
where
    F: Fn(Vec<Uuid>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Uuid>, Box<dyn std::error::Error + Send + Sync>>>,
{
    let cutoff = v7_floor(SystemTime::now() - retention);
    let select = format!(
        "SELECT {key} FROM {name} WHERE {key} < $1 AND {key} > $2 AND ({only})
         ORDER BY {key} LIMIT $3",
        name = table.name,
        key = table.key,
        only = table.only,
    );
    let delete = format!(
        "DELETE FROM {name} WHERE {key} = ANY($1) AND {key} < $2",
        name = table.name,
        key = table.key,
    );
    let conn = crate::db::get(pool).await?;
    let (mut after, mut total) = (Uuid::nil(), 0);
    loop {
        let old: Vec<Uuid> = crate::db::query(&conn, &select, &[&cutoff, &after, &ASK_CHUNK])
            .await
            .map_err(crate::db::DbError::from)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let Some(last) = old.last().copied() else {
            return Ok(total);
        };
        let full = old.len() as i64 == ASK_CHUNK;
        let keep: std::collections::HashSet<Uuid> = unfinished(old.clone())
            .await
            .map_err(PurgeError::Unknown)?
            .into_iter()
            .collect();
        let gone: Vec<Uuid> = old.into_iter().filter(|id| !keep.contains(id)).collect();
        if !gone.is_empty() {
            total += crate::db::execute(&conn, &delete, &[&gone, &cutoff])
                .await
                .map_err(crate::db::DbError::from)?;
        }
        if !full {
            return Ok(total);
        }
        // Keyset: the rows kept are not read again this time.
        after = last;
    }
}

/// Purges `tables` every [`EVERY`] until `stop`.
pub async fn run(pool: Pool, tables: Vec<Table>, retention: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        for table in &tables {
            match purge(&pool, table, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    table = table.name,
                    rows = n,
                    "purged rows past their retention"
                ),
                Err(e) => tracing::warn!(table = table.name, error = %e, "cannot purge old rows"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_orders_below_every_id_made_after_it() {
        let before = v7_floor(SystemTime::now());
        std::thread::sleep(Duration::from_millis(2));
        let id = Uuid::now_v7();
        assert!(before < id);
        let after = v7_floor(SystemTime::now() + Duration::from_millis(5));
        assert!(id < after);
    }
}
