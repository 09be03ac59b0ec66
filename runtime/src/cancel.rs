//! Cancelling a request/reply call whose caller gave up.
//!
//! Core NATS request/reply has no way to tell a responder that the
//! requester left, so long calls (`batch_init`) carry a call ID and the
//! caller's deadline in headers. When the caller stops waiting (its HTTP
//! client went away and the handler future was dropped, or its timeout ran
//! out) it publishes the call ID on the service's cancel subject, which
//! every replica hears; the replica running the call cancels it. The
//! deadline bounds the call even when the cancel message is lost (the
//! caller crashed): past it nobody waits for the answer.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::HeaderMap;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use contracts::Subjects;

/// Header with the ID the caller will cancel the call by.
pub const CALL_ID_HEADER: &str = "Rpc-Call-Id";
/// Header with how long, in milliseconds, the caller waits for the answer.
pub const DEADLINE_HEADER: &str = "Rpc-Deadline-Ms";

/// The longest a cancellable call runs whatever its header says.
pub const MAX_DEADLINE: Duration = Duration::from_secs(3600);

/// Cancellations remembered for calls this replica has not seen (yet): the
/// cancel can overtake its request, and most cancels are for calls another
/// replica holds. Bounded in number and age.
const TOMBSTONES: usize = 1024;
const TOMBSTONE_AGE: Duration = Duration::from_secs(60);

/// The subject on which a service's calls are cancelled.
pub fn subject(subjects: &Subjects, service: &str) -> String {
    format!("{}.cancel", subjects.service_group(service))
}

/// Client side: arms a cancellation for one call; unless
/// [`CallGuard::answered`] is called, dropping it publishes the cancel.
pub struct CallGuard {
    armed: Option<(async_nats::Client, String, String)>,
}

impl CallGuard {
    /// Adds the call ID and the deadline to `headers`.
    pub fn arm(
        nats: &async_nats::Client,
        subjects: &Subjects,
        service: &str,
        timeout: Duration,
        headers: &mut HeaderMap,
    ) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        headers.insert(CALL_ID_HEADER, id.as_str());
        headers.insert(DEADLINE_HEADER, timeout.as_millis().to_string().as_str());
        Self {
            armed: Some((nats.clone(), subject(subjects, service), id)),
        }
    }

    /// The service answered: nothing to cancel.
    pub fn answered(mut self) {
        self.armed = None;
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let Some((nats, subject, id)) = self.armed.take() else {
            return;
        };
        // Drop cannot await; the publish only queues on the connection.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = nats.publish(subject, id.into()).await {
                    tracing::warn!(error = %e, "cannot send a call's cancellation");
                }
            });
        }
    }
}

/// Server side: the calls in progress on this replica, by call ID.
#[derive(Clone, Default)]
pub struct Calls {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    running: HashMap<String, CancellationToken>,
    /// Cancelled IDs no running call had, oldest first.
    tombstones: VecDeque<(Instant, String)>,
}

/// A registered call: its token, and its entry removed when dropped.
pub struct Registered {
    calls: Calls,
    id: Option<String>,
    pub token: CancellationToken,
    pub deadline: Duration,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(id) = &self.id {
            if let Ok(mut inner) = self.calls.inner.lock() {
                inner.running.remove(id);
            }
        }
    }
}

impl Calls {
    /// Registers a call from its request headers; a call already cancelled
    /// (its cancel came first) starts cancelled. `default_deadline` applies
    /// when the caller sent none.
    pub fn register(&self, headers: Option<&HeaderMap>, default_deadline: Duration) -> Registered {
        let header = |name| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        let deadline = header(DEADLINE_HEADER)
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(default_deadline)
            .min(MAX_DEADLINE);
        let token = CancellationToken::new();
        let id = header(CALL_ID_HEADER).map(str::to_owned);
        if let (Some(id), Ok(mut inner)) = (&id, self.inner.lock()) {
            if let Some(at) = inner.tombstones.iter().position(|(_, t)| t == id) {
                inner.tombstones.remove(at);
                token.cancel();
            }
            inner.running.insert(id.clone(), token.clone());
        }
        Registered {
            calls: self.clone(),
            id,
            token,
            deadline,
        }
    }

    /// Cancels the call `id` if it runs here, or remembers it for a while.
    pub fn cancel(&self, id: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(token) = inner.running.get(id) {
            token.cancel();
            return;
        }
        let now = Instant::now();
        while inner
            .tombstones
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > TOMBSTONE_AGE)
            || inner.tombstones.len() >= TOMBSTONES
        {
            inner.tombstones.pop_front();
        }
        inner.tombstones.push_back((now, id.to_owned()));
    }

    /// Applies the cancellations published for `service` until the
    /// subscription ends.
    pub async fn listen(self, mut subscription: async_nats::Subscriber) {
        while let Some(message) = subscription.next().await {
            if let Ok(id) = std::str::from_utf8(&message.payload) {
                self.cancel(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str, deadline_ms: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CALL_ID_HEADER, id);
        h.insert(DEADLINE_HEADER, deadline_ms);
        h
    }

    #[test]
    fn a_cancel_reaches_the_running_call_and_only_it() {
        let calls = Calls::default();
        let a = calls.register(Some(&headers("a", "5000")), Duration::ZERO);
        let b = calls.register(Some(&headers("b", "5000")), Duration::ZERO);
        assert_eq!(a.deadline, Duration::from_secs(5));
        calls.cancel("a");
        assert!(a.token.is_cancelled());
        assert!(!b.token.is_cancelled());
        drop(a);
        assert!(!calls.inner.lock().unwrap().running.contains_key("a"));
    }

    #[test]
    fn a_cancel_that_overtakes_its_call_is_remembered_boundedly() {
        let calls = Calls::default();
        calls.cancel("early");
        let early = calls.register(Some(&headers("early", "1")), Duration::ZERO);
        assert!(early.token.is_cancelled());
        for i in 0..3 * TOMBSTONES {
            calls.cancel(&i.to_string());
        }
        assert!(calls.inner.lock().unwrap().tombstones.len() <= TOMBSTONES);
    }

    #[test]
    fn the_deadline_is_the_callers_within_bounds() {
        let calls = Calls::default();
        let none = calls.register(None, Duration::from_secs(7));
        assert_eq!(none.deadline, Duration::from_secs(7));
        let huge = calls.register(Some(&headers("h", "99999999999")), Duration::ZERO);
        assert_eq!(huge.deadline, MAX_DEADLINE);
        let junk = calls.register(Some(&headers("j", "soon")), Duration::from_secs(3));
        assert_eq!(junk.deadline, Duration::from_secs(3));
    }
}
