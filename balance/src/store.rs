//! Every SQL statement of a balance service, built once from its [`Tables`].
//!
//! The plain endpoints are one statement each, so each is atomic and the
//! table's `CHECK (balance >= 0)` decides what is allowed.
//!
//! A batch of saga steps is one transaction ([`Store::apply`]):
//! 1. read and lock the ledger rows of the batch's sagas;
//! 2. lock the touched accounts `FOR UPDATE` in ID order (no deadlocks
//!    between replicas), read their balances;
//! 3. decide everything in memory ([`plan`]);
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

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use contracts::{
    limits::{Amount, MAX_BALANCE},
    messages::{saga::StepOutcome, Unparsable},
};
use deadpool_postgres::Pool;
use runtime::db::{DbError, Mismatch, Stmt, Tx};
use serde_json::Value;
use tokio_postgres::{types::ToSql, Row};
use uuid::Uuid;

use crate::plan::{plan, Command, Entry};

/// Where a service keeps its balances and its ledger. The ledger table has
/// the columns `saga_id uuid PRIMARY KEY, lines jsonb, outcome text,
/// compensated boolean, compensated_at timestamptz` (see `sql/stock` and
/// `sql/payment`).
#[derive(Debug, Clone, Copy)]
pub struct Tables {
    /// e.g. `items`, keyed by `id text`
    pub accounts: &'static str,
    /// The balance column, e.g. `stock`
    pub balance: &'static str,
    /// Other `bigint` columns of an account, set when it is created and by
    /// `batch_init`, e.g. `price`; each is bounded like a price
    /// (`contracts::limits::Price`)
    pub attributes: &'static [&'static str],
    /// e.g. `reservations`
    pub ledger: &'static str,
}

/// A refusal of a plain endpoint, or the database failing it.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{noun} {id} not found")]
    NotFound { noun: &'static str, id: String },
    #[error("insufficient {balance} for {noun} {id}")]
    Insufficient {
        noun: &'static str,
        balance: &'static str,
        id: String,
    },
    /// An add would take the balance past `contracts::limits::MAX_BALANCE`.
    #[error("{balance} of {noun} {id} would exceed {max}")]
    AboveMax {
        noun: &'static str,
        balance: &'static str,
        id: String,
        max: i64,
    },
    #[error(transparent)]
    Db(DbError),
}

runtime::db_error_variant!(AccountError, AccountError::Db);

/// The statements, formatted once at start-up.
struct Statements {
    create: String,
    find: String,
    adjust: String,
    add: String,
    batch_init: String,
    /// Label of the saga batch transaction's timer, e.g. `reservations_apply`.
    apply_timer: String,
    ledger_rows: String,
    lock_accounts: String,
    set_balances: String,
    insert_ledger: String,
    mark_compensated: String,
    reject_debit: String,
}

impl Statements {
    fn new(t: &Tables) -> Self {
        let Tables {
            accounts,
            balance,
            ledger,
            ..
        } = t;
        // One `, …` piece per attribute (`, price`, `, $2`, …); empty without.
        let each = |piece: &dyn Fn(usize, &str) -> String| -> String {
            t.attributes
                .iter()
                .enumerate()
                .map(|(i, a)| piece(i, a))
                .collect()
        };
        let attrs = each(&|_, a| format!(", {a}"));
        let columns = format!("id, {balance}{attrs}");
        let placeholders = each(&|i, _| format!(", ${}", i + 2));
        let init_values = each(&|i, _| format!(", ${}::bigint", i + 3));
        let init_set = each(&|_, a| format!(", {a} = EXCLUDED.{a}"));
        let current = each(&|_, a| format!(", {accounts}.{a}"));
        let excluded = each(&|_, a| format!(", EXCLUDED.{a}"));
        Self {
            create: format!(
                "INSERT INTO {accounts} (id{attrs}) VALUES ($1{placeholders}) RETURNING {columns}"
            ),
            find: format!("SELECT {columns} FROM {accounts} WHERE id = $1"),
            adjust: format!(
                "UPDATE {accounts} SET {balance} = {balance} + $2 WHERE id = $1 RETURNING {columns}"
            ),
            // Only up to the bound ($3): what compensations give back later
            // needs the room above it.
            add: format!(
                "UPDATE {accounts} SET {balance} = {balance} + $2
                 WHERE id = $1 AND {balance} <= $3::bigint - $2 RETURNING {columns}"
            ),
            // Rows that already hold the values are left alone, so a
            // re-init writes only what changed.
            batch_init: format!(
                "INSERT INTO {accounts} (id, {balance}{attrs})
             SELECT g::text, $2::bigint{init_values} FROM generate_series(0, $1::bigint - 1) AS g
             ON CONFLICT (id) DO UPDATE SET {balance} = EXCLUDED.{balance}{init_set}
             WHERE ({accounts}.{balance}{current}) IS DISTINCT FROM (EXCLUDED.{balance}{excluded})"
            ),
            apply_timer: format!("{ledger}_apply"),
            // Locked: a concurrent batch with the same saga (another
            // replica, a redelivery) waits here and then sees this
            // batch's committed row, so a compensation applies once.
            // Ledger rows before accounts, each in ID order: no deadlocks.
            ledger_rows: format!(
                "SELECT saga_id, lines, outcome, compensated FROM {ledger}
                 WHERE saga_id = ANY($1) ORDER BY saga_id FOR UPDATE"
            ),
            lock_accounts: format!(
                "SELECT id, {balance} FROM {accounts} WHERE id = ANY($1) ORDER BY id FOR UPDATE"
            ),
            set_balances: format!(
                "UPDATE {accounts} AS a SET {balance} = u.b
                 FROM unnest($1::text[], $2::bigint[]) AS u(id, b) WHERE a.id = u.id"
            ),
            insert_ledger: format!(
                "INSERT INTO {ledger} (saga_id, lines, outcome, compensated, compensated_at)
                 SELECT s, l, o, c, CASE WHEN c THEN now() END
                 FROM unnest($1::uuid[], $2::jsonb[], $3::text[], $4::bool[]) AS u(s, l, o, c)"
            ),
            // Only rows not yet compensated flip.
            mark_compensated: format!(
                "UPDATE {ledger} SET compensated = true, compensated_at = now()
                     WHERE saga_id = ANY($1) AND NOT compensated"
            ),
            // The first outcome stands: a debit that was applied (or refused,
            // or rejected) before keeps its outcome.
            reject_debit: format!(
                "WITH new AS (
                     INSERT INTO {ledger} (saga_id, lines, outcome) VALUES ($1, '[]', 'rejected')
                     ON CONFLICT (saga_id) DO NOTHING RETURNING outcome)
                 SELECT outcome FROM new UNION ALL SELECT outcome FROM {ledger} WHERE saga_id = $1"
            ),
        }
    }
}

/// A balance service's database.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    tables: Tables,
    /// What one account is called in refusals, e.g. `item`.
    noun: &'static str,
    sql: Arc<Statements>,
}

impl Store {
    pub fn new(pool: Pool, tables: Tables, noun: &'static str) -> Self {
        Self {
            pool,
            tables,
            noun,
            sql: Arc::new(Statements::new(&tables)),
        }
    }

    pub fn noun(&self) -> &'static str {
        self.noun
    }

    fn not_found(&self, id: &str) -> AccountError {
        AccountError::NotFound {
            noun: self.noun,
            id: id.to_owned(),
        }
    }

    /// A new account with a zero balance and these attributes (in the
    /// order of [`Tables::attributes`]).
    pub async fn create(&self, attributes: &[i64]) -> Result<Row, AccountError> {
        let id = Uuid::now_v7().to_string();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id];
        params.extend(attributes.iter().map(|a| a as &(dyn ToSql + Sync)));
        let conn = runtime::db::get(&self.pool).await?;
        Ok(conn.query_one(self.sql.create.as_str(), &params).await?)
    }

    pub async fn find(&self, id: &str) -> Result<Row, AccountError> {
        let conn = runtime::db::get(&self.pool).await?;
        conn.query_opt(self.sql.find.as_str(), &[&id])
            .await?
            .ok_or_else(|| self.not_found(id))
    }

    /// Adds `amount` to the balance, refused past
    /// [`contracts::limits::MAX_BALANCE`] (checked by the statement).
    pub async fn add(&self, id: &str, amount: Amount) -> Result<Row, AccountError> {
        let conn = runtime::db::get(&self.pool).await?;
        let (amount, max) = (amount.get(), MAX_BALANCE);
        if let Some(row) = conn
            .query_opt(self.sql.add.as_str(), &[&id, &amount, &max])
            .await?
        {
            return Ok(row);
        }
        // Not there, or above the bound: the read tells which.
        match conn.query_opt(self.sql.find.as_str(), &[&id]).await? {
            None => Err(self.not_found(id)),
            Some(_) => Err(AccountError::AboveMax {
                noun: self.noun,
                balance: self.tables.balance,
                id: id.to_owned(),
                max,
            }),
        }
    }

    /// Adds `delta` to the balance (negative to take). The CHECK refuses a
    /// negative result; BIGINT overflow surfaces as an out-of-range error.
    pub async fn adjust(&self, id: &str, delta: i64) -> Result<Row, AccountError> {
        let conn = runtime::db::get(&self.pool).await?;
        let result = conn
            .query_opt(self.sql.adjust.as_str(), &[&id, &delta])
            .await
            .map_err(DbError::from);
        match result {
            Ok(Some(row)) => Ok(row),
            Ok(None) => Err(self.not_found(id)),
            Err(e) if e.is_check_violation() => Err(AccountError::Insufficient {
                noun: self.noun,
                balance: self.tables.balance,
                id: id.to_owned(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates or resets accounts `"0"`..`"n-1"` in one statement, under
    /// the setup lock ([`runtime::setup::exclusive`]: refused while another
    /// init runs, rolled back when `stop` is cancelled).
    pub async fn batch_init(
        &self,
        n: i64,
        balance: i64,
        attributes: &[i64],
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<(), runtime::setup::SetupError> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&n, &balance];
        params.extend(attributes.iter().map(|a| a as &(dyn ToSql + Sync)));
        let sql = self.sql.batch_init.as_str();
        runtime::setup::exclusive(&self.pool, stop, async |tx| {
            tx.execute(sql, &params).await?;
            Ok(())
        })
        .await
    }

    /// Applies a batch of saga steps in one transaction and returns one
    /// outcome per command: two round trips for a batch of debits (`BEGIN`
    /// and every read and lock, then every write and `COMMIT`; see
    /// [`runtime::db::Tx`]), three when it undoes debits, whose accounts
    /// are known only once their ledger rows are read.
    pub async fn apply(&self, commands: &[Command]) -> Result<Vec<StepOutcome>, DbError> {
        let sql = &*self.sql;
        let _timer = runtime::db::time_transaction(&sql.apply_timer);
        let mut tx = Tx::new(&self.pool).await?;

        let sagas: Vec<Uuid> = commands
            .iter()
            .map(Command::saga_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Without compensations, the accounts to lock are those the debits
        // name (a replayed debit's too: locking them needlessly is harmless),
        // so they are locked in the same round trip, after the ledger rows
        // as always.
        let debits_only = commands.iter().all(|c| matches!(c, Command::Debit { .. }));
        let mut reads = vec![Stmt::new(sql.ledger_rows.as_str()).bind(sagas)];
        if debits_only {
            let named = touched(commands, &HashMap::new());
            if !named.is_empty() {
                reads.push(Stmt::new(sql.lock_accounts.as_str()).bind(named));
            }
        }
        let mut read = tx
            .begin(&reads.iter().collect::<Vec<_>>())
            .await?
            .into_iter();
        let mut existing = HashMap::new();
        for row in read.next().map(|o| o.rows).unwrap_or_default() {
            let lines: Value = row.get(1);
            let outcome: &str = row.get(2);
            existing.insert(
                row.get::<_, Uuid>(0),
                Entry {
                    // The table's CHECK admits only known spellings; a row
                    // that is not one is refused, never replayed as another.
                    outcome: StepOutcome::parse(outcome)?,
                    lines: serde_json::from_value(lines.clone())
                        .map_err(|_| Unparsable::new("ledger lines", &lines.to_string()))?,
                    compensated: row.get(3),
                },
            );
        }

        let locked = if debits_only {
            read.next().map(|o| o.rows).unwrap_or_default()
        } else {
            let touched = touched(commands, &existing);
            if touched.is_empty() {
                Vec::new()
            } else {
                let lock = Stmt::new(sql.lock_accounts.as_str()).bind(touched);
                tx.run(&[&lock])
                    .await?
                    .pop()
                    .map(|o| o.rows)
                    .unwrap_or_default()
            }
        };
        let balances: HashMap<String, i64> = locked
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
            .collect();

        let plan = plan(commands, &existing, &balances);

        let mut writes = Vec::new();
        if !plan.balances.is_empty() {
            let (ids, values): (Vec<String>, Vec<i64>) = plan.balances.iter().cloned().unzip();
            writes.push(Stmt::new(sql.set_balances.as_str()).bind(ids).bind(values));
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
            writes.push(
                Stmt::new(sql.insert_ledger.as_str())
                    .bind(ids)
                    .bind(lines)
                    .bind(outcomes)
                    .bind(comp),
            );
        }
        if !plan.compensated.is_empty() {
            // If a row did not flip, someone else compensated it meanwhile
            // and this whole batch must not commit.
            let n = plan.compensated.len() as u64;
            writes.push(
                Stmt::new(sql.mark_compensated.as_str())
                    .bind(plan.compensated.clone())
                    .expect_rows(
                        n,
                        Mismatch::Conflict(format!(
                            "compensations in {} were already applied",
                            self.tables.ledger
                        )),
                    ),
            );
        }
        tx.commit(&writes.iter().collect::<Vec<_>>()).await?;
        Ok(plan.results)
    }
}

impl Store {
    /// Records a debit that cannot be applied because of its data as
    /// `rejected` (changing no balance), unless the saga's debit already has
    /// an outcome; returns the outcome that stands.
    pub async fn reject_debit(&self, saga_id: Uuid) -> Result<StepOutcome, DbError> {
        let conn = runtime::db::get(&self.pool).await?;
        let rows = runtime::db::query(&conn, &self.sql.reject_debit, &[&saga_id]).await?;
        match rows.first() {
            // The table's CHECK admits only known spellings.
            Some(row) => Ok(StepOutcome::parse(row.get(0))?),
            // A concurrent debit of the saga committed after this statement
            // began: the next attempt sees it.
            None => Err(DbError::Conflict(format!(
                "saga {saga_id} is being debited concurrently"
            ))),
        }
    }
}

/// The accounts a batch must lock, in ID order: those of its new debits
/// and of the debits its compensations undo.
fn touched(commands: &[Command], existing: &HashMap<Uuid, Entry>) -> Vec<String> {
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
    touched.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated statements are the ones stock-svc and payment-svc ran
    /// when each wrote its own (payment's `batch_init` now parenthesises
    /// its one compared column, which means the same).
    #[test]
    fn statements_of_an_account_with_and_without_attributes() {
        let stock = Statements::new(&Tables {
            accounts: "items",
            balance: "stock",
            attributes: &["price"],
            ledger: "reservations",
        });
        assert_eq!(
            stock.create,
            "INSERT INTO items (id, price) VALUES ($1, $2) RETURNING id, stock, price"
        );
        assert_eq!(
            stock.adjust,
            "UPDATE items SET stock = stock + $2 WHERE id = $1 RETURNING id, stock, price"
        );
        assert!(stock.batch_init.contains(
            "SET stock = EXCLUDED.stock, price = EXCLUDED.price
             WHERE (items.stock, items.price) IS DISTINCT FROM (EXCLUDED.stock, EXCLUDED.price)"
        ));
        assert!(stock
            .batch_init
            .contains("SELECT g::text, $2::bigint, $3::bigint FROM"));
        assert_eq!(stock.apply_timer, "reservations_apply");

        let payment = Statements::new(&Tables {
            accounts: "users",
            balance: "credit",
            attributes: &[],
            ledger: "charges",
        });
        assert_eq!(
            payment.create,
            "INSERT INTO users (id) VALUES ($1) RETURNING id, credit"
        );
        assert_eq!(payment.find, "SELECT id, credit FROM users WHERE id = $1");
        assert!(payment
            .batch_init
            .contains("SELECT g::text, $2::bigint FROM generate_series(0, $1::bigint - 1) AS g"));
        assert!(payment
            .batch_init
            .contains("WHERE (users.credit) IS DISTINCT FROM (EXCLUDED.credit)"));
    }

    #[test]
    fn a_batch_locks_the_accounts_of_new_debits_and_of_undone_ones() {
        let saga = Uuid::from_u128;
        let mut existing = HashMap::new();
        existing.insert(
            saga(1),
            Entry {
                outcome: StepOutcome::Done,
                lines: vec![("b".into(), 1)],
                compensated: false,
            },
        );
        let commands = vec![
            Command::Debit {
                saga_id: saga(2),
                lines: vec![("c".into(), 1), ("a".into(), 2)],
            },
            // A replayed debit locks nothing.
            Command::Debit {
                saga_id: saga(1),
                lines: vec![("z".into(), 1)],
            },
            Command::Compensate { saga_id: saga(1) },
        ];
        assert_eq!(touched(&commands, &existing), ["a", "b", "c"]);
    }
}
