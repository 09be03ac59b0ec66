//! Bounded tables: the purge deletes final sagas and request records that
//! completed longer than the retention ago, the ledger rows of sagas
//! purged, dead letters past the retention, and idempotency keys past their
//! expiry; it keeps younger rows, sagas still running, final sagas and
//! records that completed recently however old their ID (a checkout that
//! completed after a long outage), and their ledger rows.

use std::time::{Duration, SystemTime};

use runtime::retention::{purge, v7_floor};
use testkit::{Binary, System};

const RETENTION: Duration = Duration::from_secs(168 * 3600);

/// The first column of every row `sql` returns.
async fn column<T>(client: &tokio_postgres::Client, sql: &str) -> Vec<T>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn hours_ago(h: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(h * 3600)
}

#[tokio::test]
async fn purges_what_is_past_its_retention_and_keeps_the_rest() {
    let sys = System::builder().in_process().start().await;
    let db = sys.db(Binary::Order);
    let client = db.client().await;
    // late_done: accepted 198 hours ago, completed just now (an outage):
    // old by its ID, young by its completion.
    let (old_done, old_running, late_done, young_done) = (
        v7_floor(hours_ago(200)),
        v7_floor(hours_ago(199)),
        v7_floor(hours_ago(198)),
        uuid::Uuid::now_v7(),
    );
    client
        .execute(
            "INSERT INTO sagas (id, order_id, state, reason, completed_at) VALUES
                 ($1, 'o1', 'succeeded', NULL, now() - interval '170 hours'),
                 ($2, 'o2', 'running', NULL, NULL),
                 ($3, 'o3', 'failed', 'insufficient_stock', now() - interval '1 minute'),
                 ($4, 'o4', 'succeeded', NULL, now())",
            &[&old_done, &old_running, &late_done, &young_done],
        )
        .await
        .expect("sagas inserted");
    client
        .batch_execute(
            "INSERT INTO dead_letters (consumer, reason, payload, received_at) VALUES
                 ('order-steps', 'unknown saga', '{}', now() - interval '200 hours'),
                 ('order-steps', 'unknown saga', '{}', now())",
        )
        .await
        .expect("dead letters inserted");

    let pool = runtime::db::pool(&db.url, 2).expect("pool");
    let [sagas, dead_letters] = order_svc::RETAINED;
    assert_eq!(purge(&pool, &sagas, RETENTION).await.expect("purge"), 1);
    assert_eq!(
        purge(&pool, &dead_letters, RETENTION).await.expect("purge"),
        1
    );
    // Purging again finds nothing more.
    assert_eq!(purge(&pool, &sagas, RETENTION).await.expect("purge"), 0);
    assert_eq!(
        purge(&pool, &dead_letters, RETENTION).await.expect("purge"),
        0
    );

    let left: Vec<uuid::Uuid> = column(&client, "SELECT id FROM sagas ORDER BY id").await;
    assert_eq!(
        left,
        vec![old_running, late_done, young_done],
        "a running saga and one completed recently stay"
    );
    let letters: i64 = client
        .query_one(
            "SELECT count(*) FROM dead_letters WHERE received_at > now() - interval '1 hour'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(letters, 1, "the young dead letter stays");
    drop(pool);

    // Ledger rows go with their saga: an old row whose saga is gone goes;
    // an old row of a saga still kept (running, or final but completed
    // recently) stays, whatever its age (order-svc is asked which sagas it
    // still keeps).
    let old_gone = v7_floor(hours_ago(201));
    let nats = testkit::nats_admin(&testkit::nats_url()).await;
    let order = runtime::rpc::RpcClient::new(
        nats,
        contracts::Subjects::new(sys.name.clone()),
        balance::retention::ASK_TIMEOUT,
    );
    for (binary, ledger) in [
        (Binary::Stock, "reservations"),
        (Binary::Payment, "charges"),
    ] {
        let db = sys.db(binary);
        let client = db.client().await;
        client
            .execute(
                &format!(
                    "INSERT INTO {ledger} (saga_id, lines, outcome) VALUES
                         ($1, '[]', 'done'), ($2, '[]', 'done'), ($3, '[]', 'done'),
                         ($4, '[]', 'done'), ($5, '[]', 'done')"
                ),
                &[&old_gone, &old_done, &old_running, &late_done, &young_done],
            )
            .await
            .expect("ledger rows inserted");
        let pool = runtime::db::pool(&db.url, 2).expect("pool");
        let table = balance::retention::ledger(ledger);
        let purged = balance::retention::purge(&pool, &table, RETENTION, &order)
            .await
            .expect("purge");
        assert_eq!(purged, 2, "{ledger}: the old rows of purged sagas");
        let left: Vec<uuid::Uuid> = column(
            &client,
            &format!("SELECT saga_id FROM {ledger} ORDER BY saga_id"),
        )
        .await;
        assert_eq!(
            left,
            vec![old_running, late_done, young_done],
            "{ledger}: the rows of a running saga and of one completed recently stay"
        );
        drop(pool);
    }

    // Request records: a final one goes once it completed longer than the
    // retention ago, whatever its ID; a pending one never goes.
    let api_db = sys.db(Binary::Api);
    let api = api_db.client().await;
    let (old_final, late_final, old_pending) = (
        v7_floor(hours_ago(200)),
        v7_floor(hours_ago(199)),
        v7_floor(hours_ago(198)),
    );
    api.execute(
        "INSERT INTO requests (id, order_id, status, reason, completed_at, next_publish_at) VALUES
             ($1, 'o1', 'succeeded', NULL, now() - interval '170 hours', now()),
             ($2, 'o2', 'failed', 'insufficient_stock', now() - interval '1 minute', now()),
             ($3, 'o3', 'pending', NULL, NULL, now())",
        &[&old_final, &late_final, &old_pending],
    )
    .await
    .expect("records inserted");
    let pool = runtime::db::pool(&api_db.url, 2).expect("pool");
    let records = api::requests::RETAINED;
    assert_eq!(purge(&pool, &records, RETENTION).await.expect("purge"), 1);
    assert_eq!(purge(&pool, &records, RETENTION).await.expect("purge"), 0);
    let left: Vec<uuid::Uuid> = column(&api, "SELECT id FROM requests ORDER BY id").await;
    assert_eq!(
        left,
        vec![late_final, old_pending],
        "a record completed recently and a pending one stay"
    );
    drop(pool);

    // Idempotency keys go once past their own expiry, whatever the retention.
    api.batch_execute(
        "INSERT INTO idempotency_keys (key, fingerprint, locked_until, expires_at) VALUES
             ('gone', '\\x00', now(), now() - interval '1 second'),
             ('kept', '\\x00', now(), now() + interval '1 hour')",
    )
    .await
    .expect("keys inserted");
    let pool = runtime::db::pool(&api_db.url, 2).expect("pool");
    let expired = api::idempotency::EXPIRED;
    assert_eq!(purge(&pool, &expired, RETENTION).await.expect("purge"), 1);
    let keys: Vec<String> = column(&api, "SELECT key FROM idempotency_keys").await;
    assert_eq!(keys, vec!["kept".to_owned()]);
    drop(pool);
    sys.shutdown().await;
}

/// A purge that walks the key deletes in chunks (5,000 rows each) and goes
/// on after the last key it deleted: past more than one chunk, and past a
/// row it keeps (accepted long ago, completed recently) in the middle.
#[tokio::test]
async fn a_purge_walking_the_key_goes_on_past_a_chunk_and_past_what_it_keeps() {
    let sys = System::builder().in_process().start().await;
    let db = sys.db(Binary::Order);
    let client = db.client().await;
    let floor = *v7_floor(hours_ago(200)).as_bytes();
    let ids: Vec<uuid::Uuid> = (0..5_003u64)
        .map(|i| {
            let mut bytes = floor;
            bytes[8..].copy_from_slice(&i.to_be_bytes());
            uuid::Uuid::from_bytes(bytes)
        })
        .collect();
    let kept = ids[2_500];
    client
        .execute(
            "INSERT INTO sagas (id, order_id, state, completed_at)
             SELECT id, 'o', 'succeeded',
                    CASE WHEN id = $2 THEN now() ELSE now() - interval '170 hours' END
             FROM unnest($1::uuid[]) AS id",
            &[&ids, &kept],
        )
        .await
        .expect("sagas inserted");

    let pool = runtime::db::pool(&db.url, 2).expect("pool");
    let [sagas, _] = order_svc::RETAINED;
    assert_eq!(purge(&pool, &sagas, RETENTION).await.expect("purge"), 5_002);
    let left: Vec<uuid::Uuid> = column(&client, "SELECT id FROM sagas").await;
    assert_eq!(left, vec![kept], "only the saga completed recently stays");
    drop(pool);
    sys.shutdown().await;
}
