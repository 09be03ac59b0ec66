//! Errors as RFC 9457 `application/problem+json` answers.
//!
//! Business refusals are 4xx; 5xx is kept for our own faults (a dependency
//! unreachable past every retry), as API.md requires.

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use common::rpc::{CallError, Rejection};
use serde_json::json;

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
            ApiError::Unavailable(_) => "service-unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// Renders a problem document with the given status.
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
    let mut body = json!({
        "type": format!("/problems/{slug}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    if let Some(map) = body.as_object_mut() {
        map.extend(extensions);
    }
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    response
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
