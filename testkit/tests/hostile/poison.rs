//! Poison items: one checkout whose data no transaction can apply, sent in
//! the same batches as many ordinary ones. The consumers isolate it (halving
//! the batch until it stands alone), end it `failed` with `invalid_order`,
//! and apply everything else; before, it failed its whole batch for ever.
//!
//! The poison is written straight into the service's database, so these
//! cases hold whatever the HTTP edge refuses.

use std::time::Instant;

use contracts::{
    ids::ItemId,
    limits::Quantity,
    messages::saga::{StepAction, StepCommand},
};
use futures::future::join_all;
use testkit::{Binary, Client, OneUnitOrder as Buyer, System};

/// Ordinary checkouts sent together with the poison one.
const BYSTANDERS: usize = 50;

/// An ordinary buyer: one unit of a fresh item (price 1, stock 10) for a
/// fresh user with credit 10.
async fn buyer(c: &Client) -> Buyer {
    c.one_unit_order(10, 1, 10).await
}

/// `n` buyers, made ten at a time.
async fn buyers(c: &Client, n: usize) -> Vec<Buyer> {
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let batch = (n - all.len()).min(10);
        all.extend(join_all((0..batch).map(|_| buyer(c))).await);
    }
    all
}

/// Checks out the poison order (waiting for the answer) at the same time as
/// every bystander; asserts the poison one ends `failed` with
/// `invalid_order` (a 422 to the waiting client, a final record) and every
/// bystander is paid, with stock and credit moved exactly once.
async fn poison_among_bystanders(sys: &System, poison: &str, bystanders: &[Buyer]) {
    let c = &sys.client;
    let probe = testkit::Probe::start(c, 10).await;
    let sent = Instant::now();
    let poisoned = async {
        let answer = c.post(&format!("/orders/checkout/{poison}")).await;
        (answer, sent.elapsed())
    };
    let paths: Vec<String> = bystanders
        .iter()
        .map(|b| format!("/orders/checkout/{}", b.order))
        .collect();
    let ordinary = join_all(paths.iter().map(|p| c.post(p)));
    let ((answer, took), answers) = tokio::join!(poisoned, ordinary);

    assert_eq!(answer.status, 422, "the poison checkout: {answer:?}");
    assert_eq!(answer.body["reason"], "invalid_order", "{answer:?}");
    assert!(
        took < testkit::Probe::BOUND,
        "the poison checkout was answered after {took:?}"
    );
    let record = c
        .get(&format!("/requests/{}", answer.str("request_id")))
        .await;
    assert_eq!(record.body["status"], "failed", "{record:?}");
    assert_eq!(record.body["reason"], "invalid_order", "{record:?}");

    for (b, a) in bystanders.iter().zip(&answers) {
        assert_eq!(a.status, 200, "bystander {}: {a:?}", b.order);
    }
    probe.finish().await;
    for b in bystanders {
        assert_eq!(c.order(&b.order).await["paid"], true, "{}", b.order);
        assert_eq!(c.stock(&b.item).await, 9, "item {}", b.item);
        assert_eq!(c.credit(&b.user).await, 9, "user {}", b.user);
    }
    assert_eq!(c.order(poison).await["paid"], false);

    // Still final, and the order is free: another try fails the same way,
    // at once.
    let again = c.post(&format!("/orders/checkout/{poison}")).await;
    assert_eq!(again.status, 422, "{again:?}");
}

/// The finding of issue 17: lines of a price-0 item whose quantities sum past
/// 2^63 - 1 (so `total_cost` stays 0 and passes every check on it). The
/// sum used to fail order-svc's whole `order-checkout` batch with `22003`,
/// redelivered for ever, and every later checkout stayed pending.
#[tokio::test]
async fn a_checkout_whose_lines_overflow_fails_alone() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let bystanders = buyers(c, BYSTANDERS).await;

    let user = c.create_user(10).await;
    let item = c.create_item(0).await;
    c.add_stock(&item, 10).await;
    let poison = c.create_order(&user).await;
    let db = sys.db(Binary::Order).client().await;
    // Rows from before the line bounds (`sql/order/V5__line_bounds.sql`),
    // which hold every new line and are NOT VALID for older ones.
    db.batch_execute("ALTER TABLE order_lines DROP CONSTRAINT order_lines_quantity_bound")
        .await
        .expect("drop the line bound");
    for _ in 0..2 {
        db.execute(
            "INSERT INTO order_lines (order_id, item_id, quantity, unit_price)
             VALUES ($1, $2, 9223372036854775807, 0)",
            &[&poison, &item],
        )
        .await
        .expect("insert an overflowing line");
    }
    db.batch_execute(
        "ALTER TABLE order_lines ADD CONSTRAINT order_lines_quantity_bound
         CHECK (quantity <= 1000000000) NOT VALID",
    )
    .await
    .expect("put the line bound back");

    poison_among_bystanders(&sys, &poison, &bystanders).await;
    assert_eq!(c.stock(&item).await, 10);
    assert_eq!(c.credit(&user).await, 10);
    let kept: i64 = db
        .query_one(
            "SELECT count(*) FROM dead_letters WHERE consumer = 'order-checkout'
             AND payload->>'order_id' = $1 AND reason LIKE '%64-bit range%'",
            &[&poison],
        )
        .await
        .expect("count dead letters")
        .get(0);
    assert!(kept >= 1, "the rejected checkout is kept for an operator");
    sys.shutdown().await;
}

/// A reserve that stock-svc's database refuses (a constraint its stock row
/// breaks once debited) fails its own saga only: the debit is answered
/// `rejected`, the charge is refunded, the checkout fails as `invalid_order`.
#[tokio::test]
async fn a_step_that_breaks_a_constraint_fails_only_its_own_saga() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let bystanders = buyers(c, BYSTANDERS).await;

    let user = c.create_user(100).await;
    let item = c.create_item(1).await;
    c.add_stock(&item, 1005).await;
    let poison = c.create_order(&user).await;
    c.add_item(&poison, &item, 10).await;
    // Stands for any row the data makes unwritable: this item may not drop
    // below 1000, which the reserve of 10 would do.
    let stock_db = sys.db(Binary::Stock).client().await;
    stock_db
        .execute(
            &format!(
                "ALTER TABLE items ADD CONSTRAINT poison_floor \
                 CHECK (id <> '{item}' OR stock >= 1000)"
            ),
            &[],
        )
        .await
        .expect("add the constraint");

    poison_among_bystanders(&sys, &poison, &bystanders).await;
    assert_eq!(c.stock(&item).await, 1005, "nothing reserved");
    // The charge may have gone through before the reserve was refused: it
    // was refunded before the client heard `failed`.
    assert_eq!(c.credit(&user).await, 100, "nothing charged");
    let ledger: String = stock_db
        .query_one(
            "SELECT r.outcome FROM reservations r WHERE r.lines = '[]'
             AND r.outcome = 'rejected' LIMIT 1",
            &[],
        )
        .await
        .expect("the rejected reserve is in the ledger")
        .get(0);
    assert_eq!(ledger, "rejected");

    // The rejection is the debit's outcome for good: the same reserve again,
    // even once the row could take it, replays it and takes nothing.
    let saga: uuid::Uuid = sys
        .db(Binary::Order)
        .client()
        .await
        .query_one(
            "SELECT id FROM sagas WHERE order_id = $1 AND reason = 'invalid_order' LIMIT 1",
            &[&poison],
        )
        .await
        .expect("the poison saga")
        .get(0);
    stock_db
        .execute("ALTER TABLE items DROP CONSTRAINT poison_floor", &[])
        .await
        .expect("drop the constraint");
    let js = async_nats::jetstream::new(testkit::nats_admin(&testkit::nats_url()).await);
    let again = [StepCommand {
        saga_id: saga,
        action: StepAction::Reserve {
            items: vec![(ItemId::from(item.as_str()), Quantity::new("q", 10).unwrap())],
        },
    }];
    js.publish(
        format!("{}.js.stock.steps", sys.name),
        serde_json::to_vec(&again).expect("encode").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    // stock-svc handles its messages in order: once a later checkout is
    // through, the repeat was handled.
    let later = buyer(c).await;
    let answer = c.post(&format!("/orders/checkout/{}", later.order)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(c.stock(&item).await, 1005, "the repeat took nothing");
    sys.shutdown().await;
}

/// A checkout message that does not decode (written by anyone who can
/// publish on the subject) never reaches a transaction: its item is kept in
/// `dead_letters`, and since it still names its request, that request fails
/// (`invalid_order`). Its neighbour in the same message is applied; a
/// payload that is not even JSON is kept too.
#[tokio::test]
async fn an_undecodable_checkout_is_dead_lettered_and_its_request_failed() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let neighbour = buyer(c).await;
    let probe = testkit::Probe::start(c, 10).await;

    // A pending record the malformed request belongs to, as if the api had
    // stored it; not due for re-publishing during the test.
    let (bad, good) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    sys.db(Binary::Api)
        .client()
        .await
        .execute(
            "INSERT INTO requests (id, order_id, next_publish_at)
             VALUES ($1, '7', now() + interval '1 hour')",
            &[&bad],
        )
        .await
        .expect("store the pending record");

    let js = async_nats::jetstream::new(testkit::nats_admin(&testkit::nats_url()).await);
    let subject = format!("{}.js.order.checkout", sys.name);
    let message = serde_json::json!([
        {"request_id": bad, "order_id": 7},
        {"request_id": good, "order_id": neighbour.order},
    ]);
    for payload in [message.to_string(), "not json".to_owned()] {
        js.publish(subject.clone(), payload.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }

    let record = c.get(&format!("/requests/{bad}?wait=10")).await;
    assert_eq!(record.body["status"], "failed", "{record:?}");
    assert_eq!(record.body["reason"], "invalid_order", "{record:?}");
    probe.finish().await;

    let db = sys.db(Binary::Order).client().await;
    let deadline = Instant::now() + testkit::Probe::BOUND;
    loop {
        let paid = c.order(&neighbour.order).await["paid"] == true;
        let kept: i64 = db
            .query_one(
                "SELECT count(*) FROM dead_letters WHERE consumer = 'order-checkout'
                 AND (payload->>'request_id' = $1 OR payload = to_jsonb('not json'::text))",
                &[&bad.to_string()],
            )
            .await
            .expect("count dead letters")
            .get(0);
        if paid && kept >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "neighbour paid: {paid}, dead letters: {kept}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(c.stock(&neighbour.item).await, 9);
    sys.shutdown().await;
}

/// An outcome that breaks its contract (a failure without its reason, which
/// no saga can produce: anyone who could publish on the subject might) is
/// dropped on its own by the api's outcome consumer: its neighbour in the
/// same message is recorded, and the request it named is not answered from
/// it. That request stays pending and completes for real once the sweeper
/// re-publishes it, so a forged or broken outcome costs only a delay.
#[tokio::test]
async fn an_outcome_without_its_reason_is_dropped_alone_and_its_request_still_completes() {
    let sys = System::builder()
        .in_process()
        .env("SWEEP_INTERVAL_MS", "200")
        .start()
        .await;
    let c = &sys.client;
    let victim = buyer(c).await;
    let probe = testkit::Probe::start(c, 10).await;

    // Two pending records as the api stores them: the victim's, due for
    // re-publishing in two seconds (after the broken outcome arrived), and
    // a neighbour's, not due during the test.
    let (broken, neighbour) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let api = sys.db(Binary::Api).client().await;
    for (id, order, due) in [
        (broken, &victim.order, 2),
        (neighbour, &"n".to_owned(), 3600),
    ] {
        api.execute(
            "INSERT INTO requests (id, order_id, next_publish_at)
             VALUES ($1, $2, now() + make_interval(secs => $3))",
            &[&id, order, &f64::from(due)],
        )
        .await
        .expect("store the pending record");
    }

    let js = async_nats::jetstream::new(testkit::nats_admin(&testkit::nats_url()).await);
    let message = serde_json::json!([
        {"request_id": broken, "order_id": victim.order, "succeeded": false, "reason": null},
        {"request_id": neighbour, "order_id": "n", "succeeded": true, "reason": null},
    ]);
    js.publish(
        format!("{}.js.api.outcome", sys.name),
        message.to_string().into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");

    let recorded = c.get(&format!("/requests/{neighbour}?wait=10")).await;
    assert_eq!(recorded.body["status"], "succeeded", "{recorded:?}");
    // The broken outcome answered nothing: the record completes from the
    // real saga, with the victim's stock and credit moved exactly once.
    let done = c.get(&format!("/requests/{broken}?wait=20")).await;
    assert_eq!(done.body["status"], "succeeded", "{done:?}");
    assert_eq!(c.stock(&victim.item).await, 9);
    assert_eq!(c.credit(&victim.user).await, 9);
    probe.finish().await;
    sys.shutdown().await;
}
