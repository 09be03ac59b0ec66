#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("stock-svc");
    let deps = common::bootstrap::Deps::connect(
        "stock",
        "stock-svc",
        stock_svc::DEFAULT_PORT,
        stock_svc::migrations(),
    )
    .await?;
    stock_svc::run(deps, common::shutdown::signal())
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
