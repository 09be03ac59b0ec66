//! End-to-end: a step command delivered twice (past JetStream's own
//! deduplication, with distinct message IDs) changes state once; a step
//! result delivered again re-sends what its saga caused, changing nothing.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use contracts::messages::saga::{CheckoutOutcome, Step, StepCommand, StepOutcome, StepResult};
use futures::StreamExt;
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

/// order-svc may die between committing a saga's move and publishing what
/// it causes; the redelivered step result (the saga already has it) then
/// re-sends it. Here the copy comes after the checkout ended: its outcome
/// goes to `api` again, which keeps the final record, and nothing moves.
#[tokio::test]
async fn a_repeated_step_result_re_sends_the_outcome_and_changes_nothing() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let nats = testkit::nats_admin(&testkit::nats_url()).await;
    let js = jetstream::new(nats.clone());
    let p = &sys.name;

    // One checkout that succeeds, one refused for credit (stock released).
    let item = c.create_item(4).await;
    c.add_stock(&item, 5).await;
    let rich = c.create_user(10).await;
    let poor = c.create_user(1).await;
    let mut cases = Vec::new();
    for (user, step, outcome, status) in [
        (&rich, Step::Reserve, StepOutcome::Done, "succeeded"),
        (&poor, Step::Charge, StepOutcome::Insufficient, "failed"),
    ] {
        let order = c.create_order(user).await;
        c.add_item(&order, &item, 1).await;
        let id = c.checkout_async(&order).await.str("request_id");
        let done = c.get(&format!("/requests/{id}?wait=10")).await;
        assert_eq!(done.body["status"], status, "{done:?}");
        let saga: Uuid = id.parse().expect("request ID");
        cases.push((saga, step, outcome, status, done.body));
    }
    assert_eq!(c.stock(&item).await, 4);
    assert_eq!((c.credit(&rich).await, c.credit(&poor).await), (6, 1));

    // Listen only now: the first outcomes are behind us.
    let mut outcomes = nats
        .subscribe(format!("{p}.js.api.outcome"))
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");
    for (saga, step, outcome, status, first) in &cases {
        let result = StepResult {
            saga_id: *saga,
            step: *step,
            outcome: *outcome,
        };
        js.send_publish(
            format!("{p}.js.order.step"),
            PublishMessage::build()
                .payload(serde_json::to_vec(&[&result]).expect("json").into())
                .message_id(format!("{saga}-again")),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
        let again = outcome_of(&mut outcomes, *saga)
            .await
            .expect("the outcome is sent again");
        assert_eq!(again.succeeded, *status == "succeeded");
        drained(&js, &format!("{p}_ORDER"), "order-steps").await;
        let now = c.get(&format!("/requests/{saga}")).await;
        assert_eq!(now.body["status"], *status);
        assert_eq!(now.body["completed_at"], first["completed_at"], "{now:?}");
    }
    assert_eq!(c.stock(&item).await, 4, "reserved once, released once");
    assert_eq!((c.credit(&rich).await, c.credit(&poor).await), (6, 1));
    sys.shutdown().await;
}

/// The outcome of `request` among the next outcome batches on `sub`.
async fn outcome_of(sub: &mut async_nats::Subscriber, request: Uuid) -> Option<CheckoutOutcome> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        let batch: Vec<CheckoutOutcome> = serde_json::from_slice(&msg.payload).expect("outcomes");
        if let Some(o) = batch.into_iter().find(|o| o.request_id == request) {
            return Some(o);
        }
    }
    None
}
