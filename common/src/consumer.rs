//! The batch loop every JetStream consumer runs.
//!
//! Messages are pulled continuously; whatever has arrived by the time the
//! previous batch is done forms the next batch (up to a cap), so batches
//! grow with load and stay at one message when idle. The handler applies a
//! batch (commits, publishes what it causes) and only then does this loop
//! acknowledge: a crash anywhere before the ack means redelivery.

use std::{future::Future, time::Duration};

use async_nats::jetstream::{consumer::PullConsumer, AckKind, Message};
use futures::StreamExt;

/// What to do with one message once its batch was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Applied (or found already applied): acknowledge.
    Ack,
    /// Not now (e.g. another checkout of the same order is in flight):
    /// redeliver after the delay.
    Retry(Duration),
    /// Can never be handled (undecodable): terminate, never redeliver.
    Poison,
}

/// Delay before a batch whose handler failed (database down) is retried.
const FAILED_BATCH_DELAY: Duration = Duration::from_millis(500);

/// How many batches one consumer handles at once (`CONSUMER_CONCURRENCY`,
/// default 1). With 2, the next batch runs while one commits and waits for
/// its publish acks; that is safe because every handler serialises on row
/// locks and primary keys, not on arrival order. On a 2-core machine it was
/// slower: median 974 vs 1,032 checkouts/s (0.94×), p99 140 vs 131 ms, in an
/// A/B of `bench stress` at 64 clients (fresh `batch_init` per run, ABBA
/// order); the work is CPU-bound there and smaller batches amortise less.
/// Worth measuring again on more cores.
fn concurrency() -> usize {
    crate::config::parse_var("CONSUMER_CONCURRENCY", 1usize)
        .unwrap_or(1)
        .max(1)
}

/// Runs `handler` over batches from `consumer` forever.
///
/// `handler` returns one [`Disposition`] per message, in order, or an error,
/// in which case every message of the batch is redelivered after a delay.
pub async fn run<H, Fut, E>(
    consumer: PullConsumer,
    name: &'static str,
    max_batch: usize,
    handler: H,
) where
    H: Fn(Vec<Message>) -> Fut,
    Fut: Future<Output = (Vec<Message>, Result<Vec<Disposition>, E>)>,
    E: std::fmt::Display,
{
    // Counters exist at zero from the start, so rates and alerts work
    // before the first redelivery or poison message.
    for result in ["ack", "nak", "term"] {
        crate::metrics::CONSUMED.with_label_values(&[name, result]);
    }
    crate::metrics::REDELIVERED.with_label_values(&[name]);
    tokio::spawn(report_backlog(consumer.clone(), name));
    loop {
        let stream = consumer
            .stream()
            .max_messages_per_batch(max_batch * 2)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "cannot pull; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        stream
            .ready_chunks(max_batch)
            .for_each_concurrent(concurrency(), |items| {
                let handler = &handler;
                async move {
                    let mut batch = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            Ok(m) => batch.push(m),
                            // Missed heartbeats and the like: the stream recovers.
                            Err(e) => {
                                tracing::debug!(consumer = name, error = %e, "pull stream hiccup")
                            }
                        }
                    }
                    if !batch.is_empty() {
                        handle_batch(name, batch, handler).await;
                    }
                }
            })
            .await;
        tracing::warn!(consumer = name, "pull stream ended; reopening");
    }
}

async fn handle_batch<H, Fut, E>(name: &'static str, batch: Vec<Message>, handler: &H)
where
    H: Fn(Vec<Message>) -> Fut,
    Fut: Future<Output = (Vec<Message>, Result<Vec<Disposition>, E>)>,
    E: std::fmt::Display,
{
    let m = &crate::metrics::BATCH_SIZE;
    m.with_label_values(&[name]).observe(batch.len() as f64);
    let redelivered = batch
        .iter()
        .filter(|m| m.info().is_ok_and(|i| i.delivered > 1))
        .count();
    if redelivered > 0 {
        crate::metrics::REDELIVERED
            .with_label_values(&[name])
            .inc_by(redelivered as u64);
    }
    let timer = crate::metrics::BATCH_DURATION
        .with_label_values(&[name])
        .start_timer();
    let (batch, result) = handler(batch).await;
    let dispositions = match result {
        Ok(d) if d.len() == batch.len() => d,
        Ok(d) => {
            tracing::error!(
                consumer = name,
                got = d.len(),
                want = batch.len(),
                "handler returned the wrong number of dispositions"
            );
            vec![Disposition::Retry(FAILED_BATCH_DELAY); batch.len()]
        }
        Err(e) => {
            tracing::warn!(consumer = name, size = batch.len(), error = %e, "batch failed; will be redelivered");
            vec![Disposition::Retry(FAILED_BATCH_DELAY); batch.len()]
        }
    };
    for (message, disposition) in batch.iter().zip(dispositions) {
        let (kind, label) = match disposition {
            Disposition::Ack => (AckKind::Ack, "ack"),
            Disposition::Retry(d) => (AckKind::Nak(Some(d)), "nak"),
            Disposition::Poison => (AckKind::Term, "term"),
        };
        crate::metrics::CONSUMED
            .with_label_values(&[name, label])
            .inc();
        // A lost ack only means a redelivery, which the handlers absorb.
        if let Err(e) = message.ack_with(kind).await {
            tracing::warn!(consumer = name, error = %e, "cannot acknowledge");
        }
    }
    timer.observe_duration();
}

/// Samples the consumer's backlog every few seconds, forever.
async fn report_backlog(mut consumer: PullConsumer, name: &'static str) {
    loop {
        if let Ok(info) = consumer.info().await {
            crate::metrics::CONSUMER_PENDING
                .with_label_values(&[name])
                .set(info.num_pending as i64);
            crate::metrics::CONSUMER_ACK_PENDING
                .with_label_values(&[name])
                .set(info.num_ack_pending as i64);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Decodes a JSON message body, logging what cannot be decoded.
pub fn decode<T: serde::de::DeserializeOwned>(consumer: &str, message: &Message) -> Option<T> {
    match serde_json::from_slice(&message.payload) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(consumer, subject = %message.subject, error = %e, "undecodable message; terminating it");
            None
        }
    }
}
