//! Why a delivery attempt failed, as a coarse class: what the request record's
//! `webhook.last_error` and the attempt rows show. Never the receiver's body
//! or headers, nor an address: a client must not learn what answers inside
//! the network through its callback.

use std::error::Error as _;

use super::policy::{BlockedAddress, DnsFailed, Refused};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The receiver answered 3xx (redirects are not followed).
    Http3xx,
    Http4xx,
    Http5xx,
    /// Any other non-2xx status (1xx).
    HttpOther,
    /// No answer within `WEBHOOK_TIMEOUT_MS`.
    Timeout,
    /// The TCP connection could not be made.
    ConnectError,
    /// The TLS handshake failed (certificate, protocol).
    TlsError,
    /// The host does not resolve (in time).
    DnsError,
    /// The host is or resolves to an internal address (SSRF guard).
    BlockedAddress,
    /// The host is not allowed by `WEBHOOK_ALLOW_HOSTS`/`WEBHOOK_DENY_HOSTS`
    /// (the lists changed since the checkout).
    BlockedHost,
    /// Anything else on the way (e.g. the connection closed mid-answer).
    RequestError,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http3xx => "http_3xx",
            Self::Http4xx => "http_4xx",
            Self::Http5xx => "http_5xx",
            Self::HttpOther => "http_other",
            Self::Timeout => "timeout",
            Self::ConnectError => "connect_error",
            Self::TlsError => "tls_error",
            Self::DnsError => "dns_error",
            Self::BlockedAddress => "blocked_address",
            Self::BlockedHost => "blocked_host",
            Self::RequestError => "request_error",
        }
    }

    /// The class of a status; `None` for 2xx (delivered).
    pub fn from_status(status: u16) -> Option<Self> {
        match status {
            200..=299 => None,
            300..=399 => Some(Self::Http3xx),
            400..=499 => Some(Self::Http4xx),
            500..=599 => Some(Self::Http5xx),
            _ => Some(Self::HttpOther),
        }
    }

    /// The class of a callback URL the policy refuses now.
    pub fn from_refused(refused: &Refused) -> Self {
        match refused {
            Refused::Internal(_) => Self::BlockedAddress,
            Refused::Unresolvable(_) | Refused::DnsTimeout(..) => Self::DnsError,
            Refused::Host(_) => Self::BlockedHost,
            Refused::Malformed(_) | Refused::Scheme | Refused::TooLong => Self::RequestError,
        }
    }

    /// The class of a failed request, from the error's causes.
    pub fn from_reqwest(e: &reqwest::Error) -> Self {
        let mut source = e.source();
        while let Some(cause) = source {
            if cause.is::<BlockedAddress>() {
                return Self::BlockedAddress;
            }
            if cause.is::<DnsFailed>() {
                return Self::DnsError;
            }
            if cause.is::<rustls::Error>() {
                return Self::TlsError;
            }
            // An io::Error's source() skips the error it wraps (tokio-rustls
            // wraps rustls' error in one, hyper-util that in another).
            source = match cause.downcast_ref::<std::io::Error>() {
                Some(io) => io
                    .get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static)),
                None => cause.source(),
            };
        }
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_connect() {
            Self::ConnectError
        } else {
            Self::RequestError
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_classes() {
        assert_eq!(Failure::from_status(204), None);
        assert_eq!(Failure::from_status(302), Some(Failure::Http3xx));
        assert_eq!(Failure::from_status(404), Some(Failure::Http4xx));
        assert_eq!(Failure::from_status(503), Some(Failure::Http5xx));
        assert_eq!(Failure::from_status(101), Some(Failure::HttpOther));
        assert_eq!(
            Failure::from_refused(&Refused::Internal("10.0.0.1".into())).as_str(),
            "blocked_address"
        );
        assert_eq!(
            Failure::from_refused(&Refused::DnsTimeout("x".into(), 2000)).as_str(),
            "dns_error"
        );
    }

    /// A plain-HTTP server spoken to over https.
    #[tokio::test]
    async fn a_failed_handshake_is_a_tls_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let e = reqwest::Client::builder()
            .use_rustls_tls()
            .build()
            .expect("client")
            .get(format!("https://{addr}/"))
            .send()
            .await
            .expect_err("no TLS there");
        assert_eq!(Failure::from_reqwest(&e), Failure::TlsError, "{e:?}");
    }

    /// A name that resolves only to internal addresses, at connect time
    /// (as after a DNS rebinding).
    #[tokio::test]
    async fn a_resolver_refusal_is_a_blocked_address() {
        let policy = super::super::policy::Policy::default();
        let e = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(super::super::policy::GuardedResolver::shared(&policy))
            .build()
            .expect("client")
            .get("http://localhost:9/")
            .send()
            .await
            .expect_err("refused");
        assert_eq!(Failure::from_reqwest(&e), Failure::BlockedAddress, "{e:?}");
    }
}
