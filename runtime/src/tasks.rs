//! Supervision of a binary's background tasks.
//!
//! Every long-running task (consumers, sweepers, writers, listeners) is
//! spawned here. Each runs until the shared `stop` token is cancelled; one
//! that ends before that, by returning or by panicking, is a fault the
//! process cannot hide: [`Tasks::failed`] resolves and the binary exits
//! non-zero, so its supervisor (systemd, Docker, `make up`'s restart, a test)
//! restarts it. Faults that a task can recover from (a dependency down, a
//! consumer deleted) are retried inside the task with backoff and never
//! reach this level.

use std::{future::Future, time::Duration};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A task ended before it was asked to.
#[derive(Debug, thiserror::Error)]
#[error("background task {name} {how}")]
pub struct TaskFailed {
    pub name: &'static str,
    pub how: String,
}

#[derive(Default)]
pub struct Tasks {
    set: JoinSet<(&'static str, Result<(), String>)>,
    /// Names by task ID, for a task that panicked.
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
    stop: CancellationToken,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancelled when the binary shuts down; every task watches it.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Spawns a task that should run until the stop token is cancelled.
    pub fn spawn<F, E>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let handle = self
            .set
            .spawn(async move { (name, task.await.map_err(|e| e.to_string())) });
        self.names.insert(handle.id(), name);
    }

    /// Resolves when a task ends although nothing asked it to; never when
    /// there are none.
    pub async fn failed(&mut self) -> TaskFailed {
        loop {
            let Some(joined) = self.set.join_next().await else {
                return std::future::pending().await;
            };
            let (name, how) = match joined {
                Ok((name, Ok(()))) => (name, "ended".to_owned()),
                Ok((name, Err(e))) => (name, format!("failed: {e}")),
                Err(e) => {
                    let name = self.names.get(&e.id()).copied().unwrap_or("unknown");
                    let how = if e.is_panic() {
                        "panicked"
                    } else {
                        "was cancelled"
                    };
                    (name, format!("{how}: {e}"))
                }
            };
            if self.stop.is_cancelled() {
                continue;
            }
            return TaskFailed { name, how };
        }
    }

    /// Asks every task to stop and waits up to `grace` for them to finish
    /// what they hold (a consumer acknowledges its batch in hand); aborts
    /// whatever is still running after that.
    pub async fn drain(mut self, grace: Duration) {
        self.stop.cancel();
        let all = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                left = self.set.len(),
                "background tasks did not finish in time; aborting them"
            );
            self.set.abort_all();
            while self.set.join_next().await.is_some() {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_ends_early_is_reported_and_drain_stops_the_rest() {
        let mut tasks = Tasks::new();
        let stop = tasks.stop_token();
        tasks.spawn("steady", async move {
            stop.cancelled().await;
            Ok::<_, String>(())
        });
        tasks.spawn("flaky", async { Err::<(), _>("boom") });
        let failed = tasks.failed().await;
        assert_eq!(failed.name, "flaky");
        assert!(failed.how.contains("boom"), "{}", failed.how);
        tokio::time::timeout(Duration::from_secs(2), tasks.drain(Duration::from_secs(1)))
            .await
            .expect("drain returns once the steady task saw the stop");
    }

    #[tokio::test]
    async fn a_panic_is_a_failure() {
        let mut tasks = Tasks::new();
        tasks.spawn("panics", async {
            if true {
                panic!("on purpose");
            }
            Ok::<_, String>(())
        });
        let failed = tasks.failed().await;
        assert_eq!(failed.name, "panics");
        assert!(failed.how.contains("panicked"), "{}", failed.how);
    }
}
