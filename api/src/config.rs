//! The api's configuration: the settings every binary shares and its own,
//! loaded and validated once at start-up (see the README's *Configuration*).

use std::time::Duration;

use runtime::config::{ConfigError, Vars};

/// The standard benchmark expects the API on port 8000.
pub const DEFAULT_PORT: u16 = 8000;

/// Everything the api reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: runtime::config::Config,
    pub api: ApiSettings,
}

/// The api's own settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// How long a call to a service waits for its answer (`RPC_TIMEOUT_MS`).
    pub rpc_timeout: Duration,
    /// What the HTTP handlers read (through `AppState`).
    pub http: HttpSettings,
    /// The request records' lifecycle.
    pub requests: crate::requests::Settings,
    pub webhooks: crate::webhooks::Settings,
    /// Who may call `batch_init` (`SETUP_ENDPOINTS`, `SETUP_TOKEN`).
    pub setup: crate::setup::Access,
}

/// Tunables of the HTTP handlers.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// How long a plain (synchronous) checkout waits for its outcome, and
    /// how long any checkout waits to be accepted while PostgreSQL is down
    /// (`CHECKOUT_TIMEOUT_MS`, default 60 s). Only an outage longer than
    /// that reaches it; the answer then is a 503 that carries the
    /// `request_id` and `Location` of the accepted checkout.
    pub checkout_timeout: Duration,
    /// How long an Idempotency-Key is remembered (`IDEMPOTENCY_TTL_SECS`).
    pub idempotency_ttl: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&Vars::process())
    }

    pub fn load(vars: &Vars) -> Result<Self, ConfigError> {
        let common = runtime::config::Config::load(vars, "api", DEFAULT_PORT)?;
        let rpc_timeout = vars.interval_ms("RPC_TIMEOUT_MS", Duration::from_secs(30))?;
        let checkout_timeout = vars.duration_ms("CHECKOUT_TIMEOUT_MS", Duration::from_secs(60))?;
        let requests = crate::requests::Settings {
            // When the sweeper re-publishes a record still pending.
            republish_after: vars.duration_ms("REPUBLISH_AFTER_MS", Duration::from_secs(10))?,
            // How often the sweeper looks.
            sweep_interval: vars.interval_ms("SWEEP_INTERVAL_MS", Duration::from_secs(2))?,
            // How often a waiting client re-reads its record in case the
            // wake-up announcement was lost.
            wait_poll: vars.interval_ms("WAIT_POLL_MS", Duration::from_secs(5))?,
            max_message_bytes: common.max_message_bytes,
        };
        let http = HttpSettings {
            checkout_timeout,
            idempotency_ttl: Duration::from_secs(vars.parse("IDEMPOTENCY_TTL_SECS", 24 * 3600)?),
        };
        let api = ApiSettings {
            rpc_timeout,
            http,
            requests,
            webhooks: crate::webhooks::Settings::load(vars)?,
            setup: crate::setup::Access::load(vars)?,
        };
        Ok(Self { common, api })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variable the api reads, blank (unset) unless given.
    fn vars(pairs: &[(&str, &str)]) -> Vars {
        let names = [
            "RPC_TIMEOUT_MS",
            "CHECKOUT_TIMEOUT_MS",
            "REPUBLISH_AFTER_MS",
            "SWEEP_INTERVAL_MS",
            "WAIT_POLL_MS",
            "IDEMPOTENCY_TTL_SECS",
            "RETENTION_HOURS",
            "JETSTREAM_STARTUP_DEADLINE_SECS",
            "WEBHOOK_SECRET",
            "WEBHOOK_SCHEDULE",
            "WEBHOOK_TIMEOUT_MS",
            "WEBHOOK_CONCURRENCY",
            "WEBHOOK_POLL_MS",
            "WEBHOOK_ALLOW_HOSTS",
            "WEBHOOK_DENY_HOSTS",
            "WEBHOOK_BLOCK_PRIVATE",
            "WEBHOOK_ALLOW_PRIVATE",
            "WEBHOOK_DNS_TIMEOUT_MS",
            "WEBHOOK_SECRET_DEV",
            "SETUP_ENDPOINTS",
            "SETUP_TOKEN",
            "NATS_PREFIX",
            "NATS_URL",
            "NATS_STREAM_REPLICAS",
            "NATS_STREAM_MAX_BYTES",
            "LISTEN_ADDR",
            "LISTEN_ADDR_FILE",
            "DATABASE_URL",
            "DATABASE_POOL_SIZE",
            "RUST_LOG",
            "LOG_FORMAT",
        ];
        let mut all: Vec<(&str, &str)> = names.into_iter().map(|n| (n, "")).collect();
        all.extend_from_slice(pairs);
        Vars::process().with(all)
    }

    /// The one setting without a default.
    const SECRET: (&str, &str) = ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");

    #[test]
    fn unset_means_the_documented_defaults() {
        let c = Config::load(&vars(&[SECRET])).expect("defaults are valid");
        assert_eq!(c.common.listen_addr.port(), 8000);
        assert_eq!(c.api.rpc_timeout, Duration::from_secs(30));
        let (h, r) = (&c.api.http, &c.api.requests);
        assert_eq!(h.checkout_timeout, Duration::from_secs(60));
        assert_eq!(r.republish_after, Duration::from_secs(10));
        assert_eq!(r.sweep_interval, Duration::from_secs(2));
        assert_eq!(r.wait_poll, Duration::from_secs(5));
        assert_eq!(r.max_message_bytes, c.common.max_message_bytes);
        assert_eq!(h.idempotency_ttl, Duration::from_secs(86400));
        assert_eq!(c.common.retention, Duration::from_secs(168 * 3600));
        let w = &c.api.webhooks;
        assert!(!w.uses_dev_secret());
        assert_eq!(w.schedule.len(), 8);
        assert_eq!(w.timeout, Duration::from_secs(5));
        assert_eq!(w.concurrency, 64);
        assert_eq!(w.poll, Duration::from_millis(500));
        assert!(w.policy.allow.is_empty() && w.policy.deny.is_empty());
        assert!(w.policy.block_private, "the SSRF guard is on by default");
        assert_eq!(c.api.setup, crate::setup::Access::Open);
        assert_eq!(w.policy.dns_timeout, Duration::from_secs(2));
    }

    #[test]
    fn no_secret_refuses_to_start_unless_a_development_run() {
        let e = Config::load(&vars(&[])).expect_err("started without a secret");
        let e = e.to_string();
        assert!(
            e.contains("WEBHOOK_SECRET") && e.contains("required"),
            "{e}"
        );
        assert!(
            e.contains("WEBHOOK_SECRET_DEV=true"),
            "says how to opt out: {e}"
        );
        let dev = Config::load(&vars(&[("WEBHOOK_SECRET_DEV", "true")])).expect("dev run");
        assert!(dev.api.webhooks.uses_dev_secret());
        let given = Config::load(&vars(&[SECRET, ("WEBHOOK_SECRET_DEV", "true")])).expect("ok");
        assert!(!given.api.webhooks.uses_dev_secret(), "a given secret wins");
    }

    #[test]
    fn given_values_are_taken() {
        let c = Config::load(&vars(&[
            ("RPC_TIMEOUT_MS", "20"),
            ("CHECKOUT_TIMEOUT_MS", "1500"),
            ("RETENTION_HOURS", "1"),
            ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            ("WEBHOOK_SCHEDULE", "0ms,200ms"),
            ("WEBHOOK_ALLOW_HOSTS", "A.example, .b.example"),
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
            ("WEBHOOK_DNS_TIMEOUT_MS", "500"),
        ]))
        .expect("valid");
        assert_eq!(c.api.rpc_timeout, Duration::from_millis(20));
        assert_eq!(c.api.http.checkout_timeout, Duration::from_millis(1500));
        assert_eq!(c.common.retention, Duration::from_secs(3600));
        assert!(!c.api.webhooks.uses_dev_secret());
        assert_eq!(
            c.api.webhooks.schedule,
            [Duration::ZERO, Duration::from_millis(200)]
        );
        assert_eq!(c.api.webhooks.policy.allow, ["a.example", ".b.example"]);
        assert!(!c.api.webhooks.policy.block_private);
        assert_eq!(
            c.api.webhooks.policy.dns_timeout,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_bad_value_stops_start_up_with_its_name() {
        for (name, value) in [
            ("RPC_TIMEOUT_MS", "0"),
            ("CHECKOUT_TIMEOUT_MS", "1.5s"),
            ("SWEEP_INTERVAL_MS", "0"),
            ("WAIT_POLL_MS", "-5"),
            ("IDEMPOTENCY_TTL_SECS", "a day"),
            ("WEBHOOK_SECRET", "not-a-secret"),
            ("WEBHOOK_SCHEDULE", "5x"),
            ("WEBHOOK_TIMEOUT_MS", "0"),
            ("WEBHOOK_CONCURRENCY", "0"),
            ("WEBHOOK_POLL_MS", "0"),
            ("WEBHOOK_ALLOW_PRIVATE", "yes"),
            ("WEBHOOK_DNS_TIMEOUT_MS", "0"),
            ("WEBHOOK_SECRET_DEV", "maybe"),
            // Gone: refused so that nobody believes it still switches anything.
            ("WEBHOOK_BLOCK_PRIVATE", "false"),
            ("RETENTION_HOURS", "0"),
            ("SETUP_ENDPOINTS", "token"),
        ] {
            let e = Config::load(&vars(&[SECRET, (name, value)]))
                .expect_err(&format!("{name}={value} accepted"))
                .to_string();
            assert!(e.contains(name), "{name}={value}: {e}");
        }
    }
}
