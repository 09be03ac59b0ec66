//! `consistency`: the standard workload and its verdict.
//!
//! Populates through the public API (create + add endpoints, fresh IDs, so other data is not
//! touched), reads the populated state back as the baseline, fires every checkout at once,
//! records each answer, then reads items, users and orders back and evaluates the verdict.

use super::Consistency;
use crate::class::{classify, Class};
use crate::kind::{Env, Ran};
use crate::load::{concurrent, WorkloadError};
use crate::progress::Ui;
use crate::stats::{Latency, LatencySummary};
use crate::verdict::{self, Answer, FinalState, ItemInit, OrderInit, Setup, Verdict};
use api_client::{Api, ApiError, Status};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// One checkout's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckoutAnswer {
    pub order_id: String,
    pub status: String,
    pub answer: Answer,
    pub latency_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsistencyResult {
    pub populate_s: f64,
    pub checkout_s: f64,
    pub verify_s: f64,
    /// Full reads of the final state (repeated until it stayed unchanged for the quiet period).
    pub verify_reads: u32,
    /// False if the state was still changing when --settle-timeout ran out.
    pub state_stable: bool,
    pub quiet_period_s: f64,
    pub checkout_latency: LatencySummary,
    pub status_codes: BTreeMap<String, u64>,
    pub verdict: Verdict,
    pub answers: Vec<CheckoutAnswer>,
    /// IDs of the items and users created (index = the `#n` in the verdict details).
    pub item_ids: Vec<String>,
    pub user_ids: Vec<String>,
}

/// The state the verdict looks at.
#[derive(Clone, Debug, PartialEq)]
struct Snapshot {
    items: Vec<api_client::ItemState>,
    credit: Vec<i64>,
    orders: Vec<api_client::OrderState>,
}

fn answer_of(class: Class) -> Answer {
    match class {
        Class::Success => Answer::Success,
        Class::Business => Answer::BusinessFailure,
        Class::Error => Answer::Error,
    }
}

/// The populate plan: which item each line of each order takes.
fn plan_setup(a: &Consistency) -> Setup {
    let items = a.items as usize;
    let users = a.users as usize;
    Setup {
        items: (0..items)
            .map(|_| ItemInit {
                stock: a.stock,
                price: a.price,
            })
            .collect(),
        users: vec![a.credit; users],
        orders: (0..a.orders as usize)
            .map(|o| OrderInit {
                user: o % users.max(1),
                lines: (0..a.items_per_order as usize)
                    .map(|j| ((o + j) % items.max(1), a.quantity))
                    .collect(),
            })
            .collect(),
    }
}

fn validate(a: &Consistency) -> Result<(), WorkloadError> {
    let p = |m: &str| Err(WorkloadError::Params(m.to_string()));
    if a.items == 0 || a.users == 0 || a.orders == 0 {
        return p("--items, --users and --orders must be >= 1");
    }
    if a.items_per_order == 0 || a.quantity <= 0 {
        return p("--items-per-order and --quantity must be >= 1");
    }
    if a.stock < 0 || a.price < 0 || a.credit < 0 {
        return p("--stock, --price and --credit must be >= 0");
    }
    if a.orders > 1_000_000 || a.users > 1_000_000 || a.items > 1_000_000 {
        return p("at most 1,000,000 items, users and orders");
    }
    Ok(())
}

pub async fn run(env: &Env<'_>, a: &Consistency) -> Ran<ConsistencyResult> {
    let (api, ui) = (env.api, env.ui);
    validate(a)?;
    let setup = plan_setup(a);
    let pc = a.populate_concurrency.max(1);
    let t0 = Instant::now();

    // --- populate
    ui.note(format!(
        "consistency: populating {} items (stock {}, price {}), {} users (credit {}), {} orders",
        a.items, a.stock, a.price, a.users, a.credit, a.orders
    ));
    let (stock, price, credit) = (a.stock, a.price, a.credit);
    let item_ids = Arc::new(
        each(ui, "items", a.items, pc, api, move |api, _| async move {
            let id = api.create_item(price).await?;
            if stock > 0 {
                api.add_stock(&id, stock).await?;
            }
            Ok(id)
        })
        .await?,
    );
    let user_ids = Arc::new(
        each(ui, "users", a.users, pc, api, move |api, _| async move {
            let id = api.create_user().await?;
            if credit > 0 {
                api.add_funds(&id, credit).await?;
            }
            Ok(id)
        })
        .await?,
    );
    let (items, users, s) = (item_ids.clone(), user_ids.clone(), Arc::new(setup.clone()));
    let order_ids = each(ui, "orders", a.orders, pc, api, move |api, o| {
        let (items, users, s) = (items.clone(), users.clone(), s.clone());
        async move {
            let order = &s.orders[o];
            let id = api.create_order(&users[order.user]).await?;
            for &(i, q) in &order.lines {
                api.add_item(&id, &items[i], q).await?;
            }
            Ok(id)
        }
    })
    .await?;

    // --- baseline: what the system says it holds now
    let base = read_state(api, &item_ids, &user_ids, &[], pc, ui, "baseline").await?;
    let (base_items, base_credit) = (base.items, base.credit);
    for (i, st) in base_items.iter().enumerate() {
        if st.stock != a.stock || st.price != a.price {
            return Err(WorkloadError::Setup(format!(
                "item {} reads stock {} price {} after populate, expected stock {} price {}",
                item_ids[i], st.stock, st.price, a.stock, a.price
            )));
        }
    }
    if let Some((u, c)) = base_credit.iter().enumerate().find(|(_, &c)| c != a.credit) {
        return Err(WorkloadError::Setup(format!(
            "user {} reads credit {c} after populate, expected {}",
            user_ids[u], a.credit
        )));
    }
    let populate_s = t0.elapsed().as_secs_f64();

    // --- all checkouts at once
    let n = order_ids.len();
    let limit = if a.concurrency == 0 { n } else { a.concurrency };
    ui.note(format!(
        "consistency: firing {n} checkouts ({} at once)",
        limit.min(n)
    ));
    let sem = Arc::new(Semaphore::new(limit.clamp(1, Semaphore::MAX_PERMITS)));
    let (go_tx, go_rx) = watch::channel(false);
    let mut js = JoinSet::new();
    for (o, id) in order_ids.iter().enumerate() {
        let (api, sem, mut go, id) = (api.clone(), sem.clone(), go_rx.clone(), id.clone());
        js.spawn(async move {
            let _ = go.wait_for(|v| *v).await;
            let _permit = sem.acquire_owned().await.ok();
            let t = Instant::now();
            let st = api.checkout(&id).await;
            (o, st, t.elapsed())
        });
    }
    tokio::task::yield_now().await;
    let t1 = Instant::now();
    let _ = go_tx.send(true);
    let bar = ui.bar(n as u64, "checkouts");
    let mut results: Vec<Option<(Status, std::time::Duration)>> = vec![None; n];
    while let Some(r) = js.join_next().await {
        let (o, st, lat) = r.map_err(|e| WorkloadError::Join(e.to_string()))?;
        results[o] = Some((st, lat));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let checkout_s = t1.elapsed().as_secs_f64();
    let mut latency = Latency::new();
    let mut status_codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut answers = Vec::with_capacity(n);
    let mut checkout_answers = Vec::with_capacity(n);
    for (o, r) in results.into_iter().enumerate() {
        let (st, lat) = r.ok_or_else(|| WorkloadError::Join("a checkout task vanished".into()))?;
        latency.record(lat);
        *status_codes.entry(st.key()).or_insert(0) += 1;
        let ans = answer_of(classify(st));
        answers.push(ans);
        checkout_answers.push(CheckoutAnswer {
            order_id: order_ids[o].clone(),
            status: st.key(),
            answer: ans,
            latency_ms: lat.as_secs_f64() * 1000.0,
        });
    }

    // --- verify: read until the state stops changing (outcomes of errored checkouts and
    // compensations may still be in flight)
    tokio::time::sleep(a.settle).await;
    let t2 = Instant::now();
    let mut reads = 1u32;
    let mut snap = read_state(api, &item_ids, &user_ids, &order_ids, pc, ui, "verify").await?;
    let mut unchanged_since = Instant::now();
    let state_stable = loop {
        if reads >= 2 && unchanged_since.elapsed() >= a.quiet_period {
            break true;
        }
        if t2.elapsed() >= a.settle_timeout {
            break false;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let next = read_state(api, &item_ids, &user_ids, &order_ids, pc, ui, "verify").await?;
        reads += 1;
        if next != snap {
            ui.note("consistency: state still changing, reading again");
            snap = next;
            unchanged_since = Instant::now();
        }
    };
    let verify_s = t2.elapsed().as_secs_f64();
    let Snapshot {
        items: fin_items,
        credit: fin_credit,
        orders: fin_orders,
    } = snap;

    // The baseline read back is the starting point (equal to the plan, checked above).
    let mut baseline = setup;
    for (i, st) in base_items.iter().enumerate() {
        baseline.items[i].stock = st.stock;
        baseline.items[i].price = st.price;
    }
    baseline.users = base_credit;
    let fin = FinalState {
        item_stock: fin_items.iter().map(|s| s.stock).collect(),
        user_credit: fin_credit,
        order_paid: fin_orders.iter().map(|o| o.paid).collect(),
        order_total: fin_orders.iter().map(|o| o.total_cost).collect(),
    };
    let mut verdict = verdict::evaluate(&baseline, &answers, &fin)?;
    if !state_stable {
        verdict.warnings.push(format!(
            "the state was still changing after {:.0} s ({reads} reads): the verdict reflects the last read",
            verify_s
        ));
    }
    let params = serde_json::json!({
        "items": a.items, "stock": a.stock, "price": a.price, "users": a.users,
        "credit": a.credit, "orders": a.orders, "items_per_order": a.items_per_order,
        "quantity": a.quantity, "concurrency": a.concurrency,
        "populate_concurrency": a.populate_concurrency, "settle_s": a.settle.as_secs_f64(),
        "settle_timeout_s": a.settle_timeout.as_secs_f64(),
        "quiet_period_s": a.quiet_period.as_secs_f64(),
    });
    Ok((
        ConsistencyResult {
            populate_s,
            checkout_s,
            verify_s,
            verify_reads: reads,
            state_stable,
            quiet_period_s: a.quiet_period.as_secs_f64(),
            checkout_latency: latency.summary(),
            status_codes,
            verdict,
            answers: checkout_answers,
            item_ids: item_ids.to_vec(),
            user_ids: user_ids.to_vec(),
        },
        params,
    ))
}

/// `f(api, i)` for `i` in `0..n`, `concurrency` at a time, under a progress bar.
async fn each<T, F, Fut>(
    ui: &Ui,
    what: &str,
    n: u64,
    concurrency: usize,
    api: &Api,
    f: F,
) -> Result<Vec<T>, WorkloadError>
where
    F: Fn(Api, usize) -> Fut,
    Fut: Future<Output = Result<T, WorkloadError>> + Send + 'static,
    T: Send + 'static,
{
    let bar = ui.bar(n, what);
    let out = concurrent(n as usize, concurrency, &bar, |i| f(api.clone(), i)).await?;
    bar.finish_and_clear();
    Ok(out)
}

/// `read(api, id)` of every ID, `concurrency` at a time.
async fn read_all<T, F, Fut>(
    api: &Api,
    ids: &[String],
    concurrency: usize,
    bar: &ProgressBar,
    read: F,
) -> Result<Vec<T>, WorkloadError>
where
    F: Fn(Api, String) -> Fut,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
{
    concurrent(ids.len(), concurrency, bar, |i| {
        let read = read(api.clone(), ids[i].clone());
        async move { Ok(read.await?) }
    })
    .await
}

/// Reads the items, users and orders back, under a progress bar named `what`.
async fn read_state(
    api: &Api,
    items: &[String],
    users: &[String],
    orders: &[String],
    pc: usize,
    ui: &Ui,
    what: &str,
) -> Result<Snapshot, WorkloadError> {
    let bar = ui.bar((items.len() + users.len() + orders.len()) as u64, what);
    let items = read_all(api, items, pc, &bar, |api, id| async move {
        api.find_item(&id).await
    })
    .await?;
    let credit = read_all(api, users, pc, &bar, |api, id| async move {
        api.find_user(&id).await
    })
    .await?;
    let orders = read_all(api, orders, pc, &bar, |api, id| async move {
        api.find_order(&id).await
    })
    .await?;
    bar.finish_and_clear();
    Ok(Snapshot {
        items,
        credit,
        orders,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn args() -> Consistency {
        Consistency {
            items: 3,
            stock: 100,
            price: 2,
            users: 4,
            credit: 1,
            orders: 10,
            items_per_order: 2,
            quantity: 1,
            concurrency: 0,
            populate_concurrency: 8,
            settle: Duration::ZERO,
            settle_timeout: Duration::ZERO,
            quiet_period: Duration::ZERO,
        }
    }

    #[test]
    fn setup_plan_shape() {
        let s = plan_setup(&args());
        assert_eq!(s.items.len(), 3);
        assert_eq!(s.users, vec![1; 4]);
        assert_eq!(s.orders.len(), 10);
        assert_eq!(s.orders[5].user, 1);
        assert_eq!(s.orders[5].lines, vec![(2, 1), (0, 1)]);
        assert!(validate(&args()).is_ok());
        let mut bad = args();
        bad.quantity = 0;
        assert!(validate(&bad).is_err());
    }
}
