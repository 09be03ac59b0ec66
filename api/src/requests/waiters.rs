//! Clients waiting for a request record to become final.
//!
//! Two announcements on core-NATS subjects every replica listens to wake
//! them: order-svc's, as a saga ends (the waiter applies the outcome to the
//! record it holds; see `super::ended`), and the finalising replica's, with
//! the stored record. Both are best effort: waiters also re-read the
//! database now and then, so a lost one only costs latency.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use contracts::messages::saga::{CheckoutOutcome, Verdict};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::RequestRecord;

/// What wakes a waiter.
#[derive(Debug, Clone)]
pub enum Finished {
    /// The stored record, finalised.
    Record(RequestRecord),
    /// The saga's outcome and when it ended, heard before the record was
    /// finalised.
    Outcome(Verdict, chrono::DateTime<chrono::Utc>),
}

type Senders = Vec<(u64, oneshot::Sender<Finished>)>;

#[derive(Default)]
pub struct Waiters {
    waiting: Mutex<HashMap<Uuid, Senders>>,
    next_token: AtomicU64,
}

/// A registration; dropping it unregisters.
pub struct Waiter {
    registry: Arc<Waiters>,
    id: Uuid,
    token: u64,
    pub rx: oneshot::Receiver<Finished>,
}

impl Waiters {
    pub fn register(self: &Arc<Self>, id: Uuid) -> Waiter {
        let (tx, rx) = oneshot::channel();
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(id).or_default().push((token, tx));
        Waiter {
            registry: self.clone(),
            id,
            token,
            rx,
        }
    }

    /// Hands the final record to everyone waiting for it here.
    pub fn notify(&self, record: &RequestRecord) {
        self.wake(record.request_id, Finished::Record(record.clone()));
    }

    /// Hands a saga's outcome to everyone waiting for its record here
    /// (`heard` stands in for its end if it carries none).
    pub fn notify_outcome(&self, outcome: &CheckoutOutcome, heard: chrono::DateTime<chrono::Utc>) {
        let at = outcome.completed_at.unwrap_or(heard);
        self.wake(outcome.request_id, Finished::Outcome(outcome.verdict, at));
    }

    fn wake(&self, id: Uuid, finished: Finished) {
        let senders = self.lock().remove(&id);
        for (_, tx) in senders.into_iter().flatten() {
            let _ = tx.send(finished.clone());
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Senders>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut map = self.registry.lock();
        if let Some(list) = map.get_mut(&self.id) {
            list.retain(|(t, _)| *t != self.token);
            if list.is_empty() {
                map.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::Progress;
    use contracts::messages::saga::Verdict;

    fn record(id: Uuid) -> RequestRecord {
        RequestRecord {
            request_id: id,
            kind: "checkout".into(),
            order_id: "o".into(),
            progress: Progress::Final(Verdict::Succeeded),
            created_at: chrono::Utc::now(),
            completed_at: Some(chrono::Utc::now()),
            webhook: None,
        }
    }

    #[tokio::test]
    async fn wakes_every_waiter_of_the_id_and_cleans_up() {
        let w = Arc::new(Waiters::default());
        let id = Uuid::now_v7();
        let a = w.register(id);
        let b = w.register(id);
        let other = w.register(Uuid::now_v7());
        assert_eq!(w.len(), 3);
        w.notify(&record(id));
        let (mut a, mut b) = (a, b);
        for rx in [&mut a.rx, &mut b.rx] {
            match rx.await {
                Ok(Finished::Record(r)) => assert_eq!(r.request_id, id),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(w.len(), 1);
        drop(other);
        assert!(w.is_empty(), "a dropped waiter unregisters");
    }
}
