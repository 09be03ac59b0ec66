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

use contracts::messages::saga::{CheckoutOutcome, FailureReason, Step, StepCommand, StepOutcome};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting for an earlier checkout of the same order to end.
    Queued,
    Running,
    Compensating,
    Succeeded,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Compensating => "compensating",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> State {
        match s {
            "queued" => State::Queued,
            "running" => State::Running,
            "compensating" => State::Compensating,
            "succeeded" => State::Succeeded,
            _ => State::Failed,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, State::Succeeded | State::Failed)
    }
}

// Hash: the protocol model (`model/`) keeps sagas in its states.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Saga {
    pub id: Uuid,
    pub order_id: String,
    pub user_id: Option<String>,
    pub amount: i64,
    /// Quantity per item, summed over the order's lines.
    pub items: Vec<(String, i64)>,
    pub state: State,
    pub reserve: Option<StepOutcome>,
    pub charge: Option<StepOutcome>,
    pub released: bool,
    pub refunded: bool,
    pub reason: Option<FailureReason>,
    /// When the saga was stored (None before it is); for timing only.
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
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
    pub fn start(
        id: Uuid,
        order_id: &str,
        user_id: &str,
        amount: i64,
        items: Vec<(String, i64)>,
    ) -> Self {
        Self {
            id,
            order_id: order_id.to_owned(),
            user_id: Some(user_id.to_owned()),
            amount,
            items,
            state: State::Running,
            reserve: None,
            charge: None,
            released: false,
            refunded: false,
            reason: None,
            created_at: None,
        }
    }

    /// A saga waiting behind another checkout of the same order.
    pub fn queued(id: Uuid, order_id: &str) -> Self {
        Self {
            state: State::Queued,
            ..Self::finished(id, order_id, None)
        }
    }

    /// Starts a queued saga with the order as it is now.
    pub fn start_queued(&mut self, user_id: &str, amount: i64, items: Vec<(String, i64)>) {
        debug_assert_eq!(self.state, State::Queued);
        *self = Self {
            created_at: self.created_at,
            ..Self::start(self.id, &self.order_id, user_id, amount, items)
        };
    }

    /// Ends a queued saga because an earlier checkout paid the order.
    pub fn finish_queued_as_paid(&mut self) {
        debug_assert_eq!(self.state, State::Queued);
        self.state = State::Succeeded;
    }

    /// A saga that is over before it began (unknown order, already paid).
    pub fn finished(id: Uuid, order_id: &str, reason: Option<FailureReason>) -> Self {
        Self {
            id,
            order_id: order_id.to_owned(),
            user_id: None,
            amount: 0,
            items: Vec::new(),
            state: if reason.is_some() {
                State::Failed
            } else {
                State::Succeeded
            },
            reserve: None,
            charge: None,
            released: false,
            refunded: false,
            reason,
            created_at: None,
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
            State::Compensating | State::Succeeded | State::Failed
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
            self.reason = Some(match (reserve, charge) {
                (StepOutcome::Insufficient, _) => FailureReason::InsufficientStock,
                (StepOutcome::NotFound, _) => FailureReason::ItemNotFound,
                (StepOutcome::Rejected, _) | (_, StepOutcome::Rejected) => {
                    FailureReason::InvalidOrder
                }
                (_, StepOutcome::Insufficient) => FailureReason::InsufficientCredit,
                _ => FailureReason::UserNotFound,
            });
            self.state = State::Compensating;
        }
        if self.state == State::Compensating && !self.needs_release() && !self.needs_refund() {
            self.state = State::Failed;
        }
    }

    /// What this state still needs sent: the step commands not yet answered,
    /// the compensations not yet confirmed, or the final outcome. Sending any
    /// of them twice is harmless (deduplicated and idempotent downstream).
    pub fn outgoing(&self) -> Vec<Outgoing> {
        let command = |step: Step, lines: Vec<(String, i64)>| {
            Outgoing::Command(StepCommand {
                saga_id: self.id,
                step,
                lines,
            })
        };
        match self.state {
            State::Queued => Vec::new(),
            State::Running => {
                let mut out = Vec::new();
                if self.reserve.is_none() {
                    out.push(command(Step::Reserve, self.items.clone()));
                }
                if self.charge.is_none() {
                    let user = self.user_id.clone().unwrap_or_default();
                    out.push(command(Step::Charge, vec![(user, self.amount)]));
                }
                out
            }
            State::Compensating => {
                let mut out = Vec::new();
                if self.needs_release() {
                    out.push(command(Step::Release, Vec::new()));
                }
                if self.needs_refund() {
                    out.push(command(Step::Refund, Vec::new()));
                }
                out
            }
            State::Succeeded | State::Failed => vec![Outgoing::Outcome(CheckoutOutcome {
                request_id: self.id,
                order_id: self.order_id.clone(),
                succeeded: self.state == State::Succeeded,
                reason: self.reason,
            })],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepOutcome::*;

    fn saga() -> Saga {
        Saga::start(Uuid::from_u128(1), "o", "u", 10, vec![("i".into(), 2)])
    }

    fn steps(out: &[Outgoing]) -> Vec<Step> {
        out.iter()
            .filter_map(|o| match o {
                Outgoing::Command(c) => Some(c.step),
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
        assert_eq!(s.state, State::Compensating);
        assert!(!s.record(Step::Charge, Insufficient));
        assert!(s.resends_on_repeat(), "compensating: the release again");
        assert_eq!(steps(&s.outgoing()), vec![Step::Release]);
        assert!(s.record(Step::Release, Done));
        assert!(!s.record(Step::Release, Done));
        assert!(s.resends_on_repeat(), "failed: the outcome again");
        assert!(!outcome(&s).succeeded);
        let mut q = Saga::queued(Uuid::from_u128(2), "o");
        assert!(!q.record(Step::Reserve, Done));
        assert!(!q.resends_on_repeat(), "queued: no step was asked");
    }

    #[test]
    fn starts_with_both_steps_in_parallel() {
        let s = saga();
        assert_eq!(steps(&s.outgoing()), vec![Step::Reserve, Step::Charge]);
        match &s.outgoing()[1] {
            Outgoing::Command(c) => assert_eq!(c.lines, vec![("u".to_string(), 10)]),
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
            assert!(outcome(&s).succeeded);
        }
    }

    #[test]
    fn refused_stock_refunds_the_charge_then_fails() {
        let mut s = saga();
        s.record(Step::Charge, Done);
        s.record(Step::Reserve, Insufficient);
        assert_eq!(s.state, State::Compensating);
        assert_eq!(steps(&s.outgoing()), vec![Step::Refund]);
        assert!(s.record(Step::Refund, Done));
        assert_eq!(s.state, State::Failed);
        let o = outcome(&s);
        assert!(!o.succeeded);
        assert_eq!(o.reason, Some(FailureReason::InsufficientStock));
    }

    #[test]
    fn refused_credit_releases_the_stock() {
        let mut s = saga();
        s.record(Step::Reserve, Done);
        s.record(Step::Charge, Insufficient);
        assert_eq!(steps(&s.outgoing()), vec![Step::Release]);
        s.record(Step::Release, Done);
        assert_eq!(outcome(&s).reason, Some(FailureReason::InsufficientCredit));
    }

    #[test]
    fn a_rejected_step_compensates_the_other_and_fails_as_invalid() {
        let mut s = saga();
        s.record(Step::Charge, Done);
        s.record(Step::Reserve, Rejected);
        assert_eq!(steps(&s.outgoing()), vec![Step::Refund]);
        s.record(Step::Refund, Done);
        assert_eq!(outcome(&s).reason, Some(FailureReason::InvalidOrder));
    }

    #[test]
    fn nothing_to_undo_fails_at_once() {
        let mut s = saga();
        s.record(Step::Reserve, NotFound);
        s.record(Step::Charge, Insufficient);
        assert_eq!(s.state, State::Failed);
        assert_eq!(outcome(&s).reason, Some(FailureReason::ItemNotFound));
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
        let mut q = Saga::queued(Uuid::from_u128(2), "o");
        assert!(q.outgoing().is_empty());
        assert!(!q.record(Step::Reserve, Done), "nothing was sent for it");
        assert_eq!(q.state, State::Queued);
        let mut paid = q.clone();
        paid.finish_queued_as_paid();
        assert!(outcome(&paid).succeeded);
        q.start_queued("u", 10, vec![("i".into(), 2)]);
        assert_eq!(q.state, State::Running);
        assert_eq!(steps(&q.outgoing()), vec![Step::Reserve, Step::Charge]);
    }

    #[test]
    fn finished_sagas_only_report() {
        let paid = Saga::finished(Uuid::nil(), "o", None);
        assert!(outcome(&paid).succeeded);
        let missing = Saga::finished(Uuid::nil(), "o", Some(FailureReason::OrderNotFound));
        assert_eq!(outcome(&missing).reason, Some(FailureReason::OrderNotFound));
    }
}
