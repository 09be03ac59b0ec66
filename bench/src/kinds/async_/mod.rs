//! `async`: asynchronous checkouts (`workload`), observed by polling or webhooks.

mod workload;

pub use workload::AsyncResult;

use crate::duration::parse_duration;
use crate::kind::{Env, Overlay, Ran, Workload};
use crate::load::{InitArgs, LoadArgs};
use crate::output::{codes, lat, load_status, Rows};
use crate::plot::{self, series};
use crate::report::md::{
    lat_row, load_plots, per_second, svg_name, title, Md, ReportError, LAT_HEAD,
};
use api_client::AsyncMode;
use clap::Args;
use std::path::Path;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct Async {
    #[command(flatten)]
    pub init: InitArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// How to ask for async processing.
    #[arg(long, value_enum, default_value_t = AsyncMode::Header)]
    pub async_mode: AsyncMode,
    /// Observe completion with a webhook receiver run by the harness (passes callback_url)
    /// instead of polling. The receiver is on loopback: run the api with
    /// WEBHOOK_ALLOW_PRIVATE=true, which refuses internal callback addresses otherwise.
    #[arg(long)]
    pub webhook: bool,
    /// Port of the webhook receiver on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub webhook_port: u16,
    /// callback_url to pass (default http://127.0.0.1:<port>/hook); use when the system
    /// reaches the harness under another address.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Standard Webhooks secret ("whsec_…"): verify webhook-signature and count failures.
    #[arg(long, env = "BENCH_WEBHOOK_SECRET")]
    pub webhook_secret: Option<String>,
    /// Long-poll wait in seconds (GET /requests/{id}?wait=…, at most 30).
    #[arg(long, default_value_t = 10)]
    pub poll_wait: u64,
    /// Give up on a request that is not final after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub final_timeout: Duration,
}

impl Workload for Async {
    const KIND: &'static str = "async";
    type Result = AsyncResult;

    async fn run(&self, env: &Env<'_>) -> Ran<AsyncResult> {
        workload::run(env, self).await
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

    fn rows(a: &AsyncResult) -> Rows {
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
