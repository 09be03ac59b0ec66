//! The pieces every report section is written with: the Markdown buffer, the latency table,
//! the plots of one load run, and the report's error.

use crate::load::LoadSummary;
use crate::plot::{self, PlotError, Window};
use crate::stats::{whole_seconds, LatencySummary};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("{path}: not a bench result ({msg})")]
    NotAResult { path: PathBuf, msg: String },
}

pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The measured part of a load run's time axis.
pub fn window(l: &LoadSummary) -> Window {
    Window {
        warmup_s: l.warmup_s,
        end_s: l.warmup_s + l.window_s,
    }
}

/// Completions per whole second of a load run's window, at the middle of each second.
pub fn per_second(load: &LoadSummary) -> Vec<(f64, f64)> {
    whole_seconds(&load.timeline, window(load).end_s)
        .iter()
        .map(|p| (p.t_s as f64 + 0.5, p.completed as f64))
        .collect()
}

/// File name (as the report links it) of the SVG of a rendered pair.
pub fn svg_name(files: &[PathBuf; 2]) -> String {
    files[0]
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Throughput and latency over time, and the latency spectrum, of one load run.
pub fn load_plots(
    dir: &Path,
    stem: &str,
    title: &str,
    l: &LoadSummary,
) -> Result<Vec<String>, ReportError> {
    let mut files = Vec::new();
    if !l.timeline.is_empty() {
        let w = window(l);
        files.push(svg_name(&plot::throughput(
            &dir.join(format!("{stem}-throughput.svg")),
            &format!("{title}: throughput per second"),
            &l.timeline,
            w,
        )?));
        files.push(svg_name(&plot::latency_over_time(
            &dir.join(format!("{stem}-latency.svg")),
            &format!("{title}: latency percentiles per second"),
            &l.timeline,
            w,
        )?));
    }
    if !l.latency.spectrum.is_empty() {
        files.push(svg_name(&plot::spectrum(
            &dir.join(format!("{stem}-spectrum.svg")),
            &format!("{title}: latency distribution (HDR percentile spectrum)"),
            &[(title.to_string(), l.latency.spectrum.clone())],
        )?));
    }
    Ok(files)
}

pub fn title(kind: &str, stem: &str) -> String {
    if stem == kind {
        kind.to_string()
    } else {
        format!("{kind} {stem}")
    }
}

pub fn lat_row(name: &str, l: &LatencySummary) -> String {
    format!(
        "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms, l.count
    )
}

pub const LAT_HEAD: &str = "| latency (ms) | p50 | p90 | p99 | p99.9 | max | mean | n |\n|---|---:|---:|---:|---:|---:|---:|---:|";

pub struct Md(pub String);

impl Md {
    pub fn line(&mut self, s: impl AsRef<str>) {
        self.0.push_str(s.as_ref());
        self.0.push('\n');
    }
    pub fn blank(&mut self) {
        self.0.push('\n');
    }
    /// Embeds each SVG, with a link to the PNG beside it.
    pub fn images(&mut self, files: &[String]) {
        for f in files {
            let png = Path::new(f).with_extension("png");
            self.line(format!("![{f}]({f})"));
            self.line(format!("([PNG]({}))", png.display()));
            self.blank();
        }
    }
}

pub fn load_section(md: &mut Md, l: &LoadSummary) {
    md.line("| measure | value |\n|---|---|");
    md.line(format!("| mode | {} |", l.mode.describe()));
    md.line(format!(
        "| window | {:.1} s (warm-up {:.1} s excluded) |",
        l.window_s, l.warmup_s
    ));
    md.line(format!(
        "| requests | {} (2xx {}, 4xx {}, errors {}) |",
        l.completed, l.counts.ok, l.counts.business, l.counts.error
    ));
    md.line(format!(
        "| dropped / unfinished / answered after the window | {} / {} / {} |",
        l.dropped, l.unfinished, l.completed_after_window
    ));
    md.line(format!(
        "| throughput | **{:.1} req/s** (2xx {:.1}/s) |",
        l.throughput_rps, l.goodput_rps
    ));
    if let Some(o) = l.offered_rps {
        md.line(format!("| offered | {o:.1} req/s |"));
    }
    let codes: Vec<String> = l
        .status_codes
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    md.line(format!("| answers by status | {} |", codes.join(", ")));
    md.blank();
    md.line(LAT_HEAD);
    md.line(lat_row("all", &l.latency));
    if let Some(c) = &l.latency_co_corrected {
        md.line(lat_row("all, CO-corrected", c));
    }
    if let Some(s) = &l.send_lag {
        md.line(lat_row("send lag (open loop)", s));
    }
    if l.per_op.len() > 1 {
        for (op, s) in &l.per_op {
            md.line(lat_row(
                &format!("{op} ({:.1}/s)", s.throughput_rps),
                &s.latency,
            ));
        }
    }
    md.blank();
}

pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.3}", a / b)
    } else {
        "-".into()
    }
}
