//! Hostile calls of the setup endpoints (`batch_init`): a storm of
//! concurrent inits, some of whose clients hang up mid-call, and
//! out-of-range sizes. Only one init runs per service at a time (the rest
//! are refused at once with 409), a call whose client left is rolled back,
//! and bystander checkouts keep completing within the probe's bound.

use std::time::Duration;

use futures::future::join_all;
use testkit::{Binary, Probe, System};

/// Sizes a storm uses: an orders init of this many rows locks `orders`
/// for a fraction of a second, the legitimate cost of one init.
const N: u64 = 5_000;

#[tokio::test]
async fn an_init_storm_runs_one_at_a_time_and_bystanders_pass() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let probe = Probe::start(c, 20).await;

    let paths = [
        format!("/orders/batch_init/{N}/{N}/{N}/1"),
        format!("/stock/batch_init/{N}/100/1"),
        format!("/payment/batch_init/{N}/100"),
        // Sizes the fuzzer loves: the maximum, cancelled by the client
        // hanging up below.
        "/orders/batch_init/10000000/10000000/10000000/1".to_owned(),
        "/stock/batch_init/10000000/1/1".to_owned(),
    ];
    // A client that hangs up after 300 ms (its connection closes).
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let mut calls = Vec::new();
    for round in 0..8 {
        for (i, path) in paths.iter().enumerate() {
            let url = format!("{}{path}", c.base());
            let hangs_up = i >= 3 || round % 3 == 0;
            let (c, impatient) = (c.clone(), impatient.clone());
            calls.push(tokio::spawn(async move {
                if hangs_up {
                    // Either refused at once, or cut off by the client.
                    match impatient.post(&url).send().await {
                        Ok(r) => Some(r.status().as_u16()),
                        Err(e) => {
                            assert!(e.is_timeout(), "{url}: {e}");
                            None
                        }
                    }
                } else {
                    Some(c.send(c.raw().post(&url)).await.status)
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answers: Vec<Option<u16>> = join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("call task"))
        .collect();
    let refused = answers.iter().filter(|a| **a == Some(409)).count();
    for a in answers.iter().flatten() {
        assert!(matches!(a, 200 | 409), "answers: {answers:?}");
    }
    assert!(refused > 0, "nothing was refused: {answers:?}");

    // The cut-off inits were rolled back and released the lock: a new init
    // runs at once, and only whole inits of N were ever committed.
    for path in &paths[..3] {
        let t0 = std::time::Instant::now();
        let a = loop {
            let a = c.post(path).await;
            if a.status != 409 || t0.elapsed() > Duration::from_secs(10) {
                break a;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(a.status, 200, "{path}: {a:?}");
    }
    let order_db = sys.db(Binary::Order).client().await;
    let batch_orders: i64 = order_db
        .query_one("SELECT count(*) FROM orders WHERE id ~ '^[0-9]+$'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(batch_orders, N as i64, "no row of a cancelled init is left");
    probe.finish().await;
    println!("storm answers: {answers:?}");
    sys.shutdown().await;
}

#[tokio::test]
async fn out_of_range_inits_are_refused_and_bystanders_pass() {
    let sys = System::builder().in_process().start().await;
    let c = &sys.client;
    let probe = Probe::start(c, 10).await;
    let huge = "99999999999999999999";
    for path in [
        format!("/orders/batch_init/{huge}/1/1/1"),
        "/orders/batch_init/10000001/1/1/1".to_owned(),
        "/orders/batch_init/1/0/1/1".to_owned(),
        "/orders/batch_init/1/1/9223372036854775807/1".to_owned(),
        "/orders/batch_init/1/1/1/9223372036854775807".to_owned(),
        "/stock/batch_init/10000001/1/1".to_owned(),
        format!("/stock/batch_init/1/{huge}/1"),
        "/payment/batch_init/10000001/1".to_owned(),
        "/payment/batch_init/1/-5".to_owned(),
    ] {
        let a = c.post(&path).await;
        assert_eq!(a.status, 400, "{path}: {a:?}");
    }
    probe.finish().await;
    sys.shutdown().await;
}
