#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Stamped by `make up` and the Dockerfile; only this file rebuilds when it changes.
    common::metrics::set_build_commit(option_env!("GIT_COMMIT"));
    let config = common::config::Config::from_env("stock", stock_svc::DEFAULT_PORT)?;
    common::telemetry::init("stock-svc", &config.log);
    let deps =
        common::bootstrap::Deps::connect(config, "stock-svc", stock_svc::migrations()).await?;
    let listener = common::bootstrap::listen(&deps.config).await?;
    stock_svc::run(deps, listener, common::shutdown::signal())
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
