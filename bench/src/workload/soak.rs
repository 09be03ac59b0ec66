//! `soak`: a long open-loop run of checkouts at a fraction (default 80 %) of the saturation
//! throughput, measured first by a short closed-loop probe (or given with `--rate`). Reported
//! per interval (default a minute): throughput, latency percentiles, each binary's resident
//! memory and the growth of the log files, with a verdict on whether they stay flat.
//!
//! Every checkout is of an order not checked out before (order `i` for request `i`, continuing
//! after the probe's), so the work per request does not fall as orders get paid; with fewer
//! orders than requests the numbering wraps and the result says so.

use super::{batch_init, run_load, Ctx, InitReport, LoadMode, LoadPlan, LoadSummary};
use super::{RequestFn, WorkloadError};
use crate::class::classify;
use crate::cli::SoakArgs;
use crate::procs::{self, Reading, Watched};
use crate::progress::Ui;
use api_client::Api;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};

const MIB: f64 = 1024.0 * 1024.0;
/// Slack of the flatness rules, so that tiny figures do not fail on noise.
const P99_SLACK_MS: f64 = 10.0;
const RSS_SLACK_MIB: f64 = 16.0;
const LOG_SLACK_BYTES_PER_MIN: f64 = 64.0 * 1024.0;

/// The closed-loop run that measured the saturation throughput.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub clients: usize,
    pub duration_s: f64,
    /// Answers other than errors per second: what the system sustains.
    pub throughput_rps: f64,
    pub errors: u64,
    pub p99_ms: f64,
}

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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoakResult {
    pub init: InitReport,
    pub probe: Option<Probe>,
    /// Offered rate of the soak, requests/s.
    pub rate: f64,
    pub load_fraction: Option<f64>,
    pub interval_s: u64,
    /// Fewer orders than checkouts: later checkouts found paid orders.
    pub orders_reused: bool,
    pub processes: Vec<String>,
    pub log_dir: String,
    pub load: LoadSummary,
    pub intervals: Vec<SoakInterval>,
    pub verdict: SoakVerdict,
}

fn checkout_fn(api: Api, orders: u64, first_order: u64) -> RequestFn {
    Arc::new(move |ctx: Ctx| {
        let api = api.clone();
        Box::pin(async move {
            let order = (first_order.wrapping_add(ctx.seq) % orders.max(1)).to_string();
            let sent = Instant::now();
            let status = api.checkout(&order).await;
            ctx.sample("checkout", status, classify(status), sent, Instant::now());
        })
    })
}

/// Reads the watched processes and logs every second until told to stop.
async fn sample(
    watched: Vec<Watched>,
    log_dir: PathBuf,
    start: Instant,
    mut stop: oneshot::Receiver<()>,
) -> Vec<Reading> {
    let mut readings = Vec::new();
    let mut tick = tokio::time::interval_at(start, Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                readings.push(procs::read(&watched, &log_dir, start.elapsed().as_secs_f64()));
            }
            _ = &mut stop => break,
        }
    }
    readings.push(procs::read(
        &watched,
        &log_dir,
        start.elapsed().as_secs_f64(),
    ));
    readings
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

pub async fn run(
    api: &Api,
    a: &SoakArgs,
    ui: &Ui,
    request_timeout: Duration,
) -> Result<(SoakResult, serde_json::Value), WorkloadError> {
    let interval_s = a.interval.as_secs();
    if interval_s == 0 || a.interval.subsec_nanos() != 0 {
        return Err(WorkloadError::Params(
            "--interval must be a whole number of seconds, at least 1".into(),
        ));
    }
    if a.duration < a.interval {
        return Err(WorkloadError::Params(
            "--duration must be at least --interval".into(),
        ));
    }
    if !(a.load_fraction > 0.0 && a.load_fraction <= 1.0) {
        return Err(WorkloadError::Params(
            "--load-fraction must be in (0, 1]".into(),
        ));
    }
    if a.max_in_flight == 0 || a.probe_clients == 0 {
        return Err(WorkloadError::Params(
            "--max-in-flight and --probe-clients must be >= 1".into(),
        ));
    }
    let watched =
        procs::discover(&a.pids, &a.run_dir).map_err(|e| WorkloadError::Params(e.to_string()))?;
    let processes: Vec<String> = watched.iter().map(|w| w.name.clone()).collect();
    if processes.is_empty() {
        ui.note(format!(
            "soak: no process to watch (no --pid, no PID files in {}): RSS is not reported",
            a.run_dir.display()
        ));
    }
    let init = batch_init(api, &a.init, ui).await?;
    let drain = request_timeout + Duration::from_secs(5);

    let mut next_order = 0u64;
    let (probe, rate, fraction) = match a.rate {
        Some(r) if r.is_finite() && r > 0.0 => (None, r, None),
        Some(r) => return Err(WorkloadError::Params(format!("--rate {r} must be > 0"))),
        None => {
            let plan = LoadPlan {
                mode: LoadMode::Closed {
                    clients: a.probe_clients,
                },
                duration: a.probe_duration,
                warmup: Duration::ZERO,
                max_requests: None,
                max_in_flight: a.probe_clients,
                co_interval: None,
                drain_timeout: drain,
            };
            ui.note(format!(
                "soak: measuring saturation ({} for {:.0} s)",
                plan.mode.describe(),
                plan.duration.as_secs_f64()
            ));
            let f = checkout_fn(api.clone(), a.init.orders, next_order);
            let o = run_load(&plan, ui, "soak probe", f).await?;
            next_order += o.issued;
            let l = LoadSummary::new(&plan, &o);
            let total = l.counts.total().max(1) as f64;
            let sustained = l.throughput_rps * (1.0 - l.counts.error as f64 / total);
            if sustained < 1.0 {
                return Err(WorkloadError::Setup(format!(
                    "the saturation probe measured {sustained:.2} req/s without errors \
                     ({} errors of {}); pass --rate",
                    l.counts.error,
                    l.counts.total()
                )));
            }
            let probe = Probe {
                clients: a.probe_clients,
                duration_s: a.probe_duration.as_secs_f64(),
                throughput_rps: sustained,
                errors: l.counts.error,
                p99_ms: l.latency.p99_ms,
            };
            (
                Some(probe),
                sustained * a.load_fraction,
                Some(a.load_fraction),
            )
        }
    };
    let expected = (rate * a.duration.as_secs_f64()).ceil() as u64;
    let orders_reused = next_order + expected > a.init.orders;
    if orders_reused {
        ui.note(format!(
            "soak: {} orders for about {} checkouts: later checkouts find paid orders \
             (use --orders {} or more)",
            a.init.orders,
            next_order + expected,
            next_order + expected
        ));
    }

    let plan = LoadPlan {
        mode: LoadMode::Open { rate },
        duration: a.duration,
        warmup: Duration::ZERO,
        max_requests: None,
        max_in_flight: a.max_in_flight,
        co_interval: None,
        drain_timeout: drain,
    };
    ui.note(format!(
        "soak: {} for {:.0} s, reported every {interval_s} s",
        plan.mode.describe(),
        plan.duration.as_secs_f64()
    ));
    let (stop_tx, stop_rx) = oneshot::channel();
    let sampler = tokio::spawn(sample(watched, a.log_dir.clone(), Instant::now(), stop_rx));
    let f = checkout_fn(api.clone(), a.init.orders, next_order);
    let outcome = run_load(&plan, ui, "soak", f).await;
    let _ = stop_tx.send(());
    let readings = sampler
        .await
        .map_err(|e| WorkloadError::Join(e.to_string()))?;
    let outcome = outcome?;
    let load = LoadSummary::new(&plan, &outcome);
    let duration_s = a.duration.as_secs();
    let ivs = intervals(
        &outcome.recorder.timeline,
        &readings,
        duration_s,
        interval_s,
    );
    let verdict = verdict(
        &ivs,
        &processes,
        Limits {
            throughput_drop: a.max_throughput_drop,
            p99_rise: a.max_p99_rise,
            rss_growth: a.max_rss_growth,
            log_growth: a.max_log_growth,
        },
    );
    let params = serde_json::json!({
        "items": a.init.items, "stock": a.init.stock, "price": a.init.price,
        "users": a.init.users, "credit": a.init.credit, "orders": a.init.orders,
        "skip_init": a.init.skip_init, "duration_s": a.duration.as_secs_f64(),
        "interval_s": interval_s, "rate": a.rate, "load_fraction": a.load_fraction,
        "probe_duration_s": a.probe_duration.as_secs_f64(), "probe_clients": a.probe_clients,
        "max_in_flight": a.max_in_flight, "run_dir": a.run_dir, "log_dir": a.log_dir,
        "pids": a.pids, "max_throughput_drop": a.max_throughput_drop,
        "max_p99_rise": a.max_p99_rise, "max_rss_growth": a.max_rss_growth,
        "max_log_growth": a.max_log_growth,
        "request_timeout_s": request_timeout.as_secs_f64(),
    });
    Ok((
        SoakResult {
            init,
            probe,
            rate,
            load_fraction: fraction,
            interval_s,
            orders_reused,
            processes,
            log_dir: a.log_dir.display().to_string(),
            load,
            intervals: ivs,
            verdict,
        },
        params,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::Class;
    use crate::stats::Timeline;

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
