//! The checkout saga's two JetStream consumers.
//!
//! `order-checkout` takes checkout requests from `api`: for each it starts a
//! saga, queues it behind the order's checkout in flight, answers at once
//! (unknown order, already paid), or replays a saga it already has.
//! `order-steps` takes the results of stock-svc and payment-svc, advances
//! the sagas, frees (and pays) their orders when they end and starts the
//! next queued checkout of those orders.
//!
//! Each batch is one transaction; what it causes is published (one message
//! per destination, acked by JetStream) before the batch is acknowledged.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_nats::jetstream::Context;
use common::{
    consumer::{Consumer, Liveness},
    db::{self, DbError},
    jetstream::{self, JetStreamError, Topology},
    messages::saga::{CheckoutRequested, FailureReason, StepOutcome, StepResult},
    nats::Subjects,
    tasks::Tasks,
};
use deadpool_postgres::{GenericClient, Pool};
use serde_json::Value;
use tokio_postgres::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::saga::{admit, Admission, OrderState, Outgoing, Saga, State};

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error(transparent)]
    Db(DbError),
    #[error(transparent)]
    JetStream(#[from] JetStreamError),
    #[error("{0}")]
    Inconsistent(String),
}

common::db_error_variant!(CheckoutError, CheckoutError::Db);

#[derive(Clone)]
pub struct Checkout {
    pool: Pool,
    js: Context,
    subjects: Subjects,
    topology: Topology,
}

impl Checkout {
    pub fn new(pool: Pool, js: Context, subjects: Subjects, topology: Topology) -> Self {
        Self {
            pool,
            js,
            subjects,
            topology,
        }
    }

    /// Starts both consumers under `tasks`; returns their liveness for
    /// `/ready`.
    pub fn spawn(&self, tasks: &mut Tasks, max_messages: usize) -> Vec<Liveness> {
        for step in ["reserve", "charge", "release", "refund"] {
            STEP_SECONDS.with_label_values(&[step]);
        }
        let stop = tasks.stop_token();
        let requests = Consumer::new(
            self.js.clone(),
            self.topology.clone(),
            "order-checkout",
            max_messages,
        );
        let results = Consumer::new(
            self.js.clone(),
            self.topology.clone(),
            "order-steps",
            max_messages,
        );
        let live = vec![requests.liveness.clone(), results.liveness.clone()];
        let (this, s) = (self.clone(), stop.clone());
        tasks.spawn("order-checkout consumer", async move {
            let handler = |batch| {
                let (this, s) = (this.clone(), s.clone());
                async move { this.on_requests(batch, &s).await }
            };
            requests.run(handler, stop.clone()).await;
            Ok::<_, CheckoutError>(())
        });
        let (this, stop) = (self.clone(), tasks.stop_token());
        tasks.spawn("order-steps consumer", async move {
            let s = stop.clone();
            let handler = |batch| {
                let (this, s) = (this.clone(), s.clone());
                async move { this.on_results(batch, &s).await }
            };
            results.run(handler, stop).await;
            Ok::<_, CheckoutError>(())
        });
        live
    }

    async fn on_requests(
        &self,
        requests: Vec<CheckoutRequested>,
        stop: &CancellationToken,
    ) -> Result<(), CheckoutError> {
        let ids: Vec<Uuid> = requests.iter().map(|r| r.request_id).collect();
        let order_ids: Vec<String> = requests
            .iter()
            .map(|r| r.order_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();

        let timer = db::time_transaction("saga_start");
        let mut conn = db::get(&self.pool).await?;
        let tx = conn.transaction().await?;
        // Independent reads, pipelined on the one connection.
        let (mut sagas, mut orders) =
            futures::try_join!(load_sagas(&tx, &ids, false), load_orders(&tx, &order_ids),)?;

        let mut created: Vec<Uuid> = Vec::new();
        let mut outgoing = Vec::new();
        for request in &requests {
            let id = request.request_id;
            if let Some(saga) = sagas.get(&id) {
                // Seen before: re-send whatever this state still needs.
                tracing::debug!(request_id = %id, state = saga.state.as_str(), "replaying checkout");
                outgoing.extend(saga.outgoing());
                continue;
            }
            let order = orders.get_mut(&request.order_id);
            let admission = admit(order.as_ref().map(|o| OrderState {
                paid: o.paid,
                checkout_in_flight: o.checkout_saga.is_some(),
            }));
            let saga = match (admission, order) {
                (Admission::Start, Some(order)) => {
                    order.checkout_saga = Some(id);
                    Saga::start(
                        id,
                        &request.order_id,
                        &order.user_id,
                        order.total_cost,
                        order.items.clone(),
                    )
                }
                (Admission::Busy, _) => Saga::queued(id, &request.order_id),
                (Admission::AlreadyPaid, _) => Saga::finished(id, &request.order_id, None),
                (Admission::NotFound | Admission::Start, _) => {
                    Saga::finished(id, &request.order_id, Some(FailureReason::OrderNotFound))
                }
            };
            tracing::debug!(request_id = %id, order_id = %request.order_id, state = saga.state.as_str(), "checkout admitted");
            outgoing.extend(saga.outgoing());
            created.push(id);
            sagas.insert(id, saga);
        }

        if !created.is_empty() {
            insert_sagas(&tx, created.iter().filter_map(|id| sagas.get(id))).await?;
            set_checkout_sagas(&tx, created.iter().filter_map(|id| sagas.get(id))).await?;
        }
        tx.commit().await?;
        drop(timer);
        self.publish(outgoing, stop).await
    }

    async fn on_results(
        &self,
        results: Vec<StepResult>,
        stop: &CancellationToken,
    ) -> Result<(), CheckoutError> {
        let ids: Vec<Uuid> = results.iter().map(|r| r.saga_id).collect();

        let timer = db::time_transaction("saga_advance");
        let mut conn = db::get(&self.pool).await?;
        let tx = conn.transaction().await?;
        let mut sagas = load_sagas(&tx, &ids, true).await?;
        let before: HashMap<Uuid, Saga> = sagas.clone();
        let mut touched: BTreeSet<Uuid> = BTreeSet::new();
        let mut unknown: Vec<&StepResult> = Vec::new();
        for result in &results {
            let Some(saga) = sagas.get_mut(&result.saga_id) else {
                unknown.push(result);
                continue;
            };
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
        }
        if !unknown.is_empty() {
            tracing::warn!(
                count = unknown.len(),
                "step results for unknown sagas; kept in dead_letters"
            );
            dead_letter(&tx, "order-steps", "unknown saga", &unknown).await?;
        }

        let mut changed: Vec<Saga> = touched
            .iter()
            .filter_map(|id| sagas.get(id))
            .filter(|s| before.get(&s.id) != Some(*s))
            .cloned()
            .collect();
        // Compensations and outcomes; a running saga waits for its other
        // result and needs nothing sent.
        let mut outgoing: Vec<Outgoing> = changed
            .iter()
            .filter(|s| s.state != State::Running)
            .flat_map(Saga::outgoing)
            .collect();
        // Finished sagas free their order (and pay it when they succeeded);
        // the next queued checkout of a freed order goes next.
        let finished: Vec<(String, Uuid, bool)> = changed
            .iter()
            .filter(|s| s.state.is_final())
            .map(|s| (s.order_id.clone(), s.id, s.state == State::Succeeded))
            .collect();
        finish_orders(&tx, &finished).await?;
        let ended: BTreeSet<String> = finished.into_iter().map(|(o, _, _)| o).collect();
        for saga in next_in_queue(&tx, &ended.into_iter().collect::<Vec<_>>()).await? {
            outgoing.extend(saga.outgoing());
            changed.push(saga);
        }
        update_sagas(&tx, &changed).await?;
        // Queued sagas that started here take their order.
        set_checkout_sagas(&tx, changed.iter().filter(|s| !before.contains_key(&s.id))).await?;
        tx.commit().await?;
        drop(timer);
        self.publish(outgoing, stop).await
    }

    /// One message per destination (a batch of step commands for each
    /// service, a batch of outcomes for `api`), published with retries while
    /// NATS is down.
    async fn publish(
        &self,
        outgoing: Vec<Outgoing>,
        stop: &CancellationToken,
    ) -> Result<(), CheckoutError> {
        let mut commands = Vec::new();
        let mut outcomes = Vec::new();
        for o in outgoing {
            match o {
                Outgoing::Command(c) => commands.push((self.subjects.step_commands(c.step), c)),
                Outgoing::Outcome(o) => outcomes.push((self.subjects.checkout_outcomes(), o)),
            }
        }
        let mut messages = jetstream::Outgoing::batches(commands);
        messages.extend(jetstream::Outgoing::batches(outcomes));
        jetstream::publish_retrying(&self.js, &messages, stop).await?;
        Ok(())
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

fn by_id(rows: Vec<Row>) -> HashMap<Uuid, Saga> {
    rows.iter()
        .map(|r| {
            let s = saga_from_row(r);
            (s.id, s)
        })
        .collect()
}

async fn load_sagas(
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
/// them with their lines summed per item. The lines are read after the lock,
/// so they match the locked `total_cost`.
async fn load_orders(
    tx: &impl GenericClient,
    order_ids: &[String],
) -> Result<HashMap<String, OrderRow>, CheckoutError> {
    let mut orders: HashMap<String, OrderRow> = db::query(
        tx,
        "SELECT id, user_id, paid, total_cost, checkout_saga FROM orders
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&order_ids],
    )
    .await?
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
            },
        )
    })
    .collect();
    for row in db::query(
        tx,
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
    Ok(orders)
}

/// Frees the orders of finished sagas, paying those that succeeded.
async fn finish_orders(
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
async fn next_in_queue(
    tx: &impl GenericClient,
    order_ids: &[String],
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

/// Marks the orders of the sagas among `sagas` that run as having their
/// checkout in flight.
async fn set_checkout_sagas<'a>(
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

async fn dead_letter(
    tx: &impl GenericClient,
    consumer: &str,
    reason: &str,
    items: &[&StepResult],
) -> Result<(), CheckoutError> {
    let payloads: Vec<Value> = items
        .iter()
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .collect();
    db::execute(
        tx,
        "INSERT INTO dead_letters (consumer, reason, payload)
         SELECT $1, $2, p FROM unnest($3::jsonb[]) AS p",
        &[&consumer, &reason, &payloads],
    )
    .await?;
    Ok(())
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

async fn update_sagas(tx: &impl GenericClient, sagas: &[Saga]) -> Result<(), CheckoutError> {
    if sagas.is_empty() {
        return Ok(());
    }
    let id: Vec<Uuid> = sagas.iter().map(|s| s.id).collect();
    let user: Vec<Option<&str>> = sagas.iter().map(|s| s.user_id.as_deref()).collect();
    let amount: Vec<i64> = sagas.iter().map(|s| s.amount).collect();
    let items: Vec<Value> = sagas
        .iter()
        .map(|s| serde_json::to_value(&s.items).unwrap_or(Value::Null))
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
        "UPDATE sagas AS s SET user_id = x.u, amount = x.a, items = x.it, state = x.st,
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
