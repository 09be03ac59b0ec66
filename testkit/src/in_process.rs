//! The four services as tasks of the test process, for tests that never
//! kill or signal one: no process starts, so such a test is quicker. They
//! still talk to each other only over real NATS and real PostgreSQL (each its
//! own database), and serve real HTTP on a listener bound here on port 0.
//!
//! They run on a runtime of their own, as they would in their process, so a
//! test's single-threaded runtime does not schedule them. Metrics are
//! process-wide: in-process services share one registry (each registers its
//! metrics once), so a test that reads one binary's `/metrics` apart from the
//! others' keeps processes.

use runtime::{
    bootstrap::Deps,
    config::{Config, ConfigError, LogConfig, Vars},
};
use tokio::task::JoinHandle;

use crate::Binary;

/// Runtime threads shared by the four services.
const WORKERS: usize = 2;

/// The services' runtime.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    // Their warnings and errors show in the test's output (more with
    // TEST_RUST_LOG); the first call in a process installs it.
    let filter = std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into());
    runtime::telemetry::init(
        "testkit",
        &LogConfig {
            filter: Some(filter),
            json: false,
        },
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("in-process-services")
        .enable_all()
        .build()
        .expect("a runtime for the in-process services")
}

/// Binds port 0 on loopback for one service.
pub(crate) fn bind() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port on loopback");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let addr = listener.local_addr().expect("its address").to_string();
    (listener, addr)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bootstrap(#[from] runtime::bootstrap::BootstrapError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Api(#[from] api::ApiStartError),
    #[error(transparent)]
    Run(#[from] runtime::service::RunError),
}

/// Starts `binary` on `runtime` with the settings of `vars`, serving on
/// `listener`, until the runtime is shut down.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Runtime,
    binary: Binary,
    vars: Vars,
    listener: std::net::TcpListener,
) -> JoinHandle<Result<(), StartError>> {
    runtime.spawn(async move {
        let result = run(binary, &vars, listener).await;
        if let Err(e) = &result {
            eprintln!("in-process {} stopped: {e}", binary.executable());
        }
        result
    })
}

/// What each binary's `main` does, after its configuration is loaded.
async fn run(
    binary: Binary,
    vars: &Vars,
    listener: std::net::TcpListener,
) -> Result<(), StartError> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    // Stopped by shutting the runtime down, as a process by SIGKILL.
    let shutdown = std::future::pending();
    let name = binary.executable();
    match binary {
        Binary::Api => {
            let config = api::config::Config::load(vars)?;
            let deps = Deps::connect(config.common, name, api::migrations()).await?;
            api::run(deps, config.api, listener, shutdown).await?;
        }
        Binary::Order => {
            let config = Config::load(vars, "order", order_svc::DEFAULT_PORT)?;
            let deps = Deps::connect(config, name, order_svc::migrations()).await?;
            order_svc::run(deps, listener, shutdown).await?;
        }
        Binary::Stock => {
            let config = Config::load(vars, "stock", stock_svc::DEFAULT_PORT)?;
            let deps = Deps::connect(config, name, stock_svc::migrations()).await?;
            stock_svc::run(deps, listener, shutdown).await?;
        }
        Binary::Payment => {
            let config = Config::load(vars, "payment", payment_svc::DEFAULT_PORT)?;
            let deps = Deps::connect(config, name, payment_svc::migrations()).await?;
            payment_svc::run(deps, listener, shutdown).await?;
        }
    }
    Ok(())
}
