//! What every binary does first, given its configuration: bind its HTTP
//! port, connect to its database (applying migrations) and to NATS.

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

/// Why a binary stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Task(#[from] crate::tasks::TaskFailed),
}

/// Why a service binary (order-svc, stock-svc, payment-svc) stopped with
/// an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("NATS: {0}")]
    Nats(#[from] async_nats::Error),
    #[error(transparent)]
    JetStream(#[from] crate::jetstream::JetStreamError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// How long shutdown waits for background tasks to finish what they hold.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

impl Deps {
    /// Serves the operations endpoints on `listener` and the NATS endpoints
    /// of `server` while `tasks` run, until `shutdown` resolves or a task
    /// fails.
    ///
    /// On shutdown: stop taking requests, let the background tasks finish
    /// and acknowledge what they hold (at most [`DRAIN_GRACE`]), then stop
    /// the operations endpoints. A failed task is returned, so the binary
    /// exits non-zero and its supervisor restarts it.
    pub async fn serve(
        &self,
        server: crate::rpc::Server,
        mut tasks: crate::tasks::Tasks,
        readiness: Readiness,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut stop_rx = stop_rx.clone();
            async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            }
        };
        // With OPS_LISTEN_ADDR the main listener keeps only /health.
        let (main_routes, ops) = match crate::bootstrap::listen_ops(&self.config).await? {
            Some(ops_listener) => (
                crate::http::ops::health_router(),
                Some(tokio::spawn(crate::http::ops::serve(
                    ops_listener,
                    crate::http::ops::standalone(crate::http::ops::router(readiness)),
                    stopped(),
                ))),
            ),
            None => (crate::http::ops::router(readiness), None),
        };
        let main = tokio::spawn(crate::http::ops::serve(
            listener,
            crate::http::ops::standalone(main_routes),
            stopped(),
        ));
        let mut failure = None;
        let served = {
            let stop = async {
                tokio::select! {
                    _ = shutdown => {}
                    failed = tasks.failed() => failure = Some(failed),
                }
            };
            server.run(stop).await
        };
        if let Some(failed) = &failure {
            tracing::error!(error = %failed, "stopping");
        }
        tasks.drain(DRAIN_GRACE).await;
        // What the drained tasks published (acks, results) may still sit in
        // the connection's buffer.
        if let Err(e) = self.nats.flush().await {
            tracing::warn!(error = %e, "cannot flush NATS at shutdown");
        }
        let _ = stop_tx.send(true);
        main.await.map_err(std::io::Error::other)??;
        if let Some(ops) = ops {
            ops.await.map_err(std::io::Error::other)??;
        }
        served?;
        match failure {
            Some(failed) => Err(failed.into()),
            None => Ok(()),
        }
    }
}
