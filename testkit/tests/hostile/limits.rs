//! Numbers past their documented bounds (`contracts::limits`), orders past the
//! line limit, and a backlog larger than any one message may be.

use std::time::Duration;

use futures::{stream, StreamExt};
use serde_json::Value;
use testkit::{workload, Binary, Client, System};

const MAX_QUANTITY: i64 = 1_000_000_000;
const MAX_PRICE: i64 = 1_000_000_000;
const MAX_AMOUNT: i64 = 1_000_000_000_000_000;
const MAX_BALANCE: i64 = 1_000_000_000_000_000_000;

/// `POST path` must be refused with a 4xx problem document whose detail
/// names `mentions`.
async fn refused(c: &Client, path: &str, mentions: &str) {
    let r = c.post(path).await;
    assert!((400..500).contains(&r.status), "{path}: {r:?}");
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(mentions),
        "{path}: {detail:?} should name {mentions:?}"
    );
}

/// The order's lines and total, to compare before and after.
async fn snapshot(c: &Client, order: &str) -> (Value, i64) {
    let o = c.order(order).await;
    (o["items"].clone(), o["total_cost"].as_i64().unwrap())
}

/// The finding: a price-0 item added twice with quantity 2^63-1 kept
/// `total_cost` at 0 and stored lines whose sum overflows, which stalled
/// every checkout batch it fell into. Now each bound is refused with a 4xx
/// and changes nothing, while bystanders check out as usual.
#[tokio::test]
async fn overflow_attempts_are_refused_and_change_nothing() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let probe = testkit::Probe::start(c, 10).await;

    let free = c.create_item(0).await;
    let dear = c.create_item(MAX_PRICE).await;
    let user = c.create_user(0).await;
    let order = c.create_order(&user).await;

    // One line's quantity.
    for q in [i64::MAX.to_string(), (MAX_QUANTITY + 1).to_string()] {
        refused(
            c,
            &format!("/orders/addItem/{order}/{free}/{q}"),
            "quantity",
        )
        .await;
    }
    assert_eq!(snapshot(c, &order).await, (Value::Array(vec![]), 0));

    // The units of one item summed over the order.
    c.add_item(&order, &free, MAX_QUANTITY).await;
    let before = snapshot(c, &order).await;
    refused(
        c,
        &format!("/orders/addItem/{order}/{free}/1"),
        "1000000000",
    )
    .await;
    assert_eq!(snapshot(c, &order).await, before);

    // The total: 10^6 units at 10^9 reach 10^15 exactly; one more does not fit.
    c.add_item(&order, &dear, 1_000_000).await;
    let before = snapshot(c, &order).await;
    assert_eq!(before.1, MAX_AMOUNT);
    refused(
        c,
        &format!("/orders/addItem/{order}/{dear}/1"),
        "total_cost",
    )
    .await;
    assert_eq!(snapshot(c, &order).await, before);

    // Prices, amounts and batch_init parameters.
    refused(c, &format!("/stock/item/create/{}", MAX_PRICE + 1), "price").await;
    let item = c.create_item(1).await;
    for op in ["add", "subtract"] {
        refused(
            c,
            &format!("/stock/{op}/{item}/{}", MAX_AMOUNT + 1),
            "amount",
        )
        .await;
    }
    for op in ["add_funds", "pay"] {
        refused(
            c,
            &format!("/payment/{op}/{user}/{}", MAX_AMOUNT + 1),
            "amount",
        )
        .await;
    }
    refused(
        c,
        &format!("/stock/batch_init/1/{}/1", MAX_BALANCE + 1),
        "starting_stock",
    )
    .await;
    refused(
        c,
        &format!("/stock/batch_init/1/1/{}", MAX_PRICE + 1),
        "item_price",
    )
    .await;
    refused(
        c,
        &format!("/payment/batch_init/1/{}", MAX_BALANCE + 1),
        "starting_money",
    )
    .await;
    refused(
        c,
        &format!("/orders/batch_init/1/1/1/{}", MAX_PRICE + 1),
        "item_price",
    )
    .await;
    assert_eq!(c.stock(&item).await, 0);
    assert_eq!(c.credit(&user).await, 0);

    // Stock and credit stop at 10^18 (what compensations give back later
    // needs the room above); the refused add changes nothing.
    assert!(c
        .post(&format!("/stock/batch_init/1/{MAX_BALANCE}/1"))
        .await
        .ok());
    assert!(c
        .post(&format!("/payment/batch_init/1/{MAX_BALANCE}"))
        .await
        .ok());
    refused(c, "/stock/add/0/1", "exceed").await;
    refused(c, "/payment/add_funds/0/1", "exceed").await;
    assert_eq!(c.stock("0").await, MAX_BALANCE);
    assert_eq!(c.credit("0").await, MAX_BALANCE);

    probe.finish().await;
    sys.shutdown().await;
}

/// An order of exactly `ORDER_MAX_LINES` (1,000 by default) distinct items
/// checks out while bystanders do; a line more is refused (409) and changes
/// nothing.
#[tokio::test]
async fn an_order_at_the_line_limit_checks_out_and_one_more_line_is_refused() {
    const LINES: usize = 1_000;
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    // Items "0".."999" with ample stock, users "0"…: one order of them all.
    assert!(c.post("/stock/batch_init/1001/10/1").await.ok());
    assert!(c.post("/payment/batch_init/1/100000").await.ok());
    let order = c.create_order("0").await;
    stream::iter(0..LINES)
        .for_each_concurrent(16, |i| {
            let order = order.clone();
            async move { c.add_item(&order, &i.to_string(), 1).await }
        })
        .await;
    let before = snapshot(c, &order).await;
    assert_eq!(before.0.as_array().map(Vec::len), Some(LINES));

    let over = c.post(&format!("/orders/addItem/{order}/1000/1")).await;
    assert_eq!(over.status, 409, "{over:?}");
    let detail = over.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("1000") && detail.contains("ORDER_MAX_LINES"),
        "{detail}"
    );
    assert_eq!(snapshot(c, &order).await, before);

    let probe = testkit::Probe::start(c, 10).await;
    let answer = c.post(&format!("/orders/checkout/{order}")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    probe.finish().await;
    assert_eq!(c.order(&order).await["paid"], Value::Bool(true));
    assert_eq!(c.credit("0").await, 100_000 - LINES as i64);
    for item in ["0", "499", "999"] {
        assert_eq!(c.stock(item).await, 9, "item {item}");
    }
    assert_eq!(c.stock("1000").await, 10);
    sys.shutdown().await;
}

/// An order past the bounds can only have been stored before them (or
/// before `ORDER_MAX_LINES` was lowered): here 11 lines written straight
/// into order-svc's database under a limit of 10, and a line whose
/// quantity sum left BIGINT. Each checkout fails alone (`invalid_order`,
/// 422), nothing is reserved or charged, and bystanders pass.
#[tokio::test]
async fn an_order_stored_past_the_bounds_fails_its_checkout_alone() {
    let sys = System::builder()
        .in_process()
        .env("ORDER_MAX_LINES", "10")
        .start()
        .await;
    let c = &sys.client;
    let probe = testkit::Probe::start(c, 10).await;
    assert!(c.post("/stock/batch_init/11/10/1").await.ok());
    assert!(c.post("/payment/batch_init/1/1000").await.ok());
    let wide = c.create_order("0").await;
    let deep = c.create_order("0").await;
    let db = sys.db(Binary::Order).client().await;
    db.execute(
        "INSERT INTO order_lines (order_id, item_id, quantity, unit_price)
         SELECT $1, g::text, 1, 1 FROM generate_series(0, 10) AS g",
        &[&wide],
    )
    .await
    .unwrap();
    db.execute("UPDATE orders SET total_cost = 11 WHERE id = $1", &[&wide])
        .await
        .unwrap();
    // As the finding stored it: two lines of 2^63-1 units at price 0. The
    // quantity CHECK holds new lines; it is put back NOT VALID, as an
    // upgraded database with such rows has it.
    db.batch_execute(&format!(
        "ALTER TABLE order_lines DROP CONSTRAINT order_lines_quantity_bound;
         INSERT INTO order_lines (order_id, item_id, quantity, unit_price)
         VALUES ('{deep}', '0', 9223372036854775807, 0), ('{deep}', '0', 9223372036854775807, 0);
         ALTER TABLE order_lines ADD CONSTRAINT order_lines_quantity_bound
             CHECK (quantity <= 1000000000) NOT VALID;"
    ))
    .await
    .unwrap();

    for order in [&wide, &deep] {
        let answer = c.post(&format!("/orders/checkout/{order}")).await;
        assert_eq!(answer.status, 422, "{answer:?}");
        assert_eq!(answer.body["reason"], "invalid_order", "{answer:?}");
    }
    assert_eq!(c.credit("0").await, 1000);
    for item in 0..11 {
        assert_eq!(c.stock(&item.to_string()).await, 10);
    }
    probe.finish().await;
    sys.shutdown().await;
}

/// A nats-server of the test's own whose `max_payload` is 16 KiB: any
/// message over it is refused by the client, as 1 MiB ones are in
/// production. Killed when dropped.
struct SmallNats {
    url: String,
    _child: tokio::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for SmallNats {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl SmallNats {
    const MAX_PAYLOAD: usize = 16 * 1024;

    async fn start() -> SmallNats {
        let dir = std::env::temp_dir().join(format!("checkout-{}", testkit::unique_name()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\nmax_payload: {}\njetstream {{ store_dir: {:?} }}\n",
                Self::MAX_PAYLOAD,
                dir.join("js")
            ),
        )
        .expect("nats.conf");
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let child = tokio::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server (set NATS_SERVER_BIN)");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SmallNats {
            url: format!("nats://127.0.0.1:{port}"),
            _child: child,
            dir,
        }
    }
}

/// A backlog: order-svc is down while 600 checkouts are accepted; when it
/// comes back it takes them in one go, and the reserve, charge, result and
/// outcome batches they cause (tens of KiB each) are far over both the
/// message bound set here (4 KiB) and the server's `max_payload` (16 KiB).
/// Without splitting, that publish is refused and retried for ever and
/// every checkout stalls; split, all complete.
#[tokio::test]
async fn a_backlog_larger_than_a_message_completes() {
    const ORDERS: usize = 600;
    let nats = SmallNats::start().await;
    let mut sys = System::builder()
        .servers(&testkit::db::admin_url(), &nats.url)
        .env("NATS_MAX_MESSAGE_BYTES", "4096")
        .env("ORDER_MAX_LINES", "10")
        .start()
        .await;
    let c = sys.client.clone();
    assert!(c
        .post(&format!("/stock/batch_init/{ORDERS}/1000/1"))
        .await
        .ok());
    assert!(c
        .post(&format!("/payment/batch_init/{ORDERS}/1000"))
        .await
        .ok());
    assert!(c
        .post(&format!("/orders/batch_init/{ORDERS}/{ORDERS}/{ORDERS}/1"))
        .await
        .ok());

    sys.kill(Binary::Order).await;
    let ids: Vec<String> = stream::iter(0..ORDERS)
        .map(|i| {
            let c = c.clone();
            async move {
                let accepted = c.checkout_async(&i.to_string()).await;
                assert_eq!(accepted.status, 202, "{accepted:?}");
                accepted.str("request_id")
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    sys.restart(Binary::Order).await;

    let finals = tokio::time::timeout(
        Duration::from_secs(120),
        stream::iter(ids)
            .map(|id| {
                let c = c.clone();
                async move { workload::final_record(&c, &id).await }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>(),
    )
    .await
    .expect("the backlog completes");
    let failed: Vec<_> = finals.iter().filter(|r| r.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    for b in [Binary::Api, Binary::Order, Binary::Stock, Binary::Payment] {
        let logs = sys.logs(b);
        assert!(!logs.contains("Payload size limit"), "{b:?}: {logs}");
    }
    sys.shutdown().await;
}

/// `saga_outcomes` (asked by the api for records still stored as pending)
/// answers at most `SagaOutcomes::MAX_IDS` IDs per request: one more is
/// refused as invalid, the bound itself is answered (unknown IDs: nothing).
#[tokio::test]
async fn saga_outcome_asks_are_bounded() {
    use contracts::{endpoint::Refusal, messages::order::SagaOutcomes};
    let sys = System::start().await;
    let order = runtime::rpc::RpcClient::new(
        testkit::nats_admin(&testkit::nats_url()).await,
        contracts::Subjects::new(sys.name.clone()),
        Duration::from_secs(5),
    );
    let ids = |n: usize| SagaOutcomes {
        saga_ids: (0..n).map(|_| uuid::Uuid::now_v7()).collect(),
    };
    match order.call(&ids(SagaOutcomes::MAX_IDS + 1), "").await {
        Err(runtime::rpc::CallError::Rejected(r)) => {
            assert_eq!(r.kind, Refusal::Invalid, "{r:?}");
            assert!(r.message.contains("at most 1000"), "{r:?}");
        }
        other => panic!("one ID past the bound: {other:?}"),
    }
    let answered = order
        .call(&ids(SagaOutcomes::MAX_IDS), "")
        .await
        .expect("the bound itself is answered");
    assert!(answered.outcomes.is_empty(), "{:?}", answered.outcomes);
    sys.shutdown().await;
}
