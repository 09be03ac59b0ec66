//! Pure arithmetic of the consistency verdict and of the sweep's saturation point.
//!
//! The consistency verdict compares what the clients were told (each checkout's answer) with
//! what the system reports afterwards through its own API. A checkout that answered with an
//! error (5xx, timeout, connection error) may or may not have happened, so every quantity that
//! depends on answers is checked against a range: at least what the 2xx answers imply, at most
//! that plus what the errored checkouts could add. Any value outside its range is a proven
//! inconsistency (FAIL); if everything fits but some answers were errors, the run is
//! INCONCLUSIVE; otherwise it PASSes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The answer a checkout got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// 2xx.
    Success,
    /// 4xx.
    BusinessFailure,
    /// Anything else: outcome unknown.
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemInit {
    pub stock: i64,
    pub price: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderInit {
    /// Index into `Setup::users`.
    pub user: usize,
    /// (index into `Setup::items`, quantity), one per `addItem` call.
    pub lines: Vec<(usize, i64)>,
}

/// The state the harness populated before the checkouts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    pub items: Vec<ItemInit>,
    /// Starting credit of each user.
    pub users: Vec<i64>,
    pub orders: Vec<OrderInit>,
}

/// The state read back after the checkouts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FinalState {
    pub item_stock: Vec<i64>,
    pub user_credit: Vec<i64>,
    pub order_paid: Vec<bool>,
    pub order_total: Vec<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerdictError {
    #[error("{what}: expected {expected} entries, got {got}")]
    Shape {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("order {order} refers to {what} {index}, which does not exist")]
    BadIndex {
        order: usize,
        what: &'static str,
        index: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictStatus {
    Pass,
    Fail,
    Inconclusive,
}

impl fmt::Display for VerdictStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerdictStatus::Pass => "PASS",
            VerdictStatus::Fail => "FAIL",
            VerdictStatus::Inconclusive => "INCONCLUSIVE",
        })
    }
}

/// An inclusive range of acceptable values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub lo: i128,
    pub hi: i128,
}

impl Bound {
    pub fn contains(&self, v: i128) -> bool {
        self.lo <= v && v <= self.hi
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}..={}", self.lo, self.hi)
        }
    }
}

/// One named check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub description: String,
    pub passed: bool,
    pub expected: String,
    pub actual: String,
    /// Number of entities (items, users, orders) that violate the check.
    pub violations: u64,
    /// Up to [`MAX_DETAILS`] examples.
    pub details: Vec<String>,
}

pub const MAX_DETAILS: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub status: VerdictStatus,
    pub checkouts: u64,
    pub answered_2xx: u64,
    pub answered_4xx: u64,
    pub answered_error: u64,
    /// Σ (initial − final) stock over all items.
    pub units_sold: i128,
    /// Σ quantity of the orders that answered 2xx.
    pub units_of_2xx_checkouts: i128,
    /// Σ (initial − final) credit over all users.
    pub credit_removed: i128,
    /// Σ total cost of the orders that answered 2xx.
    pub credit_of_2xx_checkouts: i128,
    pub paid_orders: u64,
    /// How many checkouts the supply allows at most, if every one took the cheapest path
    /// (information only).
    pub max_possible_successes: u64,
    pub checks: Vec<Check>,
    pub warnings: Vec<String>,
}

struct CheckBuilder {
    name: &'static str,
    description: &'static str,
    violations: u64,
    details: Vec<String>,
}

impl CheckBuilder {
    fn new(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            description,
            violations: 0,
            details: Vec::new(),
        }
    }
    fn violation(&mut self, detail: impl FnOnce() -> String) {
        self.violations += 1;
        if self.details.len() < MAX_DETAILS {
            self.details.push(detail());
        }
    }
    fn finish(self, expected: String, actual: String) -> Check {
        Check {
            name: self.name.to_string(),
            description: self.description.to_string(),
            passed: self.violations == 0,
            expected,
            actual,
            violations: self.violations,
            details: self.details,
        }
    }
}

fn shape(what: &'static str, expected: usize, got: usize) -> Result<(), VerdictError> {
    if expected == got {
        Ok(())
    } else {
        Err(VerdictError::Shape {
            what,
            expected,
            got,
        })
    }
}

/// Evaluates a consistency run. `answers[i]` is the answer of `setup.orders[i]`'s checkout.
pub fn evaluate(
    setup: &Setup,
    answers: &[Answer],
    fin: &FinalState,
) -> Result<Verdict, VerdictError> {
    let n_items = setup.items.len();
    let n_users = setup.users.len();
    let n_orders = setup.orders.len();
    shape("answers", n_orders, answers.len())?;
    shape("final item stock", n_items, fin.item_stock.len())?;
    shape("final user credit", n_users, fin.user_credit.len())?;
    shape("final order paid flags", n_orders, fin.order_paid.len())?;
    shape("final order totals", n_orders, fin.order_total.len())?;
    for (o, order) in setup.orders.iter().enumerate() {
        if order.user >= n_users {
            return Err(VerdictError::BadIndex {
                order: o,
                what: "user",
                index: order.user,
            });
        }
        if let Some(&(i, _)) = order.lines.iter().find(|(i, _)| *i >= n_items) {
            return Err(VerdictError::BadIndex {
                order: o,
                what: "item",
                index: i,
            });
        }
    }

    let cost = |o: &OrderInit| -> i128 {
        o.lines
            .iter()
            .map(|&(i, q)| i128::from(q) * i128::from(setup.items[i].price))
            .sum()
    };

    // Per-entity sums: [from 2xx, from errors, from paid flags].
    let mut item_units = vec![[0i128; 3]; n_items];
    let mut user_cost = vec![[0i128; 3]; n_users];
    let (mut n_ok, mut n_4xx, mut n_err, mut n_paid) = (0u64, 0u64, 0u64, 0u64);
    for (o, order) in setup.orders.iter().enumerate() {
        let slot = match answers[o] {
            Answer::Success => {
                n_ok += 1;
                Some(0)
            }
            Answer::Error => {
                n_err += 1;
                Some(1)
            }
            Answer::BusinessFailure => {
                n_4xx += 1;
                None
            }
        };
        let c = cost(order);
        if let Some(k) = slot {
            for &(i, q) in &order.lines {
                item_units[i][k] += i128::from(q);
            }
            user_cost[order.user][k] += c;
        }
        if fin.order_paid[o] {
            n_paid += 1;
            for &(i, q) in &order.lines {
                item_units[i][2] += i128::from(q);
            }
            user_cost[order.user][2] += c;
        }
    }

    let removed_stock: Vec<i128> = (0..n_items)
        .map(|i| i128::from(setup.items[i].stock) - i128::from(fin.item_stock[i]))
        .collect();
    let removed_credit: Vec<i128> = (0..n_users)
        .map(|u| i128::from(setup.users[u]) - i128::from(fin.user_credit[u]))
        .collect();
    let units_sold: i128 = removed_stock.iter().sum();
    let credit_removed: i128 = removed_credit.iter().sum();
    let sum_k = |v: &[[i128; 3]], k: usize| -> i128 { v.iter().map(|x| x[k]).sum() };
    let range = |v: &[[i128; 3]]| Bound {
        lo: sum_k(v, 0),
        hi: sum_k(v, 0) + sum_k(v, 1),
    };

    let mut checks = Vec::new();

    // 1. Nothing negative.
    let mut c = CheckBuilder::new("no_negative_stock", "no item's stock is below zero");
    for (i, &s) in fin.item_stock.iter().enumerate() {
        if s < 0 {
            c.violation(|| format!("item #{i}: stock {s}"));
        }
    }
    let min_stock = fin.item_stock.iter().min().copied().unwrap_or(0);
    checks.push(c.finish(">= 0".into(), format!("min {min_stock}")));

    let mut c = CheckBuilder::new("no_negative_credit", "no user's credit is below zero");
    for (u, &v) in fin.user_credit.iter().enumerate() {
        if v < 0 {
            c.violation(|| format!("user #{u}: credit {v}"));
        }
    }
    let min_credit = fin.user_credit.iter().min().copied().unwrap_or(0);
    checks.push(c.finish(">= 0".into(), format!("min {min_credit}")));

    // 2. Units sold vs checkouts that answered 2xx.
    let units_range = range(&item_units);
    let mut c = CheckBuilder::new(
        "units_sold_vs_2xx",
        "stock removed equals the units of the checkouts that answered 2xx",
    );
    if !units_range.contains(units_sold) {
        c.violation(|| format!("units sold {units_sold}, expected {units_range}"));
    }
    checks.push(c.finish(units_range.to_string(), units_sold.to_string()));

    let mut c = CheckBuilder::new(
        "per_item_stock_vs_2xx",
        "for every item, stock removed equals its units in checkouts that answered 2xx",
    );
    for i in 0..n_items {
        let b = Bound {
            lo: item_units[i][0],
            hi: item_units[i][0] + item_units[i][1],
        };
        if !b.contains(removed_stock[i]) {
            c.violation(|| format!("item #{i}: removed {}, expected {b}", removed_stock[i]));
        }
    }
    let v = c.violations;
    checks.push(c.finish("0 items off".into(), format!("{v} items off")));

    // 3. Credit removed vs the same.
    let credit_range = range(&user_cost);
    let mut c = CheckBuilder::new(
        "credit_removed_vs_2xx",
        "credit removed equals the total cost of the checkouts that answered 2xx",
    );
    if !credit_range.contains(credit_removed) {
        c.violation(|| format!("credit removed {credit_removed}, expected {credit_range}"));
    }
    checks.push(c.finish(credit_range.to_string(), credit_removed.to_string()));

    // 4. Per-user credit vs that user's successful checkouts.
    let mut c = CheckBuilder::new(
        "per_user_credit_vs_2xx",
        "for every user, credit removed equals the cost of that user's checkouts that answered 2xx",
    );
    for u in 0..n_users {
        let b = Bound {
            lo: user_cost[u][0],
            hi: user_cost[u][0] + user_cost[u][1],
        };
        if !b.contains(removed_credit[u]) {
            c.violation(|| format!("user #{u}: removed {}, expected {b}", removed_credit[u]));
        }
    }
    let v = c.violations;
    checks.push(c.finish("0 users off".into(), format!("{v} users off")));

    // 5. Paid flags vs answers.
    let mut c = CheckBuilder::new(
        "paid_flags_vs_answers",
        "every order that answered 2xx is paid, every order that answered 4xx is not",
    );
    for (o, a) in answers.iter().enumerate() {
        match (a, fin.order_paid[o]) {
            (Answer::Success, false) => {
                c.violation(|| format!("order #{o}: answered 2xx, not paid"))
            }
            (Answer::BusinessFailure, true) => {
                c.violation(|| format!("order #{o}: answered 4xx, paid"))
            }
            _ => {}
        }
    }
    let v = c.violations;
    checks.push(c.finish("0 orders off".into(), format!("{v} orders off")));

    // 6. Conservation against the paid flags alone (independent of the answers, exact).
    let mut c = CheckBuilder::new(
        "conservation_vs_paid_orders",
        "stock and credit removed equal exactly what the paid orders account for",
    );
    for i in 0..n_items {
        if removed_stock[i] != item_units[i][2] {
            c.violation(|| {
                format!(
                    "item #{i}: removed {}, paid orders hold {}",
                    removed_stock[i], item_units[i][2]
                )
            });
        }
    }
    for u in 0..n_users {
        if removed_credit[u] != user_cost[u][2] {
            c.violation(|| {
                format!(
                    "user #{u}: removed {}, paid orders cost {}",
                    removed_credit[u], user_cost[u][2]
                )
            });
        }
    }
    let v = c.violations;
    checks.push(c.finish("0 off".into(), format!("{v} off")));

    // 7. No oversell claimed: the 2xx answers alone fit the initial supply.
    let mut c = CheckBuilder::new(
        "no_oversell",
        "the checkouts that answered 2xx fit in the initial stock and credit",
    );
    for (i, (units, item)) in item_units.iter().zip(&setup.items).enumerate() {
        if units[0] > i128::from(item.stock) {
            c.violation(|| {
                format!(
                    "item #{i}: {} units confirmed, stock was {}",
                    units[0], item.stock
                )
            });
        }
    }
    for (u, (cost, &credit)) in user_cost.iter().zip(&setup.users).enumerate() {
        if cost[0] > i128::from(credit) {
            c.violation(|| {
                format!(
                    "user #{u}: {} charged by 2xx checkouts, credit was {credit}",
                    cost[0]
                )
            });
        }
    }
    let v = c.violations;
    checks.push(c.finish("0 off".into(), format!("{v} off")));

    // 8. Order totals as populated.
    let mut c = CheckBuilder::new(
        "order_totals",
        "every order's total_cost is Σ quantity × price of its addItem calls",
    );
    for (o, order) in setup.orders.iter().enumerate() {
        let expected = cost(order);
        if i128::from(fin.order_total[o]) != expected {
            c.violation(|| {
                format!(
                    "order #{o}: total {} expected {expected}",
                    fin.order_total[o]
                )
            });
        }
    }
    let v = c.violations;
    checks.push(c.finish("0 orders off".into(), format!("{v} orders off")));

    // Information: how many checkouts could have succeeded at most.
    let max_possible = max_possible_successes(setup);
    let mut warnings = Vec::new();
    if n_err > 0 {
        warnings.push(format!(
            "{n_err} checkouts answered with an error (5xx, timeout or connection error): their outcome is unknown, the verdict cannot be PASS"
        ));
    }
    if n_ok == 0 && max_possible > 0 {
        warnings.push("no checkout succeeded although the supply allowed some".into());
    } else if n_ok < max_possible.min(n_orders as u64) {
        warnings.push(format!(
            "{n_ok} checkouts succeeded; the supply would have allowed up to {max_possible}"
        ));
    }

    let any_failed = checks.iter().any(|c| !c.passed);
    let status = if any_failed {
        VerdictStatus::Fail
    } else if n_err > 0 {
        VerdictStatus::Inconclusive
    } else {
        VerdictStatus::Pass
    };
    Ok(Verdict {
        status,
        checkouts: n_orders as u64,
        answered_2xx: n_ok,
        answered_4xx: n_4xx,
        answered_error: n_err,
        units_sold,
        units_of_2xx_checkouts: units_range.lo,
        credit_removed,
        credit_of_2xx_checkouts: credit_range.lo,
        paid_orders: n_paid,
        max_possible_successes: max_possible,
        checks,
        warnings,
    })
}

/// A greedy upper estimate of how many orders the initial stock and credit allow (exact for
/// the standard workload: one item, one unit per order, one order per user). Orders are taken
/// cheapest first; each needs its units in stock and its cost in its user's credit.
pub fn max_possible_successes(setup: &Setup) -> u64 {
    let mut stock: Vec<i128> = setup.items.iter().map(|i| i128::from(i.stock)).collect();
    let mut credit: Vec<i128> = setup.users.iter().map(|&c| i128::from(c)).collect();
    let mut order_idx: Vec<usize> = (0..setup.orders.len()).collect();
    let cost = |o: &OrderInit| -> i128 {
        o.lines
            .iter()
            .map(|&(i, q)| i128::from(q) * setup.items.get(i).map_or(0, |it| i128::from(it.price)))
            .sum()
    };
    order_idx.sort_by_key(|&o| cost(&setup.orders[o]));
    let mut n = 0u64;
    'orders: for o in order_idx {
        let order = &setup.orders[o];
        let c = cost(order);
        if credit.get(order.user).is_none_or(|&cr| cr < c) {
            continue;
        }
        let mut need: Vec<(usize, i128)> = Vec::new();
        for &(i, q) in &order.lines {
            match need.iter_mut().find(|(j, _)| *j == i) {
                Some(e) => e.1 += i128::from(q),
                None => need.push((i, i128::from(q))),
            }
        }
        for &(i, q) in &need {
            if stock.get(i).is_none_or(|&s| s < q) {
                continue 'orders;
            }
        }
        for &(i, q) in &need {
            stock[i] -= q;
        }
        credit[order.user] -= c;
        n += 1;
    }
    n
}

// ---------------------------------------------------------------------------------------------
// Sweep: saturation point.

/// One step of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Concurrency (closed loop) or offered rate in requests/s (open loop).
    pub level: f64,
    /// Completed requests per second.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub completed: u64,
    pub errors: u64,
    /// Open loop: requests not sent because the in-flight cap was reached.
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Saturation {
    /// Index of the last step before saturation (the saturation point), if any step was good.
    pub point_index: Option<usize>,
    pub point_level: Option<f64>,
    pub point_throughput: Option<f64>,
    /// Index of the first step past saturation, if one was reached.
    pub saturated_at_index: Option<usize>,
    pub peak_index: Option<usize>,
    pub peak_throughput: f64,
    pub reason: String,
}

/// Criteria for [`saturation`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaturationCriteria {
    /// Open loop (levels are offered rates) or closed loop (levels are client counts).
    pub open_loop: bool,
    /// Closed loop: minimum relative throughput gain per step (e.g. 0.05) for a step to count
    /// as still scaling.
    pub min_gain: f64,
    /// Open loop: minimum achieved/offered ratio (e.g. 0.95).
    pub min_achieved_ratio: f64,
    /// Maximum fraction of errors + dropped among all attempts (e.g. 0.01).
    pub max_error_ratio: f64,
    /// Optional p99 objective in milliseconds.
    pub slo_p99_ms: Option<f64>,
}

impl Default for SaturationCriteria {
    fn default() -> Self {
        Self {
            open_loop: false,
            min_gain: 0.05,
            min_achieved_ratio: 0.95,
            max_error_ratio: 0.01,
            slo_p99_ms: None,
        }
    }
}

/// Finds the saturation point of a sweep: the last step that still scaled (closed loop: more
/// clients gave at least `min_gain` more throughput; open loop: the offered rate was achieved)
/// while meeting the error and p99 objectives. `points` must be in increasing level order.
pub fn saturation(points: &[CurvePoint], c: &SaturationCriteria) -> Saturation {
    let peak = points
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.throughput.total_cmp(&b.1.throughput));
    let (peak_index, peak_throughput) = match peak {
        Some((i, p)) => (Some(i), p.throughput),
        None => (None, 0.0),
    };
    let bad_step = |i: usize| -> Option<String> {
        let p = &points[i];
        let attempts = (p.completed + p.dropped).max(1) as f64;
        let err_ratio = (p.errors + p.dropped) as f64 / attempts;
        if err_ratio > c.max_error_ratio {
            return Some(format!(
                "errors+dropped {:.1}% > {:.1}% at level {}",
                err_ratio * 100.0,
                c.max_error_ratio * 100.0,
                p.level
            ));
        }
        if let Some(slo) = c.slo_p99_ms {
            if p.p99_ms > slo {
                return Some(format!(
                    "p99 {:.1} ms > objective {slo:.1} ms at level {}",
                    p.p99_ms, p.level
                ));
            }
        }
        if c.open_loop {
            let ratio = if p.level > 0.0 {
                p.throughput / p.level
            } else {
                1.0
            };
            if ratio < c.min_achieved_ratio {
                return Some(format!(
                    "achieved {:.0}/s of {:.0}/s offered ({:.0}%)",
                    p.throughput,
                    p.level,
                    ratio * 100.0
                ));
            }
        } else if i > 0 {
            let prev = &points[i - 1];
            let gain = if prev.throughput > 0.0 {
                (p.throughput - prev.throughput) / prev.throughput
            } else if p.throughput > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            if gain < c.min_gain {
                return Some(format!(
                    "going from {} to {} clients changed throughput by {:+.1}% (< {:.0}%)",
                    prev.level,
                    p.level,
                    gain * 100.0,
                    c.min_gain * 100.0
                ));
            }
        }
        None
    };
    for i in 0..points.len() {
        if let Some(reason) = bad_step(i) {
            let point_index = i.checked_sub(1);
            return Saturation {
                point_index,
                point_level: point_index.map(|j| points[j].level),
                point_throughput: point_index.map(|j| points[j].throughput),
                saturated_at_index: Some(i),
                peak_index,
                peak_throughput,
                reason,
            };
        }
    }
    let last = points.len().checked_sub(1);
    Saturation {
        point_index: None,
        point_level: None,
        point_throughput: None,
        saturated_at_index: None,
        peak_index,
        peak_throughput,
        reason: match last {
            Some(j) => format!(
                "not saturated: still scaling at the last level {} ({:.0}/s); extend the sweep",
                points[j].level, points[j].throughput
            ),
            None => "no steps".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard workload: one item (stock `stock`, price 1), `n` users with credit 1,
    /// `n` orders of one unit.
    fn standard(stock: i64, n: usize) -> Setup {
        Setup {
            items: vec![ItemInit { stock, price: 1 }],
            users: vec![1; n],
            orders: (0..n)
                .map(|u| OrderInit {
                    user: u,
                    lines: vec![(0, 1)],
                })
                .collect(),
        }
    }

    /// A correct final state for the given answers (errored checkouts listed in
    /// `errored_applied` took effect).
    fn correct_final(setup: &Setup, answers: &[Answer], errored_applied: &[usize]) -> FinalState {
        let mut f = FinalState {
            item_stock: setup.items.iter().map(|i| i.stock).collect(),
            user_credit: setup.users.clone(),
            order_paid: vec![false; setup.orders.len()],
            order_total: setup
                .orders
                .iter()
                .map(|o| o.lines.iter().map(|&(i, q)| q * setup.items[i].price).sum())
                .collect(),
        };
        for (o, a) in answers.iter().enumerate() {
            let applied =
                *a == Answer::Success || (*a == Answer::Error && errored_applied.contains(&o));
            if applied {
                let order = &setup.orders[o];
                for &(i, q) in &order.lines {
                    f.item_stock[i] -= q;
                    f.user_credit[order.user] -= q * setup.items[i].price;
                }
                f.order_paid[o] = true;
            }
        }
        f
    }

    fn answers(n: usize, ok: usize) -> Vec<Answer> {
        (0..n)
            .map(|i| {
                if i < ok {
                    Answer::Success
                } else {
                    Answer::BusinessFailure
                }
            })
            .collect()
    }

    fn check<'a>(v: &'a Verdict, name: &str) -> &'a Check {
        v.checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
    }

    #[test]
    fn standard_workload_passes() {
        let s = standard(100, 1000);
        let a = answers(1000, 100);
        let f = correct_final(&s, &a, &[]);
        let v = evaluate(&s, &a, &f).expect("evaluate");
        assert_eq!(
            v.status,
            VerdictStatus::Pass,
            "{:#?}",
            v.checks.iter().filter(|c| !c.passed).collect::<Vec<_>>()
        );
        assert_eq!(v.answered_2xx, 100);
        assert_eq!(v.answered_4xx, 900);
        assert_eq!(v.units_sold, 100);
        assert_eq!(v.credit_removed, 100);
        assert_eq!(v.paid_orders, 100);
        assert_eq!(v.max_possible_successes, 100);
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    }

    #[test]
    fn oversold_stock_fails() {
        // 101 confirmed sales of 100 units: stock ends at -1.
        let s = standard(100, 1000);
        let a = answers(1000, 101);
        let f = correct_final(&s, &a, &[]);
        let v = evaluate(&s, &a, &f).expect("evaluate");
        assert_eq!(v.status, VerdictStatus::Fail);
        assert!(!check(&v, "no_negative_stock").passed);
        assert!(!check(&v, "no_oversell").passed);
        // the bookkeeping itself matches the answers
        assert!(check(&v, "units_sold_vs_2xx").passed);
    }

    #[test]
    fn lost_update_fails() {
        // 100 checkouts answered 2xx, but two of them decremented the same old stock value:
        // only 99 units are gone.
        let s = standard(100, 1000);
        let a = answers(1000, 100);
        let mut f = correct_final(&s, &a, &[]);
        f.item_stock[0] += 1;
        let v = evaluate(&s, &a, &f).expect("evaluate");
        assert_eq!(v.status, VerdictStatus::Fail);
        let c = check(&v, "units_sold_vs_2xx");
        assert!(!c.passed);
        assert_eq!(c.expected, "100");
        assert_eq!(c.actual, "99");
        assert!(!check(&v, "per_item_stock_vs_2xx").passed);
        assert!(!check(&v, "conservation_vs_paid_orders").passed);
        assert!(check(&v, "credit_removed_vs_2xx").passed);
    }

    #[test]
    fn charge_without_success_fails() {
        // A checkout answered 4xx but the user was charged anyway (no refund).
        let s = standard(100, 1000);
        let a = answers(1000, 100);
        let mut f = correct_final(&s, &a, &[]);
        f.user_credit[500] = 0;
        let v = evaluate(&s, &a, &f).expect("evaluate");
        assert_eq!(v.status, VerdictStatus::Fail);
        let c = check(&v, "per_user_credit_vs_2xx");
        assert_eq!(c.violations, 1);
        assert!(c.details[0].contains("user #500"));
        assert!(!check(&v, "credit_removed_vs_2xx").passed);
        assert!(check(&v, "paid_flags_vs_answers").passed);
    }

    #[test]
    fn paid_flag_mismatch_fails() {
        let s = standard(100, 1000);
        let a = answers(1000, 100);
        let mut f = correct_final(&s, &a, &[]);
        f.order_paid[3] = false; // answered 2xx
        f.order_paid[999] = true; // answered 4xx
        let v = evaluate(&s, &a, &f).expect("evaluate");
        let c = check(&v, "paid_flags_vs_answers");
        assert_eq!(c.violations, 2);
        assert_eq!(v.status, VerdictStatus::Fail);
    }

    #[test]
    fn errors_make_it_inconclusive_when_consistent() {
        let s = standard(100, 1000);
        let mut a = answers(1000, 98);
        a[98] = Answer::Error; // took effect
        a[99] = Answer::Error; // did not
        let f = correct_final(&s, &a, &[98]);
        let v = evaluate(&s, &a, &f).expect("evaluate");
        assert_eq!(v.status, VerdictStatus::Inconclusive, "{:#?}", v.checks);
        assert_eq!(v.answered_error, 2);
        assert_eq!(check(&v, "units_sold_vs_2xx").expected, "98..=100");
        assert!(!v.warnings.is_empty());
    }

    #[test]
    fn errors_do_not_hide_a_proven_inconsistency() {
        let s = standard(100, 1000);
        let mut a = answers(1000, 98);
        a[98] = Answer::Error;
        let mut f = correct_final(&s, &a, &[]);
        f.item_stock[0] -= 5; // 5 units vanished: more than the one errored checkout explains
        let v = evaluate(&s, &a, &f).expect("evaluate");
        assert_eq!(v.status, VerdictStatus::Fail);
    }

    #[test]
    fn multi_item_orders_and_prices() {
        let s = Setup {
            items: vec![
                ItemInit { stock: 5, price: 3 },
                ItemInit { stock: 5, price: 7 },
            ],
            users: vec![20, 20],
            orders: vec![
                OrderInit {
                    user: 0,
                    lines: vec![(0, 2), (1, 1)], // 13
                },
                OrderInit {
                    user: 1,
                    lines: vec![(1, 2), (1, 1)], // 21: too expensive
                },
                OrderInit {
                    user: 0,
                    lines: vec![(0, 1)], // 3
                },
            ],
        };
        let a = vec![Answer::Success, Answer::BusinessFailure, Answer::Success];
        let f = correct_final(&s, &a, &[]);
        assert_eq!(f.user_credit, vec![4, 20]);
        let v = evaluate(&s, &a, &f).expect("evaluate");
        assert_eq!(v.status, VerdictStatus::Pass, "{:#?}", v.checks);
        assert_eq!(v.units_sold, 4);
        assert_eq!(v.credit_removed, 16);
        assert_eq!(max_possible_successes(&s), 2);

        let mut bad = f.clone();
        bad.order_total[1] = 20;
        let v = evaluate(&s, &a, &bad).expect("evaluate");
        assert!(!check(&v, "order_totals").passed);
    }

    #[test]
    fn shape_errors() {
        let s = standard(1, 2);
        let f = correct_final(&s, &answers(2, 1), &[]);
        assert!(matches!(
            evaluate(&s, &answers(3, 1), &f),
            Err(VerdictError::Shape {
                what: "answers",
                ..
            })
        ));
        let mut bad = s.clone();
        bad.orders[0].user = 9;
        assert!(matches!(
            evaluate(&bad, &answers(2, 1), &f),
            Err(VerdictError::BadIndex { what: "user", .. })
        ));
    }

    #[test]
    fn nobody_succeeding_is_a_warning_not_a_failure() {
        let s = standard(100, 10);
        let a = answers(10, 0);
        let f = correct_final(&s, &a, &[]);
        let v = evaluate(&s, &a, &f).expect("evaluate");
        assert_eq!(v.status, VerdictStatus::Pass);
        assert_eq!(v.warnings.len(), 1);
    }

    fn pt(level: f64, tp: f64, p99: f64) -> CurvePoint {
        CurvePoint {
            level,
            throughput: tp,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            completed: (tp * 10.0) as u64,
            errors: 0,
            dropped: 0,
        }
    }

    #[test]
    fn closed_loop_knee() {
        let pts = vec![
            pt(1.0, 100.0, 12.0),
            pt(2.0, 190.0, 13.0),
            pt(4.0, 370.0, 14.0),
            pt(8.0, 380.0, 25.0),
            pt(16.0, 385.0, 50.0),
        ];
        let s = saturation(&pts, &SaturationCriteria::default());
        assert_eq!(s.point_index, Some(2));
        assert_eq!(s.point_level, Some(4.0));
        assert_eq!(s.saturated_at_index, Some(3));
        assert_eq!(s.peak_index, Some(4));
        assert!(s.reason.contains("4 to 8"), "{}", s.reason);
    }

    #[test]
    fn closed_loop_slo_and_errors() {
        let mut pts = vec![pt(1.0, 100.0, 12.0), pt(2.0, 200.0, 120.0)];
        let c = SaturationCriteria {
            slo_p99_ms: Some(100.0),
            ..SaturationCriteria::default()
        };
        let s = saturation(&pts, &c);
        assert_eq!(s.point_index, Some(0));
        pts[1].p99_ms = 20.0;
        pts[1].errors = 100; // 5% of 2000
        let s = saturation(&pts, &c);
        assert_eq!(s.point_index, Some(0));
        assert!(s.reason.contains("errors"));
    }

    #[test]
    fn open_loop_achieved_rate() {
        let pts = vec![
            pt(100.0, 100.0, 5.0),
            pt(200.0, 199.0, 6.0),
            pt(400.0, 300.0, 900.0),
        ];
        let c = SaturationCriteria {
            open_loop: true,
            ..SaturationCriteria::default()
        };
        let s = saturation(&pts, &c);
        assert_eq!(s.point_level, Some(200.0));
        assert_eq!(s.saturated_at_index, Some(2));
    }

    #[test]
    fn not_saturated_and_saturated_from_the_start() {
        let pts = vec![pt(1.0, 100.0, 1.0), pt(2.0, 200.0, 1.0)];
        let s = saturation(&pts, &SaturationCriteria::default());
        assert_eq!(s.point_index, None);
        assert_eq!(s.saturated_at_index, None);
        assert!(s.reason.starts_with("not saturated"));
        let mut bad = pt(1.0, 100.0, 1.0);
        bad.dropped = 500;
        let s = saturation(&[bad], &SaturationCriteria::default());
        assert_eq!(s.saturated_at_index, Some(0));
        assert_eq!(s.point_index, None);
        let s = saturation(&[], &SaturationCriteria::default());
        assert_eq!(s.peak_index, None);
    }
}
