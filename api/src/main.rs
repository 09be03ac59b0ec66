#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("api");
    let deps = common::bootstrap::Deps::connect("api", "api", api::DEFAULT_PORT, api::migrations())
        .await?;
    api::run(deps, common::shutdown::signal()).await?;
    Ok(())
}
