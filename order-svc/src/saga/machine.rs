//! The checkout saga as a state machine, free of I/O.
//!
//! ```text
//!             reserve + charge sent in parallel
//!  running ──both done──────────────────────────▶ succeeded (order paid)
//!     │
//!     └─any refused──▶ compensating ──undone──▶ failed
//!                      (release what was reserved,
//!                       refund what was charged)
//!     └─any refused, nothing to undo──────────▶ failed
//! ```
//! The outcome is published only once every compensation is confirmed, so a
//! client told "failed" finds stock and credit exactly as before.
//!
//! An order has at most one saga in flight. A checkout that arrives while
//! another of the same order runs is stored `queued` and started (or, if the
//! running one paid the order, answered "already paid") when that one ends:
//! first come, first served, and nothing is redelivered in a loop meanwhile.

use contracts::{
    ids::{ItemId, OrderId, UserId},
    limits::{Amount, Quantity},
    messages::{
        saga::{
            CheckoutOutcome, FailureReason, Step, StepAction, StepCommand, StepOutcome, Verdict,
        },
        Unparsable,
    },
};
use uuid::Uuid;

/// Where a saga stands. A saga that refused carries its reason from the
/// moment it knows it: there is no failure without one.
// Hash and Ord: the protocol model (`model/`) keeps sagas in its states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Waiting for an earlier checkout of the same order to end.
    Queued,
    Running,
    /// A step refused for this reason; undoing the other.
    Compensating(FailureReason),
    Succeeded,
    Failed(FailureReason),
}

impl State {
    /// The stored spelling (the `state` column; the reason has its own).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Compensating(_) => "compensating",
            State::Succeeded => "succeeded",
            State::Failed(_) => "failed",
        }
    }

    /// The reason stored with it (the `reason` column).
    pub fn reason(self) -> Option<FailureReason> {
        match self {
            State::Compensating(r) | State::Failed(r) => Some(r),
            State::Queued | State::Running | State::Succeeded => None,
        }
    }

    /// From the stored pair (`state`, `reason`); anything that is not one
    /// of the states above (an unknown spelling, a failure without its
    /// reason, a reason where none belongs) is an error naming it.
    pub fn parse(state: &str, reason: Option<&str>) -> Result<State, Unparsable> {
        let reason = reason.map(FailureReason::parse).transpose()?;
        let unfit = || {
            Unparsable::new(
                "saga state",
                &format!(
                    "{state} (reason {})",
                    reason.map_or("none", FailureReason::as_str)
                ),
            )
        };
        Ok(match (state, reason) {
            ("queued", None) => State::Queued,
            ("running", None) => State::Running,
            ("succeeded", None) => State::Succeeded,
            ("compensating", Some(r)) => State::Compensating(r),
            ("failed", Some(r)) => State::Failed(r),
            ("queued" | "running" | "succeeded" | "compensating" | "failed", _) => {
                return Err(unfit())
            }
            _ => return Err(Unparsable::new("saga state", state)),
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, State::Succeeded | State::Failed(_))
    }

    /// The verdict a final state tells the client.
    pub fn verdict(self) -> Option<Verdict> {
        match self {
            State::Succeeded => Some(Verdict::Succeeded),
            State::Failed(r) => Some(Verdict::Failed(r)),
            State::Queued | State::Running | State::Compensating(_) => None,
        }
    }
}

/// What a started saga takes, read from its order when it starts: the
/// user to charge, the order's total and its lines summed per item (in the
/// order each item was first added), all inside the bounds.
// Hash: the protocol model keeps sagas in its states.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Basket {
    pub user_id: UserId,
    pub amount: Amount,
    pub items: Vec<(ItemId, Quantity)>,
}

// Hash: the protocol model (`model/`) keeps sagas in its states.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Saga {
    pub id: Uuid,
    pub order_id: OrderId,
    /// Set when the saga starts (running and every state after it); none
    /// for one that never started (queued, or finished at admission).
    pub basket: Option<Basket>,
    pub state: State,
    pub reserve: Option<StepOutcome>,
    pub charge: Option<StepOutcome>,
    pub released: bool,
    pub refunded: bool,
    /// When the saga was stored (None before it is); for timing only.
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it ended: set by the batch that ended it ([`Saga::stamp`]),
    /// stored with it and sent with its outcome. None while it runs.
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What an order allows a new checkout to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// No such order: fail at once.
    NotFound,
    /// Already paid: succeed at once, charging nothing.
    AlreadyPaid,
    /// Another checkout of the order is in flight: queue behind it.
    Busy,
    /// Start reserving and charging.
    Start,
}

/// The order as admission sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderState {
    pub paid: bool,
    pub checkout_in_flight: bool,
}

/// Decides what a new checkout of an order does (`None`: no such order).
pub fn admit(order: Option<OrderState>) -> Admission {
    match order {
        None => Admission::NotFound,
        Some(o) if o.paid => Admission::AlreadyPaid,
        Some(o) if o.checkout_in_flight => Admission::Busy,
        Some(_) => Admission::Start,
    }
}

/// A message the saga asks to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Command(StepCommand),
    Outcome(CheckoutOutcome),
}

impl Saga {
    /// A saga that starts reserving and charging.
    pub fn start(id: Uuid, order_id: OrderId, basket: Basket) -> Self {
        Self {
            id,
            order_id,
            basket: Some(basket),
            state: State::Running,
            reserve: None,
            charge: None,
            released: false,
            refunded: false,
            created_at: None,
            completed_at: None,
        }
    }

    /// A saga waiting behind another checkout of the same order.
    pub fn queued(id: Uuid, order_id: OrderId) -> Self {
        Self {
            id,
            order_id,
            basket: None,
            state: State::Queued,
            reserve: None,
            charge: None,
            released: false,
            refunded: false,
            created_at: None,
            completed_at: None,
        }
    }

    /// Starts a queued saga with the order as it is now.
    pub fn start_queued(&mut self, basket: Basket) {
        debug_assert_eq!(self.state, State::Queued);
        *self = Self {
            created_at: self.created_at,
            ..Self::start(self.id, self.order_id.clone(), basket)
        };
    }

    /// Ends a queued saga because an earlier checkout paid the order.
    pub fn finish_queued_as_paid(&mut self) {
        debug_assert_eq!(self.state, State::Queued);
        self.state = State::Succeeded;
    }

    /// A saga that is over before it began (unknown order, already paid).
    pub fn finished(id: Uuid, order_id: OrderId, verdict: Verdict) -> Self {
        Self {
            state: match verdict {
                Verdict::Succeeded => State::Succeeded,
                Verdict::Failed(reason) => State::Failed(reason),
            },
            ..Self::queued(id, order_id)
        }
    }

    /// Records a step result and moves on if it can. Returns false when the
    /// result was already known (a redelivery).
    pub fn record(&mut self, step: Step, outcome: StepOutcome) -> bool {
        if self.state == State::Queued {
            // Nothing was sent for it yet: a result cannot be ours.
            return false;
        }
        // The first result of a step stands; a later one is a redelivery.
        let first = |slot: &mut Option<StepOutcome>| {
            let empty = slot.is_none();
            if empty {
                *slot = Some(outcome);
            }
            empty
        };
        let slot_was_empty = match step {
            Step::Reserve => first(&mut self.reserve),
            Step::Charge => first(&mut self.charge),
            Step::Release => !std::mem::replace(&mut self.released, true),
            Step::Refund => !std::mem::replace(&mut self.refunded, true),
        };
        if slot_was_empty {
            self.advance();
        }
        slot_was_empty
    }

    /// Whether a step result this saga already had (`record` returned
    /// false) calls for re-sending what the saga caused: once it moved past
    /// running, the batch that first recorded the result committed that
    /// move and may have died before publishing it. A running saga sent
    /// nothing on its first result; a queued one never had a step.
    pub fn resends_on_repeat(&self) -> bool {
        matches!(
            self.state,
            State::Compensating(_) | State::Succeeded | State::Failed(_)
        )
    }

    fn needs_release(&self) -> bool {
        self.reserve == Some(StepOutcome::Done) && !self.released
    }

    fn needs_refund(&self) -> bool {
        self.charge == Some(StepOutcome::Done) && !self.refunded
    }

    fn advance(&mut self) {
        if self.state == State::Running {
            let (Some(reserve), Some(charge)) = (self.reserve, self.charge) else {
                return;
            };
            if reserve == StepOutcome::Done && charge == StepOutcome::Done {
                self.state = State::Succeeded;
                return;
            }
            // Stock is reported first when both were refused.
            self.state = State::Compensating(match (reserve, charge) {
                (StepOutcome::Insufficient, _) => FailureReason::InsufficientStock,
                (StepOutcome::NotFound, _) => FailureReason::ItemNotFound,
                (StepOutcome::Rejected, _) | (_, StepOutcome::Rejected) => {
                    FailureReason::InvalidOrder
                }
                (_, StepOutcome::Insufficient) => FailureReason::InsufficientCredit,
                _ => FailureReason::UserNotFound,
            });
        }
        if let State::Compensating(reason) = self.state {
            if !self.needs_release() && !self.needs_refund() {
                self.state = State::Failed(reason);
            }
        }
    }

    /// What this state still needs sent: the step commands not yet answered,
    /// the compensations not yet confirmed, or the final outcome. Sending any
    /// of them twice is harmless (deduplicated and idempotent downstream).
    pub fn outgoing(&self) -> Vec<Outgoing> {
        let command = |action: StepAction| {
            Outgoing::Command(StepCommand {
                saga_id: self.id,
                action,
            })
        };
        match self.state {
            State::Queued => Vec::new(),
            State::Running => {
                // Every way into running sets the basket (and a stored
                // running saga without one does not load).
                let Some(basket) = &self.basket else {
                    return Vec::new();
                };
                let mut out = Vec::new();
                if self.reserve.is_none() {
                    out.push(command(StepAction::Reserve {
                        items: basket.items.clone(),
                    }));
                }
                if self.charge.is_none() {
                    out.push(command(StepAction::Charge {
                        user_id: basket.user_id.clone(),
                        amount: basket.amount,
                    }));
                }
                out
            }
            State::Compensating(_) => {
                let mut out = Vec::new();
                if self.needs_release() {
                    out.push(command(StepAction::Release));
                }
                if self.needs_refund() {
                    out.push(command(StepAction::Refund));
                }
                out
            }
            State::Succeeded => vec![self.outcome(Verdict::Succeeded)],
            State::Failed(reason) => vec![self.outcome(Verdict::Failed(reason))],
        }
    }

    fn outcome(&self, verdict: Verdict) -> Outgoing {
        Outgoing::Outcome(CheckoutOutcome {
            request_id: self.id,
            order_id: self.order_id.clone(),
            verdict,
            completed_at: self.completed_at,
        })
    }

    /// Notes `at` as the end of a saga that is final and has no end yet
    /// (one batch stamps every saga it ends with the same instant).
    pub fn stamp(&mut self, at: chrono::DateTime<chrono::Utc>) {
        if self.state.is_final() && self.completed_at.is_none() {
            self.completed_at = Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepOutcome::*;

    fn basket() -> Basket {
        Basket {
            user_id: UserId::from("u"),
            amount: Amount::new("a", 10).unwrap(),
            items: vec![(ItemId::from("i"), Quantity::new("q", 2).unwrap())],
        }
    }

    fn saga() -> Saga {
        Saga::start(Uuid::from_u128(1), OrderId::from("o"), basket())
    }

    fn o() -> OrderId {
        OrderId::from("o")
    }

    fn steps(out: &[Outgoing]) -> Vec<Step> {
        out.iter()
            .filter_map(|o| match o {
                Outgoing::Command(c) => Some(c.step()),
                Outgoing::Outcome(_) => None,
            })
            .collect()
    }

    fn outcome(s: &Saga) -> CheckoutOutcome {
        match s.outgoing().as_slice() {
            [Outgoing::Outcome(o)] => o.clone(),
            other => panic!("expected the outcome, got {other:?}"),
        }
    }

    #[test]
    fn a_repeated_result_resends_only_past_running() {
        let mut s = saga();
        assert!(s.record(Step::Reserve, Done));
        assert!(!s.record(Step::Reserve, Done));
        assert!(!s.resends_on_repeat(), "running: nothing was sent");
        assert!(s.record(Step::Charge, Insufficient));
        assert_eq!(
            s.state,
            State::Compensating(FailureReason::InsufficientCredit)
        );
        assert!(!s.record(Step::Charge, Insufficient));
        assert!(s.resends_on_repeat(), "compensating: the release again");
        assert_eq!(steps(&s.outgoing()), vec![Step::Release]);
        assert!(s.record(Step::Release, Done));
        assert!(!s.record(Step::Release, Done));
        assert!(s.resends_on_repeat(), "failed: the outcome again");
        assert!(!outcome(&s).verdict.succeeded());
        let mut q = Saga::queued(Uuid::from_u128(2), o());
        assert!(!q.record(Step::Reserve, Done));
        assert!(!q.resends_on_repeat(), "queued: no step was asked");
    }

    #[test]
    fn starts_with_both_steps_in_parallel() {
        let s = saga();
        assert_eq!(steps(&s.outgoing()), vec![Step::Reserve, Step::Charge]);
        match &s.outgoing()[1] {
            Outgoing::Command(c) => assert_eq!(
                c.action,
                StepAction::Charge {
                    user_id: UserId::from("u"),
                    amount: Amount::new("a", 10).unwrap()
                }
            ),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn both_done_succeeds_in_either_order() {
        for order in [[Step::Reserve, Step::Charge], [Step::Charge, Step::Reserve]] {
            let mut s = saga();
            assert!(s.record(order[0], Done));
            assert_eq!(s.state, State::Running);
            assert_eq!(
                steps(&s.outgoing()),
                vec![order[1]],
                "only the missing step is re-sent"
            );
            assert!(s.record(order[1], Done));
            assert_eq!(s.state, State::Succeeded);
            assert_eq!(outcome(&s).verdict, Verdict::Succeeded);
        }
    }

    #[test]
    fn refused_stock_refunds_the_charge_then_fails() {
        let mut s = saga();
        s.record(Step::Charge, Done);
        s.record(Step::Reserve, Insufficient);
        assert_eq!(
            s.state,
            State::Compensating(FailureReason::InsufficientStock)
        );
        assert_eq!(steps(&s.outgoing()), vec![Step::Refund]);
        assert!(s.record(Step::Refund, Done));
        assert_eq!(s.state, State::Failed(FailureReason::InsufficientStock));
        assert_eq!(
            outcome(&s).verdict,
            Verdict::Failed(FailureReason::InsufficientStock)
        );
    }

    #[test]
    fn refused_credit_releases_the_stock() {
        let mut s = saga();
        s.record(Step::Reserve, Done);
        s.record(Step::Charge, Insufficient);
        assert_eq!(steps(&s.outgoing()), vec![Step::Release]);
        s.record(Step::Release, Done);
        assert_eq!(
            outcome(&s).verdict,
            Verdict::Failed(FailureReason::InsufficientCredit)
        );
    }

    #[test]
    fn a_rejected_step_compensates_the_other_and_fails_as_invalid() {
        let mut s = saga();
        s.record(Step::Charge, Done);
        s.record(Step::Reserve, Rejected);
        assert_eq!(steps(&s.outgoing()), vec![Step::Refund]);
        s.record(Step::Refund, Done);
        assert_eq!(
            outcome(&s).verdict,
            Verdict::Failed(FailureReason::InvalidOrder)
        );
    }

    #[test]
    fn nothing_to_undo_fails_at_once() {
        let mut s = saga();
        s.record(Step::Reserve, NotFound);
        s.record(Step::Charge, Insufficient);
        assert_eq!(s.state, State::Failed(FailureReason::ItemNotFound));
        assert_eq!(
            outcome(&s).verdict,
            Verdict::Failed(FailureReason::ItemNotFound)
        );
    }

    #[test]
    fn redelivered_results_change_nothing() {
        let mut s = saga();
        s.record(Step::Reserve, Done);
        let before = s.clone();
        assert!(
            !s.record(Step::Reserve, Insufficient),
            "the first result stands"
        );
        assert_eq!(s.reserve, before.reserve);
        s.record(Step::Charge, Insufficient);
        s.record(Step::Release, Done);
        let done = s.clone();
        assert!(!s.record(Step::Release, Done));
        assert!(!s.record(Step::Charge, Done));
        assert_eq!(s, done);
    }

    #[test]
    fn admission() {
        let order = |paid, checkout_in_flight| {
            Some(OrderState {
                paid,
                checkout_in_flight,
            })
        };
        assert_eq!(admit(None), Admission::NotFound);
        assert_eq!(admit(order(true, false)), Admission::AlreadyPaid);
        assert_eq!(
            admit(order(true, true)),
            Admission::AlreadyPaid,
            "paid wins: nothing to wait for"
        );
        assert_eq!(admit(order(false, true)), Admission::Busy);
        assert_eq!(admit(order(false, false)), Admission::Start);
    }

    #[test]
    fn a_queued_saga_waits_silently_then_starts_or_reports_paid() {
        let mut q = Saga::queued(Uuid::from_u128(2), o());
        assert!(q.outgoing().is_empty());
        assert!(!q.record(Step::Reserve, Done), "nothing was sent for it");
        assert_eq!(q.state, State::Queued);
        let mut paid = q.clone();
        paid.finish_queued_as_paid();
        assert_eq!(outcome(&paid).verdict, Verdict::Succeeded);
        q.start_queued(basket());
        assert_eq!(q.state, State::Running);
        assert_eq!(steps(&q.outgoing()), vec![Step::Reserve, Step::Charge]);
    }

    #[test]
    fn finished_sagas_only_report() {
        let paid = Saga::finished(Uuid::nil(), o(), Verdict::Succeeded);
        assert_eq!(outcome(&paid).verdict, Verdict::Succeeded);
        let missing = Saga::finished(
            Uuid::nil(),
            o(),
            Verdict::Failed(FailureReason::OrderNotFound),
        );
        assert_eq!(
            outcome(&missing).verdict,
            Verdict::Failed(FailureReason::OrderNotFound)
        );
    }

    #[test]
    fn stored_states_parse_back_and_anything_else_is_an_error_naming_it() {
        let r = FailureReason::InsufficientStock;
        for state in [
            State::Queued,
            State::Running,
            State::Compensating(r),
            State::Succeeded,
            State::Failed(r),
        ] {
            let reason = state.reason().map(FailureReason::as_str);
            assert_eq!(State::parse(state.as_str(), reason), Ok(state));
        }
        for (state, reason, says) in [
            ("done", None, r#"unknown saga state "done""#),
            (
                "failed",
                None,
                r#"unknown saga state "failed (reason none)""#,
            ),
            (
                "running",
                Some("item_not_found"),
                r#"unknown saga state "running (reason item_not_found)""#,
            ),
            (
                "failed",
                Some("gremlins"),
                r#"unknown failure reason "gremlins""#,
            ),
        ] {
            let e = State::parse(state, reason).unwrap_err();
            assert_eq!(e.to_string(), says);
        }
    }
}
