//! `/stock/...`

use axum::{
    extract::State,
    routing::{get, post},
    Json, Router,
};
use common::messages::{stock::*, BatchInitDone};
use serde_json::{json, Value};

use crate::{
    params::{amount, id, Path},
    problem::ApiError,
    state::{AppState, RequestId},
};

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

async fn create(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path(price): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let price = amount("price", &price)?;
    let item = s.rpc.call(&CreateItem { price }, &rid).await?;
    Ok(Json(json!({ "item_id": item.item_id })))
}

async fn find(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path(item_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let item_id = id("item_id", &item_id)?;
    let item = s.rpc.call(&FindItem { item_id }, &rid).await?;
    Ok(Json(json!({ "stock": item.stock, "price": item.price })))
}

async fn add(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path((item_id, raw)): Path<(String, String)>,
) -> Result<Json<Item>, ApiError> {
    let req = AddStock {
        item_id: id("item_id", &item_id)?,
        amount: amount("amount", &raw)?,
    };
    Ok(Json(s.rpc.call(&req, &rid).await?))
}

async fn subtract(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path((item_id, raw)): Path<(String, String)>,
) -> Result<Json<Item>, ApiError> {
    let req = SubtractStock {
        item_id: id("item_id", &item_id)?,
        amount: amount("amount", &raw)?,
    };
    Ok(Json(s.rpc.call(&req, &rid).await?))
}

async fn batch_init(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path((n, stock, price)): Path<(String, String, String)>,
) -> Result<Json<BatchInitDone>, ApiError> {
    let req = BatchInit {
        n: amount("n", &n)?,
        starting_stock: amount("starting_stock", &stock)?,
        item_price: amount("item_price", &price)?,
    };
    Ok(Json(s.rpc.call(&req, &rid).await?))
}
