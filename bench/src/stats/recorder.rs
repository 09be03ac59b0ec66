//! The recorder of one load run: every sample, in or out of the measurement window, into the
//! overall histograms, the per-operation figures, the status counts and the timeline.

use super::{latency_since, Counts, Latency, LatencySummary, Timeline, TimelinePoint};
use crate::class::Class;
use api_client::Status;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// One finished request, as reported by a load task.
#[derive(Clone, Debug)]
pub struct Sample {
    pub op: &'static str,
    pub status: Status,
    pub class: Class,
    /// Intended start (open loop: the schedule; closed loop: the send time), from run start.
    pub intended: Duration,
    /// Actual send time, from run start.
    pub sent: Duration,
    /// Completion time, from run start.
    pub done: Duration,
}

/// How an asynchronous request reached its final status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinalOutcome {
    Succeeded,
    Failed(String),
    /// Not final before `--final-timeout`.
    TimedOut,
    /// The request record could not be read (status of the last attempt).
    Error(String),
}

impl FinalOutcome {
    pub fn key(&self) -> String {
        match self {
            FinalOutcome::Succeeded => "succeeded".into(),
            FinalOutcome::Failed(r) => format!("failed:{r}"),
            FinalOutcome::TimedOut => "timed_out".into(),
            FinalOutcome::Error(e) => format!("error:{e}"),
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self, FinalOutcome::Succeeded | FinalOutcome::Failed(_))
    }
}

/// The final status of an accepted asynchronous request.
#[derive(Clone, Debug)]
pub struct FinalSample {
    pub intended: Duration,
    /// When the harness learned the final status, from run start.
    pub final_at: Duration,
    pub outcome: FinalOutcome,
    /// "poll", "webhook" or "poll_fallback".
    pub via: &'static str,
    pub polls: u32,
}

/// Events sent by load tasks to the collector.
#[derive(Clone, Debug)]
pub enum Event {
    Done(Sample),
    Dropped { intended: Duration },
    Final(FinalSample),
}

#[derive(Clone, Debug, Default)]
pub struct OpStats {
    pub counts: Counts,
    pub latency: Latency,
    /// Completions inside the measurement window.
    pub in_window: u64,
}

/// Statistics of final statuses of asynchronous requests.
#[derive(Clone, Debug, Default)]
pub struct FinalStats {
    pub time_to_final: Latency,
    /// Final statuses learned inside the measurement window.
    pub in_window: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub via: BTreeMap<String, u64>,
    pub polls: u64,
    pub timeline: Timeline,
}

/// Serialisable summary of [`FinalStats`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalSummary {
    pub observed: u64,
    pub finals: u64,
    /// Final statuses learned inside the measurement window.
    pub finals_in_window: u64,
    pub time_to_final: LatencySummary,
    pub outcomes: BTreeMap<String, u64>,
    pub via: BTreeMap<String, u64>,
    pub polls: u64,
    pub timeline: Vec<TimelinePoint>,
}

/// Everything a load run measured.
///
/// Latency statistics cover every request *sent* after the warm-up, however late it completed.
/// Throughput counts only completions *inside* the window [warm-up, window end], so requests
/// that finish long after the run cannot inflate it (they are counted in `after_window`).
#[derive(Clone, Debug)]
pub struct Recorder {
    warmup: Duration,
    window_end: Duration,
    co_interval: Option<Duration>,
    /// Requests sent after the warm-up, by answer class.
    pub counts: Counts,
    /// Completions inside the window (whenever sent), by answer class.
    pub in_window: Counts,
    /// Requests sent after the warm-up that completed after the window end.
    pub after_window: u64,
    /// Latest completion seen.
    pub last_done: Duration,
    pub dropped: u64,
    pub warmup_samples: u64,
    pub latency: Latency,
    pub latency_co: Option<Latency>,
    pub send_lag: Latency,
    pub statuses: BTreeMap<String, u64>,
    pub per_op: BTreeMap<&'static str, OpStats>,
    pub timeline: Timeline,
    pub finals: FinalStats,
}

impl Recorder {
    pub fn new(warmup: Duration, co_interval: Option<Duration>) -> Self {
        Self {
            warmup,
            window_end: Duration::MAX,
            co_interval,
            counts: Counts::default(),
            in_window: Counts::default(),
            after_window: 0,
            last_done: Duration::ZERO,
            dropped: 0,
            warmup_samples: 0,
            latency: Latency::new(),
            latency_co: co_interval.map(|_| Latency::new()),
            send_lag: Latency::new(),
            statuses: BTreeMap::new(),
            per_op: BTreeMap::new(),
            timeline: Timeline::default(),
            finals: FinalStats::default(),
        }
    }

    /// Sets the end of the measurement window (from run start).
    pub fn with_window_end(mut self, end: Duration) -> Self {
        self.window_end = end;
        self
    }

    fn measured(&self, intended: Duration) -> bool {
        intended >= self.warmup
    }

    fn in_window(&self, t: Duration) -> bool {
        t >= self.warmup && t <= self.window_end
    }

    pub fn apply(&mut self, ev: Event) {
        match ev {
            Event::Done(s) => self.record_sample(&s),
            Event::Dropped { intended } => self.record_dropped(intended),
            Event::Final(f) => self.record_final(&f),
        }
    }

    pub fn record_sample(&mut self, s: &Sample) {
        let lat = latency_since(s.intended, s.done);
        self.timeline.record(s.done, s.class, lat);
        self.last_done = self.last_done.max(s.done);
        let inside = self.in_window(s.done);
        if inside {
            self.in_window.add(s.class);
            self.per_op.entry(s.op).or_default().in_window += 1;
        }
        if !self.measured(s.intended) {
            self.warmup_samples += 1;
            return;
        }
        if s.done > self.window_end {
            self.after_window += 1;
        }
        self.counts.add(s.class);
        self.latency.record(lat);
        if let (Some(h), Some(iv)) = (self.latency_co.as_mut(), self.co_interval) {
            h.record_corrected(lat, iv);
        }
        self.send_lag.record(s.sent.saturating_sub(s.intended));
        *self.statuses.entry(s.status.key()).or_insert(0) += 1;
        let op = self.per_op.entry(s.op).or_default();
        op.counts.add(s.class);
        op.latency.record(lat);
    }

    pub fn record_dropped(&mut self, intended: Duration) {
        self.timeline.record_dropped(intended);
        if self.measured(intended) {
            self.dropped += 1;
        }
    }

    pub fn record_final(&mut self, f: &FinalSample) {
        let ttf = latency_since(f.intended, f.final_at);
        let class = match &f.outcome {
            FinalOutcome::Succeeded => Class::Success,
            FinalOutcome::Failed(_) => Class::Business,
            _ => Class::Error,
        };
        self.finals.timeline.record(f.final_at, class, ttf);
        if f.outcome.is_final() && self.in_window(f.final_at) {
            self.finals.in_window += 1;
        }
        if !self.measured(f.intended) {
            return;
        }
        if f.outcome.is_final() {
            self.finals.time_to_final.record(ttf);
        }
        *self.finals.outcomes.entry(f.outcome.key()).or_insert(0) += 1;
        *self.finals.via.entry(f.via.to_string()).or_insert(0) += 1;
        self.finals.polls += u64::from(f.polls);
    }

    pub fn final_summary(&self) -> FinalSummary {
        let observed: u64 = self.finals.outcomes.values().sum();
        FinalSummary {
            observed,
            finals: self.finals.time_to_final.count(),
            finals_in_window: self.finals.in_window,
            time_to_final: self.finals.time_to_final.summary(),
            outcomes: self.finals.outcomes.clone(),
            via: self.finals.via.clone(),
            polls: self.finals.polls,
            timeline: self.finals.timeline.points(),
        }
    }
}
