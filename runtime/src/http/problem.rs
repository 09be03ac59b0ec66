//! RFC 9457 problem documents, shared by every binary's HTTP answers.
//!
//! `type` is always `about:blank`: we publish no documentation site that a
//! problem type URI could resolve to, and RFC 9457 §4.2.1 makes
//! `about:blank` mean "no more than the HTTP status says", so `title` is the
//! status phrase ("Conflict", "Service Unavailable"). What went wrong in
//! particular is in `detail` (for people) and `code` (a stable slug for
//! programs, e.g. `checkout-insufficient-stock`).
//!
//! [`normalize`] turns every other 4xx/5xx (axum's 405, 413 and extractor
//! rejections, timeouts) into a problem document too, and gives every 503 a
//! `Retry-After`.

use axum::{
    body::{to_bytes, Body},
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};

pub const CONTENT_TYPE: &str = "application/problem+json";

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 2;

/// Longest non-problem error body [`normalize`] keeps as `detail`.
const MAX_DETAIL: usize = 4096;

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: String,
    /// The HTTP status phrase.
    #[schema(example = "Conflict")]
    pub title: String,
    #[schema(example = 409, minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong, for people.
    #[schema(example = "checkout failed: insufficient stock")]
    pub detail: String,
    /// What went wrong, for programs: a stable slug.
    #[schema(example = "checkout-insufficient-stock")]
    pub code: String,
    /// The checkout's request record, when the problem is about one
    /// (`GET /requests/{request_id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<uuid::Uuid>,
    /// Why the checkout failed (`insufficient_stock`, `insufficient_credit`,
    /// `order_not_found`, ...), when the problem is a failed checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A problem answer with extension members (RFC 9457 §3.2).
pub fn response(
    status: StatusCode,
    code: &str,
    detail: &str,
    extensions: serde_json::Map<String, serde_json::Value>,
) -> Response {
    let mut body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    if let Some(map) = body.as_object_mut() {
        for (k, v) in extensions {
            map.entry(k).or_insert(v);
        }
    }
    let mut response = (status, Json(body)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

/// The stable `code` of a status when nothing more specific is known.
pub fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad-request",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::REQUEST_TIMEOUT => "request-timeout",
        StatusCode::SERVICE_UNAVAILABLE => "service-unavailable",
        StatusCode::GATEWAY_TIMEOUT => "gateway-timeout",
        s if s.is_server_error() => "internal",
        _ => "client-error",
    }
}

/// Middleware: every 4xx/5xx leaves as a problem document, and every 503
/// with a `Retry-After`. Answers that already are problem documents pass
/// unchanged; any other error body becomes the `detail`; headers such as
/// `Allow` on a 405 are kept.
pub async fn normalize(req: Request, next: Next) -> Response {
    let answer = next.run(req).await;
    let status = answer.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return answer;
    }
    let is_problem = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(CONTENT_TYPE.as_bytes()));
    if is_problem {
        let mut answer = answer;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            answer
                .headers_mut()
                .entry(header::RETRY_AFTER)
                .or_insert(HeaderValue::from(RETRY_AFTER_SECS));
        }
        return answer;
    }
    let (mut parts, body) = answer.into_parts();
    let text = to_bytes(body, MAX_DETAIL)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|t| !t.is_empty());
    // axum adds `Allow` to a 405 only after the route's layers, so it
    // cannot be quoted here; it is kept on the answer all the same.
    let detail = text.unwrap_or_else(|| match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "this method is not allowed here (see the Allow header)".to_owned()
        }
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    });
    let fresh = response(status, code_of(status), &detail, Default::default());
    let (fresh_parts, body) = fresh.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in fresh_parts.headers.iter() {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{routing::get, Router};
    use tower::ServiceExt;

    async fn call(app: Router, method: &str, uri: &str) -> (Response, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let res = app.oneshot(req).await.expect("infallible");
        let (parts, body) = res.into_parts();
        let bytes = to_bytes(body, 1 << 20).await.expect("body");
        let json = serde_json::from_slice(&bytes).expect("a JSON body");
        (Response::from_parts(parts, Body::empty()), json)
    }

    fn app() -> Router {
        Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/down",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "db down") }),
            )
            .layer(axum::middleware::from_fn(normalize))
    }

    #[tokio::test]
    async fn method_not_allowed_becomes_a_problem_with_allow() {
        let (res, body) = call(app(), "DELETE", "/ok").await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert!(res.headers().contains_key(header::ALLOW));
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["title"], "Method Not Allowed");
        assert_eq!(body["status"], 405);
        assert_eq!(body["code"], "method-not-allowed");
        assert_eq!(res.headers()[header::ALLOW], "GET,HEAD");
        let parsed: Problem = serde_json::from_value(body).expect("a Problem");
        assert!(parsed.detail.contains("Allow"), "{}", parsed.detail);
    }

    #[tokio::test]
    async fn plain_text_errors_keep_their_text_and_503_gets_retry_after() {
        let (res, body) = call(app(), "GET", "/down").await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
        assert_eq!(body["detail"], "db down");
        assert_eq!(body["title"], "Service Unavailable");
    }

    #[tokio::test]
    async fn successes_pass_unchanged() {
        let app = app();
        let req = Request::builder()
            .uri("/ok")
            .body(Body::empty())
            .expect("request");
        let res = app.oneshot(req).await.expect("infallible");
        assert_eq!(res.status(), StatusCode::OK);
        let bytes = to_bytes(res.into_body(), 1024).await.expect("body");
        assert_eq!(&bytes[..], b"fine");
    }
}
