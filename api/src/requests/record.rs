//! The request record: what a client polls, as the API shows it.

use chrono::{DateTime, Utc};
use contracts::messages::saga::{CheckoutOutcome, FailureReason};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Succeeded,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }

    /// The stored form (the schema's CHECK allows exactly these three).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Status::Pending),
            "succeeded" => Some(Status::Succeeded),
            "failed" => Some(Status::Failed),
            _ => None,
        }
    }

    /// The final status an outcome gives the record.
    pub fn of(outcome: &CheckoutOutcome) -> Self {
        if outcome.succeeded {
            Status::Succeeded
        } else {
            Status::Failed
        }
    }
}

/// What `GET /requests/{id}` returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RequestRecord {
    pub request_id: Uuid,
    pub kind: String,
    pub order_id: String,
    pub status: Status,
    /// Why it failed (`insufficient_stock`, `order_not_found`, ...).
    #[schema(value_type = Option<String>, example = "insufficient_stock")]
    pub reason: Option<FailureReason>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The callback's delivery, when the client gave a `callback_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookView>,
}

/// Delivery state shown in the record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WebhookView {
    pub url: String,
    /// waiting (record not final yet), pending, delivered or failed.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl RequestRecord {
    pub fn is_final(&self) -> bool {
        self.status != Status::Pending
    }
}

/// A record to create: everything is decided by the api before it is
/// stored, so storing it again after an unseen commit changes nothing.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// UUIDv7: time-ordered IDs keep the primary key index append-mostly.
    pub request_id: Uuid,
    pub order_id: String,
    pub callback_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl NewRecord {
    pub fn new(order_id: String, callback_url: Option<String>) -> Self {
        Self {
            request_id: Uuid::now_v7(),
            order_id,
            callback_url,
            created_at: Utc::now(),
        }
    }

    /// The record as it reads once stored.
    pub fn record(&self) -> RequestRecord {
        RequestRecord {
            request_id: self.request_id,
            kind: "checkout".into(),
            order_id: self.order_id.clone(),
            status: Status::Pending,
            reason: None,
            created_at: self.created_at,
            completed_at: None,
            webhook: self.callback_url.as_ref().map(|url| WebhookView {
                url: url.clone(),
                status: "waiting".into(),
                attempts: 0,
                last_error: None,
                delivered_at: None,
            }),
        }
    }
}
