//! `sweep`: `stress` at increasing concurrency or rate, step by step, until saturation.

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

fn curve_point(level: f64, l: &LoadSummary) -> CurvePoint {
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
    let target = Arc::new(Target::of(&a.init));
    let drain = env.request_timeout + Duration::from_secs(5);
    let mut steps = Vec::new();
    let mut curve = Vec::new();
    let mut after_saturation: Option<usize> = None;
    for (i, mode) in modes.iter().enumerate() {
        let level = match mode {
            LoadMode::Closed { clients } => *clients as f64,
            LoadMode::Open { rate } => *rate,
        };
        let plan = LoadPlan::timed(*mode, a.step_duration, a.warmup, a.max_in_flight, drain);
        ui.note(format!(
            "sweep step {}/{}: {}",
            i + 1,
            modes.len(),
            mode.describe()
        ));
        let f = request_fn(
            api.clone(),
            mix.clone(),
            target.clone(),
            seed.wrapping_add(i as u64),
        );
        let outcome = run_load(&plan, ui, &format!("sweep {level}"), f).await?;
        let load = LoadSummary::new(&plan, &outcome);
        ui.note(format!(
            "  {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, errors {}",
            load.throughput_rps, load.latency.p50_ms, load.latency.p99_ms, load.counts.error
        ));
        curve.push(curve_point(level, &load));
        steps.push(SweepStep { level, load });
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
