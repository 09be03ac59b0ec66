//! The JSON result envelope and the compact stdout tables.

use crate::load::LoadSummary;
use crate::stats::LatencySummary;
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

pub fn lat(l: &LatencySummary) -> String {
    format!(
        "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (n={})",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
    )
}

pub fn codes(m: &BTreeMap<String, u64>) -> String {
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
