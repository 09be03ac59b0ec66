//! Request records in the api database.

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::messages::saga::CheckoutOutcome;
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Succeeded,
    Failed,
}

/// What `GET /requests/{id}` returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestRecord {
    pub request_id: Uuid,
    pub kind: String,
    pub order_id: String,
    pub status: Status,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl RequestRecord {
    pub fn is_final(&self) -> bool {
        self.status != Status::Pending
    }
}

const COLUMNS: &str = "id, kind, order_id, status, reason, created_at, completed_at";

fn from_row(row: &Row) -> RequestRecord {
    RequestRecord {
        request_id: row.get("id"),
        kind: row.get("kind"),
        order_id: row.get("order_id"),
        status: match row.get::<_, &str>("status") {
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            _ => Status::Pending,
        },
        reason: row.get("reason"),
        created_at: row.get("created_at"),
        completed_at: row.get("completed_at"),
    }
}

type Result<T> = std::result::Result<T, common::db::DbError>;

/// Stores a new pending checkout record (UUIDv7: time-ordered IDs keep the
/// primary key index append-mostly).
pub async fn create(
    pool: &Pool,
    order_id: &str,
    republish_after: Duration,
) -> Result<RequestRecord> {
    let id = Uuid::now_v7();
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            &format!(
                "INSERT INTO requests (id, order_id, next_publish_at)
                 VALUES ($1, $2, now() + $3 * interval '1 millisecond') RETURNING {COLUMNS}"
            ),
            &[&id, &order_id, &(republish_after.as_millis() as f64)],
        )
        .await?;
    Ok(from_row(&row))
}

pub async fn get(pool: &Pool, id: Uuid) -> Result<Option<RequestRecord>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            &format!("SELECT {COLUMNS} FROM requests WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// Finalises the records of these outcomes; returns those that changed
/// (an outcome delivered twice changes nothing the second time).
pub async fn finalize(pool: &Pool, outcomes: &[CheckoutOutcome]) -> Result<Vec<RequestRecord>> {
    if outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = outcomes.iter().map(|o| o.request_id).collect();
    let statuses: Vec<&str> = outcomes
        .iter()
        .map(|o| if o.succeeded { "succeeded" } else { "failed" })
        .collect();
    let reasons: Vec<Option<&str>> = outcomes
        .iter()
        .map(|o| match (o.succeeded, o.reason) {
            (true, _) => None,
            (false, Some(r)) => Some(r.as_str()),
            (false, None) => Some("unknown"),
        })
        .collect();
    let conn = pool.get().await?;
    let rows = conn
        .query(
            &format!(
                "UPDATE requests AS r SET status = x.s, reason = x.r, completed_at = now()
                 FROM unnest($1::uuid[], $2::text[], $3::text[]) AS x(id, s, r)
                 WHERE r.id = x.id AND r.status = 'pending'
                 RETURNING {}",
                COLUMNS
                    .split(", ")
                    .map(|c| format!("r.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &[&ids, &statuses, &reasons],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Claims up to `limit` pending records whose re-publish time has come and
/// moves their next time back exponentially (10 s, 20 s, ... at most 5 min).
/// `SKIP LOCKED` lets several api replicas sweep without doubling up.
pub async fn claim_stuck(pool: &Pool, limit: i64) -> Result<Vec<(Uuid, String)>> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "UPDATE requests SET publish_attempts = publish_attempts + 1,
                    next_publish_at = now() + least(interval '10 seconds' * power(2, publish_attempts - 1),
                                                    interval '5 minutes')
             WHERE id IN (SELECT id FROM requests
                          WHERE status = 'pending' AND next_publish_at <= now()
                          ORDER BY next_publish_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, order_id",
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
