//! JetStream: the versioned stream and consumer definitions of
//! `nats/jetstream.json` ([`topology`]), and pipelined publishing of batch
//! messages ([`publish`]).
//!
//! Every binary creates or updates the definitions at start-up, so a fresh
//! nats-server needs no manual setup and a changed definition rolls out with
//! the binaries.

use async_nats::jetstream;

mod publish;
mod topology;

pub use publish::{publish_all, publish_retrying, Outgoing};
pub use topology::{consumer, ensure_streams, setup, Topology, STARTUP_DEADLINE};

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
