//! The bystander of the hostile-input suite: ordinary checkouts sent while a
//! hostile request runs, to show that the hostile one cost its sender alone.
//!
//! A [`Probe`] sets up its own orders (each one unit of a fresh item with
//! ample stock, bought by a fresh user with ample credit), then checks them
//! out one after another from a background task until [`Probe::finish`].
//! Every probe checkout must be answered 200 within [`Probe::BOUND`]: a
//! stalled pipeline shows up as a slow or missing answer, never as a pass.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Client;

/// What the probe saw.
#[derive(Debug)]
pub struct ProbeReport {
    /// Latency of every probe checkout, in the order they were sent.
    pub latencies: Vec<Duration>,
    /// Answers other than 200, as (order, status, body).
    pub failures: Vec<(String, u16, String)>,
}

impl ProbeReport {
    pub fn max(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }
}

pub struct Probe {
    stop: CancellationToken,
    task: JoinHandle<ProbeReport>,
}

impl Probe {
    /// The slowest a bystander checkout may be. Generous for a debug build
    /// on a shared two-core machine, and far below every stall the suite
    /// guards against (those last until a wait runs out: 60 s, or for ever).
    pub const BOUND: Duration = Duration::from_secs(5);

    /// Prepares `orders` orders, then checks them out one at a time until
    /// [`Probe::finish`]. Set-up happens before this returns, so the
    /// checkouts overlap the hostile request that follows.
    pub async fn start(client: &Client, orders: usize) -> Probe {
        let mut ready = Vec::with_capacity(orders);
        for _ in 0..orders {
            ready.push(client.order_of_one(1_000, 1, 1_000).await);
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(client.clone(), ready, stop.clone()));
        Probe { stop, task }
    }

    /// Stops the probe and returns what it saw, without judging.
    pub async fn report(self) -> ProbeReport {
        self.stop.cancel();
        self.task.await.expect("the probe task panicked")
    }

    /// Stops the probe and asserts that it checked out at least one order,
    /// that every answer was 200 and none took longer than [`Probe::BOUND`].
    pub async fn finish(self) -> ProbeReport {
        let report = self.report().await;
        assert!(
            !report.latencies.is_empty(),
            "the probe checked out nothing: {report:?}"
        );
        assert!(
            report.failures.is_empty(),
            "bystander checkouts failed: {:?}",
            report.failures
        );
        assert!(
            report.max() <= Self::BOUND,
            "a bystander checkout took {:?} (bound {:?}): {:?}",
            report.max(),
            Self::BOUND,
            report.latencies
        );
        report
    }
}

async fn run(client: Client, orders: Vec<String>, stop: CancellationToken) -> ProbeReport {
    let mut report = ProbeReport {
        latencies: Vec::new(),
        failures: Vec::new(),
    };
    for order in orders {
        if stop.is_cancelled() {
            break;
        }
        let sent = Instant::now();
        let answer = client.post(&format!("/orders/checkout/{order}")).await;
        report.latencies.push(sent.elapsed());
        if answer.status != 200 {
            report
                .failures
                .push((order, answer.status, answer.body.to_string()));
        }
    }
    report
}
