//! Callback URLs aimed inside the deployment (SSRF), names that never
//! resolve, and an api started without a webhook secret.
//!
//! These systems run with the deployment's default (the SSRF guard on):
//! [`SystemBuilder::unset`] drops the test opt-out `WEBHOOK_ALLOW_PRIVATE`.

use std::time::{Duration, Instant};

use testkit::{Binary, Client, Probe, System, SystemBuilder};

fn guarded() -> SystemBuilder {
    System::builder()
        .in_process()
        .unset("WEBHOOK_ALLOW_PRIVATE")
}

async fn checkout_with(c: &Client, order: &str, callback: &str) -> testkit::http::Answer {
    c.post(&format!(
        "/orders/checkout/{order}?callback_url={}",
        testkit::http::urlencode(callback)
    ))
    .await
}

/// Request records of `order` in the api database: none means nothing started.
async fn records_of(sys: &System, order: &str) -> i64 {
    let db = sys.db(Binary::Api).client().await;
    db.query_one(
        "SELECT count(*) FROM requests WHERE order_id = $1",
        &[&order],
    )
    .await
    .expect("count")
    .get(0)
}

#[tokio::test]
async fn callbacks_into_the_deployment_are_refused_and_start_nothing() {
    let sys = guarded().start().await;
    let c = &sys.client;
    let probe = Probe::start(c, 20).await;

    let item = c.create_item(1).await;
    c.add_stock(&item, 5).await;
    let api = sys.api_url(0);
    let stock_svc = &sys.urls(Binary::Stock)[0];
    let order = c.order_of_one(10, 3, 5).await;
    for target in [
        "http://127.0.0.1:9/hook".to_owned(),
        "http://[::1]:9/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::ffff:169.254.169.254]/".to_owned(),
        "http://localhost:9/hook".to_owned(),
        "http://2130706433/".to_owned(),
        // The reproduced attack: the api's own write endpoint.
        format!("{api}/stock/add/{item}/1000"),
        format!("{stock_svc}/metrics"),
    ] {
        let r = checkout_with(c, &order, &target).await;
        assert_eq!(r.status, 400, "{target}: {r:?}");
        assert!(
            r.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("internal")),
            "{target}: says why: {r:?}"
        );
    }
    assert_eq!(c.order(&order).await["paid"], false, "nothing started");
    assert_eq!(records_of(&sys, &order).await, 0, "no request record");
    assert_eq!(c.stock(&item).await, 5, "the api's own endpoint untouched");

    probe.finish().await;
    sys.shutdown().await;
}

#[tokio::test]
async fn a_callback_host_that_does_not_resolve_is_refused_within_the_bound() {
    let sys = guarded()
        .env("WEBHOOK_DNS_TIMEOUT_MS", "1000")
        .start()
        .await;
    let c = &sys.client;
    let probe = Probe::start(c, 20).await;
    let order = c.order_of_one(10, 3, 5).await;
    for host in ["no-such-host.invalid", "a.b.c.never-registered-tld-x"] {
        let started = Instant::now();
        let r = checkout_with(c, &order, &format!("https://{host}/hook")).await;
        let took = started.elapsed();
        assert_eq!(r.status, 400, "{host}: {r:?}");
        assert!(
            r.body["detail"].as_str().is_some_and(|d| d.contains(host)),
            "{r:?}"
        );
        assert!(
            took < Duration::from_millis(1000) + Duration::from_millis(750),
            "{host}: answered after {took:?}, beyond the 1 s DNS bound"
        );
    }
    assert_eq!(records_of(&sys, &order).await, 0, "nothing started");
    probe.finish().await;
    sys.shutdown().await;
}

/// The binary, not the library: the exit status and the message an operator
/// sees.
#[tokio::test]
async fn the_api_refuses_to_start_without_a_webhook_secret() {
    let exe = testkit::system::bin_dir().join("api");
    assert!(exe.exists(), "{} not built", exe.display());
    let run = |dev: Option<&str>| {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.env_remove("WEBHOOK_SECRET")
            .env_remove("WEBHOOK_SECRET_DEV")
            .env("LISTEN_ADDR", "127.0.0.1:0")
            // Nothing listens there: the secret is checked before any connection.
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env("NATS_URL", "nats://127.0.0.1:1")
            .env("RUST_LOG", "info")
            .kill_on_drop(true);
        if let Some(v) = dev {
            cmd.env("WEBHOOK_SECRET_DEV", v);
        }
        cmd
    };
    let out = tokio::time::timeout(Duration::from_secs(20), run(None).output())
        .await
        .expect("exits at once")
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without a secret: {stderr}");
    assert!(
        stderr.contains("WEBHOOK_SECRET is required") && stderr.contains("WEBHOOK_SECRET_DEV=true"),
        "says what is missing and how a development run goes without: {stderr}"
    );

    // With the development flag it gets past the configuration (and then
    // keeps retrying the unreachable database, so it is stopped here).
    let mut child = run(Some("true"))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        child.try_wait().expect("status").is_none(),
        "a development run starts"
    );
    child.kill().await.expect("killed");
}
