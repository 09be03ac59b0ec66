//! Deliveries and attempts in the api database.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use runtime::db::DbError;
use uuid::Uuid;

use crate::requests::{self, RequestRecord};

/// A due delivery claimed by this replica.
#[derive(Debug, Clone)]
pub struct Due {
    pub request_id: Uuid,
    pub url: String,
    /// Attempts made before this one.
    pub attempts: i32,
    pub record: RequestRecord,
}

/// Claims up to `limit` due deliveries for `lease` (longer than an attempt
/// can take); another replica can claim them only after the lease.
pub async fn claim_due(pool: &Pool, limit: i64, lease: Duration) -> Result<Vec<Due>, DbError> {
    let conn = runtime::db::get(pool).await?;
    let rows = conn
        .query(
            "UPDATE webhooks SET locked_until = now() + $2 * interval '1 millisecond'
             WHERE request_id IN (
                 SELECT request_id FROM webhooks
                 WHERE status = 'pending' AND next_attempt_at <= now() AND locked_until <= now()
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING request_id, url, attempts",
            &[&limit, &(lease.as_millis() as f64)],
        )
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let mut records: std::collections::HashMap<Uuid, RequestRecord> =
        requests::get_many(pool, &ids)
            .await?
            .into_iter()
            .map(|r| (r.request_id, r))
            .collect();
    Ok(rows
        .iter()
        .filter_map(|row| {
            let request_id: Uuid = row.get(0);
            Some(Due {
                request_id,
                url: row.get(1),
                attempts: row.get(2),
                record: records.remove(&request_id)?,
            })
        })
        .collect())
}

/// What one attempt found.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub number: i32,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    /// When to try again; `None` once delivered or out of attempts.
    pub retry_in: Option<Duration>,
    pub delivered: bool,
}

/// Records an attempt and moves the delivery on, releasing the claim.
pub async fn record_attempt(pool: &Pool, request_id: Uuid, a: &Attempt) -> Result<(), DbError> {
    let mut conn = runtime::db::get(pool).await?;
    let tx = conn.transaction().await?;
    tx.execute(
        "INSERT INTO webhook_attempts (request_id, attempt, started_at, duration_ms, http_status, error)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (request_id, attempt) DO NOTHING",
        &[
            &request_id,
            &a.number,
            &a.started_at,
            &(a.duration.as_millis().min(i32::MAX as u128) as i32),
            &a.http_status.map(|s| s as i16),
            &a.error,
        ],
    )
    .await?;
    let status = match (a.delivered, a.retry_in) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    };
    let retry_ms = a.retry_in.map(|d| d.as_millis() as f64);
    tx.execute(
        "UPDATE webhooks SET attempts = $2, status = $3,
                next_attempt_at = CASE WHEN $3 = 'pending' THEN now() + $4 * interval '1 millisecond' END,
                last_error = $5,
                delivered_at = CASE WHEN $3 = 'delivered' THEN now() END,
                locked_until = '-infinity'
         WHERE request_id = $1",
        &[&request_id, &a.number, &status, &retry_ms, &a.error],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Deliveries not yet finished (for the pending gauge).
pub async fn count_pending(pool: &Pool) -> Result<i64, DbError> {
    let conn = runtime::db::get(pool).await?;
    Ok(conn
        .query_one(
            "SELECT count(*) FROM webhooks WHERE status IN ('waiting', 'pending')",
            &[],
        )
        .await?
        .get(0))
}
