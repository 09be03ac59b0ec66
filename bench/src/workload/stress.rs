//! `stress`: random checkouts (or a weighted mix) over batch-initialised data.

use super::mix::{default_seed, rand_for, splitmix64, Mix, OpKind};
use super::{
    batch_init, run_load, Ctx, InitReport, LoadPlan, LoadSummary, RequestFn, WorkloadError,
};
use crate::class::classify;
use crate::cli::StressArgs;
use crate::progress::Ui;
use api_client::Method;
use api_client::{seg, Api, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The key space the operations draw from.
#[derive(Clone, Debug)]
pub struct Target {
    pub items: u64,
    pub users: u64,
    pub orders: u64,
    pub health_path: String,
}

fn pick(r: u64, n: u64, stream: u64) -> String {
    (splitmix64(r ^ stream) % n.max(1)).to_string()
}

/// Performs one operation on random keys derived from `r`.
pub async fn execute(api: &Api, op: OpKind, r: u64, t: &Target) -> Status {
    match op {
        OpKind::Checkout => api.checkout(&pick(r, t.orders, 1)).await,
        OpKind::FindOrder => {
            let p = format!("/orders/find/{}", pick(r, t.orders, 1));
            api.probe(Method::GET, &p).await
        }
        OpKind::FindItem => {
            let p = format!("/stock/find/{}", pick(r, t.items, 2));
            api.probe(Method::GET, &p).await
        }
        OpKind::FindUser => {
            let p = format!("/payment/find_user/{}", pick(r, t.users, 3));
            api.probe(Method::GET, &p).await
        }
        OpKind::AddStock => {
            let p = format!("/stock/add/{}/1", pick(r, t.items, 2));
            api.probe(Method::POST, &p).await
        }
        OpKind::AddFunds => {
            let p = format!("/payment/add_funds/{}/1", pick(r, t.users, 3));
            api.probe(Method::POST, &p).await
        }
        OpKind::AddItem => {
            let p = format!(
                "/orders/addItem/{}/{}/1",
                pick(r, t.orders, 1),
                pick(r, t.items, 2)
            );
            api.probe(Method::POST, &p).await
        }
        OpKind::Health => {
            let path = if t.health_path.starts_with('/') {
                t.health_path.clone()
            } else {
                format!("/{}", seg(&t.health_path))
            };
            api.probe(Method::GET, &path).await
        }
    }
}

/// The request function of `stress`, `sweep` and `ceiling`.
pub fn request_fn(api: Api, mix: Arc<Mix>, target: Arc<Target>, seed: u64) -> RequestFn {
    Arc::new(move |ctx: Ctx| {
        let (api, mix, target) = (api.clone(), mix.clone(), target.clone());
        Box::pin(async move {
            let op = mix.pick(rand_for(seed, ctx.seq, 0));
            let sent = Instant::now();
            let status = execute(&api, op, rand_for(seed, ctx.seq, 1), &target).await;
            ctx.sample(op.name(), status, classify(status), sent, Instant::now());
        })
    })
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StressResult {
    pub init: InitReport,
    pub mix: BTreeMap<String, f64>,
    pub seed: u64,
    pub load: LoadSummary,
}

pub async fn run(
    api: &Api,
    a: &StressArgs,
    ui: &Ui,
    request_timeout: Duration,
) -> Result<(StressResult, serde_json::Value), WorkloadError> {
    let mix = Arc::new(Mix::parse(&a.mix)?);
    let plan = LoadPlan::from_args(&a.load, request_timeout + Duration::from_secs(5))?;
    let seed = a.load.seed.unwrap_or_else(default_seed);
    let init = batch_init(api, &a.init, ui).await?;
    let target = Arc::new(Target {
        items: a.init.items,
        users: a.init.users,
        orders: a.init.orders,
        health_path: "/health".into(),
    });
    ui.note(format!(
        "stress: {} for {:.1} s (warm-up {:.1} s)",
        plan.mode.describe(),
        plan.duration.as_secs_f64(),
        plan.warmup.as_secs_f64()
    ));
    let f = request_fn(api.clone(), mix.clone(), target, seed);
    let outcome = run_load(&plan, ui, "stress", f).await?;
    let load = LoadSummary::new(&plan, &outcome);
    let params = serde_json::json!({
        "items": a.init.items, "stock": a.init.stock, "price": a.init.price,
        "users": a.init.users, "credit": a.init.credit, "orders": a.init.orders,
        "skip_init": a.init.skip_init,
        "mode": plan.mode, "duration_s": plan.duration.as_secs_f64(),
        "warmup_s": plan.warmup.as_secs_f64(), "max_in_flight": plan.max_in_flight,
        "max_requests": plan.max_requests, "mix": a.mix, "seed": seed,
        "co_expected_interval_ms": plan.co_interval.map(|d| d.as_secs_f64() * 1000.0),
        "request_timeout_s": request_timeout.as_secs_f64(),
    });
    Ok((
        StressResult {
            init,
            mix: mix.fractions(),
            seed,
            load,
        },
        params,
    ))
}
