//! The `payment` endpoints: requests and their responses.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct User {
    #[schema(value_type = String)]
    pub user_id: UserId,
    pub credit: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateUser {}
endpoint!(CreateUser => User, "payment", "create_user", idempotent: false);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FindUser {
    pub user_id: UserId,
}
endpoint!(FindUser => User, "payment", "find_user", idempotent: true);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddFunds {
    pub user_id: UserId,
    pub amount: i64,
}
endpoint!(AddFunds => User, "payment", "add_funds", idempotent: false);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pay {
    pub user_id: UserId,
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
