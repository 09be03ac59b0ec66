//! The streams and consumers of `nats/jetstream.json`: read once per
//! deployment, created (or updated, by a user allowed to) at start-up, and
//! waited for while JetStream is not ready.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, stream, Context};
use backon::Retryable;
use serde::Deserialize;

use contracts::Subjects;

use super::JetStreamError;

const DEFINITIONS: &str = include_str!("../../../nats/jetstream.json");

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
        let mut attempts: u64 = 0;
        let result: Result<(), _> = until_ready(Duration::from_secs(30), || {
            attempts += 1;
            async { Err(stream(S::TimedOut)) }
        })
        .await;
        assert!(result.is_err());
        let waited = started.elapsed();
        // Up to the deadline, less at most one (jittered) delay of 2 to 4 s.
        // tokio rounds every sleep up to its next millisecond tick, which
        // the retry's budget of nominal delays does not count: up to 1 ms
        // per attempt past the deadline (CI once saw 30.001 s).
        assert!(waited >= Duration::from_secs(26), "{waited:?}");
        let rounding = Duration::from_millis(attempts);
        assert!(
            waited <= Duration::from_secs(30) + rounding,
            "{waited:?} after {attempts} attempts"
        );
        assert!(attempts > 10, "{attempts}");
    }
}
