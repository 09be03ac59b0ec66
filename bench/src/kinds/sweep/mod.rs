//! `sweep`: stress at rising levels (`workload`) on orders each checked out once (`orders`),
//! the saturation point (`saturation`), and the latency curve of all sweeps (`curve`).

pub mod curve;
mod orders;
mod saturation;
mod workload;

pub use workload::SweepResult;

use crate::duration::parse_duration;
use crate::kind::{Env, Ran, Workload};
use crate::load::InitArgs;
use crate::output::Rows;
use crate::plot::{self, series};
use crate::report::files::Loaded;
use crate::report::md::{svg_name, title, Md, ReportError};
use crate::report::pgbench::Pgbenches;
use clap::Args;
use std::path::Path;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct Sweep {
    #[command(flatten)]
    pub init: InitArgs,
    /// Closed-loop client counts to try, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32,64,128,256"
    )]
    pub clients_list: Vec<usize>,
    /// Open-loop arrival rates to try instead (requests/s), e.g. 500,1000,2000,4000.
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<f64>>,
    /// Measured duration of each step.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub step_duration: Duration,
    /// Warm-up of each step.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open loop: in-flight cap per step.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Operation weights (see `stress --mix`).
    #[arg(long, default_value = "checkout=1")]
    pub mix: String,
    /// Closed loop: a step counts as still scaling if throughput grew by at least this fraction.
    #[arg(long, default_value_t = 0.05)]
    pub min_gain: f64,
    /// Open loop: a step is sustained if at least this fraction of the offered rate completed.
    #[arg(long, default_value_t = 0.95)]
    pub min_achieved_ratio: f64,
    /// A step with more than this fraction of errors + dropped requests is saturated.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_ratio: f64,
    /// Optional p99 objective: a step above it is saturated.
    #[arg(long, value_parser = parse_duration)]
    pub slo_p99: Option<Duration>,
    /// Stop after the first saturated step plus this many more.
    #[arg(long, default_value_t = 1)]
    pub steps_after_saturation: usize,
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Workload for Sweep {
    const KIND: &'static str = "sweep";
    type Result = SweepResult;

    async fn run(&self, env: &Env<'_>) -> Ran<SweepResult> {
        workload::run(env, self).await
    }

    fn status(_: &SweepResult) -> String {
        "completed".into()
    }

    fn rows(s: &SweepResult) -> Rows {
        let mut r: Rows = s
            .curve
            .iter()
            .map(|p| {
                (
                    format!("level {}", p.level),
                    format!(
                        "{:.1} req/s  p50 {:.2} ms  p99 {:.2} ms  errors {}  dropped {}",
                        p.throughput, p.p50_ms, p.p99_ms, p.errors, p.dropped
                    ),
                )
            })
            .collect();
        let sat = &s.saturation;
        r.push((
            "saturation point".into(),
            match (sat.point_level, sat.point_throughput) {
                (Some(l), Some(t)) => format!("level {l} ({t:.1} req/s)"),
                _ => "-".into(),
            },
        ));
        r.push(("reason".into(), sat.reason.clone()));
        r.push(("peak".into(), format!("{:.1} req/s", sat.peak_throughput)));
        r
    }

    /// The curve of every sweep first (against the pgbench checkout ceiling), then each sweep.
    fn sections(
        md: &mut Md,
        dir: &Path,
        runs: &[(&Loaded, SweepResult)],
        pg: &Pgbenches,
    ) -> Result<(), ReportError> {
        curve::section(md, dir, runs, pg.checkout.as_ref())?;
        for (l, r) in runs {
            Self::section(md, dir, &l.stem, r)?;
        }
        Ok(())
    }

    fn section(md: &mut Md, dir: &Path, stem: &str, s: &SweepResult) -> Result<(), ReportError> {
        md.line(format!(
            "## Sweep ({}, {})",
            stem,
            if s.open_loop {
                "open loop, levels = offered req/s"
            } else {
                "closed loop, levels = clients"
            }
        ));
        md.blank();
        md.line("| level | throughput (req/s) | p50 (ms) | p99 (ms) | errors | dropped |\n|---:|---:|---:|---:|---:|---:|");
        for p in &s.curve {
            md.line(format!(
                "| {} | {:.1} | {:.2} | {:.2} | {} | {} |",
                p.level, p.throughput, p.p50_ms, p.p99_ms, p.errors, p.dropped
            ));
        }
        md.blank();
        let sat = &s.saturation;
        match (sat.point_level, sat.point_throughput) {
            (Some(lv), Some(tp)) => md.line(format!(
                "**Saturation point: level {lv} ({tp:.1} req/s).** Next step: {}. Peak {:.1} req/s.",
                sat.reason, sat.peak_throughput
            )),
            _ => md.line(format!(
                "Saturation point: none found ({}). Peak {:.1} req/s.",
                sat.reason, sat.peak_throughput
            )),
        }
        md.blank();
        let xl = if s.open_loop {
            "offered rate (req/s)"
        } else {
            "clients"
        };
        let mut tp_series = vec![series(
            "throughput",
            s.curve.iter().map(|p| (p.level, p.throughput)).collect(),
        )];
        if s.open_loop {
            tp_series.push(series(
                "offered",
                s.curve.iter().map(|p| (p.level, p.level)).collect(),
            ));
        }
        let f1 = plot::lines(
            &dir.join(format!("{}-curve.svg", stem)),
            &format!("{}: throughput", title("sweep", stem)),
            xl,
            "req/s",
            &tp_series,
            true,
            false,
        )?;
        let f2 = plot::lines(
            &dir.join(format!("{}-curve-latency.svg", stem)),
            &format!("{}: latency", title("sweep", stem)),
            xl,
            "ms",
            &[
                series("p99", s.curve.iter().map(|p| (p.level, p.p99_ms)).collect()),
                series("p50", s.curve.iter().map(|p| (p.level, p.p50_ms)).collect()),
            ],
            true,
            false,
        )?;
        md.images(&[svg_name(&f1), svg_name(&f2)]);
        Ok(())
    }
}
