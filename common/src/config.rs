//! Configuration from environment variables, with defaults that match the
//! project-local PostgreSQL and nats-server started by `make up`.

use std::{net::SocketAddr, str::FromStr, time::Duration};

/// Port of the project-local PostgreSQL (`scripts/infra.sh`).
pub const LOCAL_PG_PORT: u16 = 15432;
/// Port of the project-local nats-server (`scripts/infra.sh`).
pub const LOCAL_NATS_PORT: u16 = 14222;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} has an invalid value {value:?}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

/// Settings shared by every binary.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which binary this is, e.g. `stock` (also the default database name).
    pub service: String,
    pub listen_addr: SocketAddr,
    pub database_url: String,
    pub database_pool_size: usize,
    /// One server URL, or the comma-separated URLs of a cluster's nodes.
    pub nats_url: String,
    /// Prefix of every NATS subject and stream this deployment uses, so that
    /// several deployments (or parallel tests) can share one nats-server.
    pub nats_prefix: String,
}

impl Config {
    /// Reads the common settings. `service` names the database by default and
    /// `default_port` is the listen port when `LISTEN_ADDR` is unset.
    pub fn from_env(service: &str, default_port: u16) -> Result<Self, ConfigError> {
        let nats_prefix = var_or("NATS_PREFIX", "checkout".to_string())?;
        if nats_prefix.is_empty()
            || !nats_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::Invalid {
                name: "NATS_PREFIX".into(),
                value: nats_prefix,
                reason: "use letters, digits, '-' and '_' only".into(),
            });
        }
        let nats_url = var_or("NATS_URL", format!("nats://127.0.0.1:{LOCAL_NATS_PORT}"))?;
        // Checked here so that a typo fails at start-up, not in the retry loop.
        if let Err(e) = crate::nats::server_addrs(&nats_url) {
            return Err(ConfigError::Invalid {
                name: "NATS_URL".into(),
                value: nats_url,
                reason: e.to_string(),
            });
        }
        Ok(Self {
            service: service.to_string(),
            listen_addr: parse_var(
                "LISTEN_ADDR",
                SocketAddr::from(([127, 0, 0, 1], default_port)),
            )?,
            database_url: var_or(
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:{LOCAL_PG_PORT}/{service}"),
            )?,
            database_pool_size: parse_var("DATABASE_POOL_SIZE", 16)?,
            nats_url,
            nats_prefix,
        })
    }
}

fn var_or(name: &str, default: String) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(default),
        Err(std::env::VarError::NotUnicode(v)) => Err(ConfigError::Invalid {
            name: name.into(),
            value: v.to_string_lossy().into_owned(),
            reason: "not valid UTF-8".into(),
        }),
    }
}

/// Parses `name` if set, else returns `default`.
pub fn parse_var<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                name: name.into(),
                value: v,
                reason: e.to_string(),
            })
        }
        _ => Ok(default),
    }
}

/// Parses a duration given in milliseconds (`FOO_MS=1500`).
pub fn duration_ms_var(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    parse_var(name, default.as_millis() as u64).map(Duration::from_millis)
}
