//! `sweep`: `stress` at increasing concurrency or rate, step by step, until saturation. Each
//! checkout takes an order not checked out before in the sweep (`orders`), so every step pays
//! for whole checkouts however long the sweep runs.

use super::orders::{need, taken, Supply};
use super::saturation::{saturation, CurvePoint, Saturation, SaturationCriteria};
use super::Sweep;
use crate::kind::{Env, Ran};
use crate::load::mix::{default_seed, Mix};
use crate::load::{batch_init, request_fn, run_load, Target};
use crate::load::{InitReport, LoadMode, LoadPlan, LoadSummary, WorkloadError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepStep {
    pub level: f64,
    pub load: LoadSummary,
    /// The first order this step checked out (it took them in sequence).
    #[serde(default)]
    pub first_order: u64,
    /// `batch_init` ran again before this step (the unpaid orders left would not have lasted).
    #[serde(default)]
    pub renewed: bool,
    /// The step stopped early for want of unpaid orders (only with `--skip-init`, or a
    /// closed-loop step far faster than the ones before it): its window is shorter.
    #[serde(default)]
    pub orders_ran_out: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    pub init: InitReport,
    pub open_loop: bool,
    pub criteria: SaturationCriteria,
    pub curve: Vec<CurvePoint>,
    pub saturation: Saturation,
    pub steps: Vec<SweepStep>,
}

pub(super) fn curve_point(level: f64, l: &LoadSummary) -> CurvePoint {
    CurvePoint {
        level,
        throughput: l.throughput_rps,
        p50_ms: l.latency.p50_ms,
        p99_ms: l.latency.p99_ms,
        completed: l.completed,
        errors: l.counts.error + l.unfinished,
        dropped: l.dropped,
    }
}

pub async fn run(env: &Env<'_>, a: &Sweep) -> Ran<SweepResult> {
    let (api, ui) = (env.api, env.ui);
    let mix = Arc::new(Mix::parse(&a.mix)?);
    let modes: Vec<LoadMode> = match &a.rates {
        Some(rates) => rates.iter().map(|&rate| LoadMode::Open { rate }).collect(),
        None => a
            .clients_list
            .iter()
            .map(|&clients| LoadMode::Closed { clients })
            .collect(),
    };
    if modes.is_empty() {
        return Err(WorkloadError::Params("no sweep levels".into()));
    }
    for m in &modes {
        match m {
            LoadMode::Open { rate } if !(rate.is_finite() && *rate > 0.0) => {
                return Err(WorkloadError::Params(format!("rate {rate} must be > 0")))
            }
            LoadMode::Closed { clients: 0 } => {
                return Err(WorkloadError::Params("client counts must be >= 1".into()))
            }
            _ => {}
        }
    }
    if a.step_duration.is_zero() || a.max_in_flight == 0 {
        return Err(WorkloadError::Params(
            "--step-duration and --max-in-flight must be > 0".into(),
        ));
    }
    let criteria = SaturationCriteria {
        open_loop: a.rates.is_some(),
        min_gain: a.min_gain,
        min_achieved_ratio: a.min_achieved_ratio,
        max_error_ratio: a.max_error_ratio,
        slo_p99_ms: a.slo_p99.map(|d| d.as_secs_f64() * 1000.0),
    };
    let seed = a.seed.unwrap_or_else(default_seed);
    let init = batch_init(api, &a.init, ui).await?;
    let target = Target::of(&a.init);
    let drain = env.request_timeout + Duration::from_secs(5);
    let mut steps = Vec::new();
    let mut curve = Vec::new();
    let mut after_saturation: Option<usize> = None;
    let mut supply = Supply::new(a.init.orders);
    for (i, mode) in modes.iter().enumerate() {
        let level = match mode {
            LoadMode::Closed { clients } => *clients as f64,
            LoadMode::Open { rate } => *rate,
        };
        let mut plan = LoadPlan::timed(*mode, a.step_duration, a.warmup, a.max_in_flight, drain);
        let need = need(mode, plan.warmup + plan.duration, curve.last());
        // Also when none is left: a step after one that completed nothing
        // estimates a need of 0.
        let renewed = (need > supply.remaining() || supply.remaining() == 0) && !a.init.skip_init;
        if renewed {
            ui.note(format!(
                "sweep: {} unpaid orders left, the step may take {need}: batch_init again",
                supply.remaining()
            ));
            batch_init(api, &a.init, ui).await?;
            supply.renew();
        }
        let (first, cap) = (supply.first(), supply.remaining());
        if cap == 0 {
            return Err(WorkloadError::Setup(
                "no unpaid orders left for the next step (--skip-init); raise --orders".into(),
            ));
        }
        plan.max_requests = Some(cap);
        ui.note(format!(
            "sweep step {}/{}: {}",
            i + 1,
            modes.len(),
            mode.describe()
        ));
        let f = request_fn(
            api.clone(),
            mix.clone(),
            Arc::new(target.clone().checkout_in_sequence(first)),
            seed.wrapping_add(i as u64),
        );
        let outcome = run_load(&plan, ui, &format!("sweep {level}"), f).await?;
        let (took, orders_ran_out) = taken(mode, need, cap, outcome.issued);
        supply.take(took);
        if orders_ran_out {
            ui.note("  the step ran out of unpaid orders and stopped early");
        }
        let load = LoadSummary::new(&plan, &outcome);
        ui.note(format!(
            "  {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, errors {}",
            load.throughput_rps, load.latency.p50_ms, load.latency.p99_ms, load.counts.error
        ));
        curve.push(curve_point(level, &load));
        steps.push(SweepStep {
            level,
            load,
            first_order: first,
            renewed,
            orders_ran_out,
        });
        let sat = saturation(&curve, &criteria);
        if let Some(n) = after_saturation.as_mut() {
            *n += 1;
        } else if sat.saturated_at_index.is_some() {
            after_saturation = Some(0);
        }
        if after_saturation.is_some_and(|n| n >= a.steps_after_saturation) {
            ui.note("sweep: saturated, stopping");
            break;
        }
    }
    let sat = saturation(&curve, &criteria);
    let params = serde_json::json!({
        "items": a.init.items, "stock": a.init.stock, "users": a.init.users,
        "credit": a.init.credit, "orders": a.init.orders, "skip_init": a.init.skip_init,
        "levels": modes, "step_duration_s": a.step_duration.as_secs_f64(),
        "warmup_s": a.warmup.as_secs_f64(), "max_in_flight": a.max_in_flight,
        "mix": a.mix, "seed": seed,
    });
    Ok((
        SweepResult {
            init,
            open_loop: criteria.open_loop,
            criteria,
            curve,
            saturation: sat,
            steps,
        },
        params,
    ))
}
