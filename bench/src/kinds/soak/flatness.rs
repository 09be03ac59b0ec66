//! The soak's intervals and its flatness verdict: the last full interval against the first.

use crate::procs::Reading;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const MIB: f64 = 1024.0 * 1024.0;

/// Slack of the flatness rules, so that tiny figures do not fail on noise.
const P99_SLACK_MS: f64 = 10.0;

const RSS_SLACK_MIB: f64 = 16.0;

const LOG_SLACK_BYTES_PER_MIN: f64 = 64.0 * 1024.0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoakInterval {
    pub index: usize,
    pub start_s: u64,
    pub end_s: u64,
    /// False for a shorter last interval (not judged).
    pub full: bool,
    pub completed: u64,
    pub ok: u64,
    pub business: u64,
    pub error: u64,
    pub dropped: u64,
    pub throughput_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Resident memory of each watched process at the end of the interval, MiB.
    pub rss_mib: BTreeMap<String, f64>,
    /// Its highest reading during the interval, MiB.
    pub rss_max_mib: BTreeMap<String, f64>,
    /// Processes whose PID changed during the interval (restarted).
    pub restarted: Vec<String>,
    /// Growth of the log files during the interval.
    pub log_bytes: Option<u64>,
    pub log_bytes_per_min: Option<f64>,
    pub log_bytes_per_request: Option<f64>,
}

/// One figure compared between the first and the last full interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlatCheck {
    pub metric: String,
    pub first: Option<f64>,
    pub last: Option<f64>,
    /// The bound the last value must respect.
    pub limit: Option<f64>,
    pub rule: String,
    /// None when the figure was not measured.
    pub flat: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoakVerdict {
    /// flat | not_flat | inconclusive
    pub status: String,
    pub checks: Vec<FlatCheck>,
    pub notes: Vec<String>,
}

/// The reading closest to `t_s`.
fn nearest(readings: &[Reading], t_s: f64) -> Option<&Reading> {
    readings
        .iter()
        .min_by(|a, b| (a.t_s - t_s).abs().total_cmp(&(b.t_s - t_s).abs()))
}

/// Cuts the run into intervals of `interval_s` (the last one may be shorter).
pub fn intervals(
    timeline: &crate::stats::Timeline,
    readings: &[Reading],
    duration_s: u64,
    interval_s: u64,
) -> Vec<SoakInterval> {
    let interval_s = interval_s.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < duration_s {
        let end = (start + interval_s).min(duration_s);
        let p = timeline.range(start, end);
        let secs = (end - start) as f64;
        let (at_start, at_end) = (
            nearest(readings, start as f64),
            nearest(readings, end as f64),
        );
        let inside: Vec<&Reading> = readings
            .iter()
            .filter(|r| r.t_s >= start as f64 - 0.5 && r.t_s <= end as f64 + 0.5)
            .collect();
        let mut rss_max: BTreeMap<String, f64> = BTreeMap::new();
        let mut pids: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for r in &inside {
            for (name, (pid, bytes)) in &r.rss {
                let m = rss_max.entry(name.clone()).or_default();
                *m = m.max(*bytes as f64 / MIB);
                let seen = pids.entry(name.as_str()).or_default();
                if !seen.contains(pid) {
                    seen.push(*pid);
                }
            }
        }
        let log_bytes = match (
            at_start.and_then(|r| r.log_bytes),
            at_end.and_then(|r| r.log_bytes),
        ) {
            // A rotated or truncated log shrinks; count what was written since.
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        out.push(SoakInterval {
            index: out.len(),
            start_s: start,
            end_s: end,
            full: end - start == interval_s,
            completed: p.completed,
            ok: p.ok,
            business: p.business,
            error: p.error,
            dropped: p.dropped,
            throughput_rps: p.completed as f64 / secs,
            p50_ms: p.p50_ms,
            p99_ms: p.p99_ms,
            max_ms: p.max_ms,
            rss_mib: at_end
                .map(|r| {
                    r.rss
                        .iter()
                        .map(|(n, (_, b))| (n.clone(), *b as f64 / MIB))
                        .collect()
                })
                .unwrap_or_default(),
            rss_max_mib: rss_max,
            restarted: pids
                .into_iter()
                .filter(|(_, p)| p.len() > 1)
                .map(|(n, _)| n.to_string())
                .collect(),
            log_bytes,
            log_bytes_per_min: log_bytes.map(|b| b as f64 * 60.0 / secs),
            log_bytes_per_request: log_bytes
                .filter(|_| p.completed > 0)
                .map(|b| b as f64 / p.completed as f64),
        });
        start = end;
    }
    out
}

/// Limits of the flatness rules (fractions).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub throughput_drop: f64,
    pub p99_rise: f64,
    pub rss_growth: f64,
    pub log_growth: f64,
}

fn check(
    metric: String,
    first: Option<f64>,
    last: Option<f64>,
    rule: String,
    limit: impl Fn(f64) -> f64,
    at_most: bool,
) -> FlatCheck {
    let lim = first.map(&limit);
    let flat = match (last, lim) {
        (Some(l), Some(m)) if at_most => Some(l <= m),
        (Some(l), Some(m)) => Some(l >= m),
        _ => None,
    };
    FlatCheck {
        metric,
        first,
        last,
        limit: lim,
        rule,
        flat,
    }
}

/// Compares the first and the last full interval.
pub fn verdict(ivs: &[SoakInterval], processes: &[String], lim: Limits) -> SoakVerdict {
    let full: Vec<&SoakInterval> = ivs.iter().filter(|i| i.full).collect();
    let mut notes = Vec::new();
    let (Some(first), Some(last)) = (full.first(), full.last()) else {
        return SoakVerdict {
            status: "inconclusive".into(),
            checks: Vec::new(),
            notes: vec!["no full interval: run longer than --interval".into()],
        };
    };
    if full.len() < 2 {
        notes.push("only one full interval: nothing to compare".into());
    }
    let minutes = (first.end_s - first.start_s) as f64 / 60.0;
    let mut checks = vec![
        check(
            "throughput (req/s)".into(),
            Some(first.throughput_rps),
            Some(last.throughput_rps),
            format!("last >= first x {:.2}", 1.0 - lim.throughput_drop),
            |f| f * (1.0 - lim.throughput_drop),
            false,
        ),
        check(
            "p99 (ms)".into(),
            Some(first.p99_ms),
            Some(last.p99_ms),
            format!(
                "last <= first x {:.2} + {P99_SLACK_MS} ms",
                1.0 + lim.p99_rise
            ),
            |f| f * (1.0 + lim.p99_rise) + P99_SLACK_MS,
            true,
        ),
    ];
    for name in processes {
        checks.push(check(
            format!("RSS {name} (MiB)"),
            first.rss_mib.get(name).copied(),
            last.rss_mib.get(name).copied(),
            format!(
                "last <= first x {:.2} + {RSS_SLACK_MIB} MiB",
                1.0 + lim.rss_growth
            ),
            |f| f * (1.0 + lim.rss_growth) + RSS_SLACK_MIB,
            true,
        ));
    }
    if processes.is_empty() {
        notes
            .push("no process watched: pass --pid NAME=PID or --run-dir with the PID files".into());
    }
    let slack = LOG_SLACK_BYTES_PER_MIN * minutes;
    checks.push(check(
        "log bytes per interval".into(),
        first.log_bytes.map(|b| b as f64),
        last.log_bytes.map(|b| b as f64),
        format!(
            "last <= first x {:.2} + {:.0} KiB",
            1.0 + lim.log_growth,
            slack / 1024.0
        ),
        |f| f * (1.0 + lim.log_growth) + slack,
        true,
    ));
    for c in &checks {
        if c.flat.is_none() {
            notes.push(format!("{}: not measured", c.metric));
        }
    }
    let restarts: Vec<String> = ivs
        .iter()
        .flat_map(|i| {
            i.restarted
                .iter()
                .map(move |n| format!("{n} (interval {})", i.index))
        })
        .collect();
    if !restarts.is_empty() {
        notes.push(format!("restarted during the run: {}", restarts.join(", ")));
    }
    let status = if checks.iter().any(|c| c.flat == Some(false)) {
        "not_flat"
    } else if full.len() < 2 || checks.iter().any(|c| c.flat.is_none()) {
        "inconclusive"
    } else {
        "flat"
    };
    SoakVerdict {
        status: status.into(),
        checks,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::Class;
    use crate::stats::Timeline;
    use std::time::Duration;

    fn reading(t_s: f64, api_mib: u64, log: u64) -> Reading {
        let mut rss = BTreeMap::new();
        rss.insert("api".to_string(), (10, api_mib * 1024 * 1024));
        Reading {
            t_s,
            rss,
            log_bytes: Some(log),
        }
    }

    const LIMITS: Limits = Limits {
        throughput_drop: 0.1,
        p99_rise: 0.5,
        rss_growth: 0.2,
        log_growth: 0.5,
    };

    /// 10 answers/s for `secs` seconds, latency `ms`.
    fn steady(secs: u64, ms: u64) -> Timeline {
        let mut t = Timeline::default();
        for s in 0..secs {
            for i in 0..10 {
                t.record(
                    Duration::from_millis(s * 1000 + i * 100),
                    Class::Success,
                    Duration::from_millis(ms),
                );
            }
        }
        t
    }

    #[test]
    fn steady_run_is_flat() {
        let tl = steady(5, 20);
        let readings: Vec<Reading> = (0..=5).map(|s| reading(s as f64, 50, s * 1000)).collect();
        let ivs = intervals(&tl, &readings, 5, 2);
        assert_eq!(ivs.len(), 3);
        assert!(ivs[0].full && ivs[1].full && !ivs[2].full);
        assert_eq!((ivs[0].start_s, ivs[0].end_s, ivs[0].completed), (0, 2, 20));
        assert!((ivs[0].throughput_rps - 10.0).abs() < 1e-9);
        assert_eq!(ivs[1].log_bytes, Some(2000));
        assert_eq!(ivs[1].log_bytes_per_request, Some(100.0));
        assert!((ivs[1].rss_mib["api"] - 50.0).abs() < 1e-9);
        let v = verdict(&ivs, &["api".to_string()], LIMITS);
        assert_eq!(v.status, "flat", "{v:?}");
        assert!(v.checks.iter().all(|c| c.flat == Some(true)));
    }

    #[test]
    fn growing_memory_and_falling_throughput_are_not_flat() {
        let mut tl = steady(2, 20);
        tl.record(
            Duration::from_millis(2500),
            Class::Success,
            Duration::from_millis(20),
        );
        tl.record(
            Duration::from_millis(3500),
            Class::Success,
            Duration::from_millis(20),
        );
        let readings: Vec<Reading> = (0..=4).map(|s| reading(s as f64, 50 + 40 * s, 0)).collect();
        let ivs = intervals(&tl, &readings, 4, 2);
        let v = verdict(&ivs, &["api".to_string()], LIMITS);
        assert_eq!(v.status, "not_flat");
        let bad: Vec<&str> = v
            .checks
            .iter()
            .filter(|c| c.flat == Some(false))
            .map(|c| c.metric.as_str())
            .collect();
        assert_eq!(bad, ["throughput (req/s)", "RSS api (MiB)"]);
    }

    #[test]
    fn unmeasured_or_short_runs_are_inconclusive() {
        let tl = steady(4, 20);
        let readings: Vec<Reading> = (0..=4)
            .map(|s| Reading {
                t_s: s as f64,
                rss: BTreeMap::new(),
                log_bytes: None,
            })
            .collect();
        let ivs = intervals(&tl, &readings, 4, 2);
        let v = verdict(&ivs, &["api".to_string()], LIMITS);
        assert_eq!(v.status, "inconclusive", "{v:?}");
        let v = verdict(&ivs[..1], &[], LIMITS);
        assert_eq!(v.status, "inconclusive");
        assert_eq!(verdict(&[], &[], LIMITS).status, "inconclusive");
    }
}
