//! The NATS connection and the naming of every subject and stream.
//!
//! All names hang off one prefix (`NATS_PREFIX`, default `checkout`) so that
//! independent deployments, and tests running in parallel, can share a
//! nats-server without seeing each other's traffic.

use std::time::Duration;

use backon::Retryable;

/// The NATS user a binary connects as (`NATS_USER`, `NATS_PASSWORD`): each
/// service has its own, whose permissions (`nats/auth.conf`) cover only its
/// own subjects.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsAuth {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: configurations end up in logs and panics.
        f.debug_struct("NatsAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("invalid NATS_URL {url:?}: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
}

/// The servers of `NATS_URL`: one URL, or several separated by commas (the
/// nodes of a cluster; the client connects to any and fails over to the
/// others).
pub fn server_addrs(url: &str) -> std::io::Result<Vec<async_nats::ServerAddr>> {
    let addrs = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::parse)
        .collect::<std::io::Result<Vec<async_nats::ServerAddr>>>()?;
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no server given",
        ));
    }
    Ok(addrs)
}

/// Connects to the servers of `url` (see [`server_addrs`]) as `auth`'s user,
/// retrying with backoff for about a minute so that a service started before
/// nats-server waits for it instead of failing.
///
/// With a user, replies come to the inbox prefix `_INBOX_<user>`, the only
/// one `nats/auth.conf` lets that user subscribe to: no one else's replies.
pub async fn connect(
    url: &str,
    name: &str,
    auth: Option<&NatsAuth>,
) -> Result<async_nats::Client, NatsError> {
    let addrs = server_addrs(url).map_err(|source| NatsError::InvalidUrl {
        url: url.to_string(),
        source,
    })?;
    let attempt = || async {
        let mut options = async_nats::ConnectOptions::new();
        if let Some(auth) = auth {
            options = options
                .user_and_password(auth.user.clone(), auth.password.clone())
                .custom_inbox_prefix(format!("_INBOX_{}", auth.user));
        }
        options
            .name(name)
            .connection_timeout(Duration::from_secs(3))
            // The default 10 s is too short for a request that waits on a
            // batch_init of 100,000 rows on a busy machine; callers that
            // need less pass their own timeout.
            .request_timeout(Some(Duration::from_secs(30)))
            // Never give up reconnecting once connected: a restarted
            // nats-server must not leave a process that is up but deaf.
            .max_reconnects(None)
            .connect(addrs.clone())
            .await
    };
    attempt
        .retry(crate::retry::startup())
        // Wrong credentials stay wrong: say so at once.
        .when(|e: &async_nats::ConnectError| {
            e.kind() != async_nats::ConnectErrorKind::AuthorizationViolation
        })
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

#[cfg(test)]
mod tests {
    use super::server_addrs;

    #[test]
    fn one_url_or_a_comma_separated_list() {
        assert_eq!(server_addrs("nats://127.0.0.1:4222").unwrap().len(), 1);
        let cluster =
            server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223,127.0.0.1:4224").unwrap();
        let ports: Vec<u16> = cluster.iter().map(|a| a.port()).collect();
        assert_eq!(ports, [4222, 4223, 4224]);
    }

    #[test]
    fn rejects_garbage_and_empty_lists() {
        assert!(server_addrs("nats://[bad").is_err());
        assert!(server_addrs(" , ").is_err());
    }
}
