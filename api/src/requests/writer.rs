//! Acceptance of checkouts: group commit of new request records, then one
//! JetStream message per batch.
//!
//! Every checkout stores its record before anything else happens, and the
//! stored record is the acceptance: from then on the checkout reaches
//! `succeeded` or `failed`. One commit per record would make the api pay an
//! fsync per request; instead concurrent checkouts hand their record to a
//! writer task, which stores whatever has queued up in one statement and
//! answers each caller after the commit. An idle system writes batches of
//! one with no added delay.
//!
//! While PostgreSQL is down, the writer keeps the batch and retries with
//! backoff; callers wait until their own deadline, so a short outage delays
//! acceptance instead of refusing it.
//!
//! After the commit the records go to the publisher, which sends each batch
//! as one `checkout requested` message and retries while NATS is down. A
//! record whose publish never happened (the api died in between) is found
//! by the sweeper.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::Context;
use contracts::{messages::saga::CheckoutRequested, Subjects};
use deadpool_postgres::Pool;
use runtime::{jetstream, jetstream::Outgoing, tasks::Tasks};
use tokio::{
    sync::{mpsc, oneshot, Mutex},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{store, NewRecord};

/// Most records per statement, and most checkouts per message.
const MAX_BATCH: usize = 512;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// Shared by every caller of the failed batch, hence the `Arc`.
    #[error("the request could not be stored in time")]
    Timeout(#[source] Arc<runtime::db::DbError>),
    #[error("the api is shutting down")]
    Stopped,
    /// The queue to the writers stayed full until the caller's deadline:
    /// nothing was stored.
    #[error("the request queue stayed full until the deadline")]
    Busy,
}

type Reply = oneshot::Sender<Result<(), WriteError>>;

struct Pending {
    record: NewRecord,
    deadline: Instant,
    reply: Reply,
}

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Pending>,
}

impl Writer {
    /// Starts the writers and publishers under `tasks`: while one commits or
    /// publishes, the next collects.
    pub fn start(
        pool: Pool,
        js: Context,
        subjects: Subjects,
        republish_after: Duration,
        max_message_bytes: usize,
        tasks: &mut Tasks,
    ) -> Self {
        let (queue, rx) = mpsc::channel(16 * 1024);
        let (to_publish, publish_rx) = mpsc::channel(64 * 1024);
        let rx = Arc::new(Mutex::new(rx));
        let publish_rx = Arc::new(Mutex::new(publish_rx));
        for _ in 0..2 {
            let (pool, rx, out, stop) = (
                pool.clone(),
                rx.clone(),
                to_publish.clone(),
                tasks.stop_token(),
            );
            tasks.spawn("record writer", async move {
                write_loop(pool, rx, out, republish_after, stop).await;
                Ok::<_, WriteError>(())
            });
            let (js, subjects, rx, stop) = (
                js.clone(),
                subjects.clone(),
                publish_rx.clone(),
                tasks.stop_token(),
            );
            tasks.spawn("checkout publisher", async move {
                publish_loop(js, subjects, rx, max_message_bytes, stop).await;
                Ok::<_, WriteError>(())
            });
        }
        Self { queue }
    }

    /// Stores `record`; returns once it is committed, or fails once
    /// `deadline` passed without a commit (nothing was accepted then).
    pub async fn create(&self, record: NewRecord, deadline: Instant) -> Result<(), WriteError> {
        let (reply, rx) = oneshot::channel();
        let queued = self.queue.send(Pending {
            record,
            deadline,
            reply,
        });
        tokio::time::timeout_at(deadline, queued)
            .await
            .map_err(|_| WriteError::Busy)?
            .map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }
}

async fn write_loop(
    pool: Pool,
    rx: Arc<Mutex<mpsc::Receiver<Pending>>>,
    to_publish: mpsc::Sender<CheckoutRequested>,
    republish_after: Duration,
    stop: CancellationToken,
) {
    // What failed to commit and still has time left.
    let mut carried: Vec<Pending> = Vec::new();
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut batch = std::mem::take(&mut carried);
        if batch.is_empty() {
            let mut rx = rx.lock().await;
            // At shutdown the HTTP server has already answered or dropped
            // every caller; what is still queued is refused.
            let first = tokio::select! {
                first = rx.recv() => first,
                _ = stop.cancelled() => None,
            };
            let Some(first) = first else { return };
            batch.push(first);
            take_queued(&mut rx, &mut batch, MAX_BATCH);
        } else if let Ok(mut rx) = rx.try_lock() {
            // Work carried over from a failed attempt never waits for the
            // queue: the other writer may hold it while idle for as long
            // as no new checkout arrives.
            take_queued(&mut rx, &mut batch, MAX_BATCH);
        }
        let new: Vec<&NewRecord> = batch.iter().map(|p| &p.record).collect();
        match store::create_many(&pool, &new, republish_after).await {
            Ok(()) => {
                backoff = Duration::from_millis(50);
                // The commit is the acceptance: answer it first. Handing the
                // records to the publisher is a shortcut that never waits:
                // what its queue cannot take now (NATS down for long) the
                // sweeper publishes after REPUBLISH_AFTER_MS, so an outage
                // never holds the answer to an accepted checkout.
                let mut left = 0;
                for p in batch {
                    let _ = p.reply.send(Ok(()));
                    let request = CheckoutRequested {
                        request_id: p.record.request_id,
                        order_id: p.record.order_id,
                    };
                    if let Err(mpsc::error::TrySendError::Full(_)) = to_publish.try_send(request) {
                        left += 1;
                    }
                }
                if left > 0 {
                    tracing::warn!(
                        count = left,
                        "publish queue full: checkouts left to the sweeper"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), retry_in = ?backoff, "cannot store request records yet; retrying");
                let e = Arc::new(e);
                let now = Instant::now();
                for p in batch {
                    if p.deadline <= now || stop.is_cancelled() || p.reply.is_closed() {
                        let _ = p.reply.send(Err(WriteError::Timeout(e.clone())));
                    } else {
                        carried.push(p);
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Adds whatever is already queued to `batch`, up to `max` in all, without
/// waiting: the group-commit collectors of the writer, the publisher and
/// the saga-outcome asker.
pub(super) fn take_queued<T>(rx: &mut mpsc::Receiver<T>, batch: &mut Vec<T>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
}

async fn publish_loop(
    js: Context,
    subjects: Subjects,
    rx: Arc<Mutex<mpsc::Receiver<CheckoutRequested>>>,
    max_message_bytes: usize,
    stop: CancellationToken,
) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let first = tokio::select! {
                first = rx.recv() => first,
                // What is still queued at shutdown is published once more
                // below (and swept later if that fails).
                _ = stop.cancelled() => rx.try_recv().ok(),
            };
            let Some(first) = first else { return };
            let mut batch = vec![first];
            take_queued(&mut rx, &mut batch, MAX_BATCH);
            batch
        };
        // Gives up only at shutdown (or on an item no message can hold,
        // which the start-up check of the bound rules out); the sweeper
        // publishes those records.
        let published =
            match Outgoing::batch(subjects.checkout_requested(), &batch, max_message_bytes) {
                Ok(messages) => jetstream::publish_retrying(&js, &messages, &stop).await,
                Err(e) => Err(e),
            };
        if let Err(e) = published {
            tracing::warn!(error = %e, count = batch.len(), "checkouts left to the sweeper");
        }
    }
}
