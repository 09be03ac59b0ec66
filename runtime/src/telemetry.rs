//! Structured logging with `tracing`.
//!
//! `RUST_LOG` filters (see [`LogConfig`]; default `info`, with the NATS and PostgreSQL clients
//! at `warn`); `LOG_FORMAT=json` switches to JSON lines for log shippers,
//! `text` (the default) gives human-readable output, coloured only on a terminal.
//!
//! At the default level a binary logs start-up, warnings, errors and a
//! summary line a minute per consumer, never a line per request or message
//! (those are `debug`), so that logs stay small under any load.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogConfig;

const DEFAULT_FILTER: &str = "info,tokio_postgres=warn,async_nats=warn";

/// Installs the global subscriber (once per process: a test that runs the
/// services in-process keeps the first).
pub fn init(binary: &'static str, config: &LogConfig) {
    // `LogConfig::load` validated the filter.
    let filter = EnvFilter::try_new(config.filter.as_deref().unwrap_or(DEFAULT_FILTER))
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let json = config.json;
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(std::io::stdout().is_terminal());
    // try_init: tests may initialise several times in one process.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    tracing::info!(binary, version = env!("CARGO_PKG_VERSION"), "starting");
}
