//! `POST /orders/checkout/{order_id}` and `GET /requests/{request_id}`.
//!
//! Every checkout is processed asynchronously; the client only chooses how
//! it learns the outcome: by waiting (default), or by a 202 and polling.

use std::time::Duration;

use tokio::time::Instant;

use axum::{
    extract::{Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use contracts::messages::saga::{FailureReason, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::{
    params::{id, Path},
    problem::ApiError,
    requests::{NewRecord, Progress, RequestRecord},
    state::AppState,
};

/// Longest `?wait=` a poll may ask for.
pub const MAX_WAIT_SECS: u64 = 30;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/orders/checkout/{order_id}", post(checkout))
        .route("/requests/{request_id}", get(get_request))
}

/// The JSON body a checkout may carry (any other body is refused).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckoutBody {
    /// Where to POST the final request record (Standard Webhooks, signed).
    /// Implies `Prefer: respond-async`.
    #[schema(format = "uri", max_length = 2048)]
    pub callback_url: Option<String>,
}

/// `?mode=`: `async` is the same as `Prefer: respond-async`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckoutMode {
    Sync,
    Async,
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

/// RFC 7240 `Prefer: wait=N`: the client's bound on how long to wait, in
/// seconds. Any number of digits is accepted and saturates (the caller
/// clamps it to the longest wait it serves); anything else is ignored, as
/// RFC 7240 asks of a preference that cannot be honoured.
fn preferred_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| seconds(v.trim().trim_matches('"')))?
        })
        .next()
}

/// Whole seconds, saturating at `u64::MAX` for longer digit strings.
fn seconds(digits: &str) -> Option<Duration> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Duration::from_secs(
        digits.parse::<u64>().unwrap_or(u64::MAX),
    ))
}

#[utoipa::path(post, path = "/orders/checkout/{order_id}", tag = "orders",
    description = "Pays the order and reserves its items. Plain: waits for the outcome (200, or 4xx \
        problem with `request_id` and `reason`). The wait (`CHECKOUT_TIMEOUT_MS`, 60 s) is long \
        enough that only an outage reaches it; then the answer is a 503 problem carrying the \
        accepted `request_id`, `Location` and `Retry-After`, never a guess. `Prefer: wait=N` \
        bounds the wait instead and gets a 202 with the pending record. `Prefer: respond-async`, \
        `?mode=async` or a `callback_url`: 202 at once.",
    params(("order_id" = String, Path, min_length = 1, max_length = 128, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"),
        ("mode" = Option<CheckoutMode>, Query),
        ("callback_url" = Option<String>, Query, format = "uri", max_length = 2048,
            description = "Webhook for the final record; implies async"),
        ("Prefer" = Option<String>, Header, description = "RFC 7240: `respond-async` (202 at \
            once), `wait=N` (seconds a plain checkout waits before answering 202 with the pending \
            record)")),
    request_body(content = Option<CheckoutBody>, content_type = "application/json"),
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
    let prefer_async = prefers_async(&headers);
    let async_mode = match query.mode.as_deref() {
        None | Some("sync") => prefer_async,
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
    // A preferred wait is at most the plain checkout's (`CHECKOUT_TIMEOUT_MS`):
    // no header may hold a connection longer, or overflow the deadline.
    let prefer_wait = preferred_wait(&headers).map(|w| w.min(s.settings.checkout_timeout));
    let deadline = Instant::now() + prefer_wait.unwrap_or(s.settings.checkout_timeout);

    // Refused before acceptance while the streams are nearly full: the
    // client retries later (503 + Retry-After) and nothing was accepted.
    if s.backlog.is_full() {
        s.backlog.refused();
        return Err(ApiError::Unavailable {
            detail: "too much work in flight; the checkout was not accepted, try again later"
                .into(),
            cause: None,
        });
    }
    let new = NewRecord::new(order_id, callback.map(String::from));
    let request_id = new.request_id;
    let waiter = (!async_mode).then(|| s.requests.watch(request_id));
    let record = new.record();
    s.requests.accept(new, deadline).await.map_err(|e| {
        // Nothing was accepted: the client may simply try again.
        ApiError::unavailable("cannot accept the checkout now", e)
    })?;
    tracing::debug!(%request_id, order_id = %record.order_id, async_mode, "checkout accepted");
    let mut response = match waiter {
        None => accepted(&record),
        Some(waiter) => {
            let record = s.requests.wait_final(record, deadline, waiter).await;
            match record.progress {
                Progress::Final(Verdict::Succeeded) => {
                    (StatusCode::OK, Json(&record)).into_response()
                }
                Progress::Final(Verdict::Failed(reason)) => failed(&record, reason),
                // The client bounded the wait itself (RFC 7240): the record.
                Progress::Pending if prefer_wait.is_some() => accepted(&record),
                // Only an outage outlasts the default wait: say so, and
                // where the outcome will be.
                Progress::Pending => outcome_unknown(&record),
            }
        }
    };
    let h = response.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Prefer"));
    if async_mode && prefer_async {
        h.insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
    }
    Ok(response)
}

fn location(record: &RequestRecord) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("/requests/{}", record.request_id)).ok()
}

fn accepted(record: &RequestRecord) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(record)).into_response();
    let h = response.headers_mut();
    if let Some(location) = location(record) {
        h.insert(header::LOCATION, location);
    }
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// An accepted checkout whose outcome did not arrive within the wait: a
/// dependency is down. The checkout goes on; the record tells the outcome.
fn outcome_unknown(record: &RequestRecord) -> Response {
    let mut extensions = serde_json::Map::new();
    extensions.insert("request_id".into(), json!(record.request_id));
    let mut response = runtime::http::problem::response(
        StatusCode::SERVICE_UNAVAILABLE,
        "checkout-outcome-pending",
        "the checkout was accepted but its outcome is not known yet; \
         poll the request record at the Location",
        extensions,
    );
    let h = response.headers_mut();
    if let Some(location) = location(record) {
        h.insert(header::LOCATION, location);
    }
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// A failed checkout as a 4xx problem document carrying the record.
fn failed(record: &RequestRecord, reason: FailureReason) -> Response {
    let status = match reason {
        FailureReason::OrderNotFound => StatusCode::NOT_FOUND,
        FailureReason::InvalidOrder => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::CONFLICT,
    };
    let reason = reason.as_str();
    let slug = format!("checkout-{}", reason.replace('_', "-"));
    let mut extensions = serde_json::Map::new();
    extensions.insert("request_id".into(), json!(record.request_id));
    extensions.insert("reason".into(), json!(reason));
    runtime::http::problem::response(
        status,
        &slug,
        &format!("checkout failed: {}", reason.replace('_', " ")),
        extensions,
    )
}

#[derive(Debug, Deserialize, Default)]
pub struct RecordQuery {
    wait: Option<String>,
}

#[utoipa::path(get, path = "/requests/{request_id}", tag = "requests",
    params(("request_id" = uuid::Uuid, Path),
        ("wait" = Option<u64>, Query, description = "Long-poll up to this many \
            seconds until the record is final; more than 30 (any number of digits) is taken as 30")),
    responses((status = 200, description = "The record", body = RequestRecord,
        headers(("Retry-After" = u64, description = "While pending: seconds before polling again")))))]
async fn get_request(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Query(query): Query<RecordQuery>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("request {raw} not found"));
    let request_id = Uuid::parse_str(&raw).map_err(|_| not_found())?;
    // Longer waits than the maximum (any number of digits) are clamped to it.
    let wait = match query.wait.as_deref() {
        None | Some("") => 0,
        Some(w) => seconds(w)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "wait must be a number of seconds (0 to {MAX_WAIT_SECS})"
                ))
            })?
            .as_secs(),
    }
    .min(MAX_WAIT_SECS);
    let deadline = Instant::now() + Duration::from_secs(wait).max(READ_PATIENCE);
    // Registered before the read: a record that becomes final in between
    // still wakes us.
    let waiter = (wait > 0).then(|| s.requests.watch(request_id));
    // A short database outage delays the answer rather than failing it.
    let mut delay = Duration::from_millis(50);
    let record = loop {
        match s.requests.get(request_id).await {
            Ok(found) => break found.ok_or_else(not_found)?,
            Err(e) if Instant::now() + delay >= deadline => return Err(e.into()),
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    };
    let record = match waiter {
        Some(waiter) => {
            let until = Instant::now() + Duration::from_secs(wait);
            let record = s.requests.wait_final(record, until, waiter).await;
            if record.is_final() {
                record
            } else {
                // This replica may have missed the saga's end while it
                // waited: read once more, asking order-svc if need be.
                match s.requests.get(request_id).await {
                    Ok(Some(fresh)) => fresh,
                    _ => record,
                }
            }
        }
        None => record,
    };
    let mut response = Json(&record).into_response();
    if !record.is_final() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

/// How long a read of a record keeps trying while the database is down.
const READ_PATIENCE: Duration = Duration::from_secs(10);

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
        assert_eq!(preferred_wait(&h), Some(Duration::from_secs(10)));
        h.insert(
            "prefer",
            HeaderValue::from_static("respond-async, Wait=\"3\""),
        );
        assert_eq!(preferred_wait(&h), Some(Duration::from_secs(3)));
        h.insert("prefer", HeaderValue::from_static("wait=soon"));
        assert_eq!(preferred_wait(&h), None);
        h.insert("prefer", HeaderValue::from_static("wait=-1"));
        assert_eq!(preferred_wait(&h), None);
        // Too many digits for a u64: the longest wait, which the handler clamps.
        h.insert(
            "prefer",
            HeaderValue::from_static("wait=18446744073709551616000"),
        );
        assert_eq!(preferred_wait(&h), Some(Duration::from_secs(u64::MAX)));
    }
}
