//! Orders in PostgreSQL.

use common::{db::DbError, messages::order::Order};
use deadpool_postgres::{GenericClient, Pool};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("order {0} not found")]
    NotFound(String),
    #[error("order {0} is already paid")]
    AlreadyPaid(String),
    #[error("order {0} is being checked out")]
    CheckoutInFlight(String),
    #[error(transparent)]
    Db(DbError),
}

common::db_error_variant!(OrderError, OrderError::Db);

#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub async fn create(&self, user_id: &str) -> Result<Order, OrderError> {
        let id = uuid::Uuid::now_v7().to_string();
        let conn = common::db::get(&self.pool).await?;
        conn.execute(
            "INSERT INTO orders (id, user_id) VALUES ($1, $2)",
            &[&id, &user_id],
        )
        .await?;
        Ok(Order {
            order_id: id,
            paid: false,
            items: Vec::new(),
            user_id: user_id.to_owned(),
            total_cost: 0,
        })
    }

    pub async fn find(&self, id: &str) -> Result<Order, OrderError> {
        let conn = common::db::get(&self.pool).await?;
        load(&conn, id).await
    }

    /// Which of `ids` are sagas not final yet. A saga not found is final:
    /// only final sagas are ever purged, and a saga exists before any of
    /// its steps is sent.
    pub async fn unfinished(&self, ids: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, OrderError> {
        let conn = common::db::get(&self.pool).await?;
        let rows = common::db::query(
            &conn,
            "SELECT id FROM sagas WHERE id = ANY($1) AND state NOT IN ('succeeded', 'failed')",
            &[&ids],
        )
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Appends a line and adds `quantity × unit_price` to the total, in one
    /// transaction. The multiplication happens in SQL so that an overflow is
    /// an out-of-range error, not a wrapped number.
    pub async fn add_item(
        &self,
        order_id: &str,
        item_id: &str,
        quantity: i64,
        unit_price: i64,
    ) -> Result<Order, OrderError> {
        let mut conn = common::db::get(&self.pool).await?;
        let tx = conn.transaction().await?;
        let updated = tx
            .query_opt(
                "UPDATE orders SET total_cost = total_cost + $2::bigint * $3::bigint
                 WHERE id = $1 AND NOT paid AND checkout_saga IS NULL RETURNING id",
                &[&order_id, &quantity, &unit_price],
            )
            .await?;
        if updated.is_none() {
            let state = tx
                .query_opt("SELECT paid FROM orders WHERE id = $1", &[&order_id])
                .await?;
            // The total is what checkout charges: it must not move under a
            // checkout in flight.
            return Err(match state {
                Some(row) if row.get::<_, bool>(0) => OrderError::AlreadyPaid(order_id.to_owned()),
                Some(_) => OrderError::CheckoutInFlight(order_id.to_owned()),
                None => OrderError::NotFound(order_id.to_owned()),
            });
        }
        tx.execute(
            "INSERT INTO order_lines (order_id, item_id, quantity, unit_price)
             VALUES ($1, $2, $3, $4)",
            &[&order_id, &item_id, &quantity, &unit_price],
        )
        .await?;
        let order = load(&tx, order_id).await?;
        tx.commit().await?;
        Ok(order)
    }

    /// Creates or resets orders `"0"`..`"n-1"` (see [`crate::batch_init`]).
    pub async fn batch_init(
        &self,
        spec: crate::batch_init::Spec,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<u64, common::setup::SetupError> {
        crate::batch_init::run(&self.pool, spec, stop).await
    }
}

/// Reads an order with its lines in call order.
async fn load(conn: &impl GenericClient, id: &str) -> Result<Order, OrderError> {
    let Some(row) = conn
        .query_opt(
            "SELECT id, user_id, paid, total_cost FROM orders WHERE id = $1",
            &[&id],
        )
        .await?
    else {
        return Err(OrderError::NotFound(id.to_owned()));
    };
    let items = conn
        .query(
            "SELECT item_id, quantity FROM order_lines WHERE order_id = $1 ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Order {
        order_id: row.get("id"),
        paid: row.get("paid"),
        items,
        user_id: row.get("user_id"),
        total_cost: row.get("total_cost"),
    })
}
