//! The model's checks: today's protocol under the CI bounds (every property
//! holds), each deliberately broken variant (its property fails), and the
//! findings in today's protocol (kept as tests that expect them, so a fix
//! shows up as a failing test to update). State counts are printed; run
//! with `--nocapture` to see them.

use model::*;

fn holds(config: Config) -> Outcome {
    let outcome = check(config, None);
    println!("{}", outcome.summary());
    for (name, _) in outcome.violations() {
        println!("counterexample to {name}:\n{}", outcome.trace(name));
    }
    assert!(outcome.violations().is_empty(), "{}", outcome.summary());
    outcome
}

/// Explores until `property` fails; returns the counterexample.
fn fails(config: Config, property: &'static str) -> Vec<Action> {
    let outcome = check(config, Some(&[property]));
    println!("{}", outcome.summary());
    let trace = outcome.found(property).cloned();
    assert!(
        trace.is_some(),
        "expected a counterexample to {property:?}: {}",
        outcome.summary()
    );
    println!("counterexample to {property}:\n{}", outcome.trace(property));
    trace.unwrap_or_default()
}

fn bound(orders: u8, checkouts: u8, crashes: u8, duplicates: u8, sweeps: u8) -> Config {
    Config {
        orders,
        checkouts,
        crashes,
        duplicates,
        sweeps,
        ..Config::DEFAULT
    }
}

// --- today's protocol: every property holds ---

#[test]
fn three_checkouts_of_two_orders_with_a_crash() {
    let o = holds(bound(2, 3, 1, 0, 0));
    for example in [SOME_PAID, SOME_COMPENSATED, SOME_QUEUED_STARTED] {
        assert!(
            o.found(example).is_some(),
            "the model never reaches {example:?}"
        );
    }
}

#[test]
fn two_checkouts_under_duplicates_and_sweeps() {
    let o = holds(bound(2, 2, 0, 1, 1));
    assert!(o.found(SOME_COMPENSATED).is_some());
}

#[test]
fn a_busy_order_under_a_crash_a_duplicate_and_a_sweep() {
    let o = holds(bound(1, 2, 1, 1, 1));
    assert!(o.found(SOME_PAID).is_some());
}

#[test]
fn retention_once_nothing_can_come_late() {
    holds(Config {
        retention: Retention::WhenQuiet,
        ..bound(2, 2, 1, 0, 0)
    });
}

/// Retention as the code does it (finding 2 of model/README.md, fixed):
/// final sagas and records aged from their completion, ledger rows going
/// once their saga is gone. Holds with a checkout completing after a
/// re-publish (its rows old by key), a duplicate, and a crash.
#[test]
fn retention_from_completion() {
    holds(Config {
        stock: 2,
        credit: 4,
        retention: Retention::FromCompletion,
        ..bound(1, 1, 0, 1, 1)
    });
    holds(Config {
        retention: Retention::FromCompletion,
        ..bound(2, 2, 0, 0, 1)
    });
    holds(Config {
        retention: Retention::FromCompletion,
        ..bound(1, 2, 1, 1, 1)
    });
}

// --- the broken variants: each property bites ---

#[test]
fn ack_before_commit_loses_a_request() {
    // Completion by redelivery alone (without the sweeper healing lost
    // messages).
    let config = Config {
        sweeper: Sweeper::LostPublishesOnly,
        ..bound(2, 2, 1, 0, 0)
    };
    holds(config);
    let trace = fails(
        config.with_fault(Fault::AckBeforeCommit),
        EVERY_REQUEST_ENDS,
    );
    assert!(trace
        .iter()
        .any(|a| matches!(a, Action::Handle(_, Mode::AckThenCrash))));
}

#[test]
fn a_missing_ledger_check_applies_a_debit_twice() {
    // Stock and credit for two, so the repeat is not simply refused.
    let config = Config {
        stock: 2,
        credit: 4,
        ..bound(1, 1, 0, 1, 0)
    }
    .with_fault(Fault::MissingLedgerCheck);
    fails(config, NO_EFFECT_TWICE);
    fails(config, CONSERVATION);
}

#[test]
fn failing_before_the_compensation_tells_a_client_too_early() {
    fails(
        bound(2, 2, 0, 0, 0).with_fault(Fault::FailBeforeCompensation),
        TOLD_FAILED_CHANGED_NOTHING,
    );
}

#[test]
fn purging_a_running_sagas_ledger_row_breaks_conservation() {
    fails(
        bound(2, 2, 0, 0, 0).with_fault(Fault::PurgeRunningLedger),
        CONSERVATION,
    );
}

/// Retention aged from the request ID (acceptance), as it was: a checkout
/// that completes more than `RETENTION_HOURS` after it was accepted has its
/// final saga (and then its ledger rows, the saga being final or gone)
/// purgeable at once, while a duplicate step command or a sweeper's
/// re-publish of its still-pending record may come later.
#[test]
fn retaining_from_acceptance_applies_a_debit_twice() {
    let one = Config {
        stock: 2,
        credit: 4,
        retention: Retention::FromCompletion,
        ..bound(1, 1, 0, 0, 1)
    }
    .with_fault(Fault::RetainFromAcceptance);
    fails(one, NO_EFFECT_TWICE);
    fails(one, CONSERVATION);
    let two = Config {
        retention: Retention::FromCompletion,
        ..bound(2, 2, 0, 0, 1)
    }
    .with_fault(Fault::RetainFromAcceptance);
    fails(two, TOLD_FAILED_CHANGED_NOTHING);
}

#[test]
fn ignoring_the_checkout_in_flight_pays_an_order_twice() {
    let config = Config {
        stock: 2,
        credit: 4,
        ..bound(1, 2, 0, 0, 0)
    };
    fails(
        config.with_fault(Fault::IgnoreCheckoutInFlight),
        PAID_AT_MOST_ONCE,
    );
}

#[test]
fn answering_before_finalising_reads_pending_after_the_answer() {
    fails(
        bound(1, 1, 1, 0, 0).with_fault(Fault::AnswerBeforeFinalise),
        ANSWERED_NEVER_PENDING,
    );
}

#[test]
fn newest_queued_first_breaks_the_queue_order() {
    let config = Config {
        stock: 0,
        ..bound(1, 3, 0, 0, 0)
    };
    fails(config.with_fault(Fault::NewestQueuedFirst), QUEUE_IN_ORDER);
}

/// order-svc's step-result consumer commits a saga's move to compensating,
/// failed or succeeded (and the start of the next queued checkout), then
/// crashes before publishing what it causes: without the resend the
/// redelivered result changes nothing and sends nothing, so only the api's
/// sweeper (10 s, backing off to 5 min) gets the checkout going again.
#[test]
fn no_resend_on_redelivery_leaves_a_request_to_the_sweeper() {
    let config = Config {
        sweeper: Sweeper::LostPublishesOnly,
        ..bound(2, 2, 1, 0, 0)
    };
    let trace = fails(
        config.with_fault(Fault::NoResendOnRedelivery),
        EVERY_REQUEST_ENDS,
    );
    assert!(trace.iter().any(|a| matches!(
        a,
        Action::Handle(Msg::Result { .. }, Mode::CrashAfterCommit(_))
    )));
}

// --- fixed findings, kept as regression tests ---

/// Finding 1 (model/README.md): a crash between the commit of a step result
/// and its publishes used to be healed only by the sweeper. A redelivered
/// result now re-sends what its saga and its order's sagas still need, so
/// every request ends by JetStream's redelivery alone: with compensation,
/// with a queued checkout ended as already paid under a duplicate (results
/// racing resends), and with a queued checkout started by the failure of
/// the one ahead. (One order of three checkouts, where a crash can hit a
/// chain of queue starts, takes 1.3 million states and 90 s: `make model`.)
#[test]
fn a_redelivered_step_result_resends_what_a_crash_lost() {
    let lost_only = |c: Config| Config {
        sweeper: Sweeper::LostPublishesOnly,
        ..c
    };
    let o = holds(lost_only(bound(2, 2, 1, 0, 0)));
    assert!(o.found(SOME_COMPENSATED).is_some());
    let o = holds(lost_only(bound(1, 2, 1, 1, 0)));
    assert!(o.found(SOME_PAID).is_some());
    let o = holds(lost_only(Config {
        stock: 0,
        ..bound(1, 2, 1, 0, 0)
    }));
    assert!(o.found(SOME_QUEUED_STARTED).is_some());
}

// --- findings in today's protocol (see model/README.md) ---

/// The queue is served in request-ID order (acceptance at the api), not in
/// the order checkouts reached order-svc.
#[test]
fn finding_the_queue_is_served_in_acceptance_order() {
    let config = Config {
        stock: 0,
        ..bound(1, 3, 0, 0, 0)
    };
    fails(config, QUEUE_IN_ARRIVAL_ORDER);
    holds(config);
}

// --- on demand: `make model` ---

#[test]
#[ignore = "minutes: run with `make model`"]
fn larger_bound() {
    holds(Config::DEFAULT);
}
