//! Wire messages between the binaries.
//!
//! [`stock`], [`payment`] and [`order`] hold the request/reply endpoints
//! behind the standard HTTP API; each request type names its response. The
//! checkout saga's JetStream messages live in [`saga`].

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;

/// Implements [`Endpoint`] for a request type.
macro_rules! endpoint {
    ($req:ty => $resp:ty, $service:literal, $name:literal, idempotent: $idem:literal) => {
        impl Endpoint for $req {
            const SERVICE: &'static str = $service;
            const NAME: &'static str = $name;
            const IDEMPOTENT: bool = $idem;
            type Response = $resp;
        }
    };
    ($req:ty => $resp:ty, $service:literal, $name:literal, idempotent: $idem:literal,
     min_timeout: $timeout:expr, cancellable) => {
        impl Endpoint for $req {
            const SERVICE: &'static str = $service;
            const NAME: &'static str = $name;
            const IDEMPOTENT: bool = $idem;
            const MIN_TIMEOUT: std::time::Duration = $timeout;
            const CANCELLABLE: bool = true;
            type Response = $resp;
        }
    };
}

/// How long a caller waits for a `batch_init`: up to [`crate::endpoint::MAX_BATCH`]
/// rows (about a minute). Never retried after a timeout: the service stops
/// the call when its caller stops waiting (see `runtime::cancel`), and a
/// second call while one runs is refused.
const BATCH_INIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Answer of the `batch_init` endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct BatchInitDone {
    pub msg: String,
}

pub mod stock {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
    pub struct Item {
        pub item_id: String,
        pub stock: i64,
        pub price: i64,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct CreateItem {
        pub price: i64,
    }
    endpoint!(CreateItem => Item, "stock", "create_item", idempotent: false);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct FindItem {
        pub item_id: String,
    }
    endpoint!(FindItem => Item, "stock", "find_item", idempotent: true);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct AddStock {
        pub item_id: String,
        pub amount: i64,
    }
    endpoint!(AddStock => Item, "stock", "add_stock", idempotent: false);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct SubtractStock {
        pub item_id: String,
        pub amount: i64,
    }
    endpoint!(SubtractStock => Item, "stock", "subtract_stock", idempotent: false);

    /// Resets items `"0"`..`"n-1"`; repeating it gives the same state.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct BatchInit {
        pub n: i64,
        pub starting_stock: i64,
        pub item_price: i64,
    }
    endpoint!(BatchInit => BatchInitDone, "stock", "batch_init", idempotent: false,
              min_timeout: BATCH_INIT_TIMEOUT, cancellable);
}

pub mod payment {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
    pub struct User {
        pub user_id: String,
        pub credit: i64,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct CreateUser {}
    endpoint!(CreateUser => User, "payment", "create_user", idempotent: false);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct FindUser {
        pub user_id: String,
    }
    endpoint!(FindUser => User, "payment", "find_user", idempotent: true);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct AddFunds {
        pub user_id: String,
        pub amount: i64,
    }
    endpoint!(AddFunds => User, "payment", "add_funds", idempotent: false);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Pay {
        pub user_id: String,
        pub amount: i64,
    }
    endpoint!(Pay => User, "payment", "pay", idempotent: false);

    /// Resets users `"0"`..`"n-1"`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct BatchInit {
        pub n: i64,
        pub starting_money: i64,
    }
    endpoint!(BatchInit => BatchInitDone, "payment", "batch_init", idempotent: false,
              min_timeout: BATCH_INIT_TIMEOUT, cancellable);
}

pub mod order {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
    pub struct Order {
        pub order_id: String,
        pub paid: bool,
        /// One `[item_id, quantity]` pair per `addItem` call, in call order.
        #[schema(schema_with = lines_schema)]
        pub items: Vec<(String, i64)>,
        pub user_id: String,
        pub total_cost: i64,
    }

    /// `[[item_id, quantity], ...]`. Each pair is described as two strings
    /// or integers rather than a `prefixItems` tuple, which schemathesis
    /// (the API's fuzz test) cannot read yet.
    fn lines_schema() -> utoipa::openapi::schema::Array {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
        let pair = ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Integer])),
            )
            .min_items(Some(2))
            .max_items(Some(2));
        ArrayBuilder::new()
            .items(pair)
            .description(Some(
                "One `[item_id, quantity]` pair per `addItem` call, in call order.",
            ))
            .build()
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct CreateOrder {
        pub user_id: String,
    }
    endpoint!(CreateOrder => Order, "order", "create_order", idempotent: false);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct FindOrder {
        pub order_id: String,
    }
    endpoint!(FindOrder => Order, "order", "find_order", idempotent: true);

    /// Adds a line; `unit_price` is the item's price looked up by `api` in
    /// stock-svc just before. Bounds: [`crate::limits`].
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct AddItem {
        pub order_id: String,
        pub item_id: String,
        pub quantity: i64,
        pub unit_price: i64,
    }
    endpoint!(AddItem => LineAdded, "order", "add_item", idempotent: false);

    /// The answer to [`AddItem`]: the order's figures after the change,
    /// without its lines, so that adding a line costs the same however many
    /// the order has (`/orders/find` lists them).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
    pub struct LineAdded {
        pub order_id: String,
        /// Lines the order holds now (at most `ORDER_MAX_LINES`).
        pub lines: i64,
        pub total_cost: i64,
    }

    /// Resets orders `"0"`..`"n-1"`, each with two random items of quantity 1.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct BatchInit {
        pub n: i64,
        pub n_items: i64,
        pub n_users: i64,
        pub item_price: i64,
    }
    endpoint!(BatchInit => BatchInitDone, "order", "batch_init", idempotent: false,
              min_timeout: BATCH_INIT_TIMEOUT, cancellable);

    /// Which of these sagas order-svc still keeps: not final yet, or final
    /// but not yet past the retention counted from its completion.
    /// stock-svc and payment-svc ask before purging old ledger rows: a row
    /// of a saga still kept stays, whatever its age (a checkout completed
    /// just now after a long outage may still see a duplicate step). At
    /// most [`UnfinishedSagas::MAX_IDS`] IDs per request.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct UnfinishedSagas {
        pub saga_ids: Vec<uuid::Uuid>,
    }

    impl UnfinishedSagas {
        /// Most IDs asked about at once (one NATS request).
        pub const MAX_IDS: usize = 1_000;
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Unfinished {
        pub saga_ids: Vec<uuid::Uuid>,
    }
    endpoint!(UnfinishedSagas => Unfinished, "order", "unfinished_sagas", idempotent: true);
}

/// The checkout saga's JetStream messages.
///
/// Every JetStream message is a *batch*: a JSON array of the items below, one
/// message per destination per batch of work, so that the cost of a publish,
/// its ack, the delivery and the consumer's ack is shared by every checkout
/// in the batch. Each item carries the saga ID (= the request ID), which is
/// the database key every consumer deduplicates by; how items are grouped
/// into messages carries no meaning.
pub mod saga {
    use super::*;
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
        pub order_id: String,
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

    /// order-svc → stock-svc / payment-svc. `lines` are what to debit
    /// (item and quantity summed per item, or user and amount); empty for
    /// the compensations, which undo exactly what the saga's debit recorded.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
    pub struct StepCommand {
        pub saga_id: Uuid,
        pub step: Step,
        #[serde(default)]
        pub lines: Vec<(String, i64)>,
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

        pub fn parse(s: &str) -> Option<Self> {
            match s {
                "done" => Some(StepOutcome::Done),
                "insufficient" => Some(StepOutcome::Insufficient),
                "not_found" => Some(StepOutcome::NotFound),
                "rejected" => Some(StepOutcome::Rejected),
                _ => None,
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

        pub fn parse(s: &str) -> Option<Self> {
            serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
        }
    }

    /// The largest one saga item can be when encoded, plus the brackets of
    /// the array around it: a step command for an order of `max_lines`
    /// distinct items, or a request or outcome naming the longest order ID.
    /// `NATS_MAX_MESSAGE_BYTES` must be at least this, so that every
    /// checkout fits a message (checked at start-up).
    pub fn largest_item_bytes(max_lines: usize) -> usize {
        use crate::limits::{MAX_AMOUNT, MAX_ID_BYTES};
        // Worst cases: an order ID from a client with every character
        // escaped (`"` becomes two bytes); item and user IDs, which the
        // services make themselves and never need escaping, at the longest;
        // the longest numbers and variants.
        let id = "\"".repeat(MAX_ID_BYTES);
        let saga_id = Uuid::max();
        let command = StepCommand {
            saga_id,
            step: Step::Reserve,
            lines: vec![("x".repeat(MAX_ID_BYTES), MAX_AMOUNT); max_lines.max(1)],
        };
        let request = CheckoutRequested {
            request_id: saga_id,
            order_id: id.clone(),
        };
        let outcome = CheckoutOutcome {
            request_id: saga_id,
            order_id: id,
            succeeded: false,
            reason: Some(FailureReason::InsufficientCredit),
        };
        let result = StepResult {
            saga_id,
            step: Step::Reserve,
            outcome: StepOutcome::Insufficient,
        };
        let len = |v: Result<Vec<u8>, serde_json::Error>| v.map_or(0, |v| v.len());
        [
            len(serde_json::to_vec(&command)),
            len(serde_json::to_vec(&request)),
            len(serde_json::to_vec(&outcome)),
            len(serde_json::to_vec(&result)),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
            + 2
    }

    /// order-svc → `api`: the saga is over. `reason` is set when it failed.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
    pub struct CheckoutOutcome {
        pub request_id: Uuid,
        pub order_id: String,
        pub succeeded: bool,
        pub reason: Option<FailureReason>,
    }
}
