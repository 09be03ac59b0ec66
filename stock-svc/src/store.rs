//! Items in PostgreSQL. Each operation is one statement, so each is atomic
//! and the CHECK constraints decide what is allowed.

use common::{db::DbError, messages::stock::Item};
use deadpool_postgres::Pool;
use tokio_postgres::Row;

#[derive(Debug, thiserror::Error)]
pub enum StockError {
    #[error("item {0} not found")]
    NotFound(String),
    #[error("insufficient stock for item {0}")]
    Insufficient(String),
    #[error(transparent)]
    Db(DbError),
}

common::db_error_variant!(StockError, StockError::Db);

#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

fn item(row: &Row) -> Item {
    Item {
        item_id: row.get("id"),
        stock: row.get("stock"),
        price: row.get("price"),
    }
}

impl Store {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub async fn create(&self, price: i64) -> Result<Item, StockError> {
        let id = uuid::Uuid::now_v7().to_string();
        let conn = common::db::get(&self.pool).await?;
        let row = conn
            .query_one(
                "INSERT INTO items (id, price) VALUES ($1, $2) RETURNING id, stock, price",
                &[&id, &price],
            )
            .await?;
        Ok(item(&row))
    }

    pub async fn find(&self, id: &str) -> Result<Item, StockError> {
        let conn = common::db::get(&self.pool).await?;
        conn.query_opt("SELECT id, stock, price FROM items WHERE id = $1", &[&id])
            .await?
            .map(|r| item(&r))
            .ok_or_else(|| StockError::NotFound(id.to_owned()))
    }

    /// Adds `delta` (negative to subtract). The CHECK refuses a negative
    /// result; BIGINT overflow surfaces as an out-of-range error.
    pub async fn adjust(&self, id: &str, delta: i64) -> Result<Item, StockError> {
        let conn = common::db::get(&self.pool).await?;
        let result = conn
            .query_opt(
                "UPDATE items SET stock = stock + $2 WHERE id = $1 RETURNING id, stock, price",
                &[&id, &delta],
            )
            .await
            .map_err(DbError::from);
        match result {
            Ok(Some(row)) => Ok(item(&row)),
            Ok(None) => Err(StockError::NotFound(id.to_owned())),
            Err(e) if e.is_check_violation() => Err(StockError::Insufficient(id.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates or resets items `"0"`..`"n-1"` in one statement; rows that
    /// already hold the values are left alone, so a re-init writes only what
    /// changed. Concurrent inits run one after the other.
    pub async fn batch_init(&self, n: i64, stock: i64, price: i64) -> Result<(), StockError> {
        let mut conn = common::db::get(&self.pool).await?;
        let tx = conn.transaction().await?;
        common::db::lock_batch_init(&tx).await?;
        tx.execute(
            "INSERT INTO items (id, stock, price)
             SELECT g::text, $2::bigint, $3::bigint FROM generate_series(0, $1::bigint - 1) AS g
             ON CONFLICT (id) DO UPDATE SET stock = EXCLUDED.stock, price = EXCLUDED.price
             WHERE (items.stock, items.price) IS DISTINCT FROM (EXCLUDED.stock, EXCLUDED.price)",
            &[&n, &stock, &price],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
