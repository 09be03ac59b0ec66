//! The bodies of the standard API (API.md), read leniently: IDs may be JSON strings or
//! integers, as deployments differ.

use serde::{Deserialize, Deserializer, Serialize};

/// How to ask for an asynchronous checkout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum AsyncMode {
    /// `Prefer: respond-async` header (RFC 7240).
    Header,
    /// `?mode=async` query parameter.
    Query,
}

/// Accepts a JSON string or integer as an ID.
fn de_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        I(i64),
        U(u64),
    }
    Ok(match Id::deserialize(d)? {
        Id::S(s) => s,
        Id::I(i) => i.to_string(),
        Id::U(u) => u.to_string(),
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct ItemCreated {
    #[serde(deserialize_with = "de_id")]
    pub(crate) item_id: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserCreated {
    #[serde(deserialize_with = "de_id")]
    pub(crate) user_id: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct OrderCreated {
    #[serde(deserialize_with = "de_id")]
    pub(crate) order_id: String,
}

/// `GET /stock/find/{item_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ItemState {
    pub stock: i64,
    pub price: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserState {
    pub(crate) credit: i64,
}

/// One `[item_id, quantity]` pair of an order.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct OrderLine(#[serde(deserialize_with = "de_id")] pub String, pub i64);

/// `GET /orders/find/{order_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct OrderState {
    pub paid: bool,
    #[serde(default)]
    pub items: Vec<OrderLine>,
    #[serde(deserialize_with = "de_id")]
    pub user_id: String,
    pub total_cost: i64,
}

/// The request record of the asynchronous extension.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct RequestRecord {
    #[serde(deserialize_with = "de_id")]
    pub request_id: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

impl RequestRecord {
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed")
    }
}

/// Answer to an asynchronous checkout submission.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub status: u16,
    pub record: Option<RequestRecord>,
    pub location: Option<String>,
    /// Start of the body when the answer was not 202.
    pub rejection: Option<String>,
}

impl Submitted {
    /// The request ID from the body, or else from the `Location` header.
    pub fn request_id(&self) -> Option<String> {
        if let Some(r) = &self.record {
            return Some(r.request_id.clone());
        }
        let loc = self.location.as_deref()?;
        let path = loc.split(['?', '#']).next().unwrap_or(loc);
        path.rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }
}

/// Answer to `GET /requests/{id}`.
#[derive(Clone, Debug)]
pub struct Polled {
    pub status: u16,
    pub record: Option<RequestRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_ids_and_order_lines() {
        let o: OrderState = serde_json::from_str(
            r#"{"order_id":"7","paid":true,"items":[["3",2],[4,1]],"user_id":12,"total_cost":3}"#,
        )
        .expect("parse");
        assert!(o.paid);
        assert_eq!(
            o.items,
            vec![OrderLine("3".into(), 2), OrderLine("4".into(), 1)]
        );
        assert_eq!(o.user_id, "12");
        let r: RequestRecord = serde_json::from_str(
            r#"{"request_id":"r1","kind":"checkout","status":"failed","reason":"insufficient_stock"}"#,
        )
        .expect("parse");
        assert!(r.is_final());
        assert_eq!(r.reason.as_deref(), Some("insufficient_stock"));
    }

    #[test]
    fn request_id_from_location() {
        let s = Submitted {
            status: 202,
            record: None,
            location: Some("/requests/0193-abc?x=1".into()),
            rejection: None,
        };
        assert_eq!(s.request_id().as_deref(), Some("0193-abc"));
        let s = Submitted {
            status: 202,
            record: None,
            location: None,
            rejection: None,
        };
        assert_eq!(s.request_id(), None);
    }
}
