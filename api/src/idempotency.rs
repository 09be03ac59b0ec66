//! `Idempotency-Key` on every POST (draft-ietf-httpapi-idempotency-key-header).
//!
//! The first request with a key claims it in PostgreSQL and runs; its answer
//! is stored and replayed to every repeat, which changes nothing. The same
//! key with a different request (method, path, query or body) is 422; a
//! repeat while the first still runs is 409. A key is released (the client
//! may retry with it) only after a 5xx that is known to have changed
//! nothing; an answer whose outcome is unknown (the service did not answer
//! in time, the connection broke: [`crate::problem::OutcomeUnknown`]) is
//! kept and replayed, as is a claim abandoned by a crashed api, because
//! running the request again could apply it twice. Keys are printable ASCII,
//! 1 to 255 characters (as Stripe's), and expire (24 h by default).

use std::time::Duration;

use axum::{
    body::{to_bytes, Body},
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use deadpool_postgres::Pool;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    body::MAX_BODY,
    problem::{ApiError, OutcomeUnknown},
    state::AppState,
};

pub const HEADER: &str = "idempotency-key";
/// Response headers worth replaying.
const KEPT_HEADERS: &[&str] = &["content-type", "location", "retry-after"];

/// Longest key, in characters (bytes: keys are ASCII).
pub const MAX_KEY: usize = 255;

/// Parses the header: a structured-field string (`"abc"`) or a bare token.
pub fn parse_key(raw: &str) -> Result<String, ApiError> {
    let raw = raw.trim();
    let key = match raw.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"').ok_or_else(|| {
                ApiError::BadRequest("Idempotency-Key: unterminated quoted string".into())
            })?;
            inner.replace("\\\"", "\"").replace("\\\\", "\\")
        }
        None => raw.to_owned(),
    };
    if key.is_empty() || key.len() > MAX_KEY || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters"
        )));
    }
    Ok(key)
}

fn fingerprint(method: &Method, uri: &axum::http::Uri, body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(method.as_str());
    h.update([0]);
    h.update(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    h.update([0]);
    h.update(body);
    h.finalize().to_vec()
}

enum Claim {
    /// We own the key: run the request.
    Fresh,
    /// Answered before: replay this.
    Replay(Response),
}

/// The middleware.
pub async fn layer(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let mut keys = req.headers().get_all(HEADER).iter();
    let Some(raw) = keys.next().cloned() else {
        return next.run(req).await;
    };
    if keys.next().is_some() {
        return ApiError::BadRequest("one Idempotency-Key header at most".into()).into_response();
    }
    match handle(&s, raw, req, next).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    s: &AppState,
    raw: HeaderValue,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = parse_key(raw.to_str().map_err(|_| {
        ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters"
        ))
    })?)?;
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(format!("body larger than {MAX_BODY} bytes")))?;
    let print = fingerprint(&parts.method, &parts.uri, &body);
    // A claim outlives the longest synchronous checkout, so that only a
    // crashed request's claim is ever taken over.
    let lease = s.settings.checkout_timeout + Duration::from_secs(30);

    match claim(&s.pool, &key, &print, lease, s.settings.idempotency_ttl).await? {
        Claim::Replay(r) => return Ok(r),
        Claim::Fresh => {}
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let status = response.status();
    let accepted = response
        .headers()
        .contains_key(axum::http::header::LOCATION);
    let unknown = response.extensions().get::<OutcomeUnknown>().is_some();
    if status.is_server_error() && !accepted && !unknown {
        // Our fault, and known to have changed nothing: forget the key so
        // the client can retry. (An unknown outcome is stored and replayed.)
        release(&s.pool, &key).await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, 4 * MAX_BODY)
        .await
        .map_err(|e| ApiError::internal("cannot buffer the response", e))?;
    store(&s.pool, &key, status, &parts.headers, &body).await?;
    Ok(Response::from_parts(parts, Body::from(body)))
}

async fn claim(
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
            // The first request's api died mid-request: whether it took
            // effect is unknown, so it is not run again.
            let mut response = ApiError::OutcomeUnknown {
                detail: "the first request with this Idempotency-Key was interrupted; it may or \
                         may not have been applied: read the state before sending it again \
                         under a new Idempotency-Key"
                    .into(),
                cause: None,
            }
            .into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(Claim::Replay(response));
        }
        return Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still being processed".into(),
        ));
    };
    let headers: Option<Value> = row.get(2);
    let body: Option<Vec<u8>> = row.get(3);
    let mut response = Response::new(Body::from(body.unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    if let Some(Value::Object(map)) = headers {
        for (k, v) in map {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::try_from(k.as_str()),
                v.as_str().map(HeaderValue::from_str),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Claim::Replay(response))
}

async fn store(
    pool: &Pool,
    key: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let kept: serde_json::Map<String, Value> = KEPT_HEADERS
        .iter()
        .filter_map(|h| {
            headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .map(|v| (h.to_string(), Value::String(v.to_owned())))
        })
        .collect();
    let conn = runtime::db::get(pool).await?;
    conn.execute(
        "UPDATE idempotency_keys SET status = $2, headers = $3, body = $4 WHERE key = $1",
        &[&key, &(status.as_u16() as i16), &Value::Object(kept), &body],
    )
    .await
    .map_err(runtime::db::DbError::from)?;
    Ok(())
}

async fn release(pool: &Pool, key: &str) -> Result<(), ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_forms() {
        assert_eq!(parse_key("abc").ok().as_deref(), Some("abc"));
        assert_eq!(parse_key("\"abc\"").ok().as_deref(), Some("abc"));
        assert_eq!(parse_key(" \"a\\\"b\" ").ok().as_deref(), Some("a\"b"));
        assert!(parse_key("\"abc").is_err());
        assert!(parse_key("\"\"").is_err());
        assert!(parse_key(&"k".repeat(256)).is_err());
        assert!(parse_key(&"k".repeat(255)).is_ok());
        // Printable ASCII only (space included, as Stripe's keys).
        assert!(parse_key("a b~").is_ok());
        assert!(parse_key("a\tb").is_err());
        assert!(parse_key("a\u{7f}b").is_err());
        assert!(parse_key("é").is_err());
    }

    #[test]
    fn fingerprint_tells_requests_apart() {
        let u1: axum::http::Uri = "/orders/checkout/1".parse().expect("uri");
        let u2: axum::http::Uri = "/orders/checkout/2".parse().expect("uri");
        let a = fingerprint(&Method::POST, &u1, b"");
        assert_eq!(a, fingerprint(&Method::POST, &u1, b""));
        assert_ne!(a, fingerprint(&Method::POST, &u2, b""));
        assert_ne!(a, fingerprint(&Method::POST, &u1, b"{}"));
    }
}
