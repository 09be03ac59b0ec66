//! The hostile-input suite: requests any anonymous client can send, against a
//! real system (real binaries or in-process services, real PostgreSQL and
//! NATS JetStream, real HTTP).
//!
//! Each case shows two things: the hostile request gets a clear 4xx or a
//! final `failed` record (never a 5xx, never `pending` for ever), and
//! ordinary checkouts sent at the same time ([`testkit::Probe`]) complete
//! with normal latency. One module per kind of attack.

mod auth;
mod bounds;
mod limits;
mod poison;
mod setup;
mod webhooks;

/// The probe itself: with nothing hostile going on, bystanders pass, and
/// the bound it checks is one a stalled pipeline cannot meet.
#[tokio::test]
async fn the_probe_passes_on_a_quiet_system() {
    let sys = testkit::System::builder().in_process().start().await;
    let probe = testkit::Probe::start(&sys.client, 5).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let report = probe.finish().await;
    assert!(report.max() < testkit::Probe::BOUND);
    sys.shutdown().await;
}
