//! `consistency`: the standard workload (every checkout at once, `workload`) and its verdict.

mod workload;

pub use workload::ConsistencyResult;

use crate::duration::parse_duration;
use crate::kind::{Env, Overlay, Ran, Workload, EXIT_FAIL, EXIT_INCONCLUSIVE};
use crate::output::{codes, lat, Rows};
use crate::report::md::{lat_row, Md, ReportError, LAT_HEAD};
use crate::verdict::VerdictStatus;
use clap::Args;
use std::path::Path;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct Consistency {
    /// Number of items.
    #[arg(long, default_value_t = 1)]
    pub items: u64,
    /// Starting stock of each item.
    #[arg(long, default_value_t = 100)]
    pub stock: i64,
    /// Price of each item.
    #[arg(long, default_value_t = 1)]
    pub price: i64,
    /// Number of users.
    #[arg(long, default_value_t = 1000)]
    pub users: u64,
    /// Starting credit of each user.
    #[arg(long, default_value_t = 1)]
    pub credit: i64,
    /// Number of orders (order i belongs to user i mod users).
    #[arg(long, default_value_t = 1000)]
    pub orders: u64,
    /// addItem calls per order (order i, line j takes item (i + j) mod items).
    #[arg(long, default_value_t = 1)]
    pub items_per_order: u64,
    /// Quantity of each addItem call.
    #[arg(long, default_value_t = 1)]
    pub quantity: i64,
    /// Maximum checkouts in flight (0 = all at once).
    #[arg(long, default_value_t = 0)]
    pub concurrency: usize,
    /// Concurrent requests while populating and verifying.
    #[arg(long, default_value_t = 32)]
    pub populate_concurrency: usize,
    /// Pause between the last answer and the first verification read.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
    /// The state is read repeatedly until it has not changed for --quiet-period (the system
    /// has quiesced), for at most this long; then the verdict is computed with a warning.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub settle_timeout: Duration,
    /// How long the state must stay unchanged before it is judged.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub quiet_period: Duration,
}

impl Workload for Consistency {
    const KIND: &'static str = "consistency";
    type Result = ConsistencyResult;

    async fn run(&self, env: &Env<'_>) -> Ran<ConsistencyResult> {
        workload::run(env, self).await
    }

    /// The verdict as the JSON spells it (`pass`, `fail`, `inconclusive`), not as it is shown.
    fn status(r: &ConsistencyResult) -> String {
        serde_json::to_value(r.verdict.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "fail".into())
    }

    fn headline(r: &ConsistencyResult) -> Option<String> {
        Some(format!(": {}", r.verdict.status))
    }

    fn exit(&self, r: &ConsistencyResult) -> u8 {
        match r.verdict.status {
            VerdictStatus::Pass => 0,
            VerdictStatus::Fail => EXIT_FAIL,
            VerdictStatus::Inconclusive => EXIT_INCONCLUSIVE,
        }
    }

    fn overlay(r: &ConsistencyResult) -> Option<Overlay> {
        Some(Overlay {
            spectrum: r.checkout_latency.spectrum.clone(),
            throughput: Vec::new(),
        })
    }

    fn rows(c: &ConsistencyResult) -> Rows {
        let v = &c.verdict;
        let mut r: Rows = vec![
            ("verdict".into(), v.status.to_string()),
            (
                "checkouts".into(),
                format!(
                    "{}  (2xx {}, 4xx {}, errors {})",
                    v.checkouts, v.answered_2xx, v.answered_4xx, v.answered_error
                ),
            ),
            (
                "units sold".into(),
                format!(
                    "{}  (2xx checkouts account for {})",
                    v.units_sold, v.units_of_2xx_checkouts
                ),
            ),
            (
                "credit removed".into(),
                format!(
                    "{}  (2xx checkouts account for {})",
                    v.credit_removed, v.credit_of_2xx_checkouts
                ),
            ),
            ("paid orders".into(), v.paid_orders.to_string()),
            ("checkout latency ms".into(), lat(&c.checkout_latency)),
            ("status codes".into(), codes(&c.status_codes)),
            (
                "timing".into(),
                format!(
                    "populate {:.1} s, checkouts {:.2} s, verify {:.1} s ({} reads, {})",
                    c.populate_s,
                    c.checkout_s,
                    c.verify_s,
                    c.verify_reads,
                    if c.state_stable {
                        format!("unchanged for {:.0} s", c.quiet_period_s)
                    } else {
                        "still changing".to_string()
                    }
                ),
            ),
        ];
        for ch in &v.checks {
            r.push((
                format!("  {}", ch.name),
                format!(
                    "{}  expected {}, actual {}{}",
                    if ch.passed { "ok  " } else { "FAIL" },
                    ch.expected,
                    ch.actual,
                    ch.details
                        .first()
                        .map(|d| format!("  e.g. {d}"))
                        .unwrap_or_default()
                ),
            ));
        }
        for w in &v.warnings {
            r.push(("warning".into(), w.clone()));
        }
        r
    }

    fn section(
        md: &mut Md,
        _dir: &Path,
        stem: &str,
        c: &ConsistencyResult,
    ) -> Result<(), ReportError> {
        let v = &c.verdict;
        md.line(format!("## Consistency ({}): **{}**", stem, v.status));
        md.blank();
        md.line(format!(
            "{} checkouts fired at once: {} answered 2xx, {} 4xx, {} errors. Units sold {} (2xx checkouts account for {}), credit removed {} (2xx checkouts account for {}), {} orders paid. Populate {:.1} s, checkouts {:.2} s, verification {:.1} s ({} full reads of the state, {}).",
            v.checkouts, v.answered_2xx, v.answered_4xx, v.answered_error, v.units_sold,
            v.units_of_2xx_checkouts, v.credit_removed, v.credit_of_2xx_checkouts, v.paid_orders,
            c.populate_s, c.checkout_s, c.verify_s, c.verify_reads,
            if c.state_stable {
                format!("unchanged for {:.0} s before judging", c.quiet_period_s)
            } else {
                "still changing at the end".to_string()
            }
        ));
        md.blank();
        md.line("| check | result | expected | actual | examples |\n|---|---|---|---|---|");
        for ch in &v.checks {
            md.line(format!(
                "| {} — {} | {} | {} | {} | {} |",
                ch.name,
                ch.description,
                if ch.passed { "ok" } else { "**FAIL**" },
                ch.expected,
                ch.actual,
                ch.details.join("; ")
            ));
        }
        md.blank();
        for w in &v.warnings {
            md.line(format!("- warning: {w}"));
        }
        md.blank();
        md.line(LAT_HEAD);
        md.line(lat_row("checkout", &c.checkout_latency));
        md.blank();
        Ok(())
    }
}
