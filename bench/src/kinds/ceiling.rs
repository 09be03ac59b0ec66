//! `ceiling`: the harness against a trivial endpoint, what it and the HTTP stack can drive at
//! all; its report section also carries the pgbench ceilings.

use crate::cli::CeilingArgs;
use crate::kind::{Env, Overlay, Workload};
use crate::output::{load_rows, load_status, Rows};
use crate::report::files::Loaded;
use crate::report::md::{load_plots, load_section, per_second, title, Md, ReportError};
use crate::report::pgbench::{Pgbench, Pgbenches};
use crate::workload::ceiling::CeilingResult;
use crate::workload::{self, WorkloadError};
use std::path::Path;

pub struct Ceiling;

impl Workload for Ceiling {
    const KIND: &'static str = "ceiling";
    type Args = CeilingArgs;
    type Result = CeilingResult;

    async fn run(
        env: &Env<'_>,
        a: &CeilingArgs,
    ) -> Result<(CeilingResult, serde_json::Value), WorkloadError> {
        workload::ceiling::run(env.api, a, env.ui, env.request_timeout).await
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
        Some(Overlay {
            spectrum: r.load.latency.spectrum.clone(),
            throughput: per_second(&r.load),
        })
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
