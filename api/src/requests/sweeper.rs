//! The sweeper: the guarantee that a request ID handed out always reaches a
//! final status, even if `api` died between storing a record and publishing
//! it. It also keeps the gauge of pending records fresh. (Records past their
//! retention are purged by `runtime::retention`, see `api::run`.)

use std::time::Duration;

use contracts::messages::saga::CheckoutRequested;
use runtime::{jetstream, jetstream::Outgoing, tasks::Tasks};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{store, Inner, Requests};

/// Most records re-published per sweep.
const CLAIM: i64 = 500;
/// How often the pending gauge is refreshed (a count over the pending index).
const GAUGE_EVERY: Duration = Duration::from_secs(5);

pub(super) fn start(requests: &Requests, tasks: &mut Tasks) {
    let (inner, stop) = (requests.inner.clone(), tasks.stop_token());
    tasks.spawn("sweeper", async move {
        sweep(&inner, stop).await;
        Ok::<_, std::convert::Infallible>(())
    });
}

async fn sweep(s: &Inner, stop: CancellationToken) {
    let (pending, parked) = (PENDING.clone(), PARKED.clone());
    let mut tick = tokio::time::interval(s.settings.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_count = None::<Instant>;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if last_count.is_none_or(|t| t.elapsed() >= GAUGE_EVERY) {
            last_count = Some(Instant::now());
            if let Ok((n, p)) = store::count_pending(&s.pool).await {
                pending.set(n);
                parked.set(p);
            }
        }
        republish_stuck(s).await;
    }
}

/// Re-publishes records still pending at their next publish time.
async fn republish_stuck(s: &Inner) {
    let stuck = match store::claim_stuck(&s.pool, CLAIM).await {
        Ok(stuck) => stuck,
        Err(e) => {
            tracing::warn!(error = %e, "sweeper cannot read records");
            return;
        }
    };
    if stuck.is_empty() {
        return;
    }
    let parked = stuck
        .iter()
        .filter(|s| s.attempts >= store::PARK_AFTER)
        .count();
    if parked > 0 {
        tracing::warn!(
            parked,
            after = store::PARK_AFTER,
            "re-publishing parked checkouts (pending after this many publishes)"
        );
    }
    tracing::info!(count = stuck.len(), "re-publishing pending checkouts");
    let requests: Vec<CheckoutRequested> = stuck
        .into_iter()
        .map(|s| CheckoutRequested {
            request_id: s.request_id,
            order_id: s.order_id,
        })
        .collect();
    // A fresh message ID per attempt: JetStream must not drop a
    // re-publish as a duplicate of the attempt that got lost.
    let published = match Outgoing::batch(
        s.subjects.checkout_requested(),
        &requests,
        s.settings.max_message_bytes,
    ) {
        Ok(messages) => jetstream::publish_all(&s.js, &messages).await,
        Err(e) => Err(e),
    };
    if let Err(e) = published {
        tracing::warn!(error = %e, "re-publish failed; will try again");
    }
}

static PENDING: std::sync::LazyLock<prometheus::IntGauge> = std::sync::LazyLock::new(|| {
    prometheus::register_int_gauge!("checkout_requests_pending", "Request records not yet final")
        .expect("metric registers once")
});

static PARKED: std::sync::LazyLock<prometheus::IntGauge> = std::sync::LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "checkout_requests_parked",
        "Request records still pending after PARK_AFTER (30) publishes: re-published hourly; \
         alert on any"
    )
    .expect("metric registers once")
});
