//! Whole-system consistency, checked in the four databases behind the
//! API's back: what the checkout sagas recorded, what the stock and payment
//! ledgers applied and what the api told clients must agree, whatever
//! traffic came before (a fuzzer's included).
//!
//! Stock and credit levels themselves cannot be reconciled after arbitrary
//! traffic (`add`, `subtract`, `pay` and `batch_init` change them outside
//! any ledger); their CHECK constraints keep them non-negative, and
//! [`check`] re-reads that too.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde_json::Value;
use uuid::Uuid;

use crate::{Binary, System};

/// One ledger row (stock `reservations` or payment `charges`).
#[derive(Debug, Clone)]
struct Entry {
    lines: Vec<(String, i64)>,
    outcome: String,
    compensated: bool,
}

#[derive(Debug, Clone)]
struct Saga {
    order_id: String,
    amount: i64,
    items: Vec<(String, i64)>,
    state: String,
    reserve: Option<String>,
    charge: Option<String>,
}

/// Waits until no checkout is in flight (every saga final, every request
/// record final), at most `within`.
pub async fn settle(sys: &System, within: Duration) {
    let order = sys.db(Binary::Order).client().await;
    let api = sys.db(Binary::Api).client().await;
    let deadline = Instant::now() + within;
    loop {
        let sagas: i64 = order
            .query_one(
                "SELECT count(*) FROM sagas WHERE state NOT IN ('succeeded', 'failed')",
                &[],
            )
            .await
            .expect("count running sagas")
            .get(0);
        let pending: i64 = api
            .query_one(
                "SELECT count(*) FROM requests WHERE status = 'pending'",
                &[],
            )
            .await
            .expect("count pending requests")
            .get(0);
        if sagas == 0 && pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not settled within {within:?}: {sagas} sagas running, {pending} requests pending"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn summed(lines: &[(String, i64)]) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    for (k, v) in lines {
        match out.iter_mut().find(|(a, _)| a == k) {
            Some((_, total)) => *total += v,
            None => out.push((k.clone(), *v)),
        }
    }
    out.sort();
    out
}

async fn ledger(sys: &System, binary: Binary, table: &str) -> HashMap<Uuid, Entry> {
    let db = sys.db(binary).client().await;
    db.query(
        &format!("SELECT saga_id, lines, outcome, compensated FROM {table}"),
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("read {table}: {e}"))
    .iter()
    .map(|r| {
        let lines: Value = r.get(1);
        let entry = Entry {
            lines: serde_json::from_value(lines).expect("ledger lines are [[account, amount]]"),
            outcome: r.get(2),
            compensated: r.get(3),
        };
        (r.get(0), entry)
    })
    .collect()
}

/// Asserts every invariant; returns how many sagas were checked. Call
/// [`settle`] first.
pub async fn check(sys: &System) -> usize {
    let order = sys.db(Binary::Order).client().await;
    let sagas: HashMap<Uuid, Saga> = order
        .query(
            "SELECT id, order_id, amount, items, state, reserve, charge FROM sagas",
            &[],
        )
        .await
        .expect("read sagas")
        .iter()
        .map(|r| {
            let items: Value = r.get(3);
            let saga = Saga {
                order_id: r.get(1),
                amount: r.get(2),
                items: serde_json::from_value(items).expect("saga items are [[item, qty]]"),
                state: r.get(4),
                reserve: r.get(5),
                charge: r.get(6),
            };
            (r.get(0), saga)
        })
        .collect();
    let reservations = ledger(sys, Binary::Stock, "reservations").await;
    let charges = ledger(sys, Binary::Payment, "charges").await;

    for (name, book, step) in [
        ("reservation", &reservations, "reserve"),
        ("charge", &charges, "charge"),
    ] {
        for (id, e) in book {
            let saga = sagas
                .get(id)
                .unwrap_or_else(|| panic!("{name} {id} belongs to no saga"));
            let recorded = if step == "reserve" {
                &saga.reserve
            } else {
                &saga.charge
            };
            assert_eq!(
                recorded.as_deref(),
                Some(e.outcome.as_str()),
                "saga {id}: its {step} outcome differs from the {name} ledger"
            );
            if e.outcome == "done" {
                assert_eq!(
                    e.compensated,
                    saga.state != "succeeded",
                    "saga {id} ({}): {name} compensated = {}",
                    saga.state,
                    e.compensated
                );
            }
        }
    }
    for (id, s) in &sagas {
        let reserved = reservations.get(id);
        let charged = charges.get(id);
        if s.state == "succeeded" && s.reserve.is_some() {
            let r = reserved.unwrap_or_else(|| panic!("saga {id} succeeded without reservation"));
            let c = charged.unwrap_or_else(|| panic!("saga {id} succeeded without charge"));
            assert_eq!(
                (r.outcome.as_str(), c.outcome.as_str()),
                ("done", "done"),
                "saga {id}"
            );
            assert_eq!(
                summed(&r.lines),
                summed(&s.items),
                "saga {id}: reserved lines"
            );
            let total: i64 = c.lines.iter().map(|(_, a)| a).sum();
            assert_eq!(total, s.amount, "saga {id}: charged amount");
        }
        if s.state == "failed" {
            for (name, e) in [("reservation", reserved), ("charge", charged)] {
                if let Some(e) = e.filter(|e| e.outcome == "done") {
                    assert!(e.compensated, "failed saga {id}: {name} not compensated");
                }
            }
        }
    }
    // A paid order was paid by a saga that succeeded (batch_init may reset
    // a paid order to unpaid, never the other way round).
    let unpaid_by_saga: Vec<String> = order
        .query(
            "SELECT o.id FROM orders o WHERE o.paid AND NOT EXISTS
               (SELECT 1 FROM sagas s WHERE s.order_id = o.id AND s.state = 'succeeded')",
            &[],
        )
        .await
        .expect("read orders")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        unpaid_by_saga.is_empty(),
        "paid orders without a successful checkout: {unpaid_by_saga:?}"
    );
    // What the api recorded (and told clients) is what the saga decided.
    let api = sys.db(Binary::Api).client().await;
    for r in api
        .query("SELECT id, order_id, status FROM requests", &[])
        .await
        .expect("read requests")
    {
        let (id, order_id, status): (Uuid, String, String) = (r.get(0), r.get(1), r.get(2));
        match sagas.get(&id) {
            Some(s) => {
                assert_eq!(s.order_id, order_id, "request {id}: order");
                assert_eq!(s.state, status, "request {id}: status vs saga");
            }
            // A checkout refused before any saga (e.g. malformed) is failed.
            None => assert_eq!(status, "failed", "request {id} has no saga"),
        }
    }
    for (binary, sql) in [
        (Binary::Stock, "SELECT count(*) FROM items WHERE stock < 0"),
        (
            Binary::Payment,
            "SELECT count(*) FROM users WHERE credit < 0",
        ),
    ] {
        let negative: i64 = sys
            .db(binary)
            .client()
            .await
            .query_one(sql, &[])
            .await
            .expect("count negatives")
            .get(0);
        assert_eq!(negative, 0, "{sql}");
    }
    sagas.len()
}
