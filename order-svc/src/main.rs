#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("order-svc");
    let deps = common::bootstrap::Deps::connect(
        "order",
        "order-svc",
        order_svc::DEFAULT_PORT,
        order_svc::migrations(),
    )
    .await?;
    order_svc::run(deps, common::shutdown::signal())
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
