//! Idempotent debits against balances that must not go negative: the saga
//! steps of stock-svc (reserve/release items) and payment-svc
//! (charge/refund credit), which are the same problem on different tables.
//!
//! A batch of commands is applied in one transaction:
//! 1. read the ledger rows of the batch's sagas (a debit is recorded once,
//!    keyed by saga ID: a redelivered command replays the recorded outcome);
//! 2. lock the touched accounts `FOR UPDATE` in ID order (no deadlocks
//!    between replicas), read their balances;
//! 3. decide everything in memory ([`plan`], a pure function);
//! 4. write balances and ledger rows with one set-based statement each;
//! 5. commit. Locks are held for these few statements only, never across a
//!    NATS round trip, so a hot row (one item everyone buys) is not a
//!    bottleneck.
//!
//! If two batches race on the same saga (two replicas, or a redelivery while
//! the first is still running), a debit's ledger primary key makes the
//! loser's transaction fail as a whole, and a compensation's locked ledger
//! row makes the loser wait and then see it done; a failed batch is
//! redelivered and replays the winner's outcome.

use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::Pool;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    consumer::Consumer,
    db::DbError,
    jetstream::{self, Outgoing},
    messages::saga::{Step, StepCommand, StepOutcome, StepResult},
    nats::Subjects,
};

/// Where a service keeps its balances and its ledger. The ledger table has
/// the columns `saga_id uuid PRIMARY KEY, lines jsonb, outcome text,
/// compensated boolean, compensated_at timestamptz` (see `sql/stock` and
/// `sql/payment`).
#[derive(Debug, Clone, Copy)]
pub struct Tables {
    /// e.g. `items`
    pub accounts: &'static str,
    /// e.g. `stock`
    pub balance: &'static str,
    /// e.g. `reservations`
    pub ledger: &'static str,
    /// The step that debits (`Reserve`) and the one that compensates it
    /// (`Release`).
    pub debit: Step,
    pub compensate: Step,
}

/// One command of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Debit {
        saga_id: Uuid,
        lines: Vec<(String, i64)>,
    },
    Compensate {
        saga_id: Uuid,
    },
}

impl Command {
    pub fn saga_id(&self) -> Uuid {
        match self {
            Command::Debit { saga_id, .. } | Command::Compensate { saga_id } => *saga_id,
        }
    }
}

/// What the ledger remembers of a saga's debit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub outcome: StepOutcome,
    /// Amount per account, summed (what a compensation gives back).
    pub lines: Vec<(String, i64)>,
    pub compensated: bool,
}

/// The decisions for one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One outcome per command, in order.
    pub results: Vec<StepOutcome>,
    /// New balance of every account that changed.
    pub balances: Vec<(String, i64)>,
    /// Ledger rows to insert (final state after the batch).
    pub inserts: Vec<(Uuid, Entry)>,
    /// Existing ledger rows to mark compensated.
    pub compensated: Vec<Uuid>,
}

/// Sums amounts per account, keeping first-seen order.
fn summed(lines: &[(String, i64)]) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    for (account, amount) in lines {
        match out.iter_mut().find(|(a, _)| a == account) {
            Some((_, total)) => *total = total.saturating_add(*amount),
            None => out.push((account.clone(), *amount)),
        }
    }
    out
}

/// Decides a batch. `existing` holds the ledger rows of the batch's sagas,
/// `balances` the current balance of every account the batch touches
/// (missing = the account does not exist).
pub fn plan(
    commands: &[Command],
    existing: &HashMap<Uuid, Entry>,
    balances: &HashMap<String, i64>,
) -> Plan {
    let mut entries = existing.clone();
    let mut new_sagas: Vec<Uuid> = Vec::new();
    let mut compensated: Vec<Uuid> = Vec::new();
    let mut balances = balances.clone();
    let mut changed: BTreeSet<String> = BTreeSet::new();
    let mut results = Vec::with_capacity(commands.len());

    for command in commands {
        let saga = command.saga_id();
        let outcome = match command {
            Command::Debit { lines, .. } => {
                if let Some(entry) = entries.get(&saga) {
                    entry.outcome // replay
                } else {
                    let need = summed(lines);
                    let outcome = if need
                        .iter()
                        .any(|(a, q)| *q < 0 || !balances.contains_key(a))
                    {
                        StepOutcome::NotFound
                    } else if need.iter().any(|(a, q)| balances[a] < *q) {
                        StepOutcome::Insufficient
                    } else {
                        for (a, q) in &need {
                            if let Some(b) = balances.get_mut(a) {
                                *b -= q;
                            }
                            changed.insert(a.clone());
                        }
                        StepOutcome::Done
                    };
                    entries.insert(
                        saga,
                        Entry {
                            outcome,
                            lines: need,
                            compensated: false,
                        },
                    );
                    new_sagas.push(saga);
                    outcome
                }
            }
            Command::Compensate { .. } => {
                match entries.get_mut(&saga) {
                    Some(entry) if entry.outcome == StepOutcome::Done && !entry.compensated => {
                        for (a, q) in &entry.lines {
                            // The account existed when debited; accounts are
                            // never deleted.
                            if let Some(b) = balances.get_mut(a) {
                                *b = b.saturating_add(*q);
                            }
                            changed.insert(a.clone());
                        }
                        entry.compensated = true;
                        if !new_sagas.contains(&saga) {
                            compensated.push(saga);
                        }
                    }
                    // Already compensated, or the debit changed nothing.
                    Some(_) => {}
                    None => {
                        // Compensation before any debit: record a debit
                        // that did nothing, so a late debit can never apply.
                        entries.insert(
                            saga,
                            Entry {
                                outcome: StepOutcome::NotFound,
                                lines: Vec::new(),
                                compensated: true,
                            },
                        );
                        new_sagas.push(saga);
                    }
                }
                StepOutcome::Done
            }
        };
        results.push(outcome);
    }

    Plan {
        results,
        balances: changed
            .into_iter()
            .map(|a| {
                let b = balances[&a];
                (a, b)
            })
            .collect(),
        inserts: new_sagas
            .into_iter()
            .filter_map(|s| entries.get(&s).map(|e| (s, e.clone())))
            .collect(),
        compensated,
    }
}

/// Applies a batch in one transaction and returns one outcome per command.
pub async fn apply(
    pool: &Pool,
    tables: &Tables,
    commands: &[Command],
) -> Result<Vec<StepOutcome>, DbError> {
    let Tables {
        accounts,
        balance,
        ledger,
        ..
    } = tables;
    let _timer = crate::db::time_transaction(&format!("{ledger}_apply"));
    let mut conn = crate::db::get(pool).await?;
    let tx = conn.transaction().await?;

    let sagas: Vec<Uuid> = commands
        .iter()
        .map(Command::saga_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut existing = HashMap::new();
    for row in crate::db::query(
        &tx,
        &format!(
            // Locked: a concurrent batch with the same saga (another
            // replica, a redelivery) waits here and then sees this
            // batch's committed row, so a compensation applies once.
            // Ledger rows before accounts, each in ID order: no deadlocks.
            "SELECT saga_id, lines, outcome, compensated FROM {ledger}
                 WHERE saga_id = ANY($1) ORDER BY saga_id FOR UPDATE"
        ),
        &[&sagas],
    )
    .await?
    {
        let lines: Value = row.get(1);
        let outcome: &str = row.get(2);
        existing.insert(
            row.get::<_, Uuid>(0),
            Entry {
                // The table's CHECK admits only known spellings.
                outcome: StepOutcome::parse(outcome).unwrap_or(StepOutcome::NotFound),
                lines: serde_json::from_value(lines).unwrap_or_default(),
                compensated: row.get(3),
            },
        );
    }

    let mut touched: BTreeSet<String> = BTreeSet::new();
    for c in commands {
        match c {
            Command::Debit { saga_id, lines } if !existing.contains_key(saga_id) => {
                touched.extend(lines.iter().map(|(a, _)| a.clone()));
            }
            Command::Debit { .. } => {}
            Command::Compensate { saga_id } => {
                if let Some(e) = existing.get(saga_id) {
                    touched.extend(e.lines.iter().map(|(a, _)| a.clone()));
                }
                // A debit of the same batch is covered by its own lines.
            }
        }
    }
    let touched: Vec<String> = touched.into_iter().collect();
    let mut balances = HashMap::new();
    if !touched.is_empty() {
        for row in crate::db::query(
            &tx,
            &format!(
                "SELECT id, {balance} FROM {accounts} WHERE id = ANY($1) ORDER BY id FOR UPDATE"
            ),
            &[&touched],
        )
        .await?
        {
            balances.insert(row.get::<_, String>(0), row.get::<_, i64>(1));
        }
    }

    let plan = plan(commands, &existing, &balances);

    if !plan.balances.is_empty() {
        let (ids, values): (Vec<String>, Vec<i64>) = plan.balances.iter().cloned().unzip();
        crate::db::execute(
            &tx,
            &format!(
                "UPDATE {accounts} AS a SET {balance} = u.b
                 FROM unnest($1::text[], $2::bigint[]) AS u(id, b) WHERE a.id = u.id"
            ),
            &[&ids, &values],
        )
        .await?;
    }
    if !plan.inserts.is_empty() {
        let ids: Vec<Uuid> = plan.inserts.iter().map(|(s, _)| *s).collect();
        let lines: Vec<Value> = plan
            .inserts
            .iter()
            .map(|(_, e)| serde_json::to_value(&e.lines).unwrap_or(Value::Null))
            .collect();
        let outcomes: Vec<&str> = plan
            .inserts
            .iter()
            .map(|(_, e)| e.outcome.as_str())
            .collect();
        let comp: Vec<bool> = plan.inserts.iter().map(|(_, e)| e.compensated).collect();
        crate::db::execute(
            &tx,
            &format!(
                "INSERT INTO {ledger} (saga_id, lines, outcome, compensated, compensated_at)
                 SELECT s, l, o, c, CASE WHEN c THEN now() END
                 FROM unnest($1::uuid[], $2::jsonb[], $3::text[], $4::bool[]) AS u(s, l, o, c)"
            ),
            &[&ids, &lines, &outcomes, &comp],
        )
        .await?;
    }
    if !plan.compensated.is_empty() {
        // Only rows not yet compensated flip; if any did not, someone else
        // compensated it meanwhile and this whole batch must not commit.
        let flipped = crate::db::execute(
            &tx,
            &format!(
                "UPDATE {ledger} SET compensated = true, compensated_at = now()
                     WHERE saga_id = ANY($1) AND NOT compensated"
            ),
            &[&plan.compensated],
        )
        .await?;
        if flipped != plan.compensated.len() as u64 {
            return Err(DbError::Conflict(format!(
                "{} of {} compensations in {ledger} were already applied",
                plan.compensated.len() as u64 - flipped,
                plan.compensated.len()
            )));
        }
    }
    tx.commit().await?;
    Ok(plan.results)
}

/// Runs a ledger service (stock-svc, payment-svc) until `shutdown`: its
/// request/reply endpoints (`server`), its saga-step consumer and its
/// operations endpoints (on `listener`).
pub async fn run_service(
    deps: &crate::bootstrap::Deps,
    server: crate::rpc::Server,
    listener: tokio::net::TcpListener,
    durable: &'static str,
    tables: Tables,
    max_messages: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), crate::bootstrap::RunError> {
    let js = jetstream::setup(&deps.nats, &deps.topology).await?;
    let mut tasks = crate::tasks::Tasks::new();
    let consumer = Consumer::new(js.clone(), deps.topology.clone(), durable, max_messages);
    let readiness = deps.readiness().with_consumers([consumer.liveness.clone()]);
    let (pool, subjects, stop) = (deps.pool.clone(), deps.subjects.clone(), tasks.stop_token());
    tasks.spawn("step consumer", async move {
        let s = stop.clone();
        let handler = |commands: Vec<StepCommand>| {
            let (pool, js, subjects, s) = (pool.clone(), js.clone(), subjects.clone(), s.clone());
            async move { handle(&pool, &js, &subjects, &tables, &commands, &s).await }
        };
        consumer.run(handler, stop).await;
        Ok::<_, StepsError>(())
    });
    let retention = deps.config.retention;
    let (pool, stop) = (deps.pool.clone(), tasks.stop_token());
    tasks.spawn("retention", async move {
        // A ledger row is a step's idempotency key: kept for the retention,
        // far longer than any redelivery can come late.
        let ledger = crate::retention::Table {
            name: tables.ledger,
            key: "saga_id",
            only: "true",
        };
        crate::retention::run(pool, vec![ledger], retention, stop).await;
        Ok::<_, std::convert::Infallible>(())
    });
    deps.serve(server, tasks, readiness, listener, shutdown)
        .await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum StepsError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    JetStream(#[from] jetstream::JetStreamError),
}

/// Applies a batch of step commands, then publishes one result per command
/// to order-svc (one message), before the consumer acknowledges.
async fn handle(
    pool: &Pool,
    js: &async_nats::jetstream::Context,
    subjects: &Subjects,
    tables: &Tables,
    commands: &[StepCommand],
    stop: &tokio_util::sync::CancellationToken,
) -> Result<(), StepsError> {
    // A step of another service cannot be ours to apply; it is logged and
    // answered with nothing (order-svc never sends one here).
    let ours: Vec<(Step, Command)> = commands
        .iter()
        .filter_map(|cmd| {
            let command = if cmd.step == tables.debit {
                Command::Debit {
                    saga_id: cmd.saga_id,
                    lines: cmd.lines.clone(),
                }
            } else if cmd.step == tables.compensate {
                Command::Compensate {
                    saga_id: cmd.saga_id,
                }
            } else {
                tracing::error!(ledger = tables.ledger, step = ?cmd.step, saga_id = %cmd.saga_id, "step for another service; ignored");
                return None;
            };
            Some((cmd.step, command))
        })
        .collect();
    let plain: Vec<Command> = ours.iter().map(|(_, c)| c.clone()).collect();
    let outcomes = apply(pool, tables, &plain).await?;

    let results: Vec<StepResult> = ours
        .iter()
        .zip(&outcomes)
        .map(|((step, command), outcome)| {
            let saga_id = command.saga_id();
            tracing::debug!(%saga_id, step = step.as_str(), ?outcome, "step applied");
            StepResult {
                saga_id,
                step: *step,
                outcome: *outcome,
            }
        })
        .collect();
    let messages = Outgoing::batches(results.into_iter().map(|r| (subjects.step_results(), r)));
    jetstream::publish_retrying(js, &messages, stop).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saga(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }
    fn debit(n: u128, lines: &[(&str, i64)]) -> Command {
        Command::Debit {
            saga_id: saga(n),
            lines: lines.iter().map(|(a, q)| (a.to_string(), *q)).collect(),
        }
    }
    fn balances(b: &[(&str, i64)]) -> HashMap<String, i64> {
        b.iter().map(|(a, q)| (a.to_string(), *q)).collect()
    }

    #[test]
    fn debits_until_the_balance_runs_out() {
        let cmds: Vec<Command> = (0..5).map(|i| debit(i, &[("x", 1)])).collect();
        let p = plan(&cmds, &HashMap::new(), &balances(&[("x", 3)]));
        use StepOutcome::*;
        assert_eq!(
            p.results,
            vec![Done, Done, Done, Insufficient, Insufficient]
        );
        assert_eq!(p.balances, vec![("x".to_string(), 0)]);
        assert_eq!(p.inserts.len(), 5, "refusals are recorded too");
    }

    #[test]
    fn multi_line_debit_is_all_or_nothing_and_sums_repeats() {
        let cmds = vec![debit(1, &[("a", 1), ("b", 2), ("a", 2)])];
        let p = plan(&cmds, &HashMap::new(), &balances(&[("a", 2), ("b", 5)]));
        assert_eq!(p.results, vec![StepOutcome::Insufficient], "a needs 3");
        assert!(p.balances.is_empty(), "nothing changes");
        assert_eq!(p.inserts[0].1.lines, vec![("a".into(), 3), ("b".into(), 2)]);

        let p = plan(&cmds, &HashMap::new(), &balances(&[("a", 3), ("b", 5)]));
        assert_eq!(p.results, vec![StepOutcome::Done]);
        assert_eq!(p.balances, vec![("a".into(), 0), ("b".into(), 3)]);
    }

    #[test]
    fn unknown_account_is_not_found() {
        let p = plan(
            &[debit(1, &[("a", 1), ("zz", 1)])],
            &HashMap::new(),
            &balances(&[("a", 9)]),
        );
        assert_eq!(p.results, vec![StepOutcome::NotFound]);
        assert!(p.balances.is_empty());
    }

    #[test]
    fn a_repeated_debit_replays_its_first_outcome() {
        let mut existing = HashMap::new();
        existing.insert(
            saga(1),
            Entry {
                outcome: StepOutcome::Done,
                lines: vec![("x".into(), 1)],
                compensated: false,
            },
        );
        // Enough balance for a second debit, but it must not happen.
        let p = plan(&[debit(1, &[("x", 1)])], &existing, &balances(&[("x", 10)]));
        assert_eq!(p.results, vec![StepOutcome::Done]);
        assert!(p.balances.is_empty() && p.inserts.is_empty());

        // The same saga twice in one batch debits once.
        let p = plan(
            &[debit(2, &[("x", 1)]), debit(2, &[("x", 1)])],
            &HashMap::new(),
            &balances(&[("x", 10)]),
        );
        assert_eq!(p.balances, vec![("x".into(), 9)]);
        assert_eq!(p.inserts.len(), 1);
    }

    #[test]
    fn compensation_gives_back_once() {
        let mut existing = HashMap::new();
        existing.insert(
            saga(1),
            Entry {
                outcome: StepOutcome::Done,
                lines: vec![("x".into(), 4)],
                compensated: false,
            },
        );
        let comp = Command::Compensate { saga_id: saga(1) };
        let p = plan(
            &[comp.clone(), comp.clone()],
            &existing,
            &balances(&[("x", 0)]),
        );
        assert_eq!(p.results, vec![StepOutcome::Done, StepOutcome::Done]);
        assert_eq!(p.balances, vec![("x".into(), 4)]);
        assert_eq!(p.compensated, vec![saga(1)]);

        if let Some(e) = existing.get_mut(&saga(1)) {
            e.compensated = true;
        }
        let p = plan(&[comp], &existing, &balances(&[("x", 4)]));
        assert!(p.balances.is_empty(), "already compensated");
    }

    #[test]
    fn compensating_a_refused_debit_changes_nothing() {
        let mut existing = HashMap::new();
        existing.insert(
            saga(1),
            Entry {
                outcome: StepOutcome::Insufficient,
                lines: vec![("x".into(), 4)],
                compensated: false,
            },
        );
        let p = plan(
            &[Command::Compensate { saga_id: saga(1) }],
            &existing,
            &balances(&[("x", 1)]),
        );
        assert_eq!(p.results, vec![StepOutcome::Done]);
        assert!(p.balances.is_empty() && p.compensated.is_empty());
    }

    #[test]
    fn compensation_before_debit_blocks_the_late_debit() {
        let cmds = vec![
            Command::Compensate { saga_id: saga(7) },
            debit(7, &[("x", 1)]),
        ];
        let p = plan(&cmds, &HashMap::new(), &balances(&[("x", 5)]));
        assert_eq!(p.results, vec![StepOutcome::Done, StepOutcome::NotFound]);
        assert!(p.balances.is_empty());
    }

    #[test]
    fn debit_then_compensation_in_one_batch_nets_to_zero() {
        let cmds = vec![
            debit(3, &[("x", 2)]),
            Command::Compensate { saga_id: saga(3) },
        ];
        let p = plan(&cmds, &HashMap::new(), &balances(&[("x", 5)]));
        assert_eq!(p.balances, vec![("x".into(), 5)]);
        assert_eq!(p.inserts.len(), 1);
        assert!(p.inserts[0].1.compensated);
        assert!(p.compensated.is_empty(), "the insert carries the flag");
    }
}
