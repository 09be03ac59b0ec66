//! End-to-end: every 4xx/5xx of the api is an RFC 9457 problem document,
//! including the ones axum produces itself (405, 413, extractor
//! rejections), and every 503 carries `Retry-After`.

use testkit::{http::Answer, Binary, System};

fn assert_problem(a: &Answer, status: u16, what: &str) {
    assert_eq!(a.status, status, "{what}: {a:?}");
    assert_eq!(
        a.headers["content-type"], "application/problem+json",
        "{what}: {a:?}"
    );
    assert_eq!(a.body["type"], "about:blank", "{what}");
    assert_eq!(a.body["status"], status, "{what}");
    let title = a.body["title"].as_str().unwrap_or_default();
    assert!(!title.is_empty(), "{what}: no title");
    let detail = a.body["detail"].as_str().unwrap_or_default();
    assert!(!detail.is_empty(), "{what}: no detail");
    assert!(a.body["code"].is_string(), "{what}: no code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_a_problem_document() {
    let mut sys = System::builder()
        .env("WEBHOOK_ALLOW_HOSTS", "callback.invalid")
        .start()
        .await;
    let c = sys.client.clone();
    let http = c.raw();
    let url = |p: &str| format!("{}{p}", c.base());

    // 405, on a standard path and on an operations path, keeping `Allow`.
    let a = c.send(http.delete(url("/stock/find/0"))).await;
    assert_problem(&a, 405, "DELETE /stock/find/0");
    assert_eq!(a.body["title"], "Method Not Allowed");
    assert_eq!(a.headers["allow"], "GET,HEAD");
    let a = c.send(http.put(url("/health"))).await;
    assert_problem(&a, 405, "PUT /health");
    let a = c.send(http.get(url("/orders/checkout/1"))).await;
    assert_problem(&a, 405, "GET /orders/checkout/1");

    // 404 for an unknown path.
    assert_problem(&c.get("/nope").await, 404, "GET /nope");

    // 413: a body over 64 KiB, refused before it is read.
    let big = format!("{{\"callback_url\": \"{}\"}}", "x".repeat(70 * 1024));
    let a = c
        .send(
            http.post(url("/orders/checkout/1"))
                .header("content-type", "application/json")
                .body(big.clone()),
        )
        .await;
    assert_problem(&a, 413, "big body");
    let a = c
        .send(
            http.post(url("/orders/checkout/1"))
                .header("content-type", "application/json")
                .header("idempotency-key", "big-1")
                .body(big),
        )
        .await;
    assert_problem(&a, 413, "big body with an Idempotency-Key");

    // 415: a body that is not JSON.
    let a = c
        .send(
            http.post(url("/orders/checkout/1"))
                .header("content-type", "text/plain")
                .body("callback_url=http://callback.invalid/"),
        )
        .await;
    assert_problem(&a, 415, "text/plain body");
    assert_eq!(a.body["title"], "Unsupported Media Type");

    // 400: malformed JSON, a query the extractor cannot read, a path
    // segment that is not UTF-8, a refused callback_url.
    let a = c
        .send(
            http.post(url("/orders/checkout/1"))
                .header("content-type", "application/json")
                .body("{"),
        )
        .await;
    assert_problem(&a, 400, "malformed JSON");
    let rid = uuid::Uuid::now_v7();
    let a = c.get(&format!("/requests/{rid}?wait=1&wait=2")).await;
    assert_problem(&a, 400, "duplicate query parameter");
    let a = c.get("/stock/find/%FF").await;
    assert_problem(&a, 400, "non-UTF-8 path segment");
    let a = c
        .post("/orders/checkout/1?callback_url=http://elsewhere.example/")
        .await;
    assert_problem(&a, 400, "callback_url of a host not allowed");

    // None of that created a request record or an item.
    let records: i64 = sys
        .db(Binary::Api)
        .client()
        .await
        .query_one("SELECT count(*) FROM requests", &[])
        .await
        .expect("count requests")
        .get(0);
    assert_eq!(records, 0, "a refused checkout left a record");

    // 503 with Retry-After: stock-svc is down.
    let item = c.create_item(5).await;
    sys.kill(Binary::Stock).await;
    let a = c.get(&format!("/stock/find/{item}")).await;
    assert_problem(&a, 503, "stock-svc down");
    let retry: u64 = a.headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry >= 1, "Retry-After {retry}");
    sys.restart(Binary::Stock).await;
    assert_eq!(c.stock(&item).await, 0);
    sys.shutdown().await;
}
