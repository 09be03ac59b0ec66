//! What every binary does first: read its configuration, connect to its
//! database (applying migrations) and to NATS.

use deadpool_postgres::Pool;

use crate::{
    config::{Config, ConfigError},
    db::DbError,
    nats::{NatsError, Subjects},
    ops::Readiness,
};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Nats(#[from] NatsError),
}

/// A binary's connections, ready to use.
#[derive(Clone)]
pub struct Deps {
    pub config: Config,
    pub pool: Pool,
    pub nats: async_nats::Client,
    pub subjects: Subjects,
}

impl Deps {
    /// `service` names the database by default; `binary` labels logs and
    /// metrics.
    pub async fn connect(
        service: &str,
        binary: &'static str,
        default_port: u16,
        migrations: refinery::Runner,
    ) -> Result<Self, BootstrapError> {
        let config = Config::from_env(service, default_port)?;
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
        let nats = crate::nats::connect(&config.nats_url, binary).await?;
        let subjects = Subjects::new(config.nats_prefix.clone());
        tracing::info!(
            prefix = subjects.prefix(),
            "connected to PostgreSQL and NATS"
        );
        Ok(Self {
            config,
            pool,
            nats,
            subjects,
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
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// How long shutdown waits for background tasks to finish what they hold.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

impl Deps {
    /// Serves the operations endpoints and the NATS endpoints of `server`
    /// while `tasks` run, until `shutdown` resolves or a task fails.
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
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let listener = tokio::net::TcpListener::bind(self.config.listen_addr).await?;
        let ops = tokio::spawn(crate::ops::serve(
            listener,
            crate::ops::router(readiness)
                .layer(axum::middleware::from_fn(crate::metrics::track_http)),
            async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            },
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
        let _ = stop_tx.send(true);
        ops.await.map_err(std::io::Error::other)??;
        served?;
        match failure {
            Some(failed) => Err(failed.into()),
            None => Ok(()),
        }
    }
}
