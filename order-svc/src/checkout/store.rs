//! The saga consumers' statements: sagas and orders read under lock and
//! written back set-based, one statement per kind of change.

use std::collections::{BTreeMap, HashMap};

use contracts::messages::saga::{FailureReason, StepOutcome};
use deadpool_postgres::GenericClient;
use runtime::db;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::CheckoutError;
use crate::saga::{Saga, State};

pub(super) struct OrderRow {
    pub(super) user_id: String,
    pub(super) paid: bool,
    pub(super) total_cost: i64,
    pub(super) checkout_saga: Option<Uuid>,
    pub(super) items: Vec<(String, i64)>,
    /// An item whose quantities sum past the 64-bit range: the order cannot
    /// be checked out (see [`OrderRow::invalid`]).
    pub(super) overflowing: Option<String>,
}

impl OrderRow {
    /// Why the order cannot be checked out as it is, if it cannot.
    pub(super) fn invalid(&self, order_id: &str) -> Option<CheckoutError> {
        self.overflowing
            .as_ref()
            .map(|item_id| CheckoutError::InvalidOrder {
                order_id: order_id.to_owned(),
                item_id: item_id.clone(),
            })
    }
}

impl OrderRow {
    /// Inside the bounds a checkout needs (`contracts::limits`): its step
    /// command fits a message and its sums fit BIGINT. Orders stored since
    /// the bounds always are; one stored before them (or before
    /// `ORDER_MAX_LINES` was lowered) fails its checkout alone
    /// (`invalid_order`). A sum past BIGINT is [`OrderRow::invalid`]'s.
    pub(super) fn within_bounds(&self, max_lines: usize) -> bool {
        use contracts::limits::{MAX_AMOUNT, MAX_QUANTITY};
        self.items.len() <= max_lines
            && self.total_cost <= MAX_AMOUNT
            && self.items.iter().all(|(_, q)| *q <= MAX_QUANTITY)
    }
}

const SAGA_COLUMNS: &str = "id, order_id, user_id, amount, items, state, reserve, charge, released, refunded, reason, created_at";

fn saga_from_row(row: &Row) -> Saga {
    let outcome = |col: &str| row.get::<_, Option<&str>>(col).and_then(StepOutcome::parse);
    let items: Value = row.get("items");
    Saga {
        id: row.get("id"),
        order_id: row.get("order_id"),
        user_id: row.get("user_id"),
        amount: row.get("amount"),
        items: serde_json::from_value(items).unwrap_or_default(),
        state: State::parse(row.get("state")),
        reserve: outcome("reserve"),
        charge: outcome("charge"),
        released: row.get("released"),
        refunded: row.get("refunded"),
        reason: row
            .get::<_, Option<&str>>("reason")
            .and_then(FailureReason::parse),
        created_at: row.get("created_at"),
    }
}

fn by_id(rows: Vec<Row>) -> HashMap<Uuid, Saga> {
    rows.iter()
        .map(|r| {
            let s = saga_from_row(r);
            (s.id, s)
        })
        .collect()
}

pub(super) async fn load_sagas(
    tx: &impl GenericClient,
    ids: &[Uuid],
    lock: bool,
) -> Result<HashMap<Uuid, Saga>, CheckoutError> {
    let sql = if lock {
        select_sagas(SAGA_COLUMNS, "WHERE id = ANY($1) ORDER BY id FOR UPDATE")
    } else {
        select_sagas(SAGA_COLUMNS, "WHERE id = ANY($1)")
    };
    Ok(by_id(db::query(tx, &sql, &[&ids]).await?))
}

fn select_sagas(columns: &str, rest: &str) -> String {
    format!("SELECT {columns} FROM sagas {rest}")
}

/// Locks the orders (in ID order: no deadlocks between replicas) and reads
/// them with their lines summed per item, in one round trip.
pub(super) async fn load_orders(
    tx: &impl GenericClient,
    order_ids: &[String],
) -> Result<HashMap<String, OrderRow>, CheckoutError> {
    // Pipelined on the one connection: PostgreSQL runs the lines query only
    // after the locking one returned, with a snapshot taken then, so the
    // lines still match the locked `total_cost`.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&order_ids];
    let (locked, lines) = futures::try_join!(
        db::query(
            tx,
            "SELECT id, user_id, paid, total_cost, checkout_saga FROM orders
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &params,
        ),
        db::query(
            tx,
            // Summed as numeric, so a sum past the BIGINT range is reported
            // (NULL) instead of failing the whole statement.
            "SELECT order_id, item_id, CASE WHEN sum(quantity) <= 9223372036854775807
                                            THEN sum(quantity)::bigint END
             FROM order_lines
             WHERE order_id = ANY($1) GROUP BY order_id, item_id ORDER BY order_id, min(id)",
            &params,
        ),
    )?;
    let mut orders: HashMap<String, OrderRow> = locked
        .iter()
        .map(|row| {
            (
                row.get(0),
                OrderRow {
                    user_id: row.get(1),
                    paid: row.get(2),
                    total_cost: row.get(3),
                    checkout_saga: row.get(4),
                    items: Vec::new(),
                    overflowing: None,
                },
            )
        })
        .collect();
    for row in &lines {
        if let Some(o) = orders.get_mut(row.get::<_, &str>(0)) {
            match row.get::<_, Option<i64>>(2) {
                Some(quantity) => o.items.push((row.get(1), quantity)),
                None => o.overflowing = o.overflowing.take().or(Some(row.get(1))),
            }
        }
    }
    Ok(orders)
}

/// Frees the orders of finished sagas, paying those that succeeded.
pub(super) async fn finish_orders(
    tx: &impl GenericClient,
    finished: &[(String, Uuid, bool)],
) -> Result<(), CheckoutError> {
    if finished.is_empty() {
        return Ok(());
    }
    let mut sorted = finished.to_vec();
    sorted.sort();
    let (mut o, mut s, mut p) = (Vec::new(), Vec::new(), Vec::new());
    for (order, saga, paid) in &sorted {
        o.push(order.as_str());
        s.push(*saga);
        p.push(*paid);
    }
    let freed = db::execute(
        tx,
        "UPDATE orders AS o SET paid = o.paid OR x.p, checkout_saga = NULL
         FROM unnest($1::text[], $2::uuid[], $3::bool[]) AS x(oid, sid, p)
         WHERE o.id = x.oid AND o.checkout_saga = x.sid",
        &[&o, &s, &p],
    )
    .await?;
    if freed != sorted.len() as u64 {
        // Only a reset of the order (batch_init) takes it away from its saga.
        tracing::warn!(
            finished = sorted.len(),
            freed,
            "some finished sagas no longer held their order (was it re-initialised?)"
        );
    }
    Ok(())
}

/// The queued checkouts of these orders that can go now: on a paid order
/// every queued one succeeds at once (already paid); on a free unpaid one
/// the first starts with the order as it is now and the rest keep waiting;
/// on an order another checkout holds they all keep waiting.
pub(super) async fn next_in_queue(
    tx: &impl GenericClient,
    order_ids: &[String],
    max_lines: usize,
) -> Result<Vec<Saga>, CheckoutError> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    let queued = db::query(
        tx,
        &select_sagas(
            SAGA_COLUMNS,
            "WHERE order_id = ANY($1) AND state = 'queued' ORDER BY order_id, id FOR UPDATE",
        ),
        &[&order_ids],
    )
    .await?;
    if queued.is_empty() {
        return Ok(Vec::new());
    }
    let mut per_order: BTreeMap<String, Vec<Saga>> = BTreeMap::new();
    for row in &queued {
        let saga = saga_from_row(row);
        per_order
            .entry(saga.order_id.clone())
            .or_default()
            .push(saga);
    }
    let waiting: Vec<String> = per_order.keys().cloned().collect();
    let orders = load_orders(tx, &waiting).await?;
    let mut next = Vec::new();
    for (order_id, sagas) in per_order {
        match orders.get(&order_id) {
            Some(order) if order.paid => {
                for mut saga in sagas {
                    saga.finish_queued_as_paid();
                    next.push(saga);
                }
            }
            Some(order)
                if order.checkout_saga.is_none()
                    && (order.overflowing.is_some() || !order.within_bounds(max_lines)) =>
            {
                // It can never start: every checkout waiting for it fails.
                for saga in sagas {
                    next.push(Saga {
                        created_at: saga.created_at,
                        ..Saga::finished(saga.id, &order_id, Some(FailureReason::InvalidOrder))
                    });
                }
            }
            Some(order) if order.checkout_saga.is_none() => {
                if let Some(mut first) = sagas.into_iter().next() {
                    first.start_queued(&order.user_id, order.total_cost, order.items.clone());
                    next.push(first);
                }
            }
            Some(_) => {}
            None => {
                for saga in sagas {
                    next.push(Saga {
                        created_at: saga.created_at,
                        ..Saga::finished(saga.id, &order_id, Some(FailureReason::OrderNotFound))
                    });
                }
            }
        }
    }
    Ok(next)
}

/// What a redelivered step result of these (compensating or final) sagas
/// may have to send again, the batch that first recorded it having died
/// between its commit and its publishes: each saga itself; the saga now
/// holding its order (running or compensating: e.g. the queued checkout
/// that batch started); and the sagas of its order that batch finished
/// with it (queued ones ended as already paid, or failed with it), which
/// share its `completed_at` (`now()`, the transaction's time). All of it
/// is idempotent downstream (ledgers keyed by saga ID; `api` finalises only
/// pending records). Uses `sagas_by_order`.
pub(super) async fn resend_candidates(
    tx: &impl GenericClient,
    ids: &[Uuid],
) -> Result<Vec<Saga>, CheckoutError> {
    let rows = db::query(
        tx,
        &select_sagas(
            SAGA_COLUMNS,
            "WHERE id IN (
                SELECT s.id FROM sagas AS r JOIN sagas AS s ON s.order_id = r.order_id
                WHERE r.id = ANY($1)
                  AND (s.id = r.id OR s.state IN ('running', 'compensating')
                       OR s.completed_at = r.completed_at))
             ORDER BY id",
        ),
        &[&ids],
    )
    .await?;
    Ok(rows.iter().map(saga_from_row).collect())
}

/// Marks the orders of the sagas among `sagas` that run as having their
/// checkout in flight.
pub(super) async fn set_checkout_sagas<'a>(
    tx: &impl GenericClient,
    sagas: impl Iterator<Item = &'a Saga>,
) -> Result<(), CheckoutError> {
    let (o, s): (Vec<&str>, Vec<Uuid>) = sagas
        .filter(|s| s.state == State::Running)
        .map(|s| (s.order_id.as_str(), s.id))
        .unzip();
    if o.is_empty() {
        return Ok(());
    }
    let n = db::execute(
        tx,
        "UPDATE orders SET checkout_saga = x.s
         FROM unnest($1::text[], $2::uuid[]) AS x(o, s) WHERE id = x.o",
        &[&o, &s],
    )
    .await?;
    if n != o.len() as u64 {
        return Err(CheckoutError::Inconsistent(format!(
            "{n} of {} orders took their checkout",
            o.len()
        )));
    }
    Ok(())
}

/// Keeps what a consumer could not apply for an operator to inspect.
pub(super) async fn dead_letter(
    tx: &impl GenericClient,
    consumer: &str,
    reason: &str,
    payloads: &[Value],
) -> Result<(), CheckoutError> {
    db::execute(
        tx,
        "INSERT INTO dead_letters (consumer, reason, payload)
         SELECT $1, $2, p FROM unnest($3::jsonb[]) AS p",
        &[&consumer, &reason, &payloads],
    )
    .await?;
    Ok(())
}

/// Ends a checkout that cannot be applied as failed (`invalid_order`),
/// unless it already has a saga (then that saga stands). True when this
/// call ended it.
pub(super) async fn insert_rejected_saga(
    tx: &impl GenericClient,
    id: Uuid,
    order_id: &str,
) -> Result<bool, CheckoutError> {
    let inserted = db::execute(
        tx,
        "INSERT INTO sagas (id, order_id, state, reason, completed_at)
         VALUES ($1, $2, 'failed', $3, now()) ON CONFLICT (id) DO NOTHING",
        &[&id, &order_id, &FailureReason::InvalidOrder.as_str()],
    )
    .await?;
    Ok(inserted == 1)
}

pub(super) async fn insert_sagas<'a>(
    tx: &impl GenericClient,
    sagas: impl Iterator<Item = &'a Saga>,
) -> Result<(), CheckoutError> {
    let (mut id, mut order, mut user, mut amount, mut items, mut state, mut reason) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for s in sagas {
        id.push(s.id);
        order.push(s.order_id.as_str());
        user.push(s.user_id.as_deref());
        amount.push(s.amount);
        items.push(serde_json::to_value(&s.items).unwrap_or(Value::Null));
        state.push(s.state.as_str());
        reason.push(s.reason.map(FailureReason::as_str));
    }
    db::execute(
        tx,
        "INSERT INTO sagas (id, order_id, user_id, amount, items, state, reason, completed_at)
         SELECT i, o, u, a, it, s, r, CASE WHEN s IN ('succeeded', 'failed') THEN now() END
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[], $6::text[], $7::text[])
              AS x(i, o, u, a, it, s, r)",
        &[&id, &order, &user, &amount, &items, &state, &reason],
    )
    .await?;
    Ok(())
}

/// Writes back the sagas a batch changed: `advanced` ones (a step result
/// moved them on) get their step and state columns; `started` ones (queued
/// until now) also get the user, amount and items read from their order.
pub(super) async fn update_sagas(
    tx: &impl GenericClient,
    advanced: &[Saga],
    started: &[Saga],
) -> Result<(), CheckoutError> {
    let sagas: Vec<&Saga> = advanced.iter().chain(started).collect();
    if sagas.is_empty() {
        return Ok(());
    }
    let id: Vec<Uuid> = sagas.iter().map(|s| s.id).collect();
    // NULL keeps what the row has (see the coalesce below).
    let keep = advanced.len();
    let user: Vec<Option<&str>> = sagas
        .iter()
        .enumerate()
        .map(|(i, s)| if i < keep { None } else { s.user_id.as_deref() })
        .collect();
    let amount: Vec<Option<i64>> = sagas
        .iter()
        .enumerate()
        .map(|(i, s)| (i >= keep).then_some(s.amount))
        .collect();
    let items: Vec<Option<Value>> = sagas
        .iter()
        .enumerate()
        .map(|(i, s)| (i >= keep).then(|| serde_json::to_value(&s.items).unwrap_or(Value::Null)))
        .collect();
    let state: Vec<&str> = sagas.iter().map(|s| s.state.as_str()).collect();
    let reserve: Vec<Option<&str>> = sagas
        .iter()
        .map(|s| s.reserve.map(StepOutcome::as_str))
        .collect();
    let charge: Vec<Option<&str>> = sagas
        .iter()
        .map(|s| s.charge.map(StepOutcome::as_str))
        .collect();
    let released: Vec<bool> = sagas.iter().map(|s| s.released).collect();
    let refunded: Vec<bool> = sagas.iter().map(|s| s.refunded).collect();
    let reason: Vec<Option<&str>> = sagas
        .iter()
        .map(|s| s.reason.map(FailureReason::as_str))
        .collect();
    let n = db::execute(
        tx,
        "UPDATE sagas AS s SET user_id = coalesce(x.u, s.user_id), amount = coalesce(x.a, s.amount),
                items = coalesce(x.it, s.items), state = x.st,
                reserve = x.re, charge = x.ch, released = x.rl, refunded = x.rf, reason = x.rs,
                completed_at = CASE WHEN x.st IN ('succeeded', 'failed')
                                    THEN coalesce(s.completed_at, now()) END
         FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::jsonb[], $5::text[], $6::text[],
                     $7::text[], $8::bool[], $9::bool[], $10::text[])
              AS x(id, u, a, it, st, re, ch, rl, rf, rs)
         WHERE s.id = x.id",
        &[
            &id, &user, &amount, &items, &state, &reserve, &charge, &released, &refunded, &reason,
        ],
    )
    .await?;
    if n != sagas.len() as u64 {
        // They were read under lock in this transaction: a mismatch is a bug.
        return Err(CheckoutError::Inconsistent(format!(
            "{n} of {} saga rows updated",
            sagas.len()
        )));
    }
    Ok(())
}
