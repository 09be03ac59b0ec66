#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Stamped by `make up` and the Dockerfile; only this file rebuilds when it changes.
    runtime::metrics::set_build_commit(option_env!("GIT_COMMIT"));
    let config = runtime::config::Config::from_env("stock", stock_svc::DEFAULT_PORT)?;
    runtime::telemetry::init("stock-svc", &config.log);
    let deps =
        runtime::bootstrap::Deps::connect(config, "stock-svc", stock_svc::migrations()).await?;
    let listener = runtime::bootstrap::listen(&deps.config).await?;
    stock_svc::run(deps, listener, runtime::shutdown::signal())
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
