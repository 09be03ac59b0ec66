//! Bounds on what a header or query value can make the api do: waits are
//! clamped to their documented maxima (no overflow, no 5xx, no long hold),
//! made-up methods cannot grow `/metrics`, and malformed Idempotency-Keys
//! are refused with a 400 and change nothing.

use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use testkit::{Probe, System};

/// Every answer here comes well within this, whatever the wait asked for.
const ANSWERED_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn huge_or_garbage_waits_are_clamped_never_5xx() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let probe = Probe::start(c, 20).await;
    let huge = [
        "wait=18446744073709551615",
        "wait=18446744073709551616",
        "wait=99999999999999999999999999999999999999",
        "respond-async, wait=18446744073709551615",
        "wait=\"18446744073709551615\"",
        "wait=-1",
        "wait=1e9",
        "wait=soon",
        "wait=",
        "wait",
        "=,=,,wait==",
    ];
    let mut record = None;
    for prefer in huge {
        let order = c.order_of_one(10, 1, 10).await;
        let started = Instant::now();
        let r = c
            .send(
                c.raw()
                    .post(format!("{}/orders/checkout/{order}", c.base()))
                    .header("Prefer", prefer),
            )
            .await;
        assert!(
            r.status == 200 || r.status == 202,
            "Prefer: {prefer} → {r:?}"
        );
        assert!(started.elapsed() < ANSWERED_WITHIN, "Prefer: {prefer}");
        record = Some(r.body["request_id"].as_str().expect("an id").to_owned());
    }
    let id = record.expect("a record");
    let final_record = testkit::workload::final_record(c, &id).await;
    assert_eq!(final_record.body["status"], "succeeded");
    for wait in [
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999999999999999",
        "30",
        "31",
    ] {
        let started = Instant::now();
        let r = c.get(&format!("/requests/{id}?wait={wait}")).await;
        assert_eq!(r.status, 200, "?wait={wait} → {r:?}");
        assert!(started.elapsed() < ANSWERED_WITHIN, "?wait={wait}");
    }
    for wait in ["-1", "abc", "1e9", "%00"] {
        let r = c.get(&format!("/requests/{id}?wait={wait}")).await;
        assert_eq!(r.status, 400, "?wait={wait} → {r:?}");
    }
    // An unknown record with a huge wait is a plain 404, at once.
    let started = Instant::now();
    let r = c
        .get(&format!(
            "/requests/{}?wait=18446744073709551615",
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(started.elapsed() < ANSWERED_WITHIN);
    probe.finish().await;
    sys.shutdown().await;
}

async fn metrics(c: &testkit::Client) -> String {
    c.text(&format!("{}/metrics", c.base())).await
}

#[tokio::test]
async fn made_up_methods_do_not_grow_metrics() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let probe = Probe::start(c, 20).await;
    for i in 0..200 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}X").as_bytes()).expect("token");
        let path = match i % 3 {
            0 => format!("/stock/find/{i}"),
            1 => format!("/no/such/path/{i}"),
            _ => "/orders/checkout/1".to_owned(),
        };
        let r = c
            .raw()
            .request(method, format!("{}{path}", c.base()))
            .send()
            .await
            .expect("an answer");
        assert!(r.status().is_client_error(), "{i}: {}", r.status());
    }
    let text = metrics(c).await;
    assert!(!text.contains("MADEUP"), "a made-up method became a label");
    // All 200 share the `other` series: a few routes' counters and
    // histograms, not 200 label sets (which once added ~290 KB).
    let other: usize = text
        .lines()
        .filter(|l| l.contains("method=\"other\""))
        .map(|l| l.len() + 1)
        .sum();
    assert!(other > 0, "the made-up requests are counted");
    assert!(
        other < 8 * 1024,
        "{other} bytes of series for made-up methods"
    );
    probe.finish().await;
    sys.shutdown().await;
}

#[tokio::test]
async fn malformed_idempotency_keys_are_400_and_change_nothing() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let probe = Probe::start(c, 20).await;
    let user = c.create_user(0).await;
    let add = format!("{}/payment/add_funds/{user}/1", c.base());
    let bad: Vec<HeaderValue> = vec![
        HeaderValue::from_static(""),
        HeaderValue::from_static("\"\""),
        HeaderValue::from_static("\"unterminated"),
        HeaderValue::from_str(&"k".repeat(256)).expect("ascii"),
        HeaderValue::from_str(&format!("\"{}\"", "k".repeat(256))).expect("ascii"),
        HeaderValue::from_bytes(b"tab\there").expect("a tab is allowed in a header"),
        HeaderValue::from_bytes("caf\u{e9}".as_bytes()).expect("obs-text"),
        HeaderValue::from_bytes(b"\xff\xfe").expect("obs-text"),
    ];
    for key in bad {
        let r = c
            .send(c.raw().post(&add).header("Idempotency-Key", key.clone()))
            .await;
        assert_eq!(r.status, 400, "{key:?} → {r:?}");
    }
    // Two keys on one request are ambiguous too.
    let r = c
        .send(
            c.raw()
                .post(&add)
                .header("Idempotency-Key", "a")
                .header("Idempotency-Key", "b"),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(c.credit(&user).await, 0, "nothing applied");
    // The longest valid key, printable ASCII with spaces, works.
    let good = format!("a b~{}", "k".repeat(251));
    let r = c
        .send(c.raw().post(&add).header("Idempotency-Key", good.as_str()))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(c.credit(&user).await, 1);
    probe.finish().await;
    sys.shutdown().await;
}
