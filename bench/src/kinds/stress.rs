//! `stress`: random checkouts (or a weighted mix) over batch-initialised data, in a closed or
//! open loop.

use crate::kind::{Env, Overlay, Ran, Workload};
use crate::load::mix::{default_seed, Mix};
use crate::load::{batch_init, request_fn, run_load, Target};
use crate::load::{InitArgs, InitReport, LoadArgs, LoadPlan, LoadSummary};
use crate::output::{load_rows, load_status, Rows};
use crate::report::md::{load_plots, load_section, title, Md, ReportError};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct Stress {
    #[command(flatten)]
    pub init: InitArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Operation weights, e.g. "checkout=1" (default) or "checkout=80,read=15,add=5".
    /// Operations: checkout, find_order, find_item, find_user, add_stock, add_funds, add_item,
    /// health; "read" spreads over the three finds, "add" over add_stock and add_funds.
    #[arg(long, default_value = "checkout=1")]
    pub mix: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StressResult {
    pub init: InitReport,
    pub mix: BTreeMap<String, f64>,
    pub seed: u64,
    pub load: LoadSummary,
}

impl Workload for Stress {
    const KIND: &'static str = "stress";
    type Result = StressResult;

    async fn run(&self, env: &Env<'_>) -> Ran<StressResult> {
        let (api, ui) = (env.api, env.ui);
        let mix = Arc::new(Mix::parse(&self.mix)?);
        let plan = LoadPlan::from_args(&self.load, env.request_timeout + Duration::from_secs(5))?;
        let seed = self.load.seed.unwrap_or_else(default_seed);
        let init = batch_init(api, &self.init, ui).await?;
        ui.note(format!(
            "stress: {} for {:.1} s (warm-up {:.1} s)",
            plan.mode.describe(),
            plan.duration.as_secs_f64(),
            plan.warmup.as_secs_f64()
        ));
        let target = Arc::new(Target::of(&self.init));
        let f = request_fn(api.clone(), mix.clone(), target, seed);
        let outcome = run_load(&plan, ui, "stress", f).await?;
        let load = LoadSummary::new(&plan, &outcome);
        let params = serde_json::json!({
            "items": self.init.items, "stock": self.init.stock, "price": self.init.price,
            "users": self.init.users, "credit": self.init.credit, "orders": self.init.orders,
            "skip_init": self.init.skip_init,
            "mode": plan.mode, "duration_s": plan.duration.as_secs_f64(),
            "warmup_s": plan.warmup.as_secs_f64(), "max_in_flight": plan.max_in_flight,
            "max_requests": plan.max_requests, "mix": self.mix, "seed": seed,
            "co_expected_interval_ms": plan.co_interval.map(|d| d.as_secs_f64() * 1000.0),
            "request_timeout_s": env.request_timeout.as_secs_f64(),
        });
        let mix = mix.fractions();
        Ok((
            StressResult {
                init,
                mix,
                seed,
                load,
            },
            params,
        ))
    }

    fn status(r: &StressResult) -> String {
        load_status(&r.load).into()
    }

    fn overlay(r: &StressResult) -> Option<Overlay> {
        Some(Overlay::of_load(&r.load))
    }

    fn rows(s: &StressResult) -> Rows {
        let mut r: Rows = vec![(
            "init".into(),
            if s.init.skipped {
                "skipped".into()
            } else {
                format!(
                    "{} items, {} users, {} orders in {:.1} s",
                    s.init.items, s.init.users, s.init.orders, s.init.seconds
                )
            },
        )];
        r.extend(load_rows(&s.load));
        r
    }

    fn section(md: &mut Md, dir: &Path, stem: &str, s: &StressResult) -> Result<(), ReportError> {
        md.line(format!("## Stress ({})", stem));
        md.blank();
        md.line(format!(
            "{} items, {} users, {} orders{}; mix {:?}.",
            s.init.items,
            s.init.users,
            s.init.orders,
            if s.init.skipped {
                " (batch_init skipped)".to_string()
            } else {
                format!(" (batch_init {:.1} s)", s.init.seconds)
            },
            s.mix
        ));
        md.blank();
        load_section(md, &s.load);
        let files = load_plots(dir, stem, &title("stress", stem), &s.load)?;
        md.images(&files);
        Ok(())
    }
}
