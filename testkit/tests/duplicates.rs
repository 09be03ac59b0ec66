//! End-to-end: a step command delivered twice (past JetStream's own
//! deduplication, with distinct message IDs) changes state once.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use common::messages::saga::{Step, StepCommand};
use testkit::System;
use uuid::Uuid;

/// Four messages with distinct message IDs (past JetStream deduplication),
/// each a batch holding the command twice, so that with two replicas copies
/// are applied both in one batch and in concurrent transactions.
async fn send_copies(js: &jetstream::Context, subject: &str, cmd: &StepCommand) {
    for copy in 0..4 {
        let body = serde_json::to_vec(&[cmd, cmd]).expect("json");
        js.send_publish(
            subject.to_owned(),
            PublishMessage::build()
                .payload(body.into())
                .message_id(format!("{}-{}-{copy}", cmd.saga_id, cmd.step.as_str())),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    }
}

/// Waits until the consumer has handled everything it was given.
async fn drained(js: &jetstream::Context, stream: &str, consumer: &str) {
    for _ in 0..200 {
        let mut c: jetstream::consumer::PullConsumer = js
            .get_consumer_from_stream(consumer, stream)
            .await
            .expect("consumer");
        let info = c.info().await.expect("info");
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{consumer} did not drain");
}

#[tokio::test]
async fn reserve_release_charge_refund_apply_once() {
    // Two replicas: copies of one command race in concurrent transactions,
    // not only one after another.
    let sys = System::builder().in_process().replicas(2).start().await;
    let c = &sys.client;
    let item = c.create_item(2).await;
    c.add_stock(&item, 10).await;
    let user = c.create_user(50).await;
    let js = jetstream::new(testkit::nats_admin(&testkit::nats_url()).await);
    let p = &sys.name;
    let saga = Uuid::now_v7();
    let cmd = |step, lines: Vec<(String, i64)>| StepCommand {
        saga_id: saga,
        step,
        lines,
    };

    send_copies(
        &js,
        &format!("{p}.js.stock.steps"),
        &cmd(Step::Reserve, vec![(item.clone(), 3)]),
    )
    .await;
    send_copies(
        &js,
        &format!("{p}.js.payment.steps"),
        &cmd(Step::Charge, vec![(user.clone(), 20)]),
    )
    .await;
    drained(&js, &format!("{p}_STOCK"), "stock").await;
    drained(&js, &format!("{p}_PAYMENT"), "payment").await;
    assert_eq!(c.stock(&item).await, 7, "reserved once");
    assert_eq!(c.credit(&user).await, 30, "charged once");

    send_copies(
        &js,
        &format!("{p}.js.stock.steps"),
        &cmd(Step::Release, vec![]),
    )
    .await;
    send_copies(
        &js,
        &format!("{p}.js.payment.steps"),
        &cmd(Step::Refund, vec![]),
    )
    .await;
    drained(&js, &format!("{p}_STOCK"), "stock").await;
    drained(&js, &format!("{p}_PAYMENT"), "payment").await;
    assert_eq!(c.stock(&item).await, 10, "released once");
    assert_eq!(c.credit(&user).await, 50, "refunded once");

    // A late copy of the debit after its compensation does not apply again.
    send_copies(
        &js,
        &format!("{p}.js.stock.steps"),
        &cmd(Step::Reserve, vec![(item.clone(), 3)]),
    )
    .await;
    drained(&js, &format!("{p}_STOCK"), "stock").await;
    assert_eq!(c.stock(&item).await, 10);

    let stock_db = sys.db(testkit::Binary::Stock).client().await;
    let row = stock_db
        .query_one(
            "SELECT count(*), bool_and(compensated) FROM reservations WHERE saga_id = $1",
            &[&saga],
        )
        .await
        .expect("ledger");
    assert_eq!(row.get::<_, i64>(0), 1, "one ledger row per saga");
    assert!(row.get::<_, bool>(1));
    sys.shutdown().await;
}
