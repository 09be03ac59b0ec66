//! `sweep`: stress at rising levels, and the saturation point.

use crate::cli::SweepArgs;
use crate::kind::{Env, Workload};
use crate::output::Rows;
use crate::plot::{self, series};
use crate::report::md::{svg_name, title, Md, ReportError};
use crate::workload::sweep::SweepResult;
use crate::workload::{self, WorkloadError};
use std::path::Path;

pub struct Sweep;

impl Workload for Sweep {
    const KIND: &'static str = "sweep";
    type Args = SweepArgs;
    type Result = SweepResult;

    async fn run(
        env: &Env<'_>,
        a: &SweepArgs,
    ) -> Result<(SweepResult, serde_json::Value), WorkloadError> {
        workload::sweep::run(env.api, a, env.ui, env.request_timeout).await
    }

    fn status(_: &SweepResult) -> String {
        "completed".into()
    }

    fn rows(r: &SweepResult) -> Rows {
        sweep_rows(r)
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

fn sweep_rows(s: &SweepResult) -> Rows {
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
