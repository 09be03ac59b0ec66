//! Recorded load runs for the tests of the report: a summary made the way a run makes it, and
//! the envelope a run writes.

use super::{LoadMode, LoadOutcome, LoadPlan, LoadSummary};
use crate::class::Class;
use crate::output::{Envelope, Host, SCHEMA};
use crate::stats::{Recorder, Sample};
use api_client::Status;
use std::time::Duration;

/// A run of 11.5 s (warm-up 1 s) in `mode` completing `per_s` checkouts a second, request `i`
/// taking `ms(i)` milliseconds.
pub fn recorded_load(
    mode: LoadMode,
    op: &'static str,
    per_s: u64,
    ms: impl Fn(u64) -> u64,
) -> LoadSummary {
    let plan = LoadPlan::timed(
        mode,
        Duration::from_millis(10_500),
        Duration::from_secs(1),
        4,
        Duration::from_secs(1),
    );
    let end = plan.warmup + plan.duration;
    let mut recorder = Recorder::new(plan.warmup, None).with_window_end(end);
    let n = per_s * end.as_millis() as u64 / 1000;
    for i in 0..n {
        let done = Duration::from_micros(i * 1_000_000 / per_s);
        let sent = done.saturating_sub(Duration::from_millis(ms(i)));
        recorder.record_sample(&Sample {
            op,
            status: Status::Http(200),
            class: Class::Success,
            intended: sent,
            sent,
            done,
        });
    }
    let outcome = LoadOutcome {
        recorder,
        window: plan.duration,
        issued: n,
        unfinished: 0,
        elapsed: end,
    };
    LoadSummary::new(&plan, &outcome)
}

/// The result file of a `kind` run labelled `label`.
pub fn envelope(kind: &str, label: &str, result: impl serde::Serialize) -> Envelope {
    Envelope {
        schema: SCHEMA.to_string(),
        kind: kind.into(),
        status: "completed".into(),
        label: Some(label.into()),
        base_url: "http://127.0.0.1:1".into(),
        started_at: String::new(),
        finished_at: String::new(),
        harness_version: "test".into(),
        host: Host::current(),
        params: serde_json::Value::Null,
        result: serde_json::to_value(result).unwrap_or_default(),
    }
}
