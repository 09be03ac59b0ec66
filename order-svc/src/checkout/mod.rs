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

use std::collections::BTreeSet;

use async_nats::jetstream::Context;
use common::{
    consumer::{Consumer, Liveness},
    db::{self, DbError},
    jetstream::{self, JetStreamError, Topology},
    messages::saga::{CheckoutRequested, FailureReason, StepResult},
    nats::Subjects,
    tasks::Tasks,
};
use deadpool_postgres::{GenericClient, Pool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::saga::{admit, Admission, OrderState, Outgoing, Saga, State};

mod store;
use store::{
    dead_letter, finish_orders, insert_sagas, load_orders, load_sagas, next_in_queue,
    set_checkout_sagas, update_sagas,
};

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
    /// Largest message published (`NATS_MAX_MESSAGE_BYTES`).
    max_message_bytes: usize,
    /// Most lines per order (`ORDER_MAX_LINES`).
    max_lines: usize,
}

impl Checkout {
    pub fn new(
        pool: Pool,
        js: Context,
        subjects: Subjects,
        topology: Topology,
        max_message_bytes: usize,
        max_lines: usize,
    ) -> Self {
        Self {
            pool,
            js,
            subjects,
            topology,
            max_message_bytes,
            max_lines,
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
                // Its step command might not fit a message, or its sums
                // BIGINT: it fails alone, before anything is moved.
                (Admission::Start, Some(order)) if !order.within_bounds(self.max_lines) => {
                    Saga::finished(id, &request.order_id, Some(FailureReason::OrderTooLarge))
                }
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
        // The sagas a result moved on (`record` says so; a repeated result
        // changes nothing).
        let mut advanced_ids: BTreeSet<Uuid> = BTreeSet::new();
        let mut unknown: Vec<&StepResult> = Vec::new();
        for result in &results {
            let Some(saga) = sagas.get_mut(&result.saga_id) else {
                unknown.push(result);
                continue;
            };
            let new = saga.record(result.step, result.outcome);
            if new {
                advanced_ids.insert(result.saga_id);
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
        }
        if !unknown.is_empty() {
            tracing::warn!(
                count = unknown.len(),
                "step results for unknown sagas; kept in dead_letters"
            );
            dead_letter(&tx, "order-steps", "unknown saga", &unknown).await?;
        }

        let advanced: Vec<Saga> = advanced_ids
            .iter()
            .filter_map(|id| sagas.remove(id))
            .collect();
        // Compensations and outcomes; a running saga waits for its other
        // result and needs nothing sent.
        let mut outgoing: Vec<Outgoing> = advanced
            .iter()
            .filter(|s| s.state != State::Running)
            .flat_map(Saga::outgoing)
            .collect();
        // Finished sagas free their order (and pay it when they succeeded);
        // the next queued checkout of a freed order goes next.
        let finished: Vec<(String, Uuid, bool)> = advanced
            .iter()
            .filter(|s| s.state.is_final())
            .map(|s| (s.order_id.clone(), s.id, s.state == State::Succeeded))
            .collect();
        finish_orders(&tx, &finished).await?;
        let ended: BTreeSet<String> = finished.into_iter().map(|(o, _, _)| o).collect();
        let started =
            next_in_queue(&tx, &ended.into_iter().collect::<Vec<_>>(), self.max_lines).await?;
        outgoing.extend(started.iter().flat_map(Saga::outgoing));
        update_sagas(&tx, &advanced, &started).await?;
        // Queued sagas that started here take their order.
        set_checkout_sagas(&tx, started.iter()).await?;
        tx.commit().await?;
        drop(timer);
        self.publish(outgoing, stop).await
    }

    /// One message per destination (a batch of step commands for each
    /// service, a batch of outcomes for `api`), split where it would exceed
    /// the message bound, published with retries while NATS is down.
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
        let mut messages = jetstream::Outgoing::batches(commands, self.max_message_bytes)?;
        messages.extend(jetstream::Outgoing::batches(
            outcomes,
            self.max_message_bytes,
        )?);
        jetstream::publish_retrying(&self.js, &messages, stop).await?;
        Ok(())
    }
}

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
