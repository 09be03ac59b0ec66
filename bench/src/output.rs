//! The JSON result envelope and the compact stdout tables.

use crate::stats::LatencySummary;
use crate::workload::async_::AsyncResult;
use crate::workload::ceiling::CeilingResult;
use crate::workload::consistency::ConsistencyResult;
use crate::workload::soak::{FlatCheck, SoakInterval, SoakResult};
use crate::workload::stress::StressResult;
use crate::workload::sweep::SweepResult;
use crate::workload::LoadSummary;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SCHEMA: &str = "bench-result/v1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub cpus: usize,
    pub os: String,
    pub arch: String,
}

impl Host {
    pub fn current() -> Self {
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
        }
    }
}

/// Every JSON result file has this shape; `result` depends on `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub schema: String,
    /// consistency | stress | async | sweep | ceiling | soak
    pub kind: String,
    /// consistency: pass | fail | inconclusive; load runs (soak included; its flatness verdict is
    /// in `result.verdict`): completed | completed_with_errors.
    pub status: String,
    pub label: Option<String>,
    pub base_url: String,
    pub started_at: String,
    pub finished_at: String,
    pub harness_version: String,
    pub host: Host,
    pub params: serde_json::Value,
    pub result: serde_json::Value,
}

pub fn load_status(l: &LoadSummary) -> &'static str {
    if l.counts.error > 0 || l.unfinished > 0 {
        "completed_with_errors"
    } else {
        "completed"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialise the result: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn write_json(dir: &Path, stem: &str, env: &Envelope) -> Result<PathBuf, OutputError> {
    std::fs::create_dir_all(dir).map_err(|e| OutputError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let path = dir.join(format!("{stem}.json"));
    let text = serde_json::to_string_pretty(env)?;
    std::fs::write(&path, text + "\n").map_err(|e| OutputError::Io {
        path: path.clone(),
        source: e,
    })?;
    Ok(path)
}

pub type Rows = Vec<(String, String)>;

pub fn print_table(title: &str, rows: &Rows) {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("{title}");
    for (k, v) in rows {
        println!("  {k:<w$}  {v}");
    }
}

fn lat(l: &LatencySummary) -> String {
    format!(
        "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (n={})",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
    )
}

fn codes(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

pub fn load_rows(l: &LoadSummary) -> Rows {
    let mut r: Rows = vec![
        ("mode".into(), l.mode.describe()),
        (
            "window".into(),
            format!("{:.1} s (warm-up {:.1} s)", l.window_s, l.warmup_s),
        ),
        (
            "requests".into(),
            format!(
                "{}  (2xx {}, 4xx {}, errors {}, dropped {}, unfinished {}, answered after the window {})",
                l.completed,
                l.counts.ok,
                l.counts.business,
                l.counts.error,
                l.dropped,
                l.unfinished,
                l.completed_after_window
            ),
        ),
        (
            "throughput".into(),
            format!(
                "{:.1} req/s  (2xx {:.1}/s{})",
                l.throughput_rps,
                l.goodput_rps,
                l.offered_rps
                    .map(|o| format!(", offered {o:.1}/s"))
                    .unwrap_or_default()
            ),
        ),
        ("latency ms".into(), lat(&l.latency)),
    ];
    if let Some(c) = &l.latency_co_corrected {
        r.push(("latency ms (CO-corrected)".into(), lat(c)));
    }
    if let Some(s) = &l.send_lag {
        r.push((
            "send lag ms".into(),
            format!(
                "p50 {:.2}  p99 {:.2}  max {:.2}",
                s.p50_ms, s.p99_ms, s.max_ms
            ),
        ));
    }
    r.push(("status codes".into(), codes(&l.status_codes)));
    if l.per_op.len() > 1 {
        for (op, s) in &l.per_op {
            r.push((
                format!("  {op}"),
                format!(
                    "{:.1}/s  p50 {:.2}  p99 {:.2} ms  (4xx {}, err {})",
                    s.throughput_rps,
                    s.latency.p50_ms,
                    s.latency.p99_ms,
                    s.counts.business,
                    s.counts.error
                ),
            ));
        }
    }
    r
}

pub fn consistency_rows(c: &ConsistencyResult) -> Rows {
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

pub fn stress_rows(s: &StressResult) -> Rows {
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

pub fn async_rows(a: &AsyncResult) -> Rows {
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

pub fn sweep_rows(s: &SweepResult) -> Rows {
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

pub fn ceiling_rows(c: &CeilingResult) -> Rows {
    let mut r: Rows = vec![("endpoint".into(), format!("GET {}", c.path))];
    r.extend(load_rows(&c.load));
    r
}

/// How the soak's rate was chosen.
pub fn soak_rate(s: &SoakResult) -> String {
    match (&s.probe, s.load_fraction) {
        (Some(p), Some(f)) => format!(
            "{:.1} checkouts/s = {:.0}% of the {:.1}/s a {}-client closed loop sustained in {:.0} s",
            s.rate,
            f * 100.0,
            p.throughput_rps,
            p.clients,
            p.duration_s
        ),
        _ => format!("{:.1} checkouts/s (given)", s.rate),
    }
}

/// One interval on one line: throughput, latency, errors, RSS per process, log growth.
pub fn soak_interval(i: &SoakInterval) -> String {
    let rss: Vec<String> = i
        .rss_mib
        .iter()
        .map(|(n, m)| format!("{n} {m:.1}"))
        .collect();
    format!(
        "{:.1}/s  p50 {:.1}  p99 {:.1} ms  errors {}  dropped {}  RSS MiB: {}  log {}{}",
        i.throughput_rps,
        i.p50_ms,
        i.p99_ms,
        i.error,
        i.dropped,
        if rss.is_empty() {
            "-".to_string()
        } else {
            rss.join(", ")
        },
        i.log_bytes
            .map(|b| format!("{b} B"))
            .unwrap_or_else(|| "-".into()),
        i.log_bytes_per_request
            .map(|b| format!(" ({b:.1} B/request)"))
            .unwrap_or_default()
    )
}

pub fn flat_check(c: &FlatCheck) -> String {
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    format!(
        "{}  first {}, last {}  ({})",
        match c.flat {
            Some(true) => "flat",
            Some(false) => "NOT FLAT",
            None => "not measured",
        },
        num(c.first),
        num(c.last),
        c.rule
    )
}

pub fn soak_rows(s: &SoakResult) -> Rows {
    let mut r: Rows = vec![
        ("rate".into(), soak_rate(s)),
        (
            "processes".into(),
            if s.processes.is_empty() {
                "none watched".into()
            } else {
                s.processes.join(", ")
            },
        ),
    ];
    if s.orders_reused {
        r.push((
            "warning".into(),
            format!(
                "{} orders were too few: later checkouts found paid orders",
                s.init.orders
            ),
        ));
    }
    for i in &s.intervals {
        r.push((
            format!(
                "{}-{} s{}",
                i.start_s,
                i.end_s,
                if i.full { "" } else { " (partial)" }
            ),
            soak_interval(i),
        ));
    }
    r.push(("verdict".into(), s.verdict.status.clone()));
    for c in &s.verdict.checks {
        r.push((format!("  {}", c.metric), flat_check(c)));
    }
    for n in &s.verdict.notes {
        r.push(("note".into(), n.clone()));
    }
    r.extend(load_rows(&s.load));
    r
}
