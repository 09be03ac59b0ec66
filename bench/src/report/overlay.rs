//! Every run of the directory and the compared ones on shared axes.

use super::files::Loaded;
use super::md::{svg_name, ReportError};
use crate::kinds;
use crate::plot::{self, series};
use crate::stats::SpectrumPoint;
use std::path::Path;

/// One run as the overlays show it.
pub struct OverlayRun {
    pub name: String,
    spectrum: Vec<SpectrumPoint>,
    /// Completions per whole second of the window, at the middle of each second.
    throughput: Vec<(f64, f64)>,
}

/// The overlay view of a result: its main latency distribution and, for load runs, its
/// throughput over time (as its kind says). `origin` names the directory of a compared run.
pub fn overlay_run(origin: Option<&str>, l: &Loaded) -> Option<OverlayRun> {
    let view = kinds::ALL
        .iter()
        .find(|k| k.kind() == l.env.kind)?
        .overlay(l)?;
    let mut name = match origin {
        Some(o) => format!("{o}/{}", l.stem),
        None => l.stem.clone(),
    };
    if let Some(label) = &l.env.label {
        name.push_str(&format!(" [{label}]"));
    }
    Some(OverlayRun {
        name,
        spectrum: view.spectrum,
        throughput: view.throughput,
    })
}

/// Every run of the directory and the compared ones on shared axes: their latency spectra, and
/// the throughput over time of the load runs (log scale: a ceiling and a checkout run differ
/// by orders of magnitude).
pub fn overlay_plots(dir: &Path, runs: &[OverlayRun]) -> Result<Vec<String>, ReportError> {
    let mut files = Vec::new();
    let spectra: Vec<(String, Vec<SpectrumPoint>)> = runs
        .iter()
        .filter(|r| !r.spectrum.is_empty())
        .map(|r| (r.name.clone(), r.spectrum.clone()))
        .collect();
    if spectra.len() >= 2 {
        files.push(svg_name(&plot::spectrum(
            &dir.join("overlay-spectrum.svg"),
            "latency distributions side by side (HDR percentile spectra)",
            &spectra,
        )?));
    }
    let rates: Vec<plot::Series> = runs
        .iter()
        .filter(|r| !r.throughput.is_empty())
        .map(|r| series(r.name.clone(), r.throughput.clone()))
        .collect();
    if rates.len() >= 2 {
        files.push(svg_name(&plot::lines(
            &dir.join("overlay-throughput.svg"),
            "throughput side by side (whole seconds of each window)",
            "time since the start of the run (s)",
            "completions per second (log scale)",
            &rates,
            false,
            true,
        )?));
    }
    Ok(files)
}
