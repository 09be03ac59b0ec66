//! What every binary does first, given its configuration: bind its HTTP
//! port, connect to its database (applying migrations) and to NATS (what
//! it then serves, and how it stops, is [`crate::service`]).

use deadpool_postgres::Pool;

use crate::{
    config::Config,
    db::DbError,
    http::ops::Readiness,
    jetstream::{JetStreamError, Topology},
    nats::NatsError,
};
use contracts::Subjects;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    JetStream(#[from] JetStreamError),
    #[error("NATS_MAX_MESSAGE_BYTES ({configured}) leaves less than {slack} bytes for headers below the server's max_payload ({server}): lower it or raise max_payload")]
    MessageBound {
        configured: usize,
        server: usize,
        slack: usize,
    },
}

/// Room kept below the server's `max_payload` for a message's headers
/// (`Nats-Msg-Id` and the like take about a hundred bytes).
const HEADER_SLACK: usize = 4 * 1024;

/// Binds `config.listen_addr` and, when `LISTEN_ADDR_FILE` is set, writes
/// the address bound there (port 0 takes a free port; whoever started the
/// binary reads which).
pub async fn listen(config: &Config) -> std::io::Result<tokio::net::TcpListener> {
    bind(config.listen_addr, config.listen_addr_file.as_deref()).await
}

/// Binds `OPS_LISTEN_ADDR` when it is set (and writes the address bound to
/// `OPS_LISTEN_ADDR_FILE`): the operations endpoints then move there.
pub async fn listen_ops(config: &Config) -> std::io::Result<Option<tokio::net::TcpListener>> {
    match config.ops_listen_addr {
        Some(addr) => Ok(Some(
            bind(addr, config.ops_listen_addr_file.as_deref()).await?,
        )),
        None => Ok(None),
    }
}

async fn bind(
    addr: std::net::SocketAddr,
    file: Option<&std::path::Path>,
) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    if let Some(path) = file {
        // Written aside, then renamed: a reader never sees half an address.
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, listener.local_addr()?.to_string()).await?;
        tokio::fs::rename(&tmp, path).await?;
    }
    Ok(listener)
}

/// A binary's connections, ready to use.
#[derive(Clone)]
pub struct Deps {
    pub config: Config,
    pub pool: Pool,
    pub nats: async_nats::Client,
    pub subjects: Subjects,
    /// The JetStream streams and consumers, under this deployment's prefix.
    pub topology: Topology,
}

impl Deps {
    /// `binary` labels logs and metrics.
    pub async fn connect(
        config: Config,
        binary: &'static str,
        migrations: refinery::Runner,
    ) -> Result<Self, BootstrapError> {
        crate::metrics::register_build_info(binary);
        std::sync::LazyLock::force(&crate::metrics::PUBLISH_DURATION);
        std::sync::LazyLock::force(&crate::metrics::DB_POOL_WAIT);
        let pool = crate::db::connect_and_migrate(
            &config.database_url,
            config.database_pool_size,
            migrations,
        )
        .await?;
        tokio::spawn(crate::metrics::report_pool(pool.clone()));
        let nats =
            crate::nats::connect(&config.nats_url, binary, config.nats_auth.as_ref()).await?;
        // A publish over the server's limit is refused by the client; the
        // bound must be below it, or split messages could still be too big.
        let server = nats.server_info().max_payload;
        if config.max_message_bytes.saturating_add(HEADER_SLACK) > server {
            return Err(BootstrapError::MessageBound {
                configured: config.max_message_bytes,
                server,
                slack: HEADER_SLACK,
            });
        }
        let subjects = Subjects::new(config.nats_prefix.clone());
        let topology = Topology::new(&subjects, config.stream_replicas)?
            .with_startup_deadline(config.jetstream_startup_deadline)
            .with_max_bytes(config.stream_max_bytes);
        tracing::info!(
            prefix = subjects.prefix(),
            "connected to PostgreSQL and NATS"
        );
        Ok(Self {
            config,
            pool,
            nats,
            subjects,
            topology,
        })
    }

    pub fn readiness(&self) -> Readiness {
        Readiness {
            pool: self.pool.clone(),
            nats: self.nats.clone(),
            consumers: Vec::new(),
        }
    }
}
