//! `ceiling`: the harness against a trivial endpoint, what it and the HTTP stack can drive at
//! all (so, what it can measure); its report section also carries the pgbench ceilings.

use crate::duration::parse_duration;
use crate::kind::{Env, Overlay, Ran, Workload};
use crate::load::mix::{Mix, OpKind};
use crate::load::{request_fn, run_load, LoadMode, LoadPlan, LoadSummary, Target, WorkloadError};
use crate::output::{load_rows, load_status, Rows};
use crate::report::files::Loaded;
use crate::report::md::{load_plots, load_section, title, Md, ReportError};
use crate::report::pgbench::{Pgbench, Pgbenches};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct Ceiling {
    /// Path of the trivial endpoint.
    #[arg(long, default_value = "/health")]
    pub path: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Duration.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up excluded from the statistics.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CeilingResult {
    pub path: String,
    pub load: LoadSummary,
}

impl Workload for Ceiling {
    const KIND: &'static str = "ceiling";
    type Result = CeilingResult;

    async fn run(&self, env: &Env<'_>) -> Ran<CeilingResult> {
        if self.clients == 0 || self.duration.is_zero() {
            return Err(WorkloadError::Params(
                "--clients and --duration must be > 0".into(),
            ));
        }
        let mode = LoadMode::Closed {
            clients: self.clients,
        };
        let drain = env.request_timeout + Duration::from_secs(5);
        let plan = LoadPlan::timed(mode, self.duration, self.warmup, self.clients, drain);
        env.ui.note(format!(
            "ceiling: GET {} with {} clients for {:.1} s",
            self.path,
            self.clients,
            self.duration.as_secs_f64()
        ));
        let health = Arc::new(Mix::single(OpKind::Health));
        let f = request_fn(
            env.api.clone(),
            health,
            Arc::new(Target::health(&self.path)),
            1,
        );
        let outcome = run_load(&plan, env.ui, "ceiling", f).await?;
        let load = LoadSummary::new(&plan, &outcome);
        let params = serde_json::json!({
            "path": self.path, "clients": self.clients,
            "duration_s": self.duration.as_secs_f64(), "warmup_s": self.warmup.as_secs_f64(),
        });
        let path = self.path.clone();
        Ok((CeilingResult { path, load }, params))
    }

    fn status(r: &CeilingResult) -> String {
        load_status(&r.load).into()
    }

    fn rows(c: &CeilingResult) -> Rows {
        let mut r: Rows = vec![("endpoint".into(), format!("GET {}", c.path))];
        r.extend(load_rows(&c.load));
        r
    }

    fn overlay(r: &CeilingResult) -> Option<Overlay> {
        Some(Overlay::of_load(&r.load))
    }

    fn section(md: &mut Md, dir: &Path, stem: &str, c: &CeilingResult) -> Result<(), ReportError> {
        md.line(format!("### Harness against GET {} ({})", c.path, stem));
        md.blank();
        load_section(md, &c.load);
        let files = load_plots(dir, stem, &title("ceiling", stem), &c.load)?;
        md.images(&files);
        Ok(())
    }

    fn sections(
        md: &mut Md,
        dir: &Path,
        runs: &[(&Loaded, CeilingResult)],
        pg: &Pgbenches,
    ) -> Result<(), ReportError> {
        if runs.is_empty() && !pg.any() {
            return Ok(());
        }
        md.line("## Ceilings");
        md.blank();
        if let Some(p) = &pg.checkout {
            pgbench_line(
                md,
                "one checkout-shaped transaction (two random UPDATEs and a ledger INSERT)",
                p,
            );
        }
        if let Some(p) = &pg.update {
            pgbench_line(md, "single-row `UPDATE … SET stock = stock - 1`", p);
        }
        for (l, c) in runs {
            Self::section(md, dir, &l.stem, c)?;
        }
        Ok(())
    }
}

fn pgbench_line(md: &mut Md, what: &str, pg: &Pgbench) {
    md.line(format!(
        "pgbench, {what} on the same PostgreSQL: **{:.1} tps**{}{}{}.",
        pg.tps,
        pg.clients
            .map(|c| format!(", {c} clients"))
            .unwrap_or_default(),
        pg.duration_s
            .map(|d| format!(", {d} s"))
            .unwrap_or_default(),
        pg.latency_avg_ms
            .map(|l| format!(", average latency {l:.3} ms"))
            .unwrap_or_default(),
    ));
    md.blank();
}
