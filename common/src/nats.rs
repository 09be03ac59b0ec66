//! The NATS connection and the naming of every subject and stream.
//!
//! All names hang off one prefix (`NATS_PREFIX`, default `checkout`) so that
//! independent deployments, and tests running in parallel, can share a
//! nats-server without seeing each other's traffic.

use std::time::Duration;

use backon::Retryable;

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
}

/// Connects, retrying with backoff for about a minute so that a service
/// started before nats-server waits for it instead of failing.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, NatsError> {
    let attempt = || async {
        async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(3))
            // The default 10 s is too short for a request that waits on a
            // batch_init of 100,000 rows on a busy machine; callers that
            // need less pass their own timeout.
            .request_timeout(Some(Duration::from_secs(30)))
            // Never give up reconnecting once connected: a restarted
            // nats-server must not leave a process that is up but deaf.
            .max_reconnects(None)
            .connect(url)
            .await
    };
    attempt
        .retry(crate::retry::startup())
        .notify(|e, after| tracing::warn!(error = %e, ?after, "NATS not reachable yet"))
        .await
        .map_err(|source| NatsError::Connect {
            url: url.to_string(),
            source,
        })
}

/// True when the client is connected and the server answers a round trip.
pub async fn ping(client: &async_nats::Client) -> bool {
    matches!(
        client.connection_state(),
        async_nats::connection::State::Connected
    ) && tokio::time::timeout(Duration::from_secs(2), client.flush())
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Builds every subject and stream name from the deployment prefix.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Subject group of a service's request/reply endpoints:
    /// `{prefix}.svc.{service}`. Kept apart from the `{prefix}.js.` subjects
    /// that JetStream streams capture.
    pub fn service_group(&self, service: &str) -> String {
        format!("{}.svc.{service}", self.prefix)
    }

    /// Subject of one request/reply endpoint.
    pub fn endpoint(&self, service: &str, endpoint: &str) -> String {
        format!("{}.{endpoint}", self.service_group(service))
    }

    /// A subject captured by a JetStream stream: `{prefix}.js.{rest}`.
    pub fn js(&self, rest: &str) -> String {
        format!("{}.js.{rest}", self.prefix)
    }

    /// Core-NATS subject (not persisted) on which every `api` replica hears
    /// which request records became final (a batch per message).
    pub fn requests_final(&self) -> String {
        format!("{}.evt.requests.final", self.prefix)
    }
}
