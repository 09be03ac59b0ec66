//! A balance service running: its request/reply endpoints, its saga-step
//! consumer and the retention of its ledger, until shutdown.

use std::future::Future;

use async_nats::jetstream::Context;
use contracts::{
    messages::saga::{Step, StepCommand, StepResult},
    Subjects,
};
use runtime::{
    bootstrap::Deps,
    consumer::{Fault, Handler},
    db::DbError,
    jetstream::{self, Outgoing},
    rpc::RpcClient,
    service::{RunError, Service},
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{handlers, plan::Command, store::Store, Accounts, Spec};

/// Serves every endpoint of `A` until `shutdown` resolves (or a background
/// task fails, which is returned).
pub async fn run<A: Accounts>(
    deps: Deps,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let spec = A::SPEC;
    let store = Store::new(deps.pool.clone(), spec.tables, spec.noun);
    let service = Service::new(deps).await?;
    let steps = {
        let (deps, js, store) = (service.deps(), service.js().clone(), store.clone());
        let (subjects, max_message_bytes) = (deps.subjects.clone(), deps.config.max_message_bytes);
        move |stop| Steps {
            store,
            js,
            subjects,
            spec,
            max_message_bytes,
            stop,
        }
    };
    let retention = {
        let deps = service.deps();
        let (pool, retention) = (deps.pool.clone(), deps.config.retention);
        let order = RpcClient::new(
            deps.nats.clone(),
            deps.subjects.clone(),
            crate::retention::ASK_TIMEOUT,
        );
        let ledger = crate::retention::ledger(spec.tables.ledger);
        move |stop| crate::retention::run(pool, ledger, retention, order, stop)
    };
    service
        .endpoints(spec.service, spec.description)
        .endpoint(store.clone(), handlers::create::<A>)
        .endpoint(store.clone(), handlers::find::<A>)
        .endpoint(store.clone(), handlers::add::<A>)
        .endpoint(store.clone(), handlers::subtract::<A>)
        .cancellable(store, handlers::batch_init::<A>)
        .consumer(spec.service, spec.max_messages, steps)
        .task("retention", retention)
        .run(listener, shutdown)
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum StepsError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    JetStream(#[from] jetstream::JetStreamError),
}

impl Fault for StepsError {
    fn is_transient(&self) -> bool {
        match self {
            StepsError::Db(e) => e.is_transient(),
            StepsError::JetStream(e) => e.is_transient(),
        }
    }
}

/// What the saga-step consumer needs for each batch.
struct Steps {
    store: Store,
    js: Context,
    subjects: Subjects,
    spec: Spec,
    /// Largest result message published (`NATS_MAX_MESSAGE_BYTES`).
    max_message_bytes: usize,
    stop: CancellationToken,
}

impl Steps {
    /// Applies a batch of step commands, then publishes one result per
    /// command to order-svc (one message), before the consumer acknowledges.
    async fn handle(&self, commands: &[StepCommand]) -> Result<(), StepsError> {
        let Spec {
            debit, compensate, ..
        } = self.spec;
        // A step of another service cannot be ours to apply; it is logged
        // and answered with nothing (order-svc never sends one here).
        let mut ours: Vec<Command> = Vec::with_capacity(commands.len());
        for cmd in commands {
            let step = cmd.step();
            if step == debit {
                ours.push(Command::Debit {
                    saga_id: cmd.saga_id,
                    lines: crate::plan::debit_lines(&cmd.action),
                });
            } else if step == compensate {
                ours.push(Command::Compensate {
                    saga_id: cmd.saga_id,
                });
            } else {
                tracing::error!(ledger = self.spec.tables.ledger, ?step, saga_id = %cmd.saga_id, "step for another service; ignored");
            }
        }
        let outcomes = self.store.apply(&ours).await?;

        let results: Vec<StepResult> = ours
            .iter()
            .zip(&outcomes)
            .map(|(command, outcome)| {
                let (saga_id, step) = match command {
                    Command::Debit { saga_id, .. } => (*saga_id, debit),
                    Command::Compensate { saga_id } => (*saga_id, compensate),
                };
                tracing::debug!(%saga_id, step = step.as_str(), ?outcome, "step applied");
                StepResult {
                    saga_id,
                    step,
                    outcome: *outcome,
                }
            })
            .collect();
        self.answer(&results).await
    }

    /// Publishes results to order-svc (its one subject).
    async fn answer(&self, results: &[StepResult]) -> Result<(), StepsError> {
        if results.is_empty() {
            return Ok(());
        }
        // Every result goes to order-svc's one subject: one message, or
        // several when they do not fit one.
        let messages = Outgoing::batch(
            self.subjects.step_results(),
            results,
            self.max_message_bytes,
        )?;
        jetstream::publish_retrying(&self.js, &messages, &self.stop).await?;
        Ok(())
    }
}

impl Handler<StepCommand> for Steps {
    type Error = StepsError;

    fn name(&self) -> &'static str {
        self.spec.service
    }

    async fn apply(&self, items: &[StepCommand]) -> Result<(), StepsError> {
        self.handle(items).await
    }

    /// A debit is refused (`rejected`, recorded in the ledger so a repeat
    /// replays it) and the saga compensates the other step and fails. A
    /// compensation cannot be refused: it gives back what the debit took,
    /// which always fits. If one ever fails for its data, it is left
    /// unanswered for an operator (its saga waits) rather than answered
    /// falsely.
    async fn reject(&self, item: &StepCommand, cause: &str) -> Result<(), StepsError> {
        self.reject_step(item.saga_id, item.step(), cause).await
    }

    /// A debit that still names its saga is rejected (an undecodable
    /// compensation would only be a forged one: order-svc sends none); the
    /// rest is logged, as this service has nowhere else to keep it.
    async fn dead_letter(&self, raw: &Value, cause: &str) -> Result<(), StepsError> {
        let saga_id = raw
            .get("saga_id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok());
        let step = raw
            .get("step")
            .and_then(|s| serde_json::from_value::<Step>(s.clone()).ok());
        match (saga_id, step) {
            (Some(saga_id), Some(step)) if step == self.spec.debit => {
                self.reject_step(saga_id, step, cause).await
            }
            _ => {
                tracing::error!(ledger = self.spec.tables.ledger, item = %raw, %cause, "undecodable step command; dropped");
                Ok(())
            }
        }
    }
}

impl Steps {
    /// A debit is rejected; anything else is left unanswered (see
    /// [`Handler::reject`]).
    async fn reject_step(&self, saga_id: Uuid, step: Step, cause: &str) -> Result<(), StepsError> {
        if step == self.spec.debit {
            let outcome = self.store.reject_debit(saga_id).await?;
            tracing::warn!(ledger = self.spec.tables.ledger, %saga_id, ?outcome, %cause, "debit rejected");
            let result = StepResult {
                saga_id,
                step,
                outcome,
            };
            return self.answer(&[result]).await;
        }
        tracing::error!(ledger = self.spec.tables.ledger, %saga_id, step = step.as_str(), %cause, "step cannot be applied; left unanswered");
        Ok(())
    }
}
