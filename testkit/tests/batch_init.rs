//! End-to-end: `batch_init` repeated, concurrent, and slower than the api's
//! call timeout leaves exactly the data one init makes (issue 9 §2).
//!
//! Bounded: a few thousand rows per init, about 10 s per test.

use futures::future::join_all;
use testkit::{Binary, Client, System};

/// Concurrent calls of one `batch_init` path; each must answer 200.
async fn concurrently(sys: &System, path: &str, calls: usize) {
    let replicas = sys.urls(Binary::Api).len();
    let clients: Vec<_> = (0..calls)
        .map(|i| Client::new(sys.api_url(i % replicas)))
        .collect();
    let answers = join_all(clients.iter().map(|c| c.post(path))).await;
    for a in answers {
        assert_eq!(a.status, 200, "{path}: {a:?}");
    }
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
        let text = sys
            .client
            .raw()
            .get(format!("{url}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
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
