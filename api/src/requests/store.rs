//! Request records in the api database: every statement that reads or
//! writes them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use contracts::{
    ids::OrderId,
    messages::saga::{CheckoutOutcome, FailureReason},
};
use deadpool_postgres::Pool;
use tokio_postgres::Row;
use uuid::Uuid;

use super::record::{NewRecord, Progress, RequestRecord, WebhookView};

/// The record with its webhook, if any; `$where` picks the records.
macro_rules! select {
    ($where:literal) => {
        concat!(
            "SELECT r.id, r.kind, r.order_id, r.status, r.reason, r.created_at, r.completed_at,
                    w.url AS w_url, w.status AS w_status, w.attempts AS w_attempts,
                    w.last_error AS w_last_error, w.delivered_at AS w_delivered_at
             FROM requests r LEFT JOIN webhooks w ON w.request_id = r.id ",
            $where
        )
    };
}

/// A stored record. The schema's CHECKs admit only the statuses and
/// reasons [`Progress::parse`] reads; a row it cannot read is an error
/// (an internal fault for the caller), never shown as some other state.
fn from_row(row: &Row) -> Result<RequestRecord> {
    let request_id: Uuid = row.get("id");
    let progress = Progress::parse(row.get("status"), row.get("reason")).inspect_err(|e| {
        tracing::error!(%request_id, error = %e, "stored request record cannot be read");
    })?;
    Ok(RequestRecord {
        request_id,
        kind: row.get("kind"),
        order_id: OrderId::new(row.get::<_, String>("order_id")),
        progress,
        created_at: row.get("created_at"),
        completed_at: row.get("completed_at"),
        webhook: None,
    })
}

fn from_joined_row(row: &Row) -> Result<RequestRecord> {
    let mut record = from_row(row)?;
    if let Some(url) = row.get::<_, Option<String>>("w_url") {
        record.webhook = Some(WebhookView {
            url,
            status: row.get("w_status"),
            attempts: row.get("w_attempts"),
            last_error: row.get("w_last_error"),
            delivered_at: row.get("w_delivered_at"),
        });
    }
    Ok(record)
}

type Result<T> = std::result::Result<T, runtime::db::DbError>;

/// Stores records (with their webhook deliveries) in one statement, hence
/// one commit. Idempotent: a record already stored (an earlier attempt whose
/// commit was not confirmed) is left as it is.
pub async fn create_many(pool: &Pool, new: &[&NewRecord], republish_after: Duration) -> Result<()> {
    let _timer = runtime::db::time_transaction("record_create");
    let ids: Vec<Uuid> = new.iter().map(|n| n.request_id).collect();
    let orders: Vec<&str> = new.iter().map(|n| n.order_id.as_str()).collect();
    let created: Vec<DateTime<Utc>> = new.iter().map(|n| n.created_at).collect();
    let hooks: Vec<Option<&str>> = new.iter().map(|n| n.callback_url.as_deref()).collect();
    let after_ms = republish_after.as_millis() as f64;
    let conn = runtime::db::get(pool).await?;
    runtime::db::execute(
        &conn,
        "WITH r AS (
             INSERT INTO requests (id, order_id, created_at, next_publish_at)
             SELECT id, o, c, now() + $5 * interval '1 millisecond'
             FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS x(id, o, c)
             ON CONFLICT (id) DO NOTHING
             RETURNING id)
         INSERT INTO webhooks (request_id, url)
         SELECT x.id, x.u FROM unnest($1::uuid[], $4::text[]) AS x(id, u)
         WHERE x.u IS NOT NULL AND x.id IN (SELECT id FROM r)",
        &[&ids, &orders, &created, &hooks, &after_ms],
    )
    .await?;
    Ok(())
}

pub async fn get(pool: &Pool, id: Uuid) -> Result<Option<RequestRecord>> {
    let conn = runtime::db::get(pool).await?;
    let rows = runtime::db::query(&conn, select!("WHERE r.id = $1"), &[&id]).await?;
    rows.first().map(from_joined_row).transpose()
}

/// Several records at once (missing IDs are left out).
pub async fn get_many(pool: &Pool, ids: &[Uuid]) -> Result<Vec<RequestRecord>> {
    let conn = runtime::db::get(pool).await?;
    let rows = runtime::db::query(&conn, select!("WHERE r.id = ANY($1)"), &[&ids]).await?;
    Ok(readable(&rows))
}

/// The records of a batch's rows. One that cannot be read (a bug or a hand
/// edit) is logged and left out, so it never holds the others back; a
/// single read ([`get`]) still fails loudly.
fn readable(rows: &[Row]) -> Vec<RequestRecord> {
    rows.iter()
        .filter_map(|row| {
            from_joined_row(row)
                .inspect_err(|e| {
                    tracing::error!(error = %e, "stored request record cannot be read; left out");
                })
                .ok()
        })
        .collect()
}

/// Finalises the records of these outcomes in one statement and makes
/// their callbacks due; returns the records that changed (an outcome
/// delivered twice changes nothing the second time).
pub async fn finalize(pool: &Pool, outcomes: &[CheckoutOutcome]) -> Result<Vec<RequestRecord>> {
    if outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = outcomes.iter().map(|o| o.request_id).collect();
    let progress: Vec<Progress> = outcomes
        .iter()
        .map(|o| Progress::Final(o.verdict))
        .collect();
    let statuses: Vec<&str> = progress.iter().map(|p| p.status().as_str()).collect();
    let reasons: Vec<Option<&str>> = progress
        .iter()
        .map(|p| p.reason().map(FailureReason::as_str))
        .collect();
    // The instant the saga ended, as order-svc sent it (and as a client
    // answered at the saga's end was told); now() for an older order-svc.
    let ended: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        outcomes.iter().map(|o| o.completed_at).collect();
    let _timer = runtime::db::time_transaction("records_finalize");
    let conn = runtime::db::get(pool).await?;
    // "Still pending" is asked as `completed_at IS NULL` (the same thing,
    // by `completed_when_final`), not `status = 'pending'`: the latter is
    // `requests_to_sweep`'s predicate, and a generic plan (see
    // `runtime::db::pool`) could scan every pending record through that
    // index instead of looking up the batch by key.
    let rows = runtime::db::query(
        &conn,
        "WITH done AS (
             UPDATE requests AS r SET status = x.s, reason = x.r, completed_at = coalesce(x.c, now())
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) AS x(id, s, r, c)
             WHERE r.id = x.id AND r.completed_at IS NULL
             RETURNING r.id, r.kind, r.order_id, r.status, r.reason, r.created_at, r.completed_at),
         due AS (
             UPDATE webhooks AS w SET status = 'pending', next_attempt_at = now()
             FROM done WHERE w.request_id = done.id AND w.status = 'waiting'
             RETURNING w.request_id, w.url, w.status, w.attempts, w.last_error, w.delivered_at)
         SELECT done.*, due.url AS w_url, due.status AS w_status, due.attempts AS w_attempts,
                due.last_error AS w_last_error, due.delivered_at AS w_delivered_at
         FROM done LEFT JOIN due ON due.request_id = done.id",
        &[&ids, &statuses, &reasons, &ended],
    )
    .await?;
    Ok(readable(&rows))
}

/// Final records, with no webhook delivery still to make, are purged once
/// they completed longer than the retention period (`RETENTION_HOURS`) ago;
/// a pending record never is (the sweeper keeps re-publishing it).
pub const RETAINED: runtime::retention::Table = runtime::retention::Table {
    name: "requests",
    key: "id",
    // Walks the key: `completed_at` needs no index (sql/api/V5).
    age: runtime::retention::Age::V7KeyThen("completed_at"),
    only: "status <> 'pending' AND NOT EXISTS (SELECT 1 FROM webhooks w
           WHERE w.request_id = requests.id AND w.status IN ('waiting', 'pending'))",
};

/// After this many publishes a record still pending is *parked*: something
/// is wrong beyond an outage (counted in `checkout_requests_parked`), and it
/// is re-published only every [`PARKED_EVERY`], never given up.
pub const PARK_AFTER: i32 = 30;
/// How often a parked record is still re-published.
pub const PARKED_EVERY: Duration = Duration::from_secs(3600);

/// A record the sweeper claimed for a re-publish.
pub struct Stuck {
    pub request_id: Uuid,
    pub order_id: OrderId,
    /// Publishes before this one.
    pub attempts: i32,
}

/// Claims up to `limit` pending records whose re-publish time has come and
/// moves their next time back exponentially (10 s, 20 s, ... at most 5 min;
/// [`PARKED_EVERY`] once parked). `SKIP LOCKED` lets several api replicas
/// sweep without doubling up. Every expression is bounded (the exponent,
/// the count), so no row's value can make the statement fail for the others.
pub async fn claim_stuck(pool: &Pool, limit: i64) -> Result<Vec<Stuck>> {
    let parked_secs = PARKED_EVERY.as_secs_f64();
    let conn = runtime::db::get(pool).await?;
    let rows = conn
        .query(
            "UPDATE requests r SET publish_attempts = least(r.publish_attempts::bigint + 1, 2147483647)::int,
                    next_publish_at = now() + CASE
                        WHEN r.publish_attempts >= $2 THEN $3::float8 * interval '1 second'
                        ELSE least(interval '10 seconds' * power(2, least(greatest(r.publish_attempts - 1, 0), 5)),
                                   interval '5 minutes') END
             FROM (SELECT id, publish_attempts FROM requests
                   WHERE status = 'pending' AND next_publish_at <= now()
                   ORDER BY next_publish_at LIMIT $1 FOR UPDATE SKIP LOCKED) old
             WHERE r.id = old.id
             RETURNING r.id, r.order_id, old.publish_attempts",
            &[&limit, &PARK_AFTER, &parked_secs],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Stuck {
            request_id: r.get(0),
            order_id: OrderId::new(r.get::<_, String>(1)),
            attempts: r.get(2),
        })
        .collect())
}

/// Records not yet final, and how many of them are parked (for the gauges).
pub async fn count_pending(pool: &Pool) -> Result<(i64, i64)> {
    let conn = runtime::db::get(pool).await?;
    let row = conn
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE publish_attempts >= $1)
             FROM requests WHERE status = 'pending'",
            &[&PARK_AFTER],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}
