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
//! A step result a saga already had re-sends what the saga's move caused:
//! the batch that first recorded it may have died between its commit and
//! its publishes (see `super::store::resend_candidates`).
//! A checkout the batch cannot apply because of its data (an order whose
//! quantities overflow) is rejected on its own: its saga ends `failed`
//! (`invalid_order`) and the outcome goes to `api` like any other; a step
//! result that cannot be applied is kept in `dead_letters`.

use std::collections::BTreeSet;

use async_nats::jetstream::Context;
use contracts::{
    ids::OrderId,
    messages::saga::{CheckoutRequested, FailureReason, Step, StepResult, Verdict},
    Subjects,
};
use deadpool_postgres::{GenericClient, Pool};
use runtime::{
    consumer::Handler,
    db::{self, Tx},
    jetstream,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::error::CheckoutError;
use super::store::{
    dead_letter, dead_letters, insert_rejected_saga, insert_sagas, load_sagas, next_in_queue,
    read_queued, read_resend_candidates, read_sagas, resend_candidates, sagas_from, update_sagas,
};
use super::{admit, Admission, OrderState, Outgoing, Saga, State};
use crate::orders::checkout::{finish_orders, orders_from, read_orders, set_checkout_sagas, Ended};

#[derive(Clone)]
pub struct Checkout {
    pool: Pool,
    js: Context,
    subjects: Subjects,
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
        max_message_bytes: usize,
        max_lines: usize,
    ) -> Self {
        Self {
            pool,
            js,
            subjects,
            max_message_bytes,
            max_lines,
        }
    }

    /// The handler of `order-checkout`, the consumer of checkout requests.
    pub fn requests(&self, stop: CancellationToken) -> Requests {
        Requests(self.clone(), stop)
    }

    /// The handler of `order-steps`, the consumer of step results.
    pub fn results(&self, stop: CancellationToken) -> Results {
        for step in ["reserve", "charge", "release", "refund"] {
            STEP_SECONDS.with_label_values(&[step]);
        }
        Results(self.clone(), stop)
    }

    async fn on_requests(
        &self,
        requests: &[CheckoutRequested],
        stop: &CancellationToken,
    ) -> Result<(), CheckoutError> {
        let ids: Vec<Uuid> = requests.iter().map(|r| r.request_id).collect();
        let order_ids: Vec<OrderId> = requests
            .iter()
            .map(|r| r.order_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();

        let timer = db::time_transaction("saga_start");
        // Two round trips: BEGIN with every read, then the writes with
        // COMMIT (see `runtime::db::Tx`).
        let mut tx = Tx::new(&self.pool).await?;
        let [read_orders, read_lines] = read_orders(&order_ids);
        let read = tx
            .begin(&[&read_sagas(&ids, false), &read_orders, &read_lines])
            .await?;
        let (mut sagas, mut orders) = match &read[..] {
            [sagas, orders, lines] => (
                sagas_from(&sagas.rows)?,
                orders_from(&orders.rows, &lines.rows),
            ),
            _ => {
                return Err(CheckoutError::Inconsistent(
                    "three reads, not three answers".into(),
                ))
            }
        };

        let now = batch_time();
        let mut created: Vec<Uuid> = Vec::new();
        let mut outgoing = Vec::new();
        for request in requests {
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
            let order_id = request.order_id.clone();
            let mut saga = match (admission, order) {
                (Admission::Start, Some(order)) => match order.basket(self.max_lines) {
                    // Past the bounds, its step command might not fit a
                    // message: it fails alone, before anything is moved.
                    None => {
                        Saga::finished(id, order_id, Verdict::Failed(FailureReason::InvalidOrder))
                    }
                    Some(basket) => {
                        if let Some(item_id) = &order.overflowing {
                            // Fails the batch; the consumer isolates this one.
                            return Err(CheckoutError::InvalidOrder {
                                order_id,
                                item_id: item_id.clone(),
                            });
                        }
                        order.checkout_saga = Some(id);
                        Saga::start(id, order_id, basket)
                    }
                },
                (Admission::Busy, _) => Saga::queued(id, order_id),
                (Admission::AlreadyPaid, _) => Saga::finished(id, order_id, Verdict::Succeeded),
                (Admission::NotFound | Admission::Start, _) => {
                    Saga::finished(id, order_id, Verdict::Failed(FailureReason::OrderNotFound))
                }
            };
            saga.stamp(now);
            tracing::debug!(request_id = %id, order_id = %request.order_id, state = saga.state.as_str(), "checkout admitted");
            outgoing.extend(saga.outgoing());
            created.push(id);
            sagas.insert(id, saga);
        }

        let mut writes = Vec::new();
        if !created.is_empty() {
            writes.push(insert_sagas(created.iter().filter_map(|id| sagas.get(id))));
            writes.extend(set_checkout_sagas(
                created.iter().filter_map(|id| sagas.get(id)),
            ));
        }
        tx.commit(&writes.iter().collect::<Vec<_>>()).await?;
        drop(timer);
        self.publish(outgoing, stop).await
    }

    async fn on_results(
        &self,
        results: &[StepResult],
        stop: &CancellationToken,
    ) -> Result<(), CheckoutError> {
        let ids: Vec<Uuid> = results.iter().map(|r| r.saga_id).collect();

        let timer = db::time_transaction("saga_advance");
        // Three round trips: BEGIN with the sagas; the orders they free
        // and the checkouts queued behind them; the saga rows with COMMIT
        // (see `runtime::db::Tx`).
        let mut tx = Tx::new(&self.pool).await?;
        let read = tx.begin(&[&read_sagas(&ids, true)]).await?;
        let now = batch_time();
        let mut sagas = sagas_from(read.first().map_or(&[][..], |o| &o.rows[..]))?;
        // The sagas a result moved on (`record` says so; a repeated result
        // changes nothing).
        let mut advanced_ids: BTreeSet<Uuid> = BTreeSet::new();
        let mut unknown: Vec<&StepResult> = Vec::new();
        // Sagas past running that got a result they already had: the batch
        // that first recorded it may have committed and died before
        // publishing what it caused, so that is sent again below.
        let mut redelivered: BTreeSet<Uuid> = BTreeSet::new();
        for result in results {
            let Some(saga) = sagas.get_mut(&result.saga_id) else {
                unknown.push(result);
                continue;
            };
            let new = saga.record(result.step, result.outcome);
            saga.stamp(now);
            if !new && saga.resends_on_repeat() {
                redelivered.insert(result.saga_id);
            }
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
        let finished: Vec<Ended> = advanced.iter().filter_map(Ended::of).collect();
        let ended: Vec<OrderId> = finished
            .iter()
            .map(|e| e.order_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut middle = Vec::new();
        if !unknown.is_empty() {
            tracing::warn!(
                count = unknown.len(),
                "step results for unknown sagas; kept in dead_letters"
            );
            let payloads: Vec<Value> = unknown.iter().map(|r| to_value(*r)).collect();
            middle.push(dead_letters("order-steps", "unknown saga", payloads));
        }
        let freeing = finish_orders(&finished);
        let freed_at = middle.len();
        middle.extend(freeing);
        let queued_at = middle.len();
        middle.extend(read_queued(&ended));
        let out = if middle.is_empty() {
            Vec::new()
        } else {
            tx.run(&middle.iter().collect::<Vec<_>>()).await?
        };
        if !finished.is_empty() {
            let freed = out.get(freed_at).map_or(0, |o| o.affected);
            if freed != finished.len() as u64 {
                // Only a reset of the order (batch_init) takes it away from
                // its saga.
                tracing::warn!(
                    finished = finished.len(),
                    freed,
                    "some finished sagas no longer held their order (was it re-initialised?)"
                );
            }
        }
        let queued = if ended.is_empty() {
            &[][..]
        } else {
            out.get(queued_at).map_or(&[][..], |o| &o.rows[..])
        };
        let mut started = next_in_queue(&tx, queued, self.max_lines).await?;
        started.iter_mut().for_each(|s| s.stamp(now));
        outgoing.extend(started.iter().flat_map(Saga::outgoing));
        let mut writes = Vec::new();
        writes.extend(update_sagas(&advanced, &started));
        // Queued sagas that started here take their order.
        writes.extend(set_checkout_sagas(started.iter()));
        // Read after this batch's own writes, in the same round trip: what
        // it already sends for a saga is not sent twice.
        let redelivered: Vec<Uuid> = redelivered.into_iter().collect();
        if !redelivered.is_empty() {
            writes.push(read_resend_candidates(&redelivered));
        }
        let written = tx.commit(&writes.iter().collect::<Vec<_>>()).await?;
        drop(timer);
        if let Some(rows) = written.last().filter(|_| !redelivered.is_empty()) {
            let sent: BTreeSet<Uuid> = advanced
                .iter()
                .filter(|s| s.state != State::Running)
                .chain(&started)
                .map(|s| s.id)
                .collect();
            let again = resend_candidates(&rows.rows)?;
            tracing::debug!(
                results = redelivered.len(),
                sagas = again.len(),
                "redelivered step results; re-sending"
            );
            outgoing.extend(
                again
                    .iter()
                    .filter(|s| !sent.contains(&s.id))
                    .flat_map(Saga::outgoing),
            );
        }
        self.publish(outgoing, stop).await
    }

    /// Ends a checkout that cannot be applied: its saga fails as
    /// `invalid_order` (unless it already had one, which stands) and the
    /// outcome goes to `api`. `payload` (the item as received) is kept in
    /// `dead_letters` with `cause` the first time. A repeat publishes the
    /// same outcome again, which `api` absorbs.
    async fn reject_request(
        &self,
        request: &CheckoutRequested,
        cause: &str,
        payload: Value,
        stop: &CancellationToken,
    ) -> Result<(), CheckoutError> {
        let id = request.request_id;
        let mut conn = db::get(&self.pool).await?;
        let tx = conn.transaction().await?;
        if insert_rejected_saga(&tx, id, &request.order_id).await? {
            tracing::warn!(request_id = %id, order_id = %request.order_id, %cause, "checkout rejected");
            dead_letter(&tx, "order-checkout", cause, &[payload]).await?;
        }
        let saga = load_sagas(&tx, &[id], false).await?.remove(&id);
        tx.commit().await?;
        // A saga that was already under way goes on by itself.
        let outgoing = saga
            .filter(|s| s.state.is_final())
            .map(|s| s.outgoing())
            .unwrap_or_default();
        self.publish(outgoing, stop).await
    }

    /// Keeps a payload in `dead_letters` in its own transaction.
    async fn keep_dead_letter(
        &self,
        consumer: &str,
        cause: &str,
        payload: Value,
    ) -> Result<(), CheckoutError> {
        let conn = db::get(&self.pool).await?;
        dead_letter(&conn, consumer, cause, &[payload]).await
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
                Outgoing::Command(c) => commands.push((self.subjects.step_commands(c.step()), c)),
                Outgoing::Outcome(o) => outcomes.push((self.subjects.checkout_outcomes(), o)),
            }
        }
        let mut messages = jetstream::Outgoing::batches(commands, self.max_message_bytes)?;
        let outcomes = jetstream::Outgoing::batches(outcomes, self.max_message_bytes)?;
        self.announce(&outcomes).await;
        messages.extend(outcomes);
        jetstream::publish_retrying(&self.js, &messages, stop).await?;
        Ok(())
    }

    /// Tells every api replica which checkouts ended, on core NATS and
    /// before the durable outcome is even published: their waiting clients
    /// are answered now, the records finalised from the JetStream outcome
    /// beside that. Best effort: a replica that misses it finds out from
    /// the finalised record, or asks (`saga_outcomes`).
    async fn announce(&self, outcomes: &[jetstream::Outgoing]) {
        let nats = self.js.client();
        for m in outcomes {
            if let Err(e) = nats
                .publish(self.subjects.checkout_ended(), m.payload.clone())
                .await
            {
                tracing::debug!(error = %e, "cannot announce ended checkouts");
            }
        }
    }
}

/// The instant a batch ends its sagas at: what is stored as their
/// `completed_at` and sent with their outcomes, to the microsecond that
/// PostgreSQL keeps (so the api's answer and the stored record agree).
fn batch_time() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// Time from a saga's start until each step's result arrived.
static STEP_SECONDS: std::sync::LazyLock<prometheus::HistogramVec> =
    std::sync::LazyLock::new(|| {
        prometheus::register_histogram_vec!(
            "saga_step_seconds",
            "Time from the start of a checkout saga until a step's result arrived, by step",
            &["step"],
            runtime::metrics::LATENCY_BUCKETS.to_vec()
        )
        .expect("metric registers once")
    });

fn to_value(item: &impl serde::Serialize) -> Value {
    // Our message types always serialise.
    serde_json::to_value(item).unwrap_or(Value::Null)
}

/// `order-checkout`: checkout requests from `api`.
pub struct Requests(Checkout, CancellationToken);

impl Handler<CheckoutRequested> for Requests {
    type Error = CheckoutError;

    fn name(&self) -> &'static str {
        "order-checkout"
    }

    async fn apply(&self, items: &[CheckoutRequested]) -> Result<(), CheckoutError> {
        self.0.on_requests(items, &self.1).await
    }

    async fn reject(&self, item: &CheckoutRequested, cause: &str) -> Result<(), CheckoutError> {
        self.0
            .reject_request(item, cause, to_value(item), &self.1)
            .await
    }

    /// A request that still names its ID (and order) fails; anything else
    /// is only kept.
    async fn dead_letter(&self, raw: &Value, cause: &str) -> Result<(), CheckoutError> {
        let request_id = raw
            .get("request_id")
            .and_then(Value::as_str)
            .and_then(|id| Uuid::parse_str(id).ok());
        let Some(request_id) = request_id else {
            return self
                .0
                .keep_dead_letter(self.name(), cause, raw.clone())
                .await;
        };
        let order_id = raw.get("order_id").and_then(Value::as_str).unwrap_or("");
        let request = CheckoutRequested {
            request_id,
            order_id: OrderId::from(order_id),
        };
        self.0
            .reject_request(&request, cause, raw.clone(), &self.1)
            .await
    }
}

/// `order-steps`: step results from stock-svc and payment-svc.
pub struct Results(Checkout, CancellationToken);

impl Handler<StepResult> for Results {
    type Error = CheckoutError;

    fn name(&self) -> &'static str {
        "order-steps"
    }

    async fn apply(&self, items: &[StepResult]) -> Result<(), CheckoutError> {
        self.0.on_results(items, &self.1).await
    }

    /// A result its saga cannot take is kept for an operator; the saga
    /// stays as it is (failing it could leave stock or credit taken). If it
    /// never ends, its request stays pending and `api` re-publishes it,
    /// which makes the saga ask for the missing result again.
    async fn reject(&self, item: &StepResult, cause: &str) -> Result<(), CheckoutError> {
        tracing::error!(saga_id = %item.saga_id, step = item.step.as_str(), %cause, "step result rejected; kept in dead_letters");
        self.0
            .keep_dead_letter(self.name(), cause, to_value(item))
            .await
    }

    async fn dead_letter(&self, raw: &Value, cause: &str) -> Result<(), CheckoutError> {
        self.0
            .keep_dead_letter(self.name(), cause, raw.clone())
            .await
    }

    /// A running saga moves only once it has both of its results, so a
    /// batch of lone first results would write them and send nothing:
    /// waiting a moment for their partners saves that transaction (at one
    /// client, most sagas' two results arrived in two batches).
    fn awaits_partner(&self, items: &[StepResult]) -> bool {
        only_first_halves(items)
    }
}

/// Whether every result is a reserve or a charge whose partner (the other
/// one of the same saga) is not among them: applying them could only
/// record halves (unless a partner came long before, which the saga then
/// finds a moment later).
fn only_first_halves(results: &[StepResult]) -> bool {
    let mut sagas = std::collections::HashSet::with_capacity(results.len());
    !results.is_empty()
        && results
            .iter()
            .all(|r| matches!(r.step, Step::Reserve | Step::Charge) && sagas.insert(r.saga_id))
}

#[cfg(test)]
mod tests {
    use contracts::messages::saga::{Step, StepOutcome, StepResult};
    use uuid::Uuid;

    use super::only_first_halves;

    fn result(saga_id: Uuid, step: Step) -> StepResult {
        StepResult {
            saga_id,
            step,
            outcome: StepOutcome::Done,
        }
    }

    #[test]
    fn lone_first_results_wait_for_their_partners_and_nothing_else_does() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(only_first_halves(&[result(a, Step::Reserve)]));
        assert!(only_first_halves(&[
            result(a, Step::Reserve),
            result(b, Step::Charge)
        ]));
        // A pair is complete: it moves its saga now.
        assert!(!only_first_halves(&[
            result(a, Step::Reserve),
            result(b, Step::Charge),
            result(a, Step::Charge)
        ]));
        // A compensation ends its saga.
        assert!(!only_first_halves(&[
            result(a, Step::Reserve),
            result(b, Step::Refund)
        ]));
        assert!(!only_first_halves(&[result(a, Step::Release)]));
        assert!(!only_first_halves(&[]));
    }
}
