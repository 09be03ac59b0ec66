//! Bounded tables: the purge deletes finished sagas, their ledger rows and
//! dead letters past the retention, and idempotency keys past their expiry;
//! it keeps younger rows, and sagas still running and their ledger rows,
//! whatever their age.

use std::time::{Duration, SystemTime};

use common::retention::{purge, v7_floor};
use testkit::{Binary, System};

const RETENTION: Duration = Duration::from_secs(168 * 3600);

fn hours_ago(h: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(h * 3600)
}

#[tokio::test]
async fn purges_what_is_past_its_retention_and_keeps_the_rest() {
    let sys = System::builder().in_process().start().await;
    let db = sys.db(Binary::Order);
    let client = db.client().await;
    let (old_done, old_running, young_done) = (
        v7_floor(hours_ago(200)),
        v7_floor(hours_ago(199)),
        uuid::Uuid::now_v7(),
    );
    client
        .execute(
            "INSERT INTO sagas (id, order_id, state, completed_at) VALUES
                 ($1, 'o1', 'succeeded', now()),
                 ($2, 'o2', 'running', NULL),
                 ($3, 'o3', 'succeeded', now())",
            &[&old_done, &old_running, &young_done],
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

    let pool = common::db::pool(&db.url, 2).expect("pool");
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

    let left: Vec<uuid::Uuid> = client
        .query("SELECT id FROM sagas ORDER BY id", &[])
        .await
        .expect("sagas")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, vec![old_running, young_done], "a running saga stays");
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

    // Ledger rows go with their saga: an old row whose saga is final (or
    // purged) goes, an old row of a running saga stays, whatever its age
    // (order-svc is asked which sagas are not final).
    let old_gone = v7_floor(hours_ago(201));
    let nats = testkit::nats_admin(&testkit::nats_url()).await;
    let order = common::rpc::RpcClient::new(
        nats,
        common::nats::Subjects::new(sys.name.clone()),
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
                         ($1, '[]', 'done'), ($2, '[]', 'done'), ($3, '[]', 'done'), ($4, '[]', 'done')"
                ),
                &[&old_gone, &old_done, &old_running, &young_done],
            )
            .await
            .expect("ledger rows inserted");
        let pool = common::db::pool(&db.url, 2).expect("pool");
        let table = balance::retention::ledger(ledger);
        let purged = balance::retention::purge(&pool, &table, RETENTION, &order)
            .await
            .expect("purge");
        assert_eq!(purged, 2, "{ledger}: the old rows of final sagas");
        let left: Vec<uuid::Uuid> = client
            .query(
                &format!("SELECT saga_id FROM {ledger} ORDER BY saga_id"),
                &[],
            )
            .await
            .expect("ledger")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            left,
            vec![old_running, young_done],
            "{ledger}: a running saga's row stays"
        );
        drop(pool);
    }

    // Idempotency keys go once past their own expiry, whatever the retention.
    let api_db = sys.db(Binary::Api);
    let api = api_db.client().await;
    api.batch_execute(
        "INSERT INTO idempotency_keys (key, fingerprint, locked_until, expires_at) VALUES
             ('gone', '\\x00', now(), now() - interval '1 second'),
             ('kept', '\\x00', now(), now() + interval '1 hour')",
    )
    .await
    .expect("keys inserted");
    let pool = common::db::pool(&api_db.url, 2).expect("pool");
    let expired = api::idempotency::EXPIRED;
    assert_eq!(purge(&pool, &expired, RETENTION).await.expect("purge"), 1);
    let keys: Vec<String> = api
        .query("SELECT key FROM idempotency_keys", &[])
        .await
        .expect("keys")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, vec!["kept".to_owned()]);
    drop(pool);
    sys.shutdown().await;
}
