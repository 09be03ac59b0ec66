//! The batch loop every JetStream consumer runs.
//!
//! Messages are pulled continuously; whatever has arrived by the time the
//! previous batch is done forms the next batch (up to a cap), so batches
//! grow with load and stay small when idle. Every message is itself a batch
//! of items (see [`crate::messages::saga`]); the loop decodes them, hands the
//! handler one flat, typed `Vec` of items, and only after the handler
//! succeeded (committed, and published what it causes) acknowledges the
//! messages: a crash anywhere before the ack means redelivery.
//!
//! The loop owns everything that is not business logic:
//! - an undecodable message is terminated (never redelivered) and logged;
//! - a failed batch (database or NATS down) is retried in place with backoff
//!   while JetStream is told the messages are still in progress, so an outage
//!   delays work instead of bouncing it around as redeliveries;
//! - a consumer that disappeared (stream or consumer deleted, NATS restarted
//!   without its data) is created again, with backoff;
//! - cancelling `stop` ends the loop after the batch in hand is applied and
//!   acknowledged; what was pulled but not started is handed back at once.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::{AckKind, Context, Message};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::jetstream::{self, Topology};

/// A consumer's liveness, for `/ready`: true while its pull stream is open.
#[derive(Debug, Clone)]
pub struct Liveness {
    pub name: &'static str,
    up: Arc<AtomicBool>,
}

impl Liveness {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            up: Arc::default(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn set(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }
}

/// What a consumer loop needs besides its handler.
pub struct Consumer {
    pub js: Context,
    /// Where the durable's definition comes from (and the streams', when
    /// they are gone).
    pub topology: Topology,
    /// The durable name in `nats/jetstream.json`; also labels metrics.
    pub durable: &'static str,
    /// Most messages (each a batch of items) handled together.
    pub max_messages: usize,
    pub liveness: Liveness,
}

/// At shutdown, how long messages still arriving are handed back, at most,
/// and after how long without one the hand-back ends.
const HAND_BACK_GRACE: Duration = Duration::from_millis(500);
const HAND_BACK_QUIET: Duration = Duration::from_millis(50);

/// How often a batch still being handled is reported in progress: well
/// within the consumers' `ack_wait` (10 s, `nats/jetstream.json`).
const IN_PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// After this many failed attempts in place, a batch is handed back to
/// JetStream (redelivered later, perhaps grouped differently) so that one
/// batch that keeps failing cannot hold up the consumer for ever.
const MAX_ATTEMPTS_IN_PLACE: u32 = 20;

impl Consumer {
    pub fn new(
        js: Context,
        topology: Topology,
        durable: &'static str,
        max_messages: usize,
    ) -> Self {
        Self {
            js,
            topology,
            durable,
            max_messages,
            liveness: Liveness::new(durable),
        }
    }

    /// Runs `handler` over batches until `stop` is cancelled.
    ///
    /// `handler` gets the decoded items of one or more messages, in order,
    /// and applies all of them or none (then it returns an error and the
    /// same items come again).
    pub async fn run<T, H, Fut, E>(self, handler: H, stop: CancellationToken)
    where
        T: DeserializeOwned,
        H: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let name = self.durable;
        // Counters exist at zero from the start, so rates and alerts work
        // before the first redelivery or poison message.
        for result in ["ack", "nak", "term"] {
            crate::metrics::CONSUMED.with_label_values(&[name, result]);
        }
        crate::metrics::REDELIVERED.with_label_values(&[name]);
        let mut summary = Summary::new(name);
        let mut backoff = Duration::from_millis(100);
        while !stop.is_cancelled() {
            let (consumer, messages) = match self.open().await {
                Ok(m) => m,
                Err(e) => {
                    self.liveness.set(false);
                    tracing::warn!(consumer = name, error = %e, retry_in = ?backoff, "cannot pull; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            self.liveness.set(true);
            backoff = Duration::from_millis(100);
            let reporter = stop.child_token();
            tokio::spawn(report_backlog(consumer, name, reporter.clone()));
            let mut chunks = messages.ready_chunks(self.max_messages);
            loop {
                let items = tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    next = chunks.next() => match next {
                        Some(items) => items,
                        None => break,
                    },
                };
                let mut batch = Vec::with_capacity(items.len());
                let mut broken = false;
                for item in items {
                    match item {
                        Ok(m) => batch.push(m),
                        Err(e) => {
                            use async_nats::jetstream::consumer::pull::MessagesErrorKind as K;
                            // Missed heartbeats and the like: the stream
                            // recovers by itself. A deleted consumer does not.
                            broken |= matches!(e.kind(), K::ConsumerDeleted | K::NoResponders);
                            tracing::debug!(consumer = name, error = %e, "pull stream hiccup");
                        }
                    }
                }
                if !batch.is_empty() {
                    self.handle(batch, &handler, &stop, &mut summary).await;
                }
                summary.maybe_log();
                if broken {
                    tracing::warn!(consumer = name, "consumer gone; creating it again");
                    break;
                }
            }
            reporter.cancel();
            if stop.is_cancelled() {
                // Pulled but not started: hand it back at once, so another
                // replica gets it now rather than after `ack_wait`. What the
                // server sent before it saw us go may still be on the wire:
                // keep handing back until nothing comes for a moment.
                let until = Instant::now() + HAND_BACK_GRACE;
                loop {
                    let quiet = (Instant::now() + HAND_BACK_QUIET).min(until);
                    match tokio::time::timeout_at(quiet.into(), chunks.next()).await {
                        Ok(Some(items)) => {
                            let held: Vec<Message> = items.into_iter().flatten().collect();
                            settle(name, &held, AckKind::Nak(None), "nak").await;
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                // Acks and naks are only queued on the connection: send
                // them before the process may exit.
                if let Err(e) = self.js.client().flush().await {
                    tracing::warn!(consumer = name, error = %e, "cannot flush acknowledgements");
                }
            }
            self.liveness.set(false);
            if !stop.is_cancelled() {
                tracing::debug!(consumer = name, "pull stream ended; reopening");
            }
        }
        self.liveness.set(false);
    }

    /// (Re)creates the durable consumer (and the streams, if they are gone)
    /// and opens its pull stream.
    async fn open(
        &self,
    ) -> Result<
        (
            async_nats::jetstream::consumer::PullConsumer,
            async_nats::jetstream::consumer::pull::Stream,
        ),
        String,
    > {
        let consumer = match jetstream::consumer(&self.js, &self.topology, self.durable).await {
            Ok(c) => c,
            Err(first) => {
                // A nats-server that lost its data (or an operator who
                // deleted a stream): put the definitions back.
                jetstream::ensure_streams(&self.js, &self.topology)
                    .await
                    .map_err(|e| format!("{first}; then {e}"))?;
                jetstream::consumer(&self.js, &self.topology, self.durable)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        let messages = consumer
            .stream()
            .max_messages_per_batch(self.max_messages * 2)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        Ok((consumer, messages))
    }

    async fn handle<T, H, Fut, E>(
        &self,
        batch: Vec<Message>,
        handler: &H,
        stop: &CancellationToken,
        summary: &mut Summary,
    ) where
        T: DeserializeOwned,
        H: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let name = self.durable;
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

        // Decode; an undecodable message can never be handled.
        let mut good = Vec::with_capacity(batch.len());
        let mut parts: Vec<Vec<T>> = Vec::with_capacity(batch.len());
        for message in batch {
            match serde_json::from_slice::<Vec<T>>(&message.payload) {
                Ok(items) => {
                    parts.push(items);
                    good.push(message);
                }
                Err(e) => {
                    tracing::error!(consumer = name, subject = %message.subject, error = %e, "undecodable message; terminating it");
                    settle(name, &[message], AckKind::Term, "term").await;
                }
            }
        }
        let count: usize = parts.iter().map(Vec::len).sum();
        crate::metrics::BATCH_SIZE
            .with_label_values(&[name])
            .observe(count as f64);
        if good.is_empty() {
            return;
        }

        // `T` is not `Clone`, so every attempt decodes again; a retry only
        // happens during an outage, when that cost does not matter.
        let mut items: Option<Vec<T>> = Some(parts.into_iter().flatten().collect());
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let these = match items.take() {
                Some(i) => i,
                None => good
                    .iter()
                    .flat_map(|m| serde_json::from_slice::<Vec<T>>(&m.payload).unwrap_or_default())
                    .collect(),
            };
            // However long the handler takes (it may retry a publish while
            // NATS is down), JetStream hears the batch is still in hand and
            // does not redeliver it to another replica meanwhile.
            let work = handler(these);
            tokio::pin!(work);
            let mut beat = tokio::time::interval_at(
                tokio::time::Instant::now() + IN_PROGRESS_EVERY,
                IN_PROGRESS_EVERY,
            );
            let result = loop {
                tokio::select! {
                    result = &mut work => break result,
                    _ = beat.tick() => in_progress(&good).await,
                }
            };
            match result {
                Ok(()) => {
                    settle(name, &good, AckKind::Ack, "ack").await;
                    summary.add(good.len(), count);
                    break;
                }
                Err(e) if attempt >= MAX_ATTEMPTS_IN_PLACE || stop.is_cancelled() => {
                    tracing::warn!(consumer = name, items = count, error = %e, "batch failed; handing it back for redelivery");
                    settle(name, &good, AckKind::Nak(Some(delay)), "nak").await;
                    break;
                }
                Err(e) => {
                    tracing::warn!(consumer = name, items = count, attempt, error = %e, retry_in = ?delay, "batch failed; retrying");
                    // Still working on it: keep JetStream from redelivering
                    // the messages elsewhere while this replica retries.
                    in_progress(&good).await;
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                    attempt += 1;
                }
            }
        }
        timer.observe_duration();
    }
}

/// Tells JetStream these messages are still being worked on (`+WPI`), which
/// restarts their `ack_wait`.
async fn in_progress(messages: &[Message]) {
    for m in messages {
        let _ = m.ack_with(AckKind::Progress).await;
    }
}

/// Acknowledges (or naks, or terminates) messages, all at once.
async fn settle(name: &'static str, messages: &[Message], kind: AckKind, label: &str) {
    crate::metrics::CONSUMED
        .with_label_values(&[name, label])
        .inc_by(messages.len() as u64);
    let acks = messages.iter().map(|m| m.ack_with(kind));
    for result in futures::future::join_all(acks).await {
        // A lost ack only means a redelivery, which the handlers absorb.
        if let Err(e) = result {
            tracing::warn!(consumer = name, error = %e, "cannot acknowledge");
        }
    }
}

/// A line a minute per consumer at the default level: what an operator reads
/// instead of a line per message.
struct Summary {
    name: &'static str,
    since: Instant,
    messages: usize,
    items: usize,
}

impl Summary {
    const EVERY: Duration = Duration::from_secs(60);

    fn new(name: &'static str) -> Self {
        Self {
            name,
            since: Instant::now(),
            messages: 0,
            items: 0,
        }
    }

    fn add(&mut self, messages: usize, items: usize) {
        self.messages += messages;
        self.items += items;
    }

    fn maybe_log(&mut self) {
        if self.since.elapsed() < Self::EVERY {
            return;
        }
        if self.items > 0 {
            tracing::info!(
                consumer = self.name,
                messages = self.messages,
                items = self.items,
                seconds = self.since.elapsed().as_secs(),
                "consumer summary"
            );
        }
        *self = Self::new(self.name);
    }
}

/// Samples the consumer's backlog every few seconds until `stop`.
async fn report_backlog(
    mut consumer: async_nats::jetstream::consumer::PullConsumer,
    name: &'static str,
    stop: CancellationToken,
) {
    loop {
        if let Ok(info) = consumer.info().await {
            crate::metrics::CONSUMER_PENDING
                .with_label_values(&[name])
                .set(info.num_pending as i64);
            crate::metrics::CONSUMER_ACK_PENDING
                .with_label_values(&[name])
                .set(info.num_ack_pending as i64);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
