//! Outcomes: the end of a record's life. Checkout outcomes from order-svc
//! are finalised in one statement per batch and announced to every
//! replica, whose waiters wake.

use std::sync::Arc;

use contracts::messages::saga::{CheckoutOutcome, FailureReason};
use futures::StreamExt;
use runtime::{consumer::Handler, jetstream::Outgoing, tasks::Tasks};
use tokio_util::sync::CancellationToken;

use super::{store, RequestRecord, Requests};

/// Most outcome messages (each a batch) finalised in one statement.
pub const MAX_MESSAGES: usize = 64;

/// Starts the announcement listeners under `tasks`.
pub(super) fn start(requests: &Requests, tasks: &mut Tasks) {
    let r = &requests.inner;
    // Another replica finalised records: wake the waiters here.
    let waiters = r.waiters.clone();
    tasks.spawn(
        "announcement listener",
        listen(
            r.js.client(),
            r.subjects.requests_final(),
            tasks.stop_token(),
            move |records: Vec<RequestRecord>| records.iter().for_each(|r| waiters.notify(r)),
        ),
    );
    // order-svc ended sagas (right after its commit; only it may publish
    // here): remember each outcome and wake the waiters with it, before the
    // record is finalised.
    let (waiters, ended) = (r.waiters.clone(), r.ended.clone());
    tasks.spawn(
        "saga end listener",
        listen(
            r.js.client(),
            r.subjects.checkout_ended(),
            tasks.stop_token(),
            move |outcomes: Vec<CheckoutOutcome>| {
                let heard = chrono::Utc::now();
                for outcome in &outcomes {
                    ended.insert(outcome, heard);
                    waiters.notify_outcome(outcome, heard);
                }
            },
        ),
    );
}

/// The handler of the outcome consumer (`api-outcomes`, shared by all api
/// replicas): finalise the records in one statement, announce them to
/// every replica in one message, then acknowledge.
pub(super) fn handler(requests: &Requests) -> impl Handler<CheckoutOutcome> + 'static {
    // Every series exists from the start, so dashboards read 0, not nothing.
    OUTCOMES.with_label_values(&["succeeded", "none"]);
    for reason in FailureReason::ALL {
        OUTCOMES.with_label_values(&["failed", reason.as_str()]);
    }
    std::sync::LazyLock::force(&DURATION);
    Finalise(requests.inner.clone())
}

/// The outcome consumer's handler.
struct Finalise(Arc<super::Inner>);

impl Handler<CheckoutOutcome> for Finalise {
    type Error = runtime::db::DbError;

    fn name(&self) -> &'static str {
        "api-outcomes"
    }

    async fn apply(&self, outcomes: &[CheckoutOutcome]) -> Result<(), Self::Error> {
        let s = &self.0;
        let finalised = store::finalize(&s.pool, outcomes).await?;
        for record in &finalised {
            observe(record);
            tracing::debug!(request_id = %record.request_id, progress = ?record.progress, "request final");
        }
        announce(s, &finalised).await;
        if finalised.iter().any(|r| r.webhook.is_some()) {
            s.webhook_wake.notify_one();
        }
        Ok(())
    }

    /// An outcome that cannot be recorded is not guessed at (a record
    /// marked failed for a checkout that succeeded would lie): it is logged,
    /// and the record, still pending, is re-published by the sweeper, which
    /// makes order-svc send its outcome again.
    async fn reject(&self, outcome: &CheckoutOutcome, cause: &str) -> Result<(), Self::Error> {
        tracing::error!(request_id = %outcome.request_id, verdict = ?outcome.verdict, %cause, "checkout outcome cannot be recorded; dropped");
        Ok(())
    }

    async fn dead_letter(&self, raw: &serde_json::Value, cause: &str) -> Result<(), Self::Error> {
        tracing::error!(item = %raw, %cause, "undecodable checkout outcome; dropped");
        Ok(())
    }
}

static OUTCOMES: std::sync::LazyLock<prometheus::IntCounterVec> = std::sync::LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "checkout_outcomes_total",
        "Finished checkouts, by status and reason (none for successes)",
        &["status", "reason"]
    )
    .expect("metric registers once")
});

static DURATION: std::sync::LazyLock<prometheus::Histogram> = std::sync::LazyLock::new(|| {
    prometheus::register_histogram!(
        "checkout_duration_seconds",
        "End-to-end checkout time: request record created to final",
        runtime::metrics::LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

fn observe(record: &RequestRecord) {
    let reason = record
        .progress
        .reason()
        .map_or("none", FailureReason::as_str);
    OUTCOMES
        .with_label_values(&[record.progress.status().as_str(), reason])
        .inc();
    if let Some(done) = record.completed_at {
        let micros = (done - record.created_at).num_microseconds().unwrap_or(0);
        DURATION.observe(micros.max(0) as f64 / 1e6);
    }
}

/// Tells every replica which records are final: as few core-NATS messages
/// as `NATS_MAX_MESSAGE_BYTES` allows (a backlog finalises thousands at
/// once).
async fn announce(s: &super::Inner, records: &[RequestRecord]) {
    let subject = s.subjects.requests_final();
    let messages = match Outgoing::batch(subject, records, s.settings.max_message_bytes) {
        Ok(messages) => messages,
        Err(e) => {
            // Waiters fall back to polling the database.
            tracing::error!(error = %e, "cannot announce final records");
            return;
        }
    };
    for m in messages {
        if let Err(e) = s.js.client().publish(m.subject, m.payload).await {
            tracing::warn!(error = %e, "cannot announce final records");
        }
    }
}

/// Listens to one core-NATS announcement subject until `stop`, handing
/// each decoded batch to `on`. The subscription survives NATS reconnects
/// (the client re-subscribes); only a closed client ends it, a fault.
async fn listen<T: serde::de::DeserializeOwned>(
    nats: async_nats::Client,
    subject: String,
    stop: CancellationToken,
    on: impl Fn(Vec<T>),
) -> Result<(), String> {
    let mut sub = nats
        .subscribe(subject.clone())
        .await
        .map_err(|e| format!("cannot subscribe to {subject}: {e}"))?;
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            msg = sub.next() => msg,
        };
        let Some(msg) = msg else {
            return Err(format!("the subscription to {subject} ended"));
        };
        match serde_json::from_slice::<Vec<T>>(&msg.payload) {
            Ok(items) => on(items),
            Err(e) => tracing::warn!(error = %e, %subject, "undecodable announcement"),
        }
    }
}
