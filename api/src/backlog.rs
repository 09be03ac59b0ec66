//! Back-pressure at the edge. Every JetStream stream is bounded
//! (`max_bytes`, `discard: new`: a full stream refuses a publish, whose
//! publisher then waits and retries). The api watches how full the streams
//! are and, while any is past [`HIGH_WATER`], refuses new checkouts with a
//! 503 and `Retry-After` *before* accepting them, so the work already
//! accepted keeps room to finish (a step result must still fit in the ORDER
//! stream) and nothing accepted is ever dropped. The fill of each stream is
//! exported for alerting.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, LazyLock,
    },
    time::Duration,
};

use async_nats::jetstream::Context;
use prometheus::{IntCounter, IntGaugeVec};
use runtime::{jetstream::Topology, tasks::Tasks};
use tokio_util::sync::CancellationToken;

/// Share of a stream's `max_bytes` past which new checkouts are refused.
pub const HIGH_WATER: f64 = 0.9;
/// How often the streams are looked at.
pub const EVERY: Duration = Duration::from_secs(1);

/// Whether the streams have room for new work.
#[derive(Clone, Default)]
pub struct Backlog {
    full: Arc<AtomicBool>,
}

impl Backlog {
    /// Watches the streams of `topology` under `tasks` until they stop.
    pub fn start(js: Context, topology: &Topology, prefix: &str, tasks: &mut Tasks) -> Self {
        let backlog = Self::default();
        let streams: Vec<(String, String)> = topology
            .stream_names()
            .map(|name| {
                let label = name
                    .strip_prefix(prefix)
                    .map(|s| s.trim_start_matches('_'))
                    .unwrap_or(name);
                (name.to_owned(), label.to_owned())
            })
            .collect();
        let (full, stop) = (backlog.full.clone(), tasks.stop_token());
        tasks.spawn("backlog watch", async move {
            watch(js, streams, full, stop).await;
            Ok::<_, std::convert::Infallible>(())
        });
        backlog
    }

    /// True while some stream is past [`HIGH_WATER`]: refuse new work.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Counts a checkout refused because of the backlog.
    pub fn refused(&self) {
        REFUSED.inc();
    }
}

async fn watch(
    js: Context,
    streams: Vec<(String, String)>,
    full: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    LazyLock::force(&REFUSED);
    // Each stream's last known state: one that cannot be read now (an
    // election, an outage) keeps it, rather than counting as not full.
    let mut stream_full = vec![false; streams.len()];
    loop {
        for ((name, label), was_full) in streams.iter().zip(stream_full.iter_mut()) {
            let Ok(stream) = js.get_stream(name).await else {
                continue;
            };
            let info = stream.cached_info();
            let (bytes, max) = (info.state.bytes, info.config.max_bytes);
            BYTES.with_label_values(&[label]).set(bytes as i64);
            MESSAGES
                .with_label_values(&[label])
                .set(info.state.messages as i64);
            MAX_BYTES.with_label_values(&[label]).set(max);
            *was_full = max > 0 && bytes as f64 >= HIGH_WATER * max as f64;
        }
        let any_full = stream_full.contains(&true);
        if full.swap(any_full, Ordering::Relaxed) != any_full {
            if any_full {
                tracing::warn!(
                    "JetStream backlog past its high-water mark: refusing new checkouts"
                );
            } else {
                tracing::info!("JetStream backlog below its high-water mark again");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

static BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "jetstream_stream_bytes",
        "Bytes held by each JetStream stream (work not yet done)",
        &["stream"]
    )
    .expect("metric registers once")
});

static MESSAGES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "jetstream_stream_messages",
        "Messages held by each JetStream stream",
        &["stream"]
    )
    .expect("metric registers once")
});

static MAX_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "jetstream_stream_max_bytes",
        "Each JetStream stream's bound (max_bytes); new checkouts are refused past 90 % of it",
        &["stream"]
    )
    .expect("metric registers once")
});

static REFUSED: LazyLock<IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "checkout_backlog_refused_total",
        "Checkouts refused with a 503 before acceptance because a stream was nearly full"
    )
    .expect("metric registers once")
});
