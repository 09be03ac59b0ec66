//! The consistency checks, one row each: a name, what it asserts, and how it is measured
//! over the [`Tally`]. A check records each violating entity and says what it expected and
//! what it found.

use super::tally::{bound, cost, Tally, FROM_2XX, FROM_PAID};
use super::{Answer, Bound, Check, MAX_DETAILS};

/// One row of the table.
pub struct CheckSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// Records the violations; returns (expected, actual).
    measure: fn(&Tally, &mut Violations) -> (String, String),
}

impl CheckSpec {
    pub fn run(&self, t: &Tally) -> Check {
        let mut v = Violations::default();
        let (expected, actual) = (self.measure)(t, &mut v);
        Check {
            name: self.name.to_string(),
            description: self.description.to_string(),
            passed: v.count == 0,
            expected,
            actual,
            violations: v.count,
            details: v.details,
        }
    }
}

/// The violations of one check: how many, and the first [`MAX_DETAILS`] described.
#[derive(Default)]
pub struct Violations {
    count: u64,
    details: Vec<String>,
}

impl Violations {
    fn add(&mut self, detail: impl FnOnce() -> String) {
        self.count += 1;
        if self.details.len() < MAX_DETAILS {
            self.details.push(detail());
        }
    }

    /// "N <what> off", the actual figure of a per-entity check.
    fn off(&self, what: &str) -> (String, String) {
        (format!("0 {what}off"), format!("{} {what}off", self.count))
    }
}

pub const CHECKS: &[CheckSpec] = &[
    CheckSpec {
        name: "no_negative_stock",
        description: "no item's stock is below zero",
        measure: no_negative_stock,
    },
    CheckSpec {
        name: "no_negative_credit",
        description: "no user's credit is below zero",
        measure: no_negative_credit,
    },
    CheckSpec {
        name: "units_sold_vs_2xx",
        description: "stock removed equals the units of the checkouts that answered 2xx",
        measure: units_sold_vs_2xx,
    },
    CheckSpec {
        name: "per_item_stock_vs_2xx",
        description: "for every item, stock removed equals its units in checkouts that answered 2xx",
        measure: per_item_stock_vs_2xx,
    },
    CheckSpec {
        name: "credit_removed_vs_2xx",
        description: "credit removed equals the total cost of the checkouts that answered 2xx",
        measure: credit_removed_vs_2xx,
    },
    CheckSpec {
        name: "per_user_credit_vs_2xx",
        description: "for every user, credit removed equals the cost of that user's checkouts that answered 2xx",
        measure: per_user_credit_vs_2xx,
    },
    CheckSpec {
        name: "paid_flags_vs_answers",
        description: "every order that answered 2xx is paid, every order that answered 4xx is not",
        measure: paid_flags_vs_answers,
    },
    // Independent of the answers, exact.
    CheckSpec {
        name: "conservation_vs_paid_orders",
        description: "stock and credit removed equal exactly what the paid orders account for",
        measure: conservation_vs_paid_orders,
    },
    // No oversell claimed: the 2xx answers alone fit the initial supply.
    CheckSpec {
        name: "no_oversell",
        description: "the checkouts that answered 2xx fit in the initial stock and credit",
        measure: no_oversell,
    },
    CheckSpec {
        name: "order_totals",
        description: "every order's total_cost is Σ quantity × price of its addItem calls",
        measure: order_totals,
    },
];

fn no_negative_stock(t: &Tally, v: &mut Violations) -> (String, String) {
    for (i, &s) in t.fin.item_stock.iter().enumerate() {
        if s < 0 {
            v.add(|| format!("item #{i}: stock {s}"));
        }
    }
    let min = t.fin.item_stock.iter().min().copied().unwrap_or(0);
    (">= 0".into(), format!("min {min}"))
}

fn no_negative_credit(t: &Tally, v: &mut Violations) -> (String, String) {
    for (u, &c) in t.fin.user_credit.iter().enumerate() {
        if c < 0 {
            v.add(|| format!("user #{u}: credit {c}"));
        }
    }
    let min = t.fin.user_credit.iter().min().copied().unwrap_or(0);
    (">= 0".into(), format!("min {min}"))
}

/// A total against the range the answers allow.
fn total(v: &mut Violations, what: &str, actual: i128, range: Bound) -> (String, String) {
    if !range.contains(actual) {
        v.add(|| format!("{what} {actual}, expected {range}"));
    }
    (range.to_string(), actual.to_string())
}

fn units_sold_vs_2xx(t: &Tally, v: &mut Violations) -> (String, String) {
    total(v, "units sold", t.units_sold(), t.units_range())
}

fn credit_removed_vs_2xx(t: &Tally, v: &mut Violations) -> (String, String) {
    total(v, "credit removed", t.credit_removed(), t.credit_range())
}

/// Each entity's removal against the range its answers allow.
fn per_entity(v: &mut Violations, what: &str, rows: &[[i128; 3]], removed: &[i128]) {
    for (n, (row, &r)) in rows.iter().zip(removed).enumerate() {
        let b = bound(row);
        if !b.contains(r) {
            v.add(|| format!("{what} #{n}: removed {r}, expected {b}"));
        }
    }
}

fn per_item_stock_vs_2xx(t: &Tally, v: &mut Violations) -> (String, String) {
    per_entity(v, "item", &t.item_units, &t.removed_stock);
    v.off("items ")
}

fn per_user_credit_vs_2xx(t: &Tally, v: &mut Violations) -> (String, String) {
    per_entity(v, "user", &t.user_cost, &t.removed_credit);
    v.off("users ")
}

fn paid_flags_vs_answers(t: &Tally, v: &mut Violations) -> (String, String) {
    for (o, a) in t.answers.iter().enumerate() {
        match (a, t.fin.order_paid[o]) {
            (Answer::Success, false) => v.add(|| format!("order #{o}: answered 2xx, not paid")),
            (Answer::BusinessFailure, true) => v.add(|| format!("order #{o}: answered 4xx, paid")),
            _ => {}
        }
    }
    v.off("orders ")
}

fn conservation_vs_paid_orders(t: &Tally, v: &mut Violations) -> (String, String) {
    for (i, (row, &r)) in t.item_units.iter().zip(&t.removed_stock).enumerate() {
        if r != row[FROM_PAID] {
            v.add(|| {
                format!(
                    "item #{i}: removed {r}, paid orders hold {}",
                    row[FROM_PAID]
                )
            });
        }
    }
    for (u, (row, &r)) in t.user_cost.iter().zip(&t.removed_credit).enumerate() {
        if r != row[FROM_PAID] {
            v.add(|| {
                format!(
                    "user #{u}: removed {r}, paid orders cost {}",
                    row[FROM_PAID]
                )
            });
        }
    }
    v.off("")
}

fn no_oversell(t: &Tally, v: &mut Violations) -> (String, String) {
    for (i, (units, item)) in t.item_units.iter().zip(&t.setup.items).enumerate() {
        if units[FROM_2XX] > i128::from(item.stock) {
            v.add(|| {
                format!(
                    "item #{i}: {} units confirmed, stock was {}",
                    units[FROM_2XX], item.stock
                )
            });
        }
    }
    for (u, (cost, &credit)) in t.user_cost.iter().zip(&t.setup.users).enumerate() {
        if cost[FROM_2XX] > i128::from(credit) {
            v.add(|| {
                format!(
                    "user #{u}: {} charged by 2xx checkouts, credit was {credit}",
                    cost[FROM_2XX]
                )
            });
        }
    }
    v.off("")
}

fn order_totals(t: &Tally, v: &mut Violations) -> (String, String) {
    for (o, order) in t.setup.orders.iter().enumerate() {
        let expected = cost(t.setup, order);
        let total = t.fin.order_total[o];
        if i128::from(total) != expected {
            v.add(|| format!("order #{o}: total {total} expected {expected}"));
        }
    }
    v.off("orders ")
}
