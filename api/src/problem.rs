//! Errors as RFC 9457 `application/problem+json` answers (the document's
//! shape, `type` and `title` rules: [`runtime::http::problem`]).
//!
//! Business refusals are 4xx; 5xx is kept for our own faults (a dependency
//! unreachable past every retry), as API.md requires.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use contracts::endpoint::{Refusal, Rejection};
use runtime::rpc::CallError;

/// Why a request failed. Refusals carry the text the client reads; faults
/// (`Unavailable`, `Internal`) carry their cause, which goes to the log
/// whole while the client reads only the detail.
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
    #[error("{detail}")]
    Unavailable {
        detail: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A call whose outcome is unknown: it timed out or broke after it may
    /// have reached the service, so the change may or may not have been
    /// applied. Answered 503 and marked [`OutcomeUnknown`], so that an
    /// `Idempotency-Key` is kept (and this answer replayed), never released.
    #[error("{detail}")]
    OutcomeUnknown {
        detail: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("{detail}")]
    Internal {
        detail: String,
        #[source]
        cause: Option<Cause>,
    },
}

pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Response extension: this answer is a fault after which the request may
/// or may not have taken effect (see [`ApiError::OutcomeUnknown`]).
#[derive(Debug, Clone, Copy)]
pub struct OutcomeUnknown;

impl ApiError {
    /// A dependency failed; `cause` is logged, `detail` shown.
    pub fn unavailable(
        detail: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ApiError::Unavailable {
            detail: detail.into(),
            cause: Some(Box::new(cause)),
        }
    }

    /// A fault of ours; `cause` is logged, `detail` shown.
    pub fn internal(
        detail: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ApiError::Internal {
            detail: detail.into(),
            cause: Some(Box::new(cause)),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable { .. } | ApiError::OutcomeUnknown { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// `error: cause: its cause: ...`, the whole chain on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// Renders a problem document with the given status; `slug` is its `code`.
pub fn problem(status: StatusCode, slug: &str, detail: &str) -> Response {
    runtime::http::problem::response(status, slug, detail, serde_json::Map::new())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(
            self,
            ApiError::Internal { .. }
                | ApiError::Unavailable { .. }
                | ApiError::OutcomeUnknown { .. }
        ) {
            tracing::warn!(error = %chain(&self), "request failed");
        }
        let unknown = matches!(self, ApiError::OutcomeUnknown { .. });
        let mut response = problem(
            self.status(),
            if unknown {
                "outcome-unknown"
            } else {
                runtime::http::problem::code_of(self.status())
            },
            &self.to_string(),
        );
        if unknown {
            response.extensions_mut().insert(OutcomeUnknown);
        }
        response
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r.kind {
            Refusal::Invalid => ApiError::BadRequest(r.message),
            Refusal::NotFound => ApiError::NotFound(r.message),
            Refusal::Conflict => ApiError::Conflict(r.message),
            Refusal::Unprocessable => ApiError::Unprocessable(r.message),
            Refusal::Unavailable => ApiError::Unavailable {
                detail: r.message,
                cause: None,
            },
            Refusal::Internal => ApiError::Internal {
                detail: r.message,
                cause: None,
            },
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Rejected(r) => r.into(),
            // Nobody took the request: nothing happened.
            CallError::Unavailable(_) => ApiError::unavailable(e.to_string(), e),
            // The request may have been applied before the answer was lost.
            CallError::Timeout(_) | CallError::Transport { .. } | CallError::Protocol { .. } => {
                ApiError::OutcomeUnknown {
                    detail: format!(
                        "{e}; the change may or may not have been applied: read the state \
                         before sending it again under a new Idempotency-Key"
                    ),
                    cause: Some(Box::new(e)),
                }
            }
        }
    }
}

impl From<runtime::db::DbError> for ApiError {
    fn from(e: runtime::db::DbError) -> Self {
        match e {
            // Not an outage: a stored value names nothing known (logged at
            // error where it was read). Never answered as some other state.
            runtime::db::DbError::Unreadable(_) => {
                ApiError::internal("a stored record cannot be read", e)
            }
            runtime::db::DbError::Inconsistent(_) => {
                ApiError::internal("stored records contradict each other", e)
            }
            e => ApiError::unavailable("database unavailable", e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_keep_their_cause_and_show_only_the_detail() {
        let io = std::io::Error::other("connection refused");
        let e = ApiError::unavailable("database unavailable", io);
        assert_eq!(e.to_string(), "database unavailable");
        assert_eq!(chain(&e), "database unavailable: connection refused");
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn an_unreadable_stored_value_is_an_internal_fault_not_an_outage() {
        let bad = contracts::messages::Unparsable::new("request status", "done");
        let e = ApiError::from(runtime::db::DbError::from(bad));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.to_string(), "a stored record cannot be read");
        assert!(
            chain(&e).contains(r#"unknown request status "done""#),
            "{}",
            chain(&e)
        );
    }

    #[test]
    fn a_lost_answer_is_marked_outcome_unknown() {
        let e = ApiError::from(CallError::Timeout("payment"));
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.extensions().get::<OutcomeUnknown>().is_some());
        let r = ApiError::from(CallError::Unavailable("payment")).into_response();
        assert!(r.extensions().get::<OutcomeUnknown>().is_none());
    }

    #[test]
    fn refusals_map_to_their_status() {
        for (kind, status) in [
            (Refusal::Invalid, StatusCode::BAD_REQUEST),
            (Refusal::NotFound, StatusCode::NOT_FOUND),
            (Refusal::Conflict, StatusCode::CONFLICT),
            (Refusal::Unprocessable, StatusCode::UNPROCESSABLE_ENTITY),
            (Refusal::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (Refusal::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            let e = ApiError::from(Rejection::new(kind, "why"));
            assert_eq!(e.status(), status, "{kind:?}");
            assert_eq!(
                e.status().as_u16(),
                kind.code(),
                "the wire code is the HTTP status"
            );
        }
    }
}
