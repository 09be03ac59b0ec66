//! The `Idempotency-Key` header's value, and what tells two requests
//! under one key apart.

use axum::http::{Method, Uri};
use sha2::{Digest, Sha256};

use crate::problem::ApiError;

pub const HEADER: &str = "idempotency-key";

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
        return Err(not_printable());
    }
    Ok(key)
}

/// The refusal of a key outside printable ASCII or too long.
pub(super) fn not_printable() -> ApiError {
    ApiError::BadRequest(format!(
        "Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters"
    ))
}

/// What a repeat must match: method, path and query, body.
pub(super) fn fingerprint(method: &Method, uri: &Uri, body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(method.as_str());
    h.update([0]);
    h.update(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    h.update([0]);
    h.update(body);
    h.finalize().to_vec()
}

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
        let u1: Uri = "/orders/checkout/1".parse().expect("uri");
        let u2: Uri = "/orders/checkout/2".parse().expect("uri");
        let a = fingerprint(&Method::POST, &u1, b"");
        assert_eq!(a, fingerprint(&Method::POST, &u1, b""));
        assert_ne!(a, fingerprint(&Method::POST, &u2, b""));
        assert_ne!(a, fingerprint(&Method::POST, &u1, b"{}"));
    }
}
