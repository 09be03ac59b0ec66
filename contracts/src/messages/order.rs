//! The `order` endpoints: requests and their responses.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Order {
    #[schema(value_type = String)]
    pub order_id: OrderId,
    pub paid: bool,
    /// One `[item_id, quantity]` pair per `addItem` call, in call order.
    #[schema(schema_with = lines_schema)]
    pub items: Vec<(ItemId, i64)>,
    #[schema(value_type = String)]
    pub user_id: UserId,
    pub total_cost: i64,
}

/// `[[item_id, quantity], ...]`. Each pair is described as two strings
/// or integers rather than a `prefixItems` tuple, which schemathesis
/// (the API's fuzz test) cannot read yet.
fn lines_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    let pair = ArrayBuilder::new()
        .items(
            ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Integer])),
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
    pub user_id: UserId,
}
endpoint!(CreateOrder => Order, "order", "create_order", idempotent: false);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FindOrder {
    pub order_id: OrderId,
}
endpoint!(FindOrder => Order, "order", "find_order", idempotent: true);

/// Adds a line; `unit_price` is the item's price looked up by `api` in
/// stock-svc just before. Bounds: [`crate::limits`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddItem {
    pub order_id: OrderId,
    pub item_id: ItemId,
    pub quantity: i64,
    pub unit_price: i64,
}
endpoint!(AddItem => LineAdded, "order", "add_item", idempotent: false);

/// The answer to [`AddItem`]: the order's figures after the change,
/// without its lines, so that adding a line costs the same however many
/// the order has (`/orders/find` lists them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LineAdded {
    #[schema(value_type = String)]
    pub order_id: OrderId,
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

/// The outcomes of those of these sagas (checkout request IDs) that ended:
/// `api` asks before it answers a read of a record that is still pending,
/// because the saga's end (which answered the waiting client) may be ahead
/// of the record's finalisation. At most [`SagaOutcomes::MAX_IDS`] IDs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SagaOutcomes {
    pub saga_ids: Vec<uuid::Uuid>,
}

impl SagaOutcomes {
    /// Most IDs asked about at once (one NATS request).
    pub const MAX_IDS: usize = 1_000;
}

/// The sagas asked about that ended (the others are still under way, or
/// unknown), each as the outcome it sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcomes {
    pub outcomes: Vec<super::saga::CheckoutOutcome>,
}
endpoint!(SagaOutcomes => Outcomes, "order", "saga_outcomes", idempotent: true);
