//! `/payment/...`

use axum::{
    extract::State,
    routing::{get, post},
    Json, Router,
};
use common::messages::{payment::*, BatchInitDone};
use serde_json::{json, Value};

use crate::{
    params::{amount, id, Path},
    problem::ApiError,
    state::{AppState, RequestId},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/payment/create_user", post(create_user))
        .route("/payment/find_user/{user_id}", get(find_user))
        .route("/payment/add_funds/{user_id}/{amount}", post(add_funds))
        .route("/payment/pay/{user_id}/{amount}", post(pay))
        .route("/payment/batch_init/{n}/{starting_money}", post(batch_init))
}

async fn create_user(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
) -> Result<Json<Value>, ApiError> {
    let user = s.rpc.call(&CreateUser {}, &rid).await?;
    Ok(Json(json!({ "user_id": user.user_id })))
}

async fn find_user(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path(user_id): Path<String>,
) -> Result<Json<User>, ApiError> {
    let user_id = id("user_id", &user_id)?;
    Ok(Json(s.rpc.call(&FindUser { user_id }, &rid).await?))
}

async fn add_funds(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path((user_id, raw)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let req = AddFunds {
        user_id: id("user_id", &user_id)?,
        amount: amount("amount", &raw)?,
    };
    let user = s.rpc.call(&req, &rid).await?;
    Ok(Json(json!({ "done": true, "credit": user.credit })))
}

async fn pay(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path((user_id, raw)): Path<(String, String)>,
) -> Result<Json<User>, ApiError> {
    let req = Pay {
        user_id: id("user_id", &user_id)?,
        amount: amount("amount", &raw)?,
    };
    Ok(Json(s.rpc.call(&req, &rid).await?))
}

async fn batch_init(
    State(s): State<AppState>,
    RequestId(rid): RequestId,
    Path((n, money)): Path<(String, String)>,
) -> Result<Json<BatchInitDone>, ApiError> {
    let req = BatchInit {
        n: amount("n", &n)?,
        starting_money: amount("starting_money", &money)?,
    };
    Ok(Json(s.rpc.call(&req, &rid).await?))
}
