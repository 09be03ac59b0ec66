//! The batch loop every JetStream consumer runs.
//!
//! Messages are pulled continuously; whatever has arrived by the time the
//! previous batch is done forms the next batch (up to a cap), so batches
//! grow with load and stay small when idle. Every message is itself a batch
//! of items (see [`contracts::messages::saga`]); the loop decodes them, hands the
//! [`Handler`] one flat, typed slice of items, and only after every item was
//! applied or rejected durably (committed, and what it causes published)
//! acknowledges the messages: a crash anywhere before the ack means
//! redelivery.
//!
//! The loop owns everything that is not business logic:
//! - a batch that fails because of its data is split until the failing item
//!   stands alone; that item is [rejected](Handler::reject) (given a final
//!   outcome) and every other item is applied (see [`isolate`]), so one
//!   poison item never holds up the others;
//! - a batch that fails for a transient reason ([`Fault::is_transient`]:
//!   database or NATS down) is retried in place with backoff while
//!   JetStream is told the messages are still in progress, so an outage
//!   delays work instead of bouncing it around as redeliveries (and does not
//!   spend the messages' deliveries);
//! - an item that cannot be decoded goes to [`Handler::dead_letter`];
//! - a message on its last delivery (`max_deliver` in `nats/jetstream.json`:
//!   it was pulled that often without being settled, e.g. because handling
//!   it crashed the process) is not applied again: its items are rejected;
//! - a consumer that disappeared (stream or consumer deleted, NATS restarted
//!   without its data) is created again, with backoff;
//! - cancelling `stop` ends the loop after the batch in hand is applied and
//!   acknowledged; what was pulled but not started is handed back at once;
//! - a batch that would only record half of a pair whose other half is on
//!   its way ([`Handler::awaits_partner`]: the first of a saga's two step
//!   results) waits a moment for the next message and is applied with it:
//!   one transaction instead of two, and no later for anybody, since
//!   nothing can come of the half alone.

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
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{jetstream, jetstream::Topology};

mod isolate;

pub use crate::fault::Fault;

/// A consumer's business logic: how to apply items, and how to give an item
/// that cannot be applied its final outcome instead.
///
/// Every method must be idempotent: after a crash, any of them may run again
/// for the same items.
pub trait Handler<T>: Send + Sync {
    type Error: Fault + Send;

    /// Names the handler in logs (the durable's name).
    fn name(&self) -> &'static str;

    /// Applies all of `items` or none of them (then it returns the error):
    /// committed, and every message it causes published.
    fn apply(&self, items: &[T]) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Ends `item` durably without applying it, because of its data (`cause`
    /// says what went wrong): e.g. the checkout fails, the step is refused.
    /// A repeat must find the first rejection (or the item's real outcome,
    /// if it had one) and answer the same.
    fn reject(&self, item: &T, cause: &str)
        -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Keeps an item that cannot even be decoded for an operator (`raw` is
    /// the item, or the whole payload when that is not a JSON array), and
    /// ends its request if `raw` still tells which one it is.
    fn dead_letter(
        &self,
        raw: &Value,
        cause: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether applying `items` now could only record halves of pairs
    /// whose other halves are on their way and cause nothing else (e.g.
    /// only first step results of sagas that wait for both): then the loop
    /// waits up to [`PAIRING_WAIT`] for the next message and applies both
    /// together. A wrong `true` costs that wait, never correctness.
    fn awaits_partner(&self, _items: &[T]) -> bool {
        false
    }
}

/// How long a batch that [awaits its partner](Handler::awaits_partner)
/// waits for the next message, at most (tokio's timer rounds it up to its
/// next millisecond tick: 1–2 ms). Short: a saga's two step results are
/// published within a fraction of a millisecond of each other by two
/// services working in parallel; if the other half went to another replica,
/// this is what the wait costs.
pub const PAIRING_WAIT: Duration = Duration::from_millis(1);

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
    /// How long a batch that awaits its partner waits for it
    /// ([`PAIRING_WAIT`] unless a test needs it longer).
    pub pairing_wait: Duration,
}

/// At shutdown, how long messages still arriving are handed back, at most,
/// and after how long without one the hand-back ends.
const HAND_BACK_GRACE: Duration = Duration::from_millis(500);
const HAND_BACK_QUIET: Duration = Duration::from_millis(50);

/// How often a batch still being handled is reported in progress: well
/// within the consumers' `ack_wait` (10 s, `nats/jetstream.json`).
const IN_PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// Backoff between attempts in place after a transient fault.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What waiting for a batch's partner brought.
enum Partner<I> {
    /// The next chunk of the pull stream.
    Came(I),
    /// Nothing within the wait (or shutdown began).
    Quiet,
    /// The pull stream ended: reopen it after this batch.
    StreamEnded,
}

/// The items of one pulled batch, sorted by what happens to them.
struct Work<T> {
    /// Messages to acknowledge once their items are settled.
    messages: Vec<Message>,
    /// Messages on their last delivery (`max_deliver`).
    exhausted: Vec<Message>,
    /// Items to apply.
    items: Vec<T>,
    /// Items of the exhausted messages, with why: to reject, never to apply
    /// again (applying them may be what crashed us before).
    last_chance: Vec<(T, String)>,
    /// Items (or whole payloads) that do not decode, with why.
    undecodable: Vec<(Value, String)>,
}

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
            pairing_wait: PAIRING_WAIT,
        }
    }

    /// Runs `handler` over batches until `stop` is cancelled.
    pub async fn run<T, H>(self, handler: H, stop: CancellationToken)
    where
        T: DeserializeOwned + Send + Sync,
        H: Handler<T>,
    {
        let name = self.durable;
        // Counters exist at zero from the start, so rates and alerts work
        // before the first redelivery or poison message.
        for result in ["ack", "nak", "term"] {
            crate::metrics::CONSUMED.with_label_values(&[name, result]);
        }
        crate::metrics::REDELIVERED.with_label_values(&[name]);
        crate::metrics::REJECTED.with_label_values(&[name]);
        let max_deliver = self.topology.max_deliver(name);
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
                let (batch, mut broken) = messages_of(name, items);
                let mut ended = false;
                if !batch.is_empty() {
                    let mut work = Work::decode(name, batch, max_deliver);
                    // One wait, for one more chunk: a batch grows to at
                    // most twice `max_messages` and waits `pairing_wait`
                    // at most, whatever arrives.
                    if !broken
                        && work.messages.len() < self.max_messages
                        && handler.awaits_partner(&work.items)
                    {
                        match self.await_partner(&mut chunks, &stop).await {
                            Partner::Came(items) => {
                                let (more, gone) = messages_of(name, items);
                                broken |= gone;
                                work.absorb(Work::decode(name, more, max_deliver));
                            }
                            Partner::Quiet => {}
                            Partner::StreamEnded => ended = true,
                        }
                    }
                    self.handle(work, &handler, &stop, &mut summary).await;
                }
                summary.maybe_log();
                if ended {
                    break;
                }
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

    /// Waits up to `pairing_wait` for the next chunk of the pull stream
    /// (see [`Handler::awaits_partner`]); cancelling `stop` ends the wait.
    async fn await_partner<S>(&self, chunks: &mut S, stop: &CancellationToken) -> Partner<S::Item>
    where
        S: futures::Stream + Unpin,
    {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => Partner::Quiet,
            next = tokio::time::timeout(self.pairing_wait, chunks.next()) => match next {
                Ok(Some(items)) => Partner::Came(items),
                Ok(None) => Partner::StreamEnded,
                Err(_) => Partner::Quiet,
            },
        };
        let result = if matches!(next, Partner::Came(_)) {
            "joined"
        } else {
            "alone"
        };
        crate::metrics::PAIRING_WAITS
            .with_label_values(&[self.durable, result])
            .inc();
        next
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

    /// Settles every item of `work` (applied, rejected or dead-lettered),
    /// then acknowledges its messages. Transient faults are retried in place
    /// until they pass or `stop` is cancelled.
    async fn handle<T, H>(
        &self,
        work: Work<T>,
        handler: &H,
        stop: &CancellationToken,
        summary: &mut Summary,
    ) where
        T: Sync,
        H: Handler<T>,
    {
        let name = self.durable;
        let timer = crate::metrics::BATCH_DURATION
            .with_label_values(&[name])
            .start_timer();
        let count = work.len();
        crate::metrics::BATCH_SIZE
            .with_label_values(&[name])
            .observe(count as f64);
        let mut delay = RETRY_FIRST;
        let mut attempt = 1;
        loop {
            // However long the handler takes (it may retry a publish while
            // NATS is down), JetStream hears the batch is still in hand and
            // does not redeliver it to another replica meanwhile.
            match work.in_progress_during(work.settle(handler)).await {
                Ok(rejected) => {
                    settle(name, &work.messages, AckKind::Ack, "ack").await;
                    settle(name, &work.exhausted, AckKind::Ack, "ack").await;
                    crate::metrics::REJECTED
                        .with_label_values(&[name])
                        .inc_by(rejected as u64);
                    summary.add(work.messages.len() + work.exhausted.len(), count);
                    break;
                }
                Err(e) if !e.is_transient() => {
                    // A rejection itself failed because of the data: nothing
                    // here can settle these items. A redelivery tries again,
                    // and the last one gives up.
                    tracing::error!(consumer = name, items = count, error = %e, "cannot reject an item; handing the batch back");
                    settle(name, &work.messages, AckKind::Nak(Some(RETRY_MAX)), "nak").await;
                    settle(name, &work.exhausted, AckKind::Term, "term").await;
                    break;
                }
                Err(e) if stop.is_cancelled() => {
                    tracing::warn!(consumer = name, items = count, error = %e, "batch failed at shutdown; handing it back for redelivery");
                    settle(name, &work.messages, AckKind::Nak(None), "nak").await;
                    settle(name, &work.exhausted, AckKind::Nak(None), "nak").await;
                    break;
                }
                Err(e) => {
                    tracing::warn!(consumer = name, items = count, attempt, error = %e, retry_in = ?delay, "batch failed; retrying");
                    // Still working on it: keep JetStream from redelivering
                    // the messages elsewhere while this replica retries.
                    in_progress(&work.messages).await;
                    in_progress(&work.exhausted).await;
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                    attempt += 1;
                }
            }
        }
        timer.observe_duration();
    }
}

impl<T: DeserializeOwned> Work<T> {
    /// Decodes a pulled batch, setting aside what cannot be decoded and the
    /// messages on their last delivery.
    fn decode(name: &'static str, batch: Vec<Message>, max_deliver: Option<u64>) -> Self {
        let mut work = Work {
            messages: Vec::with_capacity(batch.len()),
            exhausted: Vec::new(),
            items: Vec::new(),
            last_chance: Vec::new(),
            undecodable: Vec::new(),
        };
        let mut redelivered = 0;
        for message in batch {
            let delivered = message
                .info()
                .map_or(1, |i| u64::try_from(i.delivered).unwrap_or(1));
            if delivered > 1 {
                redelivered += 1;
            }
            let (items, undecodable) = decode_items::<T>(&message.payload);
            if !undecodable.is_empty() {
                tracing::error!(consumer = name, subject = %message.subject, count = undecodable.len(), "undecodable items; dead-lettering them");
            }
            work.undecodable.extend(undecodable);
            if max_deliver.is_some_and(|max| delivered >= max) {
                tracing::error!(consumer = name, subject = %message.subject, delivered, items = items.len(), "message delivered its last time without being settled; rejecting its items");
                let cause = format!("not settled in {delivered} deliveries");
                work.last_chance
                    .extend(items.into_iter().map(|i| (i, cause.clone())));
                work.exhausted.push(message);
            } else {
                work.items.extend(items);
                work.messages.push(message);
            }
        }
        if redelivered > 0 {
            crate::metrics::REDELIVERED
                .with_label_values(&[name])
                .inc_by(redelivered);
        }
        work
    }
}

impl<T> Work<T> {
    /// Takes in the items and messages of a batch pulled after this one.
    fn absorb(&mut self, other: Work<T>) {
        self.messages.extend(other.messages);
        self.exhausted.extend(other.exhausted);
        self.items.extend(other.items);
        self.last_chance.extend(other.last_chance);
        self.undecodable.extend(other.undecodable);
    }

    fn len(&self) -> usize {
        self.items.len() + self.last_chance.len() + self.undecodable.len()
    }

    /// One attempt to settle every item: dead-letter the undecodable ones,
    /// reject those out of deliveries, apply the rest (rejecting the ones
    /// whose data fails). Returns how many items were not applied.
    async fn settle<H: Handler<T>>(&self, handler: &H) -> Result<usize, H::Error>
    where
        T: Sync,
    {
        for (raw, cause) in &self.undecodable {
            handler.dead_letter(raw, cause).await?;
        }
        for (item, cause) in &self.last_chance {
            handler.reject(item, cause).await?;
        }
        let rejected = isolate::apply_isolating(handler, &self.items).await?;
        Ok(rejected + self.undecodable.len() + self.last_chance.len())
    }

    /// Runs `work`, telling JetStream every few seconds that the messages
    /// are still in hand (`+WPI` restarts their `ack_wait`).
    async fn in_progress_during<F: Future>(&self, work: F) -> F::Output {
        tokio::pin!(work);
        let mut beat = tokio::time::interval_at(
            tokio::time::Instant::now() + IN_PROGRESS_EVERY,
            IN_PROGRESS_EVERY,
        );
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = beat.tick() => {
                    in_progress(&self.messages).await;
                    in_progress(&self.exhausted).await;
                }
            }
        }
    }
}

/// The messages of one pulled chunk, and whether the pull stream is broken
/// for good (a deleted consumer); other errors (missed heartbeats and the
/// like) recover by themselves.
fn messages_of(
    name: &'static str,
    items: Vec<Result<Message, async_nats::jetstream::consumer::pull::MessagesError>>,
) -> (Vec<Message>, bool) {
    use async_nats::jetstream::consumer::pull::MessagesErrorKind as K;
    let mut batch = Vec::with_capacity(items.len());
    let mut broken = false;
    for item in items {
        match item {
            Ok(m) => batch.push(m),
            Err(e) => {
                broken |= matches!(e.kind(), K::ConsumerDeleted | K::NoResponders);
                tracing::debug!(consumer = name, error = %e, "pull stream hiccup");
            }
        }
    }
    (batch, broken)
}

/// Most bytes of an undecodable payload kept for the dead letter.
const DEAD_LETTER_BYTES: usize = 4096;

/// The items of one message, and those that do not decode with why. The
/// whole array at once first (the usual case); item by item only when that
/// fails, so one bad item does not take its neighbours with it.
fn decode_items<T: DeserializeOwned>(payload: &[u8]) -> (Vec<T>, Vec<(Value, String)>) {
    if let Ok(items) = serde_json::from_slice::<Vec<T>>(payload) {
        return (items, Vec::new());
    }
    let values = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Array(values)) => values,
        Ok(other) => return (Vec::new(), vec![(other, "not a JSON array".into())]),
        Err(e) => {
            let end = payload.len().min(DEAD_LETTER_BYTES);
            let text = String::from_utf8_lossy(&payload[..end]).into_owned();
            return (Vec::new(), vec![(Value::String(text), e.to_string())]);
        }
    };
    let mut items = Vec::with_capacity(values.len());
    let mut undecodable = Vec::new();
    for value in values {
        match T::deserialize(&value) {
            Ok(item) => items.push(item),
            Err(e) => undecodable.push((value, e.to_string())),
        }
    }
    (items, undecodable)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Item {
        id: u32,
    }

    #[test]
    fn a_bad_item_does_not_take_its_neighbours_with_it() {
        let (items, bad) = decode_items::<Item>(br#"[{"id":1},{"id":"x"},{"id":3}]"#);
        assert_eq!(items, vec![Item { id: 1 }, Item { id: 3 }]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, serde_json::json!({"id": "x"}));
    }

    #[test]
    fn a_payload_that_is_no_array_is_dead_lettered_whole() {
        let (items, bad) = decode_items::<Item>(br#"{"id":1}"#);
        assert!(items.is_empty());
        assert_eq!(bad[0].0, serde_json::json!({"id": 1}));

        let junk = vec![b'x'; DEAD_LETTER_BYTES * 2];
        let (items, bad) = decode_items::<Item>(&junk);
        assert!(items.is_empty());
        assert_eq!(
            bad[0].0.as_str().map(str::len),
            Some(DEAD_LETTER_BYTES),
            "kept, but bounded"
        );
    }
}
