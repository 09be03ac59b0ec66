//! The checkout protocol as a [stateright] model, explored exhaustively.
//!
//! The model's actors run the services' own decision functions, not a copy
//! of them: order-svc's [`order_svc::saga`] (admission, the saga state
//! machine and what it sends), and stock-svc's and payment-svc's
//! [`balance::plan::plan`] (the idempotent debit and its compensation).
//! What the model adds is the world around them: which rows are durable,
//! what a crash loses, and a JetStream that duplicates, reorders and
//! redelivers whatever was not acknowledged. See `model/README.md`.

mod world;

pub use world::{Action, Mode, Msg, Record, State};

use std::collections::BTreeSet;

use stateright::{Checker, HasDiscoveries, Model, Property};

/// A deliberately broken variant of the protocol, to show the model bites:
/// each must produce a counterexample to the property it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fault {
    /// Today's protocol.
    #[default]
    None,
    /// A consumer acknowledges a message before its transaction commits (a
    /// crash in between loses it). Breaks: [`EVERY_REQUEST_ENDS`].
    AckBeforeCommit,
    /// stock-svc and payment-svc decide without reading the ledger row of
    /// the saga (a redelivered debit applies again). Breaks:
    /// [`NO_EFFECT_TWICE`].
    MissingLedgerCheck,
    /// order-svc reports the failure as soon as a step is refused, before
    /// the compensation is confirmed. Breaks: [`TOLD_FAILED_CHANGED_NOTHING`].
    FailBeforeCompensation,
    /// Retention purges a ledger row while its saga still runs. Breaks:
    /// [`CONSERVATION`].
    PurgeRunningLedger,
    /// Admission ignores the checkout in flight (two sagas of one order run
    /// at once). Breaks: [`PAID_AT_MOST_ONCE`].
    IgnoreCheckoutInFlight,
    /// The waiting client is answered as its saga ends, before its record
    /// is finalised (as the api does), but a read of a record still stored
    /// as pending does not ask order-svc. Breaks: [`ANSWERED_NEVER_PENDING`].
    AnswerBeforeFinalise,
    /// The next queued checkout is the newest, not the oldest. Breaks:
    /// [`QUEUE_IN_ORDER`].
    NewestQueuedFirst,
    /// A step result its saga already recorded re-sends nothing (order-svc
    /// before the resend): a crash between the commit that moved the saga
    /// and its publishes loses the compensation, the outcome or the next
    /// queued checkout's commands until the sweeper re-publishes the
    /// request. Breaks: [`EVERY_REQUEST_ENDS`] with
    /// [`Sweeper::LostPublishesOnly`].
    NoResendOnRedelivery,
    /// With [`Retention::FromCompletion`]: retention as it was before it
    /// counted from completion. Final sagas and records are aged from
    /// their request ID (acceptance), so a checkout pending longer than
    /// the retention has them purgeable the moment it completes, and a
    /// ledger row goes once its saga is final (or gone). Breaks:
    /// [`NO_EFFECT_TWICE`], [`CONSERVATION`] and
    /// [`TOLD_FAILED_CHANGED_NOTHING`] (a duplicate step or a re-publish
    /// comes after the purge).
    RetainFromAcceptance,
}

/// What the sweeper re-publishes, beyond [`Config::sweeps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Sweeper {
    /// Today's sweeper: every record still pending is re-published
    /// periodically (10 s, doubling to 5 min). In the model: whenever
    /// nothing else can happen (no message in flight), every pending record
    /// is re-published, at most `checkouts` rounds in all (a record that
    /// needs more is a liveness failure).
    #[default]
    Heals,
    /// Only records whose publish was lost (the api died in between) are
    /// swept: completion must come from JetStream's redelivery alone, as
    /// "ack after durable" promises.
    LostPublishesOnly,
}

/// When retention may purge a row (sagas, ledger rows, records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Retention {
    /// No purges.
    #[default]
    Never,
    /// The documented assumption (`runtime/src/retention.rs`): a row goes only
    /// once nothing can come late for it: its record is final, no message
    /// about it is in flight or waiting to be published, and its saga (if
    /// any) is final.
    WhenQuiet,
    /// What the code does: a final saga and a final record are aged from
    /// their `completed_at`; the retention is far longer than anything
    /// comes late after completion, so in the model they go once quiet
    /// (as [`Retention::WhenQuiet`]). A ledger row is aged from its key,
    /// the request's UUIDv7, i.e. from acceptance: a request pending longer
    /// than the retention (an outage) has ledger rows that are "old" the
    /// moment they are written, so in the model one goes at any time once
    /// order-svc no longer keeps its saga (purged).
    FromCompletion,
}

/// The bounds and the variant of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Config {
    /// Orders, all of one user, each one line of quantity 1 of one item.
    pub orders: u8,
    /// Checkout requests (each its own request ID), taken by the orders in
    /// turn: request `r` checks out order `r % orders`.
    pub checkouts: u8,
    /// The item's stock and the user's credit at the start.
    pub stock: i64,
    pub credit: i64,
    /// The item's price (each order's `total_cost`).
    pub price: i64,
    /// Crashes in all (any actor, at any step of a batch).
    pub crashes: u8,
    /// Extra copies of in-flight messages JetStream may deliver.
    pub duplicates: u8,
    /// Re-publishes by the sweeper of records that were published already,
    /// at any moment (one whose publish was lost is always swept: that is
    /// its job).
    pub sweeps: u8,
    /// Whether the sweeper's periodic re-publish heals a stuck record.
    pub sweeper: Sweeper,
    pub retention: Retention,
    pub fault: Fault,
}

impl Config {
    /// The bound `make model` (and the binary without arguments) checks:
    /// two orders, one checkout each, stock and credit for one order only
    /// (one succeeds, one fails with compensation), with one crash, one
    /// duplicate delivery and one sweep. The tests start from it and set
    /// their own counts.
    pub const DEFAULT: Config = Config {
        orders: 2,
        checkouts: 2,
        stock: 1,
        credit: 2,
        price: 2,
        crashes: 1,
        duplicates: 1,
        sweeps: 1,
        sweeper: Sweeper::Heals,
        retention: Retention::Never,
        fault: Fault::None,
    };

    pub fn with_fault(self, fault: Fault) -> Config {
        Config { fault, ..self }
    }

    pub fn requests(&self) -> u8 {
        self.checkouts
    }
}

/// Stock removed equals the stock of paid orders, credit removed equals the
/// `total_cost` of paid orders, whenever the system is at rest (no saga in
/// flight, no step command or result on the way); nothing is ever negative.
pub const CONSERVATION: &str = "conservation";
/// No debit and no compensation of a saga changes a balance twice.
pub const NO_EFFECT_TWICE: &str = "no effect applied twice";
/// When a client is told its checkout failed, none of the saga's debits is
/// still in effect.
pub const TOLD_FAILED_CHANGED_NOTHING: &str = "a checkout told failed changed nothing";
/// At most one checkout of an order charges and pays it.
pub const PAID_AT_MOST_ONCE: &str = "an order is paid at most once";
/// A record whose client was answered 200 or 4xx never reads pending again.
pub const ANSWERED_NEVER_PENDING: &str = "an answered record never reads pending";
/// Queued checkouts of an order start in the order the api accepted them
/// (request ID order: UUIDv7s made on acceptance), which is what
/// `next_in_queue` promises ("first come, first served").
pub const QUEUE_IN_ORDER: &str = "queued checkouts start in acceptance order";
/// Queued checkouts of an order start in the order they reached order-svc.
/// Not a guarantee of today's protocol (see the README's findings): a
/// checkout accepted earlier but delivered later goes first.
pub const QUEUE_IN_ARRIVAL_ORDER: &str = "queued checkouts start in arrival order at order-svc";
/// Liveness: every request accepted reaches succeeded or failed.
pub const EVERY_REQUEST_ENDS: &str = "every accepted request ends";

/// The model: a [`Config`] and the world of [`world`].
#[derive(Debug, Clone)]
pub struct Checkout {
    pub config: Config,
}

impl Model for Checkout {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State::new(&self.config)]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        state.actions(&self.config, actions);
    }

    fn next_state(&self, state: &State, action: Action) -> Option<State> {
        state.next(&self.config, action)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(CONSERVATION, |m: &Checkout, s: &State| {
                s.conserved(&m.config)
            }),
            Property::always(NO_EFFECT_TWICE, |_, s: &State| s.no_effect_twice()),
            Property::always(TOLD_FAILED_CHANGED_NOTHING, |_, s: &State| {
                !s.history.told_failed_with_effects
            }),
            Property::always(PAID_AT_MOST_ONCE, |_, s: &State| {
                s.history.paid_by.iter().all(|n| *n <= 1)
            }),
            Property::always(ANSWERED_NEVER_PENDING, |m: &Checkout, s: &State| {
                s.answered_never_pending(&m.config)
            }),
            Property::always(QUEUE_IN_ORDER, |_, s: &State| !s.history.queue_overtaken),
            Property::always(QUEUE_IN_ARRIVAL_ORDER, |_, s: &State| {
                !s.history.arrival_overtaken
            }),
            Property::eventually(EVERY_REQUEST_ENDS, |m: &Checkout, s: &State| {
                s.all_ended(&m.config)
            }),
            // Examples the model must reach, or it checks nothing.
            Property::sometimes(SOME_PAID, |_, s: &State| s.orders.iter().any(|o| o.paid)),
            Property::sometimes(SOME_COMPENSATED, |_, s: &State| s.history.compensated),
            Property::sometimes(SOME_QUEUED_STARTED, |_, s: &State| s.history.queued_started),
        ]
    }
}

/// Examples (stateright "sometimes" properties) that show the model is not
/// vacuous: an order gets paid, a failed checkout is compensated, and a
/// queued checkout starts.
pub const SOME_PAID: &str = "example: an order is paid";
pub const SOME_COMPENSATED: &str = "example: a refused checkout is compensated";
pub const SOME_QUEUED_STARTED: &str = "example: a queued checkout starts";

/// The safety and liveness properties (not the examples).
pub const PROPERTIES: [&str; 7] = [
    CONSERVATION,
    NO_EFFECT_TWICE,
    TOLD_FAILED_CHANGED_NOTHING,
    PAID_AT_MOST_ONCE,
    ANSWERED_NEVER_PENDING,
    QUEUE_IN_ORDER,
    EVERY_REQUEST_ENDS,
];

/// What one exhaustive check found.
#[derive(Debug)]
pub struct Outcome {
    pub config: Config,
    pub unique_states: usize,
    pub states: usize,
    pub max_depth: usize,
    pub seconds: f64,
    /// Property name → the counterexample (or, for examples, the example),
    /// as the actions from the initial state.
    pub discoveries: Vec<(&'static str, Vec<Action>)>,
}

impl Outcome {
    /// The counterexamples (discoveries of safety or liveness properties).
    pub fn violations(&self) -> Vec<&(&'static str, Vec<Action>)> {
        self.discoveries
            .iter()
            .filter(|(name, _)| PROPERTIES.contains(name))
            .collect()
    }

    pub fn found(&self, property: &str) -> Option<&Vec<Action>> {
        self.discoveries
            .iter()
            .find(|(name, _)| *name == property)
            .map(|(_, trace)| trace)
    }

    /// One line for the log: the bound and the counts.
    pub fn summary(&self) -> String {
        format!(
            "{:?}: {} unique states ({} generated), depth {}, {:.1} s",
            self.config, self.unique_states, self.states, self.max_depth, self.seconds
        )
    }

    /// A counterexample as numbered steps.
    pub fn trace(&self, property: &str) -> String {
        self.found(property)
            .map(|actions| {
                actions
                    .iter()
                    .enumerate()
                    .map(|(i, a)| format!("{:>3}. {a:?}\n", i + 1))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Explores every state of `config` breadth-first (shortest
/// counterexamples first). With `until`, stops once those properties have a
/// discovery (fault checks); without, explores everything.
pub fn check(config: Config, until: Option<&[&'static str]>) -> Outcome {
    let started = std::time::Instant::now();
    let mut builder = Checkout { config }.checker().threads(threads());
    if let Some(names) = until {
        builder = builder.finish_when(HasDiscoveries::AllOf(
            names.iter().copied().collect::<BTreeSet<_>>(),
        ));
    }
    let checker = builder.spawn_bfs().join();
    let model = checker.model();
    let mut discoveries: Vec<(&'static str, Vec<Action>)> = checker
        .discoveries()
        .into_iter()
        .map(|(name, path)| (name, shortest_prefix(model, name, path.into_actions())))
        .collect();
    discoveries.sort_by_key(|(name, _)| *name);
    Outcome {
        config,
        unique_states: checker.unique_state_count(),
        states: checker.state_count(),
        max_depth: checker.max_depth(),
        seconds: started.elapsed().as_secs_f64(),
        discoveries,
    }
}

/// A safety counterexample cut at its first violating state (the checker
/// may report a longer path through states that keep the violation).
fn shortest_prefix(model: &Checkout, name: &'static str, actions: Vec<Action>) -> Vec<Action> {
    let property = model.property(name);
    if property.expectation != stateright::Expectation::Always {
        return actions;
    }
    let mut state = State::new(&model.config);
    for (i, action) in actions.iter().enumerate() {
        match model.next_state(&state, action.clone()) {
            Some(next) => state = next,
            None => return actions,
        }
        if !(property.condition)(model, &state) {
            return actions[..=i].to_vec();
        }
    }
    actions
}

/// Checker threads: `MODEL_THREADS`, else the available cores.
fn threads() -> usize {
    std::env::var("MODEL_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1)
}
