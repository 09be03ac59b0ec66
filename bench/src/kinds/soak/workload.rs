//! `soak`: a long open-loop run of checkouts at a fraction (default 80 %) of the saturation
//! throughput, measured first by a short closed-loop probe (or given with `--rate`). Reported
//! per interval (default a minute): throughput, latency percentiles, each binary's resident
//! memory and the growth of the log files, with a verdict on whether they stay flat.
//!
//! Every checkout is of an order not checked out before (order `i` for request `i`, continuing
//! after the probe's), so the work per request does not fall as orders get paid; with fewer
//! orders than requests the numbering wraps and the result says so.

use super::flatness::{intervals, verdict, Limits, SoakInterval, SoakVerdict};
use super::Soak;
use crate::class::classify;
use crate::kind::{Env, Ran};
use crate::load::{batch_init, run_load, Ctx, InitReport, LoadMode, LoadPlan, LoadSummary};
use crate::load::{RequestFn, WorkloadError};
use crate::procs::{self, Reading, Watched};
use api_client::Api;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};

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

pub async fn run(env: &Env<'_>, a: &Soak) -> Ran<SoakResult> {
    let (api, ui, request_timeout) = (env.api, env.ui, env.request_timeout);
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
            let mode = LoadMode::Closed {
                clients: a.probe_clients,
            };
            let (duration, clients) = (a.probe_duration, a.probe_clients);
            let plan = LoadPlan::timed(mode, duration, Duration::ZERO, clients, drain);
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

    let mode = LoadMode::Open { rate };
    let plan = LoadPlan::timed(mode, a.duration, Duration::ZERO, a.max_in_flight, drain);
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
