//! The `stock` endpoints: requests and their responses.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Item {
    #[schema(value_type = String)]
    pub item_id: ItemId,
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
    pub item_id: ItemId,
}
endpoint!(FindItem => Item, "stock", "find_item", idempotent: true);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddStock {
    pub item_id: ItemId,
    pub amount: i64,
}
endpoint!(AddStock => Item, "stock", "add_stock", idempotent: false);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubtractStock {
    pub item_id: ItemId,
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
