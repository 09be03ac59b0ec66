//! The decisions of one batch of saga steps, in memory and without I/O:
//! which debits the balances allow, which compensations give back what,
//! and which ledger rows to write. [`crate::store`] reads the inputs and
//! writes the outcome in one transaction.
//!
//! A debit is recorded once, keyed by saga ID: a repeated command replays
//! the recorded outcome. A compensation before its debit records a debit
//! that did nothing, so a late debit can never apply.

use std::collections::{BTreeSet, HashMap};

use contracts::messages::saga::StepOutcome;
use uuid::Uuid;

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

/// What the ledger remembers of a saga's debit. (Hash: the protocol model
/// keeps ledger rows in its states.)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
