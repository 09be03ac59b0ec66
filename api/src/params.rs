//! Path parameters: extraction with problem+json refusals, and strict
//! parsing of amounts.

use axum::{
    extract::{rejection::PathRejection, FromRequestParts},
    http::request::Parts,
};
use contracts::limits::Amount;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// `axum::extract::Path` whose rejection is a problem document.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e: PathRejection| ApiError::BadRequest(e.body_text()))
    }
}

/// Parses a non-negative 64-bit integer, explaining what is wrong otherwise.
pub fn amount(name: &str, raw: &str) -> Result<i64, ApiError> {
    use std::num::IntErrorKind;
    match raw.parse::<i64>() {
        Ok(v) if v >= 0 => Ok(v),
        Ok(_) => Err(ApiError::BadRequest(format!(
            "{name} must not be negative, got {raw}"
        ))),
        Err(e) => Err(ApiError::BadRequest(match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                format!("{name} does not fit a 64-bit integer: {raw}")
            }
            _ => format!("{name} must be a non-negative integer, got {raw:?}"),
        })),
    }
}

/// Parses a `batch_init` count: `min` to [`contracts::endpoint::MAX_BATCH`].
pub fn count(name: &str, raw: &str, min: i64) -> Result<i64, ApiError> {
    let v = amount(name, raw)?;
    Ok(contracts::endpoint::batch_range(name, v, min)?)
}

/// Parses a number and checks it against its documented bound (see
/// `contracts::limits`): `new` is the bounded type's constructor.
pub fn bounded<T>(
    name: &'static str,
    raw: &str,
    new: fn(&'static str, i64) -> Result<T, contracts::limits::OutOfBounds>,
) -> Result<T, ApiError> {
    new(name, amount(name, raw)?).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// An ID as given; only empty, absurdly long or control-character IDs are
/// refused. The length counts characters, as the document's `maxLength`
/// does; the document's `pattern` excludes the same control characters.
pub fn id<T: From<String>>(name: &str, raw: &str) -> Result<T, ApiError> {
    if raw.is_empty() || raw.chars().count() > 128 {
        return Err(ApiError::BadRequest(format!(
            "{name} must be 1 to 128 characters"
        )));
    }
    if raw.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "{name} must not contain control characters"
        )));
    }
    Ok(T::from(raw.to_owned()))
}

/// `{<id>}/{amount}`: an account (`name` its parameter) and an amount to
/// add or take, checked.
pub fn id_amount<T: From<String>>(
    name: &str,
    (id_raw, amount): (String, String),
) -> Result<(T, i64), ApiError> {
    let id = id(name, &id_raw)?;
    Ok((id, bounded("amount", &amount, Amount::new)?.get()))
}

/// The ID path parameters as the document shows them (what [`id`]
/// accepts), one type per name.
macro_rules! id_params {
    ($($(#[$doc:meta])* $name:ident: $field:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(utoipa::IntoParams)]
        #[into_params(parameter_in = Path)]
        pub struct $name {
            #[param(min_length = 1, max_length = 128, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$", example = "0")]
            pub $field: String,
        }
    )*};
}

id_params! {
    /// `{user_id}`.
    UserIdParam: user_id,
    /// `{item_id}`.
    ItemIdParam: item_id,
    /// `{order_id}`.
    OrderIdParam: order_id,
}

/// `{amount}` as the document shows it (what `contracts::limits::Amount`
/// accepts).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AmountParam {
    #[param(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    pub amount: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(amount("a", "0").ok(), Some(0));
        assert_eq!(amount("a", "9223372036854775807").ok(), Some(i64::MAX));
        for bad in ["-1", "9223372036854775808", "1.5", "abc", "", " 1", "1e3"] {
            assert!(
                matches!(amount("a", bad), Err(ApiError::BadRequest(_))),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn counts() {
        assert_eq!(count("n", "0", 0).ok(), Some(0));
        assert_eq!(count("n", "10000000", 0).ok(), Some(10_000_000));
        for (bad, min) in [("10000001", 0), ("0", 1), ("-1", 0), ("x", 0)] {
            assert!(
                matches!(count("n", bad, min), Err(ApiError::BadRequest(_))),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn bounds() {
        use contracts::limits::{Price, Quantity};
        assert_eq!(
            bounded("quantity", "1000000000", Quantity::new)
                .map(Quantity::get)
                .ok(),
            Some(1_000_000_000)
        );
        for bad in ["0", "1000000001", "9223372036854775807", "-1", "x"] {
            match bounded("quantity", bad, Quantity::new) {
                Err(ApiError::BadRequest(m)) => assert!(m.contains("quantity"), "{bad}: {m}"),
                _ => panic!("{bad:?} must be refused"),
            }
        }
        assert!(bounded("price", "0", Price::new).is_ok());
    }

    #[test]
    fn ids() {
        assert!(id::<String>("x", "").is_err());
        assert!(id::<String>("x", &"a".repeat(129)).is_err());
        assert!(
            id::<String>("x", &"µ".repeat(128)).is_ok(),
            "128 characters, 256 bytes"
        );
        assert!(id::<String>("x", "a\nb").is_err());
        assert!(id::<String>("x", "\u{11}").is_err());
        assert_eq!(id::<String>("x", "µ-1").ok().as_deref(), Some("µ-1"));
        assert_eq!(id::<String>("x", "42").ok().as_deref(), Some("42"));
    }
}
