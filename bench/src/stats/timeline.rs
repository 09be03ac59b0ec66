//! The per-second timeline: completions by class, dropped arrivals and latency percentiles of
//! each second.

use super::{Counts, Latency, MAX_TIMELINE_BUCKETS, TIMELINE_SIGFIG};
use crate::class::Class;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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
