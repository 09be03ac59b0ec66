//! The delivery worker: claims due deliveries and attempts them with
//! bounded concurrency and a per-attempt timeout, so a slow or dead receiver
//! never slows checkouts or other receivers.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use deadpool_postgres::Pool;
use rand::Rng;
use serde_json::json;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    failure::Failure,
    policy::GuardedResolver,
    signing::{Signer, HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP},
    store::{self, Attempt, Due},
    Settings, ATTEMPTS, ATTEMPT_DURATION,
};
use crate::requests::{RequestRecord, Status};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Signer(#[from] super::signing::WebhookError),
}

/// The event body; identical for every attempt of one event.
pub fn event_body(record: &RequestRecord) -> Vec<u8> {
    let kind = match record.status {
        Status::Succeeded => "checkout.succeeded",
        _ => "checkout.failed",
    };
    let mut data = record.clone();
    data.webhook = None;
    let body = json!({
        "type": kind,
        "timestamp": record.completed_at.unwrap_or(record.created_at),
        "data": data,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The event's `webhook-id`: the same for every retry.
pub fn event_id(record: &RequestRecord) -> String {
    format!("msg_{}", record.request_id.simple())
}

pub struct Worker {
    pool: Pool,
    settings: Settings,
    signer: Signer,
    http: reqwest::Client,
    slots: Arc<Semaphore>,
}

impl Worker {
    pub fn new(pool: Pool, settings: Settings) -> Result<Arc<Self>, WorkerError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // HTTP(S)_PROXY would send deliveries where the guard cannot see.
            .no_proxy()
            .dns_resolver(GuardedResolver::shared(&settings.policy))
            .user_agent(concat!("checkout-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        for outcome in ["delivered", "retry", "failed"] {
            ATTEMPTS.with_label_values(&[outcome]);
        }
        std::sync::LazyLock::force(&ATTEMPT_DURATION);
        Ok(Arc::new(Self {
            signer: Signer::new(&settings.secrets)?,
            slots: Arc::new(Semaphore::new(settings.concurrency)),
            pool,
            settings,
            http,
        }))
    }

    /// Runs forever: wakes on `wake` (a record with a callback became final
    /// here) or every poll interval.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, stop: CancellationToken) {
        let lease = self.settings.timeout + Duration::from_secs(10);
        loop {
            tokio::select! {
                // Attempts in flight finish on their own (their claims run
                // out if the process is gone first).
                _ = stop.cancelled() => return,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
            loop {
                let free = self.slots.available_permits();
                if free == 0 {
                    break;
                }
                let due = match store::claim_due(&self.pool, free as i64, lease).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim webhook deliveries");
                        break;
                    }
                };
                if due.is_empty() {
                    break;
                }
                for d in due {
                    let Ok(permit) = self.slots.clone().acquire_owned().await else {
                        return;
                    };
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.attempt(d).await;
                        drop(permit);
                    });
                }
            }
        }
    }

    async fn attempt(&self, due: Due) {
        let number = due.attempts + 1;
        let span = tracing::debug_span!("webhook", request_id = %due.request_id, attempt = number);
        self.attempt_in_span(due, number).instrument(span).await
    }

    async fn attempt_in_span(&self, due: Due, number: i32) {
        let started_at = Utc::now();
        let clock = Instant::now();
        let result = self.send(&due).await;
        let duration = clock.elapsed();
        ATTEMPT_DURATION.observe(duration.as_secs_f64());
        let (http_status, error) = match result {
            Ok(status) => (Some(status), Failure::from_status(status)),
            Err(failure) => (None, Some(failure)),
        };
        let delivered = error.is_none();
        let retry_in = (!delivered)
            .then(|| self.settings.schedule.get(number as usize).copied())
            .flatten()
            .map(jitter);
        let outcome = match (delivered, retry_in) {
            (true, _) => "delivered",
            (false, Some(_)) => "retry",
            (false, None) => "failed",
        };
        ATTEMPTS.with_label_values(&[outcome]).inc();
        tracing::debug!(
            outcome,
            ?http_status,
            error = error.map(Failure::as_str).unwrap_or(""),
            "webhook attempt"
        );
        let attempt = Attempt {
            number,
            started_at,
            duration,
            http_status,
            error: error.map(|f| f.as_str().to_owned()),
            retry_in,
            delivered,
        };
        if let Err(e) = store::record_attempt(&self.pool, due.request_id, &attempt).await {
            // The claim runs out and the attempt is made again: receivers
            // deduplicate by webhook-id.
            tracing::warn!(error = %e, "cannot record a webhook attempt");
        }
    }

    /// One POST; the HTTP status, or why there was none. The details go to
    /// the debug log only (see [`Failure`]).
    async fn send(&self, due: &Due) -> Result<u16, Failure> {
        self.settings.policy.check(&due.url).await.map_err(|e| {
            tracing::debug!(error = %e, "callback_url refused");
            Failure::from_refused(&e)
        })?;
        let body = event_body(&due.record);
        let id = event_id(&due.record);
        let timestamp = Utc::now().timestamp();
        let signature = self.signer.sign(&id, timestamp, &body).map_err(|e| {
            tracing::warn!(error = %e, "cannot sign a webhook");
            Failure::RequestError
        })?;
        let response = self
            .http
            .post(&due.url)
            .header("content-type", "application/json")
            .header(HEADER_WEBHOOK_ID, id)
            .header(HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
            .header(HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, "webhook request failed");
                Failure::from_reqwest(&e)
            })?;
        Ok(response.status().as_u16())
    }
}

/// ±10 % so that retries of many deliveries spread out.
fn jitter(d: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..=1.1);
    d.mul_f64(factor)
}

static WEBHOOKS_PENDING: std::sync::LazyLock<prometheus::IntGauge> =
    std::sync::LazyLock::new(|| {
        prometheus::register_int_gauge!(
            "webhook_deliveries_pending",
            "Webhook deliveries not yet delivered or failed"
        )
        .expect("metric registers once")
    });

/// Keeps the gauge of webhook deliveries still to make fresh. Registered
/// once per process, so several api replicas in one test process share it.
pub async fn report_pending(pool: Pool, stop: CancellationToken) {
    let webhooks = &*WEBHOOKS_PENDING;
    loop {
        if let Ok(n) = store::count_pending(&pool).await {
            webhooks.set(n);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
