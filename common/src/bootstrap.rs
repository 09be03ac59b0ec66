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
        }
    }
}

impl Deps {
    /// Serves the operations endpoints and the NATS endpoints of `server`
    /// until `shutdown` resolves; then stops taking requests and returns.
    pub async fn serve(
        &self,
        server: crate::rpc::Server,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let ops = tokio::spawn(crate::ops::serve(
            self.config.listen_addr,
            crate::ops::router(self.readiness())
                .fallback(|| async {
                    crate::problem::response(
                        axum::http::StatusCode::NOT_FOUND,
                        "not-found",
                        "no such endpoint",
                        Default::default(),
                    )
                })
                .layer(axum::middleware::from_fn(crate::problem::normalize))
                .layer(axum::middleware::from_fn(crate::metrics::track_http)),
            async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            },
        ));
        server.run(shutdown).await;
        let _ = stop_tx.send(true);
        ops.await.map_err(std::io::Error::other)?
    }
}
