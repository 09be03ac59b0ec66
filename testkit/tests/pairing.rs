//! The consumer loop's pairing wait (`runtime::consumer`): a batch whose
//! handler says it only holds first halves waits for the next message and
//! is applied together with it, whatever that message holds (one wait, one
//! more message: nothing can keep a batch waiting longer); without a
//! partner it is applied alone once the wait is over; any other batch is
//! applied at once. Real nats-server
//! and JetStream, the `order-steps` durable under a prefix of the test's
//! own, a handler that only records the batches it is given.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::jetstream::Context;
use contracts::{
    messages::saga::{Step, StepOutcome, StepResult},
    Subjects,
};
use runtime::consumer::{Consumer, Handler};
use runtime::jetstream::Topology;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
#[error("never fails")]
struct Never;

impl runtime::consumer::Fault for Never {
    fn is_transient(&self) -> bool {
        false
    }
}

/// An applied batch: its steps, and when it was applied.
type Batch = (Vec<Step>, Instant);

/// Records each applied batch. A batch of reserves only awaits its partner.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Batch>>>);

impl Recorder {
    fn batches(&self) -> Vec<Batch> {
        self.0.lock().expect("not poisoned").clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<Batch> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let batches = self.batches();
            if batches.len() >= count || Instant::now() > deadline {
                return batches;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Handler<StepResult> for Recorder {
    type Error = Never;

    fn name(&self) -> &'static str {
        "order-steps"
    }

    async fn apply(&self, items: &[StepResult]) -> Result<(), Never> {
        let steps = items.iter().map(|i| i.step).collect();
        self.0
            .lock()
            .expect("not poisoned")
            .push((steps, Instant::now()));
        Ok(())
    }

    async fn reject(&self, _: &StepResult, _: &str) -> Result<(), Never> {
        Ok(())
    }

    async fn dead_letter(&self, _: &Value, _: &str) -> Result<(), Never> {
        Ok(())
    }

    fn awaits_partner(&self, items: &[StepResult]) -> bool {
        items.iter().all(|i| i.step == Step::Reserve)
    }
}

async fn publish(js: &Context, subjects: &Subjects, step: Step) -> Instant {
    let result = StepResult {
        saga_id: Uuid::now_v7(),
        step,
        outcome: StepOutcome::Done,
    };
    let payload = serde_json::to_vec(&[result]).expect("serialises");
    js.publish(subjects.js("order.step"), payload.into())
        .await
        .expect("published")
        .await
        .expect("stored");
    Instant::now()
}

#[tokio::test]
async fn a_lone_first_half_waits_for_its_partner_and_nothing_else_waits() {
    let prefix = testkit::unique_name();
    let subjects = Subjects::new(prefix.clone());
    let nats = testkit::nats_admin(&testkit::nats_url()).await;
    let topology = Topology::new(&subjects, None).expect("definitions");
    let js = runtime::jetstream::setup(&nats, &topology)
        .await
        .expect("streams");
    let wait = Duration::from_millis(1500);
    let mut consumer = Consumer::new(js.clone(), topology, "order-steps", 64);
    consumer.pairing_wait = wait;
    let recorder = Recorder::default();
    let stop = CancellationToken::new();
    let loop_ = tokio::spawn(consumer.run(recorder.clone(), stop.clone()));

    // A first half, then its partner well within the wait: one batch.
    publish(&js, &subjects, Step::Reserve).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&js, &subjects, Step::Charge).await;
    let batches = recorder.wait_for(1).await;
    assert_eq!(
        batches.first().map(|b| b.0.clone()),
        Some(vec![Step::Reserve, Step::Charge]),
        "the half waited and was applied with its partner: {batches:?}"
    );

    // The wait takes one more message, whatever it holds: a trickle of
    // further first halves cannot keep a batch waiting (bounded: one wait,
    // at most twice the batch's messages).
    publish(&js, &subjects, Step::Reserve).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = publish(&js, &subjects, Step::Reserve).await;
    let batches = recorder.wait_for(2).await;
    let (steps, at) = batches.get(1).cloned().expect("a second batch");
    assert_eq!(steps, vec![Step::Reserve, Step::Reserve]);
    assert!(
        at.duration_since(sent) < wait / 2,
        "applied as soon as the one more message came ({:?})",
        at.duration_since(sent)
    );

    // A first half with no partner: applied alone, once the wait is over.
    let sent = publish(&js, &subjects, Step::Reserve).await;
    let batches = recorder.wait_for(3).await;
    let (steps, at) = batches.get(2).cloned().expect("a third batch");
    assert_eq!(steps, vec![Step::Reserve]);
    assert!(
        at.duration_since(sent) >= wait - Duration::from_millis(100),
        "applied only after the wait ({:?})",
        at.duration_since(sent)
    );

    // Anything else is applied at once.
    let sent = publish(&js, &subjects, Step::Release).await;
    let batches = recorder.wait_for(4).await;
    let (steps, at) = batches.get(3).cloned().expect("a fourth batch");
    assert_eq!(steps, vec![Step::Release]);
    assert!(
        at.duration_since(sent) < wait / 2,
        "applied without waiting ({:?})",
        at.duration_since(sent)
    );

    stop.cancel();
    loop_.await.expect("the loop ends");
    testkit::delete_streams(&js, &prefix).await;
}
