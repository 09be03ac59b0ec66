//! `stress`: random checkouts (or a mix) in a closed or open loop.

use crate::cli::StressArgs;
use crate::kind::{Env, Overlay, Workload};
use crate::output::{load_rows, load_status, Rows};
use crate::report::md::{load_plots, load_section, per_second, title, Md, ReportError};
use crate::workload::stress::StressResult;
use crate::workload::{self, WorkloadError};
use std::path::Path;

pub struct Stress;

impl Workload for Stress {
    const KIND: &'static str = "stress";
    type Args = StressArgs;
    type Result = StressResult;

    async fn run(
        env: &Env<'_>,
        a: &StressArgs,
    ) -> Result<(StressResult, serde_json::Value), WorkloadError> {
        workload::stress::run(env.api, a, env.ui, env.request_timeout).await
    }

    fn status(r: &StressResult) -> String {
        load_status(&r.load).into()
    }

    fn overlay(r: &StressResult) -> Option<Overlay> {
        Some(Overlay {
            spectrum: r.load.latency.spectrum.clone(),
            throughput: per_second(&r.load),
        })
    }

    fn rows(r: &StressResult) -> Rows {
        stress_rows(r)
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

fn stress_rows(s: &StressResult) -> Rows {
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
