//! The domain's IDs as distinct types, so an item ID can never be passed
//! where a user or order ID is meant.
//!
//! Each wraps the string the standard API uses and is `#[serde(transparent)]`:
//! on the wire and in the HTTP API it is that string, unchanged. The saga
//! (= request) ID stays a [`uuid::Uuid`]: it is one value under two names,
//! already a type of its own that no string ID can be confused with.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares a string ID newtype.
macro_rules! string_id {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $ty {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $ty {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<$ty> for String {
            fn from(id: $ty) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        // The schema of the string itself, inlined where it is used, so
        // the OpenAPI document reads exactly as with a plain `String`.
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                String::schema()
            }
        }

        impl utoipa::ToSchema for $ty {}
    };
}

string_id!(
    /// An order (`orders.id`): a UUIDv7 made by order-svc, or `"0"`..`"n-1"`
    /// from `batch_init`; as a client sends it, any string of at most
    /// [`crate::limits::MAX_ID_BYTES`].
    OrderId
);
string_id!(
    /// An item of stock-svc.
    ItemId
);
string_id!(
    /// A user (account) of payment-svc.
    UserId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_their_string_on_the_wire() {
        let id = OrderId::from("o-1");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""o-1""#);
        assert_eq!(serde_json::from_str::<OrderId>(r#""o-1""#).unwrap(), id);
        let pair: (ItemId, i64) = serde_json::from_str(r#"["i",2]"#).unwrap();
        assert_eq!(pair, (ItemId::from("i"), 2));
        assert_eq!(id.to_string(), "o-1");
    }

    #[test]
    fn an_id_has_the_schema_of_a_string() {
        use utoipa::PartialSchema;
        assert_eq!(
            serde_json::to_value(UserId::schema()).unwrap(),
            serde_json::to_value(String::schema()).unwrap()
        );
    }
}
