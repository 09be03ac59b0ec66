//! `POST /orders/checkout/{order_id}` and `GET /requests/{request_id}`.
//!
//! Every checkout is processed asynchronously; the client only chooses how
//! it learns the outcome: by waiting (default), or by a 202 and polling.

use std::time::{Duration, Instant};

use axum::{
    extract::{Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use common::{
    jetstream::{self, Outgoing},
    messages::saga::CheckoutRequested,
};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::{
    params::{id, Path},
    problem::{problem_with, ApiError},
    records::{self, RequestRecord, Status},
    state::AppState,
};

/// Longest `?wait=` a poll may ask for.
pub const MAX_WAIT_SECS: u64 = 30;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/orders/checkout/{order_id}", post(checkout))
        .route("/requests/{request_id}", get(get_request))
}

#[derive(Debug, Deserialize, Default)]
pub struct CheckoutQuery {
    mode: Option<String>,
    callback_url: Option<String>,
}

/// RFC 7240: `Prefer: respond-async` (possibly among other preferences).
fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

#[utoipa::path(post, path = "/orders/checkout/{order_id}", tag = "orders",
    description = "Pays the order and reserves its items. Plain: waits for the outcome (200, or 4xx \
        problem with `request_id` and `reason`); a 202 with the pending record if it is not final \
        within the wait. `Prefer: respond-async`, `?mode=async` or a `callback_url`: 202 at once.",
    params(("order_id" = String, Path, min_length = 1, max_length = 128),
        ("mode" = Option<crate::openapi::CheckoutMode>, Query),
        ("callback_url" = Option<String>, Query, format = "uri", max_length = 2048,
            description = "Webhook for the final record; implies async"),
        ("Prefer" = Option<String>, Header, description = "RFC 7240: `respond-async` (202 at \
            once), `wait=N` (seconds a plain checkout waits before answering 202)")),
    request_body(content = Option<crate::openapi::CheckoutBody>, content_type = "application/json"),
    responses((status = 200, description = "Paid (or was already paid)", body = RequestRecord),
        (status = 202, description = "Accepted, outcome not known yet: poll `Location`", body = RequestRecord,
            headers(("Location" = String, description = "`/requests/{request_id}`"),
                ("Retry-After" = u64, description = "Seconds before polling"),
                ("Preference-Applied" = String, description = "`respond-async` when asked for"),
                ("Vary" = String, description = "`Prefer`")))))]
async fn checkout(
    State(s): State<AppState>,
    Path(order_id): Path<String>,
    Query(query): Query<CheckoutQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let order_id = id("order_id", &order_id)?;
    let async_mode = match query.mode.as_deref() {
        None | Some("sync") => prefers_async(&headers),
        Some("async") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "mode must be sync or async, got {other:?}"
            )))
        }
    };
    let body_callback = if body.is_empty() {
        None
    } else {
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("body is not JSON: {e}")))?;
        v.get("callback_url")
            .and_then(|c| c.as_str())
            .map(str::to_owned)
    };
    let callback = match query.callback_url.or(body_callback) {
        Some(raw) => Some(
            s.webhooks
                .policy
                .check(&raw)
                .await
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        ),
        None => None,
    };
    // A callback implies async: the answer is the webhook.
    let async_mode = async_mode || callback.is_some();

    let record = s
        .writer
        .create(records::NewRecord {
            order_id: order_id.clone(),
            callback_url: callback.map(String::from),
        })
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot store the request: {e}")))?;
    let span = tracing::info_span!("checkout", request_id = %record.request_id, %order_id);
    let _enter = span.enter();
    // Registered before publishing, so the wake-up cannot come too early.
    let waiter = (!async_mode).then(|| s.waiters.register(record.request_id));
    let published = jetstream::publish_all(&s.js, vec![message(&s, record.request_id, &order_id)]);
    if let Err(e) = published.await {
        // The record exists: the sweeper publishes it once NATS is back.
        tracing::warn!(error = %e, "cannot publish the checkout yet; the sweeper will retry");
    }
    let Some(waiter) = waiter else {
        return Ok(accepted(&record));
    };
    drop(_enter);
    let record = wait_final(&s, record, s.settings.checkout_timeout, Some(waiter)).await?;
    Ok(match record.status {
        Status::Succeeded => (StatusCode::OK, Json(&record)).into_response(),
        Status::Failed => failed(&record),
        // Still running: never guess, hand over the record to poll.
        Status::Pending => accepted(&record),
    })
}

/// The JetStream message of a checkout; its request ID is its
/// deduplication ID, so re-publishing it is harmless.
pub fn message(s: &AppState, request_id: Uuid, order_id: &str) -> Outgoing {
    Outgoing::json(
        s.subjects.checkout_requested(),
        request_id.to_string(),
        &CheckoutRequested {
            request_id,
            order_id: order_id.to_owned(),
        },
    )
}

fn accepted(record: &RequestRecord) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(record)).into_response();
    let h = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&format!("/requests/{}", record.request_id)) {
        h.insert(header::LOCATION, location);
    }
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A failed checkout as a 4xx problem document carrying the record.
fn failed(record: &RequestRecord) -> Response {
    let reason = record.reason.as_deref().unwrap_or("unknown");
    let status = match reason {
        "order_not_found" => StatusCode::NOT_FOUND,
        _ => StatusCode::CONFLICT,
    };
    let slug = format!("checkout-{}", reason.replace('_', "-"));
    let mut extensions = serde_json::Map::new();
    extensions.insert("request_id".into(), json!(record.request_id));
    extensions.insert("reason".into(), json!(reason));
    problem_with(
        status,
        &slug,
        &format!("checkout failed: {}", reason.replace('_', " ")),
        extensions,
    )
}

/// Waits until the record is final or `timeout` passes; returns the latest
/// record either way. `waiter` is an earlier registration, if any.
async fn wait_final(
    s: &AppState,
    mut record: RequestRecord,
    timeout: Duration,
    waiter: Option<crate::waiters::Waiter>,
) -> Result<RequestRecord, ApiError> {
    if record.is_final() || timeout.is_zero() {
        return Ok(record);
    }
    let mut waiter = match waiter {
        Some(w) => w,
        None => {
            let w = s.waiters.register(record.request_id);
            // It may have become final before we registered.
            if let Some(fresh) = records::get(&s.pool, record.request_id).await? {
                if fresh.is_final() {
                    return Ok(fresh);
                }
            }
            w
        }
    };
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(record);
        }
        let nap = (deadline - now).min(s.settings.wait_poll);
        tokio::select! {
            woken = &mut waiter.rx => {
                if let Ok(r) = woken {
                    return Ok(r);
                }
                // The registry dropped us; fall back to polling.
                waiter = s.waiters.register(record.request_id);
            }
            _ = tokio::time::sleep(nap) => {}
        }
        if let Some(fresh) = records::get(&s.pool, record.request_id).await? {
            if fresh.is_final() {
                return Ok(fresh);
            }
            record = fresh;
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct RecordQuery {
    wait: Option<String>,
}

#[utoipa::path(get, path = "/requests/{request_id}", tag = "requests",
    params(("request_id" = uuid::Uuid, Path),
        ("wait" = Option<u64>, Query, maximum = 30, description = "Long-poll up to this many \
            seconds until the record is final")),
    responses((status = 200, description = "The record", body = RequestRecord,
        headers(("Retry-After" = u64, description = "While pending: seconds before polling again")))))]
async fn get_request(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Query(query): Query<RecordQuery>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("request {raw} not found"));
    let request_id = Uuid::parse_str(&raw).map_err(|_| not_found())?;
    let wait = match query.wait.as_deref() {
        None | Some("") => 0,
        Some(w) => w.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "wait must be a number of seconds (0 to {MAX_WAIT_SECS})"
            ))
        })?,
    }
    .min(MAX_WAIT_SECS);
    let record = records::get(&s.pool, request_id)
        .await?
        .ok_or_else(not_found)?;
    let record = wait_final(&s, record, Duration::from_secs(wait), None).await?;
    let mut response = Json(&record).into_response();
    if !record.is_final() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_header_parsing() {
        let mut h = HeaderMap::new();
        assert!(!prefers_async(&h));
        h.insert(
            "prefer",
            HeaderValue::from_static("return=minimal, respond-async"),
        );
        assert!(prefers_async(&h));
        h.insert("prefer", HeaderValue::from_static("Respond-Async"));
        assert!(prefers_async(&h));
        h.insert("prefer", HeaderValue::from_static("wait=10"));
        assert!(!prefers_async(&h));
    }
}
