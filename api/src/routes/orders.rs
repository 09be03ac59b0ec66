//! `/orders/...` (checkout lives in [`crate::checkout`]).

use axum::{
    extract::State,
    routing::{get, post},
    Json, Router,
};
use common::messages::{order::*, payment::FindUser, stock::FindItem, BatchInitDone};
use serde_json::{json, Value};

use crate::{
    params::{amount, id, Path},
    problem::ApiError,
    state::{AppState, RequestId},
};

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

async fn create(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user_id = id("user_id", &user_id)?;
    // An order for a user that does not exist could never be paid.
    let user = s.rpc.call(&FindUser { user_id }, &rid).await?;
    let order = s
        .rpc
        .call(
            &CreateOrder {
                user_id: user.user_id,
            },
            &rid,
        )
        .await?;
    Ok(Json(json!({ "order_id": order.order_id })))
}

async fn find(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path(order_id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let order_id = id("order_id", &order_id)?;
    Ok(Json(s.rpc.call(&FindOrder { order_id }, &rid).await?))
}

async fn add_item(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path((order_id, item_id, quantity)): Path<(String, String, String)>,
) -> Result<Json<Order>, ApiError> {
    let order_id = id("order_id", &order_id)?;
    let item_id = id("item_id", &item_id)?;
    let quantity = amount("quantity", &quantity)?;
    if quantity == 0 {
        return Err(ApiError::BadRequest("quantity must be at least 1".into()));
    }
    // The price is the item's price now; the order keeps it per line.
    let item = s.rpc.call(&FindItem { item_id }, &rid).await?;
    let req = AddItem {
        order_id,
        item_id: item.item_id,
        quantity,
        unit_price: item.price,
    };
    Ok(Json(s.rpc.call(&req, &rid).await?))
}

async fn batch_init(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path((n, n_items, n_users, price)): Path<(String, String, String, String)>,
) -> Result<Json<BatchInitDone>, ApiError> {
    let req = BatchInit {
        n: amount("n", &n)?,
        n_items: amount("n_items", &n_items)?,
        n_users: amount("n_users", &n_users)?,
        item_price: amount("item_price", &price)?,
    };
    Ok(Json(s.rpc.call(&req, &rid).await?))
}
