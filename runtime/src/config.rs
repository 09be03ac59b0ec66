//! Configuration, loaded once at start-up from environment variables and
//! validated there: a bad value stops the binary with the variable's name
//! and why, instead of falling back silently. Nothing reads the environment
//! later; the loaded values are passed down.
//!
//! Every variable, its default and who reads it is listed in the README
//! (section *Configuration*). The defaults match the project-local
//! PostgreSQL and nats-server started by `make up`.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

/// Port of the project-local PostgreSQL (`scripts/infra.sh`).
pub const LOCAL_PG_PORT: u16 = 15432;
/// Port of the project-local nats-server (`scripts/infra.sh`).
pub const LOCAL_NATS_PORT: u16 = 14222;

/// `DATABASE_URL`'s default: database `name` on the project-local PostgreSQL,
/// as its owner role of the same name. It has no password: the server asks
/// for one (`scripts/infra.sh` generates them; `make up` passes the URL with
/// it), so the default alone never gets in.
pub fn local_database_url(name: &str) -> String {
    format!("postgres://{name}@127.0.0.1:{LOCAL_PG_PORT}/{name}")
}

/// `NATS_URL`'s default: the project-local nats-server.
pub fn local_nats_url() -> String {
    format!("nats://127.0.0.1:{LOCAL_NATS_PORT}")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} has an invalid value {value:?}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("environment variable {name} is required: {reason}")]
    Missing { name: String, reason: String },
}

impl ConfigError {
    fn invalid(name: &str, value: impl Into<String>, reason: impl ToString) -> Self {
        Self::Invalid {
            name: name.into(),
            value: value.into(),
            reason: reason.to_string(),
        }
    }
}

/// Where settings come from: the process environment, under values given
/// explicitly (a test running the services in-process gives each its own).
#[derive(Debug, Clone, Default)]
pub struct Vars {
    given: HashMap<String, String>,
}

impl Vars {
    /// The process environment only.
    pub fn process() -> Self {
        Self::default()
    }

    /// The process environment with `pairs` taking precedence, as for a
    /// child process started with them.
    pub fn with<K: Into<String>, V: Into<String>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.given
            .extend(pairs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The trimmed value of `name`; `None` when unset or blank.
    pub fn get(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let raw = match self.given.get(name) {
            Some(v) => v.clone(),
            None => match std::env::var(name) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => return Ok(None),
                Err(std::env::VarError::NotUnicode(v)) => {
                    return Err(ConfigError::invalid(
                        name,
                        v.to_string_lossy(),
                        "not valid UTF-8",
                    ))
                }
            },
        };
        let v = raw.trim();
        Ok((!v.is_empty()).then(|| v.to_owned()))
    }

    /// `name` as text, else `default`.
    pub fn string(&self, name: &str, default: impl Into<String>) -> Result<String, ConfigError> {
        Ok(self.get(name)?.unwrap_or_else(|| default.into()))
    }

    /// `name` parsed, else `default`.
    pub fn parse<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name)? {
            Some(v) => v
                .parse()
                .map_err(|e: T::Err| ConfigError::invalid(name, v, e)),
            None => Ok(default),
        }
    }

    /// `name` parsed, else `default`; below `min` is refused.
    pub fn at_least<T>(&self, name: &str, default: T, min: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
        T::Err: std::fmt::Display,
    {
        let v = self.parse(name, default)?;
        if v < min {
            return Err(ConfigError::invalid(
                name,
                v.to_string(),
                format!("must be at least {min}"),
            ));
        }
        Ok(v)
    }

    /// A duration in milliseconds (`FOO_MS=1500`), else `default`.
    pub fn duration_ms(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.parse(name, default.as_millis() as u64)
            .map(Duration::from_millis)
    }

    /// Like [`Vars::duration_ms`], but zero is refused: an interval of
    /// nothing would spin.
    pub fn interval_ms(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.at_least(name, default.as_millis() as u64, 1)
            .map(Duration::from_millis)
    }
}

/// Logging (`RUST_LOG`, `LOG_FORMAT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing` filter; `None` keeps the binary's default.
    pub filter: Option<String>,
    /// JSON lines instead of human-readable text.
    pub json: bool,
}

impl LogConfig {
    pub fn load(vars: &Vars) -> Result<Self, ConfigError> {
        let filter = vars.get("RUST_LOG")?;
        if let Some(f) = &filter {
            tracing_subscriber::EnvFilter::try_new(f)
                .map_err(|e| ConfigError::invalid("RUST_LOG", f.clone(), e))?;
        }
        let json = match vars.get("LOG_FORMAT")?.map(|v| v.to_ascii_lowercase()) {
            None => false,
            Some(v) if v == "json" => true,
            Some(v) if v == "text" => false,
            Some(v) => return Err(ConfigError::invalid("LOG_FORMAT", v, "use json or text")),
        };
        Ok(Self { filter, json })
    }
}

pub use crate::nats::NatsAuth;

/// Read here, where every variable is: the type lives with the connection.
impl NatsAuth {
    /// Both or neither: a user without a password (or the reverse) is a
    /// mistake, not a request for anonymous access.
    pub fn load(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        match (vars.get("NATS_USER")?, vars.get("NATS_PASSWORD")?) {
            (None, None) => Ok(None),
            (Some(user), Some(password)) => {
                // The user names the inbox prefix (`_INBOX_<user>`): one token.
                if !user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(ConfigError::invalid(
                        "NATS_USER",
                        user,
                        "use letters, digits, '-' and '_' only",
                    ));
                }
                Ok(Some(Self { user, password }))
            }
            (Some(user), None) => Err(ConfigError::invalid(
                "NATS_PASSWORD",
                "",
                format!("required with NATS_USER={user}"),
            )),
            (None, Some(_)) => Err(ConfigError::invalid(
                "NATS_USER",
                "",
                "required with NATS_PASSWORD",
            )),
        }
    }
}

/// Settings shared by every binary.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which binary this is, e.g. `stock` (also the default database name).
    pub service: String,
    /// Where HTTP is served (`LISTEN_ADDR`); port 0 takes a free one.
    pub listen_addr: SocketAddr,
    /// Where to write the address actually bound (`LISTEN_ADDR_FILE`), so
    /// that whoever started the binary with port 0 learns the port.
    pub listen_addr_file: Option<PathBuf>,
    /// A separate listener for `/metrics`, `/ready` and `/health`
    /// (`OPS_LISTEN_ADDR`); `None` serves them on `listen_addr` as well.
    pub ops_listen_addr: Option<SocketAddr>,
    /// Where to write the operations address bound (`OPS_LISTEN_ADDR_FILE`).
    pub ops_listen_addr_file: Option<PathBuf>,
    pub database_url: String,
    pub database_pool_size: usize,
    /// One server URL, or the comma-separated URLs of a cluster's nodes.
    pub nats_url: String,
    /// Who to connect to NATS as; `None`: anonymously (a server without
    /// authentication).
    pub nats_auth: Option<NatsAuth>,
    /// Prefix of every NATS subject and stream this deployment uses, so that
    /// several deployments (or parallel tests) can share one nats-server.
    pub nats_prefix: String,
    /// Replicas of every JetStream stream (`NATS_STREAM_REPLICAS`); `None`
    /// keeps `nats/jetstream.json`'s.
    pub stream_replicas: Option<usize>,
    /// Bytes each JetStream stream may hold (`NATS_STREAM_MAX_BYTES`);
    /// `None` keeps `nats/jetstream.json`'s.
    pub stream_max_bytes: Option<i64>,
    /// How long finished work is kept (`RETENTION_HOURS`).
    pub retention: Duration,
    /// How long start-up waits for JetStream to become ready (no peers, no
    /// leader, timeouts, no responders) before the binary exits
    /// (`JETSTREAM_STARTUP_DEADLINE_SECS`).
    pub jetstream_startup_deadline: Duration,
    /// Largest JetStream message this binary publishes
    /// (`NATS_MAX_MESSAGE_BYTES`); larger batches are split.
    pub max_message_bytes: usize,
    /// Most lines an order may hold (`ORDER_MAX_LINES`).
    pub max_lines_per_order: usize,
    pub log: LogConfig,
}

/// `NATS_MAX_MESSAGE_BYTES`' default: a quarter of nats-server's default
/// `max_payload` (1 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Highest `NATS_MAX_MESSAGE_BYTES`: nats-server's default `max_payload`
/// less room for the headers.
pub const MAX_MESSAGE_BYTES_CEILING: usize = 1024 * 1024 - 8 * 1024;

impl Config {
    /// Reads the common settings from the process environment. `service`
    /// names the database by default and `default_port` is the listen port
    /// when `LISTEN_ADDR` is unset.
    pub fn from_env(service: &str, default_port: u16) -> Result<Self, ConfigError> {
        Self::load(&Vars::process(), service, default_port)
    }

    /// Like [`Config::from_env`], from `vars`.
    pub fn load(vars: &Vars, service: &str, default_port: u16) -> Result<Self, ConfigError> {
        let nats_prefix = vars.string("NATS_PREFIX", "checkout")?;
        if !nats_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::invalid(
                "NATS_PREFIX",
                nats_prefix,
                "use letters, digits, '-' and '_' only",
            ));
        }
        let nats_url = vars.string("NATS_URL", local_nats_url())?;
        // Checked here so that a typo fails at start-up, not in the retry loop.
        if let Err(e) = crate::nats::server_addrs(&nats_url) {
            return Err(ConfigError::invalid("NATS_URL", nats_url, e));
        }
        let stream_replicas = match vars.get("NATS_STREAM_REPLICAS")? {
            None => None,
            // JetStream keeps 1 to 5 copies of a stream.
            Some(_) => Some(
                vars.parse::<usize>("NATS_STREAM_REPLICAS", 1)
                    .and_then(|n| {
                        if (1..=5).contains(&n) {
                            Ok(n)
                        } else {
                            Err(ConfigError::invalid(
                                "NATS_STREAM_REPLICAS",
                                n.to_string(),
                                "JetStream keeps 1 to 5 replicas",
                            ))
                        }
                    })?,
            ),
        };
        let stream_max_bytes = match vars.get("NATS_STREAM_MAX_BYTES")? {
            None => None,
            // At least a few messages of the largest size (1 MiB).
            Some(_) => Some(vars.at_least("NATS_STREAM_MAX_BYTES", 1i64 << 26, 1 << 16)?),
        };
        let hours = vars.at_least("RETENTION_HOURS", 168u64, 1)?;
        let max_lines_per_order =
            vars.at_least("ORDER_MAX_LINES", contracts::limits::DEFAULT_MAX_LINES, 1)?;
        if max_lines_per_order > contracts::limits::MAX_LINES_CEILING {
            return Err(ConfigError::invalid(
                "ORDER_MAX_LINES",
                max_lines_per_order.to_string(),
                format!("must be at most {}", contracts::limits::MAX_LINES_CEILING),
            ));
        }
        // Every checkout's messages must fit one message, whatever the order.
        let least = contracts::messages::saga::largest_item_bytes(max_lines_per_order);
        let max_message_bytes =
            vars.at_least("NATS_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES, least)?;
        if max_message_bytes > MAX_MESSAGE_BYTES_CEILING {
            return Err(ConfigError::invalid(
                "NATS_MAX_MESSAGE_BYTES",
                max_message_bytes.to_string(),
                format!(
                    "must be at most {MAX_MESSAGE_BYTES_CEILING} (below nats-server's max_payload)"
                ),
            ));
        }
        Ok(Self {
            service: service.to_string(),
            listen_addr: vars.parse(
                "LISTEN_ADDR",
                SocketAddr::from(([127, 0, 0, 1], default_port)),
            )?,
            listen_addr_file: vars.get("LISTEN_ADDR_FILE")?.map(PathBuf::from),
            ops_listen_addr: match vars.get("OPS_LISTEN_ADDR")? {
                None => None,
                Some(_) => Some(vars.parse("OPS_LISTEN_ADDR", SocketAddr::from(([0; 4], 0)))?),
            },
            ops_listen_addr_file: vars.get("OPS_LISTEN_ADDR_FILE")?.map(PathBuf::from),
            database_url: vars.string("DATABASE_URL", local_database_url(service))?,
            database_pool_size: vars.at_least("DATABASE_POOL_SIZE", 16, 1)?,
            nats_url,
            nats_auth: NatsAuth::load(vars)?,
            nats_prefix,
            stream_replicas,
            stream_max_bytes,
            retention: Duration::from_secs(hours.saturating_mul(3600)),
            jetstream_startup_deadline: Duration::from_secs(vars.at_least(
                "JETSTREAM_STARTUP_DEADLINE_SECS",
                crate::jetstream::STARTUP_DEADLINE.as_secs(),
                1,
            )?),
            max_message_bytes,
            max_lines_per_order,
            log: LogConfig::load(vars)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        // Names no test runner sets, and every one this module reads given
        // (blank means unset), so the runner's own environment cannot leak in.
        let mut all: Vec<(&str, &str)> = [
            "NATS_PREFIX",
            "NATS_URL",
            "NATS_USER",
            "NATS_PASSWORD",
            "NATS_STREAM_REPLICAS",
            "NATS_STREAM_MAX_BYTES",
            "RETENTION_HOURS",
            "JETSTREAM_STARTUP_DEADLINE_SECS",
            "LISTEN_ADDR",
            "LISTEN_ADDR_FILE",
            "OPS_LISTEN_ADDR",
            "OPS_LISTEN_ADDR_FILE",
            "DATABASE_URL",
            "DATABASE_POOL_SIZE",
            "RUST_LOG",
            "LOG_FORMAT",
            "NATS_MAX_MESSAGE_BYTES",
            "ORDER_MAX_LINES",
        ]
        .into_iter()
        .map(|n| (n, ""))
        .collect();
        all.extend_from_slice(pairs);
        Vars::process().with(all)
    }

    fn refused(pairs: &[(&str, &str)]) -> String {
        match Config::load(&vars(pairs), "stock", 8002) {
            Ok(c) => panic!("{pairs:?} accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unset_means_the_documented_defaults() {
        let c = Config::load(&vars(&[]), "stock", 8002).expect("defaults are valid");
        assert_eq!(c.listen_addr, "127.0.0.1:8002".parse().unwrap());
        assert_eq!(c.listen_addr_file, None);
        assert_eq!(c.ops_listen_addr, None, "operations on the main listener");
        assert_eq!(c.database_url, "postgres://stock@127.0.0.1:15432/stock");
        assert_eq!(c.database_pool_size, 16);
        assert_eq!(c.nats_url, "nats://127.0.0.1:14222");
        assert_eq!(c.nats_prefix, "checkout");
        assert_eq!(c.nats_auth, None);
        assert_eq!(c.stream_replicas, None);
        assert_eq!(c.stream_max_bytes, None);
        assert_eq!(c.retention, Duration::from_secs(168 * 3600));
        assert_eq!(c.jetstream_startup_deadline, Duration::from_secs(120));
        assert_eq!(c.max_message_bytes, 256 * 1024);
        assert_eq!(c.max_lines_per_order, 1000);
        assert_eq!(
            c.log,
            LogConfig {
                filter: None,
                json: false
            }
        );
    }

    #[test]
    fn set_values_are_taken_trimmed() {
        let c = Config::load(
            &vars(&[
                ("LISTEN_ADDR", " 127.0.0.1:0 "),
                ("OPS_LISTEN_ADDR", "127.0.0.1:9100"),
                ("NATS_PREFIX", "t1_a-b"),
                ("NATS_STREAM_REPLICAS", "3"),
                ("RETENTION_HOURS", "2"),
                ("DATABASE_POOL_SIZE", "4"),
                ("RUST_LOG", "debug,async_nats=warn"),
                ("LOG_FORMAT", "JSON"),
            ]),
            "api",
            8000,
        )
        .expect("valid");
        assert_eq!(c.listen_addr.port(), 0);
        assert_eq!(c.ops_listen_addr, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(c.nats_prefix, "t1_a-b");
        assert_eq!(c.stream_replicas, Some(3));
        assert_eq!(c.retention, Duration::from_secs(7200));
        assert_eq!(c.database_pool_size, 4);
        assert_eq!(c.log.filter.as_deref(), Some("debug,async_nats=warn"));
        assert!(c.log.json);
    }

    #[test]
    fn a_bad_value_is_refused_with_its_name_and_why() {
        for (pairs, name) in [
            (&[("LISTEN_ADDR", "localhost")][..], "LISTEN_ADDR"),
            (&[("OPS_LISTEN_ADDR", "9100")], "OPS_LISTEN_ADDR"),
            (&[("DATABASE_POOL_SIZE", "0")], "DATABASE_POOL_SIZE"),
            (&[("DATABASE_POOL_SIZE", "many")], "DATABASE_POOL_SIZE"),
            (&[("NATS_PREFIX", "a.b")], "NATS_PREFIX"),
            (&[("NATS_URL", "nats://127.0.0.1:port")], "NATS_URL"),
            (&[("NATS_STREAM_REPLICAS", "three")], "NATS_STREAM_REPLICAS"),
            (&[("NATS_STREAM_REPLICAS", "7")], "NATS_STREAM_REPLICAS"),
            (&[("RETENTION_HOURS", "-1")], "RETENTION_HOURS"),
            (&[("RETENTION_HOURS", "0")], "RETENTION_HOURS"),
            (&[("RUST_LOG", "info,[")], "RUST_LOG"),
            (&[("LOG_FORMAT", "yaml")], "LOG_FORMAT"),
            (&[("ORDER_MAX_LINES", "0")], "ORDER_MAX_LINES"),
            (&[("ORDER_MAX_LINES", "10001")], "ORDER_MAX_LINES"),
            (
                &[("NATS_MAX_MESSAGE_BYTES", "1048576")],
                "NATS_MAX_MESSAGE_BYTES",
            ),
            // Too small for a checkout of 1,000 lines.
            (
                &[("NATS_MAX_MESSAGE_BYTES", "65536")],
                "NATS_MAX_MESSAGE_BYTES",
            ),
        ] {
            let e = refused(pairs);
            assert!(e.contains(name), "{pairs:?}: {e}");
            assert!(e.contains(pairs[0].1.trim()), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn nats_user_and_password_go_together_and_the_password_is_not_shown() {
        let c = Config::load(
            &vars(&[("NATS_USER", "stock"), ("NATS_PASSWORD", "s3cret-pw")]),
            "stock",
            8002,
        )
        .expect("valid");
        let auth = c.nats_auth.as_ref().expect("a user");
        assert_eq!(
            (auth.user.as_str(), auth.password.as_str()),
            ("stock", "s3cret-pw")
        );
        assert!(!format!("{c:?}").contains("s3cret-pw"), "{c:?}");
        assert!(refused(&[("NATS_USER", "stock")]).contains("NATS_PASSWORD"));
        assert!(refused(&[("NATS_PASSWORD", "pw")]).contains("NATS_USER"));
        assert!(refused(&[("NATS_USER", "a.b"), ("NATS_PASSWORD", "pw")]).contains("NATS_USER"));
    }

    #[test]
    fn the_message_bound_must_fit_the_largest_checkout() {
        // Fewer lines allow a smaller bound (what the backlog tests use).
        let c = Config::load(
            &vars(&[
                ("ORDER_MAX_LINES", "10"),
                ("NATS_MAX_MESSAGE_BYTES", "4096"),
            ]),
            "order",
            8001,
        )
        .expect("10 lines fit 4 KiB");
        assert_eq!((c.max_lines_per_order, c.max_message_bytes), (10, 4096));
        let least = contracts::messages::saga::largest_item_bytes(1000);
        // About 150 KiB (the README says so): the default leaves room.
        assert!((140_000..160_000).contains(&least), "{least}");
        assert!(least < DEFAULT_MAX_MESSAGE_BYTES, "{least}");
        let e = refused(&[("NATS_MAX_MESSAGE_BYTES", &(least - 1).to_string())]);
        assert!(e.contains(&format!("at least {least}")), "{e}");
    }

    #[test]
    fn durations_are_milliseconds_and_intervals_not_zero() {
        let v = vars(&[("A_MS", "1500"), ("B_MS", "0"), ("C_MS", "soon")]);
        assert_eq!(
            v.duration_ms("A_MS", Duration::ZERO).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            v.duration_ms("B_MS", Duration::from_secs(1)).unwrap(),
            Duration::ZERO
        );
        assert!(v.interval_ms("B_MS", Duration::from_secs(1)).is_err());
        let e = v.duration_ms("C_MS", Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("C_MS"), "{e}");
        assert_eq!(
            v.interval_ms("UNSET_MS", Duration::from_secs(2)).unwrap(),
            Duration::from_secs(2)
        );
    }
}
