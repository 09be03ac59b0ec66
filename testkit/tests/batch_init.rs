//! End-to-end: `batch_init` repeated, concurrent, and slower than the api's
//! call timeout leaves exactly the data one init makes (issue 9 §2); a
//! second call while one runs is refused at once, a call whose client left
//! is rolled back, the endpoints can be switched off or put behind a token,
//! and their sizes are bounded (issue 17 §3).
//!
//! Bounded: a few thousand rows per init, about 10 s per test; the
//! cancellation test starts inits of millions of rows and cancels them
//! within a second or two.

use std::time::{Duration, Instant};

use futures::future::join_all;
use testkit::{Binary, Client, System};

/// Concurrent calls of one `batch_init` path: each answers 200, or 409 (a
/// problem document) because another was running; at least one ran.
async fn concurrently(sys: &System, path: &str, calls: usize) {
    let replicas = sys.urls(Binary::Api).len();
    let clients: Vec<_> = (0..calls)
        .map(|i| Client::new(sys.api_url(i % replicas)))
        .collect();
    let answers = join_all(clients.iter().map(|c| c.post(path))).await;
    for a in &answers {
        assert!(matches!(a.status, 200 | 409), "{path}: {a:?}");
        if a.status == 409 {
            assert_eq!(
                a.headers["content-type"], "application/problem+json",
                "{a:?}"
            );
        }
    }
    assert!(answers.iter().any(|a| a.status == 200), "{path}: none ran");
}

/// Whether a `batch_init` holds its database's setup lock (an advisory
/// lock; nothing else in these databases takes one after start-up).
async fn init_running(db: &tokio_postgres::Client) -> bool {
    count(
        db,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await
        > 0
}

/// Waits until `running(db)` is `want`, at most `bound`; returns how long.
async fn until_running(db: &tokio_postgres::Client, want: bool, bound: Duration) -> Duration {
    let t0 = Instant::now();
    while init_running(db).await != want {
        assert!(
            t0.elapsed() < bound,
            "batch_init {} within {bound:?}",
            if want {
                "did not start"
            } else {
                "still running"
            }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

/// One row per index and constraint of the order tables, with its definition.
async fn keys_and_indexes(db: &tokio_postgres::Client) -> Vec<String> {
    db.query(
        "SELECT indexrelid::regclass::text || ': ' || pg_get_indexdef(indexrelid) FROM pg_index
         WHERE indrelid IN ('orders'::regclass, 'order_lines'::regclass)
         UNION ALL
         SELECT conname || ': ' || pg_get_constraintdef(oid) || ' valid=' || convalidated
         FROM pg_constraint WHERE conrelid IN ('orders'::regclass, 'order_lines'::regclass)
         ORDER BY 1",
        &[],
    )
    .await
    .expect("catalog")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Orders `from`..`to` each have exactly two lines of quantity 1 at `price`,
/// `total_cost` = the sum of their lines, and are unpaid with no saga.
async fn assert_batch_orders(db: &tokio_postgres::Client, from: i64, to: i64, price: i64) {
    let row = db
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE o.total_cost = 2 * $3::bigint AND NOT o.paid
                                       AND o.checkout_saga IS NULL
                                       AND l.n = 2 AND l.units = 2 AND l.cost = o.total_cost)
             FROM orders o
             LEFT JOIN (SELECT order_id, count(*) AS n, sum(quantity) AS units,
                               sum(quantity * unit_price) AS cost
                        FROM order_lines GROUP BY order_id) l ON l.order_id = o.id
             WHERE o.id IN (SELECT g::text FROM generate_series($1::bigint, $2::bigint - 1) g)",
            &[&from, &to, &price],
        )
        .await
        .expect("query");
    let (found, good): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(found, to - from, "orders {from}..{to} exist");
    assert_eq!(good, to - from, "orders {from}..{to} have one init's shape");
}

async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.expect("count").get(0)
}

#[tokio::test]
async fn concurrent_and_repeated_order_inits_leave_one_init() {
    // Two replicas of everything: the inits also race across replicas.
    let sys = System::builder().in_process().replicas(2).start().await;
    let c = &sys.client;
    let order_db = sys.db(Binary::Order).client().await;
    let schema = keys_and_indexes(&order_db).await;

    // Rows outside the range must survive a re-init untouched: an order made
    // through the API, and batch orders beyond the new n.
    assert_eq!(c.post("/payment/batch_init/10/100").await.status, 200);
    assert_eq!(c.post("/stock/batch_init/10/100/7").await.status, 200);
    let own = c.create_order("3").await;
    c.add_item(&own, "4", 2).await;
    c.add_item(&own, "5", 1).await;
    c.add_item(&own, "4", 1).await;
    let own_before = c.order(&own).await;
    concurrently(&sys, "/orders/batch_init/4000/10/10/3", 3).await;
    assert_batch_orders(&order_db, 0, 4000, 3).await;

    // Re-init of a smaller range, four at once, while one order is paid.
    let paid = c.post("/orders/checkout/17").await;
    assert_eq!(paid.status, 200, "{paid:?}");
    assert_eq!(c.order("17").await["paid"], true);
    concurrently(&sys, "/orders/batch_init/3000/10/10/5", 4).await;
    assert_batch_orders(&order_db, 0, 3000, 5).await;
    assert_batch_orders(&order_db, 3000, 4000, 3).await;
    assert_eq!(
        count(&order_db, "SELECT count(*) FROM orders").await,
        4001,
        "exactly the orders of the inits and the one made through the API"
    );
    assert_eq!(
        count(&order_db, "SELECT count(*) FROM order_lines").await,
        2 * 4000 + 3
    );
    assert_eq!(
        c.order(&own).await,
        own_before,
        "an order outside the range keeps its lines, in call order"
    );
    assert_eq!(
        keys_and_indexes(&order_db).await,
        schema,
        "every key and index is back, validated"
    );

    // The re-initialised order checks out again, on the rebuilt tables.
    let again = c.post("/orders/checkout/17").await;
    assert_eq!(again.status, 200, "{again:?}");
    let o = c.order("17").await;
    assert_eq!(o["paid"], true);
    assert_eq!(o["total_cost"], 10);
    assert_eq!(o["items"].as_array().map(Vec::len), Some(2));
    c.add_item(&own, "6", 1).await;
    let lines = c.order(&own).await["items"].clone();
    assert_eq!(
        lines.as_array().map(Vec::len),
        Some(4),
        "new lines follow the kept ones: {lines}"
    );
    assert_eq!(lines[3], serde_json::json!(["6", 1]));
    sys.shutdown().await;
}

#[tokio::test]
async fn concurrent_stock_and_payment_inits_leave_one_init() {
    let sys = System::builder().in_process().replicas(2).start().await;
    let c = &sys.client;
    let stock_db = sys.db(Binary::Stock).client().await;
    let payment_db = sys.db(Binary::Payment).client().await;
    let item = c.create_item(9).await;
    c.add_stock(&item, 4).await;
    let user = c.create_user(8).await;

    for round in 0..2 {
        // The second round resets rows the first made and the load changed.
        if round == 1 {
            c.add_stock("11", 5).await;
            assert_eq!(c.post("/payment/pay/12/3").await.status, 200);
        }
        let (_, _) = tokio::join!(
            concurrently(&sys, "/stock/batch_init/5000/20/3", 3),
            concurrently(&sys, "/payment/batch_init/5000/40", 3),
        );
        assert_eq!(count(&stock_db, "SELECT count(*) FROM items").await, 5001);
        assert_eq!(
            count(
                &stock_db,
                "SELECT count(*) FROM items WHERE stock = 20 AND price = 3"
            )
            .await,
            5000
        );
        assert_eq!(count(&payment_db, "SELECT count(*) FROM users").await, 5001);
        assert_eq!(
            count(&payment_db, "SELECT count(*) FROM users WHERE credit = 40").await,
            5000
        );
    }
    assert_eq!(c.stock(&item).await, 4, "rows outside the range are kept");
    assert_eq!(c.credit(&user).await, 8);
    sys.shutdown().await;
}

/// `batch_init` requests handled by every replica of `binary`, by its metrics.
async fn inits_handled(sys: &System, binary: Binary) -> u64 {
    let mut total = 0;
    for url in sys.urls(binary) {
        let text = sys.client.text(&format!("{url}/metrics")).await;
        total += text
            .lines()
            .filter(|l| {
                l.starts_with("rpc_requests_total{") && l.contains("endpoint=\"batch_init\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// With a call timeout far below an init's duration, the inits still
/// succeed, and each was handled exactly once: heavy calls get a timeout that
/// fits their work and are never retried blindly.
#[tokio::test]
async fn inits_outlast_the_call_timeout_and_are_not_retried() {
    let sys = System::builder().env("RPC_TIMEOUT_MS", "20").start().await;
    let order_db = sys.db(Binary::Order).client().await;
    let (_, _, _) = tokio::join!(
        concurrently(&sys, "/orders/batch_init/20000/100/100/1", 2),
        concurrently(&sys, "/stock/batch_init/20000/1/1", 2),
        concurrently(&sys, "/payment/batch_init/20000/1", 2),
    );
    assert_batch_orders(&order_db, 0, 20000, 1).await;
    assert_eq!(
        count(&order_db, "SELECT count(*) FROM order_lines").await,
        40000
    );
    for b in [Binary::Order, Binary::Stock, Binary::Payment] {
        assert_eq!(
            inits_handled(&sys, b).await,
            2,
            "{b:?}: one handling per call"
        );
    }
    sys.shutdown().await;
}

/// While one init runs, a second (through another api replica too) is
/// refused at once with a 409 problem; the first completes.
#[tokio::test]
async fn a_second_init_while_one_runs_is_refused_at_once() {
    let sys = System::builder().in_process().replicas(2).start().await;
    let order_db = sys.db(Binary::Order).client().await;
    let first = tokio::spawn({
        let c = sys.client.clone();
        async move { c.post("/orders/batch_init/1000000/100/100/1").await }
    });
    until_running(&order_db, true, Duration::from_secs(30)).await;
    for replica in 0..2 {
        let other = Client::new(sys.api_url(replica));
        let t0 = Instant::now();
        let second = other.post("/orders/batch_init/10/10/10/1").await;
        assert_eq!(second.status, 409, "{second:?}");
        assert_eq!(second.headers["content-type"], "application/problem+json");
        assert!(
            second.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("batch_init")),
            "{second:?}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "refused after {:?}",
            t0.elapsed()
        );
        assert!(init_running(&order_db).await, "the first finished too soon");
    }
    let first = first.await.expect("first init");
    assert_eq!(first.status, 200, "{first:?}");
    assert_batch_orders(&order_db, 999_990, 1_000_000, 1).await;
    sys.shutdown().await;
}

/// A client that leaves mid-init cancels it: the transaction is rolled
/// back (the data is what the previous init made), the setup lock is free
/// within moments, and the next init runs at once. Both kinds of init: the
/// orders' (COPY and index builds) and a balance service's (one statement).
#[tokio::test]
async fn an_init_whose_client_left_is_rolled_back() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let order_db = sys.db(Binary::Order).client().await;
    let stock_db = sys.db(Binary::Stock).client().await;
    assert_eq!(c.post("/orders/batch_init/100/10/10/3").await.status, 200);
    assert_eq!(c.post("/stock/batch_init/100/5/3").await.status, 200);

    for (path, db) in [
        ("/orders/batch_init/5000000/100/100/1", &order_db),
        ("/stock/batch_init/10000000/1/1", &stock_db),
    ] {
        let leaving = tokio::spawn({
            let c = c.clone();
            async move { c.post(path).await }
        });
        until_running(db, true, Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The client goes away: its connection is closed.
        leaving.abort();
        let _ = leaving.await;
        let stopped = until_running(db, false, Duration::from_secs(10)).await;
        println!("{path}: stopped {stopped:?} after the client left");
        let t0 = Instant::now();
        let next = loop {
            let next = c
                .post(&path.replace("5000000", "200").replace("10000000", "200"))
                .await;
            if next.status != 409 || t0.elapsed() > Duration::from_secs(5) {
                break next;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(next.status, 200, "{path}: the next init: {next:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
    // Only the small inits happened: nothing of the cancelled ones is left.
    assert_eq!(count(&order_db, "SELECT count(*) FROM orders").await, 200);
    assert_eq!(
        count(&order_db, "SELECT count(*) FROM order_lines").await,
        400
    );
    assert_batch_orders(&order_db, 0, 200, 1).await;
    assert_eq!(count(&stock_db, "SELECT count(*) FROM items").await, 200);
    sys.shutdown().await;
}

/// Out-of-range sizes are 400 at the api, and nothing changes.
#[tokio::test]
async fn init_sizes_are_bounded() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let order_db = sys.db(Binary::Order).client().await;
    assert_eq!(c.post("/orders/batch_init/10/10/10/3").await.status, 200);
    for path in [
        "/orders/batch_init/10000001/10/10/1",
        "/orders/batch_init/10/0/10/1",
        "/orders/batch_init/10/10/0/1",
        "/orders/batch_init/10/10000001/10/1",
        "/orders/batch_init/10/10/10000001/1",
        "/orders/batch_init/10/10/10/4611686018427387904",
        "/stock/batch_init/10000001/1/1",
        "/payment/batch_init/10000001/1",
        "/payment/batch_init/-1/1",
    ] {
        let a = c.post(path).await;
        assert_eq!(a.status, 400, "{path}: {a:?}");
        assert_eq!(a.headers["content-type"], "application/problem+json");
    }
    assert_eq!(count(&order_db, "SELECT count(*) FROM orders").await, 10);
    assert_batch_orders(&order_db, 0, 10, 3).await;
    sys.shutdown().await;
}

const TOKEN: &str = "test-setup-token-0123456789";

/// `SETUP_ENDPOINTS=off`: every setup endpoint answers 404 and changes
/// nothing; the rest of the API works.
#[tokio::test]
async fn switched_off_setup_endpoints_are_not_found() {
    let sys = System::builder()
        .in_process()
        .env("SETUP_ENDPOINTS", "off")
        .start()
        .await;
    let c = &sys.client;
    for path in [
        "/stock/batch_init/10/1/1",
        "/payment/batch_init/10/1",
        "/orders/batch_init/10/10/10/1",
    ] {
        let with_token = c
            .send(
                c.raw()
                    .post(format!("{}{path}", c.base()))
                    .bearer_auth(TOKEN),
            )
            .await;
        for a in [c.post(path).await, with_token] {
            assert_eq!(a.status, 404, "{path}: {a:?}");
            assert_eq!(a.headers["content-type"], "application/problem+json");
        }
    }
    assert_eq!(c.get("/stock/find/0").await.status, 404, "no item was made");
    let item = c.create_item(5).await;
    assert_eq!(c.get(&format!("/stock/find/{item}")).await.status, 200);
    sys.shutdown().await;
}

/// `SETUP_ENDPOINTS=token`: 401 (with `WWW-Authenticate`) without the
/// token or with a wrong one, and nothing changes; the right one works.
#[tokio::test]
async fn setup_endpoints_behind_a_token() {
    let sys = System::builder()
        .in_process()
        .env("SETUP_ENDPOINTS", "token")
        .env("SETUP_TOKEN", TOKEN)
        .start()
        .await;
    let c = &sys.client;
    let post = |path: &str, token: Option<&str>| {
        let req = c.raw().post(format!("{}{path}", c.base()));
        c.send(match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        })
    };
    for path in [
        "/stock/batch_init/10/1/1",
        "/payment/batch_init/10/1",
        "/orders/batch_init/10/10/10/1",
    ] {
        for token in [None, Some("wrong-token-0123456789"), Some(&TOKEN[1..])] {
            let a = post(path, token).await;
            assert_eq!(a.status, 401, "{path} with {token:?}: {a:?}");
            assert_eq!(a.headers["content-type"], "application/problem+json");
            assert!(a.headers.contains_key("www-authenticate"), "{a:?}");
        }
    }
    assert_eq!(c.get("/stock/find/0").await.status, 404, "nothing was made");
    assert_eq!(
        c.get("/orders/find/0").await.status,
        404,
        "nothing was made"
    );
    for path in [
        "/stock/batch_init/10/1/1",
        "/payment/batch_init/10/1",
        "/orders/batch_init/10/10/10/1",
    ] {
        let a = post(path, Some(TOKEN)).await;
        assert_eq!(a.status, 200, "{path}: {a:?}");
    }
    assert_eq!(c.get("/orders/find/9").await.status, 200);
    // The other endpoints need no token.
    assert_eq!(c.post("/orders/checkout/0").await.status, 409);
    sys.shutdown().await;
}
