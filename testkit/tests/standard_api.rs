//! End-to-end: the standard endpoints (API.md §1 and §3) through the real
//! binaries, over real HTTP, NATS and PostgreSQL.

use serde_json::json;
use testkit::{Binary, System};

#[tokio::test]
async fn stock_flow() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let item = c.create_item(5).await;
    let found = c.get(&format!("/stock/find/{item}")).await;
    assert_eq!(found.status, 200);
    assert_eq!(found.body, json!({"stock": 0, "price": 5}));

    c.add_stock(&item, 50).await;
    let refused = c.post(&format!("/stock/subtract/{item}/200")).await;
    assert!((400..500).contains(&refused.status), "{refused:?}");
    assert_eq!(
        refused.headers["content-type"], "application/problem+json",
        "errors are problem documents"
    );
    assert_eq!(
        c.stock(&item).await,
        50,
        "a refused subtract changes nothing"
    );

    let ok = c.post(&format!("/stock/subtract/{item}/15")).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(c.stock(&item).await, 35);
    sys.shutdown().await;
}

#[tokio::test]
async fn payment_flow() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let created = c.post("/payment/create_user").await;
    assert_eq!(created.status, 200);
    let user = created.str("user_id");
    assert_eq!(c.credit(&user).await, 0, "credit starts at 0");

    let added = c.post(&format!("/payment/add_funds/{user}/15")).await;
    assert_eq!(added.status, 200);
    assert_eq!(added.body["done"], true);
    let paid = c.post(&format!("/payment/pay/{user}/10")).await;
    assert_eq!(paid.status, 200, "{paid:?}");
    assert_eq!(c.credit(&user).await, 5);

    let over = c.post(&format!("/payment/pay/{user}/6")).await;
    assert!((400..500).contains(&over.status), "{over:?}");
    assert_eq!(
        c.credit(&user).await,
        5,
        "a refused payment changes nothing"
    );

    let found = c.get(&format!("/payment/find_user/{user}")).await;
    assert_eq!(found.body, json!({"user_id": user, "credit": 5}));
    sys.shutdown().await;
}

#[tokio::test]
async fn order_flow() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let user = c.create_user(0).await;
    let a = c.create_item(5).await;
    let b = c.create_item(7).await;
    let order = c.create_order(&user).await;

    let empty = c.order(&order).await;
    assert_eq!(
        empty,
        json!({"order_id": order, "paid": false, "items": [], "user_id": user, "total_cost": 0})
    );
    c.add_item(&order, &a, 2).await;
    c.add_item(&order, &b, 1).await;
    c.add_item(&order, &a, 1).await;
    let full = c.order(&order).await;
    assert_eq!(
        full["items"],
        json!([[a, 2], [b, 1], [a, 1]]),
        "one pair per call"
    );
    assert_eq!(full["total_cost"], 5 * 2 + 7 + 5);
    assert_eq!(full["paid"], false);

    // The price is read when the item is added: a later price does not
    // rewrite the order.
    let unknown_item = c.post(&format!("/orders/addItem/{order}/nope/1")).await;
    assert_eq!(unknown_item.status, 404);
    let unknown_order = c.post(&format!("/orders/addItem/nope/{a}/1")).await;
    assert_eq!(unknown_order.status, 404);
    let unknown_user = c.post("/orders/create/nope").await;
    assert_eq!(unknown_user.status, 404);
    assert_eq!(c.order(&order).await, full, "refused calls change nothing");
    sys.shutdown().await;
}

#[tokio::test]
async fn batch_init_shapes_and_reset() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let r = c.post("/stock/batch_init/100/10/3").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body["msg"].is_string());
    let r = c.post("/payment/batch_init/50/20").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = c.post("/orders/batch_init/30/100/50/3").await;
    assert_eq!(r.status, 200, "{r:?}");

    assert_eq!(
        c.get("/stock/find/0").await.body,
        json!({"stock": 10, "price": 3})
    );
    assert_eq!(
        c.get("/stock/find/99").await.body,
        json!({"stock": 10, "price": 3})
    );
    assert_eq!(c.get("/stock/find/100").await.status, 404);
    assert_eq!(c.credit("49").await, 20);
    assert_eq!(c.get("/payment/find_user/50").await.status, 404);
    for id in 0..30 {
        let o = c.order(&id.to_string()).await;
        assert_eq!(o["order_id"], id.to_string());
        assert_eq!(o["paid"], false);
        assert_eq!(o["total_cost"], 6);
        let items = o["items"].as_array().expect("items");
        assert_eq!(items.len(), 2);
        for pair in items {
            let item: i64 = pair[0].as_str().expect("id").parse().expect("numeric id");
            assert!((0..100).contains(&item));
            assert_eq!(pair[1], 1);
        }
        let user: i64 = o["user_id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("numeric id");
        assert!((0..50).contains(&user));
    }
    assert_eq!(c.get("/orders/find/30").await.status, 404);

    // Calling again resets those IDs.
    c.add_stock("0", 5).await;
    c.add_item("0", "1", 4).await;
    assert_eq!(c.post("/stock/batch_init/100/10/3").await.status, 200);
    assert_eq!(c.post("/orders/batch_init/30/100/50/3").await.status, 200);
    assert_eq!(c.stock("0").await, 10);
    let o = c.order("0").await;
    assert_eq!(o["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(o["total_cost"], 6);
    sys.shutdown().await;
}

/// Every malformed request is a 4xx problem document and changes nothing.
#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let item = c.create_item(3).await;
    c.add_stock(&item, 10).await;
    let user = c.create_user(10).await;
    let order = c.create_order(&user).await;
    c.add_item(&order, &item, 1).await;
    let max = i64::MAX;
    // Past every integer type the API takes.
    let huge = "99999999999999999999";

    let cases: Vec<(&str, String, u16)> = vec![
        ("POST", "/stock/item/create/-1".into(), 400),
        ("POST", "/stock/item/create/abc".into(), 400),
        ("POST", "/stock/item/create/1.5".into(), 400),
        ("POST", format!("/stock/item/create/{huge}"), 400),
        ("POST", format!("/stock/add/{item}/-5"), 400),
        ("POST", format!("/stock/add/{item}/x"), 400),
        ("POST", format!("/stock/add/{item}/{max}"), 400),
        ("POST", format!("/stock/subtract/{item}/-5"), 400),
        ("POST", format!("/stock/subtract/{item}/11"), 409),
        ("POST", "/stock/add/nope/1".into(), 404),
        ("GET", "/stock/find/nope".into(), 404),
        ("POST", "/stock/batch_init/-1/1/1".into(), 400),
        ("POST", format!("/stock/batch_init/1/1/{huge}"), 400),
        ("POST", format!("/payment/add_funds/{user}/-1"), 400),
        ("POST", format!("/payment/add_funds/{user}/{max}"), 400),
        ("POST", format!("/payment/pay/{user}/-1"), 400),
        ("POST", format!("/payment/pay/{user}/11"), 409),
        ("POST", "/payment/pay/nope/1".into(), 404),
        ("GET", "/payment/find_user/nope".into(), 404),
        ("POST", "/payment/batch_init/x/1".into(), 400),
        ("POST", format!("/orders/addItem/{order}/{item}/0"), 400),
        ("POST", format!("/orders/addItem/{order}/{item}/-1"), 400),
        ("POST", format!("/orders/addItem/{order}/{item}/{max}"), 400),
        ("POST", format!("/orders/addItem/{order}/nope/1"), 404),
        ("POST", "/orders/addItem/nope/x/1".into(), 404),
        ("GET", "/orders/find/nope".into(), 404),
        ("POST", "/orders/create/nope".into(), 404),
        ("POST", "/orders/batch_init/1/1/1/-3".into(), 400),
        ("POST", format!("/orders/batch_init/1/1/1/{max}"), 400),
        ("POST", "/orders/batch_init/10/0/1/1".into(), 400),
        ("GET", "/no/such/endpoint".into(), 404),
    ];
    for (method, path, want) in &cases {
        let a = match *method {
            "GET" => c.get(path).await,
            _ => c.post(path).await,
        };
        assert_eq!(a.status, *want, "{method} {path}: {a:?}");
        assert_eq!(
            a.headers["content-type"], "application/problem+json",
            "{method} {path}"
        );
        assert_eq!(a.body["status"], *want, "{method} {path}");
        assert!(a.body["title"].is_string() && a.body["detail"].is_string());
        assert!(a.body["type"].is_string());
    }
    assert_eq!(c.stock(&item).await, 10);
    assert_eq!(c.credit(&user).await, 10);
    let o = c.order(&order).await;
    assert_eq!(o["total_cost"], 3);
    assert_eq!(o["items"], json!([[item, 1]]));
    assert_eq!(
        c.get("/stock/find/0").await.status,
        404,
        "no batch happened"
    );
    assert_eq!(
        c.get("/orders/find/0").await.status,
        404,
        "no batch happened"
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn every_binary_serves_health_ready_and_metrics() {
    let sys = System::builder().in_process().start().await;
    let http = sys.client.raw().clone();
    // Some traffic so that the HTTP metrics have a sample.
    let _ = sys.client.get("/stock/find/nope").await;
    for b in Binary::ALL {
        for url in sys.urls(b) {
            let health = http
                .get(format!("{url}/health"))
                .send()
                .await
                .expect("health");
            assert_eq!(health.status(), 200, "{b:?}");
            let ready = http
                .get(format!("{url}/ready"))
                .send()
                .await
                .expect("ready");
            assert_eq!(ready.status(), 200, "{b:?}");
            let body: serde_json::Value = ready.json().await.expect("json");
            assert_eq!(body["postgres"], true);
            assert_eq!(body["nats"], true);
            let metrics = sys.client.text(&format!("{url}/metrics")).await;
            assert!(metrics.contains("build_info{"), "{b:?}: {metrics}");
        }
    }
    let api_metrics = sys
        .client
        .text(&format!("{}/metrics", sys.api_url(0)))
        .await;
    assert!(
        api_metrics.contains(
            r#"http_requests_total{method="GET",route="/stock/find/{item_id}",status="404"}"#
        ),
        "per-route counters: {api_metrics}"
    );
    assert!(api_metrics.contains("http_request_duration_seconds_bucket{"));
    sys.shutdown().await;
}

/// Two replicas of every service share the work through the NATS queue
/// groups, and the services are discoverable through `$SRV.INFO`.
#[tokio::test]
async fn replicas_share_requests_and_are_discoverable() {
    let sys = System::builder().in_process().replicas(2).start().await;
    let c = &sys.client;
    let item = c.create_item(1).await;
    for _ in 0..40 {
        c.add_stock(&item, 1).await;
    }
    assert_eq!(c.stock(&item).await, 40);
    let second = testkit::Client::new(sys.api_url(1));
    assert_eq!(second.stock(&item).await, 40);

    let nats = testkit::nats_admin(&testkit::nats_url()).await;
    let reply = nats.new_inbox();
    let mut inbox = nats.subscribe(reply.clone()).await.expect("subscribe");
    nats.publish_with_reply("$SRV.INFO.stock", reply, "".into())
        .await
        .expect("publish");
    nats.flush().await.expect("flush");
    // Every stock-svc of this machine answers; ours are those whose
    // endpoints carry our prefix.
    let mut ours = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while let Ok(Some(msg)) =
        tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut inbox)).await
    {
        let info: serde_json::Value = serde_json::from_slice(&msg.payload).expect("json");
        let subjects = info["endpoints"].to_string();
        if subjects.contains(&format!("{}.svc.stock.", sys.name)) {
            ours += 1;
        }
    }
    assert_eq!(ours, 2, "both stock-svc replicas answer $SRV.INFO");
    sys.shutdown().await;
}
