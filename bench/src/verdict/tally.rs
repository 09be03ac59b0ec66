//! One pass over the orders: what the answers and the paid flags account for, per item and
//! per user, next to what the final state shows was removed.

use super::{Answer, Bound, FinalState, OrderInit, Setup};

/// Which sum of a [`Tally`] row.
pub const FROM_2XX: usize = 0;
pub const FROM_ERRORS: usize = 1;
pub const FROM_PAID: usize = 2;

pub struct Tally<'a> {
    pub setup: &'a Setup,
    pub answers: &'a [Answer],
    pub fin: &'a FinalState,
    /// Per item, units in orders that answered 2xx, that errored, that are paid.
    pub item_units: Vec<[i128; 3]>,
    /// Per user, the cost of their orders that answered 2xx, that errored, that are paid.
    pub user_cost: Vec<[i128; 3]>,
    /// Per item, initial − final stock.
    pub removed_stock: Vec<i128>,
    /// Per user, initial − final credit.
    pub removed_credit: Vec<i128>,
    pub n_ok: u64,
    pub n_4xx: u64,
    pub n_err: u64,
    pub n_paid: u64,
}

/// Σ quantity × price of an order's lines.
pub fn cost(setup: &Setup, o: &OrderInit) -> i128 {
    o.lines
        .iter()
        .map(|&(i, q)| i128::from(q) * i128::from(setup.items[i].price))
        .sum()
}

impl<'a> Tally<'a> {
    /// `setup`, `answers` and `fin` must agree in shape (see `validate`).
    pub fn new(setup: &'a Setup, answers: &'a [Answer], fin: &'a FinalState) -> Self {
        let mut t = Tally {
            setup,
            answers,
            fin,
            item_units: vec![[0i128; 3]; setup.items.len()],
            user_cost: vec![[0i128; 3]; setup.users.len()],
            removed_stock: setup
                .items
                .iter()
                .zip(&fin.item_stock)
                .map(|(i, &s)| i128::from(i.stock) - i128::from(s))
                .collect(),
            removed_credit: setup
                .users
                .iter()
                .zip(&fin.user_credit)
                .map(|(&u, &c)| i128::from(u) - i128::from(c))
                .collect(),
            n_ok: 0,
            n_4xx: 0,
            n_err: 0,
            n_paid: 0,
        };
        for (o, order) in setup.orders.iter().enumerate() {
            let slot = match answers[o] {
                Answer::Success => {
                    t.n_ok += 1;
                    Some(FROM_2XX)
                }
                Answer::Error => {
                    t.n_err += 1;
                    Some(FROM_ERRORS)
                }
                Answer::BusinessFailure => {
                    t.n_4xx += 1;
                    None
                }
            };
            if let Some(k) = slot {
                t.add(order, k);
            }
            if fin.order_paid[o] {
                t.n_paid += 1;
                t.add(order, FROM_PAID);
            }
        }
        t
    }

    fn add(&mut self, order: &OrderInit, k: usize) {
        for &(i, q) in &order.lines {
            self.item_units[i][k] += i128::from(q);
        }
        self.user_cost[order.user][k] += cost(self.setup, order);
    }

    pub fn units_sold(&self) -> i128 {
        self.removed_stock.iter().sum()
    }

    pub fn credit_removed(&self) -> i128 {
        self.removed_credit.iter().sum()
    }

    /// Units the 2xx answers imply, up to what the errored checkouts could add.
    pub fn units_range(&self) -> Bound {
        range(&self.item_units)
    }

    /// Credit the 2xx answers imply, up to what the errored checkouts could add.
    pub fn credit_range(&self) -> Bound {
        range(&self.user_cost)
    }
}

/// The acceptable range of one entity's row: its 2xx sum, up to that plus its errored sum.
pub fn bound(row: &[i128; 3]) -> Bound {
    Bound {
        lo: row[FROM_2XX],
        hi: row[FROM_2XX] + row[FROM_ERRORS],
    }
}

fn range(rows: &[[i128; 3]]) -> Bound {
    let sum = |k: usize| -> i128 { rows.iter().map(|x| x[k]).sum() };
    Bound {
        lo: sum(FROM_2XX),
        hi: sum(FROM_2XX) + sum(FROM_ERRORS),
    }
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
