//! Request records in the api database.

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::messages::saga::CheckoutOutcome;
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Succeeded,
    Failed,
}

/// What `GET /requests/{id}` returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RequestRecord {
    pub request_id: Uuid,
    pub kind: String,
    pub order_id: String,
    pub status: Status,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The callback's delivery, when the client gave a `callback_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookView>,
}

/// Delivery state shown in the record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WebhookView {
    pub url: String,
    /// waiting (record not final yet), pending, delivered or failed.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl RequestRecord {
    pub fn is_final(&self) -> bool {
        self.status != Status::Pending
    }
}

const COLUMNS: &str = "id, kind, order_id, status, reason, created_at, completed_at";

/// The record with its webhook, if any.
const SELECT: &str =
    "SELECT r.id, r.kind, r.order_id, r.status, r.reason, r.created_at, r.completed_at,
            w.url AS w_url, w.status AS w_status, w.attempts AS w_attempts,
            w.last_error AS w_last_error, w.delivered_at AS w_delivered_at
     FROM requests r LEFT JOIN webhooks w ON w.request_id = r.id";

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
        webhook: None,
    }
}

fn from_joined_row(row: &Row) -> RequestRecord {
    let mut record = from_row(row);
    if let Some(url) = row.get::<_, Option<String>>("w_url") {
        record.webhook = Some(WebhookView {
            url,
            status: row.get("w_status"),
            attempts: row.get("w_attempts"),
            last_error: row.get("w_last_error"),
            delivered_at: row.get("w_delivered_at"),
        });
    }
    record
}

type Result<T> = std::result::Result<T, common::db::DbError>;

/// Stores a new pending checkout record (UUIDv7: time-ordered IDs keep the
/// primary key index append-mostly).
/// A record to create.
pub struct NewRecord {
    pub order_id: String,
    pub callback_url: Option<String>,
}

/// Inserts records in one transaction (with their webhook deliveries, if
/// any) and returns them in order.
pub async fn create_many(
    pool: &Pool,
    new: &[NewRecord],
    republish_after: Duration,
) -> Result<Vec<RequestRecord>> {
    let _timer = common::db::time_transaction("record_create");
    let ids: Vec<Uuid> = new.iter().map(|_| Uuid::now_v7()).collect();
    let orders: Vec<&str> = new.iter().map(|n| n.order_id.as_str()).collect();
    let after_ms = republish_after.as_millis() as f64;
    let mut conn = common::db::get(pool).await?;
    let tx = conn.transaction().await?;
    let rows = tx
        .query(
            &format!(
                "INSERT INTO requests (id, order_id, next_publish_at)
                 SELECT id, o, now() + $3 * interval '1 millisecond'
                 FROM unnest($1::uuid[], $2::text[]) AS x(id, o)
                 RETURNING {COLUMNS}"
            ),
            &[&ids, &orders, &after_ms],
        )
        .await?;
    let (hook_ids, hook_urls): (Vec<Uuid>, Vec<&str>) = ids
        .iter()
        .zip(new)
        .filter_map(|(id, n)| n.callback_url.as_deref().map(|u| (*id, u)))
        .unzip();
    if !hook_ids.is_empty() {
        tx.execute(
            "INSERT INTO webhooks (request_id, url) SELECT * FROM unnest($1::uuid[], $2::text[])",
            &[&hook_ids, &hook_urls],
        )
        .await?;
    }
    tx.commit().await?;
    let mut by_id: std::collections::HashMap<Uuid, RequestRecord> = rows
        .iter()
        .map(|r| {
            let rec = from_row(r);
            (rec.request_id, rec)
        })
        .collect();
    Ok(ids
        .iter()
        .zip(new)
        .filter_map(|(id, n)| {
            let mut rec = by_id.remove(id)?;
            rec.webhook = n.callback_url.as_ref().map(|url| WebhookView {
                url: url.clone(),
                status: "waiting".into(),
                attempts: 0,
                last_error: None,
                delivered_at: None,
            });
            Some(rec)
        })
        .collect())
}

pub async fn get(pool: &Pool, id: Uuid) -> Result<Option<RequestRecord>> {
    let conn = common::db::get(pool).await?;
    let row = conn
        .query_opt(&format!("{SELECT} WHERE r.id = $1"), &[&id])
        .await?;
    Ok(row.as_ref().map(from_joined_row))
}

/// Several records at once (missing IDs are left out).
pub async fn get_many(pool: &Pool, ids: &[Uuid]) -> Result<Vec<RequestRecord>> {
    let conn = common::db::get(pool).await?;
    let rows = conn
        .query(&format!("{SELECT} WHERE r.id = ANY($1)"), &[&ids])
        .await?;
    Ok(rows.iter().map(from_joined_row).collect())
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
    let _timer = common::db::time_transaction("records_finalize");
    let mut conn = common::db::get(pool).await?;
    let tx = conn.transaction().await?;
    let changed: Vec<Uuid> = tx
        .query(
            "UPDATE requests AS r SET status = x.s, reason = x.r, completed_at = now()
             FROM unnest($1::uuid[], $2::text[], $3::text[]) AS x(id, s, r)
             WHERE r.id = x.id AND r.status = 'pending'
             RETURNING r.id",
            &[&ids, &statuses, &reasons],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if changed.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    // Their callbacks become due.
    tx.execute(
        "UPDATE webhooks SET status = 'pending', next_attempt_at = now()
         WHERE request_id = ANY($1) AND status = 'waiting'",
        &[&changed],
    )
    .await?;
    let rows = tx
        .query(&format!("{SELECT} WHERE r.id = ANY($1)"), &[&changed])
        .await?;
    tx.commit().await?;
    Ok(rows.iter().map(from_joined_row).collect())
}

/// Claims up to `limit` pending records whose re-publish time has come and
/// moves their next time back exponentially (10 s, 20 s, ... at most 5 min).
/// `SKIP LOCKED` lets several api replicas sweep without doubling up.
pub async fn claim_stuck(pool: &Pool, limit: i64) -> Result<Vec<(Uuid, String)>> {
    let conn = common::db::get(pool).await?;
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

/// Records not yet final (for the pending gauge).
pub async fn count_pending(pool: &Pool) -> Result<i64> {
    let conn = common::db::get(pool).await?;
    Ok(conn
        .query_one(
            "SELECT count(*) FROM requests WHERE status = 'pending'",
            &[],
        )
        .await?
        .get(0))
}
