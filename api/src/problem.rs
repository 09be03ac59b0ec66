//! Errors as RFC 9457 `application/problem+json` answers (the document's
//! shape, `type` and `title` rules: [`common::problem`]).
//!
//! Business refusals are 4xx; 5xx is kept for our own faults (a dependency
//! unreachable past every retry), as API.md requires.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use common::rpc::{CallError, Rejection};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The request was valid but the current state refuses it
    /// (insufficient stock or credit, order already paid).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A dependency did not answer in time or at all, past every retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Unavailable(_) => "service-unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// Renders a problem document with the given status; `slug` is its `code`.
pub fn problem(status: StatusCode, slug: &str, detail: &str) -> Response {
    problem_with(status, slug, detail, serde_json::Map::new())
}

/// A problem document with extension members (RFC 9457 §3.2).
pub fn problem_with(
    status: StatusCode,
    slug: &str,
    detail: &str,
    extensions: serde_json::Map<String, serde_json::Value>,
) -> Response {
    common::problem::response(status, slug, detail, extensions)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Internal(_) | ApiError::Unavailable(_)) {
            tracing::warn!(error = %self, "request failed");
        }
        problem(self.status(), self.slug(), &self.to_string())
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r.code {
            400 => ApiError::BadRequest(r.message),
            404 => ApiError::NotFound(r.message),
            409 => ApiError::Conflict(r.message),
            422 => ApiError::Unprocessable(r.message),
            503 => ApiError::Unavailable(r.message),
            _ => ApiError::Internal(r.message),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Rejected(r) => r.into(),
            CallError::Unavailable(_) | CallError::Timeout(_) | CallError::Transport { .. } => {
                ApiError::Unavailable(e.to_string())
            }
            CallError::Protocol { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<common::db::DbError> for ApiError {
    fn from(e: common::db::DbError) -> Self {
        tracing::error!(error = %e, "api database failure");
        ApiError::Unavailable("database unavailable".into())
    }
}
