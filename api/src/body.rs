//! Request bodies: at most [`MAX_BODY`] bytes, and JSON when there is one.
//!
//! Only the checkout reads a body (`{"callback_url": ...}`); a body of
//! another declared media type is refused with 415 rather than guessed at.

use axum::{
    extract::{DefaultBodyLimit, Request},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::problem::ApiError;

/// Larger bodies are refused with 413 (the Idempotency-Key layer keeps
/// bodies to replay, so they stay small).
pub const MAX_BODY: usize = 64 * 1024;

/// Bodies up to this size are read and dropped before a 413 (see [`check`]).
const DRAIN_MAX: usize = 1024 * 1024;

/// The limit for the body extractors.
pub fn limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_BODY)
}

/// `application/json` or any `+json` type (parameters such as `charset`
/// allowed).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Middleware: a request with a non-empty body must declare JSON (or
/// nothing) and fit [`MAX_BODY`], judged by its headers before anything
/// reads it.
pub async fn check(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = length.filter(|&n| n > MAX_BODY as u64) {
        // Read a moderately large body to its end first: answering while
        // the client is still sending makes the connection close under it,
        // and it sees a broken connection instead of the 413.
        if n <= DRAIN_MAX as u64 {
            let _ = axum::body::to_bytes(req.into_body(), DRAIN_MAX).await;
        }
        return ApiError::PayloadTooLarge(format!("body larger than {MAX_BODY} bytes"))
            .into_response();
    }
    let has_body = length
        .map(|n| n > 0)
        .unwrap_or_else(|| headers.contains_key(header::TRANSFER_ENCODING));
    if has_body {
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            let ok = ct.to_str().map(is_json).unwrap_or(false);
            if !ok {
                let shown = String::from_utf8_lossy(ct.as_bytes()).into_owned();
                return ApiError::UnsupportedMediaType(format!(
                    "request bodies are application/json, not {shown:?}"
                ))
                .into_response();
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "json",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
