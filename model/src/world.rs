//! The world the decision functions run in: the actors' durable rows, their
//! volatile state, the network, and the history the properties read.
//!
//! Each consumer handles one message per transaction here (a batch of one);
//! how a batch of several is decided is `plan`'s and the saga's own unit
//! tests' business. What the handlers do around the decision functions
//! mirrors, statement for statement, the code named on each.

use std::collections::{BTreeMap, HashMap};

use balance::plan::{self, Command, Entry};
use contracts::{
    ids::{ItemId, OrderId, UserId},
    limits::{Amount, Quantity},
    messages::saga::{FailureReason, Step, StepAction, StepOutcome, Verdict},
};
use order_svc::saga::{admit, Admission, Basket, OrderState, Outgoing, Saga, State as SagaState};
use uuid::Uuid;

use crate::{Config, Fault, Retention, Sweeper};

/// A request, by its position in acceptance order: request IDs are
/// UUIDv7s made by the api on acceptance, so this is also ID order.
pub type Req = u8;

/// A JetStream message (one item; copies beyond one are counted).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    /// api → order-svc (`order-checkout`).
    Checkout(Req),
    /// order-svc → stock-svc / payment-svc.
    Command { req: Req, action: StepAction },
    /// stock-svc / payment-svc → order-svc (`order-steps`).
    Result {
        req: Req,
        step: Step,
        outcome: StepOutcome,
    },
    /// order-svc → api (`api-outcomes`).
    Outcome { req: Req, verdict: Verdict },
}

impl Msg {
    fn req(&self) -> Req {
        match self {
            Msg::Checkout(r)
            | Msg::Command { req: r, .. }
            | Msg::Result { req: r, .. }
            | Msg::Outcome { req: r, .. } => *r,
        }
    }
}

/// How a consumer's handling of a message ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Commit, publish everything it causes, acknowledge.
    Ack,
    /// Commit, publish the messages in this bit mask, crash before the
    /// acknowledgement (the message is redelivered).
    CrashAfterCommit(u8),
    /// [`Fault::AckBeforeCommit`]: acknowledge, crash before committing.
    AckThenCrash,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// api stores request `r`'s record (the acceptance) and publishes
    /// `checkout requested`; `false`: it crashes in between (the record
    /// stays, the publish is lost).
    Accept(Req, bool),
    /// The sweeper publishes a pending record again: one whose publish was
    /// lost, or (bounded) one that was published.
    Sweep(Req),
    /// The sweeper's timer fires while nothing else happens
    /// ([`crate::Sweeper::Heals`]): every pending record is re-published.
    SweepWhenIdle,
    /// JetStream delivers one more copy of an in-flight message.
    Duplicate(Msg),
    /// A consumer takes a message (any in flight: reordering).
    Handle(Msg, Mode),
    /// Retention deletes order-svc's saga row.
    PurgeSaga(Req),
    /// Retention deletes a ledger row (0: stock-svc, 1: payment-svc).
    PurgeLedger(usize, Req),
    /// Retention deletes the api's record.
    PurgeRecord(Req),
}

/// The api's request record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Record {
    NotYet,
    Pending,
    Final { succeeded: bool },
    Purged,
}

/// order-svc's `orders` row (what the saga decisions read of it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Order {
    pub paid: bool,
    pub checkout_saga: Option<Req>,
}

/// stock-svc's or payment-svc's account and ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Balance {
    pub balance: i64,
    pub ledger: BTreeMap<Req, Entry>,
}

/// What happened, for the properties (no actor reads it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct History {
    /// Times each (request, step) changed a balance.
    pub applied: BTreeMap<(Req, Step), u8>,
    /// Per order: checkouts that charged it and succeeded.
    pub paid_by: Vec<u8>,
    /// What each client was answered (Some(succeeded)).
    pub told: Vec<Option<bool>>,
    /// A client was told "failed" while a debit of its saga stood.
    pub told_failed_with_effects: bool,
    /// Per order: requests in the order they were queued.
    pub queued: Vec<Vec<Req>>,
    /// A queued checkout started while one accepted before it (lower
    /// request ID) still waited.
    pub queue_overtaken: bool,
    /// A queued checkout started while one that queued before it (reached
    /// order-svc first) still waited.
    pub arrival_overtaken: bool,
    /// Whether each request's `checkout requested` was ever published.
    pub published: Vec<bool>,
    pub compensated: bool,
    pub queued_started: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    // api: durable records. (Its volatile state, records stored but not
    // yet published, is folded into `Action::Accept`.)
    pub records: Vec<Record>,
    // order-svc: durable sagas and orders.
    pub sagas: BTreeMap<Req, Saga>,
    pub orders: Vec<Order>,
    /// Queued sagas ended as already paid → the saga whose end ended them:
    /// the sagas' `completed_at`, shared by those one transaction finished.
    pub finished_with: BTreeMap<Req, Req>,
    // stock-svc (0) and payment-svc (1).
    pub balances: [Balance; 2],
    /// JetStream: un-acknowledged messages and their copies.
    pub network: BTreeMap<Msg, u8>,
    pub crashes: u8,
    pub duplicates: u8,
    pub sweeps: u8,
    pub idle_sweeps: u8,
    pub history: History,
}

const ITEM: &str = "item";
const USER: &str = "user";
const STOCK: usize = 0;
const PAYMENT: usize = 1;

fn saga_id(r: Req) -> Uuid {
    Uuid::from_u128(u128::from(r) + 1)
}

fn req_of(id: Uuid) -> Req {
    (id.as_u128() - 1) as Req
}

fn order_id(o: usize) -> OrderId {
    OrderId::new(format!("order-{o}"))
}

/// Requests alternate between orders in acceptance order.
fn order_of(config: &Config, r: Req) -> usize {
    usize::from(r % config.orders)
}

fn order_index(order: &OrderId) -> usize {
    order
        .as_str()
        .strip_prefix("order-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// What every order's checkout takes: one unit of the item, its price
/// from the user.
fn basket(config: &Config) -> Basket {
    Basket {
        user_id: UserId::from(USER),
        amount: Amount::new("price", config.price).expect("the model's price is an amount"),
        items: vec![(
            ItemId::from(ITEM),
            Quantity::new("quantity", 1).expect("1 unit"),
        )],
    }
}

/// Which service takes a step, and whether it debits.
fn service(step: Step) -> (usize, bool) {
    match step {
        Step::Reserve => (STOCK, true),
        Step::Release => (STOCK, false),
        Step::Charge => (PAYMENT, true),
        Step::Refund => (PAYMENT, false),
    }
}

/// The saga's messages as the network carries them.
fn messages(out: Vec<Outgoing>) -> Vec<Msg> {
    out.into_iter()
        .map(|o| match o {
            Outgoing::Command(c) => Msg::Command {
                req: req_of(c.saga_id),
                action: c.action,
            },
            Outgoing::Outcome(o) => Msg::Outcome {
                req: req_of(o.request_id),
                verdict: o.verdict,
            },
        })
        .collect()
}

impl State {
    pub fn new(config: &Config) -> State {
        let n = usize::from(config.requests());
        let orders = usize::from(config.orders);
        let account = |balance| Balance {
            balance,
            ledger: BTreeMap::new(),
        };
        State {
            records: vec![Record::NotYet; n],
            sagas: BTreeMap::new(),
            orders: vec![
                Order {
                    paid: false,
                    checkout_saga: None,
                };
                orders
            ],
            finished_with: BTreeMap::new(),
            balances: [account(config.stock), account(config.credit)],
            network: BTreeMap::new(),
            crashes: config.crashes,
            duplicates: config.duplicates,
            sweeps: config.sweeps,
            idle_sweeps: match config.sweeper {
                Sweeper::Heals => config.checkouts,
                Sweeper::LostPublishesOnly => 0,
            },
            history: History {
                paid_by: vec![0; orders],
                told: vec![None; n],
                queued: vec![Vec::new(); orders],
                published: vec![false; n],
                ..History::default()
            },
        }
    }

    pub fn actions(&self, config: &Config, actions: &mut Vec<Action>) {
        let n = self.records.len();
        // Requests arrive one after the other (their IDs are UUIDv7s).
        if let Some(r) = self.records.iter().position(|r| *r == Record::NotYet) {
            actions.push(Action::Accept(r as Req, true));
            if self.crashes > 0 {
                actions.push(Action::Accept(r as Req, false));
            }
        }
        for r in 0..n {
            let req = r as Req;
            if self.records[r] == Record::Pending {
                // A record whose publish was lost is always swept in the end
                // (that is the sweeper's job); re-publishing one that was
                // published is the sweeper's timing, bounded here.
                let lost = !self.history.published[r];
                let copy_in_flight = self.network.contains_key(&Msg::Checkout(req));
                if lost || (self.sweeps > 0 && !copy_in_flight) {
                    actions.push(Action::Sweep(req));
                }
            }
        }
        let stuck = self.records.contains(&Record::Pending);
        if self.network.is_empty() && stuck && self.idle_sweeps > 0 {
            actions.push(Action::SweepWhenIdle);
        }
        for (msg, copies) in &self.network {
            if self.duplicates > 0 && *copies <= config.duplicates {
                actions.push(Action::Duplicate(msg.clone()));
            }
            actions.push(Action::Handle(msg.clone(), Mode::Ack));
            if self.crashes > 0 {
                // Every subset of what the batch publishes, up to all of it.
                let caused = self.clone().handle(config, msg).len();
                for mask in 0..(1u8 << caused) {
                    actions.push(Action::Handle(msg.clone(), Mode::CrashAfterCommit(mask)));
                }
                if config.fault == Fault::AckBeforeCommit {
                    actions.push(Action::Handle(msg.clone(), Mode::AckThenCrash));
                }
            }
        }
        self.purges(config, actions);
    }

    fn purges(&self, config: &Config, actions: &mut Vec<Action>) {
        let from_completion = config.retention == Retention::FromCompletion;
        // The fault: final sagas and records aged from acceptance.
        let any_time = from_completion && config.fault == Fault::RetainFromAcceptance;
        if config.retention == Retention::Never && config.fault != Fault::PurgeRunningLedger {
            return;
        }
        for (r, saga) in &self.sagas {
            if saga.state.is_final() && (any_time || self.quiet(*r)) {
                actions.push(Action::PurgeSaga(*r));
            }
        }
        for (s, b) in self.balances.iter().enumerate() {
            for r in b.ledger.keys() {
                // balance/src/retention.rs asks order-svc: a row goes only
                // once its saga is gone (under the fault: final or gone).
                let saga = self.sagas.get(r);
                let running = saga.is_some_and(|g| !g.state.is_final());
                let broken = config.fault == Fault::PurgeRunningLedger && running;
                let over = if any_time { !running } else { saga.is_none() };
                let when_quiet = config.retention == Retention::WhenQuiet && self.quiet(*r);
                if (from_completion && over) || broken || when_quiet {
                    actions.push(Action::PurgeLedger(s, *r));
                }
            }
        }
        for (r, record) in self.records.iter().enumerate() {
            if matches!(record, Record::Final { .. }) && (any_time || self.quiet(r as Req)) {
                actions.push(Action::PurgeRecord(r as Req));
            }
        }
    }

    /// Nothing can come late for request `r`: its record is final, no
    /// message about it is in flight, its saga (if any) is final.
    fn quiet(&self, r: Req) -> bool {
        matches!(
            self.records[usize::from(r)],
            Record::Final { .. } | Record::Purged
        ) && !self.network.keys().any(|m| m.req() == r)
            && self.sagas.get(&r).is_none_or(|s| s.state.is_final())
    }

    pub fn next(&self, config: &Config, action: Action) -> Option<State> {
        let mut s = self.clone();
        match action {
            Action::Accept(r, published) => {
                // requests/writer.rs: the record's commit is the acceptance,
                // the publish comes after it.
                s.records[usize::from(r)] = Record::Pending;
                if published {
                    s.publish(Msg::Checkout(r));
                } else {
                    s.crashes -= 1;
                }
            }
            Action::Sweep(r) => {
                if s.history.published[usize::from(r)] {
                    s.sweeps -= 1;
                }
                s.publish(Msg::Checkout(r));
            }
            Action::SweepWhenIdle => {
                s.idle_sweeps -= 1;
                for r in 0..s.records.len() {
                    if s.records[r] == Record::Pending {
                        s.publish(Msg::Checkout(r as Req));
                    }
                }
            }
            Action::Duplicate(msg) => {
                s.duplicates -= 1;
                *s.network.get_mut(&msg)? += 1;
            }
            Action::Handle(msg, mode) => {
                s.network.get(&msg)?;
                match mode {
                    Mode::Ack => {
                        let out = s.handle(config, &msg);
                        s.announce(&out);
                        s.take(&msg);
                        out.into_iter().for_each(|m| s.publish(m));
                    }
                    Mode::CrashAfterCommit(mask) => {
                        s.crashes -= 1;
                        let out = s.handle(config, &msg);
                        if usize::from(mask) >= 1 << out.len() {
                            return None;
                        }
                        // The announcement goes out before the publishes:
                        // the crash may come after it.
                        s.announce(&out);
                        for (i, m) in out.into_iter().enumerate() {
                            if mask & (1 << i) != 0 {
                                s.publish(m);
                            }
                        }
                    }
                    Mode::AckThenCrash => {
                        s.crashes -= 1;
                        s.take(&msg);
                    }
                }
            }
            Action::PurgeSaga(r) => {
                s.sagas.remove(&r);
            }
            Action::PurgeLedger(svc, r) => {
                s.balances[svc].ledger.remove(&r);
            }
            Action::PurgeRecord(r) => s.records[usize::from(r)] = Record::Purged,
        }
        Some(s)
    }

    /// Puts a message in flight. A copy already in flight is not doubled:
    /// copies are indistinguishable, and extra deliveries are
    /// [`Action::Duplicate`]'s (bounded) business.
    fn publish(&mut self, msg: Msg) {
        if let Msg::Checkout(r) = msg {
            self.history.published[usize::from(r)] = true;
        }
        self.network.entry(msg).or_insert(1);
    }

    /// Acknowledges one copy.
    fn take(&mut self, msg: &Msg) {
        if let Some(n) = self.network.get_mut(msg) {
            *n -= 1;
            if *n == 0 {
                self.network.remove(msg);
            }
        }
    }

    /// Runs the consumer of `msg` and commits its transaction; returns what
    /// it publishes.
    fn handle(&mut self, config: &Config, msg: &Msg) -> Vec<Msg> {
        match msg {
            Msg::Checkout(r) => self.on_checkout(config, *r),
            Msg::Command { req, action } => self.on_command(config, *req, action),
            Msg::Result { req, step, outcome } => self.on_result(config, *req, *step, *outcome),
            Msg::Outcome { req, verdict } => {
                // requests/store.rs `finalize`: only a pending record changes
                // (`WHERE status = 'pending'`), and the waiting client hears
                // the changed record after the commit.
                if self.records[usize::from(*req)] == Record::Pending {
                    let succeeded = verdict.succeeded();
                    self.records[usize::from(*req)] = Record::Final { succeeded };
                    self.tell(*req, succeeded);
                }
                Vec::new()
            }
        }
    }

    /// order-svc's announcement of the sagas a commit ended
    /// (`saga::consumers::Checkout::announce`): the waiting client is
    /// answered now, before the outcome reaches the api's records. (A
    /// crash before the announcement only leaves the answer to the
    /// finalisation, as before.)
    fn announce(&mut self, caused: &[Msg]) {
        for m in caused {
            if let Msg::Outcome { req, verdict } = m {
                if self.records[usize::from(*req)] == Record::Pending {
                    self.tell(*req, verdict.succeeded());
                }
            }
        }
    }

    fn tell(&mut self, r: Req, succeeded: bool) {
        self.history.told[usize::from(r)] = Some(succeeded);
        if !succeeded {
            let standing = self.balances.iter().any(|b| {
                b.ledger
                    .get(&r)
                    .is_some_and(|e| e.outcome == StepOutcome::Done && !e.compensated)
            });
            self.history.told_failed_with_effects |= standing;
        }
    }

    /// order-svc `Checkout::on_requests` for a batch of one.
    fn on_checkout(&mut self, config: &Config, r: Req) -> Vec<Msg> {
        if let Some(saga) = self.sagas.get(&r) {
            return messages(saga.outgoing());
        }
        let o = order_of(config, r);
        let row = &self.orders[o];
        let in_flight =
            row.checkout_saga.is_some() && config.fault != Fault::IgnoreCheckoutInFlight;
        let admission = admit(Some(OrderState {
            paid: row.paid,
            checkout_in_flight: in_flight,
        }));
        let id = saga_id(r);
        let saga = match admission {
            Admission::Start => Saga::start(id, order_id(o), basket(config)),
            Admission::Busy => {
                self.history.queued[o].push(r);
                Saga::queued(id, order_id(o))
            }
            Admission::AlreadyPaid => Saga::finished(id, order_id(o), Verdict::Succeeded),
            Admission::NotFound => Saga::finished(
                id,
                order_id(o),
                Verdict::Failed(FailureReason::OrderNotFound),
            ),
        };
        let out = messages(saga.outgoing());
        // `set_checkout_sagas`: a running saga takes its order.
        if saga.state == SagaState::Running {
            self.orders[o].checkout_saga = Some(r);
        }
        self.sagas.insert(r, saga);
        out
    }

    /// order-svc `Checkout::on_results` for a batch of one.
    fn on_result(&mut self, config: &Config, r: Req, step: Step, outcome: StepOutcome) -> Vec<Msg> {
        let Some(saga) = self.sagas.get_mut(&r) else {
            return Vec::new(); // dead letter
        };
        let was_running = saga.state == SagaState::Running;
        if !saga.record(step, outcome) {
            if saga.resends_on_repeat() && config.fault != Fault::NoResendOnRedelivery {
                return self.resend(r);
            }
            return Vec::new();
        }
        let saga = saga.clone();
        let o = order_index(&saga.order_id);
        let mut out = Vec::new();
        if saga.state != SagaState::Running {
            out.extend(messages(saga.outgoing()));
        }
        if let (Fault::FailBeforeCompensation, SagaState::Compensating(reason)) =
            (config.fault, saga.state)
        {
            out.push(Msg::Outcome {
                req: r,
                verdict: Verdict::Failed(reason),
            });
        }
        if matches!(
            saga.state,
            SagaState::Compensating(_) | SagaState::Failed(_)
        ) {
            self.history.compensated |= saga.released || saga.refunded;
        }
        if was_running && saga.state == SagaState::Succeeded {
            self.history.paid_by[o] += 1;
        }
        if saga.state.is_final() {
            // `finish_orders`: only the saga holding the order frees it.
            let row = &mut self.orders[o];
            if row.checkout_saga == Some(r) {
                row.paid |= saga.state == SagaState::Succeeded;
                row.checkout_saga = None;
            }
            out.extend(self.next_in_queue(config, o, r));
        }
        out
    }

    /// order-svc `saga::store::resend_candidates` for one redelivered result of
    /// saga `r` (compensating or final): `r` itself, the saga holding its
    /// order (running or compensating), and the sagas finished in the same
    /// transaction as `r` (same `completed_at`), each one's `outgoing()`.
    fn resend(&self, r: Req) -> Vec<Msg> {
        let Some(saga) = self.sagas.get(&r) else {
            return Vec::new();
        };
        self.sagas
            .iter()
            .filter(|(q, s)| {
                s.order_id == saga.order_id
                    && (**q == r
                        || matches!(s.state, SagaState::Running | SagaState::Compensating(_))
                        || self.finished_with.get(q) == Some(&r))
            })
            .flat_map(|(_, s)| messages(s.outgoing()))
            .collect()
    }

    /// order-svc `saga::store::next_in_queue` for one order: queued sagas in ID
    /// order (`ORDER BY order_id, id`); on a paid order all finish, on a
    /// free one the first starts (`set_checkout_sagas` takes the order).
    fn next_in_queue(&mut self, config: &Config, o: usize, ended: Req) -> Vec<Msg> {
        let mut queued: Vec<Req> = self
            .sagas
            .iter()
            .filter(|(_, s)| order_index(&s.order_id) == o && s.state == SagaState::Queued)
            .map(|(r, _)| *r)
            .collect();
        if config.fault == Fault::NewestQueuedFirst {
            queued.reverse();
        }
        let mut out = Vec::new();
        if self.orders[o].paid {
            for r in queued {
                if let Some(saga) = self.sagas.get_mut(&r) {
                    saga.finish_queued_as_paid();
                    out.extend(messages(saga.outgoing()));
                    self.finished_with.insert(r, ended);
                }
            }
        } else if self.orders[o].checkout_saga.is_none() {
            if let Some(first) = queued.first().copied() {
                self.note_queue_start(o, first, &queued);
                if let Some(saga) = self.sagas.get_mut(&first) {
                    saga.start_queued(basket(config));
                    out.extend(messages(saga.outgoing()));
                    self.orders[o].checkout_saga = Some(first);
                }
            }
        }
        out
    }

    fn note_queue_start(&mut self, o: usize, started: Req, waiting: &[Req]) {
        let arrived = |r: Req| self.history.queued[o].iter().position(|q| *q == r);
        let others = || waiting.iter().filter(|w| **w != started);
        self.history.queue_overtaken |= others().any(|w| *w < started);
        self.history.arrival_overtaken |= others().any(|w| arrived(*w) < arrived(started));
        self.history.queued_started = true;
    }

    /// stock-svc / payment-svc `Store::apply` for a batch of one: the
    /// saga's ledger row and the balance in, `plan` decides, its rows out.
    fn on_command(&mut self, config: &Config, r: Req, action: &StepAction) -> Vec<Msg> {
        let step = action.step();
        let (svc, debit) = service(step);
        let id = saga_id(r);
        // balance/src/service.rs `Steps::handle`.
        let command = if debit {
            Command::Debit {
                saga_id: id,
                lines: plan::debit_lines(action),
            }
        } else {
            Command::Compensate { saga_id: id }
        };
        let b = &mut self.balances[svc];
        let mut existing = HashMap::new();
        if config.fault != Fault::MissingLedgerCheck {
            if let Some(e) = b.ledger.get(&r) {
                existing.insert(id, e.clone());
            }
        }
        let account = if svc == STOCK { ITEM } else { USER };
        let balances = HashMap::from([(account.to_owned(), b.balance)]);
        let p = plan::plan(&[command], &existing, &balances);
        for (_, new) in p.balances {
            if new != b.balance {
                *self.history.applied.entry((r, step)).or_default() += 1;
            }
            b.balance = new;
        }
        for (saga, entry) in p.inserts {
            b.ledger.insert(req_of(saga), entry);
        }
        for saga in p.compensated {
            if let Some(e) = b.ledger.get_mut(&req_of(saga)) {
                e.compensated = true;
            }
        }
        let outcome = p.results.first().copied().unwrap_or(StepOutcome::NotFound);
        vec![Msg::Result {
            req: r,
            step,
            outcome,
        }]
    }

    // --- what the properties read ---

    pub fn conserved(&self, config: &Config) -> bool {
        if self.balances.iter().any(|b| b.balance < 0) {
            return false;
        }
        let at_rest = self.sagas.values().all(|s| s.state.is_final())
            && !self
                .network
                .keys()
                .any(|m| matches!(m, Msg::Command { .. } | Msg::Result { .. }));
        if !at_rest {
            return true;
        }
        let paid = self.orders.iter().filter(|o| o.paid).count() as i64;
        config.stock - self.balances[STOCK].balance == paid
            && config.credit - self.balances[PAYMENT].balance == paid * config.price
    }

    pub fn no_effect_twice(&self) -> bool {
        self.history.applied.values().all(|n| *n <= 1)
    }

    /// A read of a told request's record is not pending: the stored record
    /// is final, or (api `Requests::get`) the stored one is pending and
    /// order-svc, asked, has the saga final. Under
    /// [`Fault::AnswerBeforeFinalise`] reads do not ask.
    pub fn answered_never_pending(&self, config: &Config) -> bool {
        let asks = config.fault != Fault::AnswerBeforeFinalise;
        self.history
            .told
            .iter()
            .zip(&self.records)
            .enumerate()
            .all(|(r, (told, record))| {
                told.is_none()
                    || *record != Record::Pending
                    || (asks
                        && self
                            .sagas
                            .get(&(r as Req))
                            .is_some_and(|s| s.state.is_final()))
            })
    }

    /// Every request was accepted and has ended (final, or final and
    /// purged).
    pub fn all_ended(&self, config: &Config) -> bool {
        self.records.len() == usize::from(config.requests())
            && self
                .records
                .iter()
                .all(|r| matches!(r, Record::Final { .. } | Record::Purged))
    }
}
