//! The request record: what a client polls, as the API shows it.

use chrono::{DateTime, Utc};
use contracts::{
    ids::OrderId,
    messages::{
        saga::{FailureReason, Verdict},
        Unparsable,
    },
};
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
}

/// Where a record stands: pending, or final with its verdict (a failure
/// always with its reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Pending,
    Final(Verdict),
}

impl Progress {
    pub fn status(self) -> Status {
        match self {
            Progress::Pending => Status::Pending,
            Progress::Final(Verdict::Succeeded) => Status::Succeeded,
            Progress::Final(Verdict::Failed(_)) => Status::Failed,
        }
    }

    pub fn reason(self) -> Option<FailureReason> {
        match self {
            Progress::Final(verdict) => verdict.reason(),
            Progress::Pending => None,
        }
    }

    /// From the stored or shown pair (`status`, `reason`): anything but
    /// pending or succeeded without a reason, or failed with a known one,
    /// is an error naming it (the schema's CHECKs admit nothing else).
    pub fn parse(status: &str, reason: Option<&str>) -> Result<Self, Unparsable> {
        let known = reason.map(FailureReason::parse).transpose()?;
        match (status, known) {
            ("pending", None) => Ok(Progress::Pending),
            ("succeeded", None) => Ok(Progress::Final(Verdict::Succeeded)),
            ("failed", Some(r)) => Ok(Progress::Final(Verdict::Failed(r))),
            _ => Err(Unparsable::new(
                "request status",
                &format!("{status} (reason {})", reason.unwrap_or("none")),
            )),
        }
    }
}

/// A request record. Shown (and announced between replicas) as
/// [`RecordView`]: `status` and `reason` side by side.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(into = "RecordView", try_from = "RecordView")]
pub struct RequestRecord {
    pub request_id: Uuid,
    pub kind: String,
    pub order_id: OrderId,
    pub progress: Progress,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The callback's delivery, when the client gave a `callback_url`.
    pub webhook: Option<WebhookView>,
}

impl RequestRecord {
    /// The record as it reads once its saga ended with `verdict` (heard at
    /// `at`), before the stored record is finalised; a final record stays
    /// as it is.
    pub fn with_outcome(mut self, verdict: Verdict, at: DateTime<Utc>) -> Self {
        if !self.is_final() {
            self.progress = Progress::Final(verdict);
            self.completed_at = Some(at);
        }
        self
    }
}

/// What `GET /requests/{id}` returns.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordView {
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

impl From<RequestRecord> for RecordView {
    fn from(r: RequestRecord) -> Self {
        RecordView {
            request_id: r.request_id,
            kind: r.kind,
            order_id: r.order_id.into_string(),
            status: r.progress.status(),
            reason: r.progress.reason(),
            created_at: r.created_at,
            completed_at: r.completed_at,
            webhook: r.webhook,
        }
    }
}

impl TryFrom<RecordView> for RequestRecord {
    type Error = Unparsable;

    fn try_from(v: RecordView) -> Result<Self, Unparsable> {
        let reason = v.reason.map(FailureReason::as_str);
        Ok(RequestRecord {
            request_id: v.request_id,
            kind: v.kind,
            order_id: OrderId::new(v.order_id),
            progress: Progress::parse(v.status.as_str(), reason)?,
            created_at: v.created_at,
            completed_at: v.completed_at,
            webhook: v.webhook,
        })
    }
}

// The document shows the view, under the record's name.
impl utoipa::PartialSchema for RequestRecord {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        RecordView::schema()
    }
}

impl utoipa::ToSchema for RequestRecord {
    fn name() -> std::borrow::Cow<'static, str> {
        "RequestRecord".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        RecordView::schemas(schemas);
    }
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
        self.progress != Progress::Pending
    }
}

/// A record to create: everything is decided by the api before it is
/// stored, so storing it again after an unseen commit changes nothing.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// UUIDv7: time-ordered IDs keep the primary key index append-mostly.
    pub request_id: Uuid,
    pub order_id: OrderId,
    pub callback_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl NewRecord {
    pub fn new(order_id: OrderId, callback_url: Option<String>) -> Self {
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
            progress: Progress::Pending,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_pairs_parse_to_a_progress_and_nothing_else_does() {
        let failed = Progress::Final(Verdict::Failed(FailureReason::InsufficientCredit));
        for p in [
            Progress::Pending,
            Progress::Final(Verdict::Succeeded),
            failed,
        ] {
            let reason = p.reason().map(FailureReason::as_str);
            assert_eq!(Progress::parse(p.status().as_str(), reason), Ok(p));
        }
        for (status, reason, says) in [
            (
                "failed",
                None,
                r#"unknown request status "failed (reason none)""#,
            ),
            (
                "succeeded",
                Some("user_not_found"),
                r#"unknown request status "succeeded (reason user_not_found)""#,
            ),
            (
                "done",
                None,
                r#"unknown request status "done (reason none)""#,
            ),
            (
                "failed",
                Some("unknown"),
                r#"unknown failure reason "unknown""#,
            ),
        ] {
            let e = Progress::parse(status, reason).unwrap_err();
            assert_eq!(e.to_string(), says);
        }
    }

    #[test]
    fn the_record_shows_as_before_and_a_failure_without_reason_does_not_decode() {
        let record = NewRecord::new(OrderId::from("o"), None).record();
        let shown = serde_json::to_value(&record).unwrap();
        assert_eq!(shown["status"], "pending");
        assert_eq!(shown["reason"], serde_json::Value::Null);
        assert_eq!(shown["order_id"], "o");
        assert!(shown.get("progress").is_none(), "{shown}");
        let back: RequestRecord = serde_json::from_value(shown.clone()).unwrap();
        assert_eq!(back, record);
        let mut bad = shown;
        bad["status"] = "failed".into();
        let e = serde_json::from_value::<RequestRecord>(bad).unwrap_err();
        assert!(e.to_string().contains("failed (reason none)"), "{e}");
    }
}
