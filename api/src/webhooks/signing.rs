//! Standard Webhooks signing and verification
//! (<https://www.standardwebhooks.com>), on the specification's own crate.
//!
//! Headers: `webhook-id` (the same for every retry of one event),
//! `webhook-timestamp` (Unix seconds of the attempt) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`). During a secret
//! rotation the sender signs with every configured secret, space-separated,
//! and a receiver accepts any signature it can verify.
//!
//! A receiver verifies a delivery with [`verify`]:
//!
//! ```
//! # let (secret, body, headers) = api::webhooks::signing::example();
//! api::webhooks::signing::verify(&secret, &body, &headers).expect("authentic");
//! ```

use standardwebhooks::Webhook;
pub use standardwebhooks::{
    WebhookError, HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP,
};

/// Signs with one or more `whsec_<base64>` secrets.
pub struct Signer {
    secrets: Vec<Webhook>,
}

impl Signer {
    /// `secrets`: `whsec_...` values separated by spaces or commas; the
    /// first is the current one, the others are kept during rotation.
    pub fn new(secrets: &str) -> Result<Self, WebhookError> {
        let secrets = secrets
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(Webhook::new)
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() {
            return Err(WebhookError::InvalidHeader("no webhook secret configured"));
        }
        Ok(Self { secrets })
    }

    /// The `webhook-signature` header value for this attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<String, WebhookError> {
        let signatures = self
            .secrets
            .iter()
            .map(|s| s.sign(id, timestamp, body))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(signatures.join(" "))
    }
}

/// Verifies a delivery: the signature matches `secret` and the timestamp is
/// within five minutes of now.
pub fn verify(secret: &str, body: &[u8], headers: &http::HeaderMap) -> Result<(), WebhookError> {
    Webhook::new(secret)?.verify(body, headers)
}

/// A signed example delivery (for the documentation test above).
#[doc(hidden)]
pub fn example() -> (String, Vec<u8>, http::HeaderMap) {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
    let body = br#"{"type":"checkout.succeeded"}"#.to_vec();
    let ts = chrono::Utc::now().timestamp();
    let mut headers = http::HeaderMap::new();
    let sig = Signer::new(&secret)
        .and_then(|s| s.sign("msg_1", ts, &body))
        .unwrap_or_default();
    for (k, v) in [
        (HEADER_WEBHOOK_ID, "msg_1".to_owned()),
        (HEADER_WEBHOOK_TIMESTAMP, ts.to_string()),
        (HEADER_WEBHOOK_SIGNATURE, sig),
    ] {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    }
    (secret, body, headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_signs_with_every_secret() {
        let (old, body, mut headers) = example();
        let new = "whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQgZm9yIHRlc3Rz";
        let ts: i64 = headers[HEADER_WEBHOOK_TIMESTAMP]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("number");
        let both = Signer::new(&format!("{new} {old}")).expect("secrets");
        let sig = both.sign("msg_1", ts, &body).expect("sign");
        assert_eq!(sig.matches("v1,").count(), 2);
        headers.insert(
            HEADER_WEBHOOK_SIGNATURE,
            http::HeaderValue::from_str(&sig).expect("header"),
        );
        assert!(verify(new, &body, &headers).is_ok(), "new secret verifies");
        assert!(verify(&old, &body, &headers).is_ok(), "old secret verifies");
        let other = "whsec_b3RoZXIgc2VjcmV0IG5vYm9keSBoYXM=";
        assert!(verify(other, &body, &headers).is_err());
        assert!(verify(new, b"tampered", &headers).is_err());
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(Signer::new("").is_err());
        assert!(Signer::new("whsec_%%%").is_err());
    }
}
