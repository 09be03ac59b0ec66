//! Test harness for the checkout platform.
//!
//! Every test gets its own databases and its own NATS subject/stream prefix,
//! so tests run in parallel against one PostgreSQL and one nats-server (the
//! ones `scripts/infra.sh` starts) without seeing each other.
//! [`System`] starts the real binaries on free ports (or, for tests that
//! never kill one, runs the services in-process) and drives them over real
//! HTTP.

pub mod cluster;
pub mod db;
pub mod http;
mod in_process;
pub mod infra;
pub mod invariants;
pub mod probe;
pub mod proxy;
pub mod receiver;
pub mod secrets;
pub mod shop;
pub mod system;
pub mod workload;

pub use cluster::NatsCluster;
pub use db::TestDb;
pub use http::{Client, OneUnitOrder};
pub use infra::{LocalInfra, Server};
pub use probe::Probe;
pub use secrets::{nats_admin, nats_auth};
pub use system::{Binary, Dep, System, SystemBuilder};

/// A short unique name for this test's resources, e.g. `t3f9a1c2d`.
pub fn unique_name() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The repository's root (scripts, configs, the build's binaries).
pub(crate) fn workspace_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::PathBuf::from)
        .unwrap_or_default()
}

/// Deletes every JetStream stream of the subject prefix `prefix` (named
/// `{prefix}_…`, see `nats/jetstream.json`): a test's clean-up.
pub async fn delete_streams(js: &async_nats::jetstream::Context, prefix: &str) {
    use futures::StreamExt;
    let prefix = format!("{prefix}_");
    let names: Vec<String> = js
        .stream_names()
        .filter_map(|n| async move { n.ok() })
        .collect()
        .await;
    for n in names.into_iter().filter(|n| n.starts_with(&prefix)) {
        let _ = js.delete_stream(&n).await;
    }
}

/// `NATS_URL`, defaulting to the project-local nats-server.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| runtime::config::local_nats_url())
}

/// A loopback port that was free a moment ago, for servers that cannot be
/// handed a bound socket nor report a port 0 they took (nats-server and
/// PostgreSQL of [`LocalInfra`] and [`NatsCluster`]). Racy: another process
/// may take the port between this call and the server's bind; the binaries
/// of [`System`] never need it (they bind port 0 and report the port).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on loopback")
}
