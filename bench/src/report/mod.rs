//! Markdown report and plots (SVG and PNG, see `plot`) from the JSON results of a directory,
//! with other runs overlaid on request (`bench report DIR --compare OTHER`). Each kind writes its
//! own sections (`kinds`); this module puts the report together.

pub mod files;
pub mod md;
mod overlay;
pub mod pgbench;
mod versus;

use crate::kind::Sources;
use crate::kinds;
use files::{load_compared, load_dir};
use md::{io, Md, ReportError};
use overlay::{overlay_plots, overlay_run, OverlayRun};
use pgbench::Pgbenches;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// Directory with the JSON results (default: --out-dir, or the newest bench/results/*).
    pub dir: Option<PathBuf>,
    /// Other runs to overlay on this directory's (before vs after, ours vs a reference): result
    /// directories or JSON files; repeatable.
    #[arg(long, value_name = "DIR_OR_JSON")]
    pub compare: Vec<PathBuf>,
}

/// Writes `report.md` and the plots into `dir`, overlaying the runs of `compare` (result
/// directories or files) on those of `dir`; returns the report's path.
pub fn write_report(dir: &Path, compare: &[PathBuf]) -> Result<PathBuf, ReportError> {
    let (loaded, skipped) = load_dir(dir)?;
    let compared = load_compared(compare)?;
    let pg = Pgbenches::read(dir);
    let mut md = Md(String::new());
    md.line("# Benchmark report");
    md.blank();
    md.line(format!(
        "Generated {} by bench {} from `{}`.",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        env!("CARGO_PKG_VERSION"),
        dir.display()
    ));
    md.blank();
    let mut targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in &loaded {
        let key = match &l.env.label {
            Some(lb) => format!("{} ({lb})", l.env.base_url),
            None => l.env.base_url.clone(),
        };
        targets.entry(key).or_default().push(l.stem.clone());
    }
    for (t, stems) in &targets {
        md.line(format!("- target {t}: {}", stems.join(", ")));
    }
    if let Some(h) = loaded.first().map(|l| &l.env.host) {
        md.line(format!(
            "- harness host: {} CPUs, {}/{} (harness and system share the machine when the target is local)",
            h.cpus, h.os, h.arch
        ));
    }
    md.blank();

    let overlays: Vec<OverlayRun> = loaded
        .iter()
        .filter_map(|l| overlay_run(None, l))
        .chain(compared.iter().filter_map(|(o, l)| overlay_run(Some(o), l)))
        .collect();
    let files = overlay_plots(dir, &overlays)?;
    if !files.is_empty() {
        md.line("## Runs side by side");
        md.blank();
        let names: Vec<&str> = overlays.iter().map(|r| r.name.as_str()).collect();
        md.line(format!(
            "Runs: {}. Latency: each run's main distribution (stress and ceiling: every request; async: time to final status; consistency: the checkouts).",
            names.join(", ")
        ));
        md.blank();
        md.images(&files);
    }

    versus::section(&mut md, &loaded, &pg);
    let sources = Sources {
        dir,
        loaded: &loaded,
        pg: &pg,
    };
    let mut used = 0;
    for kind in &kinds::ALL {
        used += kind.report(&mut md, &sources)?;
    }

    if used < loaded.len() || !skipped.is_empty() {
        md.line("## Files not included");
        md.blank();
        for l in &loaded {
            if !kinds::ALL.iter().any(|k| k.kind() == l.env.kind) {
                md.line(format!("- {}.json: unknown kind {:?}", l.stem, l.env.kind));
            }
        }
        for s in &skipped {
            md.line(format!("- {s}"));
        }
        md.blank();
    }

    md.line("## Method");
    md.blank();
    md.line("- Answers: 2xx = it happened, 4xx = it did not (business failure), anything else (5xx, a 202 to a synchronous call, timeouts, connection errors) = error, outcome unknown.");
    md.line("- Latency is measured from each request's intended start. Closed loop: the send time (service time; subject to coordinated omission unless `--co-expected-interval` is given, which adds HDR-corrected figures). Open loop: the arrival schedule, so waiting behind a stall is charged to every request that should have been sent meanwhile; arrivals beyond `--max-in-flight` are counted as dropped, never silently skipped.");
    md.line("- Throughput counts completions inside the measurement window (after the warm-up, until the end of the duration); requests answered after the window appear in the latency figures and as \"answered after the window\", not in throughput.");
    md.line("- Percentiles come from HDR histograms (3 significant digits, 1 µs to 1 h); per-second timelines use 2 digits.");
    md.line("- Consistency: the state is read back through the API until it stays unchanged for the quiet period; every figure that depends on answers is checked against the range the errored checkouts allow, so errors give INCONCLUSIVE, never a false PASS, while a value outside that range is a FAIL.");
    md.blank();

    let out = dir.join("report.md");
    std::fs::write(&out, md.0).map_err(io(&out))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::ceiling::CeilingResult;
    use crate::load::fixture::{envelope, recorded_load};
    use crate::load::LoadMode;
    use crate::output::{write_json, Envelope};
    use crate::report::md::window;
    use crate::report::pgbench::parse_pgbench;
    use crate::stats::whole_seconds;

    /// A ceiling result of 11.5 s (warm-up 1 s) at `per_s` answers a second of `ms` each.
    fn ceiling_result(label: &str, per_s: u64, ms: u64) -> Envelope {
        let load = recorded_load(LoadMode::Closed { clients: 4 }, "health", per_s, |_| ms);
        envelope(
            "ceiling",
            label,
            CeilingResult {
                path: "/health".into(),
                load,
            },
        )
    }

    #[test]
    fn a_compared_run_is_overlaid_and_every_plot_has_a_png() {
        let base = std::env::temp_dir().join(format!("bench-report-{}", std::process::id()));
        let (after, before) = (base.join("after"), base.join("before"));
        write_json(&after, "ceiling", &ceiling_result("after", 200, 5)).expect("write");
        write_json(&before, "ceiling", &ceiling_result("before", 100, 20)).expect("write");

        let report = write_report(&after, std::slice::from_ref(&before)).expect("report");
        let md = std::fs::read_to_string(&report).expect("report.md");
        assert!(md.contains("## Runs side by side"), "{md}");
        assert!(md.contains("before/ceiling [before]"), "{md}");
        for stem in [
            "overlay-spectrum",
            "overlay-throughput",
            "ceiling-throughput",
            "ceiling-latency",
            "ceiling-spectrum",
        ] {
            for ext in ["svg", "png"] {
                let f = after.join(format!("{stem}.{ext}"));
                assert!(f.is_file(), "{} missing", f.display());
            }
            assert!(
                md.contains(&format!("![{stem}.svg]({stem}.svg)")),
                "{stem}: {md}"
            );
            assert!(md.contains(&format!("[PNG]({stem}.png)")), "{stem}: {md}");
        }
        // The throughput plot ends at the last whole second of the window (1 s + 10.5 s).
        let env = ceiling_result("x", 200, 5);
        let c: CeilingResult = serde_json::from_value(env.result).expect("ceiling");
        let w = window(&c.load);
        assert_eq!(w.end_s, 11.5);
        let whole = whole_seconds(&c.load.timeline, w.end_s);
        assert_eq!(whole.last().map(|p| p.t_s), Some(10));
        assert!(
            whole.iter().skip(1).all(|p| p.completed == 200),
            "{whole:?}"
        );

        // Without another run there is nothing to overlay.
        let alone = write_report(&before, &[]).expect("report");
        let md = std::fs::read_to_string(alone).expect("report.md");
        assert!(!md.contains("## Runs side by side"));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn pgbench_summary() {
        let text = "pgbench (15.8 (Debian 15.8-0+deb12u1))\ntransaction type: /tmp/u.sql\nscaling factor: 1\nquery mode: simple\nnumber of clients: 8\nnumber of threads: 2\nmaximum number of tries: 1\nduration: 20 s\nnumber of transactions actually processed: 123456\nnumber of failed transactions: 0 (0.000%)\nlatency average = 1.296 ms\ninitial connection time = 10.517 ms\ntps = 6172.837195 (without initial connection time)\n";
        let p = parse_pgbench(text).expect("parse");
        assert!((p.tps - 6172.837195).abs() < 1e-6);
        assert_eq!(p.latency_avg_ms, Some(1.296));
        assert_eq!(p.clients, Some(8));
        assert_eq!(p.duration_s, Some(20));
        assert_eq!(p.transactions, Some(123456));
        assert_eq!(p.failed, Some(0));
        assert_eq!(p.query_mode.as_deref(), Some("simple"));
        let old = "tps = 100.0 (including connections establishing)\ntps = 110.5 (excluding connections establishing)\n";
        assert_eq!(parse_pgbench(old).map(|p| p.tps), Some(110.5));
        assert_eq!(parse_pgbench("nothing"), None);
    }
}
