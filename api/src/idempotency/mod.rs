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

mod key;
mod store;

use std::time::Duration;

use axum::{
    body::{to_bytes, Body},
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::Value;

pub use key::{parse_key, HEADER, MAX_KEY};
pub use store::EXPIRED;

use crate::{
    body::MAX_BODY,
    problem::{ApiError, OutcomeUnknown},
    state::AppState,
};
use store::{Answer, Claim};

/// Response headers worth replaying.
const KEPT_HEADERS: &[&str] = &["content-type", "location", "retry-after"];

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
    let key = parse_key(raw.to_str().map_err(|_| key::not_printable())?)?;
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(format!("body larger than {MAX_BODY} bytes")))?;
    let print = key::fingerprint(&parts.method, &parts.uri, &body);
    // A claim outlives the longest synchronous checkout, so that only a
    // crashed request's claim is ever taken over.
    let lease = s.settings.checkout_timeout + Duration::from_secs(30);

    match store::claim(&s.pool, &key, &print, lease, s.settings.idempotency_ttl).await? {
        Claim::Fresh => {}
        Claim::Answered(answer) => return Ok(replay(answer)),
        Claim::Interrupted => return Ok(interrupted()),
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
        store::release(&s.pool, &key).await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, 4 * MAX_BODY)
        .await
        .map_err(|e| ApiError::internal("cannot buffer the response", e))?;
    store::save(&s.pool, &key, status.as_u16(), kept(&parts.headers), &body).await?;
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// The kept headers of an answer, as stored.
fn kept(headers: &HeaderMap) -> Value {
    Value::Object(
        KEPT_HEADERS
            .iter()
            .filter_map(|h| {
                headers
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| (h.to_string(), Value::String(v.to_owned())))
            })
            .collect(),
    )
}

/// A stored answer, marked as replayed.
fn replay(answer: Answer) -> Response {
    let mut response = Response::new(Body::from(answer.body.unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(answer.status as u16).unwrap_or(StatusCode::OK);
    if let Some(Value::Object(map)) = answer.headers {
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
    response
}

/// The answer to a repeat of a request whose api died mid-request: it is
/// not run again, since it may have been applied.
fn interrupted() -> Response {
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
    response
}
