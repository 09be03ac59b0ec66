//! Users in PostgreSQL. Each operation is one statement, so each is atomic
//! and the CHECK constraint decides whether credit suffices.

use common::{db::DbError, messages::payment::User};
use deadpool_postgres::Pool;
use tokio_postgres::Row;

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("user {0} not found")]
    NotFound(String),
    #[error("insufficient credit for user {0}")]
    Insufficient(String),
    #[error(transparent)]
    Db(DbError),
}

common::db_error_variant!(PaymentError, PaymentError::Db);

#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

fn user(row: &Row) -> User {
    User {
        user_id: row.get("id"),
        credit: row.get("credit"),
    }
}

impl Store {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub async fn create(&self) -> Result<User, PaymentError> {
        let id = uuid::Uuid::now_v7().to_string();
        let conn = common::db::get(&self.pool).await?;
        let row = conn
            .query_one(
                "INSERT INTO users (id) VALUES ($1) RETURNING id, credit",
                &[&id],
            )
            .await?;
        Ok(user(&row))
    }

    pub async fn find(&self, id: &str) -> Result<User, PaymentError> {
        let conn = common::db::get(&self.pool).await?;
        conn.query_opt("SELECT id, credit FROM users WHERE id = $1", &[&id])
            .await?
            .map(|r| user(&r))
            .ok_or_else(|| PaymentError::NotFound(id.to_owned()))
    }

    /// Adds `delta` to the credit (negative to pay).
    pub async fn adjust(&self, id: &str, delta: i64) -> Result<User, PaymentError> {
        let conn = common::db::get(&self.pool).await?;
        let result = conn
            .query_opt(
                "UPDATE users SET credit = credit + $2 WHERE id = $1 RETURNING id, credit",
                &[&id, &delta],
            )
            .await
            .map_err(DbError::from);
        match result {
            Ok(Some(row)) => Ok(user(&row)),
            Ok(None) => Err(PaymentError::NotFound(id.to_owned())),
            Err(e) if e.is_check_violation() => Err(PaymentError::Insufficient(id.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates or resets users `"0"`..`"n-1"` in one statement; rows that
    /// already hold the credit are left alone, so a re-init writes only what
    /// changed. Concurrent inits run one after the other.
    pub async fn batch_init(&self, n: i64, credit: i64) -> Result<(), PaymentError> {
        let mut conn = common::db::get(&self.pool).await?;
        let tx = conn.transaction().await?;
        common::db::lock_batch_init(&tx).await?;
        tx.execute(
            "INSERT INTO users (id, credit)
             SELECT g::text, $2::bigint FROM generate_series(0, $1::bigint - 1) AS g
             ON CONFLICT (id) DO UPDATE SET credit = EXCLUDED.credit
             WHERE users.credit IS DISTINCT FROM EXCLUDED.credit",
            &[&n, &credit],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
