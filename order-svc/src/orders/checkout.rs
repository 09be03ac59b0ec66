//! What the checkout saga reads and writes of `orders`: the orders of a
//! batch read under lock with their lines summed per item, taken by the
//! saga that starts on them, and freed (and paid) when it ends.

use std::collections::HashMap;

use contracts::{
    ids::{ItemId, OrderId, UserId},
    limits::{Amount, Quantity},
};
use runtime::db::{Mismatch, Stmt};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::saga::machine::{Basket, Saga, State};

/// An order as the saga reads it (under lock).
pub(crate) struct OrderRow {
    pub(crate) user_id: UserId,
    pub(crate) paid: bool,
    pub(crate) total_cost: i64,
    pub(crate) checkout_saga: Option<Uuid>,
    /// Quantity per item, summed over the order's lines.
    pub(crate) items: Vec<(ItemId, i64)>,
    /// An item whose quantities sum past the 64-bit range: the order cannot
    /// be checked out (it is missing from `items`).
    pub(crate) overflowing: Option<ItemId>,
}

impl OrderRow {
    /// What a checkout of the order takes, if the order is inside the
    /// bounds a checkout needs (`contracts::limits`: its step command fits a
    /// message and its sums fit BIGINT). Orders stored since the bounds
    /// always are; one stored before them (or before `ORDER_MAX_LINES` was
    /// lowered) fails its checkout alone (`invalid_order`). A sum past
    /// BIGINT is [`OrderRow::overflowing`]'s.
    pub(crate) fn basket(&self, max_lines: usize) -> Option<Basket> {
        if self.items.len() > max_lines {
            return None;
        }
        Some(Basket {
            user_id: self.user_id.clone(),
            amount: Amount::new("total_cost", self.total_cost).ok()?,
            items: self
                .items
                .iter()
                .map(|(item, q)| Some((item.clone(), Quantity::new("quantity", *q).ok()?)))
                .collect::<Option<_>>()?,
        })
    }
}

/// The two reads of [`orders_from`]: the orders, locked in ID order, and
/// their lines summed per item (`NULL` where a sum leaves the 64-bit range),
/// sent together.
pub(crate) fn read_orders(order_ids: &[OrderId]) -> [Stmt<'static>; 2] {
    let ids: Vec<String> = order_ids.iter().map(|o| o.as_str().to_owned()).collect();
    [
        Stmt::new(
            "SELECT id, user_id, paid, total_cost, checkout_saga FROM orders
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(ids.clone()),
        Stmt::new(
            "SELECT order_id, item_id, CASE WHEN sum(quantity) <= 9223372036854775807
                                            THEN sum(quantity)::bigint END
             FROM order_lines
             WHERE order_id = ANY($1) GROUP BY order_id, item_id ORDER BY order_id, min(id)",
        )
        .bind(ids),
    ]
}

/// The orders read by [`read_orders`], with their lines.
pub(crate) fn orders_from(locked: &[Row], lines: &[Row]) -> HashMap<OrderId, OrderRow> {
    let mut orders: HashMap<OrderId, OrderRow> = locked
        .iter()
        .map(|row| {
            (
                OrderId::new(row.get::<_, String>(0)),
                OrderRow {
                    user_id: UserId::new(row.get::<_, String>(1)),
                    paid: row.get(2),
                    total_cost: row.get(3),
                    checkout_saga: row.get(4),
                    items: Vec::new(),
                    overflowing: None,
                },
            )
        })
        .collect();
    for row in lines {
        if let Some(o) = orders.get_mut(row.get::<_, &str>(0)) {
            let item = ItemId::new(row.get::<_, String>(1));
            match row.get::<_, Option<i64>>(2) {
                Some(quantity) => o.items.push((item, quantity)),
                None => o.overflowing = o.overflowing.take().or(Some(item)),
            }
        }
    }
    orders
}

/// A saga that ended, as its order sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ended {
    pub(crate) order_id: OrderId,
    pub(crate) saga_id: Uuid,
    /// It succeeded: the order is paid.
    pub(crate) paid: bool,
}

impl Ended {
    /// The ending of a final saga; None for one still under way.
    pub(crate) fn of(saga: &Saga) -> Option<Self> {
        saga.state.is_final().then(|| Ended {
            order_id: saga.order_id.clone(),
            saga_id: saga.id,
            paid: saga.state == State::Succeeded,
        })
    }
}

/// Frees the orders of finished sagas, paying those that succeeded (none:
/// nothing to do). An order that no longer names the saga (re-initialised
/// meanwhile) is left alone: compare the rows changed with `ended.len()`.
pub(crate) fn finish_orders(ended: &[Ended]) -> Option<Stmt<'static>> {
    if ended.is_empty() {
        return None;
    }
    // In ID order, as everywhere orders are locked: no deadlocks.
    let mut sorted: Vec<&Ended> = ended.iter().collect();
    sorted.sort();
    let (mut o, mut s, mut p) = (Vec::new(), Vec::new(), Vec::new());
    for e in &sorted {
        o.push(e.order_id.as_str().to_owned());
        s.push(e.saga_id);
        p.push(e.paid);
    }
    Some(
        Stmt::new(
            "UPDATE orders AS o SET paid = o.paid OR x.p, checkout_saga = NULL
             FROM unnest($1::text[], $2::uuid[], $3::bool[]) AS x(oid, sid, p)
             WHERE o.id = x.oid AND o.checkout_saga = x.sid",
        )
        .bind(o)
        .bind(s)
        .bind(p),
    )
}

/// Gives each running saga of `sagas` its order (none: nothing to do). The
/// orders were read and locked in this transaction, so each must be there;
/// if one is not, the transaction fails.
pub(crate) fn set_checkout_sagas<'a>(
    sagas: impl Iterator<Item = &'a Saga>,
) -> Option<Stmt<'static>> {
    let (o, s): (Vec<String>, Vec<Uuid>) = sagas
        .filter(|s| s.state == State::Running)
        .map(|s| (s.order_id.as_str().to_owned(), s.id))
        .unzip();
    if o.is_empty() {
        return None;
    }
    let n = o.len() as u64;
    Some(
        Stmt::new(
            "UPDATE orders SET checkout_saga = x.s
             FROM unnest($1::text[], $2::uuid[]) AS x(o, s) WHERE id = x.o",
        )
        .bind(o)
        .bind(s)
        .expect_rows(
            n,
            Mismatch::Inconsistent("orders that should take their checkout are missing".into()),
        ),
    )
}
