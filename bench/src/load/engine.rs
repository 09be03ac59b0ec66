//! The load engine: a closed or open loop of requests for a duration, recorded from each
//! request's intended start, and the summary of the run.

use super::WorkloadError;
use crate::class::Class;
use crate::duration::parse_duration;
use crate::progress::Ui;
use crate::stats::{
    intended_offset, Counts, Event, LatencySummary, Recorder, Sample, TimelinePoint,
};
use api_client::Status;
use clap::Args;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant, MissedTickBehavior};

/// A boxed request future.
pub type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a load task does for one request.
pub type RequestFn = Arc<dyn Fn(Ctx) -> BoxFut + Send + Sync>;

/// Context of one request of a load run.
#[derive(Clone)]
pub struct Ctx {
    pub seq: u64,
    pub start: Instant,
    /// Open loop: the scheduled send time. Closed loop: the actual send time.
    pub intended: Instant,
    tx: mpsc::UnboundedSender<Event>,
}

impl Ctx {
    pub fn offset(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }

    pub fn emit(&self, ev: Event) {
        // The collector outlives every sender; a send error means it is gone and the
        // sample has nowhere to go.
        let _ = self.tx.send(ev);
    }

    pub fn sample(
        &self,
        op: &'static str,
        status: Status,
        class: Class,
        sent: Instant,
        done: Instant,
    ) {
        self.emit(Event::Done(Sample {
            op,
            status,
            class,
            intended: self.offset(self.intended),
            sent: self.offset(sent),
            done: self.offset(done),
        }));
    }
}

/// The load shape shared by `stress`, `async`, `sweep` and `ceiling`.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Measured duration (after the warm-up).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up excluded from the statistics (still shown in the timeline).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Closed loop: number of concurrent clients (ignored when --rate is given).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Open loop: fixed arrival rate in requests per second; latency is measured from each
    /// request's intended send time (no coordinated omission).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: requests in flight at most; arrivals beyond it are counted as dropped.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Stop after this many requests.
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Closed loop: also report latencies corrected for coordinated omission, assuming each
    /// client meant to send one request per this interval (HDR record_correct).
    #[arg(long, value_parser = parse_duration)]
    pub co_expected_interval: Option<Duration>,
    /// Seed of the (deterministic) choice of orders and operations.
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "loop", rename_all = "snake_case")]
pub enum LoadMode {
    Closed { clients: usize },
    Open { rate: f64 },
}

impl LoadMode {
    pub fn describe(&self) -> String {
        match self {
            LoadMode::Closed { clients } => format!("closed loop, {clients} clients"),
            LoadMode::Open { rate } => format!("open loop, {rate} req/s"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub mode: LoadMode,
    pub duration: Duration,
    pub warmup: Duration,
    pub max_requests: Option<u64>,
    pub max_in_flight: usize,
    pub co_interval: Option<Duration>,
    /// How long to wait for requests in flight at the end before abandoning them.
    pub drain_timeout: Duration,
}

impl LoadPlan {
    /// A plan bounded in time only, without coordinated-omission correction.
    pub fn timed(
        mode: LoadMode,
        duration: Duration,
        warmup: Duration,
        max_in_flight: usize,
        drain_timeout: Duration,
    ) -> Self {
        Self {
            mode,
            duration,
            warmup,
            max_requests: None,
            max_in_flight,
            co_interval: None,
            drain_timeout,
        }
    }

    pub fn from_args(a: &LoadArgs, drain_timeout: Duration) -> Result<Self, WorkloadError> {
        let mode = match a.rate {
            Some(r) if r.is_finite() && r > 0.0 => LoadMode::Open { rate: r },
            Some(r) => return Err(WorkloadError::Params(format!("--rate {r} must be > 0"))),
            None if a.clients == 0 => {
                return Err(WorkloadError::Params("--clients must be >= 1".into()))
            }
            None => LoadMode::Closed { clients: a.clients },
        };
        if a.max_in_flight == 0 {
            return Err(WorkloadError::Params("--max-in-flight must be >= 1".into()));
        }
        if a.duration.is_zero() {
            return Err(WorkloadError::Params("--duration must be > 0".into()));
        }
        Ok(Self {
            mode,
            duration: a.duration,
            warmup: a.warmup,
            max_requests: a.max_requests,
            max_in_flight: a.max_in_flight,
            co_interval: a.co_expected_interval.filter(|d| !d.is_zero()),
            drain_timeout,
        })
    }
}

/// What [`run_load`] measured.
pub struct LoadOutcome {
    pub recorder: Recorder,
    /// Measurement window (excluding warm-up).
    pub window: Duration,
    pub issued: u64,
    /// Requests abandoned after the drain timeout.
    pub unfinished: u64,
    pub elapsed: Duration,
}

/// Serialisable summary of a load run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    pub mode: LoadMode,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub window_s: f64,
    pub elapsed_s: f64,
    /// Requests sent (including warm-up).
    pub issued: u64,
    /// Requests sent after the warm-up that got an answer (or failed), whenever that was.
    pub completed: u64,
    pub counts: Counts,
    /// Of those, answered after the window end: in the latency figures, not in throughput.
    pub completed_after_window: u64,
    /// Open loop: arrivals not sent because --max-in-flight was reached.
    pub dropped: u64,
    /// Requests still running after the drain timeout (abandoned, not in any other count).
    pub unfinished: u64,
    /// Completions inside the window per second of window.
    pub throughput_rps: f64,
    /// 2xx answers inside the window per second of window.
    pub goodput_rps: f64,
    /// Open loop: the offered rate.
    pub offered_rps: Option<f64>,
    pub latency: LatencySummary,
    pub latency_co_corrected: Option<LatencySummary>,
    /// Open loop: how late requests were sent relative to the schedule.
    pub send_lag: Option<LatencySummary>,
    pub status_codes: BTreeMap<String, u64>,
    pub per_op: BTreeMap<String, OpSummary>,
    pub timeline: Vec<TimelinePoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpSummary {
    pub counts: Counts,
    pub throughput_rps: f64,
    pub latency: LatencySummary,
}

impl LoadSummary {
    pub fn new(plan: &LoadPlan, o: &LoadOutcome) -> Self {
        let r = &o.recorder;
        let window = o.window.as_secs_f64().max(1e-3);
        let completed = r.counts.total();
        let open = matches!(plan.mode, LoadMode::Open { .. });
        Self {
            mode: plan.mode,
            duration_s: plan.duration.as_secs_f64(),
            warmup_s: plan.warmup.as_secs_f64(),
            window_s: o.window.as_secs_f64(),
            elapsed_s: o.elapsed.as_secs_f64(),
            issued: o.issued,
            completed,
            counts: r.counts.clone(),
            completed_after_window: r.after_window,
            dropped: r.dropped,
            unfinished: o.unfinished,
            throughput_rps: r.in_window.total() as f64 / window,
            goodput_rps: r.in_window.ok as f64 / window,
            offered_rps: match plan.mode {
                LoadMode::Open { rate } => Some(rate),
                LoadMode::Closed { .. } => None,
            },
            latency: r.latency.summary(),
            latency_co_corrected: r.latency_co.as_ref().map(|l| l.summary()),
            send_lag: open.then(|| r.send_lag.summary()),
            status_codes: r.statuses.clone(),
            per_op: r
                .per_op
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        OpSummary {
                            counts: v.counts.clone(),
                            throughput_rps: v.in_window as f64 / window,
                            latency: v.latency.summary(),
                        },
                    )
                })
                .collect(),
            timeline: r.timeline.points(),
        }
    }

    /// Throughput and latency of operation `op` (of every request when the run had no other).
    pub fn of_op(&self, op: &str) -> (f64, &LatencySummary) {
        self.per_op
            .get(op)
            .map_or((self.throughput_rps, &self.latency), |o| {
                (o.throughput_rps, &o.latency)
            })
    }
}

fn render(rec: &Recorder, bar: &ProgressBar, start: Instant, total: Duration) {
    let el = start.elapsed();
    bar.set_position(u64::try_from(el.min(total).as_millis()).unwrap_or(u64::MAX));
    let done = rec.counts.total() + rec.warmup_samples;
    let rps = done as f64 / el.as_secs_f64().max(1e-3);
    bar.set_message(format!(
        "{done} done, {rps:.0}/s, 2xx {} 4xx {} err {} dropped {}",
        rec.counts.ok, rec.counts.business, rec.counts.error, rec.dropped
    ));
}

async fn collect(
    mut rec: Recorder,
    mut rx: mpsc::UnboundedReceiver<Event>,
    bar: ProgressBar,
    start: Instant,
    total: Duration,
) -> Recorder {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut buf = Vec::with_capacity(1024);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut buf, 1024) => {
                if n == 0 {
                    break;
                }
                for ev in buf.drain(..) {
                    rec.apply(ev);
                }
            }
            _ = tick.tick() => render(&rec, &bar, start, total),
        }
    }
    render(&rec, &bar, start, total);
    rec
}

/// Drives `f` closed-loop (N tasks, each sending its next request when the previous one
/// finished) or open-loop (a scheduler sending request i at start + i/rate, whatever happened
/// to earlier requests, at most `max_in_flight` at once; arrivals beyond the cap are recorded
/// as dropped). Bounded in time (warm-up + duration, then `drain_timeout` for requests in
/// flight) and optionally in count.
pub async fn run_load(
    plan: &LoadPlan,
    ui: &Ui,
    prefix: &str,
    f: RequestFn,
) -> Result<LoadOutcome, WorkloadError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let total = plan.warmup + plan.duration;
    let bar = ui.timed(total, prefix);
    let start = Instant::now();
    let end = start + total;
    let collector = tokio::spawn(collect(
        Recorder::new(plan.warmup, plan.co_interval).with_window_end(total),
        rx,
        bar.clone(),
        start,
        total,
    ));
    let issued = Arc::new(AtomicU64::new(0));
    let max_reached = Arc::new(AtomicBool::new(false));
    let last_issue_us = Arc::new(AtomicU64::new(0));
    let mut js: JoinSet<()> = JoinSet::new();
    match plan.mode {
        LoadMode::Closed { clients } => {
            for _ in 0..clients {
                let (f, tx) = (f.clone(), tx.clone());
                let (issued, max_reached, last) =
                    (issued.clone(), max_reached.clone(), last_issue_us.clone());
                let max = plan.max_requests;
                js.spawn(async move {
                    loop {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        let seq = issued.fetch_add(1, Ordering::Relaxed);
                        if max.is_some_and(|m| seq >= m) {
                            issued.fetch_sub(1, Ordering::Relaxed);
                            max_reached.store(true, Ordering::Relaxed);
                            break;
                        }
                        let off = u64::try_from(now.duration_since(start).as_micros())
                            .unwrap_or(u64::MAX);
                        last.fetch_max(off, Ordering::Relaxed);
                        f(Ctx {
                            seq,
                            start,
                            intended: now,
                            tx: tx.clone(),
                        })
                        .await;
                    }
                });
            }
        }
        LoadMode::Open { rate } => {
            let sem = Arc::new(Semaphore::new(plan.max_in_flight));
            let mut i = 0u64;
            loop {
                if plan.max_requests.is_some_and(|m| i >= m) {
                    max_reached.store(true, Ordering::Relaxed);
                    break;
                }
                let offset = intended_offset(i, rate);
                if offset >= total {
                    break;
                }
                let intended = start + offset;
                // Past deadlines (the scheduler fell behind) return at once: the requests go
                // out in a burst and are still charged from their intended time.
                sleep_until(intended).await;
                match sem.clone().try_acquire_owned() {
                    Ok(permit) => {
                        issued.fetch_add(1, Ordering::Relaxed);
                        let off = u64::try_from(offset.as_micros()).unwrap_or(u64::MAX);
                        last_issue_us.fetch_max(off, Ordering::Relaxed);
                        let fut = f(Ctx {
                            seq: i,
                            start,
                            intended,
                            tx: tx.clone(),
                        });
                        js.spawn(async move {
                            fut.await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        let _ = tx.send(Event::Dropped { intended: offset });
                    }
                }
                i += 1;
                while js.try_join_next().is_some() {}
            }
        }
    }
    let deadline = end.max(Instant::now()) + plan.drain_timeout;
    let drained =
        tokio::time::timeout_at(deadline, async { while js.join_next().await.is_some() {} })
            .await
            .is_ok();
    let unfinished = if drained {
        0
    } else {
        let n = js.len() as u64;
        js.abort_all();
        while js.join_next().await.is_some() {}
        n
    };
    let elapsed = start.elapsed();
    drop(tx);
    let recorder = collector
        .await
        .map_err(|e| WorkloadError::Join(e.to_string()))?;
    bar.finish_and_clear();
    // Time-bounded: the window is [warm-up, warm-up + duration]. Count-bounded runs that
    // stopped early end at their last completion (all of which then fall inside the window).
    let active = if max_reached.load(Ordering::Relaxed) {
        recorder
            .last_done
            .max(Duration::from_micros(last_issue_us.load(Ordering::Relaxed)))
            .min(total)
    } else {
        total
    };
    Ok(LoadOutcome {
        recorder,
        window: active.saturating_sub(plan.warmup),
        issued: issued.load(Ordering::Relaxed),
        unfinished,
        elapsed,
    })
}
