//! The consistency verdict's cases.

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
