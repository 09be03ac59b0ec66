//! End-to-end fault injection: a contended workload through the HTTP API
//! while a loop SIGKILLs api, order-svc, stock-svc, payment-svc, PostgreSQL
//! and nats-server in turn and starts each again the way the project does
//! (the binaries as testkit runs them, the servers with `scripts/infra.sh`).
//! PostgreSQL and nats-server are the test's own, on their own ports.
//!
//! Afterwards, once the system has settled: per item and per user, what was
//! removed equals what the paid orders account for; every order answered 200
//! is paid and every order answered only 4xx is not; the request records
//! agree with the orders; nothing is negative; no record is left pending;
//! and no checkout was answered 5xx.
//!
//! Bounds: the fault loop stops after 75 s, the workload's requests time out
//! after 40 s and are not retried past the fault loop plus 10 s, settling
//! waits at most 60 s; the whole test takes about two minutes.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{stream, StreamExt};
use rand::Rng;
use testkit::{
    shop::{Audit, Shop, Spec},
    Binary, LocalInfra, Server, System,
};

const ITEMS: usize = 5;
const STOCK: i64 = 40;
const USERS: usize = 25;
const CREDIT: i64 = 30;
const ORDERS: usize = 160;
/// Every n-th order is checked out twice at the same moment.
const DOUBLE_EVERY: usize = 4;
/// Checkouts start evenly spread over this window (while the faults run).
const WORKLOAD_WINDOW: Duration = Duration::from_secs(55);
const IN_FLIGHT: usize = 16;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
/// Rounds of the fault loop (each kills every target once) and its bound.
const ROUNDS: usize = 2;
const FAULT_LOOP_LIMIT: Duration = Duration::from_secs(75);
/// How long a killed process stays down, and the pause after it is back.
const DOWN: Duration = Duration::from_millis(1500);
const UP: Duration = Duration::from_millis(1500);
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
enum Target {
    Binary(Binary),
    Server(Server),
}

const TARGETS: [Target; 6] = [
    Target::Binary(Binary::Api),
    Target::Binary(Binary::Order),
    Target::Binary(Binary::Stock),
    Target::Binary(Binary::Payment),
    Target::Server(Server::Postgres),
    Target::Server(Server::Nats),
];

fn target_name(t: Target) -> &'static str {
    match t {
        Target::Binary(b) => b.executable(),
        Target::Server(Server::Postgres) => "postgres",
        Target::Server(Server::Nats) => "nats-server",
    }
}

/// One answer to one checkout attempt.
#[derive(Debug, Clone)]
enum Answer {
    Status(u16, String),
    Connect,
    Timeout,
    Transport(String),
}

/// Plain checkouts of `order` until one is answered 2xx or 4xx; a 5xx or a
/// transport error is retried (as a client would) until `retry_until`.
async fn checkout(
    http: reqwest::Client,
    url: String,
    retry_until: Instant,
    answers: Arc<Mutex<Vec<Answer>>>,
    latencies: Arc<Mutex<Vec<Duration>>>,
) {
    for _ in 0..200 {
        let sent = Instant::now();
        let answer = match http.post(&url).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.text().await {
                    Ok(body) => Answer::Status(status, body),
                    Err(e) if e.is_timeout() => Answer::Timeout,
                    Err(e) => Answer::Transport(describe(e)),
                }
            }
            Err(e) if e.is_connect() => Answer::Connect,
            Err(e) if e.is_timeout() => Answer::Timeout,
            Err(e) => Answer::Transport(describe(e)),
        };
        if matches!(answer, Answer::Status(..)) {
            latencies.lock().expect("latencies").push(sent.elapsed());
        }
        let settled = matches!(answer, Answer::Status(s, _) if s < 500);
        answers.lock().expect("answers").push(answer);
        if settled || Instant::now() >= retry_until {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The error and its causes, without the URL (which names the order).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Restarts (as a supervisor would) every binary that ended on its own.
async fn supervise(sys: &mut System, exits: &mut Vec<String>, started: Instant) {
    for b in sys.exited() {
        exits.push(format!(
            "{} at {:.1}s",
            b.executable(),
            started.elapsed().as_secs_f64()
        ));
        sys.restart(b).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_killed_in_turn_under_a_contended_workload() {
    let started = Instant::now();
    let seed: u64 = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("faults: seed {seed} (FAULTS_SEED={seed} repeats the workload)");

    let mut infra = LocalInfra::start(&testkit::unique_name()).await;
    let infra_time = started.elapsed();
    let mut sys = System::builder()
        .servers(infra.admin_url(), infra.nats_url())
        .start()
        .await;
    let system_time = started.elapsed();
    let shop = Shop::build(
        &sys.client,
        Spec {
            seed,
            items: ITEMS,
            stock: STOCK,
            max_price: 4,
            users: USERS,
            credit: CREDIT,
            orders: ORDERS,
            max_quantity: 2,
        },
    )
    .await;
    infra.checkpoint().await;
    eprintln!(
        "faults: PostgreSQL + nats-server up at {:.1}s, binaries at {:.1}s, \
         {ITEMS} items, {USERS} users, {ORDERS} orders at {:.1}s",
        infra_time.as_secs_f64(),
        system_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // The workload, in the background: plain checkouts spread over the
    // window, every DOUBLE_EVERY-th order twice at once.
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client");
    let answers: Vec<Arc<Mutex<Vec<Answer>>>> = (0..ORDERS).map(|_| Arc::default()).collect();
    // How long each HTTP answer took (a stall shows here, not as an error).
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let t0 = Instant::now();
    let retry_until = t0 + FAULT_LOOP_LIMIT + Duration::from_secs(10);
    let base = sys.api_url(0);
    let workload = tokio::spawn({
        let answers = answers.clone();
        let latencies = latencies.clone();
        let ids: Vec<String> = shop.orders.iter().map(|o| o.id.clone()).collect();
        async move {
            stream::iter(ids.into_iter().enumerate())
                .map(|(i, id)| {
                    let (http, answers, lat) =
                        (http.clone(), answers[i].clone(), latencies.clone());
                    let url = format!("{base}/orders/checkout/{id}");
                    let at = t0 + WORKLOAD_WINDOW.mul_f64(i as f64 / ORDERS as f64);
                    async move {
                        tokio::time::sleep_until(at.into()).await;
                        let once = checkout(
                            http.clone(),
                            url.clone(),
                            retry_until,
                            answers.clone(),
                            lat.clone(),
                        );
                        if i % DOUBLE_EVERY == 0 {
                            tokio::join!(once, checkout(http, url, retry_until, answers, lat));
                        } else {
                            once.await;
                        }
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect::<Vec<()>>()
                .await;
        }
    });

    // The fault loop.
    let mut kills: BTreeMap<&str, usize> = BTreeMap::new();
    let mut exits: Vec<String> = Vec::new();
    'rounds: for _ in 0..ROUNDS {
        for target in TARGETS {
            if t0.elapsed() >= FAULT_LOOP_LIMIT {
                break 'rounds;
            }
            let killed_at = t0.elapsed();
            match target {
                Target::Binary(b) => {
                    sys.kill(b).await;
                    tokio::time::sleep(DOWN).await;
                    sys.restart(b).await;
                }
                Target::Server(s) => {
                    infra.kill(s).await;
                    tokio::time::sleep(DOWN).await;
                    infra.up().await;
                }
            }
            let back = t0.elapsed() - killed_at;
            *kills.entry(target_name(target)).or_default() += 1;
            supervise(&mut sys, &mut exits, started).await;
            sys.wait_ready_all().await;
            eprintln!(
                "faults: {} killed at {:.1}s, running again {:.1}s later, all ready after {:.1}s",
                target_name(target),
                killed_at.as_secs_f64(),
                back.as_secs_f64(),
                (t0.elapsed() - killed_at).as_secs_f64()
            );
            tokio::time::sleep(UP).await;
            supervise(&mut sys, &mut exits, started).await;
        }
    }
    let fault_loop = t0.elapsed();
    tokio::time::timeout(
        WORKLOAD_WINDOW + FAULT_LOOP_LIMIT + REQUEST_TIMEOUT * 2,
        workload,
    )
    .await
    .expect("the workload ends in time")
    .expect("the workload task");
    let workload_time = t0.elapsed();

    // Settle: every request record final.
    let api_db = sys.db(Binary::Api).client().await;
    let settle_start = Instant::now();
    let mut pending: i64;
    loop {
        supervise(&mut sys, &mut exits, started).await;
        pending = api_db
            .query_one(
                "SELECT count(*) FROM requests WHERE status = 'pending'",
                &[],
            )
            .await
            .expect("count pending records")
            .get(0);
        if pending == 0 || settle_start.elapsed() >= SETTLE_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settle_time = settle_start.elapsed();

    // Answers by class.
    let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
    // Kinds of 5xx and of other transport errors (status + problem detail,
    // or the error), with their counts.
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let answers: Vec<Vec<Answer>> = answers
        .iter()
        .map(|a| a.lock().expect("answers").clone())
        .collect();
    for a in answers.iter().flatten() {
        let class = match a {
            Answer::Status(200, _) => "2xx (200)",
            Answer::Status(s, _) if *s < 300 => "2xx (other)",
            Answer::Status(s, _) if (400..500).contains(s) => "4xx",
            Answer::Status(s, body) => {
                let detail = serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["detail"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| body.clone());
                let detail: String = detail.chars().take(120).collect();
                *kinds.entry(format!("{s} {detail}")).or_default() += 1;
                if *s >= 500 {
                    "5xx"
                } else {
                    "other status"
                }
            }
            Answer::Connect => "transport (connect)",
            Answer::Timeout => "transport (timeout)",
            Answer::Transport(e) => {
                *kinds.entry(e.chars().take(120).collect()).or_default() += 1;
                "transport (other)"
            }
        };
        *classes.entry(class).or_default() += 1;
    }
    let orders_5xx = answers
        .iter()
        .filter(|a| {
            a.iter()
                .any(|a| matches!(a, Answer::Status(s, _) if *s >= 500))
        })
        .count();
    eprintln!(
        "faults: answers by class {classes:?} ({orders_5xx} orders got a 5xx); \
         kills {kills:?}; binaries that ended on their own: {exits:?}"
    );
    eprintln!(
        "faults: fault loop {:.1}s, workload {:.1}s, settled in {:.1}s, total {:.1}s",
        fault_loop.as_secs_f64(),
        workload_time.as_secs_f64(),
        settle_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let mut lat = latencies.lock().expect("latencies").clone();
    lat.sort();
    let at = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, Duration::as_secs_f64)
    };
    eprintln!(
        "faults: HTTP answers took p50 {:.3}s, p99 {:.3}s, max {:.3}s; {} took over 5 s",
        at(0.5),
        at(0.99),
        at(1.0),
        lat.iter().filter(|d| d.as_secs() >= 5).count()
    );
    for (kind, n) in &kinds {
        eprintln!("faults: {n} × {kind}");
    }

    // The state, read through the API.
    let c = &sys.client;
    let Audit {
        found: state,
        mut problems,
        ..
    } = shop.audit(c).await;
    let mut succeeded_records: HashMap<String, usize> = HashMap::new();
    for row in api_db
        .query(
            "SELECT order_id, count(*) FILTER (WHERE status = 'succeeded') FROM requests
             GROUP BY order_id",
            &[],
        )
        .await
        .expect("request records")
    {
        succeeded_records.insert(row.get(0), row.get::<_, i64>(1) as usize);
    }
    let (mut answered_200, mut only_4xx) = (0, 0);
    for ((o, found), answers) in shop.orders.iter().zip(&state).zip(&answers) {
        let paid = found["paid"] == true;
        let got_200 = answers.iter().any(|a| matches!(a, Answer::Status(200, _)));
        let all_4xx = !answers.is_empty()
            && answers
                .iter()
                .all(|a| matches!(a, Answer::Status(s, _) if (400..500).contains(s)));
        answered_200 += usize::from(got_200);
        only_4xx += usize::from(all_4xx);
        if got_200 && !paid {
            problems.push(format!(
                "order {}: answered 200 but not paid ({answers:?})",
                o.id
            ));
        }
        if all_4xx && paid {
            problems.push(format!(
                "order {}: answered only 4xx but paid ({answers:?})",
                o.id
            ));
        }
        let succeeded = succeeded_records.get(&o.id).copied().unwrap_or(0);
        if paid != (succeeded > 0) {
            problems.push(format!(
                "order {}: paid = {paid} but {succeeded} succeeded request records",
                o.id
            ));
        }
    }
    if pending > 0 {
        problems.push(format!(
            "{pending} request records still pending {}s after the workload",
            SETTLE_LIMIT.as_secs()
        ));
    }
    for t in TARGETS {
        if !kills.contains_key(target_name(t)) {
            problems.push(format!(
                "{} was never killed (the fault loop ran out of time)",
                target_name(t)
            ));
        }
    }
    // A workload where nothing (or everything) succeeds proves little.
    if answered_200 == 0 || only_4xx == 0 {
        problems.push(format!(
            "not contended as intended: {answered_200} orders answered 200, {only_4xx} only 4xx"
        ));
    }
    eprintln!("faults: {answered_200} orders answered 200, {only_4xx} only 4xx, of {ORDERS}");
    // Last, so that a consistency problem is reported first.
    if let Some(n) = classes.get("5xx") {
        problems.push(format!(
            "{n} checkout answers (to {orders_5xx} orders) were 5xx (must be 0); kinds above"
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problems (logs: {} and {}):\n{}",
        problems.len(),
        sys.log_dir().display(),
        infra.state_dir().join("log").display(),
        problems.join("\n")
    );
    sys.shutdown().await;
    infra.shutdown().await;
}
