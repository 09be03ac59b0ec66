//! The keys' table: claim a key, keep its answer, release it.

use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::Value;

use crate::problem::ApiError;

/// What claiming a key found.
pub(super) enum Claim {
    /// We own the key: run the request.
    Fresh,
    /// Answered before: replay this.
    Answered(Answer),
    /// Claimed by a request whose api died mid-request: whether it took
    /// effect is unknown.
    Interrupted,
}

/// A stored answer.
pub(super) struct Answer {
    pub status: i16,
    /// The kept headers, as a JSON object of strings.
    pub headers: Option<Value>,
    pub body: Option<Vec<u8>>,
}

/// Claims `key` for the request `print` for `lease`; the key is kept for
/// `ttl`. Refuses a key used for another request (422) or still being
/// processed (409).
pub(super) async fn claim(
    pool: &Pool,
    key: &str,
    print: &[u8],
    lease: Duration,
    ttl: Duration,
) -> Result<Claim, ApiError> {
    let conn = runtime::db::get(pool).await?;
    let lease_ms = lease.as_millis() as f64;
    let ttl_ms = ttl.as_millis() as f64;
    // Insert, or take over an expired key; otherwise leave the row as it is.
    // An abandoned claim (the api died mid-request) is not taken over: the
    // request may have been applied.
    let claimed = conn
        .query_opt(
            "INSERT INTO idempotency_keys (key, fingerprint, locked_until, expires_at)
             VALUES ($1, $2, now() + $3 * interval '1 millisecond', now() + $4 * interval '1 millisecond')
             ON CONFLICT (key) DO UPDATE
                SET fingerprint = EXCLUDED.fingerprint, status = NULL, headers = NULL, body = NULL,
                    created_at = now(), locked_until = EXCLUDED.locked_until,
                    expires_at = EXCLUDED.expires_at
                WHERE idempotency_keys.expires_at < now()
             RETURNING key",
            &[&key, &print, &lease_ms, &ttl_ms],
        )
        .await
        .map_err(runtime::db::DbError::from)?;
    if claimed.is_some() {
        return Ok(Claim::Fresh);
    }
    let row = conn
        .query_opt(
            "SELECT fingerprint, status, headers, body, locked_until < now()
             FROM idempotency_keys WHERE key = $1",
            &[&key],
        )
        .await
        .map_err(runtime::db::DbError::from)?;
    let Some(row) = row else {
        // Deleted between the two statements (a 5xx released it): retry.
        return Err(ApiError::Conflict(
            "the first request with this Idempotency-Key just failed; retry".into(),
        ));
    };
    let stored: Vec<u8> = row.get(0);
    if stored != print {
        return Err(ApiError::Unprocessable(
            "this Idempotency-Key was used for a different request".into(),
        ));
    }
    let Some(status) = row.get::<_, Option<i16>>(1) else {
        if row.get::<_, bool>(4) {
            return Ok(Claim::Interrupted);
        }
        return Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still being processed".into(),
        ));
    };
    Ok(Claim::Answered(Answer {
        status,
        headers: row.get(2),
        body: row.get(3),
    }))
}

/// Keeps the answer to the request that claimed `key`, for its repeats.
pub(super) async fn save(
    pool: &Pool,
    key: &str,
    status: u16,
    headers: Value,
    body: &[u8],
) -> Result<(), ApiError> {
    let conn = runtime::db::get(pool).await?;
    conn.execute(
        "UPDATE idempotency_keys SET status = $2, headers = $3, body = $4 WHERE key = $1",
        &[&key, &(status as i16), &headers, &body],
    )
    .await
    .map_err(runtime::db::DbError::from)?;
    Ok(())
}

/// Forgets `key` while it has no answer, so the client may retry it.
pub(super) async fn release(pool: &Pool, key: &str) -> Result<(), ApiError> {
    let conn = runtime::db::get(pool).await?;
    conn.execute(
        "DELETE FROM idempotency_keys WHERE key = $1 AND status IS NULL",
        &[&key],
    )
    .await
    .map_err(runtime::db::DbError::from)?;
    Ok(())
}

/// Keys are forgotten once past their `expires_at` (purged with the
/// request records, by `runtime::retention`).
pub const EXPIRED: runtime::retention::Table = runtime::retention::Table {
    name: "idempotency_keys",
    key: "key",
    only: "true",
    age: runtime::retention::Age::Expires("expires_at"),
};
