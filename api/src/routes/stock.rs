//! `/stock/...`

use axum::{
    routing::{get, post},
    Json, Router,
};
use contracts::{
    limits::{Balance, Price},
    messages::{stock::*, BatchInitDone},
};
use serde::Serialize;

use super::forward::Call;
use crate::{
    params::{bounded, count, id, id_amount, AmountParam, ItemIdParam, Path},
    problem::ApiError,
    state::AppState,
};

/// `POST /stock/item/create/{price}`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemCreated {
    pub item_id: String,
}

/// `GET /stock/find/{item_id}`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StockView {
    #[schema(minimum = 0)]
    pub stock: i64,
    #[schema(minimum = 0)]
    pub price: i64,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/stock/item/create/{price}", post(create))
        .route("/stock/find/{item_id}", get(find))
        .route("/stock/add/{item_id}/{amount}", post(add))
        .route("/stock/subtract/{item_id}/{amount}", post(subtract))
        .route(
            "/stock/batch_init/{n}/{starting_stock}/{item_price}",
            post(batch_init),
        )
}

/// Creates an item with this price and no stock.
#[utoipa::path(post, path = "/stock/item/create/{price}", tag = "stock", operation_id = "stock_create_item",
    params(("price" = i64, Path, minimum = 0, maximum = 1_000_000_000, description = "Unit price, at most 10^9")),
    responses((status = 200, description = "Created", body = ItemCreated)))]
pub async fn create(call: Call, Path(price): Path<String>) -> Result<Json<ItemCreated>, ApiError> {
    let price = bounded("price", &price, Price::new)?.get();
    call.forward_as(CreateItem { price }, |item| ItemCreated {
        item_id: item.item_id.into(),
    })
    .await
}

/// An item's stock and price.
#[utoipa::path(get, path = "/stock/find/{item_id}", tag = "stock", operation_id = "stock_find",
    params(ItemIdParam),
    responses((status = 200, description = "The item", body = StockView)))]
pub async fn find(call: Call, Path(item_id): Path<String>) -> Result<Json<StockView>, ApiError> {
    let item_id = id("item_id", &item_id)?;
    call.forward_as(FindItem { item_id }, |item| StockView {
        stock: item.stock,
        price: item.price,
    })
    .await
}

/// Adds stock; refused (400) past 10^18 units.
#[utoipa::path(post, path = "/stock/add/{item_id}/{amount}", tag = "stock", operation_id = "stock_add",
    params(ItemIdParam, AmountParam),
    responses((status = 200, description = "The item after the change", body = Item)))]
pub async fn add(
    call: Call,
    Path(segments): Path<(String, String)>,
) -> Result<Json<Item>, ApiError> {
    let (item_id, amount) = id_amount("item_id", segments)?;
    call.forward(AddStock { item_id, amount }).await
}

/// Removes stock; refused (409) if it would go below zero.
#[utoipa::path(post, path = "/stock/subtract/{item_id}/{amount}", tag = "stock", operation_id = "stock_subtract",
    params(ItemIdParam, AmountParam),
    responses((status = 200, description = "The item after the change", body = Item)))]
pub async fn subtract(
    call: Call,
    Path(segments): Path<(String, String)>,
) -> Result<Json<Item>, ApiError> {
    let (item_id, amount) = id_amount("item_id", segments)?;
    call.forward(SubtractStock { item_id, amount }).await
}

/// Creates or resets items `"0"`..`"n-1"` with this stock and price.
#[utoipa::path(post, path = "/stock/batch_init/{n}/{starting_stock}/{item_price}", tag = "stock", operation_id = "stock_batch_init",
    params(("n" = i64, Path, minimum = 0, maximum = 10_000_000),
        ("starting_stock" = i64, Path, minimum = 0, maximum = 1_000_000_000_000_000_000_i64), ("item_price" = i64, Path, minimum = 0, maximum = 1_000_000_000)),
    responses((status = 200, description = "Done", body = BatchInitDone)))]
pub async fn batch_init(
    call: Call,
    Path((n, stock, price)): Path<(String, String, String)>,
) -> Result<Json<BatchInitDone>, ApiError> {
    let req = BatchInit {
        n: count("n", &n, 0)?,
        starting_stock: bounded("starting_stock", &stock, Balance::new)?.get(),
        item_price: bounded("item_price", &price, Price::new)?.get(),
    };
    call.forward(req).await
}
