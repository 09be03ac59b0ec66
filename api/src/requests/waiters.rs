//! Clients waiting for a request record to become final.
//!
//! The replica that consumes an outcome finalises the record and announces
//! it on a core-NATS subject every replica listens to; each replica wakes its
//! own waiters. The announcement is best effort: waiters also re-read the
//! database now and then, so a lost one only costs latency.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use tokio::sync::oneshot;
use uuid::Uuid;

use super::RequestRecord;

type Senders = Vec<(u64, oneshot::Sender<RequestRecord>)>;

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
    pub rx: oneshot::Receiver<RequestRecord>,
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
        let senders = self.lock().remove(&record.request_id);
        for (_, tx) in senders.into_iter().flatten() {
            let _ = tx.send(record.clone());
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
        assert_eq!((&mut a.rx).await.ok().map(|r| r.request_id), Some(id));
        assert_eq!((&mut b.rx).await.ok().map(|r| r.request_id), Some(id));
        assert_eq!(w.len(), 1);
        drop(other);
        assert!(w.is_empty(), "a dropped waiter unregisters");
    }
}
