//! End-to-end: webhook callbacks to a real receiver on loopback.

use std::time::Duration;

use testkit::{receiver::Receiver, Binary, Client, System, SystemBuilder};

const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtZm9yLXdlYmhvb2stdGVzdHM=";
const OTHER: &str = "whsec_c29tZSBvdGhlciBzZWNyZXQ=";

fn builder(schedule: &str) -> SystemBuilder {
    System::builder()
        .env("WEBHOOK_SECRET", SECRET)
        .env("WEBHOOK_SCHEDULE", schedule)
        .env("WEBHOOK_POLL_MS", "100")
        .env("WEBHOOK_TIMEOUT_MS", "2000")
}

/// For the tests that never kill the api.
async fn system(schedule: &str) -> System {
    builder(schedule).in_process().start().await
}

async fn checkout_with_callback(c: &Client, order: &str, url: &str) -> String {
    let r = c.checkout_with_callback(order, url).await;
    assert_eq!(r.status, 202, "a callback implies async: {r:?}");
    assert_eq!(r.body["webhook"]["url"], url);
    r.str("request_id")
}

async fn record_when(c: &Client, id: &str, status: &str) -> serde_json::Value {
    for _ in 0..600 {
        let r = c.get(&format!("/requests/{id}")).await;
        if r.body["webhook"]["status"] == status {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("webhook of {id} never reached {status}");
}

#[tokio::test]
async fn success_and_failure_are_delivered_signed() {
    let sys = system("0ms,100ms").await;
    let c = &sys.client;
    let rx = Receiver::start(&[], 200).await;

    let ok = checkout_with_callback(c, &c.order_of_one(10, 3, 5).await, &rx.url).await;
    let d = rx.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(d.len(), 1);
    let event = d[0].json();
    assert_eq!(event["type"], "checkout.succeeded");
    assert_eq!(event["data"]["request_id"], ok);
    assert_eq!(event["data"]["status"], "succeeded");
    assert!(event["timestamp"].is_string());
    let headers = &d[0].headers;
    assert!(
        api::webhooks::signing::verify(SECRET, &d[0].body, headers).is_ok(),
        "signed with the secret"
    );
    assert!(
        api::webhooks::signing::verify(OTHER, &d[0].body, headers).is_err(),
        "not with another"
    );
    assert!(
        api::webhooks::signing::verify(SECRET, b"{}", headers).is_err(),
        "bound to the body"
    );

    // The callback may also come in a JSON body.
    let failing = c.order_of_one(0, 3, 5).await;
    let r = c
        .send(
            c.raw()
                .post(format!("{}/orders/checkout/{failing}", c.base()))
                .json(&serde_json::json!({ "callback_url": rx.url })),
        )
        .await;
    assert_eq!(r.status, 202);
    let d = rx.wait_for(2, Duration::from_secs(20)).await;
    let event = d[1].json();
    assert_eq!(event["type"], "checkout.failed");
    assert_eq!(event["data"]["reason"], "insufficient_credit");
    assert_ne!(d[0].header("webhook-id"), d[1].header("webhook-id"));

    let rec = record_when(c, &ok, "delivered").await;
    assert_eq!(rec["webhook"]["attempts"], 1);
    assert!(rec["webhook"]["delivered_at"].is_string());
    sys.shutdown().await;
}

#[tokio::test]
async fn retried_with_one_webhook_id_until_2xx() {
    let sys = system("0ms,100ms,100ms,100ms").await;
    let c = &sys.client;
    // 500, then a redirect (not followed, so a failure too), then 200.
    let rx = Receiver::start(&[500, 302], 200).await;
    let id = checkout_with_callback(c, &c.order_of_one(10, 3, 5).await, &rx.url).await;
    let rec = record_when(c, &id, "delivered").await;
    let d = rx.deliveries();
    assert_eq!(d.len(), 3, "three attempts");
    let ids: Vec<String> = d.iter().map(|x| x.header("webhook-id")).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one webhook-id: {ids:?}");
    assert!(d.iter().all(|x| x.body == d[0].body), "the same event body");
    assert_eq!(rec["webhook"]["attempts"], 3);

    let db = sys.db(Binary::Api).client().await;
    let rows = db
        .query(
            "SELECT attempt, http_status FROM webhook_attempts WHERE request_id = $1::text::uuid ORDER BY attempt",
            &[&id],
        )
        .await
        .expect("attempts");
    let statuses: Vec<Option<i16>> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(
        statuses,
        vec![Some(500), Some(302), Some(200)],
        "every attempt recorded"
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn gives_up_after_the_last_attempt() {
    let sys = system("0ms,50ms,50ms").await;
    let c = &sys.client;
    let rx = Receiver::start(&[], 503).await;
    let id = checkout_with_callback(c, &c.order_of_one(10, 3, 5).await, &rx.url).await;
    let rec = record_when(c, &id, "failed").await;
    assert_eq!(rec["webhook"]["attempts"], 3);
    assert_eq!(
        rec["webhook"]["last_error"], "http_5xx",
        "a class, not the receiver's answer"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.deliveries().len(), 3, "no attempt after the last");

    // A TLS handshake with a plain-HTTP receiver fails as a class too.
    let tls = rx.url.replacen("http://", "https://", 1);
    let id = checkout_with_callback(c, &c.order_of_one(10, 3, 5).await, &tls).await;
    let rec = record_when(c, &id, "failed").await;
    assert_eq!(rec["webhook"]["last_error"], "tls_error");

    // A receiver that refuses connections fails the same way.
    let closed = "http://127.0.0.1:9/hook";
    let id = checkout_with_callback(c, &c.order_of_one(10, 3, 5).await, closed).await;
    let rec = record_when(c, &id, "failed").await;
    assert_eq!(rec["webhook"]["last_error"], "connect_error");
    sys.shutdown().await;
}

#[tokio::test]
async fn pending_deliveries_survive_an_api_restart() {
    let mut sys = builder("0ms,3s,100ms").start().await;
    let c = sys.client.clone();
    let rx = Receiver::start(&[], 500).await;
    let id = checkout_with_callback(&c, &c.order_of_one(10, 3, 5).await, &rx.url).await;
    rx.wait_for(1, Duration::from_secs(20)).await;
    // Once the first attempt is recorded, the second is 3 s away; the api
    // dies before it. (Killed before recording, the attempt's claim would
    // hold off a retry for its lease: also correct, just slower.)
    let rec = record_when(&c, &id, "pending").await;
    assert!(rec["webhook"]["attempts"] == 1 || rec["webhook"]["attempts"] == 0);
    for _ in 0..200 {
        if c.get(&format!("/requests/{id}")).await.body["webhook"]["attempts"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    sys.kill(Binary::Api).await;
    rx.answer(200);
    sys.restart(Binary::Api).await;
    let rec = record_when(&c, &id, "delivered").await;
    assert_eq!(rec["webhook"]["attempts"], 2);
    assert_eq!(rx.deliveries().len(), 2);
    sys.shutdown().await;
}

#[tokio::test]
async fn invalid_or_denied_urls_are_refused_and_start_nothing() {
    let sys = System::builder()
        .in_process()
        .env("WEBHOOK_DENY_HOSTS", "denied.example")
        .start()
        .await;
    let c = &sys.client;
    let o = c.order_of_one(10, 3, 5).await;
    for bad in [
        "not a url".to_owned(),
        "ftp://example.com/hook".to_owned(),
        "/relative/hook".to_owned(),
        "http://denied.example/hook".to_owned(),
        format!("http://example.com/{}", "a".repeat(2100)),
    ] {
        let r = c
            .post(&format!(
                "/orders/checkout/{o}?callback_url={}",
                testkit::http::urlencode(&bad)
            ))
            .await;
        assert_eq!(r.status, 400, "{bad}: {r:?}");
    }
    assert_eq!(c.order(&o).await["paid"], false, "nothing started");
    sys.shutdown().await;
}

/// With two api replicas, every attempt is made by exactly one of them.
#[tokio::test]
async fn two_replicas_deliver_each_event_once() {
    let sys = System::builder()
        .in_process()
        .replicas(2)
        .env("WEBHOOK_SECRET", SECRET)
        .env("WEBHOOK_SCHEDULE", "0ms,200ms,200ms")
        .env("WEBHOOK_POLL_MS", "50")
        .start()
        .await;
    let rx = Receiver::start(&[], 200).await;
    let clients = [Client::new(sys.api_url(0)), Client::new(sys.api_url(1))];
    let mut ids = Vec::new();
    for i in 0..20 {
        let c = &clients[i % 2];
        ids.push(checkout_with_callback(c, &c.order_of_one(10, 3, 5).await, &rx.url).await);
    }
    for id in &ids {
        record_when(&sys.client, id, "delivered").await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = rx.deliveries();
    let mut seen: Vec<String> = d.iter().map(|x| x.header("webhook-id")).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 20, "every event delivered");
    assert_eq!(d.len(), 20, "and each exactly once");
    sys.shutdown().await;
}

/// A receiver slower than the timeout costs only its own attempts: checkouts
/// and other receivers go on.
#[tokio::test]
async fn a_slow_receiver_slows_nobody_else() {
    let sys = System::builder()
        .in_process()
        .env("WEBHOOK_SECRET", SECRET)
        .env("WEBHOOK_SCHEDULE", "0ms,10s")
        .env("WEBHOOK_POLL_MS", "50")
        .env("WEBHOOK_TIMEOUT_MS", "1000")
        .env("WEBHOOK_CONCURRENCY", "4")
        .start()
        .await;
    let c = &sys.client;
    let slow = Receiver::start(&[], 200).await;
    slow.delay(Duration::from_secs(5));
    let fast = Receiver::start(&[], 200).await;
    let mut slow_ids = Vec::new();
    for _ in 0..3 {
        slow_ids.push(checkout_with_callback(c, &c.order_of_one(10, 3, 5).await, &slow.url).await);
    }
    let started = std::time::Instant::now();
    let fast_id = checkout_with_callback(c, &c.order_of_one(10, 3, 5).await, &fast.url).await;
    record_when(c, &fast_id, "delivered").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the fast receiver was not held up"
    );
    let sync = c.order_of_one(10, 3, 5).await;
    let r = c.post(&format!("/orders/checkout/{sync}")).await;
    assert_eq!(r.status, 200, "checkouts go on");
    // The slow receiver's first attempt timed out and waits for its retry.
    let mut rec = serde_json::Value::Null;
    for _ in 0..100 {
        rec = c.get(&format!("/requests/{}", slow_ids[0])).await.body;
        if rec["webhook"]["attempts"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rec["webhook"]["status"], "pending", "{rec}");
    assert_eq!(rec["webhook"]["last_error"], "timeout", "{rec}");
    sys.shutdown().await;
}

/// A stored record the api cannot read (a failure reason it does not know,
/// as a hand edit or a newer version might leave) is left out of the batch
/// of due deliveries it was claimed in: the delivery claimed with it still
/// goes out.
#[tokio::test]
async fn an_unreadable_record_does_not_hold_back_the_deliveries_claimed_with_it() {
    let sys = system("0ms,100ms").await;
    let rx = Receiver::start(&[], 200).await;
    let (bad, good) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let db = sys.db(Binary::Api).client().await;
    for (id, status, reason) in [(bad, "failed", Some("gremlins")), (good, "succeeded", None)] {
        db.execute(
            "INSERT INTO requests (id, order_id, status, reason, completed_at, next_publish_at)
             VALUES ($1, 'o', $2, $3, now(), now())",
            &[&id, &status, &reason],
        )
        .await
        .expect("store a final record");
        db.execute(
            "INSERT INTO webhooks (request_id, url, status, next_attempt_at)
             VALUES ($1, $2, 'pending', now())",
            &[&id, &rx.url],
        )
        .await
        .expect("make its delivery due");
    }
    let d = rx.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(d[0].json()["data"]["request_id"], good.to_string());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rx.deliveries().len(),
        1,
        "nothing sent for the unreadable record"
    );
    sys.shutdown().await;
}
