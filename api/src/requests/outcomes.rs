//! The api's background work: finalising records from outcomes, hearing
//! that records became final, and re-publishing stuck records.

use std::{sync::Arc, time::Duration};

use common::{
    consumer::Consumer,
    jetstream::{self, Outgoing},
    messages::saga::{CheckoutOutcome, CheckoutRequested, FailureReason},
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{records, records::RequestRecord, state::AppState, waiters::Waiters};

/// Most outcome messages (each a batch) finalised in one statement.
pub const MAX_MESSAGES: usize = 64;

/// Most records announced in one core-NATS message.
const ANNOUNCE_CHUNK: usize = 256;

/// Consumes checkout outcomes (shared by all api replicas): finalise the
/// records in one statement, announce them to every replica in one message,
/// then acknowledge.
pub async fn consume_outcomes(s: AppState, consumer: Consumer, stop: CancellationToken) {
    // Every series exists from the start, so dashboards read 0, not nothing.
    OUTCOMES.with_label_values(&["succeeded", "none"]);
    for reason in [
        FailureReason::InsufficientStock,
        FailureReason::InsufficientCredit,
        FailureReason::OrderNotFound,
        FailureReason::ItemNotFound,
        FailureReason::UserNotFound,
    ] {
        OUTCOMES.with_label_values(&["failed", reason.as_str()]);
    }
    std::sync::LazyLock::force(&DURATION);
    let handler = |outcomes: Vec<CheckoutOutcome>| {
        let s = s.clone();
        async move {
            let finalised = records::finalize(&s.pool, &outcomes).await?;
            for record in &finalised {
                observe(record);
                tracing::debug!(request_id = %record.request_id, status = ?record.status, reason = ?record.reason, "request final");
            }
            announce(&s, &finalised).await;
            if finalised.iter().any(|r| r.webhook.is_some()) {
                s.webhook_wake.notify_one();
            }
            Ok::<_, common::db::DbError>(())
        }
    };
    consumer.run(handler, stop).await;
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
        common::metrics::LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

fn observe(record: &RequestRecord) {
    let status = match record.status {
        records::Status::Succeeded => "succeeded",
        records::Status::Failed => "failed",
        records::Status::Pending => "pending",
    };
    OUTCOMES
        .with_label_values(&[status, record.reason.as_deref().unwrap_or("none")])
        .inc();
    if let Some(done) = record.completed_at {
        let micros = (done - record.created_at).num_microseconds().unwrap_or(0);
        DURATION.observe(micros.max(0) as f64 / 1e6);
    }
}

/// Tells every replica (one message per chunk) which records are final.
async fn announce(s: &AppState, records: &[RequestRecord]) {
    for chunk in records.chunks(ANNOUNCE_CHUNK) {
        match serde_json::to_vec(chunk) {
            Ok(body) => {
                let subject = s.subjects.requests_final();
                if let Err(e) = s.js.client().publish(subject, body.into()).await {
                    // Waiters fall back to polling the database.
                    tracing::warn!(error = %e, "cannot announce final records");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode records"),
        }
    }
}

/// Wakes this replica's waiters when any replica announces final records.
/// The subscription survives NATS reconnects (the client re-subscribes).
pub async fn listen_for_final(
    nats: async_nats::Client,
    subject: String,
    waiters: Arc<Waiters>,
    stop: CancellationToken,
) -> Result<(), String> {
    let mut sub = nats
        .subscribe(subject)
        .await
        .map_err(|e| format!("cannot subscribe: {e}"))?;
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            msg = sub.next() => msg,
        };
        let Some(msg) = msg else {
            // Only a closed client ends a subscription: a fault.
            return Err("the announcement subscription ended".into());
        };
        match serde_json::from_slice::<Vec<RequestRecord>>(&msg.payload) {
            Ok(records) => records.iter().for_each(|r| waiters.notify(r)),
            Err(e) => tracing::warn!(error = %e, "undecodable announcement"),
        }
    }
}

/// Re-publishes records still pending at their next publish time: the
/// guarantee that a request ID handed out always reaches a final status,
/// even if `api` died between storing and publishing. Also purges expired
/// idempotency keys and request records past their retention.
pub async fn sweep(s: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(s.settings.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = tokio::time::Instant::now();
            purge(&s).await;
        }
        let stuck = match records::claim_stuck(&s.pool, 500).await {
            Ok(stuck) => stuck,
            Err(e) => {
                tracing::warn!(error = %e, "sweeper cannot read records");
                continue;
            }
        };
        if stuck.is_empty() {
            continue;
        }
        tracing::info!(count = stuck.len(), "re-publishing pending checkouts");
        let requests: Vec<CheckoutRequested> = stuck
            .into_iter()
            .map(|(request_id, order_id)| CheckoutRequested {
                request_id,
                order_id,
            })
            .collect();
        // A fresh message ID per attempt: JetStream must not drop a
        // re-publish as a duplicate of the attempt that got lost.
        let message = Outgoing::batch(s.subjects.checkout_requested(), &requests);
        if let Err(e) = jetstream::publish_all(&s.js, &[message]).await {
            tracing::warn!(error = %e, "re-publish failed; will try again");
        }
    }
}

/// How often the sweeper purges what has expired.
const PURGE_EVERY: Duration = Duration::from_secs(60);

async fn purge(s: &AppState) {
    if let Err(e) = crate::idempotency::purge_expired(&s.pool).await {
        tracing::warn!(error = %e, "cannot purge expired idempotency keys");
    }
    match common::retention::purge(&s.pool, &records::RETAINED, s.settings.retention).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(records = n, "purged request records past their retention"),
        Err(e) => tracing::warn!(error = %e, "cannot purge old request records"),
    }
}
