//! The harness's receiver for the system's webhooks, on axum, run on 127.0.0.1.
//!
//! It accepts `POST`s whose JSON body is `{type, timestamp, data: <request record>}`, notes the
//! arrival time of each request ID, optionally verifies the Standard Webhooks signature (with the
//! `standardwebhooks` crate), and answers 204 so that the system does not retry.
//!
//! The api refuses callback URLs on loopback and other internal addresses by default: a system
//! measured with `async --webhook` runs with `WEBHOOK_ALLOW_PRIVATE=true` (or is given
//! `--webhook-url` with an address it may reach).

use api_client::RequestRecord;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use serde::{Deserialize, Serialize};
use standardwebhooks::{Webhook, WebhookError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const MAX_BODY: usize = 1024 * 1024;
/// Bound on remembered request IDs.
const MAX_SLOTS: usize = 2_000_000;

/// One webhook delivery as seen by the harness.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub at: Instant,
    pub record: RequestRecord,
}

#[derive(Debug)]
enum Slot {
    Waiting(oneshot::Sender<Delivery>),
    Arrived(Delivery),
    Done,
    Expired,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub malformed: AtomicU64,
    pub signature_ok: AtomicU64,
    pub signature_bad: AtomicU64,
    pub duplicates: AtomicU64,
    pub late: AtomicU64,
    pub unmatched_dropped: AtomicU64,
}

/// Serialisable webhook statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSummary {
    pub url: String,
    pub received: u64,
    pub malformed: u64,
    /// Only when a secret was given.
    pub signature_ok: u64,
    pub signature_bad: u64,
    /// Deliveries for a request ID already delivered (retries after a lost 2xx, or bugs).
    pub duplicates: u64,
    /// Deliveries after the harness gave up waiting (--final-timeout).
    pub late: u64,
    /// Requests whose final status was found by polling because no webhook came in time.
    pub missing: u64,
}

/// Matches deliveries with the requests waiting for them, whichever comes first.
#[derive(Debug, Default)]
pub struct Registry {
    slots: Mutex<HashMap<String, Slot>>,
    pub counters: Counters,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A poisoned map is still a valid map: keep going.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the delivery of `id` (which may already have arrived).
    pub fn expect(&self, id: &str) -> oneshot::Receiver<Delivery> {
        let (tx, rx) = oneshot::channel();
        let mut slots = self.lock();
        match slots.remove(id) {
            Some(Slot::Arrived(d)) => {
                let _ = tx.send(d);
                slots.insert(id.to_string(), Slot::Done);
            }
            Some(other @ (Slot::Done | Slot::Expired)) => {
                // Already consumed: the receiver resolves with an error at once.
                slots.insert(id.to_string(), other);
            }
            Some(Slot::Waiting(_)) | None => {
                slots.insert(id.to_string(), Slot::Waiting(tx));
            }
        }
        rx
    }

    /// Stops waiting for `id`; a later delivery counts as late.
    pub fn give_up(&self, id: &str) {
        let mut slots = self.lock();
        if let Some(Slot::Waiting(_)) | None = slots.get(id) {
            slots.insert(id.to_string(), Slot::Expired);
        }
    }

    pub fn deliver(&self, d: Delivery) {
        let id = d.record.request_id.clone();
        let mut slots = self.lock();
        match slots.remove(&id) {
            Some(Slot::Waiting(tx)) => {
                if tx.send(d).is_err() {
                    self.counters.late.fetch_add(1, Ordering::Relaxed);
                }
                slots.insert(id, Slot::Done);
            }
            Some(s @ (Slot::Arrived(_) | Slot::Done)) => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                slots.insert(id, s);
            }
            Some(Slot::Expired) => {
                self.counters.late.fetch_add(1, Ordering::Relaxed);
                slots.insert(id, Slot::Expired);
            }
            None => {
                if slots.len() < MAX_SLOTS {
                    slots.insert(id, Slot::Arrived(d));
                } else {
                    self.counters
                        .unmatched_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The verifier of a Standard Webhooks secret: optional `whsec_` prefix, then base64; a secret
/// that is not base64 is taken as the raw key (as some deployments configure it).
pub fn verifier(secret: &str) -> Result<Webhook, WebhookError> {
    Webhook::new(secret).or_else(|_| {
        let raw = secret.strip_prefix("whsec_").unwrap_or(secret);
        Webhook::from_bytes(raw.as_bytes().to_vec())
    })
}

#[derive(Debug, Deserialize)]
struct Envelope {
    data: RequestRecord,
}

struct Shared {
    registry: Arc<Registry>,
    verifier: Option<Webhook>,
}

/// The running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub async fn start(port: u16, secret: Option<&str>) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(Registry::default());
        let shared = Arc::new(Shared {
            registry: registry.clone(),
            verifier: secret
                .map(verifier)
                .transpose()
                .map_err(std::io::Error::other)?,
        });
        // Any path: the callback URL is the harness's to choose.
        let app = Router::new()
            .fallback(receive)
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(shared);
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Ok(Receiver {
            addr,
            registry,
            stop,
            task,
        })
    }

    pub fn summary(&self, url: &str, missing: u64) -> WebhookSummary {
        let c = &self.registry.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WebhookSummary {
            url: url.to_string(),
            received: g(&c.received),
            malformed: g(&c.malformed),
            signature_ok: g(&c.signature_ok),
            signature_bad: g(&c.signature_bad),
            duplicates: g(&c.duplicates),
            late: g(&c.late),
            missing,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        // Connections the system keeps open must not hold the run up.
        if tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> axum::response::Response {
    let at = Instant::now();
    let counters = &shared.registry.counters;
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            return rejection.into_response();
        }
    };
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let Ok(env) = serde_json::from_slice::<Envelope>(&body) else {
        counters.malformed.fetch_add(1, Ordering::Relaxed);
        return StatusCode::BAD_REQUEST.into_response();
    };
    counters.received.fetch_add(1, Ordering::Relaxed);
    if let Some(v) = &shared.verifier {
        let c = if v.verify(&body, &headers).is_ok() {
            &counters.signature_ok
        } else {
            &counters.signature_bad
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
    shared.registry.deliver(Delivery {
        at,
        record: env.data,
    });
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().expect("header"));
        h.insert("webhook-timestamp", ts.to_string().parse().expect("header"));
        h.insert("webhook-signature", sig.parse().expect("header"));
        h
    }

    #[test]
    fn signatures_are_verified_with_the_secret() {
        let v = verifier(SECRET).expect("secret");
        let body = br#"{"test": 2432232314}"#;
        let now = chrono::Utc::now().timestamp();
        let good = v.sign("msg_1", now, body).expect("sign");
        assert!(v.verify(body, &headers("msg_1", now, &good)).is_ok());
        // any of several signatures (secret rotation)
        let two = format!("v1,bm90IGl0 {good}");
        assert!(v.verify(body, &headers("msg_1", now, &two)).is_ok());
        assert!(v.verify(body, &headers("msg_other", now, &good)).is_err());
        assert!(v.verify(body, &headers("msg_1", now, "v1,xx")).is_err());
        // a secret that is not base64 is the raw key
        let raw = verifier("not base64!").expect("secret");
        let sig = raw.sign("m", now, body).expect("sign");
        assert!(raw.verify(body, &headers("m", now, &sig)).is_ok());
    }

    fn rec(id: &str) -> Delivery {
        Delivery {
            at: Instant::now(),
            record: RequestRecord {
                request_id: id.into(),
                status: "succeeded".into(),
                reason: None,
            },
        }
    }

    #[tokio::test]
    async fn registry_matches_either_order() {
        let r = Registry::default();
        // delivery first
        r.deliver(rec("a"));
        let d = r.expect("a").await.expect("delivered");
        assert_eq!(d.record.request_id, "a");
        // waiter first
        let rx = r.expect("b");
        r.deliver(rec("b"));
        assert_eq!(rx.await.expect("delivered").record.status, "succeeded");
        // duplicate and late
        r.deliver(rec("b"));
        assert_eq!(r.counters.duplicates.load(Ordering::Relaxed), 1);
        let _rx = r.expect("c");
        r.give_up("c");
        r.deliver(rec("c"));
        assert_eq!(r.counters.late.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn receiver_over_tcp() {
        let recv = Receiver::start(0, Some(SECRET)).await.expect("bind");
        let waiting = recv.registry.expect("r-1");
        let mut s = TcpStream::connect(recv.addr).await.expect("connect");
        let body = r#"{"type":"checkout.failed","timestamp":"2025-01-01T00:00:00Z","data":{"request_id":"r-1","kind":"checkout","status":"failed","reason":"insufficient_stock"}}"#;
        let req = format!(
            "POST /hook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nwebhook-id: m1\r\nwebhook-timestamp: 1\r\nwebhook-signature: v1,AAAA\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        // two requests on one keep-alive connection
        s.write_all(req.as_bytes()).await.expect("write");
        s.write_all(b"GET /hook HTTP/1.1\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        assert!(out.starts_with("HTTP/1.1 204"), "{out}");
        assert!(out.contains("HTTP/1.1 405"), "{out}");
        let d = waiting.await.expect("delivered");
        assert_eq!(d.record.reason.as_deref(), Some("insufficient_stock"));
        let sum = recv.summary("u", 0);
        assert_eq!(sum.received, 1);
        assert_eq!(sum.signature_bad, 1);
        recv.stop().await;
    }
}
