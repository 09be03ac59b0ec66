//! `/payment/...`

use axum::{
    routing::{get, post},
    Json, Router,
};
use contracts::{
    limits::Balance,
    messages::{payment::*, BatchInitDone},
};
use serde::Serialize;

use super::forward::Call;
use crate::{
    params::{bounded, count, id, id_amount, AmountParam, Path, UserIdParam},
    problem::ApiError,
    state::AppState,
};

/// `POST /payment/create_user`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserCreated {
    pub user_id: String,
}

/// `POST /payment/add_funds/...`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FundsAdded {
    /// Always true.
    pub done: bool,
    /// The credit after the change.
    #[schema(minimum = 0)]
    pub credit: i64,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/payment/create_user", post(create_user))
        .route("/payment/find_user/{user_id}", get(find_user))
        .route("/payment/add_funds/{user_id}/{amount}", post(add_funds))
        .route("/payment/pay/{user_id}/{amount}", post(pay))
        .route("/payment/batch_init/{n}/{starting_money}", post(batch_init))
}

/// Creates a user with no credit.
#[utoipa::path(post, path = "/payment/create_user", tag = "payment", operation_id = "payment_create_user",
    responses((status = 200, description = "Created", body = UserCreated)))]
pub async fn create_user(call: Call) -> Result<Json<UserCreated>, ApiError> {
    call.forward_as(CreateUser {}, |user| UserCreated {
        user_id: user.user_id.into(),
    })
    .await
}

/// A user's credit.
#[utoipa::path(get, path = "/payment/find_user/{user_id}", tag = "payment", operation_id = "payment_find_user",
    params(UserIdParam),
    responses((status = 200, description = "The user", body = User)))]
pub async fn find_user(call: Call, Path(user_id): Path<String>) -> Result<Json<User>, ApiError> {
    call.forward(FindUser {
        user_id: id("user_id", &user_id)?,
    })
    .await
}

/// Adds credit; refused (400) past a credit of 10^18.
#[utoipa::path(post, path = "/payment/add_funds/{user_id}/{amount}", tag = "payment", operation_id = "payment_add_funds",
    params(UserIdParam, AmountParam),
    responses((status = 200, description = "Done", body = FundsAdded)))]
pub async fn add_funds(
    call: Call,
    Path(segments): Path<(String, String)>,
) -> Result<Json<FundsAdded>, ApiError> {
    let (user_id, amount) = id_amount("user_id", segments)?;
    call.forward_as(AddFunds { user_id, amount }, |user| FundsAdded {
        done: true,
        credit: user.credit,
    })
    .await
}

/// Takes credit; refused (409) if it would go below zero.
#[utoipa::path(post, path = "/payment/pay/{user_id}/{amount}", tag = "payment", operation_id = "payment_pay",
    params(UserIdParam, AmountParam),
    responses((status = 200, description = "The user after the change", body = User)))]
pub async fn pay(
    call: Call,
    Path(segments): Path<(String, String)>,
) -> Result<Json<User>, ApiError> {
    let (user_id, amount) = id_amount("user_id", segments)?;
    call.forward(Pay { user_id, amount }).await
}

/// Creates or resets users `"0"`..`"n-1"` with this credit.
#[utoipa::path(post, path = "/payment/batch_init/{n}/{starting_money}", tag = "payment", operation_id = "payment_batch_init",
    params(("n" = i64, Path, minimum = 0, maximum = 10_000_000),
        ("starting_money" = i64, Path, minimum = 0, maximum = 1_000_000_000_000_000_000_i64)),
    responses((status = 200, description = "Done", body = BatchInitDone)))]
pub async fn batch_init(
    call: Call,
    Path((n, money)): Path<(String, String)>,
) -> Result<Json<BatchInitDone>, ApiError> {
    let req = BatchInit {
        n: count("n", &n, 0)?,
        starting_money: bounded("starting_money", &money, Balance::new)?.get(),
    };
    call.forward(req).await
}
