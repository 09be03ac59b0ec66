//! Orders in PostgreSQL: the one module that writes `orders` and
//! `order_lines`. The endpoints' statements are here, what the checkout
//! saga does to orders in [`checkout`], the benchmark reset in
//! [`batch_init`].

pub mod batch_init;
pub(crate) mod checkout;

use contracts::{
    ids::{ItemId, OrderId, UserId},
    limits::{Price, Quantity, MAX_AMOUNT, MAX_QUANTITY},
    messages::order::{LineAdded, Order},
};
use deadpool_postgres::{GenericClient, Pool};
use runtime::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("order {0} not found")]
    NotFound(OrderId),
    #[error("order {0} is already paid")]
    AlreadyPaid(OrderId),
    #[error("order {0} is being checked out")]
    CheckoutInFlight(OrderId),
    #[error(
        "order {order_id} already has the most lines an order may hold ({max}, ORDER_MAX_LINES)"
    )]
    TooManyLines { order_id: OrderId, max: usize },
    /// A documented bound (`contracts::limits`) would be passed.
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Db(DbError),
}

runtime::db_error_variant!(OrderError, OrderError::Db);

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// Most lines per order (`ORDER_MAX_LINES`).
    max_lines: usize,
}

impl Store {
    pub fn new(pool: Pool, max_lines: usize) -> Self {
        Self { pool, max_lines }
    }

    pub async fn create(&self, user_id: &UserId) -> Result<Order, OrderError> {
        let id = OrderId::new(uuid::Uuid::now_v7().to_string());
        let conn = runtime::db::get(&self.pool).await?;
        conn.execute(
            "INSERT INTO orders (id, user_id) VALUES ($1, $2)",
            &[&id.as_str(), &user_id.as_str()],
        )
        .await?;
        Ok(Order {
            order_id: id,
            paid: false,
            items: Vec::new(),
            user_id: user_id.clone(),
            total_cost: 0,
        })
    }

    pub async fn find(&self, id: &OrderId) -> Result<Order, OrderError> {
        let conn = runtime::db::get(&self.pool).await?;
        load(&conn, id).await
    }

    /// Appends a line and adds `quantity × unit_price` to the total, in one
    /// transaction, within the bounds: at most [`Store::max_lines`] lines,
    /// [`MAX_QUANTITY`] units of one item over the order and a total of
    /// [`MAX_AMOUNT`]. Rust checks them first; the statements check them
    /// again (and the table's `CHECK`s the line itself), so no path can
    /// store an order that overflows when it is checked out. Costs the same
    /// however many lines the order holds: the answer carries no lines.
    pub async fn add_item(
        &self,
        order_id: &OrderId,
        item_id: &ItemId,
        quantity: Quantity,
        unit_price: Price,
    ) -> Result<LineAdded, OrderError> {
        let (order_id, item_id) = (order_id.as_str(), item_id.as_str());
        let cost = unit_price.times(quantity).ok_or_else(|| {
            OrderError::Limit(format!(
                "{quantity} × {unit_price} is more than the highest total_cost, {MAX_AMOUNT}"
            ))
        })?;
        let (q, p, c) = (quantity.get(), unit_price.get(), cost.get());
        let max_lines = self.max_lines as i64;
        let mut conn = runtime::db::get(&self.pool).await?;
        let tx = conn.transaction().await?;
        // The lock first: the lines read next are then every line committed
        // before it, and no other addItem of this order runs meanwhile.
        let Some(order) = tx
            .query_opt(
                "SELECT paid, checkout_saga IS NOT NULL, total_cost FROM orders
                 WHERE id = $1 FOR UPDATE",
                &[&order_id],
            )
            .await?
        else {
            return Err(OrderError::NotFound(order_id.into()));
        };
        // The total is what checkout charges: it must not move under a
        // checkout in flight.
        if order.get::<_, bool>(0) {
            return Err(OrderError::AlreadyPaid(order_id.into()));
        }
        if order.get::<_, bool>(1) {
            return Err(OrderError::CheckoutInFlight(order_id.into()));
        }
        let total: i64 = order.get(2);
        let new_total = total
            .checked_add(c)
            .filter(|t| *t <= MAX_AMOUNT)
            .ok_or_else(|| {
                OrderError::Limit(format!(
                    "total_cost would exceed {MAX_AMOUNT} (it is {total}, the line costs {c})"
                ))
            })?;
        // Inserts only within the line and per-item bounds, and says where
        // the order stood (sums of BIGINT are NUMERIC here: no overflow).
        let row = tx
            .query_one(
                "WITH cur AS (
                     SELECT count(*) AS lines,
                            coalesce(sum(quantity) FILTER (WHERE item_id = $2), 0) AS item_qty
                     FROM order_lines WHERE order_id = $1
                 ), ins AS (
                     INSERT INTO order_lines (order_id, item_id, quantity, unit_price)
                     SELECT $1, $2, $3::bigint, $4::bigint FROM cur
                     WHERE cur.lines < $5::bigint AND cur.item_qty + $3::bigint <= $6::bigint
                     RETURNING 1
                 )
                 SELECT cur.lines, least(cur.item_qty, $6::bigint + 1)::bigint,
                        EXISTS (SELECT 1 FROM ins)
                 FROM cur",
                &[&order_id, &item_id, &q, &p, &max_lines, &MAX_QUANTITY],
            )
            .await?;
        let (lines, item_qty, inserted): (i64, i64, bool) = (row.get(0), row.get(1), row.get(2));
        if !inserted {
            return Err(if lines >= max_lines {
                OrderError::TooManyLines {
                    order_id: order_id.into(),
                    max: self.max_lines,
                }
            } else {
                OrderError::Limit(format!(
                    "the order would hold more than {MAX_QUANTITY} of item {item_id} (it holds {item_qty})"
                ))
            });
        }
        let updated = tx
            .execute(
                "UPDATE orders SET total_cost = total_cost + $2::bigint
                 WHERE id = $1 AND total_cost <= $3::bigint - $2::bigint",
                &[&order_id, &c, &MAX_AMOUNT],
            )
            .await?;
        if updated != 1 {
            // Only if the row changed under our lock, which it cannot.
            return Err(OrderError::Limit(format!(
                "total_cost would exceed {MAX_AMOUNT}"
            )));
        }
        tx.commit().await?;
        Ok(LineAdded {
            order_id: order_id.into(),
            lines: lines + 1,
            total_cost: new_total,
        })
    }

    /// Creates or resets orders `"0"`..`"n-1"` (see [`batch_init`]).
    pub async fn batch_init(
        &self,
        spec: batch_init::Spec,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<u64, runtime::setup::SetupError> {
        batch_init::run(&self.pool, spec, stop).await
    }
}

/// Reads an order with its lines in call order.
async fn load(conn: &impl GenericClient, order_id: &OrderId) -> Result<Order, OrderError> {
    let id = order_id.as_str();
    let Some(row) = conn
        .query_opt(
            "SELECT id, user_id, paid, total_cost FROM orders WHERE id = $1",
            &[&id],
        )
        .await?
    else {
        return Err(OrderError::NotFound(order_id.clone()));
    };
    let items = conn
        .query(
            "SELECT item_id, quantity FROM order_lines WHERE order_id = $1 ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| (ItemId::new(r.get::<_, String>(0)), r.get(1)))
        .collect();
    Ok(Order {
        order_id: OrderId::new(row.get::<_, String>("id")),
        paid: row.get("paid"),
        items,
        user_id: UserId::new(row.get::<_, String>("user_id")),
        total_cost: row.get("total_cost"),
    })
}
