#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Stamped by `make up` and the Dockerfile; only this file rebuilds when it changes.
    common::metrics::set_build_commit(option_env!("GIT_COMMIT"));
    let config = api::config::Config::from_env()?;
    common::telemetry::init("api", &config.common.log);
    let deps = common::bootstrap::Deps::connect(config.common, "api", api::migrations()).await?;
    let listener = common::bootstrap::listen(&deps.config).await?;
    api::run(deps, config.api, listener, common::shutdown::signal()).await?;
    Ok(())
}
