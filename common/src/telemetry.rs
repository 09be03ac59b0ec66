//! Structured logging with `tracing`.
//!
//! `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` switches to JSON
//! lines for log shippers, anything else gives human-readable output.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(binary: &'static str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn,async_nats=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    // try_init: tests may initialise several times in one process.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    tracing::info!(binary, version = env!("CARGO_PKG_VERSION"), "starting");
}
