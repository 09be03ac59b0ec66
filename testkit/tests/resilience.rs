//! End-to-end: outages of PostgreSQL and NATS delay checkouts instead of
//! failing them; shutdown drains; a vanished consumer comes back; an
//! accepted checkout survives the api dying right after accepting it; an
//! answered checkout never reads as pending.
//!
//! Outages are made with a TCP proxy between one binary and the shared
//! server ([`testkit::proxy`]), so the real servers, which other tests use,
//! stay up.

use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use testkit::{
    workload::{self, Mode},
    Binary, Client, Dep, System,
};

const BUYERS: usize = 60;
const STOCK: i64 = 40;

/// Fires every checkout at once, cuts `dep` of `binaries` for `outage`
/// while they are in flight, and checks that every answer is a success or
/// a refusal (no 5xx, nothing lost) and that stock and credit add up.
async fn outage_under_load(binaries: &[Binary], dep: Dep, outage: Duration, mode: Mode) {
    let mut builder = System::builder();
    for b in binaries {
        builder = builder.proxied(*b, dep);
    }
    let sys = builder.start().await;
    let c = sys.client.clone();
    let w = workload::scarce(&c, BUYERS, STOCK, 16).await;
    let orders: Vec<String> = w.orders.iter().map(|(o, _)| o.clone()).collect();

    for b in binaries {
        sys.proxy(*b, dep).cut();
    }
    let clients = vec![c.clone()];
    let all = tokio::spawn(async move { workload::checkout_all(&clients, &orders, mode).await });
    tokio::time::sleep(outage).await;
    for b in binaries {
        sys.proxy(*b, dep).restore();
    }
    let answers = tokio::time::timeout(Duration::from_secs(90), all)
        .await
        .expect("checkouts finish once the dependency is back")
        .expect("checkout task");
    let sold = workload::verify_scarce(&c, &w, &answers, STOCK).await;
    assert_eq!(sold as i64, STOCK);
    sys.shutdown().await;
}

#[tokio::test]
async fn postgres_down_at_the_api_and_a_service_delays_checkouts() {
    outage_under_load(
        &[Binary::Api, Binary::Stock],
        Dep::Postgres,
        Duration::from_secs(3),
        Mode::Sync,
    )
    .await;
}

#[tokio::test]
async fn postgres_down_delays_async_acceptance_too() {
    outage_under_load(
        &[Binary::Api, Binary::Order],
        Dep::Postgres,
        Duration::from_secs(3),
        Mode::Async,
    )
    .await;
}

#[tokio::test]
async fn nats_down_at_the_api_and_a_service_delays_checkouts() {
    outage_under_load(
        &[Binary::Api, Binary::Payment],
        Dep::Nats,
        Duration::from_secs(3),
        Mode::Sync,
    )
    .await;
}

/// The api stores a checkout and answers 202, but dies before publishing
/// it (NATS is cut): the restarted api's sweeper publishes it.
#[tokio::test]
async fn a_checkout_accepted_just_before_the_api_died_completes() {
    let mut sys = System::builder()
        .proxied(Binary::Api, Dep::Nats)
        .env("REPUBLISH_AFTER_MS", "1000")
        .env("SWEEP_INTERVAL_MS", "200")
        .start()
        .await;
    let c = sys.client.clone();
    let orders: Vec<String> = stream::iter(0..5)
        .then(|_| {
            let c = c.clone();
            async move { c.order_of_one(10, 3, 5).await }
        })
        .collect()
        .await;
    sys.proxy(Binary::Api, Dep::Nats).cut();
    let mut ids = Vec::new();
    for order in &orders {
        let r = c.checkout_async(order).await;
        assert_eq!(r.status, 202, "accepted without NATS: {r:?}");
        ids.push(r.str("request_id"));
    }
    sys.kill(Binary::Api).await;
    sys.proxy(Binary::Api, Dep::Nats).restore();
    sys.restart(Binary::Api).await;
    for (order, id) in orders.iter().zip(&ids) {
        let r = workload::final_record(&c, id).await;
        assert_eq!(r.body["status"], "succeeded", "{r:?}");
        assert_eq!(c.order(order).await["paid"], true);
    }
    sys.shutdown().await;
}

/// Once a client was answered 200 or 4xx, its record reads final from
/// every replica at once.
#[tokio::test]
async fn an_answered_checkout_never_reads_pending() {
    let sys = System::builder().replicas(2).start().await;
    let (c0, c1) = (Client::new(sys.api_url(0)), Client::new(sys.api_url(1)));
    let w = workload::scarce(&c0, 80, 40, 16).await;
    let checked = stream::iter(w.orders.clone())
        .map(|(order, _)| {
            let (c0, c1) = (c0.clone(), c1.clone());
            async move {
                let answer = c0.post(&format!("/orders/checkout/{order}")).await;
                assert!(answer.status == 200 || answer.status == 409, "{answer:?}");
                let id = answer.str("request_id");
                let record = c1.get(&format!("/requests/{id}")).await;
                assert_eq!(record.status, 200, "{record:?}");
                assert_ne!(record.body["status"], "pending", "answered {answer:?}");
            }
        })
        .buffer_unordered(32)
        .count()
        .await;
    assert_eq!(checked, 80);
    sys.shutdown().await;
}

/// A waiting client is answered as its saga ends, before its record is
/// finalised (a JetStream hop and a commit later), and no replica reads the
/// record pending afterwards. Finalisation is held back here (a trigger
/// makes it sleep 10 s): the answer comes at once; both replicas read the
/// record final at once (they heard the saga end); and replicas started
/// after the answer, which heard nothing and find the stored record still
/// pending, read it final too (they ask order-svc).
#[tokio::test]
async fn the_answer_comes_at_the_saga_end_and_no_replica_reads_it_pending() {
    let mut sys = System::builder().replicas(2).start().await;
    let (c0, c1) = (Client::new(sys.api_url(0)), Client::new(sys.api_url(1)));
    let order = c0.order_of_one(10, 1, 1).await;
    let db = sys.db(Binary::Api).client().await;
    db.batch_execute(
        "CREATE FUNCTION slow_finalisation() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN PERFORM pg_sleep(10); RETURN NULL; END $$;
         CREATE TRIGGER slow_finalisation BEFORE UPDATE OF status ON requests
             FOR EACH STATEMENT EXECUTE FUNCTION slow_finalisation()",
    )
    .await
    .expect("trigger");

    let sent = Instant::now();
    let answer = c0.post(&format!("/orders/checkout/{order}")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "answered at the saga's end, not after the finalisation: {:?}",
        sent.elapsed()
    );
    assert_eq!(answer.body["status"], "succeeded", "{answer:?}");
    let id = answer.str("request_id");
    // The instant the saga ended: the same in every read, before and after
    // the record is stored.
    let ended = answer.body["completed_at"].clone();
    assert!(ended.is_string(), "{answer:?}");
    let stored = || async {
        db.query_one("SELECT status FROM requests WHERE id::text = $1", &[&id])
            .await
            .expect("stored record")
            .get::<_, String>(0)
    };
    for c in [&c0, &c1] {
        let r = c.get(&format!("/requests/{id}")).await;
        assert_eq!(r.body["status"], "succeeded", "{r:?}");
        assert_eq!(r.body["completed_at"], ended, "{r:?}");
    }

    // Replicas that heard nothing of it.
    sys.kill(Binary::Api).await;
    sys.restart(Binary::Api).await;
    assert_eq!(stored().await, "pending", "finalisation still held back");
    for c in [&c0, &c1] {
        let r = c.get(&format!("/requests/{id}")).await;
        assert_eq!(r.body["status"], "succeeded", "{r:?}");
        assert_eq!(r.body["completed_at"], ended, "{r:?}");
    }
    // And the stored record follows.
    let until = Instant::now() + Duration::from_secs(60);
    while stored().await == "pending" && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(stored().await, "succeeded");
    let r = c0.get(&format!("/requests/{id}")).await;
    assert_eq!(r.body["completed_at"], ended, "{r:?}");
    assert_eq!(c0.order(&order).await["paid"], true);
    sys.shutdown().await;
}

/// SIGTERM while checkouts are in flight: each service finishes and
/// acknowledges the batch in hand and exits 0; the api answers the clients
/// it holds. Afterwards nothing is lost and nothing is left unacknowledged.
#[tokio::test]
async fn sigterm_under_load_drains() {
    let mut sys = System::start().await;
    let c = sys.client.clone();
    let w = workload::scarce(&c, 120, 80, 16).await;
    let orders: Vec<String> = w.orders.iter().map(|(o, _)| o.clone()).collect();
    let js = async_nats::jetstream::new(testkit::nats_admin(&testkit::nats_url()).await);
    let clients = vec![c.clone()];
    let all =
        tokio::spawn(async move { workload::checkout_all(&clients, &orders, Mode::Sync).await });
    for (binary, stream, consumer) in [
        (Binary::Order, "ORDER", "order-checkout"),
        (Binary::Stock, "STOCK", "stock"),
        (Binary::Payment, "PAYMENT", "payment"),
    ] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let statuses = sys.terminate(binary).await;
        assert!(
            statuses.iter().all(|s| s.success()),
            "{binary:?} exits 0 after a drain: {statuses:?}"
        );
        // Whatever it held was acknowledged (or handed back) before exit.
        let mut pull: async_nats::jetstream::consumer::PullConsumer = js
            .get_consumer_from_stream(consumer, format!("{}_{stream}", sys.name))
            .await
            .expect("consumer");
        // JetStream applies acks from its own queue, after the process that
        // sent them is gone: give it a moment, far below `ack_wait` (10 s),
        // after which an unsettled message would merely be redelivered.
        let settled = Instant::now() + Duration::from_secs(3);
        let pending = loop {
            let info = pull.info().await.expect("consumer info");
            if info.num_ack_pending == 0 || Instant::now() > settled {
                break info.num_ack_pending;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            pending, 0,
            "{consumer}: delivered but neither acked nor handed back"
        );
        sys.restart(binary).await;
    }
    let answers = tokio::time::timeout(Duration::from_secs(90), all)
        .await
        .expect("all answered")
        .expect("checkout task");
    workload::verify_scarce(&c, &w, &answers, 80).await;

    // The api, holding waiting clients, answers them before it exits.
    let stuck = c.order_of_one(10, 1, 1).await;
    sys.kill(Binary::Stock).await;
    let waiting = tokio::spawn({
        let c = c.clone();
        async move { c.post(&format!("/orders/checkout/{stuck}")).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let statuses = sys.terminate(Binary::Api).await;
    assert!(statuses.iter().all(|s| s.success()), "{statuses:?}");
    let answer = waiting.await.expect("answered");
    assert_eq!(answer.status, 503, "outcome not known yet: {answer:?}");
    assert!(answer.headers.contains_key("location"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the drain is bounded"
    );
    sys.restart(Binary::Stock).await;
    sys.restart(Binary::Api).await;
    let id = answer.str("request_id");
    let done = workload::final_record(&c, &id).await;
    assert_eq!(done.body["status"], "succeeded", "{done:?}");
    sys.shutdown().await;
}

/// A consumer deleted under a running service is created again, and
/// `/ready` says whether the consumers are pulling.
#[tokio::test]
async fn a_deleted_consumer_comes_back() {
    let sys = System::start().await;
    let c = sys.client.clone();
    let js = async_nats::jetstream::new(testkit::nats_admin(&testkit::nats_url()).await);
    let ready_url = format!("{}/ready", sys.urls(Binary::Order)[0]);
    let ready = c.send(c.raw().get(&ready_url)).await;
    assert_eq!(ready.body["consumers"]["order-checkout"], true, "{ready:?}");
    let stream = js
        .get_stream(format!("{}_ORDER", sys.name))
        .await
        .expect("stream");
    stream
        .delete_consumer("order-checkout")
        .await
        .expect("deleted");
    let order = c.order_of_one(10, 2, 3).await;
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        c.post(&format!("/orders/checkout/{order}")),
    )
    .await
    .expect("answered");
    assert_eq!(r.status, 200, "{r:?}");
    let ready = c.send(c.raw().get(&ready_url)).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    sys.shutdown().await;
}

/// Streams are bounded and a full one is back-pressure, never a drop: with
/// order-svc down, checkouts pile up in the ORDER stream until the api
/// refuses new ones with a 503 and `Retry-After` before accepting them;
/// every checkout that was accepted reaches a final status once order-svc
/// is back, and new checkouts are accepted again.
#[tokio::test]
async fn a_full_stream_refuses_before_acceptance_and_loses_nothing() {
    let mut sys = System::builder()
        .env("NATS_STREAM_MAX_BYTES", "65536")
        .start()
        .await;
    let c = sys.client.clone();
    sys.kill(Binary::Order).await;
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..5_000 {
        let r = c
            .send(
                c.raw()
                    .post(format!("{}/orders/checkout/no-such-order-{i}", c.base()))
                    .header("Prefer", "respond-async"),
            )
            .await;
        match r.status {
            202 => accepted.push(r.body["request_id"].as_str().expect("id").to_owned()),
            503 => {
                refused = Some(r);
                break;
            }
            other => panic!("checkout {i}: {other} {r:?}"),
        }
    }
    let refused = refused.expect("a full stream refuses new checkouts");
    assert!(refused.headers.contains_key("retry-after"), "{refused:?}");
    assert!(refused.body.get("request_id").is_none(), "nothing accepted");
    assert!(accepted.len() > 50, "only {} accepted", accepted.len());
    let metrics = c.text(&format!("{}/metrics", c.base())).await;
    assert!(
        metrics.contains("jetstream_stream_max_bytes{stream=\"ORDER\"} 65536"),
        "the backlog is exported"
    );
    assert!(metrics.contains("checkout_backlog_refused_total 1"));

    sys.restart(Binary::Order).await;
    for id in &accepted {
        let done = tokio::time::timeout(Duration::from_secs(60), workload::final_record(&c, id))
            .await
            .expect("an accepted checkout completes");
        assert_eq!(done.body["reason"], "order_not_found", "{done:?}");
    }
    // Drained: new work is accepted again.
    let mut again = 0;
    for _ in 0..50 {
        again = c.checkout_async("no-such-order-again").await.status;
        if again == 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(again, 202);
    sys.shutdown().await;
}
