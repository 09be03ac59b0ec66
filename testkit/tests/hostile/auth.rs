//! Credentials: a service that holds another's NATS subjects or database
//! could forge a step result (an order paid for nothing), drop the work
//! queues, or read and change another service's ledger. Each service has its
//! own NATS user (`nats/auth.conf`) and its own PostgreSQL role; these cases
//! use stock-svc's credentials as an attacker would who took stock-svc over.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use runtime::config::NatsAuth;
use testkit::{Binary, Probe, System};

/// The NATS passwords `scripts/infra.sh` generated; the suite runs against
/// a nats-server that requires them.
fn auth(user: &str) -> NatsAuth {
    testkit::nats_auth(user).unwrap_or_else(|| {
        panic!(
            "no NATS password for {user} in {}: run scripts/infra.sh up (the servers it starts \
             require authentication)",
            testkit::secrets::secrets_dir().display()
        )
    })
}

/// Anonymous and wrong-password clients are turned away; stock-svc's user
/// can neither publish what order-svc or the api publish, nor delete, purge
/// or reshape a stream, nor take another service's requests; bystanders'
/// checkouts meanwhile complete as usual.
#[tokio::test]
async fn stock_credentials_cannot_forge_other_services_messages_nor_drop_streams() {
    let sys = System::builder().in_process().start().await;
    let url = testkit::nats_url();
    let p = sys.name.clone();
    let probe = Probe::start(&sys.client, 20).await;

    // No user, or a wrong password: no connection at all.
    let anonymous = testkit::secrets::try_nats_as(&url, None).await;
    assert!(anonymous.is_err(), "an anonymous client was let in");
    let mut wrong = auth("stock");
    wrong.password.push('x');
    let refused = testkit::secrets::try_nats_as(&url, Some(&wrong)).await;
    assert!(refused.is_err(), "a wrong password was accepted");

    // Whatever reaches the streams' subjects is seen here (admin may read all).
    let admin = testkit::nats_admin(&url).await;
    let mut seen = admin
        .subscribe(format!("{p}.js.>"))
        .await
        .expect("subscribe");
    admin.flush().await.expect("flush");

    let stock = testkit::secrets::nats_as(&url, Some(&auth("stock"))).await;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(stock.clone());
    const MARK: &str = "forged-by-stock";
    for subject in [
        // order-svc's: a refund command, a "paid" outcome for the api.
        format!("{p}.js.payment.steps"),
        format!("{p}.js.api.outcome"),
        // The api's: a checkout request.
        format!("{p}.js.order.checkout"),
    ] {
        let ack = match js.publish(subject.clone(), MARK.into()).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        assert!(
            ack.is_err(),
            "stock-svc's user got a JetStream ack on {subject}"
        );
    }

    // Stream administration: delete, purge and update are refused; the
    // streams stay as they were.
    let order_stream = format!("{p}_ORDER");
    assert!(
        js.delete_stream(&order_stream).await.is_err(),
        "stock-svc's user deleted {order_stream}"
    );
    // Looking a stream up is allowed (start-up does), purging it is not.
    let purge = js
        .get_stream(format!("{p}_PAYMENT"))
        .await
        .expect("stream info is allowed")
        .purge()
        .await;
    assert!(purge.is_err(), "stock-svc's user purged: {purge:?}");
    let admin_js = jetstream::new(admin.clone());
    let mut payment = admin_js
        .get_stream(format!("{p}_PAYMENT"))
        .await
        .expect("the payment stream");
    let mut shrunk = payment.cached_info().config.clone();
    shrunk.max_messages = 1;
    assert!(
        js.update_stream(&shrunk).await.is_err(),
        "stock-svc's user reshaped {p}_PAYMENT"
    );
    assert_eq!(
        payment
            .info()
            .await
            .expect("stream info")
            .config
            .max_messages,
        -1,
        "the payment stream was changed"
    );
    admin_js
        .get_stream(&order_stream)
        .await
        .expect("the order stream still exists");

    // Another service's requests: a subscription to payment-svc's endpoints
    // receives nothing, even while bystanders create users through them.
    let mut stolen = stock
        .subscribe(format!("{p}.svc.payment.>"))
        .await
        .expect("subscribe (refused by the server, not the client)");
    // The server has the subscription (or its refusal) before the bystander
    // request is sent: otherwise the check below could pass by timing alone.
    stock.flush().await.expect("flush");
    let user = sys.client.create_user(10).await;
    assert!(!user.is_empty());
    let got = tokio::time::timeout(Duration::from_millis(500), stolen.next()).await;
    assert!(
        !matches!(got, Ok(Some(_))),
        "stock-svc's user received a payment-svc request"
    );

    // None of the forged messages reached a stream's subject.
    admin.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Bounded as a whole: the probe's own traffic keeps arriving meanwhile.
    let drained = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(50), seen.next()).await {
            assert_ne!(
                m.payload.as_ref(),
                MARK.as_bytes(),
                "a forged message reached {}",
                m.subject
            );
        }
    });
    let _ = drained.await;

    probe.finish().await;
    sys.shutdown().await;
}

/// A service's database role is an owner, not a superuser: it cannot reach
/// another service's database, make databases or roles, or read the
/// server's files.
#[tokio::test]
async fn a_service_database_role_is_confined_to_its_own_database() {
    let sys = System::builder().in_process().start().await;
    let stock = sys.db(Binary::Stock);
    let client = stock.client().await;

    let row = client
        .query_one(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("own role");
    let (superuser, createdb, createrole): (bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2));
    assert!(
        !superuser && !createdb && !createrole,
        "stock's role has admin rights"
    );
    // It owns what it runs on: its tables (made by its own migrations).
    let foreign: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> current_user",
            &[],
        )
        .await
        .expect("tables")
        .get(0);
    assert_eq!(
        foreign, 0,
        "tables in stock's database owned by someone else"
    );

    for sql in [
        "CREATE DATABASE stolen",
        "CREATE ROLE intruder LOGIN SUPERUSER",
        "SELECT pg_read_file('/etc/passwd')",
        "COPY (SELECT 1) TO PROGRAM 'true'",
        "ALTER SYSTEM SET fsync = off",
    ] {
        let e = client
            .batch_execute(sql)
            .await
            .expect_err(&format!("stock's role ran {sql}"));
        let code = e.code().map(|c| c.code().to_owned());
        assert_eq!(
            code.as_deref(),
            Some("42501"),
            "{sql}: not refused for lack of privilege: {e:?}"
        );
    }

    // Another service's database, with stock's role: no connection.
    let order_db = sys.db(Binary::Order).name.clone();
    let mut other = url::Url::parse(&stock.url).expect("a URL");
    other.set_path(&order_db);
    let refused = tokio_postgres::connect(other.as_str(), tokio_postgres::NoTls).await;
    let e = refused
        .err()
        .unwrap_or_else(|| panic!("stock's role connected to {order_db}"));
    assert_eq!(
        e.code().map(|c| c.code()),
        Some("42501"),
        "not refused for lack of privilege: {e:?}"
    );

    drop(client);
    sys.shutdown().await;
}
