#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("payment-svc");
    let deps = common::bootstrap::Deps::connect(
        "payment",
        "payment-svc",
        payment_svc::DEFAULT_PORT,
        payment_svc::migrations(),
    )
    .await?;
    payment_svc::run(deps, common::shutdown::signal())
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
