//! End-to-end on a real three-node JetStream cluster of the test's own
//! (`nats/cluster/node.conf`, R3 streams, every binary given all three URLs):
//!
//! - a contended workload (few items with limited stock, users with limited
//!   credit, orders of 1–3 lines, every fifth order checked out twice at
//!   once) runs at a steady pace while one node at a time is SIGKILLed and
//!   restarted (the ORDER stream's leader, then a follower, then the leader
//!   again); afterwards stock and credit are conserved per item and per user,
//!   every 200 is paid, every order answered only 4xx is unpaid, no request
//!   is left pending and no answer is 5xx. The answers by class and how long
//!   checkouts stalled at each kill are printed (`--no-capture`);
//! - the standard consistency workload passes on the cluster with two
//!   replicas of every binary.
//!
//! Bound: each test takes about a minute (three kills of ~3 s plus the
//! restarts, a 60 s limit on the final wait), well inside nextest's 5 min.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{stream, StreamExt};
use serde_json::Value;
use testkit::{
    shop::{Audit, Shop, Spec},
    workload::{self, Mode},
    Binary, Client, NatsCluster, System,
};
use tokio::sync::{watch, Semaphore};

const ITEMS: usize = 4;
const STOCK: i64 = 150;
const USERS: usize = 30;
const CREDIT: i64 = 100;
/// Orders made up front; the firing cycles through them (a repeat checkout of
/// a paid order succeeds at once, of a failed one tries again).
const ORDERS: usize = 400;
/// Every n-th order is checked out twice at the same moment.
const TWICE_EVERY: usize = 5;
/// One order is sent every `PACE` (about 15 checkouts/s with the doubles).
const PACE: Duration = Duration::from_millis(80);
const MAX_IN_FLIGHT: usize = 256;
const WARM_UP: Duration = Duration::from_secs(3);
const DOWN_FOR: Duration = Duration::from_secs(3);
const SETTLE: Duration = Duration::from_secs(3);
const RESTART_TIMEOUT: Duration = Duration::from_secs(90);
const FINAL_WAIT: Duration = Duration::from_secs(60);

/// One checkout as the client saw it.
#[derive(Debug, Clone)]
struct Sent {
    order: usize,
    /// Since the start of the firing.
    start: Duration,
    end: Duration,
    /// HTTP status; 0 when the request itself failed (connection refused,
    /// reset, timeout).
    status: u16,
    request_id: Option<String>,
    body: Value,
}

impl Sent {
    fn latency(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

async fn checkout(c: &Client, order: usize, id: &str, t0: Instant) -> Sent {
    let start = t0.elapsed();
    let sent = c
        .raw()
        .post(format!("{}/orders/checkout/{id}", c.base()))
        .send()
        .await;
    let (status, body) = match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.json::<Value>().await.unwrap_or(Value::Null);
            (status, body)
        }
        Err(e) => (0, Value::String(e.to_string())),
    };
    Sent {
        order,
        start,
        end: t0.elapsed(),
        status,
        request_id: body["request_id"].as_str().map(str::to_owned),
        body,
    }
}

/// Sends one order every `PACE` (cycling through the pool, every
/// `TWICE_EVERY`-th twice at once) until told to stop, then waits for every
/// answer.
async fn fire(
    clients: Vec<Client>,
    ids: Arc<Vec<String>>,
    mut stop: watch::Receiver<bool>,
    t0: Instant,
) -> Vec<Sent> {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(PACE);
    for n in 0usize.. {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let order = n % ids.len();
        let copies = if n % TWICE_EVERY == 0 { 2 } else { 1 };
        for copy in 0..copies {
            let permit = slots.clone().acquire_owned().await.expect("semaphore");
            let c = clients[(n + copy) % clients.len()].clone();
            let ids = ids.clone();
            tasks.spawn(async move {
                let sent = checkout(&c, order, &ids[order], t0).await;
                drop(permit);
                sent
            });
        }
    }
    let mut all = Vec::new();
    while let Some(sent) = tasks.join_next().await {
        all.push(sent.expect("checkout task"));
    }
    all.sort_by_key(|s| s.start);
    all
}

/// One node kill: whom, when, and what it led.
struct Kill {
    node: String,
    roles: Vec<String>,
    at: Duration,
    back: Duration,
}

/// What `node` leads among this test's streams, and the meta group.
async fn roles(
    cluster: &NatsCluster,
    js: &async_nats::jetstream::Context,
    prefix: &str,
    node: &str,
) -> Vec<String> {
    let mut roles = Vec::new();
    for stream in ["ORDER", "STOCK", "PAYMENT", "API"] {
        if cluster
            .stream_leader(js, &format!("{prefix}_{stream}"))
            .await
            == node
        {
            roles.push(format!("{stream} leader"));
        }
    }
    if cluster.meta_leader().await.as_deref() == Some(node) {
        roles.push("meta leader".into());
    }
    if roles.is_empty() {
        roles.push("follower".into());
    }
    roles
}

/// Kills the ORDER stream's leader, then another node (one leading none of
/// our streams if there is one), then the ORDER leader again; each is restarted and healthy (caught
/// up) before the next.
async fn kill_nodes(
    cluster: &mut NatsCluster,
    js: &async_nats::jetstream::Context,
    prefix: &str,
    t0: Instant,
) -> Vec<Kill> {
    let order_stream = format!("{prefix}_ORDER");
    let mut kills = Vec::new();
    for round in 0..3 {
        let leader = cluster.stream_leader(js, &order_stream).await;
        let victim = if round == 1 {
            // A node not killed yet that leads none of our streams, if any.
            let mut other = None;
            for k in 0..cluster.len() {
                let name = cluster.name(k).to_owned();
                if name == leader || kills.iter().any(|k: &Kill| k.node == name) {
                    continue;
                }
                let r = roles(cluster, js, prefix, &name).await;
                if r == ["follower"] || other.is_none() {
                    other = Some(name);
                }
            }
            other.expect("a third node")
        } else {
            leader
        };
        let k = cluster.index_of(&victim).expect("a node of ours");
        let roles = roles(cluster, js, prefix, &victim).await;
        let at = t0.elapsed();
        cluster.kill(k).await;
        tokio::time::sleep(DOWN_FOR).await;
        cluster.restart(k, RESTART_TIMEOUT).await;
        let back = t0.elapsed();
        kills.push(Kill {
            node: victim,
            roles,
            at,
            back,
        });
        tokio::time::sleep(SETTLE).await;
    }
    kills
}

/// The final outcome of a request: true = succeeded, false = failed, None =
/// still pending (or unknown) after `FINAL_WAIT`.
async fn final_status(c: &Client, id: &str, deadline: Instant) -> Option<bool> {
    while Instant::now() < deadline {
        let r = c
            .raw()
            .get(format!("{}/requests/{id}?wait=10", c.base()))
            .send()
            .await;
        if let Ok(r) = r {
            if let Ok(body) = r.json::<Value>().await {
                match body["status"].as_str() {
                    Some("succeeded") => return Some(true),
                    Some("failed") => return Some(false),
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Longest stretch without any completed checkout in `[from, to]`.
fn longest_pause(done: &[Duration], from: Duration, to: Duration) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for &t in done.iter().filter(|&&t| t > from && t <= to) {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(to.saturating_sub(last))
}

async fn node_kills_under_load(replicas: usize) {
    let mut cluster = NatsCluster::start(3).await;
    let mut sys = System::builder()
        .replicas(replicas)
        .env("NATS_URL", &cluster.url())
        .env("NATS_STREAM_REPLICAS", "3")
        .start()
        .await;
    let prefix = sys.name.clone();
    let nats = testkit::nats_admin(&cluster.url()).await;
    let js = async_nats::jetstream::new(nats);
    let c = sys.client.clone();
    let shop = Shop::build(
        &c,
        Spec {
            seed: 13,
            items: ITEMS,
            stock: STOCK,
            max_price: 5,
            users: USERS,
            credit: CREDIT,
            orders: ORDERS,
            max_quantity: 3,
        },
    )
    .await;
    let clients: Vec<Client> = (0..replicas).map(|r| Client::new(sys.api_url(r))).collect();

    let t0 = Instant::now();
    let ids = Arc::new(shop.orders.iter().map(|o| o.id.clone()).collect());
    let (stop_tx, stop_rx) = watch::channel(false);
    let firing = tokio::spawn(fire(clients, ids, stop_rx, t0));
    tokio::time::sleep(WARM_UP).await;
    let kills = kill_nodes(&mut cluster, &js, &prefix, t0).await;
    let _ = stop_tx.send(true);
    let sent = firing.await.expect("firing");

    // Every request that was accepted reaches a final status.
    let deadline = Instant::now() + FINAL_WAIT;
    // (order, outcome, whether the answer was not final and had to be awaited)
    let finals: Vec<(usize, Option<bool>, bool)> = stream::iter(&sent)
        .map(|s| {
            let c = c.clone();
            async move {
                match (s.status, &s.request_id) {
                    (200, _) => (s.order, Some(true), false),
                    (400..=499, _) => (s.order, Some(false), false),
                    (_, Some(id)) => (s.order, final_status(&c, id, deadline).await, true),
                    (_, None) => (s.order, None, false),
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    // --- figures
    let mut classes: BTreeMap<String, usize> = BTreeMap::new();
    for s in &sent {
        let class = match s.status {
            0 => "request error".to_string(),
            200 => "200".into(),
            202 => "202 (still pending)".into(),
            s if (400..500).contains(&s) => format!("{s}"),
            s => format!("{s} (5xx/other)"),
        };
        *classes.entry(class).or_default() += 1;
    }
    let five_xx = sent.iter().filter(|s| s.status >= 500).count();
    let errors = sent.iter().filter(|s| s.status == 0).count();
    let mut done: Vec<Duration> = sent.iter().map(|s| s.end).collect();
    done.sort();
    let mut warm: Vec<Duration> = sent
        .iter()
        .filter(|s| s.end < kills[0].at)
        .map(Sent::latency)
        .collect();
    warm.sort();
    let pct = |v: &[Duration], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    eprintln!(
        "cluster test, {replicas} replica(s) of every binary: {} checkouts of {} orders in {:.1} s; answers by class: {classes:?}",
        sent.len(),
        ORDERS,
        done.last().copied().unwrap_or_default().as_secs_f64()
    );
    eprintln!(
        "  before the first kill: {} checkouts, latency p50 {} p99 {} max {}",
        warm.len(),
        ms(pct(&warm, 0.5)),
        ms(pct(&warm, 0.99)),
        ms(warm.last().copied().unwrap_or_default())
    );
    for (i, k) in kills.iter().enumerate() {
        // Checkouts sent from just before the kill until the node was back.
        let hit: Vec<&Sent> = sent
            .iter()
            .filter(|s| s.start + Duration::from_secs(1) >= k.at && s.start < k.back)
            .collect();
        let worst = hit.iter().map(|s| s.latency()).max().unwrap_or_default();
        let bad = hit
            .iter()
            .filter(|s| s.status >= 500 || s.status == 0)
            .count();
        eprintln!(
            "  kill {}: {} ({}) at {:.1} s, restarted and healthy {:.1} s later; longest pause in completions {}, worst latency of the {} checkouts sent from 1 s before until then {} ({} of them 5xx/errors)",
            i + 1,
            k.node,
            k.roles.join(", "),
            k.at.as_secs_f64(),
            (k.back - k.at).as_secs_f64(),
            ms(longest_pause(&done, k.at, k.back + SETTLE)),
            hit.len(),
            ms(worst),
            bad
        );
    }

    // --- checks; every failure is collected so one run shows them all
    let mut failures: Vec<String> = Vec::new();
    let mut outcomes: HashMap<usize, Vec<Option<bool>>> = HashMap::new();
    let mut pending = 0;
    for (order, outcome, awaited) in finals {
        pending += usize::from(awaited && outcome.is_none());
        outcomes.entry(order).or_default().push(outcome);
    }
    if pending > 0 {
        failures.push(format!(
            "{pending} requests without a final status {FINAL_WAIT:?} after the load"
        ));
    }
    let api_db = sys.db(Binary::Api).client().await;
    let stored_pending: i64 = api_db
        .query_one(
            "SELECT count(*) FROM requests WHERE status = 'pending'",
            &[],
        )
        .await
        .expect("count pending")
        .get(0);
    if stored_pending > 0 {
        failures.push(format!("{stored_pending} request records still pending"));
    }

    let Audit {
        found,
        sold,
        spent,
        problems,
    } = shop.audit(&c).await;
    failures.extend(problems);
    for (i, (o, f)) in shop.orders.iter().zip(&found).enumerate() {
        let paid = f["paid"].as_bool();
        let seen = outcomes.get(&i).cloned().unwrap_or_default();
        let succeeded = seen.contains(&Some(true));
        let only_refused = !seen.is_empty() && seen.iter().all(|o| *o == Some(false));
        if succeeded && paid != Some(true) {
            failures.push(format!(
                "order {}: a checkout succeeded but it is not paid",
                o.id
            ));
        }
        if only_refused && paid != Some(false) {
            failures.push(format!(
                "order {}: every checkout refused but it is paid",
                o.id
            ));
        }
        if seen.is_empty() && paid != Some(false) {
            failures.push(format!("order {}: never checked out but paid", o.id));
        }
    }
    let paid = found.iter().filter(|f| f["paid"] == true).count();
    eprintln!(
        "  paid orders {paid} of {ORDERS}; units sold {sold:?} of {STOCK} each; credit spent {}",
        spent.iter().sum::<i64>()
    );
    if paid == 0 {
        failures.push("no order was paid: the workload did not exercise anything".into());
    }
    if five_xx > 0 || errors > 0 {
        let sample: Vec<String> = sent
            .iter()
            .filter(|s| s.status >= 500 || s.status == 0)
            .take(3)
            .map(|s| format!("{} at {:.1} s: {}", s.status, s.start.as_secs_f64(), s.body))
            .collect();
        failures.push(format!(
            "{five_xx} answers 5xx and {errors} request errors (e.g. {sample:?})"
        ));
    }
    if failures.is_empty() {
        sys.shutdown().await;
    } else {
        for b in Binary::ALL {
            sys.kill(b).await;
        }
        panic!(
            "{} problems on the cluster:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_kills_under_load_one_replica() {
    node_kills_under_load(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_kills_under_load_two_replicas_of_everything() {
    node_kills_under_load(2).await;
}

/// The standard workload (1000 concurrent checkouts of one item with 100
/// units) on the cluster, two replicas of every binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_two_replicas_on_the_cluster() {
    const BUYERS: usize = 1000;
    const UNITS: i64 = 100;
    let cluster = NatsCluster::start(3).await;
    let sys = System::builder()
        .replicas(2)
        .env("NATS_URL", &cluster.url())
        .env("NATS_STREAM_REPLICAS", "3")
        .start()
        .await;
    let w = workload::scarce(&sys.client, BUYERS, UNITS, 32).await;
    let clients: Vec<Client> = (0..2).map(|r| Client::new(sys.api_url(r))).collect();
    let orders: Vec<String> = w.orders.iter().map(|(o, _)| o.clone()).collect();
    let answers = workload::checkout_all(&clients, &orders, Mode::Sync).await;
    assert_eq!(answers.len(), BUYERS);
    let sold = workload::verify_scarce(&sys.client, &w, &answers, UNITS).await;
    assert_eq!(sold, UNITS as usize);
    sys.shutdown().await;
}
