//! The standard consistency workload: one scarce item, many buyers.

use std::collections::HashMap;

use futures::{stream, StreamExt};

use crate::http::{Answer, Client};

/// Users `"0"`.. with credit 1 each, one item with `stock` units at price 1,
/// and one single-unit order of it per user.
pub struct Scarce {
    pub item: String,
    /// (order, user)
    pub orders: Vec<(String, String)>,
}

/// How a checkout is sent and its outcome learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain POST, waits for the outcome.
    Sync,
    /// `Prefer: respond-async`, then long-polls the record.
    Async,
}

/// Builds the workload through the public API (`concurrency` requests at a
/// time).
pub async fn scarce(c: &Client, buyers: usize, stock: i64, concurrency: usize) -> Scarce {
    let item = c.create_item(1).await;
    c.add_stock(&item, stock).await;
    let r = c.post(&format!("/payment/batch_init/{buyers}/1")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let orders: Vec<(String, String)> = stream::iter(0..buyers)
        .map(|u| {
            let (c, item) = (c.clone(), item.clone());
            async move {
                let user = u.to_string();
                let order = c.create_order(&user).await;
                c.add_item(&order, &item, 1).await;
                (order, user)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Scarce { item, orders }
}

/// Fires one checkout per order, all at once (spread over `clients`), and
/// returns each order's final answer: (HTTP status of the outcome, body).
pub async fn checkout_all(
    clients: &[Client],
    orders: &[String],
    mode: Mode,
) -> HashMap<String, Answer> {
    let futures = orders.iter().enumerate().map(|(i, order)| {
        let c = clients[i % clients.len()].clone();
        let order = order.clone();
        async move {
            let answer = checkout(&c, &order, mode).await;
            (order, answer)
        }
    });
    futures::future::join_all(futures)
        .await
        .into_iter()
        .collect()
}

/// One checkout; in async mode the answer is synthesised from the final
/// record (200 for succeeded, 409 for failed) so both modes compare.
pub async fn checkout(c: &Client, order: &str, mode: Mode) -> Answer {
    match mode {
        Mode::Sync => c.post(&format!("/orders/checkout/{order}")).await,
        Mode::Async => {
            let accepted = c.checkout_async(order).await;
            assert_eq!(accepted.status, 202, "{accepted:?}");
            let id = accepted.str("request_id");
            final_record(c, &id).await
        }
    }
}

/// Long-polls a request record until it is final.
pub async fn final_record(c: &Client, id: &str) -> Answer {
    for _ in 0..40 {
        let mut r = c.get(&format!("/requests/{id}?wait=30")).await;
        assert_eq!(r.status, 200, "{r:?}");
        match r.body["status"].as_str() {
            Some("succeeded") => return r,
            Some("failed") => {
                r.status = 409;
                return r;
            }
            _ => {}
        }
    }
    panic!("request {id} never became final");
}

/// Checks the workload's invariants against the answers and returns the
/// number of successful checkouts.
pub async fn verify_scarce(
    c: &Client,
    w: &Scarce,
    answers: &HashMap<String, Answer>,
    stock: i64,
) -> usize {
    let ok: Vec<&String> = answers
        .iter()
        .filter(|(_, a)| a.status == 200)
        .map(|(o, _)| o)
        .collect();
    for (order, a) in answers {
        assert!(
            a.status == 200 || (400..500).contains(&a.status),
            "order {order}: an answer that is neither success nor refusal: {a:?}"
        );
    }
    let sold = ok.len() as i64;
    assert_eq!(
        sold,
        stock.min(w.orders.len() as i64),
        "every unit sold, none twice"
    );
    assert_eq!(c.stock(&w.item).await, stock - sold, "stock left");
    let user_of: HashMap<&String, &String> = w.orders.iter().map(|(o, u)| (o, u)).collect();
    let charged: Vec<String> = stream::iter(&w.orders)
        .map(|(_, u)| async move { (u.clone(), c.credit(u).await) })
        .buffer_unordered(32)
        .filter_map(|(u, credit)| async move { (credit == 0).then_some(u) })
        .collect()
        .await;
    let mut expect: Vec<String> = ok.iter().map(|o| user_of[o].clone()).collect();
    let mut charged = charged;
    expect.sort();
    charged.sort();
    assert_eq!(
        charged, expect,
        "exactly the users whose checkout succeeded were charged"
    );
    for (order, a) in answers {
        let paid = c.order(order).await["paid"].as_bool();
        assert_eq!(
            paid,
            Some(a.status == 200),
            "order {order} paid flag vs answer"
        );
    }
    ok.len()
}
