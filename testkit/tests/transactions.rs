//! `runtime::db::Tx`, the pipelined transaction of every hot path, against a
//! real PostgreSQL: the writes that travel with `COMMIT` commit together or
//! not at all, a failed row-count check rolls everything back, and a
//! transaction dropped half-way never leaks into the connection's next user.

use runtime::db::{pool, DbError, Mismatch, Stmt, Tx};
use testkit::db::TestDb;

async fn setup(name: &str) -> (TestDb, deadpool_postgres::Pool) {
    let db = TestDb::create(name).await;
    db.client()
        .await
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO t VALUES (1, 0), (2, 0)",
        )
        .await
        .expect("table");
    // One connection: every transaction below reuses the same session.
    let pool = pool(&db.url, 1).expect("pool");
    (db, pool)
}

async fn values(pool: &deadpool_postgres::Pool) -> Vec<(i32, i32)> {
    let conn = pool.get().await.expect("connection");
    conn.query("SELECT id, v FROM t ORDER BY id", &[])
        .await
        .expect("read")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn reads_then_writes_with_commit_in_two_round_trips() {
    let (db, pool) = setup("t_tx_commit").await;
    let mut tx = Tx::new(&pool).await.expect("tx");
    let read = tx
        .begin(&[&Stmt::new("SELECT v FROM t WHERE id = ANY($1) FOR UPDATE").bind(vec![1, 2])])
        .await
        .expect("reads");
    assert_eq!(read[0].rows.len(), 2);
    let out = tx
        .commit(&[
            &Stmt::new("UPDATE t SET v = v + 1 WHERE id = $1").bind(1),
            &Stmt::new("INSERT INTO t VALUES ($1, $2)").bind(3).bind(7),
            &Stmt::new("SELECT count(*) FROM t"),
        ])
        .await
        .expect("commit");
    assert_eq!(out[0].affected, 1);
    assert_eq!(out[1].affected, 1);
    // A read behind the writes sees them.
    assert_eq!(out[2].rows[0].get::<_, i64>(0), 3);
    assert_eq!(values(&pool).await, [(1, 1), (2, 0), (3, 7)]);
    drop(pool);
    db.drop_db().await;
}

#[tokio::test]
async fn a_failed_write_commits_none_of_the_others() {
    let (db, pool) = setup("t_tx_failed_write").await;
    let mut tx = Tx::new(&pool).await.expect("tx");
    tx.begin(&[]).await.expect("begin");
    // Statements never prepared on this connection before: each needs a
    // prepare first, and none may reach the server after the COMMIT.
    let result = tx
        .commit(&[
            &Stmt::new("UPDATE t SET v = 5 WHERE id = $1").bind(2),
            &Stmt::new("INSERT INTO t VALUES ($1, $2)").bind(1).bind(9),
            &Stmt::new("UPDATE t SET v = 6 WHERE id = $1").bind(1),
        ])
        .await;
    let err = result.expect_err("the duplicate key fails the transaction");
    assert!(err.is_data_error(), "{err}");
    assert_eq!(values(&pool).await, [(1, 0), (2, 0)], "nothing committed");
    drop(pool);
    db.drop_db().await;
}

#[tokio::test]
async fn a_row_count_check_rolls_back_and_says_what_it_means() {
    let (db, pool) = setup("t_tx_row_count").await;
    for (mismatch, conflict) in [
        (Mismatch::Conflict("already applied".into()), true),
        (Mismatch::Inconsistent("rows missing".into()), false),
    ] {
        let mut tx = Tx::new(&pool).await.expect("tx");
        tx.begin(&[]).await.expect("begin");
        let err = tx
            .commit(&[
                &Stmt::new("UPDATE t SET v = 1 WHERE id = $1").bind(2),
                // Two rows expected, one exists.
                &Stmt::new("UPDATE t SET v = 1 WHERE id = ANY($1)")
                    .bind(vec![1, 99])
                    .expect_rows(2, mismatch),
            ])
            .await
            .expect_err("one row is not two");
        match (&err, conflict) {
            (DbError::Conflict(m), true) => assert!(m.contains("already applied"), "{m}"),
            (DbError::Inconsistent(m), false) => assert!(m.contains("rows missing"), "{m}"),
            _ => panic!("unexpected error {err:?}"),
        }
        assert_eq!(err.is_transient(), conflict);
        assert_eq!(values(&pool).await, [(1, 0), (2, 0)], "nothing committed");
    }
    // The same check passes when the count is right.
    let mut tx = Tx::new(&pool).await.expect("tx");
    tx.begin(&[]).await.expect("begin");
    tx.commit(&[&Stmt::new("UPDATE t SET v = 2 WHERE id = ANY($1)")
        .bind(vec![1, 2])
        .expect_rows(2, Mismatch::Inconsistent("rows missing".into()))])
        .await
        .expect("two rows are two");
    assert_eq!(values(&pool).await, [(1, 2), (2, 2)]);
    drop(pool);
    db.drop_db().await;
}

#[tokio::test]
async fn a_dropped_transaction_is_rolled_back_before_the_connection_is_reused() {
    let (db, pool) = setup("t_tx_dropped").await;
    {
        let mut tx = Tx::new(&pool).await.expect("tx");
        tx.begin(&[&Stmt::new("SELECT v FROM t WHERE id = 1 FOR UPDATE")])
            .await
            .expect("begin");
        tx.run(&[&Stmt::new("UPDATE t SET v = 42 WHERE id = 1")])
            .await
            .expect("write");
        // Dropped without commit: an error path, a cancelled batch.
    }
    // The one connection of the pool: were it still inside that
    // transaction, this session would see its write.
    assert_eq!(values(&pool).await, [(1, 0), (2, 0)]);
    let conn = pool.get().await.expect("connection");
    let state: String = conn
        .query_one(
            "SELECT coalesce(state, '') FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("state")
        .get(0);
    assert_eq!(state, "active", "not idle in transaction");
    let in_tx: Option<i64> = conn
        .query_one("SELECT txid_current_if_assigned()::text::bigint", &[])
        .await
        .expect("txid")
        .get(0);
    assert_eq!(in_tx, None, "no transaction left open");
    drop(conn);
    drop(pool);
    db.drop_db().await;
}
