//! The checkout saga's JetStream messages.
//!
//! Every JetStream message is a *batch*: a JSON array of the items below, one
//! message per destination per batch of work, so that the cost of a publish,
//! its ack, the delivery and the consumer's ack is shared by every checkout
//! in the batch. Each item carries the saga ID (= the request ID), which is
//! the database key every consumer deduplicates by; how items are grouped
//! into messages carries no meaning.

use super::*;
use crate::limits::{Amount, OutOfBounds, Quantity};
use crate::Subjects;
use uuid::Uuid;

/// Where each kind of saga message goes (all captured by JetStream).
impl Subjects {
    /// `api` → order-svc: [`CheckoutRequested`].
    pub fn checkout_requested(&self) -> String {
        self.js("order.checkout")
    }
    /// stock-svc / payment-svc → order-svc: [`StepResult`].
    pub fn step_results(&self) -> String {
        self.js("order.step")
    }
    /// order-svc → the service that performs `step`: [`StepCommand`].
    pub fn step_commands(&self, step: Step) -> String {
        self.js(&format!("{}.steps", step.service()))
    }
    /// order-svc → `api`: [`CheckoutOutcome`].
    pub fn checkout_outcomes(&self) -> String {
        self.js("api.outcome")
    }
}

/// `api` → order-svc: check this order out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckoutRequested {
    pub request_id: Uuid,
    pub order_id: OrderId,
}

/// A saga step performed by stock-svc or payment-svc.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// stock-svc takes the items.
    Reserve,
    /// stock-svc gives them back (compensates Reserve).
    Release,
    /// payment-svc takes the money.
    Charge,
    /// payment-svc gives it back (compensates Charge).
    Refund,
}

impl Step {
    /// The service that performs the step.
    pub fn service(self) -> &'static str {
        match self {
            Step::Reserve | Step::Release => "stock",
            Step::Charge | Step::Refund => "payment",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Reserve => "reserve",
            Step::Release => "release",
            Step::Charge => "charge",
            Step::Refund => "refund",
        }
    }
}

/// What a step command asks, with the payload of its step.
// Hash and Ord let the protocol model (`model/`) keep these in its states.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepAction {
    /// Take these units of each item (summed per item over the order's
    /// lines, in the order they were first added).
    Reserve { items: Vec<(ItemId, Quantity)> },
    /// Take this amount (the order's total) from the user.
    Charge { user_id: UserId, amount: Amount },
    /// Give back what the saga's reserve recorded.
    Release,
    /// Give back what the saga's charge recorded.
    Refund,
}

impl StepAction {
    pub fn step(&self) -> Step {
        match self {
            StepAction::Reserve { .. } => Step::Reserve,
            StepAction::Charge { .. } => Step::Charge,
            StepAction::Release => Step::Release,
            StepAction::Refund => Step::Refund,
        }
    }
}

/// order-svc → stock-svc / payment-svc.
///
/// Encoded as it always was (`{"saga_id", "step", "lines"}`, `lines`
/// being `[item, quantity]` pairs for a reserve, the one `[user,
/// amount]` pair for a charge and empty for the compensations), so that
/// messages in flight across an upgrade, in either direction, keep
/// their meaning; one that does not fit its step does not decode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(try_from = "wire::StepCommand", into = "wire::StepCommand")]
pub struct StepCommand {
    pub saga_id: Uuid,
    pub action: StepAction,
}

impl StepCommand {
    pub fn step(&self) -> Step {
        self.action.step()
    }
}

/// How a step ended.
// Hash and Ord let the protocol model (`model/`) keep these in its states.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// Applied (or, for a compensation, nothing left to undo).
    Done,
    /// A balance would have gone below zero; nothing changed.
    Insufficient,
    /// An item or user does not exist; nothing changed.
    NotFound,
    /// The command's data cannot be applied (e.g. it would take a
    /// value out of range or break a constraint); nothing changed.
    Rejected,
}

impl StepOutcome {
    /// The spelling stored in the ledgers and the saga table.
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Done => "done",
            StepOutcome::Insufficient => "insufficient",
            StepOutcome::NotFound => "not_found",
            StepOutcome::Rejected => "rejected",
        }
    }

    /// The stored spelling back; anything else is an error naming it.
    pub fn parse(s: &str) -> Result<Self, Unparsable> {
        match s {
            "done" => Ok(StepOutcome::Done),
            "insufficient" => Ok(StepOutcome::Insufficient),
            "not_found" => Ok(StepOutcome::NotFound),
            "rejected" => Ok(StepOutcome::Rejected),
            _ => Err(Unparsable::new("step outcome", s)),
        }
    }
}

/// stock-svc / payment-svc → order-svc.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepResult {
    pub saga_id: Uuid,
    pub step: Step,
    pub outcome: StepOutcome,
}

/// Why a checkout failed; the request record's `reason`.
// Hash and Ord let the protocol model (`model/`) keep these in its states.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    InsufficientStock,
    InsufficientCredit,
    OrderNotFound,
    ItemNotFound,
    UserNotFound,
    /// The order cannot be checked out as it is (e.g. its quantities sum
    /// past the 64-bit range); nothing changed.
    InvalidOrder,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::InsufficientStock => "insufficient_stock",
            FailureReason::InsufficientCredit => "insufficient_credit",
            FailureReason::OrderNotFound => "order_not_found",
            FailureReason::ItemNotFound => "item_not_found",
            FailureReason::UserNotFound => "user_not_found",
            FailureReason::InvalidOrder => "invalid_order",
        }
    }

    /// Every reason, e.g. for metrics that must exist at zero.
    pub const ALL: [FailureReason; 6] = [
        FailureReason::InsufficientStock,
        FailureReason::InsufficientCredit,
        FailureReason::OrderNotFound,
        FailureReason::ItemNotFound,
        FailureReason::UserNotFound,
        FailureReason::InvalidOrder,
    ];

    /// The stored spelling back; anything else is an error naming it.
    pub fn parse(s: &str) -> Result<Self, Unparsable> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Unparsable::new("failure reason", s))
    }
}

/// The largest one saga item can be when encoded, plus the brackets of
/// the array around it: a step command for an order of `max_lines`
/// distinct items, or a request or outcome naming the longest order ID.
/// `NATS_MAX_MESSAGE_BYTES` must be at least this, so that every
/// checkout fits a message (checked at start-up).
pub fn largest_item_bytes(max_lines: usize) -> usize {
    use crate::limits::MAX_ID_BYTES;
    // Worst cases: an order ID from a client with every character
    // escaped (`"` becomes two bytes); item and user IDs, which the
    // services make themselves and never need escaping, at the longest;
    // the longest numbers and variants.
    let id = "\"".repeat(MAX_ID_BYTES);
    let saga_id = Uuid::max();
    let item = (ItemId::new("x".repeat(MAX_ID_BYTES)), Quantity::max());
    let command = StepCommand {
        saga_id,
        action: StepAction::Reserve {
            items: vec![item; max_lines.max(1)],
        },
    };
    let charge = StepCommand {
        saga_id,
        action: StepAction::Charge {
            user_id: UserId::new("x".repeat(MAX_ID_BYTES)),
            amount: Amount::max(),
        },
    };
    let request = CheckoutRequested {
        request_id: saga_id,
        order_id: OrderId::new(id.clone()),
    };
    let outcome = CheckoutOutcome {
        request_id: saga_id,
        order_id: OrderId::new(id),
        verdict: Verdict::Failed(FailureReason::InsufficientCredit),
        // The longest a timestamp encodes.
        completed_at: Some(chrono::DateTime::<chrono::Utc>::MAX_UTC),
    };
    let result = StepResult {
        saga_id,
        step: Step::Reserve,
        outcome: StepOutcome::Insufficient,
    };
    let len = |v: Result<Vec<u8>, serde_json::Error>| v.map_or(0, |v| v.len());
    [
        len(serde_json::to_vec(&command)),
        len(serde_json::to_vec(&charge)),
        len(serde_json::to_vec(&request)),
        len(serde_json::to_vec(&outcome)),
        len(serde_json::to_vec(&result)),
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
        + 2
}

/// How a checkout ended.
// Hash and Ord let the protocol model (`model/`) keep these in its states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// The order is paid (by this checkout or an earlier one).
    Succeeded,
    /// Nothing changed, for this reason.
    Failed(FailureReason),
}

impl Verdict {
    pub fn succeeded(self) -> bool {
        self == Verdict::Succeeded
    }

    pub fn reason(self) -> Option<FailureReason> {
        match self {
            Verdict::Succeeded => None,
            Verdict::Failed(reason) => Some(reason),
        }
    }

    /// From the stored or encoded pair (`succeeded`, `reason`): a
    /// success has no reason and a failure has one; anything else is
    /// an error.
    pub fn from_parts(succeeded: bool, reason: Option<FailureReason>) -> Result<Self, Undecodable> {
        match (succeeded, reason) {
            (true, None) => Ok(Verdict::Succeeded),
            (false, Some(reason)) => Ok(Verdict::Failed(reason)),
            (true, Some(reason)) => Err(Undecodable::SucceededWithReason(reason)),
            (false, None) => Err(Undecodable::FailedWithoutReason),
        }
    }
}

/// order-svc → `api`: the saga is over.
///
/// Encoded as it always was (`{"request_id", "order_id", "succeeded",
/// "reason"}`). A failure without a reason (which no version of
/// order-svc sends: the sagas table requires a reason for a failure)
/// does not decode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(try_from = "wire::CheckoutOutcome", into = "wire::CheckoutOutcome")]
pub struct CheckoutOutcome {
    pub request_id: Uuid,
    pub order_id: OrderId,
    pub verdict: Verdict,
    /// When the saga ended (order-svc stores the same instant, to the
    /// microsecond): the record's `completed_at`, whichever way the api
    /// learns the outcome. None from an order-svc before it was sent.
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A saga message whose fields contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undecodable {
    #[error("a {step} command carries no lines, got {lines}")]
    CompensationWithLines { step: &'static str, lines: usize },
    #[error("a charge command carries exactly one [user, amount] line, got {0}")]
    ChargeLines(usize),
    #[error(transparent)]
    OutOfBounds(#[from] OutOfBounds),
    #[error("a failed checkout outcome without a reason")]
    FailedWithoutReason,
    #[error("a succeeded checkout outcome with a reason ({})", .0.as_str())]
    SucceededWithReason(FailureReason),
}

mod wire;

#[cfg(test)]
mod tests {
    use super::*;

    const SAGA: &str = "0190a5b0-0000-7000-8000-000000000001";

    fn saga_id() -> Uuid {
        Uuid::parse_str(SAGA).unwrap()
    }

    fn decode(json: &str) -> Result<StepCommand, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Messages exactly as the previous version wrote them still mean
    /// the same, and the new encoding is byte for byte the old one.
    #[test]
    fn step_commands_of_the_previous_version_decode_to_their_meaning() {
        let cases = [
            (
                format!(r#"{{"saga_id":"{SAGA}","step":"reserve","lines":[["i1",2],["i2",1]]}}"#),
                StepAction::Reserve {
                    items: vec![
                        (ItemId::from("i1"), Quantity::new("q", 2).unwrap()),
                        (ItemId::from("i2"), Quantity::new("q", 1).unwrap()),
                    ],
                },
            ),
            (
                format!(r#"{{"saga_id":"{SAGA}","step":"charge","lines":[["u",10]]}}"#),
                StepAction::Charge {
                    user_id: UserId::from("u"),
                    amount: Amount::new("a", 10).unwrap(),
                },
            ),
            (
                format!(r#"{{"saga_id":"{SAGA}","step":"release","lines":[]}}"#),
                StepAction::Release,
            ),
            (
                format!(r#"{{"saga_id":"{SAGA}","step":"refund","lines":[]}}"#),
                StepAction::Refund,
            ),
        ];
        for (old, action) in cases {
            let command = decode(&old).unwrap();
            assert_eq!(
                command,
                StepCommand {
                    saga_id: saga_id(),
                    action
                }
            );
            assert_eq!(serde_json::to_string(&command).unwrap(), old);
        }
        // `lines` was optional for the compensations.
        let bare = format!(r#"{{"saga_id":"{SAGA}","step":"refund"}}"#);
        assert_eq!(decode(&bare).unwrap().action, StepAction::Refund);
        // An empty order reserves nothing (and charges 0).
        let empty = format!(r#"{{"saga_id":"{SAGA}","step":"reserve","lines":[]}}"#);
        assert_eq!(
            decode(&empty).unwrap().action,
            StepAction::Reserve { items: vec![] }
        );
    }

    #[test]
    fn a_step_command_that_does_not_fit_its_step_does_not_decode() {
        for (bad, says) in [
            (r#""charge","lines":[]"#, "exactly one"),
            (r#""charge","lines":[["u",1],["v",1]]"#, "exactly one"),
            (r#""release","lines":[["i",1]]"#, "no lines"),
            (r#""reserve","lines":[["i",0]]"#, "Quantity must be between"),
            (
                r#""reserve","lines":[["i",-1]]"#,
                "Quantity must be between",
            ),
            (r#""charge","lines":[["u",-5]]"#, "Amount must be between"),
        ] {
            let e = decode(&format!(r#"{{"saga_id":"{SAGA}","step":{bad}}}"#)).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn outcomes_of_the_previous_version_decode_and_a_failure_needs_its_reason() {
        let order_id = OrderId::from("o");
        for (old, verdict) in [
            (
                format!(
                    r#"{{"request_id":"{SAGA}","order_id":"o","succeeded":true,"reason":null}}"#
                ),
                Verdict::Succeeded,
            ),
            (
                format!(
                    r#"{{"request_id":"{SAGA}","order_id":"o","succeeded":false,"reason":"insufficient_stock"}}"#
                ),
                Verdict::Failed(FailureReason::InsufficientStock),
            ),
        ] {
            let outcome: CheckoutOutcome = serde_json::from_str(&old).unwrap();
            assert_eq!(
                outcome,
                CheckoutOutcome {
                    request_id: saga_id(),
                    order_id: order_id.clone(),
                    verdict,
                    completed_at: None,
                }
            );
            assert_eq!(serde_json::to_string(&outcome).unwrap(), old);
        }
        for (bad, says) in [
            (r#""succeeded":false,"reason":null"#, "without a reason"),
            (
                r#""succeeded":true,"reason":"item_not_found""#,
                "with a reason",
            ),
            (
                r#""succeeded":false,"reason":"gremlins""#,
                "unknown variant",
            ),
        ] {
            let json = format!(r#"{{"request_id":"{SAGA}","order_id":"o",{bad}}}"#);
            let e = serde_json::from_str::<CheckoutOutcome>(&json).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn stored_spellings_parse_back_and_anything_else_is_named() {
        for o in [
            StepOutcome::Done,
            StepOutcome::Insufficient,
            StepOutcome::NotFound,
            StepOutcome::Rejected,
        ] {
            assert_eq!(StepOutcome::parse(o.as_str()), Ok(o));
        }
        assert_eq!(
            FailureReason::parse("invalid_order"),
            Ok(FailureReason::InvalidOrder)
        );
        let e = StepOutcome::parse("maybe").unwrap_err();
        assert_eq!(e.to_string(), r#"unknown step outcome "maybe""#);
        assert_eq!(
            FailureReason::parse("unknown").unwrap_err().value,
            "unknown"
        );
    }
}
