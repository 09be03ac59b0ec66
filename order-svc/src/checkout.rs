//! The checkout saga's two JetStream consumers.
//!
//! `order-checkout` takes checkout requests from `api`: it starts a saga
//! (one in flight per order), or answers at once (unknown order, already
//! paid), or replays a saga it already has. `order-steps` takes the results
//! of stock-svc and payment-svc and advances the sagas.
//! Each batch is one transaction; what it causes is published (and acked by
//! JetStream) before the batch's messages are acknowledged.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use async_nats::jetstream::{Context, Message};
use common::{
    consumer::{self, Disposition},
    db::DbError,
    jetstream::{self, JetStreamError},
    messages::saga::{CheckoutRequested, FailureReason, StepOutcome, StepResult},
    nats::Subjects,
};
use deadpool_postgres::{GenericClient, Pool};
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::saga::{Outgoing, Saga, State};

/// How long a checkout waits before retrying when another checkout of the
/// same order is in flight.
const ORDER_BUSY_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error(transparent)]
    Db(DbError),
    #[error(transparent)]
    JetStream(#[from] JetStreamError),
}

common::db_error_variant!(CheckoutError, CheckoutError::Db);

#[derive(Clone)]
pub struct Checkout {
    pool: Pool,
    js: Context,
    subjects: Subjects,
}

impl Checkout {
    pub fn new(pool: Pool, js: Context, subjects: Subjects) -> Self {
        Self { pool, js, subjects }
    }

    /// Runs both consumers until the task is aborted.
    pub async fn serve(self, max_batch: usize) -> Result<(), JetStreamError> {
        for step in ["reserve", "charge", "release", "refund"] {
            STEP_SECONDS.with_label_values(&[step]);
        }
        let requests = jetstream::consumer(&self.js, &self.subjects, "order-checkout").await?;
        let results = jetstream::consumer(&self.js, &self.subjects, "order-steps").await?;
        let a = self.clone();
        let b = self.clone();
        tokio::join!(
            consumer::run(requests, "order-checkout", max_batch, move |batch| {
                let this = a.clone();
                async move {
                    let r = this.on_requests(&batch).await;
                    (batch, r)
                }
            }),
            consumer::run(results, "order-steps", max_batch, move |batch| {
                let this = b.clone();
                async move {
                    let r = this.on_results(&batch).await;
                    (batch, r)
                }
            }),
        );
        Ok(())
    }

    async fn on_requests(&self, batch: &[Message]) -> Result<Vec<Disposition>, CheckoutError> {
        let requests: Vec<Option<CheckoutRequested>> = batch
            .iter()
            .map(|m| consumer::decode("order-checkout", m))
            .collect();
        let ids: Vec<Uuid> = requests.iter().flatten().map(|r| r.request_id).collect();
        let order_ids: Vec<String> = requests
            .iter()
            .flatten()
            .map(|r| r.order_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();

        let _timer = common::db::time_transaction("saga_start");
        let mut conn = common::db::get(&self.pool).await?;
        let tx = conn.transaction().await?;
        let mut sagas = load_sagas(&tx, &ids, false).await?;
        let mut orders: HashMap<String, OrderRow> = HashMap::new();
        for row in tx
            .query(
                "SELECT id, user_id, paid, total_cost, checkout_saga FROM orders
                 WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[&order_ids],
            )
            .await?
        {
            orders.insert(
                row.get(0),
                OrderRow {
                    user_id: row.get(1),
                    paid: row.get(2),
                    total_cost: row.get(3),
                    checkout_saga: row.get(4),
                    items: Vec::new(),
                },
            );
        }
        for row in tx
            .query(
                "SELECT order_id, item_id, sum(quantity)::bigint FROM order_lines
                 WHERE order_id = ANY($1) GROUP BY order_id, item_id ORDER BY order_id, min(id)",
                &[&order_ids],
            )
            .await?
        {
            if let Some(o) = orders.get_mut(row.get::<_, &str>(0)) {
                o.items.push((row.get(1), row.get(2)));
            }
        }

        let mut created: Vec<Uuid> = Vec::new();
        let mut outgoing = Vec::new();
        let mut dispositions = Vec::with_capacity(batch.len());
        for request in &requests {
            let Some(request) = request else {
                dispositions.push(Disposition::Poison);
                continue;
            };
            let id = request.request_id;
            if let Some(saga) = sagas.get(&id) {
                // Seen before: re-send whatever this state still needs.
                tracing::debug!(request_id = %id, state = saga.state.as_str(), "replaying checkout");
                outgoing.extend(saga.outgoing());
                dispositions.push(Disposition::Ack);
                continue;
            }
            let saga = match orders.get_mut(&request.order_id) {
                None => Saga::finished(id, &request.order_id, Some(FailureReason::OrderNotFound)),
                Some(order) if order.paid => Saga::finished(id, &request.order_id, None),
                Some(order) if order.checkout_saga.is_some() => {
                    dispositions.push(Disposition::Retry(ORDER_BUSY_DELAY));
                    continue;
                }
                Some(order) => {
                    order.checkout_saga = Some(id);
                    Saga::start(
                        id,
                        &request.order_id,
                        &order.user_id,
                        order.total_cost,
                        order.items.clone(),
                    )
                }
            };
            tracing::info!(request_id = %id, order_id = %request.order_id, state = saga.state.as_str(), "checkout accepted");
            outgoing.extend(saga.outgoing());
            created.push(id);
            sagas.insert(id, saga);
            dispositions.push(Disposition::Ack);
        }

        if !created.is_empty() {
            insert_sagas(&tx, created.iter().filter_map(|id| sagas.get(id))).await?;
            let started: Vec<(&str, Uuid)> = created
                .iter()
                .filter_map(|id| sagas.get(id))
                .filter(|s| s.state == State::Running)
                .map(|s| (s.order_id.as_str(), s.id))
                .collect();
            if !started.is_empty() {
                let (o, s): (Vec<&str>, Vec<Uuid>) = started.into_iter().unzip();
                tx.execute(
                    "UPDATE orders SET checkout_saga = x.s
                     FROM unnest($1::text[], $2::uuid[]) AS x(o, s) WHERE id = x.o",
                    &[&o, &s],
                )
                .await?;
            }
        }
        tx.commit().await?;
        self.publish(outgoing).await?;
        Ok(dispositions)
    }

    async fn on_results(&self, batch: &[Message]) -> Result<Vec<Disposition>, CheckoutError> {
        let results: Vec<Option<StepResult>> = batch
            .iter()
            .map(|m| consumer::decode("order-steps", m))
            .collect();
        let ids: Vec<Uuid> = results.iter().flatten().map(|r| r.saga_id).collect();

        let _timer = common::db::time_transaction("saga_advance");
        let mut conn = common::db::get(&self.pool).await?;
        let tx = conn.transaction().await?;
        let mut sagas = load_sagas(&tx, &ids, true).await?;
        let before: HashMap<Uuid, Saga> = sagas.clone();
        let mut dispositions = Vec::with_capacity(batch.len());
        let mut touched: BTreeSet<Uuid> = BTreeSet::new();
        for result in &results {
            let Some(result) = result else {
                dispositions.push(Disposition::Poison);
                continue;
            };
            match sagas.get_mut(&result.saga_id) {
                Some(saga) => {
                    let new = saga.record(result.step, result.outcome);
                    if new {
                        if let Some(started) = saga.created_at {
                            let age = (chrono::Utc::now() - started)
                                .num_microseconds()
                                .unwrap_or(0);
                            STEP_SECONDS
                                .with_label_values(&[result.step.as_str()])
                                .observe(age.max(0) as f64 / 1e6);
                        }
                    }
                    tracing::debug!(saga_id = %result.saga_id, step = result.step.as_str(), outcome = ?result.outcome, new, "step result");
                    touched.insert(result.saga_id);
                    dispositions.push(Disposition::Ack);
                }
                None => {
                    tracing::error!(saga_id = %result.saga_id, "result for an unknown saga");
                    dispositions.push(Disposition::Poison);
                }
            }
        }

        let changed: Vec<&Saga> = touched
            .iter()
            .filter_map(|id| sagas.get(id))
            .filter(|s| before.get(&s.id) != Some(*s))
            .collect();
        update_sagas(&tx, &changed).await?;
        // Finished sagas free their order (and pay it when they succeeded).
        let mut finished: Vec<(&str, Uuid, bool)> = changed
            .iter()
            .filter(|s| s.state.is_final())
            .map(|s| (s.order_id.as_str(), s.id, s.state == State::Succeeded))
            .collect();
        finished.sort();
        if !finished.is_empty() {
            let mut o = Vec::new();
            let mut s = Vec::new();
            let mut p = Vec::new();
            for (order, saga, paid) in finished {
                o.push(order);
                s.push(saga);
                p.push(paid);
            }
            tx.execute(
                "UPDATE orders AS o SET paid = o.paid OR x.p, checkout_saga = NULL
                 FROM unnest($1::text[], $2::uuid[], $3::bool[]) AS x(oid, sid, p)
                 WHERE o.id = x.oid AND o.checkout_saga = x.sid",
                &[&o, &s, &p],
            )
            .await?;
        }
        tx.commit().await?;

        // Compensations and outcomes; a running saga waits for its other
        // result and needs nothing sent.
        let outgoing = touched
            .iter()
            .filter_map(|id| sagas.get(id))
            .filter(|s| s.state != State::Running)
            .flat_map(Saga::outgoing)
            .collect();
        self.publish(outgoing).await?;
        Ok(dispositions)
    }

    async fn publish(&self, outgoing: Vec<Outgoing>) -> Result<(), JetStreamError> {
        let messages = outgoing
            .into_iter()
            .map(|o| match o {
                Outgoing::Command(c) => jetstream::Outgoing::json(
                    self.subjects.step_command(c.step),
                    format!("{}:{}", c.saga_id, c.step.as_str()),
                    &c,
                ),
                Outgoing::Outcome(o) => jetstream::Outgoing::json(
                    self.subjects.checkout_outcomes(),
                    format!("{}:outcome", o.request_id),
                    &o,
                ),
            })
            .collect();
        jetstream::publish_all(&self.js, messages).await
    }
}

struct OrderRow {
    user_id: String,
    paid: bool,
    total_cost: i64,
    checkout_saga: Option<Uuid>,
    items: Vec<(String, i64)>,
}

const SAGA_COLUMNS: &str = "id, order_id, user_id, amount, items, state, reserve, charge, released, refunded, reason, created_at";

/// Time from a saga's start until each step's result arrived.
static STEP_SECONDS: std::sync::LazyLock<prometheus::HistogramVec> =
    std::sync::LazyLock::new(|| {
        prometheus::register_histogram_vec!(
            "saga_step_seconds",
            "Time from the start of a checkout saga until a step's result arrived, by step",
            &["step"],
            common::metrics::LATENCY_BUCKETS.to_vec()
        )
        .expect("metric registers once")
    });

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

async fn load_sagas(
    tx: &impl GenericClient,
    ids: &[Uuid],
    lock: bool,
) -> Result<HashMap<Uuid, Saga>, CheckoutError> {
    let sql = format!(
        "SELECT {SAGA_COLUMNS} FROM sagas WHERE id = ANY($1) ORDER BY id{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(tx
        .query(&sql, &[&ids])
        .await?
        .iter()
        .map(|r| {
            let s = saga_from_row(r);
            (s.id, s)
        })
        .collect())
}

async fn insert_sagas<'a>(
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
    tx.execute(
        "INSERT INTO sagas (id, order_id, user_id, amount, items, state, reason, completed_at)
         SELECT i, o, u, a, it, s, r, CASE WHEN s IN ('succeeded', 'failed') THEN now() END
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[], $6::text[], $7::text[])
              AS x(i, o, u, a, it, s, r)",
        &[&id, &order, &user, &amount, &items, &state, &reason],
    )
    .await?;
    Ok(())
}

async fn update_sagas(tx: &impl GenericClient, sagas: &[&Saga]) -> Result<(), CheckoutError> {
    if sagas.is_empty() {
        return Ok(());
    }
    let id: Vec<Uuid> = sagas.iter().map(|s| s.id).collect();
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
    tx.execute(
        "UPDATE sagas AS s SET state = x.st, reserve = x.re, charge = x.ch, released = x.rl,
                refunded = x.rf, reason = x.rs,
                completed_at = CASE WHEN x.st IN ('succeeded', 'failed')
                                    THEN coalesce(s.completed_at, now()) END
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::bool[], $7::text[])
              AS x(id, st, re, ch, rl, rf, rs)
         WHERE s.id = x.id",
        &[&id, &state, &reserve, &charge, &released, &refunded, &reason],
    )
    .await?;
    Ok(())
}
