//! `async`: asynchronous checkouts, observed by polling or webhooks.

use crate::cli::AsyncArgs;
use crate::kind::{Env, Overlay, Workload};
use crate::output::{codes, lat, load_status, Rows};
use crate::plot::{self, series};
use crate::report::md::{
    lat_row, load_plots, per_second, svg_name, title, Md, ReportError, LAT_HEAD,
};
use crate::workload::async_::AsyncResult;
use crate::workload::{self, WorkloadError};
use std::path::Path;

pub struct Async;

impl Workload for Async {
    const KIND: &'static str = "async";
    type Args = AsyncArgs;
    type Result = AsyncResult;

    async fn run(
        env: &Env<'_>,
        a: &AsyncArgs,
    ) -> Result<(AsyncResult, serde_json::Value), WorkloadError> {
        workload::async_::run(env.api, a, env.ui, env.request_timeout).await
    }

    fn status(r: &AsyncResult) -> String {
        load_status(&r.submit).into()
    }

    fn overlay(r: &AsyncResult) -> Option<Overlay> {
        Some(Overlay {
            spectrum: r.finals.time_to_final.spectrum.clone(),
            throughput: per_second(&r.submit),
        })
    }

    fn rows(r: &AsyncResult) -> Rows {
        async_rows(r)
    }

    fn section(md: &mut Md, dir: &Path, stem: &str, a: &AsyncResult) -> Result<(), ReportError> {
        md.line(format!("## Async ({}, observed by {})", stem, a.observe));
        md.blank();
        md.line(format!(
            "Accepted {} of {} submissions ({:.1}%); {:.1} final statuses/s; outcomes {:?}; {} polls.",
            a.accepted,
            a.submitted,
            a.accept_rate * 100.0,
            a.finals_per_s,
            a.finals.outcomes,
            a.finals.polls
        ));
        if let Some(r) = &a.first_rejection {
            md.line(format!("First answer other than 202: `{r}`."));
        }
        if let Some(w) = &a.webhook {
            md.line(format!(
                "Webhooks to {}: received {}, missing {}, duplicates {}, late {}, malformed {}, signatures ok {} / bad {}.",
                w.url, w.received, w.missing, w.duplicates, w.late, w.malformed, w.signature_ok, w.signature_bad
            ));
        }
        md.blank();
        md.line(LAT_HEAD);
        md.line(lat_row("accept (202)", &a.submit.latency));
        md.line(lat_row("time to final status", &a.finals.time_to_final));
        md.blank();
        let mut files = load_plots(
            dir,
            stem,
            &format!("{} submissions", title("async", stem)),
            &a.submit,
        )?;
        if !a.finals.timeline.is_empty() {
            let tl = &a.finals.timeline;
            files.push(svg_name(&plot::lines(
                &dir.join(format!("{}-time-to-final.svg", stem)),
                &format!(
                    "async {}: time to final status (by second the status was learned)",
                    stem
                ),
                "time since the start of the run (s)",
                "ms",
                &[
                    series(
                        "p99",
                        tl.iter().map(|p| (p.t_s as f64 + 0.5, p.p99_ms)).collect(),
                    ),
                    series(
                        "p50",
                        tl.iter().map(|p| (p.t_s as f64 + 0.5, p.p50_ms)).collect(),
                    ),
                ],
                false,
                false,
            )?));
        }
        if !a.finals.time_to_final.spectrum.is_empty() {
            files.push(svg_name(&plot::spectrum(
                &dir.join(format!("{}-time-to-final-spectrum.svg", stem)),
                &format!(
                    "async {}: time to final status (HDR percentile spectrum)",
                    stem
                ),
                &[(
                    "time to final".to_string(),
                    a.finals.time_to_final.spectrum.clone(),
                )],
            )?));
        }
        md.images(&files);
        Ok(())
    }
}

fn async_rows(a: &AsyncResult) -> Rows {
    let mut r: Rows = vec![
        (
            "accepted".into(),
            format!(
                "{} of {} ({:.1}%)",
                a.accepted,
                a.submitted,
                a.accept_rate * 100.0
            ),
        ),
        ("observed by".into(), a.observe.clone()),
        ("accept latency ms".into(), lat(&a.submit.latency)),
        ("time to final ms".into(), lat(&a.finals.time_to_final)),
        (
            "finals".into(),
            format!("{:.1}/s  {}", a.finals_per_s, codes(&a.finals.outcomes)),
        ),
        ("submit status codes".into(), codes(&a.submit.status_codes)),
        ("polls".into(), a.finals.polls.to_string()),
    ];
    if let Some(w) = &a.webhook {
        r.push((
            "webhooks".into(),
            format!(
                "received {}, missing {}, duplicates {}, late {}, malformed {}, bad signatures {}",
                w.received, w.missing, w.duplicates, w.late, w.malformed, w.signature_bad
            ),
        ));
    }
    r
}
