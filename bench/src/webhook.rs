//! A tiny HTTP/1.1 receiver for the system's webhooks, run by the harness on 127.0.0.1.
//!
//! It accepts `POST`s whose JSON body is `{type, timestamp, data: <request record>}`, notes the
//! arrival time of each request ID, optionally verifies the Standard Webhooks signature, and
//! answers 204 so that the system does not retry.

use crate::client::RequestRecord;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;
const IDLE: Duration = Duration::from_secs(30);
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

/// Decodes a Standard Webhooks secret: optional `whsec_` prefix, then base64 (raw bytes if it
/// is not base64).
pub fn decode_secret(s: &str) -> Vec<u8> {
    let rest = s.strip_prefix("whsec_").unwrap_or(s);
    B64.decode(rest)
        .unwrap_or_else(|_| rest.as_bytes().to_vec())
}

/// Verifies a `webhook-signature` header (space-separated `v1,<base64>` entries) against
/// HMAC-SHA256 of `id.timestamp.body`.
pub fn verify_signature(key: &[u8], id: &str, ts: &str, body: &[u8], header: &str) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    header.split_whitespace().any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|b| B64.decode(b).ok())
            .is_some_and(|got| {
                // constant-time comparison
                got.len() == expected.len()
                    && got
                        .iter()
                        .zip(expected.iter())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            })
    })
}

#[derive(Debug, Deserialize)]
struct Envelope {
    data: RequestRecord,
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn parse_head(raw: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Some(Head {
        method,
        path,
        headers,
    })
}

/// Decodes a complete chunked body at the start of `data`: `Ok(Some((body, consumed)))`,
/// `Ok(None)` if more bytes are needed, `Err(())` if malformed or too large.
#[allow(clippy::result_unit_err)]
pub fn decode_chunked(data: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ()> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = find(&data[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[pos..pos + eol]).map_err(|_| ())?;
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16).map_err(|_| ())?;
        pos += eol + 2;
        if size == 0 {
            // trailers until an empty line
            loop {
                let Some(eol) = find(&data[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(());
        }
        if data.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[pos..pos + size]);
        if &data[pos + size..pos + size + 2] != b"\r\n" {
            return Err(());
        }
        pos += size + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
        let key = secret.map(decode_secret).map(Arc::new);
        let (stop, stop_rx) = watch::channel(false);
        let reg = registry.clone();
        let task = tokio::spawn(accept_loop(listener, reg, key, stop_rx));
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
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    reg: Arc<Registry>,
    key: Option<Arc<Vec<u8>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            acc = listener.accept() => match acc {
                Ok((sock, _)) => {
                    let _ = sock.set_nodelay(true);
                    conns.spawn(connection(sock, reg.clone(), key.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            _ = stop.changed() => break,
        }
        while conns.try_join_next().is_some() {}
    }
    conns.abort_all();
}

async fn respond(sock: &mut TcpStream, code: u16, reason: &str, close: bool) -> bool {
    let msg = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-length: 0\r\nconnection: {}\r\n\r\n",
        if close { "close" } else { "keep-alive" }
    );
    sock.write_all(msg.as_bytes()).await.is_ok() && !close
}

async fn read_more(sock: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    matches!(
        tokio::time::timeout(IDLE, sock.read_buf(buf)).await,
        Ok(Ok(n)) if n > 0
    )
}

async fn connection(mut sock: TcpStream, reg: Arc<Registry>, key: Option<Arc<Vec<u8>>>) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            if buf.len() > MAX_HEAD {
                respond(&mut sock, 431, "Request Header Fields Too Large", true).await;
                return;
            }
            if !read_more(&mut sock, &mut buf).await {
                return;
            }
        };
        let Some(head) = parse_head(&buf[..head_end]) else {
            reg.counters.malformed.fetch_add(1, Ordering::Relaxed);
            respond(&mut sock, 400, "Bad Request", true).await;
            return;
        };
        let close = head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let (body, consumed) = if chunked {
            loop {
                match decode_chunked(&buf[head_end..]) {
                    Ok(Some((b, n))) => break (b, head_end + n),
                    Ok(None) => {
                        if buf.len() > MAX_HEAD + MAX_BODY * 2
                            || !read_more(&mut sock, &mut buf).await
                        {
                            return;
                        }
                    }
                    Err(()) => {
                        reg.counters.malformed.fetch_add(1, Ordering::Relaxed);
                        respond(&mut sock, 400, "Bad Request", true).await;
                        return;
                    }
                }
            }
        } else {
            let len: usize = match head.header("content-length").map(str::parse) {
                None => 0,
                Some(Ok(n)) if n <= MAX_BODY => n,
                Some(_) => {
                    reg.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    respond(&mut sock, 413, "Content Too Large", true).await;
                    return;
                }
            };
            while buf.len() < head_end + len {
                if !read_more(&mut sock, &mut buf).await {
                    return;
                }
            }
            (buf[head_end..head_end + len].to_vec(), head_end + len)
        };
        let at = Instant::now();
        buf.drain(..consumed);
        let keep = if head.method != "POST" {
            respond(&mut sock, 405, "Method Not Allowed", close).await
        } else {
            match serde_json::from_slice::<Envelope>(&body) {
                Ok(env) => {
                    reg.counters.received.fetch_add(1, Ordering::Relaxed);
                    if let Some(k) = &key {
                        let ok = verify_signature(
                            k,
                            head.header("webhook-id").unwrap_or(""),
                            head.header("webhook-timestamp").unwrap_or(""),
                            &body,
                            head.header("webhook-signature").unwrap_or(""),
                        );
                        let c = if ok {
                            &reg.counters.signature_ok
                        } else {
                            &reg.counters.signature_bad
                        };
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    reg.deliver(Delivery {
                        at,
                        record: env.data,
                    });
                    respond(&mut sock, 204, "No Content", close).await
                }
                Err(_) => {
                    reg.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    respond(&mut sock, 400, "Bad Request", close).await
                }
            }
        };
        if !keep {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert!(verify_signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            body,
            good
        ));
        assert!(verify_signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            body,
            &format!("v1,bm90IGl0 {good}")
        ));
        assert!(!verify_signature(
            &key,
            "msg_other",
            "1614265330",
            body,
            good
        ));
        assert!(!verify_signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            body,
            "v1,xx"
        ));
    }

    #[test]
    fn heads_and_chunks() {
        let h = parse_head(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
            .expect("head");
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/hook");
        assert_eq!(h.header("content-length"), Some("5"));
        let data = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\nNEXT";
        let (body, n) = decode_chunked(data).expect("ok").expect("complete");
        assert_eq!(body, b"Wikipedia");
        assert_eq!(&data[n..], b"NEXT");
        assert_eq!(decode_chunked(b"4\r\nWi"), Ok(None));
        assert_eq!(decode_chunked(b"zz\r\n"), Err(()));
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
        let recv = Receiver::start(0, Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
            .await
            .expect("bind");
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
