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

mod recorder;
mod timeline;

pub use recorder::{Event, FinalOutcome, FinalSample, FinalSummary, Recorder, Sample};
pub use timeline::{whole_seconds, Timeline, TimelinePoint};

use crate::class::Class;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
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

#[cfg(test)]
mod tests;
