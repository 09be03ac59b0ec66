//! End-to-end: Idempotency-Key replay, 422 and 409.

use testkit::{Binary, System};

#[tokio::test]
async fn replays_the_first_answer_and_changes_nothing() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let user = c.create_user(0).await;
    let add = |key: &'static str, path: String| {
        let c = c.clone();
        async move {
            c.send(
                c.raw()
                    .post(format!("{}{path}", c.base()))
                    .header("Idempotency-Key", key),
            )
            .await
        }
    };
    let first = add("\"k-1\"", format!("/payment/add_funds/{user}/5")).await;
    assert_eq!(first.status, 200, "{first:?}");
    let again = add("\"k-1\"", format!("/payment/add_funds/{user}/5")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(c.credit(&user).await, 5, "applied once");

    // The same key for another request is refused and changes nothing.
    let other = add("\"k-1\"", format!("/payment/add_funds/{user}/6")).await;
    assert_eq!(other.status, 422, "{other:?}");
    assert_eq!(c.credit(&user).await, 5);

    // Refusals are replayed too: the request did happen, as a refusal.
    let over = add("k-2", format!("/payment/pay/{user}/50")).await;
    assert_eq!(over.status, 409);
    c.post(&format!("/payment/add_funds/{user}/100")).await;
    let replay = add("k-2", format!("/payment/pay/{user}/50")).await;
    assert_eq!(replay.status, 409, "the first answer stands");
    assert_eq!(c.credit(&user).await, 105);

    let long = "x".repeat(256);
    let r = c
        .send(
            c.raw()
                .post(format!("{}/payment/add_funds/{user}/1", c.base()))
                .header("Idempotency-Key", long),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(c.credit(&user).await, 105);

    // An async checkout replays its 202 with the same request ID.
    let item = c.create_item(1).await;
    c.add_stock(&item, 1).await;
    let order = c.create_order(&user).await;
    c.add_item(&order, &item, 1).await;
    let checkout = || {
        c.send(
            c.raw()
                .post(format!("{}/orders/checkout/{order}?mode=async", c.base()))
                .header("Idempotency-Key", "co-1"),
        )
    };
    let a = checkout().await;
    let b = checkout().await;
    assert_eq!(a.status, 202);
    assert_eq!(b.status, 202);
    assert_eq!(a.body["request_id"], b.body["request_id"]);
    assert_eq!(a.headers["location"], b.headers["location"]);
    sys.shutdown().await;
}

#[tokio::test]
async fn a_repeat_while_the_first_runs_is_409() {
    let mut sys = System::builder()
        .env("CHECKOUT_TIMEOUT_MS", "4000")
        .start()
        .await;
    let c = sys.client.clone();
    let order = c.order_of_one(10, 1, 1).await;
    // Without stock-svc the first (synchronous) checkout keeps running.
    sys.kill(Binary::Stock).await;
    let send = || {
        c.send(
            c.raw()
                .post(format!("{}/orders/checkout/{order}", c.base()))
                .header("Idempotency-Key", "slow"),
        )
    };
    let first = tokio::spawn({
        let c = c.clone();
        let order = order.clone();
        async move {
            c.send(
                c.raw()
                    .post(format!("{}/orders/checkout/{order}", c.base()))
                    .header("Idempotency-Key", "slow"),
            )
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = send().await;
    assert_eq!(second.status, 409, "{second:?}");
    let first = first.await.expect("first request");
    assert_eq!(
        first.status, 503,
        "accepted, outcome not known within the wait: {first:?}"
    );
    assert!(first.headers.contains_key("location"), "{first:?}");
    // Now answered: the repeat replays that answer with the same request ID
    // (the checkout goes on; a repeat must not start another).
    let third = send().await;
    assert_eq!(third.status, 503);
    assert_eq!(third.body["request_id"], first.body["request_id"]);
    sys.restart(Binary::Stock).await;
    sys.shutdown().await;
}

/// An ambiguous failure keeps the key: payment-svc is frozen (SIGSTOP) so
/// the call times out while the request sits in its socket; once thawed it
/// applies it. A retry with the same key replays the ambiguous answer and
/// never applies the change a second time.
#[tokio::test]
async fn a_retry_after_an_unknown_outcome_never_applies_twice() {
    let sys = System::builder()
        .env("RPC_TIMEOUT_MS", "1000")
        .start()
        .await;
    let c = sys.client.clone();
    let user = c.create_user(0).await;
    let pid: i32 = sys
        .pids()
        .iter()
        .find_map(|p| p.strip_prefix("payment-svc="))
        .expect("payment-svc runs")
        .parse()
        .expect("a pid");
    let add = || {
        c.send(
            c.raw()
                .post(format!("{}/payment/add_funds/{user}/5", c.base()))
                .header("Idempotency-Key", "ambiguous-1"),
        )
    };
    // SAFETY: plain signals to a child process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let first = add().await;
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(first.status, 503, "{first:?}");
    assert_eq!(first.body["code"], "outcome-unknown", "{first:?}");
    // The thawed service applies what it had received.
    let mut credit = 0;
    for _ in 0..50 {
        credit = c.credit(&user).await;
        if credit == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(credit, 5, "the frozen call was applied after all");
    // The retry replays the ambiguous answer instead of running again.
    let again = add().await;
    assert_eq!(again.status, 503, "{again:?}");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(c.credit(&user).await, 5, "applied once");
    sys.shutdown().await;
}
