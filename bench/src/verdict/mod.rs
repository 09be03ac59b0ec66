//! Pure arithmetic of the consistency verdict.
//!
//! The consistency verdict compares what the clients were told (each checkout's answer) with
//! what the system reports afterwards through its own API. A checkout that answered with an
//! error (5xx, timeout, connection error) may or may not have happened, so every quantity that
//! depends on answers is checked against a range: at least what the 2xx answers imply, at most
//! that plus what the errored checkouts could add. Any value outside its range is a proven
//! inconsistency (FAIL); if everything fits but some answers were errors, the run is
//! INCONCLUSIVE; otherwise it PASSes. The checks themselves are a table (`checks`) over the
//! sums of one pass over the orders (`tally`).

mod checks;
mod tally;

use serde::{Deserialize, Serialize};
use std::fmt;
use tally::Tally;

pub use tally::max_possible_successes;

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
    validate(setup, answers, fin)?;
    let t = Tally::new(setup, answers, fin);
    let checks: Vec<Check> = checks::CHECKS.iter().map(|c| c.run(&t)).collect();
    let max_possible = max_possible_successes(setup);
    let warnings = warnings(&t, max_possible, setup.orders.len() as u64);
    let status = if checks.iter().any(|c| !c.passed) {
        VerdictStatus::Fail
    } else if t.n_err > 0 {
        VerdictStatus::Inconclusive
    } else {
        VerdictStatus::Pass
    };
    Ok(Verdict {
        status,
        checkouts: setup.orders.len() as u64,
        answered_2xx: t.n_ok,
        answered_4xx: t.n_4xx,
        answered_error: t.n_err,
        units_sold: t.units_sold(),
        units_of_2xx_checkouts: t.units_range().lo,
        credit_removed: t.credit_removed(),
        credit_of_2xx_checkouts: t.credit_range().lo,
        paid_orders: t.n_paid,
        max_possible_successes: max_possible,
        checks,
        warnings,
    })
}

/// The inputs agree in size, and every order refers to existing users and items.
fn validate(setup: &Setup, answers: &[Answer], fin: &FinalState) -> Result<(), VerdictError> {
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
    Ok(())
}

/// Information beside the checks: unknown outcomes, and fewer successes than the supply allowed.
fn warnings(t: &Tally, max_possible: u64, n_orders: u64) -> Vec<String> {
    let n_ok = t.n_ok;
    let mut warnings = Vec::new();
    if t.n_err > 0 {
        warnings.push(format!(
            "{} checkouts answered with an error (5xx, timeout or connection error): their outcome is unknown, the verdict cannot be PASS",
            t.n_err
        ));
    }
    if n_ok == 0 && max_possible > 0 {
        warnings.push("no checkout succeeded although the supply allowed some".into());
    } else if n_ok < max_possible.min(n_orders) {
        warnings.push(format!(
            "{n_ok} checkouts succeeded; the supply would have allowed up to {max_possible}"
        ));
    }
    warnings
}

#[cfg(test)]
mod tests;
