//! The request record's whole lifecycle, in one place.
//!
//! ```text
//!  accept ──▶ writer: group-commit the records ──▶ publish `checkout requested`
//!                                                        │ (order-svc runs the saga)
//!  waiters ◀── order-svc announces the outcome as the saga ends (ended.rs)
//!  waiters ◀── announce to every replica ◀── outcomes: finalise in one statement
//!  reads of pending records ──▶ what this replica heard, else ask order-svc
//!  sweeper: re-publish records still pending; purge expired ones
//! ```
//!
//! The HTTP handlers hold a [`Requests`] handle and only translate between
//! HTTP and these calls: accept a checkout, read a record, wait until a
//! record is final.

mod ended;
mod outcomes;
mod record;
mod store;
mod sweeper;
mod waiters;
mod writer;

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::Context;
use contracts::{messages::saga::CheckoutOutcome, Subjects};
use deadpool_postgres::Pool;
use runtime::{consumer::Handler, db::DbError, tasks::Tasks};
use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use outcomes::MAX_MESSAGES as OUTCOME_MESSAGES;
pub use record::{NewRecord, Progress, RecordView, RequestRecord, Status, WebhookView};
pub(crate) use store::get_many;
pub use store::RETAINED;
pub use waiters::Waiter;
pub use writer::WriteError;

use ended::{Asker, Ended};
use waiters::{Finished, Waiters};
use writer::Writer;

/// How long a waiting client may still wait once shutdown began.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// The tunables of the lifecycle (loaded by `crate::config`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub republish_after: Duration,
    pub sweep_interval: Duration,
    pub wait_poll: Duration,
    /// Largest checkout message published (`NATS_MAX_MESSAGE_BYTES`).
    pub max_message_bytes: usize,
}

/// A cheap, cloneable handle on the request records of this replica.
#[derive(Clone)]
pub struct Requests {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    js: Context,
    subjects: Subjects,
    waiters: Arc<Waiters>,
    /// Outcomes heard from order-svc, not finalised here yet perhaps.
    ended: Arc<Ended>,
    /// Asks order-svc about a pending record this replica heard nothing of.
    asker: Asker,
    writer: Writer,
    settings: Settings,
    /// Wakes this replica's webhook worker when a record with a callback
    /// became final here.
    webhook_wake: Arc<Notify>,
    /// Cancelled when shutdown begins: waiting clients get their answer
    /// within [`DRAIN_WAIT`] instead of holding the process up.
    draining: CancellationToken,
}

impl Requests {
    /// Starts the lifecycle's background work under `tasks`: the record
    /// writers and publishers, the listener for other replicas'
    /// announcements and the sweeper (the outcome consumer runs
    /// [`Self::outcomes`]).
    pub fn start(
        pool: Pool,
        js: Context,
        subjects: Subjects,
        settings: Settings,
        webhook_wake: Arc<Notify>,
        rpc: runtime::rpc::RpcClient,
        tasks: &mut Tasks,
    ) -> Self {
        let writer = Writer::start(
            pool.clone(),
            js.clone(),
            subjects.clone(),
            settings.republish_after,
            settings.max_message_bytes,
            tasks,
        );
        let this = Self {
            inner: Arc::new(Inner {
                pool,
                js,
                subjects,
                waiters: Default::default(),
                ended: Default::default(),
                asker: Asker::start(rpc, tasks),
                writer,
                settings,
                webhook_wake,
                draining: CancellationToken::new(),
            }),
        };
        outcomes::start(&this, tasks);
        sweeper::start(&this, tasks);
        this
    }

    /// The handler of the outcome consumer (`api-outcomes`), which ends the
    /// records' lives.
    pub fn outcomes(&self) -> impl Handler<CheckoutOutcome> + 'static {
        outcomes::handler(self)
    }

    /// Stores a new record; once this returns `Ok` the checkout is accepted
    /// and will reach a final status. Fails only if it could not be stored
    /// by `deadline` (nothing was accepted then).
    pub async fn accept(&self, new: NewRecord, deadline: Instant) -> Result<(), WriteError> {
        self.inner.writer.create(new, deadline).await
    }

    /// Registers interest in `id` becoming final. Register before the
    /// record is even stored, so that the wake-up cannot come too early.
    pub fn watch(&self, id: Uuid) -> Waiter {
        self.inner.waiters.register(id)
    }

    /// The record as stored, or, while the stored one is still pending, as
    /// it reads once its saga ended: a client answered at the saga's end
    /// never reads it pending afterwards, on any replica. What this replica
    /// heard is used first; otherwise order-svc is asked (a read that
    /// cannot ask it says pending, as the database does).
    pub async fn get(&self, id: Uuid) -> Result<Option<RequestRecord>, DbError> {
        let Some(record) = self.stored(id).await? else {
            return Ok(None);
        };
        if record.is_final() {
            return Ok(Some(record));
        }
        Ok(Some(match self.inner.asker.ask(id).await {
            Some((verdict, at)) => record.with_outcome(verdict, at),
            None => record,
        }))
    }

    /// The record as stored, and what this replica heard of its saga.
    async fn stored(&self, id: Uuid) -> Result<Option<RequestRecord>, DbError> {
        let record = store::get(&self.inner.pool, id).await?;
        Ok(record.map(|r| match self.inner.ended.get(id) {
            Some((verdict, at)) if !r.is_final() => r.with_outcome(verdict, at),
            _ => r,
        }))
    }

    /// Waits until the record is final or `deadline` passes (or shutdown's
    /// drain period ends); returns the latest record either way. `waiter`
    /// must have been registered before `record` was read. Never
    /// fails: a database that cannot be read meanwhile only delays the
    /// answer.
    pub async fn wait_final(
        &self,
        mut record: RequestRecord,
        deadline: Instant,
        mut waiter: Waiter,
    ) -> RequestRecord {
        if record.is_final() || Instant::now() >= deadline {
            return record;
        }
        let draining = self.inner.draining.clone();
        let mut deadline = deadline;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return record;
            }
            let nap = (deadline - now).min(self.inner.settings.wait_poll);
            tokio::select! {
                woken = &mut waiter.rx => {
                    match woken {
                        Ok(Finished::Record(r)) => return r,
                        Ok(Finished::Outcome(verdict, at)) => {
                            return record.with_outcome(verdict, at)
                        }
                        Err(_) => {}
                    }
                    // The registry dropped us; fall back to polling.
                    waiter = self.watch(record.request_id);
                }
                _ = draining.cancelled(), if deadline > now + DRAIN_WAIT => {
                    // Shutting down: wait a little longer, not the whole wait.
                    deadline = now + DRAIN_WAIT;
                    continue;
                }
                _ = tokio::time::sleep(nap) => {}
            }
            match self.stored(record.request_id).await {
                Ok(Some(fresh)) if fresh.is_final() => return fresh,
                Ok(Some(fresh)) => record = fresh,
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "cannot re-read a record; still waiting"),
            }
        }
    }

    /// Cancelled when shutdown begins (the HTTP server stops accepting then).
    pub fn draining(&self) -> CancellationToken {
        self.inner.draining.clone()
    }
}
