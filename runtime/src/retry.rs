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

/// Waiting at start-up for up to `deadline` in all: 100 ms doubling to 2 s,
/// with jitter, as many attempts as fit.
pub fn until(deadline: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .without_max_times()
        .with_total_delay(Some(deadline))
        .with_jitter()
}
