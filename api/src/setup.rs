//! Who may call the setup endpoints (`batch_init`): everyone (`open`, the
//! default, what `make up` and the benchmark harness need), holders of a
//! token (`token`), or nobody (`off`). `SETUP_ENDPOINTS`, `SETUP_TOKEN`;
//! see the README's *Configuration*.

use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use runtime::config::{ConfigError, Vars};
use subtle::ConstantTimeEq;

use crate::problem::problem;

/// The setup endpoints' path prefixes (the router matches the raw path, so
/// a prefix test sees exactly what it would route).
pub const PATHS: [&str; 3] = [
    "/stock/batch_init/",
    "/payment/batch_init/",
    "/orders/batch_init/",
];

/// A token shorter than this is refused at start-up: it would be guessable.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Open,
    /// Any of these bearer tokens (several during a rotation).
    Token(Vec<String>),
    /// The endpoints answer 404, as if they did not exist.
    Off,
}

impl Access {
    /// `SETUP_ENDPOINTS` (`open`, `token`, `off`; default `token` when
    /// `SETUP_TOKEN` is set, else `open`) and `SETUP_TOKEN` (space-separated
    /// tokens, each at least [`MIN_TOKEN_LEN`] characters).
    pub fn load(vars: &Vars) -> Result<Self, ConfigError> {
        let tokens: Vec<String> = vars
            .get("SETUP_TOKEN")?
            .map(|t| t.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let invalid = |name: &str, value: &str, reason: &str| ConfigError::Invalid {
            name: name.into(),
            value: value.into(),
            reason: reason.into(),
        };
        if let Some(short) = tokens.iter().find(|t| t.len() < MIN_TOKEN_LEN) {
            return Err(invalid(
                "SETUP_TOKEN",
                &"*".repeat(short.len()),
                &format!("each token must be at least {MIN_TOKEN_LEN} characters"),
            ));
        }
        let mode = vars.get("SETUP_ENDPOINTS")?;
        match (mode.as_deref(), tokens.is_empty()) {
            (None, true) | (Some("open"), true) => Ok(Access::Open),
            (Some("open"), false) => Err(invalid(
                "SETUP_ENDPOINTS",
                "open",
                "SETUP_TOKEN is set but would be ignored: use token (or unset SETUP_TOKEN)",
            )),
            (None, false) | (Some("token"), false) => Ok(Access::Token(tokens)),
            (Some("token"), true) => Err(invalid("SETUP_ENDPOINTS", "token", "needs SETUP_TOKEN")),
            (Some("off"), _) => Ok(Access::Off),
            (Some(other), _) => Err(invalid(
                "SETUP_ENDPOINTS",
                other,
                "must be open, token or off",
            )),
        }
    }

    /// Whether a request with this `Authorization` header may pass.
    fn admits(&self, authorization: Option<&HeaderValue>) -> Verdict {
        match self {
            Access::Open => Verdict::Pass,
            Access::Off => Verdict::Hidden,
            Access::Token(tokens) => {
                let given = authorization
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim());
                match given {
                    // Every token is compared, each in constant time.
                    Some(given) => {
                        let matched = tokens.iter().fold(0u8, |hit, t| {
                            hit | t.as_bytes().ct_eq(given.as_bytes()).unwrap_u8()
                        });
                        if matched == 1 {
                            Verdict::Pass
                        } else {
                            Verdict::Refused("the setup token is wrong")
                        }
                    }
                    None => Verdict::Refused(
                        "setup endpoints need `Authorization: Bearer <SETUP_TOKEN>`",
                    ),
                }
            }
        }
    }
}

enum Verdict {
    Pass,
    Hidden,
    Refused(&'static str),
}

/// Middleware over the whole API, outside the `Idempotency-Key` layer so
/// that a refused call leaves no key behind.
pub async fn gate(
    State(access): State<std::sync::Arc<Access>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if !PATHS.iter().any(|p| path.starts_with(p)) {
        return next.run(req).await;
    }
    match access.admits(req.headers().get(header::AUTHORIZATION)) {
        Verdict::Pass => next.run(req).await,
        Verdict::Hidden => problem(StatusCode::NOT_FOUND, "not-found", "no such endpoint"),
        Verdict::Refused(why) => {
            let mut r = problem(StatusCode::UNAUTHORIZED, "unauthorized", why);
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"setup\""),
            );
            r.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Access, ConfigError> {
        let mut all = vec![("SETUP_ENDPOINTS", ""), ("SETUP_TOKEN", "")];
        all.extend_from_slice(pairs);
        Access::load(&Vars::process().with(all))
    }

    const T: &str = "0123456789abcdef-token";

    #[test]
    fn modes_and_their_defaults() {
        assert_eq!(load(&[]).unwrap(), Access::Open);
        assert_eq!(load(&[("SETUP_ENDPOINTS", "off")]).unwrap(), Access::Off);
        assert_eq!(
            load(&[("SETUP_TOKEN", T)]).unwrap(),
            Access::Token(vec![T.into()])
        );
        let two = format!("{T} {T}-new");
        assert_eq!(
            load(&[("SETUP_ENDPOINTS", "token"), ("SETUP_TOKEN", &two)]).unwrap(),
            Access::Token(vec![T.into(), format!("{T}-new")])
        );
    }

    #[test]
    fn contradictions_and_weak_tokens_stop_start_up() {
        for bad in [
            vec![("SETUP_ENDPOINTS", "token")],
            vec![("SETUP_ENDPOINTS", "open"), ("SETUP_TOKEN", T)],
            vec![("SETUP_ENDPOINTS", "closed")],
            vec![("SETUP_TOKEN", "short")],
        ] {
            let e = load(&bad).expect_err(&format!("{bad:?} accepted"));
            assert!(e.to_string().contains("SETUP_"), "{e}");
            assert!(
                !e.to_string().contains("short"),
                "the token is not echoed: {e}"
            );
        }
    }

    #[test]
    fn only_a_configured_bearer_token_passes() {
        let access = Access::Token(vec![T.into(), "another-token-0123".into()]);
        let pass = |v: &str| {
            matches!(
                access.admits(Some(&HeaderValue::from_str(v).unwrap())),
                Verdict::Pass
            )
        };
        assert!(pass(&format!("Bearer {T}")));
        assert!(pass(&format!("bearer {T}")));
        assert!(pass("Bearer another-token-0123"));
        assert!(!pass(&format!("Bearer {T}x")));
        assert!(!pass(&format!("Basic {T}")));
        assert!(!pass(T));
        assert!(matches!(access.admits(None), Verdict::Refused(_)));
        assert!(matches!(Access::Off.admits(None), Verdict::Hidden));
        assert!(matches!(Access::Open.admits(None), Verdict::Pass));
    }
}
