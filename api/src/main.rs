#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Stamped by `make up` and the Dockerfile; only this file rebuilds when it changes.
    runtime::metrics::set_build_commit(option_env!("GIT_COMMIT"));
    let config = api::config::Config::from_env()?;
    runtime::telemetry::init("api", &config.common.log);
    let deps = runtime::bootstrap::Deps::connect(config.common, "api", api::migrations()).await?;
    let listener = runtime::bootstrap::listen(&deps.config).await?;
    api::run(deps, config.api, listener, runtime::shutdown::signal()).await?;
    Ok(())
}
