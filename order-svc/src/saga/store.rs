//! The `sagas` (and `dead_letters`) statements: sagas read under lock and
//! written back set-based, one statement per kind of change. A stored row
//! that is not a saga (an unknown spelling, a running saga without what it
//! took) is an error naming it, never read as something else.

use std::collections::{BTreeMap, HashMap};

use contracts::{
    ids::{OrderId, UserId},
    limits::Amount,
    messages::saga::{CheckoutOutcome, FailureReason, StepOutcome, Verdict},
};
use deadpool_postgres::GenericClient;
use runtime::db::{self, Mismatch, Stmt, Tx};
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{
    error::{CheckoutError, StoredSagaError},
    Basket, Saga, State,
};
use crate::orders::checkout::{orders_from, read_orders};

const SAGA_COLUMNS: &str = "id, order_id, user_id, amount, items, state, reserve, charge, released, refunded, reason, created_at, completed_at";

fn saga_from_row(row: &Row) -> Result<Saga, CheckoutError> {
    let id: Uuid = row.get("id");
    read_saga(id, row).map_err(|source| {
        // Not a transient fault, and no answer can be given from it: the
        // consumer isolates the item and an operator has to look.
        tracing::error!(saga_id = %id, error = %source, "stored saga cannot be read");
        CheckoutError::StoredSaga { id, source }
    })
}

fn read_saga(id: Uuid, row: &Row) -> Result<Saga, StoredSagaError> {
    let outcome = |col: &str| {
        row.get::<_, Option<&str>>(col)
            .map(StepOutcome::parse)
            .transpose()
    };
    let state = State::parse(row.get("state"), row.get("reason"))?;
    let basket = match row.get::<_, Option<String>>("user_id") {
        Some(user_id) => Some(Basket {
            user_id: UserId::new(user_id),
            amount: Amount::try_from(row.get::<_, i64>("amount"))?,
            items: serde_json::from_value(row.get("items"))?,
        }),
        // A saga that never started took nothing.
        None if matches!(state, State::Running | State::Compensating(_)) => {
            return Err(StoredSagaError::NotStarted(state.as_str()))
        }
        None => None,
    };
    Ok(Saga {
        id,
        order_id: OrderId::new(row.get::<_, String>("order_id")),
        basket,
        state,
        reserve: outcome("reserve")?,
        charge: outcome("charge")?,
        released: row.get("released"),
        refunded: row.get("refunded"),
        created_at: row.get("created_at"),
        completed_at: row.get("completed_at"),
    })
}

/// Reads the sagas `ids` (those that exist), locked in ID order if `lock`;
/// see [`sagas_from`].
pub(super) fn read_sagas(ids: &[Uuid], lock: bool) -> Stmt<'static> {
    Stmt::new(sagas_sql(lock)).bind(ids.to_vec())
}

/// The sagas read by [`read_sagas`], by ID.
pub(super) fn sagas_from(rows: &[Row]) -> Result<HashMap<Uuid, Saga>, CheckoutError> {
    rows.iter()
        .map(|r| saga_from_row(r).map(|s| (s.id, s)))
        .collect()
}

/// [`read_sagas`] on its own (a rare path: one round trip).
pub(super) async fn load_sagas(
    tx: &impl GenericClient,
    ids: &[Uuid],
    lock: bool,
) -> Result<HashMap<Uuid, Saga>, CheckoutError> {
    sagas_from(&db::query(tx, &sagas_sql(lock), &[&ids]).await?)
}

fn sagas_sql(lock: bool) -> String {
    if lock {
        select_sagas(SAGA_COLUMNS, "WHERE id = ANY($1) ORDER BY id FOR UPDATE")
    } else {
        select_sagas(SAGA_COLUMNS, "WHERE id = ANY($1)")
    }
}

fn select_sagas(columns: &str, rest: &str) -> String {
    format!("SELECT {columns} FROM sagas {rest}")
}

/// The queued checkouts of these orders that can go now: on a paid order
/// every queued one succeeds at once (already paid); on a free unpaid one
/// the first starts with the order as it is now and the rest keep waiting;
/// on an order another checkout holds they all keep waiting.
pub(super) async fn next_in_queue(
    tx: &Tx,
    queued: &[Row],
    max_lines: usize,
) -> Result<Vec<Saga>, CheckoutError> {
    if queued.is_empty() {
        return Ok(Vec::new());
    }
    let mut per_order: BTreeMap<OrderId, Vec<Saga>> = BTreeMap::new();
    for row in queued {
        let saga = saga_from_row(row)?;
        per_order
            .entry(saga.order_id.clone())
            .or_default()
            .push(saga);
    }
    let waiting: Vec<OrderId> = per_order.keys().cloned().collect();
    let [locked, lines] = read_orders(&waiting);
    let read = tx.run(&[&locked, &lines]).await?;
    let orders = match &read[..] {
        [locked, lines] => orders_from(&locked.rows, &lines.rows),
        _ => {
            return Err(CheckoutError::Inconsistent(
                "two reads, not two answers".into(),
            ))
        }
    };
    let mut next = Vec::new();
    for (order_id, sagas) in per_order {
        match orders.get(&order_id) {
            Some(order) if order.paid => {
                for mut saga in sagas {
                    saga.finish_queued_as_paid();
                    next.push(saga);
                }
            }
            Some(order) if order.checkout_saga.is_none() => {
                match order
                    .basket(max_lines)
                    .filter(|_| order.overflowing.is_none())
                {
                    Some(basket) => {
                        if let Some(mut first) = sagas.into_iter().next() {
                            first.start_queued(basket);
                            next.push(first);
                        }
                    }
                    None => next.extend(fail_all(sagas, FailureReason::InvalidOrder)),
                }
            }
            Some(_) => {}
            None => next.extend(fail_all(sagas, FailureReason::OrderNotFound)),
        }
    }
    Ok(next)
}

/// Reads (and locks) the queued sagas of `order_ids`, for [`next_in_queue`]
/// (none: nothing to read).
pub(super) fn read_queued(order_ids: &[OrderId]) -> Option<Stmt<'static>> {
    if order_ids.is_empty() {
        return None;
    }
    Some(
        Stmt::new(select_sagas(
            SAGA_COLUMNS,
            "WHERE order_id = ANY($1) AND queued ORDER BY order_id, id FOR UPDATE",
        ))
        .bind(
            order_ids
                .iter()
                .map(|o| o.as_str().to_owned())
                .collect::<Vec<_>>(),
        ),
    )
}

/// Queued sagas that can never start, failed for `reason`.
fn fail_all(sagas: Vec<Saga>, reason: FailureReason) -> impl Iterator<Item = Saga> {
    sagas.into_iter().map(move |saga| Saga {
        created_at: saga.created_at,
        ..Saga::finished(saga.id, saga.order_id, Verdict::Failed(reason))
    })
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
pub(super) fn read_resend_candidates(ids: &[Uuid]) -> Stmt<'static> {
    Stmt::new(select_sagas(
        SAGA_COLUMNS,
        "WHERE id IN (
            SELECT s.id FROM sagas AS r JOIN sagas AS s ON s.order_id = r.order_id
            WHERE r.id = ANY($1)
              AND (s.id = r.id OR s.state IN ('running', 'compensating')
                   OR s.completed_at = r.completed_at))
         ORDER BY id",
    ))
    .bind(ids.to_vec())
}

/// The sagas read by [`read_resend_candidates`].
pub(super) fn resend_candidates(rows: &[Row]) -> Result<Vec<Saga>, CheckoutError> {
    rows.iter().map(saga_from_row).collect()
}

/// Keeps what a consumer could not apply for an operator to inspect.
pub(super) async fn dead_letter(
    tx: &impl GenericClient,
    consumer: &str,
    reason: &str,
    payloads: &[Value],
) -> Result<(), CheckoutError> {
    db::execute(tx, DEAD_LETTER, &[&consumer, &reason, &payloads]).await?;
    Ok(())
}

/// [`dead_letter`] as part of a batch's transaction.
pub(super) fn dead_letters<'a>(
    consumer: &'a str,
    reason: &'a str,
    payloads: Vec<Value>,
) -> Stmt<'a> {
    Stmt::new(DEAD_LETTER)
        .bind(consumer)
        .bind(reason)
        .bind(payloads)
}

const DEAD_LETTER: &str = "INSERT INTO dead_letters (consumer, reason, payload)
                           SELECT $1, $2, p FROM unnest($3::jsonb[]) AS p";

/// Ends a checkout that cannot be applied as failed (`invalid_order`),
/// unless it already has a saga (then that saga stands). True when this
/// call ended it.
pub(super) async fn insert_rejected_saga(
    tx: &impl GenericClient,
    id: Uuid,
    order_id: &OrderId,
) -> Result<bool, CheckoutError> {
    let inserted = db::execute(
        tx,
        "INSERT INTO sagas (id, order_id, state, reason, completed_at)
         VALUES ($1, $2, 'failed', $3, now()) ON CONFLICT (id) DO NOTHING",
        &[
            &id,
            &order_id.as_str(),
            &FailureReason::InvalidOrder.as_str(),
        ],
    )
    .await?;
    Ok(inserted == 1)
}

pub(super) fn insert_sagas<'a>(sagas: impl Iterator<Item = &'a Saga>) -> Stmt<'a> {
    let (mut id, mut order, mut user, mut amount, mut items, mut state, mut reason) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut ended = Vec::new();
    for s in sagas {
        id.push(s.id);
        order.push(s.order_id.as_str());
        user.push(s.basket.as_ref().map(|b| b.user_id.as_str()));
        amount.push(s.basket.as_ref().map_or(0, |b| b.amount.get()));
        items.push(items_json(s));
        state.push(s.state.as_str());
        reason.push(s.state.reason().map(FailureReason::as_str));
        ended.push(s.completed_at);
    }
    // A final saga carries the instant its outcome announces; now() only
    // backs up one that was not stamped.
    Stmt::new(
        "INSERT INTO sagas (id, order_id, user_id, amount, items, state, reason, completed_at)
         SELECT i, o, u, a, it, s, r, CASE WHEN s IN ('succeeded', 'failed') THEN coalesce(c, now()) END
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[], $6::text[], $7::text[],
                     $8::timestamptz[])
              AS x(i, o, u, a, it, s, r, c)",
    )
    .bind(id)
    .bind(order)
    .bind(user)
    .bind(amount)
    .bind(items)
    .bind(state)
    .bind(reason)
    .bind(ended)
}

/// Writes back the sagas a batch changed: `advanced` ones (a step result
/// moved them on) get their step and state columns; `started` ones (queued
/// until now) also get the user, amount and items read from their order.
pub(super) fn update_sagas<'a>(advanced: &'a [Saga], started: &'a [Saga]) -> Option<Stmt<'a>> {
    let sagas: Vec<&Saga> = advanced.iter().chain(started).collect();
    if sagas.is_empty() {
        return None;
    }
    let id: Vec<Uuid> = sagas.iter().map(|s| s.id).collect();
    // NULL keeps what the row has (see the coalesce below).
    let keep = advanced.len();
    fn basket(s: &Saga, started: bool) -> Option<&Basket> {
        s.basket.as_ref().filter(|_| started)
    }
    let user: Vec<Option<&str>> = sagas
        .iter()
        .enumerate()
        .map(|(i, s)| basket(s, i >= keep).map(|b| b.user_id.as_str()))
        .collect();
    let amount: Vec<Option<i64>> = sagas
        .iter()
        .enumerate()
        .map(|(i, s)| basket(s, i >= keep).map(|b| b.amount.get()))
        .collect();
    let items: Vec<Option<Value>> = sagas
        .iter()
        .enumerate()
        .map(|(i, s)| (i >= keep).then(|| items_json(s)))
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
        .map(|s| s.state.reason().map(FailureReason::as_str))
        .collect();
    let ended: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        sagas.iter().map(|s| s.completed_at).collect();
    let n = sagas.len() as u64;
    let stmt = Stmt::new(
        "UPDATE sagas AS s SET user_id = coalesce(x.u, s.user_id), amount = coalesce(x.a, s.amount),
                items = coalesce(x.it, s.items), state = x.st,
                reserve = x.re, charge = x.ch, released = x.rl, refunded = x.rf, reason = x.rs,
                completed_at = CASE WHEN x.st IN ('succeeded', 'failed')
                                    THEN coalesce(s.completed_at, x.c, now()) END
         FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::jsonb[], $5::text[], $6::text[],
                     $7::text[], $8::bool[], $9::bool[], $10::text[], $11::timestamptz[])
              AS x(id, u, a, it, st, re, ch, rl, rf, rs, c)
         WHERE s.id = x.id",
    )
    .bind(id)
    .bind(user)
    .bind(amount)
    .bind(items)
    .bind(state)
    .bind(reserve)
    .bind(charge)
    .bind(released)
    .bind(refunded)
    .bind(reason)
    .bind(ended);
    Some(stmt.expect_rows(
        n,
        Mismatch::Inconsistent("saga rows the batch locked are missing".into()),
    ))
}

/// The `items` column: `[[item_id, quantity], ...]`, empty for a saga that
/// never started.
fn items_json(s: &Saga) -> Value {
    let items = s.basket.as_ref().map_or(&[][..], |b| &b.items[..]);
    // IDs and numbers always serialise.
    serde_json::to_value(items).unwrap_or(Value::Null)
}

/// The `sagas` table as the ledgers' retention asks about it.
#[derive(Clone)]
pub struct Sagas(deadpool_postgres::Pool);

impl Sagas {
    pub fn new(pool: deadpool_postgres::Pool) -> Self {
        Self(pool)
    }

    /// Which of `ids` are sagas order-svc still keeps, final or not. A saga
    /// not found is long over: only final sagas are ever purged (the
    /// retention after their completion), and a saga exists before any of
    /// its steps is sent.
    pub async fn kept(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, runtime::db::DbError> {
        let conn = db::get(&self.0).await?;
        let rows = db::query(&conn, "SELECT id FROM sagas WHERE id = ANY($1)", &[&ids]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The outcomes of the sagas among `ids` that ended. A row that cannot
    /// be read is left out (logged): the asker then keeps what it has.
    pub async fn outcomes(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<CheckoutOutcome>, runtime::db::DbError> {
        let conn = db::get(&self.0).await?;
        let rows = db::query(
            &conn,
            "SELECT id, order_id, state, reason, completed_at FROM sagas
             WHERE id = ANY($1) AND state IN ('succeeded', 'failed')",
            &[&ids],
        )
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let id: Uuid = row.get(0);
                match State::parse(row.get(2), row.get(3)).map(State::verdict) {
                    Ok(Some(verdict)) => Some(CheckoutOutcome {
                        request_id: id,
                        order_id: OrderId::new(row.get::<_, String>(1)),
                        verdict,
                        completed_at: row.get(4),
                    }),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::error!(saga_id = %id, error = %e, "stored saga cannot be read");
                        None
                    }
                }
            })
            .collect())
    }
}
