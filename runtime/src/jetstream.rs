//! JetStream: the versioned stream and consumer definitions of
//! `nats/jetstream.json`, and pipelined publishing.
//!
//! Every binary creates or updates the definitions at start-up, so a fresh
//! nats-server needs no manual setup and a changed definition rolls out with
//! the binaries.

use std::{future::IntoFuture, time::Duration};

use async_nats::jetstream::{
    self, consumer::PullConsumer, message::PublishMessage, stream, Context,
};
use backon::Retryable;
use bytes::Bytes;
use serde::Deserialize;

use contracts::Subjects;

const DEFINITIONS: &str = include_str!("../../nats/jetstream.json");

#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    #[error("nats/jetstream.json is invalid: {0}")]
    Definitions(#[from] serde_json::Error),
    #[error("no consumer named {0} in nats/jetstream.json")]
    UnknownConsumer(String),
    #[error("cannot create or update stream {name}: {source}")]
    Stream {
        name: String,
        #[source]
        source: jetstream::context::CreateStreamError,
    },
    #[error(
        "stream {name} differs from nats/jetstream.json and cannot be updated (this NATS user may \
         not update streams: start one binary with NATS_USER=admin once): {source}"
    )]
    StreamUpdate {
        name: String,
        #[source]
        source: jetstream::context::CreateStreamError,
    },
    #[error("cannot create or update consumer {name}: {source}")]
    Consumer {
        name: String,
        #[source]
        source: jetstream::stream::ConsumerError,
    },
    #[error("publish failed: {0}")]
    Publish(#[from] jetstream::context::PublishError),
    /// One item is bigger than a message may be: no grouping or retry can
    /// ever send it (not [transient](JetStreamError::is_transient)).
    #[error("an item of {bytes} bytes for {subject} exceeds the message bound of {max} bytes (NATS_MAX_MESSAGE_BYTES)")]
    TooLarge {
        subject: String,
        bytes: usize,
        max: usize,
    },
    #[error("cannot encode a message for {subject}: {source}")]
    Encode {
        subject: String,
        #[source]
        source: serde_json::Error,
    },
}

impl JetStreamError {
    /// Worth retrying at start-up: JetStream is not ready yet, as happens in
    /// a cluster right after it formed, while a node is down or while a
    /// stream's leader is being elected. Every such answer is transient (no
    /// responders, a timeout, a broken request, no peers for placement, no
    /// leader, cluster not available); a definition JetStream refuses is not.
    pub fn is_transient(&self) -> bool {
        use jetstream::{context::CreateStreamErrorKind as S, stream::ConsumerErrorKind as C};
        match self {
            Self::Stream { source, .. } => match source.kind() {
                S::TimedOut | S::JetStreamUnavailable | S::Response => true,
                S::JetStream(e) => not_ready(&e),
                _ => false,
            },
            Self::Consumer { source, .. } => match source.kind() {
                C::TimedOut | C::Request => true,
                C::JetStream(e) => not_ready(&e),
                _ => false,
            },
            // Only a message too large for the server can never be stored;
            // anything else (timeouts, no stream yet, a full stream, a
            // broken connection) passes with time.
            Self::Publish(e) => !matches!(
                e.kind(),
                jetstream::context::PublishErrorKind::MaxPayloadExceeded
            ),
            // An item over the message bound, or one that cannot be
            // encoded, fails the same way every time.
            Self::Definitions(_)
            | Self::UnknownConsumer(_)
            | Self::TooLarge { .. }
            | Self::Encode { .. }
            | Self::StreamUpdate { .. } => false,
        }
    }
}

impl crate::fault::Fault for JetStreamError {
    fn is_transient(&self) -> bool {
        JetStreamError::is_transient(self)
    }
}

/// JetStream's API answers that mean "not ready yet, ask again".
fn not_ready(e: &jetstream::Error) -> bool {
    use jetstream::ErrorCode as E;
    // 503 is JetStream's "temporarily unavailable", whatever the code.
    e.code() == 503
        || [
            E::CLUSTER_INCOMPLETE,
            E::CLUSTER_NO_PEERS,
            E::CLUSTER_NOT_ACTIVE,
            E::CLUSTER_NOT_ASSIGNED,
            E::CLUSTER_NOT_AVAILABLE,
            E::CLUSTER_NOT_LEADER,
            E::RAFT_GENERAL,
            E::JETSTREAM_NOT_ENABLED,
        ]
        .contains(&e.error_code())
}

#[derive(Debug, Clone, Deserialize)]
struct Definitions {
    streams: Vec<stream::Config>,
    consumers: Vec<ConsumerDefinition>,
}

#[derive(Debug, Clone, Deserialize)]
struct ConsumerDefinition {
    stream: String,
    config: jetstream::consumer::pull::Config,
}

/// The streams and consumers of `nats/jetstream.json` for one deployment:
/// read once at start-up, then used for every (re)creation.
#[derive(Debug, Clone)]
pub struct Topology(std::sync::Arc<Definitions>, Duration);

/// How long start-up waits for JetStream by default
/// (`JETSTREAM_STARTUP_DEADLINE_SECS`).
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(120);

impl Topology {
    /// The definitions under `subjects`' prefix; `replicas` (from
    /// `NATS_STREAM_REPLICAS`) overrides every stream's replica count.
    pub fn new(subjects: &Subjects, replicas: Option<usize>) -> Result<Self, JetStreamError> {
        let text = DEFINITIONS.replace("${PREFIX}", subjects.prefix());
        let mut defs: Definitions = serde_json::from_str(&text)?;
        // Production runs streams replicated (R3) in a cluster; the file keeps
        // the single-node value.
        if let Some(replicas) = replicas {
            for s in &mut defs.streams {
                s.num_replicas = replicas;
            }
        }
        Ok(Self(std::sync::Arc::new(defs), STARTUP_DEADLINE))
    }

    /// How often the durable's messages are delivered at most (`max_deliver`;
    /// None when unbounded or unknown).
    pub fn max_deliver(&self, durable: &str) -> Option<u64> {
        self.0
            .consumers
            .iter()
            .find(|c| c.config.durable_name.as_deref() == Some(durable))
            .and_then(|c| u64::try_from(c.config.max_deliver).ok())
            .filter(|&n| n > 0)
    }

    /// Overrides every stream's `max_bytes` (`NATS_STREAM_MAX_BYTES`).
    pub fn with_max_bytes(mut self, max_bytes: Option<i64>) -> Self {
        if let Some(max_bytes) = max_bytes {
            for s in &mut std::sync::Arc::make_mut(&mut self.0).streams {
                s.max_bytes = max_bytes;
            }
        }
        self
    }

    /// The streams' names, e.g. `checkout_ORDER`.
    pub fn stream_names(&self) -> impl Iterator<Item = &str> {
        self.0.streams.iter().map(|s| s.name.as_str())
    }

    /// How long creating the streams and consumers keeps retrying while
    /// JetStream is not ready (`JETSTREAM_STARTUP_DEADLINE_SECS`).
    pub fn with_startup_deadline(mut self, deadline: Duration) -> Self {
        self.1 = deadline;
        self
    }
}

/// Runs `op` again while it fails with a transient error and `deadline`
/// has not passed since the first attempt.
async fn until_ready<T, F, Fut>(deadline: Duration, op: F) -> Result<T, JetStreamError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, JetStreamError>>,
{
    let until = tokio::time::Instant::now() + deadline;
    op.retry(crate::retry::until(deadline))
        .when(|e| e.is_transient() && tokio::time::Instant::now() < until)
        .notify(|e, after| tracing::warn!(error = %e, ?after, "JetStream not ready yet"))
        .await
}

/// Creates every stream that does not exist, and updates one whose
/// definition changed.
///
/// Creating first: creating a stream that exists with the same definition
/// changes nothing, and it is all a service's NATS user may do
/// (`nats/auth.conf`); updating (which could shrink or re-route a stream) is
/// left to users allowed to, such as `admin`. A service whose definitions
/// differ from the server's therefore fails its start-up, saying so.
pub async fn ensure_streams(js: &Context, topology: &Topology) -> Result<(), JetStreamError> {
    use jetstream::{context::CreateStreamErrorKind, ErrorCode};
    for config in &topology.0.streams {
        let name = config.name.clone();
        match js.create_stream(config.clone()).await {
            Ok(_) => {}
            Err(e)
                if matches!(e.kind(), CreateStreamErrorKind::JetStream(ref j)
                    if j.error_code() == ErrorCode::STREAM_NAME_EXIST) =>
            {
                tracing::info!(stream = %name, "stream definition changed: updating it");
                js.update_stream(config.clone()).await.map_err(|source| {
                    JetStreamError::StreamUpdate {
                        name: name.clone(),
                        source,
                    }
                })?;
            }
            Err(source) => return Err(JetStreamError::Stream { name, source }),
        }
    }
    Ok(())
}

/// Creates or updates the durable pull consumer `durable` and returns it.
pub async fn consumer(
    js: &Context,
    topology: &Topology,
    durable: &str,
) -> Result<PullConsumer, JetStreamError> {
    let def = topology
        .0
        .consumers
        .iter()
        .find(|c| c.config.durable_name.as_deref() == Some(durable))
        .ok_or_else(|| JetStreamError::UnknownConsumer(durable.to_owned()))?;
    let create = || async {
        js.create_consumer_on_stream(def.config.clone(), def.stream.clone())
            .await
            .map_err(|source| JetStreamError::Consumer {
                name: durable.to_owned(),
                source,
            })
    };
    until_ready(topology.1, create).await
}

/// Connects the JetStream context and makes sure the streams exist.
pub async fn setup(
    nats: &async_nats::Client,
    topology: &Topology,
) -> Result<Context, JetStreamError> {
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .build(nats.clone());
    until_ready(topology.1, || ensure_streams(&js, topology)).await?;
    Ok(js)
}

/// A message to publish with a deduplication ID.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    /// `Nats-Msg-Id`: JetStream drops a repeat inside its duplicate window.
    /// It identifies one publish (kept when that publish is retried), not the
    /// work inside: the consumers' database keys are what make a repeat of
    /// the work harmless.
    pub msg_id: String,
    pub payload: Bytes,
}

impl Outgoing {
    /// `items` as JSON arrays (see [`contracts::messages::saga`]) of at most
    /// `max_bytes` each, in order, each with a fresh deduplication ID; no
    /// message for no items. An item that alone exceeds `max_bytes` is
    /// [`JetStreamError::TooLarge`].
    pub fn batch<T: serde::Serialize>(
        subject: String,
        items: &[T],
        max_bytes: usize,
    ) -> Result<Vec<Self>, JetStreamError> {
        let encoded = items
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| JetStreamError::Encode {
                subject: subject.clone(),
                source,
            })?;
        let payloads = split(&encoded, max_bytes).map_err(|bytes| JetStreamError::TooLarge {
            subject: subject.clone(),
            bytes,
            max: max_bytes,
        })?;
        Ok(payloads
            .into_iter()
            .map(|payload| Self {
                subject: subject.clone(),
                msg_id: uuid::Uuid::now_v7().to_string(),
                payload,
            })
            .collect())
    }

    /// Groups `(subject, item)` pairs by subject, then splits each group as
    /// [`Outgoing::batch`] does.
    pub fn batches<T: serde::Serialize>(
        items: impl IntoIterator<Item = (String, T)>,
        max_bytes: usize,
    ) -> Result<Vec<Self>, JetStreamError> {
        let mut by_subject: std::collections::BTreeMap<String, Vec<T>> = Default::default();
        for (subject, item) in items {
            by_subject.entry(subject).or_default().push(item);
        }
        let mut out = Vec::with_capacity(by_subject.len());
        for (subject, items) in by_subject {
            out.extend(Self::batch(subject, &items, max_bytes)?);
        }
        Ok(out)
    }
}

/// Packs encoded items, in order, into as few JSON arrays of at most
/// `max_bytes` as a greedy pass finds; `Err(size)` when one item does not
/// fit even alone.
fn split(encoded: &[Vec<u8>], max_bytes: usize) -> Result<Vec<Bytes>, usize> {
    let mut out = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for item in encoded {
        // `[item]` alone, or `,item` appended before the closing bracket.
        if item.len() + 2 > max_bytes {
            return Err(item.len() + 2);
        }
        if !current.is_empty() && current.len() + 1 + item.len() + 1 > max_bytes {
            current.push(b']');
            out.push(Bytes::from(std::mem::take(&mut current)));
        }
        current.push(if current.is_empty() { b'[' } else { b',' });
        current.extend_from_slice(item);
    }
    if !current.is_empty() {
        current.push(b']');
        out.push(Bytes::from(current));
    }
    Ok(out)
}

/// Publishes all messages pipelined (send all, then await the acks
/// together); returns once JetStream has stored every one of them.
pub async fn publish_all(js: &Context, messages: &[Outgoing]) -> Result<(), JetStreamError> {
    if messages.is_empty() {
        return Ok(());
    }
    let timer = crate::metrics::PUBLISH_DURATION.start_timer();
    let mut acks = Vec::with_capacity(messages.len());
    for m in messages {
        let publish = PublishMessage::build()
            .payload(m.payload.clone())
            .message_id(m.msg_id.clone());
        acks.push(
            js.send_publish(m.subject.clone(), publish)
                .await?
                .into_future(),
        );
    }
    futures::future::try_join_all(acks).await?;
    timer.observe_duration();
    Ok(())
}

/// Publishes like [`publish_all`], retrying with backoff (100 ms doubling to
/// 2 s) while NATS is unreachable, so that a NATS outage delays the work
/// instead of failing it; a retry reuses each message's ID, so what the
/// failed attempt did store is not stored twice. Gives up when `stop` is
/// cancelled (shutdown), returning the last error, and at once on an error
/// no retry can mend (a message larger than the server takes).
pub async fn publish_retrying(
    js: &Context,
    messages: &[Outgoing],
    stop: &tokio_util::sync::CancellationToken,
) -> Result<(), JetStreamError> {
    let mut delay = Duration::from_millis(100);
    loop {
        match publish_all(js, messages).await {
            Ok(()) => return Ok(()),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot publish; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return Err(e),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetstream::{context::CreateStreamErrorKind as S, stream::ConsumerErrorKind as C};

    fn api_error(code: u16, err_code: u64) -> jetstream::Error {
        serde_json::from_value(serde_json::json!({
            "code": code, "err_code": err_code, "description": "from the server"
        }))
        .expect("an API error")
    }

    fn stream(kind: S) -> JetStreamError {
        JetStreamError::Stream {
            name: "X_API".into(),
            source: jetstream::context::CreateStreamError::new(kind),
        }
    }

    fn consumer(kind: C) -> JetStreamError {
        JetStreamError::Consumer {
            name: "api-outcomes".into(),
            source: jetstream::stream::ConsumerError::new(kind),
        }
    }

    #[test]
    fn every_stream_is_bounded_and_refuses_when_full() {
        let t = Topology::new(&Subjects::new("t"), None).expect("definitions");
        assert_eq!(t.0.streams.len(), 4);
        for s in &t.0.streams {
            assert!(s.max_bytes > 0, "{}", s.name);
            assert_eq!(s.discard, stream::DiscardPolicy::New, "{}", s.name);
            assert_eq!(
                s.max_age,
                Duration::ZERO,
                "{}: work is never aged out",
                s.name
            );
        }
        let t = t.with_max_bytes(Some(1 << 20));
        assert!(t.0.streams.iter().all(|s| s.max_bytes == 1 << 20));
    }

    #[test]
    fn not_ready_yet_is_transient() {
        // "no suitable peers for placement, peer offline" (a node down).
        assert!(stream(S::JetStream(api_error(400, 10005))).is_transient());
        // No leader yet, cluster not available, JetStream temporarily unavailable.
        assert!(stream(S::JetStream(api_error(500, 10009))).is_transient());
        assert!(stream(S::JetStream(api_error(503, 10008))).is_transient());
        assert!(stream(S::JetStream(api_error(503, 1))).is_transient());
        assert!(stream(S::TimedOut).is_transient());
        assert!(
            stream(S::JetStreamUnavailable).is_transient(),
            "no responders"
        );
        assert!(stream(S::Response).is_transient());
        assert!(consumer(C::JetStream(api_error(400, 10005))).is_transient());
        assert!(consumer(C::JetStream(api_error(503, 10008))).is_transient());
        assert!(consumer(C::TimedOut).is_transient());
        assert!(consumer(C::Request).is_transient());
    }

    #[test]
    fn a_refused_definition_is_not() {
        // Subjects overlap another stream's, invalid configuration.
        assert!(!stream(S::JetStream(api_error(400, 10065))).is_transient());
        assert!(!stream(S::JetStream(api_error(400, 10052))).is_transient());
        assert!(!stream(S::InvalidStreamName).is_transient());
        assert!(!consumer(C::JetStream(api_error(400, 10012))).is_transient());
        assert!(!consumer(C::InvalidName).is_transient());
        assert!(!JetStreamError::UnknownConsumer("x".into()).is_transient());
    }

    #[tokio::test(start_paused = true)]
    async fn start_up_gives_up_at_its_deadline() {
        let started = tokio::time::Instant::now();
        let mut attempts = 0;
        let result: Result<(), _> = until_ready(Duration::from_secs(30), || {
            attempts += 1;
            async { Err(stream(S::TimedOut)) }
        })
        .await;
        assert!(result.is_err());
        let waited = started.elapsed();
        // Up to the deadline, less at most one (jittered) delay of 2 to 4 s.
        assert!(waited >= Duration::from_secs(26), "{waited:?}");
        assert!(waited <= Duration::from_secs(30), "{waited:?}");
        assert!(attempts > 10, "{attempts}");
    }

    fn items(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("item-{i:04}")).collect()
    }

    fn decoded(messages: &[Outgoing]) -> Vec<String> {
        messages
            .iter()
            .flat_map(|m| serde_json::from_slice::<Vec<String>>(&m.payload).unwrap())
            .collect()
    }

    #[test]
    fn a_batch_is_split_by_size_in_order() {
        let all = items(1000);
        // Each item is `"item-0000"`: 11 bytes, 12 with its comma.
        let messages = Outgoing::batch("s".into(), &all, 200).unwrap();
        assert!(messages.len() > 1);
        for m in &messages {
            assert!(m.payload.len() <= 200, "{} bytes", m.payload.len());
            // Greedy: a message holds as many items as fit (16 × 12 + 1 = 193).
            assert!(m.payload.len() >= 200 - 12 || std::ptr::eq(m, messages.last().unwrap()));
            assert_eq!(m.subject, "s");
        }
        assert_eq!(messages.len(), 1000usize.div_ceil(16));
        assert_eq!(decoded(&messages), all);
        let ids: std::collections::BTreeSet<_> = messages.iter().map(|m| &m.msg_id).collect();
        assert_eq!(
            ids.len(),
            messages.len(),
            "one deduplication ID per message"
        );
    }

    #[test]
    fn what_fits_stays_one_message_identical_to_the_plain_encoding() {
        let all = items(3);
        let messages = Outgoing::batch("s".into(), &all, 1 << 20).unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].payload, serde_json::to_vec(&all).unwrap());
        assert!(Outgoing::batch::<String>("s".into(), &[], 100)
            .unwrap()
            .is_empty());
        // Exactly at the bound: `["item-0000"]` is 13 bytes.
        assert_eq!(Outgoing::batch("s".into(), &items(1), 13).unwrap().len(), 1);
    }

    #[test]
    fn an_item_too_large_alone_is_a_permanent_error() {
        let mut all = items(5);
        all.insert(2, "x".repeat(500));
        let e = Outgoing::batch("s".into(), &all, 100).unwrap_err();
        assert!(
            matches!(
                e,
                JetStreamError::TooLarge {
                    bytes: 504,
                    max: 100,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.is_transient(), "permanent, never retried");
        assert!(e.to_string().contains("NATS_MAX_MESSAGE_BYTES"), "{e}");
    }

    #[test]
    fn batches_split_per_subject() {
        let pairs = items(100)
            .into_iter()
            .enumerate()
            .map(|(i, item)| (if i % 2 == 0 { "a" } else { "b" }.to_owned(), item));
        let messages = Outgoing::batches(pairs, 64).unwrap();
        let a: Vec<_> = messages
            .iter()
            .filter(|m| m.subject == "a")
            .cloned()
            .collect();
        let b: Vec<_> = messages
            .iter()
            .filter(|m| m.subject == "b")
            .cloned()
            .collect();
        assert_eq!(
            decoded(&a),
            items(100).into_iter().step_by(2).collect::<Vec<_>>()
        );
        assert_eq!(decoded(&b).len(), 50);
        assert!(messages.iter().all(|m| m.payload.len() <= 64));
    }
}
