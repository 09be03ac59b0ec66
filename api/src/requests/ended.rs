//! Checkouts whose saga ended, known before their records are finalised.
//!
//! order-svc announces every outcome on a core-NATS subject right after the
//! commit that ended the saga; every api replica hears it. The replica
//! holding the waiting client answers from it at once, so the record's
//! finalisation (a JetStream hop and a commit) is off the answer's path.
//! The promise that goes with it: once a client was answered, no replica
//! reads its record as pending. A replica's read of a pending record is
//! therefore completed from what it heard ([`Ended::get`]) or, if it heard
//! nothing (it started after the announcement, or missed it while
//! reconnecting), from the saga's owner ([`Asker`]).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use contracts::messages::{
    order::SagaOutcomes,
    saga::{CheckoutOutcome, Verdict},
};
use runtime::rpc::RpcClient;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long an announced outcome is remembered: the finalisation it stands
/// in for normally follows within milliseconds; after an outage longer than
/// this a read asks order-svc instead.
const KEEP: Duration = Duration::from_secs(60);
/// Most outcomes remembered (the oldest go first).
const MAX_KEPT: usize = 100_000;

/// The outcomes this replica heard of, for [`KEEP`] at most.
#[derive(Default)]
pub struct Ended {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_id: HashMap<Uuid, (Verdict, DateTime<Utc>)>,
    arrival: VecDeque<(Instant, Uuid)>,
}

impl Ended {
    /// Remembers `outcome`; `heard` stands in for its end if it carries
    /// none (an older order-svc).
    pub fn insert(&self, outcome: &CheckoutOutcome, heard: DateTime<Utc>) {
        let now = Instant::now();
        let at = outcome.completed_at.unwrap_or(heard);
        let mut k = self.lock();
        if k.by_id
            .insert(outcome.request_id, (outcome.verdict, at))
            .is_none()
        {
            k.arrival.push_back((now, outcome.request_id));
        }
        while let Some(&(t, id)) = k.arrival.front() {
            if k.arrival.len() <= MAX_KEPT && now.duration_since(t) < KEEP {
                break;
            }
            k.arrival.pop_front();
            k.by_id.remove(&id);
        }
    }

    pub fn get(&self, id: Uuid) -> Option<(Verdict, DateTime<Utc>)> {
        self.lock().by_id.get(&id).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding this lock cannot leave the map inconsistent
        // in a way that matters (at worst an entry outlives its time).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Reply = oneshot::Sender<Option<(Verdict, DateTime<Utc>)>>;

/// Asks order-svc for the outcomes of sagas whose records read pending.
/// Concurrent asks share one request (at most [`SagaOutcomes::MAX_IDS`]
/// IDs, one request in flight per replica), so however often records are
/// polled, order-svc sees one request per round trip from each replica.
#[derive(Clone)]
pub struct Asker {
    queue: mpsc::Sender<(Uuid, Reply)>,
}

/// Asks queued at most. A read waits up to [`QUEUE_WAIT`] for room (a flood
/// of reads delays reads, it does not skip their asks), then answers what
/// the database says.
const MAX_QUEUED: usize = 4 * SagaOutcomes::MAX_IDS;
const QUEUE_WAIT: Duration = Duration::from_secs(1);

impl Asker {
    pub fn start(rpc: RpcClient, tasks: &mut runtime::tasks::Tasks) -> Self {
        let (queue, rx) = mpsc::channel(MAX_QUEUED);
        let stop = tasks.stop_token();
        tasks.spawn("saga outcome asker", async move {
            ask_loop(rpc, rx, stop).await;
            Ok::<_, std::convert::Infallible>(())
        });
        Self { queue }
    }

    /// The outcome of saga `id` and when it ended, if it did; None if it
    /// did not, or if order-svc cannot be asked now (the read then says
    /// pending, as the database does).
    pub async fn ask(&self, id: Uuid) -> Option<(Verdict, DateTime<Utc>)> {
        let (reply, rx) = oneshot::channel();
        tokio::time::timeout(QUEUE_WAIT, self.queue.send((id, reply)))
            .await
            .ok()?
            .ok()?;
        rx.await.ok().flatten()
    }
}

async fn ask_loop(rpc: RpcClient, mut rx: mpsc::Receiver<(Uuid, Reply)>, stop: CancellationToken) {
    loop {
        let first = tokio::select! {
            first = rx.recv() => first,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        super::writer::take_queued(&mut rx, &mut batch, SagaOutcomes::MAX_IDS);
        let mut ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let answer = rpc.call(&SagaOutcomes { saga_ids: ids }, "").await;
        let now = Utc::now();
        let ended: HashMap<Uuid, (Verdict, DateTime<Utc>)> = match answer {
            Ok(found) => found
                .outcomes
                .into_iter()
                .map(|o| (o.request_id, (o.verdict, o.completed_at.unwrap_or(now))))
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "cannot ask order-svc for saga outcomes");
                HashMap::new()
            }
        };
        for (id, reply) in batch {
            let _ = reply.send(ended.get(&id).copied());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{ids::OrderId, messages::saga::FailureReason};

    fn outcome(id: Uuid) -> CheckoutOutcome {
        CheckoutOutcome {
            request_id: id,
            order_id: OrderId::new("o"),
            verdict: Verdict::Failed(FailureReason::InsufficientStock),
            completed_at: None,
        }
    }

    #[test]
    fn remembers_what_it_heard_and_forgets_the_oldest_past_the_bound() {
        let ended = Ended::default();
        let first = Uuid::now_v7();
        let at = Utc::now();
        ended.insert(&outcome(first), at);
        assert_eq!(
            ended.get(first),
            Some((Verdict::Failed(FailureReason::InsufficientStock), at))
        );
        assert_eq!(ended.get(Uuid::now_v7()), None);
        for _ in 0..MAX_KEPT {
            ended.insert(&outcome(Uuid::now_v7()), at);
        }
        assert_eq!(ended.get(first), None, "the oldest went first");
        assert_eq!(ended.lock().by_id.len(), MAX_KEPT);
        assert_eq!(ended.lock().arrival.len(), MAX_KEPT);
    }
}
