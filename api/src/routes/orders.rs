//! `/orders/...` (checkout lives in [`super::checkout`]).

use axum::{
    routing::{get, post},
    Json, Router,
};
use contracts::{
    limits::{Price, Quantity},
    messages::{order::*, payment::FindUser, stock::FindItem, BatchInitDone},
};
use serde::Serialize;

use super::forward::Call;
use crate::{
    params::{bounded, count, id, ItemIdParam, OrderIdParam, Path, UserIdParam},
    problem::ApiError,
    state::AppState,
};

/// `POST /orders/create/{user_id}`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderCreated {
    pub order_id: String,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/orders/create/{user_id}", post(create))
        .route("/orders/find/{order_id}", get(find))
        .route(
            "/orders/addItem/{order_id}/{item_id}/{quantity}",
            post(add_item),
        )
        .route(
            "/orders/batch_init/{n}/{n_items}/{n_users}/{item_price}",
            post(batch_init),
        )
}

/// Creates an empty order for an existing user.
#[utoipa::path(post, path = "/orders/create/{user_id}", tag = "orders", operation_id = "orders_create",
    params(UserIdParam),
    responses((status = 200, description = "Created", body = OrderCreated)))]
pub async fn create(
    call: Call,
    Path(user_id): Path<String>,
) -> Result<Json<OrderCreated>, ApiError> {
    let user_id = id("user_id", &user_id)?;
    // An order for a user that does not exist could never be paid.
    let user = call.call(&FindUser { user_id }).await?;
    let req = CreateOrder {
        user_id: user.user_id,
    };
    call.forward_as(req, |order| OrderCreated {
        order_id: order.order_id.into(),
    })
    .await
}

/// An order with its lines.
#[utoipa::path(get, path = "/orders/find/{order_id}", tag = "orders", operation_id = "orders_find",
    params(OrderIdParam),
    responses((status = 200, description = "The order", body = Order)))]
pub async fn find(call: Call, Path(order_id): Path<String>) -> Result<Json<Order>, ApiError> {
    call.forward(FindOrder {
        order_id: id("order_id", &order_id)?,
    })
    .await
}

/// Adds `quantity` of an item at its current price. Refused (400) past
/// 10^9 units of one item in the order or a `total_cost` of 10^15, and
/// (409) past `ORDER_MAX_LINES` lines (1,000 by default); nothing changes
/// then.
#[utoipa::path(post, path = "/orders/addItem/{order_id}/{item_id}/{quantity}", tag = "orders",
    operation_id = "orders_add_item",
    params(OrderIdParam,
        ItemIdParam,
        ("quantity" = i64, Path, minimum = 1, maximum = 1_000_000_000)),
    responses((status = 200, description = "The order's figures after the change", body = LineAdded)))]
pub async fn add_item(
    call: Call,
    Path((order_id, item_id, quantity)): Path<(String, String, String)>,
) -> Result<Json<LineAdded>, ApiError> {
    let order_id = id("order_id", &order_id)?;
    let item_id = id("item_id", &item_id)?;
    let quantity = bounded("quantity", &quantity, Quantity::new)?.get();
    // The price is the item's price now; the order keeps it per line.
    let item = call.call(&FindItem { item_id }).await?;
    let req = AddItem {
        order_id,
        item_id: item.item_id,
        quantity,
        unit_price: item.price,
    };
    call.forward(req).await
}

/// Creates or resets orders `"0"`..`"n-1"`: two random items of quantity 1
/// among `"0"`..`"n_items-1"`, a random user among `"0"`..`"n_users-1"`,
/// unpaid.
#[utoipa::path(post, path = "/orders/batch_init/{n}/{n_items}/{n_users}/{item_price}",
    tag = "orders", operation_id = "orders_batch_init",
    params(("n" = i64, Path, minimum = 0, maximum = 10_000_000),
        ("n_items" = i64, Path, minimum = 1, maximum = 10_000_000),
        ("n_users" = i64, Path, minimum = 1, maximum = 10_000_000),
        ("item_price" = i64, Path, minimum = 0, maximum = 1_000_000_000,
            description = "At most 10^9, the highest price")),
    responses((status = 200, description = "Done", body = BatchInitDone)))]
pub async fn batch_init(
    call: Call,
    Path((n, n_items, n_users, price)): Path<(String, String, String, String)>,
) -> Result<Json<BatchInitDone>, ApiError> {
    let req = BatchInit {
        n: count("n", &n, 0)?,
        n_items: count("n_items", &n_items, 1)?,
        n_users: count("n_users", &n_users, 1)?,
        item_price: bounded("item_price", &price, Price::new)?.get(),
    };
    call.forward(req).await
}
