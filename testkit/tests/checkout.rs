//! End-to-end: the checkout saga through the real binaries.

use serde_json::Value;
use testkit::{Binary, System};

/// Sets up a user with `credit` and an order of `lines` (item price, stock,
/// quantity) and returns (user, order, items).
async fn order_with(
    c: &testkit::Client,
    credit: i64,
    lines: &[(i64, i64, i64)],
) -> (String, String, Vec<String>) {
    let user = c.create_user(credit).await;
    let order = c.create_order(&user).await;
    let mut items = Vec::new();
    for (price, stock, quantity) in lines {
        let item = c.create_item(*price).await;
        if *stock > 0 {
            c.add_stock(&item, *stock).await;
        }
        c.add_item(&order, &item, *quantity).await;
        items.push(item);
    }
    (user, order, items)
}

#[tokio::test]
async fn checkout_outcomes() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;

    // Success: stock and credit move, the order is paid.
    let (user, order, items) = order_with(c, 100, &[(10, 5, 2), (7, 1, 1)]).await;
    let ok = c.post(&format!("/orders/checkout/{order}")).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body["status"], "succeeded");
    assert_eq!(c.credit(&user).await, 100 - 27);
    assert_eq!(c.stock(&items[0]).await, 3);
    assert_eq!(c.stock(&items[1]).await, 0);
    assert_eq!(c.order(&order).await["paid"], true);

    // Already paid: succeeds without charging or reserving again.
    let again = c.post(&format!("/orders/checkout/{order}")).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(c.credit(&user).await, 73);
    assert_eq!(c.stock(&items[0]).await, 3);

    // Insufficient stock: 4xx, nothing moves (the charge is refunded).
    let (user, order, items) = order_with(c, 100, &[(10, 5, 2), (1, 1, 2)]).await;
    let r = c.post(&format!("/orders/checkout/{order}")).await;
    assert!((400..500).contains(&r.status), "{r:?}");
    assert_eq!(r.body["reason"], "insufficient_stock");
    assert_eq!(c.credit(&user).await, 100);
    assert_eq!(c.stock(&items[0]).await, 5);
    assert_eq!(c.stock(&items[1]).await, 1);
    assert_eq!(c.order(&order).await["paid"], false);

    // Insufficient credit: 4xx, stock released.
    let (user, order, items) = order_with(c, 19, &[(10, 5, 2)]).await;
    let r = c.post(&format!("/orders/checkout/{order}")).await;
    assert!((400..500).contains(&r.status), "{r:?}");
    assert_eq!(r.body["reason"], "insufficient_credit");
    assert_eq!(c.credit(&user).await, 19);
    assert_eq!(c.stock(&items[0]).await, 5);

    // Unknown order: 404.
    let r = c.post("/orders/checkout/no-such-order").await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body["reason"], "order_not_found");

    // Repeated addItem of one item: quantities are summed per item.
    let (user, order, items) = order_with(c, 100, &[(3, 4, 2)]).await;
    c.add_item(&order, &items[0], 2).await;
    let r = c.post(&format!("/orders/checkout/{order}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(c.stock(&items[0]).await, 0);
    assert_eq!(c.credit(&user).await, 100 - 12);

    // One more unit than there is, split over two lines: refused.
    let (user, order, items) = order_with(c, 100, &[(3, 3, 2)]).await;
    c.add_item(&order, &items[0], 2).await;
    let r = c.post(&format!("/orders/checkout/{order}")).await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(c.stock(&items[0]).await, 3);
    assert_eq!(c.credit(&user).await, 100);

    // A paid order takes no more items.
    let (_, order, items) = order_with(c, 100, &[(1, 5, 1)]).await;
    assert_eq!(
        c.post(&format!("/orders/checkout/{order}")).await.status,
        200
    );
    let r = c
        .post(&format!("/orders/addItem/{order}/{}/1", items[0]))
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    sys.shutdown().await;
}

#[tokio::test]
async fn async_checkout_and_polling() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let (user, order, _) = order_with(c, 10, &[(4, 2, 1)]).await;

    let r = c.checkout_async(&order).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.str("request_id");
    assert_eq!(r.headers["location"], format!("/requests/{id}"));
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(r.body["kind"], "checkout");
    assert_eq!(r.body["order_id"], order);

    // Readable at once, then final through a long-poll.
    let now = c.get(&format!("/requests/{id}")).await;
    assert_eq!(now.status, 200);
    let done = c.get(&format!("/requests/{id}?wait=10")).await;
    assert_eq!(done.body["status"], "succeeded", "{done:?}");
    assert!(done.body["completed_at"].is_string());
    assert_eq!(done.body["reason"], Value::Null);
    assert_eq!(c.credit(&user).await, 6);

    // ?mode=async works too; a failure carries its reason.
    let (_, order, _) = order_with(c, 0, &[(4, 2, 1)]).await;
    let r = c
        .post(&format!("/orders/checkout/{order}?mode=async"))
        .await;
    assert_eq!(r.status, 202);
    let id = r.str("request_id");
    let done = c.get(&format!("/requests/{id}?wait=10")).await;
    assert_eq!(done.body["status"], "failed");
    assert_eq!(done.body["reason"], "insufficient_credit");

    // Unknown and malformed IDs are 404; a bad wait is 400.
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(c.get(&format!("/requests/{unknown}")).await.status, 404);
    assert_eq!(c.get("/requests/not-a-uuid").await.status, 404);
    assert_eq!(
        c.get(&format!("/requests/{id}?wait=soon")).await.status,
        400
    );
    // Past the documented maximum (30) is refused, not shortened.
    // Past the maximum is clamped to it (the record is final: no wait at all).
    assert_eq!(c.get(&format!("/requests/{id}?wait=31")).await.status, 200);
    assert_eq!(c.get(&format!("/requests/{id}?wait=30")).await.status, 200);
    assert_eq!(
        c.post(&format!("/orders/checkout/{order}?mode=later"))
            .await
            .status,
        400
    );
    sys.shutdown().await;
}

/// A long-poll on a record that cannot finish returns the pending record
/// after the wait, not an error; the sync checkout answers 202 on timeout.
#[tokio::test]
async fn waiting_is_bounded_and_never_guesses() {
    let mut sys = System::builder()
        .env("CHECKOUT_TIMEOUT_MS", "1500")
        .start()
        .await;
    let (user, order, items) = order_with(&sys.client, 10, &[(4, 2, 1)]).await;
    sys.kill(Binary::Stock).await;

    let c = sys.client.clone();
    // A plain checkout is never answered 202 (clients count it as a sale):
    // past its wait, only an outage, it is a 503 naming the accepted
    // request, never a guess.
    let r = c.post(&format!("/orders/checkout/{order}")).await;
    assert_eq!(r.status, 503, "outcome unknown within the wait: {r:?}");
    let id = r.str("request_id");
    assert_eq!(r.headers["location"], format!("/requests/{id}"));
    assert!(r.headers.contains_key("retry-after"));
    // A client that bounds the wait itself (RFC 7240) gets the record.
    let bounded = c
        .send(
            c.raw()
                .post(format!("{}/orders/checkout/{order}", c.base()))
                .header("Prefer", "wait=1"),
        )
        .await;
    assert_eq!(bounded.status, 202, "{bounded:?}");
    assert_eq!(bounded.body["status"], "pending");
    assert_eq!(bounded.headers["vary"], "Prefer");
    let started = std::time::Instant::now();
    let p = c.get(&format!("/requests/{id}?wait=1")).await;
    assert_eq!(p.status, 200);
    assert_eq!(p.body["status"], "pending");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));

    // With stock-svc back, the same request completes: a missing service
    // delays a checkout, it does not fail it.
    sys.restart(Binary::Stock).await;
    let done = c.get(&format!("/requests/{id}?wait=20")).await;
    assert_eq!(done.body["status"], "succeeded", "{done:?}");
    assert_eq!(c.stock(&items[0]).await, 1);
    assert_eq!(c.credit(&user).await, 6);
    sys.shutdown().await;
}
