//! End-to-end: the standard consistency workload (1000 concurrent
//! checkouts of one item with 100 units), sync and async, one and two
//! replicas of every binary.

use testkit::{
    workload::{self, Mode},
    System,
};

const BUYERS: usize = 1000;
const STOCK: i64 = 100;

async fn run(replicas: usize, mode: Mode) {
    let sys = System::builder()
        .in_process()
        .replicas(replicas)
        .start()
        .await;
    let w = workload::scarce(&sys.client, BUYERS, STOCK, 32).await;
    let clients: Vec<testkit::Client> = (0..replicas)
        .map(|r| testkit::Client::new(sys.api_url(r)))
        .collect();
    let orders: Vec<String> = w.orders.iter().map(|(o, _)| o.clone()).collect();
    let answers = workload::checkout_all(&clients, &orders, mode).await;
    assert_eq!(answers.len(), BUYERS);
    let sold = workload::verify_scarce(&sys.client, &w, &answers, STOCK).await;
    assert_eq!(sold, STOCK as usize);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_sync() {
    run(1, Mode::Sync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_async_with_polling() {
    run(1, Mode::Async).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_two_replicas_of_everything() {
    run(2, Mode::Sync).await;
}
