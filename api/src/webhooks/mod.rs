//! Webhook callbacks: a checkout given a `callback_url` gets its final
//! request record POSTed there, signed (Standard Webhooks), retried with
//! backoff, every attempt recorded.
//!
//! Deliveries are rows in the api database, created with the request record
//! and made due when the record becomes final; any api replica's worker
//! claims due rows (`SKIP LOCKED`, with a lease) so each attempt is made by
//! exactly one replica, and pending deliveries survive restarts.

pub mod failure;
pub mod policy;
pub mod signing;
pub mod store;
pub mod worker;

use std::{sync::LazyLock, time::Duration};

use prometheus::{register_histogram, register_int_counter_vec, Histogram, IntCounterVec};
use runtime::config::{ConfigError, Vars};

/// A public development secret, used (with a warning) only when
/// `WEBHOOK_SECRET` is unset and `WEBHOOK_SECRET_DEV=true` says this is a
/// development run; anyone can forge signatures made with it.
pub const DEV_SECRET: &str = "whsec_bG9jYWwtZGV2ZWxvcG1lbnQtc2VjcmV0LWNoYW5nZS1tZQ==";

/// The Standard Webhooks recommendation: at once, 5 s, 5 min, 30 min, 2 h,
/// 5 h, 10 h, 10 h.
pub const DEFAULT_SCHEDULE: &str = "0s,5s,5m,30m,2h,5h,10h,10h";

#[derive(Debug, Clone)]
pub struct Settings {
    /// `WEBHOOK_SECRET`: `whsec_...`, several separated by spaces during a
    /// rotation (all sign; the receiver accepts any).
    pub secrets: String,
    /// `WEBHOOK_TIMEOUT_MS` per attempt.
    pub timeout: Duration,
    /// `WEBHOOK_SCHEDULE`: delay before each attempt; its length is the
    /// maximum number of attempts.
    pub schedule: Vec<Duration>,
    /// `WEBHOOK_CONCURRENCY`: attempts in flight per replica.
    pub concurrency: usize,
    /// `WEBHOOK_POLL_MS`: how often a worker looks for due deliveries.
    pub poll: Duration,
    pub policy: policy::Policy,
}

impl Settings {
    pub fn load(vars: &Vars) -> Result<Self, ConfigError> {
        let dev_run: bool = vars.parse("WEBHOOK_SECRET_DEV", false)?;
        let secrets = match vars.get("WEBHOOK_SECRET")? {
            Some(secrets) => secrets,
            None if dev_run => DEV_SECRET.to_owned(),
            None => {
                return Err(ConfigError::Missing {
                    name: "WEBHOOK_SECRET".into(),
                    reason: "webhooks are signed with it (whsec_<base64>; `make up` keeps one \
                             in .local/secrets/webhook_secret); only a development run may \
                             go without, with WEBHOOK_SECRET_DEV=true"
                        .into(),
                })
            }
        };
        if let Err(e) = signing::Signer::new(&secrets) {
            return Err(ConfigError::Invalid {
                name: "WEBHOOK_SECRET".into(),
                value: "(hidden)".into(),
                reason: e.to_string(),
            });
        }
        let schedule_text = vars.string("WEBHOOK_SCHEDULE", DEFAULT_SCHEDULE)?;
        let schedule = parse_schedule(&schedule_text).map_err(|reason| ConfigError::Invalid {
            name: "WEBHOOK_SCHEDULE".into(),
            value: schedule_text.clone(),
            reason,
        })?;
        Ok(Self {
            secrets,
            timeout: vars.interval_ms("WEBHOOK_TIMEOUT_MS", Duration::from_secs(5))?,
            schedule,
            concurrency: vars.at_least("WEBHOOK_CONCURRENCY", 64usize, 1)?,
            poll: vars.interval_ms("WEBHOOK_POLL_MS", Duration::from_millis(500))?,
            policy: policy::Policy::load(vars)?,
        })
    }

    /// Signing with the public development secret (`WEBHOOK_SECRET` unset,
    /// `WEBHOOK_SECRET_DEV=true`).
    pub fn uses_dev_secret(&self) -> bool {
        self.secrets == DEV_SECRET
    }
}

/// Parses `0s,5s,5m,2h,250ms`.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let delays = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (digits, unit) =
                s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let n: u64 = digits.parse().map_err(|_| format!("bad delay {s:?}"))?;
            Ok(match unit {
                "ms" => Duration::from_millis(n),
                "s" | "" => Duration::from_secs(n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                _ => return Err(format!("bad unit in {s:?} (use ms, s, m, h)")),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if delays.is_empty() {
        return Err("at least one attempt is needed".into());
    }
    Ok(delays)
}

pub static ATTEMPTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "webhook_attempts_total",
        "Webhook delivery attempts, by outcome (delivered, retry, failed)",
        &["outcome"]
    )
    .expect("metric registers once")
});

pub static ATTEMPT_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "webhook_attempt_duration_seconds",
        "Time of one webhook delivery attempt",
        runtime::metrics::LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let d = parse_schedule(DEFAULT_SCHEDULE).expect("default parses");
        assert_eq!(d.len(), 8);
        assert_eq!(d[2], Duration::from_secs(300));
        assert_eq!(
            parse_schedule("0ms, 100ms,1s").expect("parses"),
            vec![
                Duration::ZERO,
                Duration::from_millis(100),
                Duration::from_secs(1)
            ]
        );
        assert!(parse_schedule("").is_err());
        assert!(parse_schedule("5x").is_err());
    }
}
