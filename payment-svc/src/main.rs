#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Stamped by `make up` and the Dockerfile; only this file rebuilds when it changes.
    common::metrics::set_build_commit(option_env!("GIT_COMMIT"));
    let config = common::config::Config::from_env("payment", payment_svc::DEFAULT_PORT)?;
    common::telemetry::init("payment-svc", &config.log);
    let deps =
        common::bootstrap::Deps::connect(config, "payment-svc", payment_svc::migrations()).await?;
    let listener = common::bootstrap::listen(&deps.config).await?;
    payment_svc::run(deps, listener, common::shutdown::signal())
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
