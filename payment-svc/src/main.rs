#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Stamped by `make up` and the Dockerfile; only this file rebuilds when it changes.
    runtime::metrics::set_build_commit(option_env!("GIT_COMMIT"));
    let config = runtime::config::Config::from_env("payment", payment_svc::DEFAULT_PORT)?;
    runtime::telemetry::init("payment-svc", &config.log);
    let deps =
        runtime::bootstrap::Deps::connect(config, "payment-svc", payment_svc::migrations()).await?;
    let listener = runtime::bootstrap::listen(&deps.config).await?;
    payment_svc::run(deps, listener, runtime::shutdown::signal())
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
