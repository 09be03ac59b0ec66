//! Retry policies shared by the binaries.

use std::time::Duration;

use backon::ExponentialBuilder;

/// Waiting for a dependency at start-up: 100 ms doubling to 2 s, with
/// jitter, about a minute in all, so that a binary started before its
/// database or nats-server waits for it instead of failing.
pub fn startup() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(40)
        .with_jitter()
}
