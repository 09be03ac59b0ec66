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

use crate::nats::Subjects;

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
}

impl JetStreamError {
    /// Worth retrying at start-up: JetStream did not answer in time or is
    /// not available yet, as happens in a cluster right after it formed or
    /// while a stream leader is being elected.
    pub fn is_transient(&self) -> bool {
        use jetstream::{context::CreateStreamErrorKind as S, stream::ConsumerErrorKind as C};
        match self {
            Self::Stream { source, .. } => {
                matches!(source.kind(), S::TimedOut | S::JetStreamUnavailable)
            }
            Self::Consumer { source, .. } => matches!(source.kind(), C::TimedOut | C::Request),
            _ => false,
        }
    }
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
pub struct Topology(std::sync::Arc<Definitions>);

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
        Ok(Self(std::sync::Arc::new(defs)))
    }
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
    create
        .retry(crate::retry::startup())
        .when(JetStreamError::is_transient)
        .notify(|e, after| tracing::warn!(error = %e, ?after, "JetStream not ready yet"))
        .await
}

/// Connects the JetStream context and makes sure the streams exist.
pub async fn setup(
    nats: &async_nats::Client,
    topology: &Topology,
) -> Result<Context, JetStreamError> {
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .build(nats.clone());
    (|| ensure_streams(&js, topology))
        .retry(crate::retry::startup())
        .when(JetStreamError::is_transient)
        .notify(|e, after| tracing::warn!(error = %e, ?after, "JetStream not ready yet"))
        .await?;
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
    /// One message carrying `items` as a JSON array (see
    /// [`crate::messages::saga`]), with a fresh deduplication ID.
    pub fn batch<T: serde::Serialize>(subject: String, items: &[T]) -> Self {
        Self {
            subject,
            msg_id: uuid::Uuid::now_v7().to_string(),
            // Our message types always serialise.
            payload: Bytes::from(serde_json::to_vec(items).unwrap_or_default()),
        }
    }

    /// Groups `(subject, item)` pairs into one batch message per subject.
    pub fn batches<T: serde::Serialize>(items: impl IntoIterator<Item = (String, T)>) -> Vec<Self> {
        let mut by_subject: std::collections::BTreeMap<String, Vec<T>> = Default::default();
        for (subject, item) in items {
            by_subject.entry(subject).or_default().push(item);
        }
        by_subject
            .into_iter()
            .map(|(subject, items)| Self::batch(subject, &items))
            .collect()
    }
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
/// failed attempt did store is not stored twice. Gives up only when `stop`
/// is cancelled (shutdown), returning the last error.
pub async fn publish_retrying(
    js: &Context,
    messages: &[Outgoing],
    stop: &tokio_util::sync::CancellationToken,
) -> Result<(), JetStreamError> {
    let mut delay = Duration::from_millis(100);
    loop {
        match publish_all(js, messages).await {
            Ok(()) => return Ok(()),
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
