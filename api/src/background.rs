//! The api's background work: finalising records from outcomes, hearing
//! that records became final, and re-publishing stuck records.

use std::sync::Arc;

use common::{
    consumer::{self, Disposition},
    jetstream,
    messages::saga::{CheckoutOutcome, FailureReason},
};
use futures::StreamExt;

use crate::{records, records::RequestRecord, state::AppState, waiters::Waiters};

/// Most outcomes finalised in one statement.
const MAX_BATCH: usize = 512;

/// Consumes checkout outcomes (shared by all api replicas): finalise the
/// records in one statement, announce them to every replica, acknowledge.
pub async fn consume_outcomes(s: AppState) -> Result<(), jetstream::JetStreamError> {
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
    let pull = jetstream::consumer(&s.js, &s.subjects, "api-outcomes").await?;
    consumer::run(pull, "api-outcomes", MAX_BATCH, move |batch| {
        let s = s.clone();
        async move {
            let outcomes: Vec<Option<CheckoutOutcome>> = batch
                .iter()
                .map(|m| consumer::decode("api-outcomes", m))
                .collect();
            let valid: Vec<CheckoutOutcome> = outcomes.iter().flatten().cloned().collect();
            let result = match records::finalize(&s.pool, &valid).await {
                Ok(finalised) => {
                    for record in &finalised {
                        observe(record);
                        tracing::info!(request_id = %record.request_id, status = ?record.status, reason = ?record.reason, "request final");
                        announce(&s, record).await;
                    }
                    if finalised.iter().any(|r| r.webhook.is_some()) {
                        s.webhook_wake.notify_one();
                    }
                    Ok(outcomes
                        .iter()
                        .map(|o| if o.is_some() { Disposition::Ack } else { Disposition::Poison })
                        .collect())
                }
                Err(e) => Err(e),
            };
            (batch, result)
        }
    })
    .await;
    Ok(())
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

async fn announce(s: &AppState, record: &RequestRecord) {
    let subject = s.subjects.request_final(&record.request_id.to_string());
    match serde_json::to_vec(record) {
        Ok(body) => {
            if let Err(e) = s.js.client().publish(subject, body.into()).await {
                // Waiters fall back to polling the database.
                tracing::warn!(error = %e, "cannot announce a final record");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot encode a record"),
    }
}

/// Wakes this replica's waiters when any replica announces a final record.
pub async fn listen_for_final(
    nats: async_nats::Client,
    subject: String,
    waiters: Arc<Waiters>,
) -> Result<(), async_nats::SubscribeError> {
    let mut sub = nats.subscribe(subject).await?;
    while let Some(msg) = sub.next().await {
        match serde_json::from_slice::<RequestRecord>(&msg.payload) {
            Ok(record) => waiters.notify(&record),
            Err(e) => tracing::warn!(error = %e, "undecodable announcement"),
        }
    }
    Ok(())
}

/// Re-publishes records still pending at their next publish time: the
/// guarantee that a request ID handed out always reaches a final status,
/// even if `api` died between storing and publishing.
pub async fn sweep(s: AppState) {
    let mut tick = tokio::time::interval(s.settings.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = crate::idempotency::purge_expired(&s.pool).await {
            tracing::warn!(error = %e, "cannot purge expired idempotency keys");
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
        let messages = stuck
            .iter()
            .map(|(id, order)| crate::checkout::message(&s, *id, order))
            .collect();
        if let Err(e) = jetstream::publish_all(&s.js, messages).await {
            tracing::warn!(error = %e, "re-publish failed; will try again");
        }
    }
}
