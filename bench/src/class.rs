//! How the harness counts an answer.

use api_client::Status;
use serde::{Deserialize, Serialize};

/// How the harness counts an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// 2xx: it happened.
    Success,
    /// 4xx: it did not happen, nothing changed.
    Business,
    /// 5xx, 1xx/3xx, timeouts, connection errors: outcome unknown.
    Error,
}

/// Classifies a synchronous answer. 2xx is success except 202, which a synchronous call must
/// never get (API.md: "a checkout must never answer … 202 … unless the client asked for
/// async"): it does not say whether anything happened, so it counts as an error.
pub fn classify(status: Status) -> Class {
    match status {
        Status::Http(202) => Class::Error,
        Status::Http(c) if (200..300).contains(&c) => Class::Success,
        Status::Http(c) if (400..500).contains(&c) => Class::Business,
        _ => Class::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(Status::Http(200)), Class::Success);
        assert_eq!(classify(Status::Http(204)), Class::Success);
        assert_eq!(classify(Status::Http(202)), Class::Error);
        assert_eq!(classify(Status::Http(400)), Class::Business);
        assert_eq!(classify(Status::Http(404)), Class::Business);
        assert_eq!(classify(Status::Http(409)), Class::Business);
        assert_eq!(classify(Status::Http(500)), Class::Error);
        assert_eq!(classify(Status::Http(503)), Class::Error);
        assert_eq!(classify(Status::Http(302)), Class::Error);
        assert_eq!(classify(Status::Timeout), Class::Error);
        assert_eq!(classify(Status::Connect), Class::Error);
        assert_eq!(Status::Http(404).key(), "404");
        assert_eq!(Status::Timeout.key(), "timeout");
    }
}
