//! End-to-end: SIGKILL a binary in the middle of a concurrent workload,
//! start it again; every request ID reaches a final status and stock and
//! credit are conserved.

use std::time::Duration;

use futures::{stream, StreamExt};
use testkit::{
    workload::{self, Scarce},
    Binary, Client, System,
};

const BUYERS: usize = 300;
const STOCK: i64 = 100;

/// Sends async checkouts for every order, `concurrency` at a time; returns
/// the request IDs handed out (a request refused at the door, because the
/// api was down, got none and is retried).
async fn fire(c: Client, orders: Vec<String>, concurrency: usize) -> Vec<(String, String)> {
    stream::iter(orders)
        .map(|order| {
            let c = c.clone();
            async move {
                for _ in 0..200 {
                    let sent = c
                        .raw()
                        .post(format!("{}/orders/checkout/{order}", c.base()))
                        .header("Prefer", "respond-async")
                        .send()
                        .await;
                    if let Ok(r) = sent {
                        if r.status() == 202 {
                            let body: serde_json::Value = r.json().await.expect("json");
                            let id = body["request_id"].as_str().expect("id").to_owned();
                            return (order, id);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("checkout of {order} never accepted");
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn crash_during_workload(victim: Binary) {
    let mut sys = System::builder()
        .env("REPUBLISH_AFTER_MS", "3000")
        .env("SWEEP_INTERVAL_MS", "500")
        .start()
        .await;
    let w: Scarce = workload::scarce(&sys.client, BUYERS, STOCK, 32).await;
    let orders: Vec<String> = w.orders.iter().map(|(o, _)| o.clone()).collect();
    let firing = tokio::spawn(fire(sys.client.clone(), orders, 16));
    tokio::time::sleep(Duration::from_millis(400)).await;
    sys.kill(victim).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    sys.restart(victim).await;
    let ids = firing.await.expect("firing");
    assert_eq!(ids.len(), BUYERS);

    let answers = stream::iter(ids)
        .map(|(order, id)| {
            let c = sys.client.clone();
            async move { (order, workload::final_record(&c, &id).await) }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    // A request the victim accepted whose answer the client never got (it
    // retried with a new one) is still completing: nothing may stay pending,
    // and credit and stock are read once it is done.
    testkit::invariants::settle(&sys, Duration::from_secs(60)).await;
    let sold = workload::verify_scarce(&sys.client, &w, &answers, STOCK).await;
    assert_eq!(sold, STOCK as usize);
    sys.shutdown().await;
}

/// One test per binary killed, so that each runs (and fails) on its own.
macro_rules! killed_mid_workload {
    ($($name:ident: $binary:expr,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            crash_during_workload($binary).await;
        }
    )*};
}

killed_mid_workload! {
    stock_svc_killed_mid_workload: Binary::Stock,
    order_svc_killed_mid_workload: Binary::Order,
    payment_svc_killed_mid_workload: Binary::Payment,
    api_killed_mid_workload: Binary::Api,
}

/// `api` died after storing a record and before publishing it: the sweeper
/// publishes it and the request completes.
#[tokio::test]
async fn a_stored_but_unpublished_request_is_swept() {
    let sys = System::builder()
        .env("REPUBLISH_AFTER_MS", "500")
        .env("SWEEP_INTERVAL_MS", "200")
        .start()
        .await;
    let c = &sys.client;
    let testkit::OneUnitOrder { user, item, order } = c.one_unit_order(5, 5, 1).await;

    // Exactly what api stores before publishing, and nothing else.
    let id = uuid::Uuid::now_v7();
    let db = sys.db(Binary::Api).client().await;
    db.execute(
        "INSERT INTO requests (id, order_id, next_publish_at) VALUES ($1, $2, now())",
        &[&id, &order],
    )
    .await
    .expect("insert");
    let done = workload::final_record(c, &id.to_string()).await;
    assert_eq!(done.body["status"], "succeeded", "{done:?}");
    assert_eq!(c.credit(&user).await, 0);
    assert_eq!(c.stock(&item).await, 0);
    sys.shutdown().await;
}

/// The sweeper's arithmetic is bounded: a record re-published a huge number
/// of times (which once overflowed the backoff interval and failed every
/// sweep, this row always being the oldest due one) does not stop the others
/// from being swept, and what has failed too often is counted as parked.
#[tokio::test]
async fn a_huge_publish_count_does_not_stop_the_sweep() {
    let sys = System::builder()
        .in_process()
        .env("REPUBLISH_AFTER_MS", "500")
        .env("SWEEP_INTERVAL_MS", "200")
        .start()
        .await;
    let c = &sys.client;
    let testkit::OneUnitOrder { user, order, .. } = c.one_unit_order(5, 5, 1).await;

    let (huge, normal, parked) = (
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
    );
    let db = sys.db(Binary::Api).client().await;
    db.execute(
        "INSERT INTO requests (id, order_id, next_publish_at, publish_attempts) VALUES
             ($1, 'no-such-order', now() - interval '1 hour', 2147483647),
             ($2, $3, now(), 1),
             ($4, 'no-such-order', now() + interval '1 day', 40)",
        &[&huge, &normal, &order, &parked],
    )
    .await
    .expect("insert");
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        workload::final_record(c, &normal.to_string()),
    )
    .await
    .expect("the ordinary record is swept");
    assert_eq!(done.body["status"], "succeeded", "{done:?}");
    assert_eq!(c.credit(&user).await, 0);
    let huge = tokio::time::timeout(
        Duration::from_secs(60),
        workload::final_record(c, &huge.to_string()),
    )
    .await
    .expect("the huge one is swept too");
    assert_eq!(huge.body["reason"], "order_not_found", "{huge:?}");

    // The one still pending after 40 publishes shows in the parked gauge.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = c.text(&format!("{}/metrics", c.base())).await;
        if metrics.contains("checkout_requests_parked 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        metrics.contains("checkout_requests_parked 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("checkout_requests"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    sys.shutdown().await;
}
