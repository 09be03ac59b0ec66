//! Prometheus metrics shared by every binary, and the HTTP middleware that
//! records them.
//!
//! Metrics live in the process-wide default registry: each binary is one
//! process, and `/metrics` simply encodes everything registered.

use std::{sync::LazyLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge_vec, Encoder,
    HistogramVec, IntCounterVec, IntGaugeVec, TextEncoder,
};

/// Latency buckets from 1 ms to 10 s, roughly ×2 apart.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "http_requests_total",
        "HTTP requests served, by route template, method and status",
        &["route", "method", "status"]
    )
    .expect("metric registers once")
});

pub static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "http_request_duration_seconds",
        "HTTP request latency, by route template and method",
        &["route", "method"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

pub static RPC_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "rpc_requests_total",
        "NATS service requests handled, by endpoint and outcome code",
        &["endpoint", "code"]
    )
    .expect("metric registers once")
});

pub static RPC_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "rpc_request_duration_seconds",
        "NATS service request handling time, by endpoint",
        &["endpoint"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

pub static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "build_info",
        "Always 1; labels carry the binary, its version and the git commit it was built from",
        &["binary", "version", "commit"]
    )
    .expect("metric registers once")
});

/// The commit `build_info` reports, set by the binary's `main` (see
/// [`set_build_commit`]); in-process test systems leave it "unknown".
static BUILD_COMMIT: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Names the git commit the running binary was built from. Each binary
/// passes `option_env!("GIT_COMMIT")` from its own `main.rs`: stamping it
/// here (a build script in this crate) made every commit rebuild the whole
/// workspace. An empty or missing value reads "unknown".
pub fn set_build_commit(commit: Option<&'static str>) {
    let _ = BUILD_COMMIT.set(commit.filter(|c| !c.is_empty()).unwrap_or("unknown"));
}

/// Marks the binary in `build_info`.
pub fn register_build_info(binary: &str) {
    let commit = BUILD_COMMIT.get().copied().unwrap_or("unknown");
    BUILD_INFO
        .with_label_values(&[binary, env!("CARGO_PKG_VERSION"), commit])
        .set(1);
}

/// Everything registered, in the Prometheus text format.
pub fn encode() -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for the text format.
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// axum middleware: counts requests and observes latency per route template
/// (`/stock/find/{item_id}`, not the concrete path; `unmatched` for any path
/// no route takes) and method (made-up methods are `other`), so the label
/// sets are bounded whatever clients send. The status is always one of ours.
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let response = next.run(req).await;
    HTTP_DURATION
        .with_label_values(&[&route, method])
        .observe(start.elapsed().as_secs_f64());
    HTTP_REQUESTS
        .with_label_values(&[&route, method, response.status().as_str()])
        .inc();
    response
}

/// The method as a label: the standard methods by name, anything a client
/// made up as `other`, so no request can add a series.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    KNOWN
        .iter()
        .find(|m| *m == method)
        .map_or("other", |m| m.as_str())
}

pub static PUBLISH_DURATION: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    prometheus::register_histogram!(
        "jetstream_publish_batch_duration_seconds",
        "Time from sending a batch of JetStream publishes to the last ack",
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

pub static CONSUMED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "jetstream_messages_total",
        "JetStream messages handled, by consumer and result (ack, nak, term)",
        &["consumer", "result"]
    )
    .expect("metric registers once")
});

pub static REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "jetstream_items_rejected_total",
        "Items a consumer ended without applying them (their data failed, they did not decode, \
         or their message ran out of deliveries), by consumer",
        &["consumer"]
    )
    .expect("metric registers once")
});

pub static REDELIVERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "jetstream_redelivered_total",
        "JetStream messages received more than once, by consumer",
        &["consumer"]
    )
    .expect("metric registers once")
});

pub static BATCH_SIZE: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "jetstream_batch_size",
        "Messages handled per batch, by consumer",
        &["consumer"],
        vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]
    )
    .expect("metric registers once")
});

pub static PAIRING_WAITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "jetstream_pairing_waits_total",
        "Batches that waited for the other half of a pair, by consumer and by whether it came (joined) or not (alone)",
        &["consumer", "result"]
    )
    .expect("metric registers once")
});

pub static BATCH_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "jetstream_batch_duration_seconds",
        "Time to handle one batch (transaction, publishes, acks), by consumer",
        &["consumer"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

pub static DB_POOL: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "db_pool_connections",
        "PostgreSQL pool: max, size (open), available (idle) and waiting (callers queued)",
        &["state"]
    )
    .expect("metric registers once")
});

pub static DB_POOL_WAIT: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    prometheus::register_histogram!(
        "db_pool_wait_seconds",
        "Time spent waiting for a PostgreSQL connection from the pool",
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

pub static DB_TX_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "db_transaction_duration_seconds",
        "Duration of the hot-path PostgreSQL transactions, by operation",
        &["operation"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

pub static CONSUMER_PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "jetstream_consumer_pending",
        "JetStream consumer backlog: messages not yet delivered (num_pending), by consumer",
        &["consumer"]
    )
    .expect("metric registers once")
});

pub static CONSUMER_ACK_PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "jetstream_consumer_ack_pending",
        "JetStream messages delivered but not yet acknowledged (num_ack_pending), by consumer",
        &["consumer"]
    )
    .expect("metric registers once")
});

/// Samples the pool's state every few seconds, forever.
pub async fn report_pool(pool: deadpool_postgres::Pool) {
    loop {
        let s = pool.status();
        for (state, v) in [
            ("max", s.max_size),
            ("size", s.size),
            ("available", s.available),
            ("waiting", s.waiting),
        ] {
            DB_POOL.with_label_values(&[state]).set(v as i64);
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for made_up in ["FOO", "BREW", "get"] {
            let m = Method::from_bytes(made_up.as_bytes()).expect("a token");
            assert_eq!(method_label(&m), "other", "{made_up}");
        }
    }
}
