//! Latency and throughput bookkeeping: HDR histograms, per-second timeline, status counts and
//! coordinated-omission handling.
//!
//! Every latency is measured from the request's *intended* start. In a closed loop the intended
//! start is the moment the client sends, so latencies are service times (and suffer from
//! coordinated omission: a stalled server also stalls the clients, and the requests they would
//! have sent are never measured). `--co-expected-interval` then back-fills the missing samples
//! with HDR's `record_correct`. In an open loop the intended start comes from the arrival
//! schedule, so a request that is sent late because the system (or the harness) stalled is
//! charged for the whole wait: no correction is needed and none is applied.

use crate::class::Class;
use api_client::Status;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Smallest recordable latency, in microseconds.
pub const LOWEST_US: u64 = 1;
/// Largest recordable latency (one hour), in microseconds; longer values are clamped.
pub const HIGHEST_US: u64 = 3_600_000_000;
/// Significant digits of the overall histograms.
pub const SIGFIG: u8 = 3;
/// Significant digits of the per-second timeline histograms (smaller, there are many).
pub const TIMELINE_SIGFIG: u8 = 2;
/// Upper bound on the number of timeline buckets kept (one day of seconds).
pub const MAX_TIMELINE_BUCKETS: usize = 86_400;

/// The intended start of request `i` of an open-loop schedule at `rate` requests per second,
/// relative to the start of the run.
pub fn intended_offset(i: u64, rate: f64) -> Duration {
    if !(rate.is_finite() && rate > 0.0) {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(i as f64 / rate)
}

/// Latency of a request charged from its intended start (open loop) or its send time (closed
/// loop, where both are the same). Never negative.
pub fn latency_since(intended: Duration, done: Duration) -> Duration {
    done.saturating_sub(intended)
}

fn to_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(LOWEST_US, HIGHEST_US)
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A latency histogram in microseconds.
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        Self::with_sigfig(SIGFIG)
    }

    pub fn with_sigfig(sigfig: u8) -> Self {
        // The bounds are constants satisfying HDR's preconditions (low >= 1, high >= 2 * low,
        // sigfig <= 5); `histogram_bounds_are_valid` checks them.
        let hist = Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, sigfig.min(5))
            .expect("constant histogram bounds are valid");
        Self { hist }
    }

    pub fn record(&mut self, d: Duration) {
        self.hist.saturating_record(to_us(d));
    }

    /// Records `d` and, when it exceeds `expected_interval`, the samples a client that sends
    /// every `expected_interval` would have seen while it was blocked (HDR `record_correct`):
    /// `d - interval`, `d - 2 × interval`, … down to `interval`.
    pub fn record_corrected(&mut self, d: Duration, expected_interval: Duration) {
        let v = to_us(d);
        let interval = u64::try_from(expected_interval.as_micros()).unwrap_or(u64::MAX);
        if self.hist.record_correct(v, interval).is_err() {
            self.hist.saturating_record(v);
        }
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Adds every sample of `other` (histograms of any precision merge).
    pub fn merge(&mut self, other: &Latency) {
        if self.hist.add(&other.hist).is_err() {
            // Only when `other` held values outside these bounds, which `record` prevents.
            for v in other.hist.iter_recorded() {
                self.hist
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        us_to_ms(self.hist.value_at_quantile(q))
    }

    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.hist.len(),
            min_ms: us_to_ms(self.hist.min()),
            mean_ms: self.hist.mean() / 1000.0,
            p50_ms: self.quantile_ms(0.50),
            p90_ms: self.quantile_ms(0.90),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: self.quantile_ms(0.999),
            max_ms: us_to_ms(self.hist.max()),
            spectrum: self.spectrum(),
        }
    }

    /// The HDR percentile spectrum: the latency at percentiles 0, 10, 20 … 90, then ten steps
    /// per decade towards 100 (90, 92.1, 93.7 … 99, 99.2 … 99.999), as far as the sample count
    /// resolves them (at least one sample beyond the percentile), then the maximum at 100.
    /// Plotted against 1 / (1 - percentile / 100) on a log axis it shows the whole tail.
    pub fn spectrum(&self) -> Vec<SpectrumPoint> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        let n = self.hist.len() as f64;
        let linear = (0..9).map(|i| f64::from(i) * 0.1);
        let tail = (0..=SPECTRUM_STEPS).map(|i| 1.0 - 10f64.powf(-1.0 - f64::from(i) / 10.0));
        let mut out: Vec<SpectrumPoint> = linear
            .chain(tail)
            // (tolerance: 1 - (1 - 10^-k) is not exactly 10^-k in floating point)
            .take_while(|q| (1.0 - q) * n >= 1.0 - 1e-6)
            .map(|q| SpectrumPoint {
                percentile: q * 100.0,
                ms: self.quantile_ms(q),
            })
            .collect();
        out.push(SpectrumPoint {
            percentile: 100.0,
            ms: us_to_ms(self.hist.max()),
        });
        out
    }
}

/// Ten steps per decade from 90 % to 99.999 %.
const SPECTRUM_STEPS: u8 = 40;

/// One point of an HDR percentile spectrum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpectrumPoint {
    pub percentile: f64,
    pub ms: f64,
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// The percentile spectrum (absent from results written before it existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spectrum: Vec<SpectrumPoint>,
}

/// Counts by answer class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// 2xx.
    pub ok: u64,
    /// 4xx: the operation did not happen (business failure).
    pub business: u64,
    /// 5xx, other statuses, timeouts and connection errors.
    pub error: u64,
}

impl Counts {
    pub fn add(&mut self, class: Class) {
        match class {
            Class::Success => self.ok += 1,
            Class::Business => self.business += 1,
            Class::Error => self.error += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.ok + self.business + self.error
    }
}

#[derive(Clone, Debug)]
struct Bucket {
    counts: Counts,
    dropped: u64,
    latency: Latency,
}

impl Bucket {
    fn new() -> Self {
        Self {
            counts: Counts::default(),
            dropped: 0,
            latency: Latency::with_sigfig(TIMELINE_SIGFIG),
        }
    }
}

/// One-second buckets keyed by completion time.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    buckets: Vec<Option<Bucket>>,
}

/// One second of the timeline as written to the JSON result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Start of the second, relative to the start of the run.
    pub t_s: u64,
    pub completed: u64,
    pub ok: u64,
    pub business: u64,
    pub error: u64,
    pub dropped: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Timeline {
    fn bucket(&mut self, at: Duration) -> Option<&mut Bucket> {
        let idx = usize::try_from(at.as_secs()).ok()?;
        if idx >= MAX_TIMELINE_BUCKETS {
            return None;
        }
        if self.buckets.len() <= idx {
            self.buckets.resize(idx + 1, None);
        }
        Some(self.buckets[idx].get_or_insert_with(Bucket::new))
    }

    /// Records a completion at `done` (offset from the start of the run).
    pub fn record(&mut self, done: Duration, class: Class, latency: Duration) {
        if let Some(b) = self.bucket(done) {
            b.counts.add(class);
            b.latency.record(latency);
        }
    }

    /// Records a request that the open-loop scheduler could not send (in-flight cap reached).
    pub fn record_dropped(&mut self, intended: Duration) {
        if let Some(b) = self.bucket(intended) {
            b.dropped += 1;
        }
    }

    /// Merges the seconds [start_s, end_s) into one point (`t_s` = start_s); its latency
    /// percentiles are those of every sample in the range, not averages of seconds.
    pub fn range(&self, start_s: u64, end_s: u64) -> TimelinePoint {
        let mut counts = Counts::default();
        let mut dropped = 0;
        let mut latency = Latency::with_sigfig(TIMELINE_SIGFIG);
        let lo = usize::try_from(start_s).unwrap_or(usize::MAX);
        let hi = usize::try_from(end_s).unwrap_or(usize::MAX);
        for b in self
            .buckets
            .iter()
            .take(hi)
            .skip(lo)
            .filter_map(|b| b.as_ref())
        {
            counts.ok += b.counts.ok;
            counts.business += b.counts.business;
            counts.error += b.counts.error;
            dropped += b.dropped;
            latency.merge(&b.latency);
        }
        TimelinePoint {
            t_s: start_s,
            completed: counts.total(),
            ok: counts.ok,
            business: counts.business,
            error: counts.error,
            dropped,
            p50_ms: latency.quantile_ms(0.50),
            p90_ms: latency.quantile_ms(0.90),
            p99_ms: latency.quantile_ms(0.99),
            max_ms: if latency.count() == 0 {
                0.0
            } else {
                latency.quantile_ms(1.0)
            },
        }
    }

    pub fn points(&self) -> Vec<TimelinePoint> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, b)| match b {
                None => TimelinePoint {
                    t_s: i as u64,
                    ..TimelinePoint::default()
                },
                Some(b) => TimelinePoint {
                    t_s: i as u64,
                    completed: b.counts.total(),
                    ok: b.counts.ok,
                    business: b.counts.business,
                    error: b.counts.error,
                    dropped: b.dropped,
                    p50_ms: b.latency.quantile_ms(0.50),
                    p90_ms: b.latency.quantile_ms(0.90),
                    p99_ms: b.latency.quantile_ms(0.99),
                    max_ms: if b.latency.count() == 0 {
                        0.0
                    } else {
                        b.latency.quantile_ms(1.0)
                    },
                },
            })
            .collect()
    }
}

/// The seconds of `timeline` that lie wholly inside `[0, end_s]` (the end of the measurement
/// window): the last, partial second (and any drain after the window) would show a false drop
/// in a per-second rate.
pub fn whole_seconds(timeline: &[TimelinePoint], end_s: f64) -> &[TimelinePoint] {
    let whole = timeline
        .iter()
        .take_while(|p| (p.t_s + 1) as f64 <= end_s + 1e-9)
        .count();
    &timeline[..whole]
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn histogram_bounds_are_valid() {
        let mut l = Latency::new();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(7200));
        let s = l.summary();
        assert_eq!(s.count, 2);
        assert!(s.min_ms <= 0.002);
        // clamped to one hour
        assert!((s.max_ms - 3_600_000.0).abs() / 3_600_000.0 < 0.001);
        let _ = Latency::with_sigfig(TIMELINE_SIGFIG);
    }

    #[test]
    fn percentiles_of_uniform_latencies() {
        let mut l = Latency::new();
        for v in 1..=1000u64 {
            l.record(ms(v));
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        let close = |a: f64, b: f64| (a - b).abs() / b < 0.002;
        assert!(close(s.p50_ms, 500.0), "{}", s.p50_ms);
        assert!(close(s.p90_ms, 900.0), "{}", s.p90_ms);
        assert!(close(s.p99_ms, 990.0), "{}", s.p99_ms);
        assert!(close(s.p999_ms, 999.0), "{}", s.p999_ms);
        assert!(close(s.max_ms, 1000.0), "{}", s.max_ms);
        assert!(close(s.mean_ms, 500.5), "{}", s.mean_ms);
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }

    #[test]
    fn spectrum_covers_the_tail_the_samples_resolve() {
        let mut l = Latency::new();
        for v in 1..=1000u64 {
            l.record(ms(v));
        }
        let sp = l.spectrum();
        // 0..80 by tens, then 90 % … 99.9 % (1000 samples resolve three nines), then 100 %.
        assert_eq!(sp.len(), 9 + 21 + 1, "{sp:?}");
        assert_eq!(sp.first().map(|p| p.percentile), Some(0.0));
        let last = sp.last().copied().unwrap_or_default();
        assert_eq!(last.percentile, 100.0);
        assert!((last.ms - 1000.0).abs() < 1.0, "{last:?}");
        let at = |pct: f64| {
            sp.iter()
                .find(|p| (p.percentile - pct).abs() < 1e-9)
                .map(|p| p.ms)
        };
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() / b < 0.002);
        assert!(close(at(90.0), 900.0), "{:?}", at(90.0));
        assert!(close(at(99.0), 990.0), "{:?}", at(99.0));
        assert!(close(at(99.9), 999.0), "{:?}", at(99.9));
        assert!(at(99.99).is_none(), "1000 samples do not resolve 99.99 %");
        assert!(sp
            .windows(2)
            .all(|w| w[0].percentile < w[1].percentile && w[0].ms <= w[1].ms));
        assert!(Latency::new().spectrum().is_empty());
    }

    #[test]
    fn the_last_partial_second_is_dropped() {
        let tl: Vec<TimelinePoint> = (0..6)
            .map(|t| TimelinePoint {
                t_s: t,
                completed: if t < 5 { 100 } else { 30 },
                ..TimelinePoint::default()
            })
            .collect();
        // The window ends at 5.3 s: second 5 holds 0.3 s of load, plotted it would read as a
        // drop to 30/s.
        let kept = whole_seconds(&tl, 5.3);
        assert_eq!(kept.len(), 5);
        assert!(kept.iter().all(|p| p.completed == 100));
        // A window ending exactly on a second keeps that second.
        assert_eq!(whole_seconds(&tl, 5.0).len(), 5);
        assert_eq!(whole_seconds(&tl, 6.0).len(), 6);
        assert!(whole_seconds(&tl, 0.5).is_empty());
    }

    #[test]
    fn record_corrected_backfills_missing_samples() {
        // A closed-loop client meant to send every 10 ms is blocked for 100 ms by one request:
        // the correction adds the 9 requests it would have sent meanwhile (90, 80, …, 10 ms).
        let mut l = Latency::new();
        l.record_corrected(ms(100), ms(10));
        assert_eq!(l.count(), 10);
        let s = l.summary();
        assert!((s.min_ms - 10.0).abs() < 0.05, "{}", s.min_ms);
        assert!((s.max_ms - 100.0).abs() < 0.1, "{}", s.max_ms);
        // a fast answer is recorded once
        let mut f = Latency::new();
        f.record_corrected(ms(5), ms(10));
        assert_eq!(f.count(), 1);
    }

    #[test]
    fn intended_schedule() {
        assert_eq!(intended_offset(0, 100.0), Duration::ZERO);
        assert_eq!(intended_offset(100, 100.0), Duration::from_secs(1));
        assert_eq!(intended_offset(3, 1000.0), ms(3));
        assert_eq!(intended_offset(5, 0.0), Duration::ZERO);
        assert_eq!(latency_since(ms(10), ms(4)), Duration::ZERO);
        assert_eq!(latency_since(ms(4), ms(10)), ms(6));
    }

    /// (intended, sent, done)
    type Timing = (Duration, Duration, Duration);

    /// A single-server queue: request `i` arrives at `i × interval`, request 0 takes `stall`,
    /// the others `service`. Returns (intended, sent, done) for each request for an open-loop
    /// client (sends at the intended time, never waits) and for a one-client closed loop
    /// (sends when the previous answer arrives).
    fn simulate(
        n: u64,
        interval: Duration,
        stall: Duration,
        service: Duration,
    ) -> (Vec<Timing>, Vec<Timing>) {
        let mut open = Vec::new();
        let mut server_free = Duration::ZERO;
        for i in 0..n {
            let intended = interval * i as u32;
            let start = intended.max(server_free);
            let done = start + if i == 0 { stall } else { service };
            server_free = done;
            open.push((intended, intended, done));
        }
        let mut closed = Vec::new();
        let mut t = Duration::ZERO;
        for i in 0..n {
            let sent = t.max(interval * i as u32);
            let done = sent + if i == 0 { stall } else { service };
            closed.push((sent, sent, done));
            t = done;
        }
        (open, closed)
    }

    /// Records successful checkouts given as (intended, sent, done).
    fn record_successes(r: &mut Recorder, samples: &[Timing]) {
        for (intended, sent, done) in samples {
            r.record_sample(&Sample {
                op: "checkout",
                status: Status::Http(200),
                class: Class::Success,
                intended: *intended,
                sent: *sent,
                done: *done,
            });
        }
    }

    #[test]
    fn open_loop_charges_the_stall_to_every_queued_request() {
        let interval = ms(1);
        let (open, closed) = simulate(1000, interval, ms(500), Duration::from_micros(100));
        assert_eq!(open.len(), 1000);
        let mut open_r = Recorder::new(Duration::ZERO, None);
        record_successes(&mut open_r, &open);
        let mut closed_raw = Recorder::new(Duration::ZERO, Some(interval));
        record_successes(&mut closed_raw, &closed);
        let open_s = open_r.latency.summary();
        let raw_s = closed_raw.latency.summary();
        let co_s = closed_raw
            .latency_co
            .as_ref()
            .map(|l| l.summary())
            .unwrap_or_default();
        // Raw closed-loop numbers hide the stall: only one slow sample out of 1000.
        assert!(raw_s.p50_ms < 0.2, "raw p50 {}", raw_s.p50_ms);
        assert!(raw_s.p99_ms < 0.2, "raw p99 {}", raw_s.p99_ms);
        // Open loop: the ~500 requests queued behind the stall wait up to 500 ms.
        assert!(open_s.p50_ms > 1.0, "open p50 {}", open_s.p50_ms);
        assert!(open_s.p90_ms > 350.0, "open p90 {}", open_s.p90_ms);
        assert!(open_s.max_ms >= 499.0, "open max {}", open_s.max_ms);
        // The corrected closed-loop histogram recovers the same tail.
        assert!(co_s.count >= 1000 + 400, "co count {}", co_s.count);
        assert!(co_s.p90_ms > 300.0, "co p90 {}", co_s.p90_ms);
        assert!(co_s.max_ms >= 499.0);
    }

    #[test]
    fn warmup_is_excluded_but_kept_in_timeline() {
        let mut r = Recorder::new(Duration::from_secs(1), None);
        for (i, class) in [Class::Success, Class::Business, Class::Error]
            .into_iter()
            .enumerate()
        {
            let t = Duration::from_millis(500 + 600 * i as u64);
            r.record_sample(&Sample {
                op: "checkout",
                status: Status::Http(200),
                class,
                intended: t,
                sent: t,
                done: t + ms(10),
            });
        }
        r.record_dropped(ms(200));
        r.record_dropped(ms(1500));
        assert_eq!(r.warmup_samples, 1);
        assert_eq!(
            r.counts,
            Counts {
                ok: 0,
                business: 1,
                error: 1
            }
        );
        assert_eq!(r.dropped, 1);
        let tl = r.timeline.points();
        assert_eq!(tl.len(), 2);
        assert_eq!(tl[0].completed, 1);
        assert_eq!(tl[0].dropped, 1);
        assert_eq!(tl[1].completed, 2);
        assert_eq!(tl[1].dropped, 1);
        assert!((tl[1].p50_ms - 10.0).abs() < 0.2);
        assert_eq!(r.statuses.get("200"), Some(&2));
        assert_eq!(r.per_op.get("checkout").map(|o| o.counts.total()), Some(2));
    }

    #[test]
    fn late_completions_count_in_latency_not_in_throughput() {
        let mut r = Recorder::new(ms(0), None).with_window_end(ms(3000));
        let mut add = |sent: u64, done: u64| {
            r.record_sample(&Sample {
                op: "checkout",
                status: Status::Http(200),
                class: Class::Success,
                intended: ms(sent),
                sent: ms(sent),
                done: ms(done),
            })
        };
        add(100, 200);
        add(2900, 2950);
        add(2000, 19_000); // sent in the window, answered 16 s after it
        assert_eq!(r.counts.ok, 3);
        assert_eq!(r.in_window.ok, 2);
        assert_eq!(r.after_window, 1);
        assert_eq!(r.last_done, ms(19_000));
        assert!((r.latency.summary().max_ms - 17_000.0).abs() < 20.0);
        assert_eq!(r.per_op.get("checkout").map(|o| o.in_window), Some(2));
    }

    #[test]
    fn timeline_ranges_merge_seconds() {
        let mut t = Timeline::default();
        // 100 answers of 10 ms in second 0, one of 1 s in second 2, one error in second 3.
        for i in 0..100 {
            t.record(ms(i * 5), Class::Success, ms(10));
        }
        t.record(ms(2500), Class::Business, ms(1000));
        t.record(ms(3500), Class::Error, ms(20));
        t.record_dropped(ms(1500));
        let all = t.range(0, 4);
        assert_eq!(
            (all.completed, all.ok, all.business, all.error),
            (102, 100, 1, 1)
        );
        assert_eq!(all.dropped, 1);
        assert!((all.p50_ms - 10.0).abs() < 0.2, "{}", all.p50_ms);
        assert!((all.max_ms - 1000.0).abs() < 10.0, "{}", all.max_ms);
        let tail = t.range(2, 3);
        assert_eq!((tail.t_s, tail.completed), (2, 1));
        assert!((tail.p99_ms - 1000.0).abs() < 10.0, "{}", tail.p99_ms);
        assert_eq!(t.range(4, 10).completed, 0);
        assert_eq!(t.range(4, 10).p99_ms, 0.0);
    }

    #[test]
    fn finals_are_counted_by_outcome() {
        let mut r = Recorder::new(Duration::ZERO, None);
        let mk = |outcome, at| FinalSample {
            intended: ms(0),
            final_at: ms(at),
            outcome,
            via: "poll",
            polls: 2,
        };
        r.record_final(&mk(FinalOutcome::Succeeded, 20));
        r.record_final(&mk(FinalOutcome::Failed("insufficient_stock".into()), 40));
        r.record_final(&mk(FinalOutcome::TimedOut, 60_000));
        let s = r.final_summary();
        assert_eq!(s.observed, 3);
        assert_eq!(s.finals, 2);
        assert_eq!(s.outcomes.get("failed:insufficient_stock"), Some(&1));
        assert_eq!(s.outcomes.get("timed_out"), Some(&1));
        assert_eq!(s.polls, 6);
        assert!((s.time_to_final.max_ms - 40.0).abs() < 0.1);
    }
}
