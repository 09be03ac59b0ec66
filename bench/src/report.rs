//! Markdown report and plots (SVG and PNG, see `plot`) from the JSON results of a directory,
//! with other runs overlaid on request (`bench report DIR --compare OTHER`).

use crate::output::{Envelope, SCHEMA};
use crate::plot::{self, series, PlotError, Window};
use crate::stats::{whole_seconds, LatencySummary, SpectrumPoint};
use crate::workload::async_::AsyncResult;
use crate::workload::ceiling::CeilingResult;
use crate::workload::consistency::ConsistencyResult;
use crate::workload::soak::SoakResult;
use crate::workload::stress::StressResult;
use crate::workload::sweep::SweepResult;
use crate::workload::{LoadMode, LoadSummary};
use std::collections::BTreeMap;
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A result file of the directory.
pub struct Loaded {
    pub stem: String,
    pub env: Envelope,
}

/// Figures of a pgbench run (parsed from its standard output).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pgbench {
    pub tps: f64,
    pub latency_avg_ms: Option<f64>,
    pub clients: Option<u64>,
    pub duration_s: Option<u64>,
    pub transactions: Option<u64>,
    pub failed: Option<u64>,
}

/// Parses pgbench's summary ("tps = 6172.83 (without initial connection time)", …).
pub fn parse_pgbench(text: &str) -> Option<Pgbench> {
    let mut p = Pgbench::default();
    let mut tps = None;
    let num = |s: &str| -> Option<f64> { s.split_whitespace().next()?.parse().ok() };
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("tps = ") {
            // pgbench prints one tps line (older versions two: "including"/"excluding")
            if tps.is_none() || line.contains("without") || line.contains("excluding") {
                tps = num(v);
            }
        } else if let Some(v) = line.strip_prefix("latency average = ") {
            p.latency_avg_ms = num(v);
        } else if let Some(v) = line.strip_prefix("number of clients: ") {
            p.clients = num(v).map(|x| x as u64);
        } else if let Some(v) = line.strip_prefix("duration: ") {
            p.duration_s = num(v).map(|x| x as u64);
        } else if let Some(v) = line.strip_prefix("number of transactions actually processed: ") {
            p.transactions = num(v.split('/').next().unwrap_or(v)).map(|x| x as u64);
        } else if let Some(v) = line.strip_prefix("number of failed transactions: ") {
            p.failed = num(v).map(|x| x as u64);
        }
    }
    p.tps = tps?;
    Some(p)
}

/// Reads every `*.json` result envelope in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<(Vec<Loaded>, Vec<String>), ReportError> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        match serde_json::from_str::<Envelope>(&text) {
            Ok(env) if env.schema == SCHEMA => out.push(Loaded { stem, env }),
            Ok(env) => skipped.push(format!("{stem}.json: schema {:?}", env.schema)),
            Err(e) => skipped.push(format!("{stem}.json: {e}")),
        }
    }
    Ok((out, skipped))
}

/// The measured part of a load run's time axis.
fn window(l: &LoadSummary) -> Window {
    Window {
        warmup_s: l.warmup_s,
        end_s: l.warmup_s + l.window_s,
    }
}

/// File name (as the report links it) of the SVG of a rendered pair.
fn svg_name(files: &[PathBuf; 2]) -> String {
    files[0]
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Throughput and latency over time, and the latency spectrum, of one load run.
fn load_plots(
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

fn title(kind: &str, stem: &str) -> String {
    if stem == kind {
        kind.to_string()
    } else {
        format!("{kind} {stem}")
    }
}

fn lat_row(name: &str, l: &LatencySummary) -> String {
    format!(
        "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms, l.count
    )
}

const LAT_HEAD: &str = "| latency (ms) | p50 | p90 | p99 | p99.9 | max | mean | n |\n|---|---:|---:|---:|---:|---:|---:|---:|";

struct Md(String);

impl Md {
    fn line(&mut self, s: impl AsRef<str>) {
        self.0.push_str(s.as_ref());
        self.0.push('\n');
    }
    fn blank(&mut self) {
        self.0.push('\n');
    }
    /// Embeds each SVG, with a link to the PNG beside it.
    fn images(&mut self, files: &[String]) {
        for f in files {
            let png = Path::new(f).with_extension("png");
            self.line(format!("![{f}]({f})"));
            self.line(format!("([PNG]({}))", png.display()));
            self.blank();
        }
    }
}

fn load_section(md: &mut Md, l: &LoadSummary) {
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

fn soak_section(md: &mut Md, dir: &Path, stem: &str, s: &SoakResult) -> Result<(), ReportError> {
    md.line(format!(
        "## Soak ({stem}): **{}**",
        s.verdict.status.replace('_', " ")
    ));
    md.blank();
    md.line(format!(
        "Open loop at {}, for {:.0} s, reported every {} s; {} orders{}.",
        crate::output::soak_rate(s),
        s.load.duration_s,
        s.interval_s,
        s.init.orders,
        if s.orders_reused {
            " (too few: later checkouts found paid orders)"
        } else {
            ", each checked out once"
        }
    ));
    md.line(format!(
        "RSS of {} (`/proc/<pid>/status` VmRSS, MiB at the end of each interval); log growth of `{}/*.log`.",
        if s.processes.is_empty() {
            "no process".to_string()
        } else {
            s.processes.join(", ")
        },
        s.log_dir
    ));
    md.blank();
    let mut head =
        "| interval (s) | checkouts/s | p50 (ms) | p99 (ms) | errors | dropped |".to_string();
    let mut rule = "|---|---:|---:|---:|---:|---:|".to_string();
    for p in &s.processes {
        head.push_str(&format!(" RSS {p} |"));
        rule.push_str("---:|");
    }
    head.push_str(" log bytes | log bytes/checkout |");
    rule.push_str("---:|---:|");
    md.line(head);
    md.line(rule);
    for i in &s.intervals {
        let mut row = format!(
            "| {}-{}{} | {:.1} | {:.1} | {:.1} | {} | {} |",
            i.start_s,
            i.end_s,
            if i.full { "" } else { " (partial)" },
            i.throughput_rps,
            i.p50_ms,
            i.p99_ms,
            i.error,
            i.dropped
        );
        for p in &s.processes {
            row.push_str(&match i.rss_mib.get(p) {
                Some(m) => format!(" {m:.1} |"),
                None => " - |".into(),
            });
        }
        row.push_str(&format!(
            " {} | {} |",
            i.log_bytes.map_or("-".into(), |b| b.to_string()),
            i.log_bytes_per_request
                .map_or("-".into(), |b| format!("{b:.1}"))
        ));
        md.line(row);
    }
    md.blank();
    md.line("Flat means: the last full interval against the first.");
    md.blank();
    md.line("| figure | first | last | rule | result |\n|---|---:|---:|---|---|");
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for c in &s.verdict.checks {
        md.line(format!(
            "| {} | {} | {} | {} | {} |",
            c.metric,
            num(c.first),
            num(c.last),
            c.rule,
            match c.flat {
                Some(true) => "flat",
                Some(false) => "**not flat**",
                None => "not measured",
            }
        ));
    }
    md.blank();
    for n in &s.verdict.notes {
        md.line(format!("- {n}"));
    }
    if !s.verdict.notes.is_empty() {
        md.blank();
    }
    load_section(md, &s.load);
    let mid = |i: &crate::workload::soak::SoakInterval| (i.start_s + i.end_s) as f64 / 2.0;
    let mut files = vec![svg_name(&plot::lines(
        &dir.join(format!("{stem}-intervals.svg")),
        &format!("{}: throughput and p99 per interval", title("soak", stem)),
        "time (s)",
        "checkouts/s | ms",
        &[
            series(
                "checkouts/s",
                s.intervals
                    .iter()
                    .map(|i| (mid(i), i.throughput_rps))
                    .collect(),
            ),
            series(
                "p99 ms",
                s.intervals.iter().map(|i| (mid(i), i.p99_ms)).collect(),
            ),
        ],
        true,
        false,
    )?)];
    if !s.processes.is_empty() {
        let rss: Vec<plot::Series> = s
            .processes
            .iter()
            .map(|p| {
                series(
                    p,
                    s.intervals
                        .iter()
                        .filter_map(|i| i.rss_mib.get(p).map(|m| (i.end_s as f64, *m)))
                        .collect(),
                )
            })
            .collect();
        files.push(svg_name(&plot::lines(
            &dir.join(format!("{stem}-rss.svg")),
            &format!("{}: RSS at the end of each interval", title("soak", stem)),
            "time (s)",
            "MiB",
            &rss,
            true,
            false,
        )?));
    }
    files.extend(load_plots(dir, stem, &title("soak", stem), &s.load)?);
    md.images(&files);
    Ok(())
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.3}", a / b)
    } else {
        "-".into()
    }
}

/// Reads one result file.
fn load_file(path: &Path) -> Result<Loaded, ReportError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let not = |msg: String| ReportError::NotAResult {
        path: path.to_path_buf(),
        msg,
    };
    let env: Envelope = serde_json::from_str(&text).map_err(|e| not(e.to_string()))?;
    if env.schema != SCHEMA {
        return Err(not(format!("schema {:?}", env.schema)));
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Loaded { stem, env })
}

/// The runs named by `--compare` (result directories or files), each with the name of the
/// directory it came from.
fn load_compared(paths: &[PathBuf]) -> Result<Vec<(String, Loaded)>, ReportError> {
    let dir_name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let (loaded, _) = load_dir(p)?;
            out.extend(loaded.into_iter().map(|l| (dir_name(p), l)));
        } else {
            let parent = p.parent().map(dir_name).unwrap_or_default();
            out.push((parent, load_file(p)?));
        }
    }
    Ok(out)
}

/// One run as the overlays show it.
struct OverlayRun {
    name: String,
    spectrum: Vec<SpectrumPoint>,
    /// Completions per whole second of the window, at the middle of each second.
    throughput: Vec<(f64, f64)>,
}

/// The overlay view of a result: its main latency distribution and, for load runs, its
/// throughput over time. `origin` names the directory of a compared run.
fn overlay_run(origin: Option<&str>, l: &Loaded) -> Option<OverlayRun> {
    let rate = |load: &LoadSummary| -> Vec<(f64, f64)> {
        whole_seconds(&load.timeline, window(load).end_s)
            .iter()
            .map(|p| (p.t_s as f64 + 0.5, p.completed as f64))
            .collect()
    };
    let result = l.env.result.clone();
    let (spectrum, throughput) = match l.env.kind.as_str() {
        "stress" => {
            let r: StressResult = serde_json::from_value(result).ok()?;
            (r.load.latency.spectrum.clone(), rate(&r.load))
        }
        "ceiling" => {
            let r: CeilingResult = serde_json::from_value(result).ok()?;
            (r.load.latency.spectrum.clone(), rate(&r.load))
        }
        "async" => {
            let r: AsyncResult = serde_json::from_value(result).ok()?;
            (r.finals.time_to_final.spectrum, rate(&r.submit))
        }
        "consistency" => {
            let r: ConsistencyResult = serde_json::from_value(result).ok()?;
            (r.checkout_latency.spectrum, Vec::new())
        }
        _ => return None,
    };
    let mut name = match origin {
        Some(o) => format!("{o}/{}", l.stem),
        None => l.stem.clone(),
    };
    if let Some(label) = &l.env.label {
        name.push_str(&format!(" [{label}]"));
    }
    Some(OverlayRun {
        name,
        spectrum,
        throughput,
    })
}

/// Every run of the directory and the compared ones on shared axes: their latency spectra, and
/// the throughput over time of the load runs (log scale: a ceiling and a checkout run differ
/// by orders of magnitude).
fn overlay_plots(dir: &Path, runs: &[OverlayRun]) -> Result<Vec<String>, ReportError> {
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

/// Writes `report.md` and the plots into `dir`, overlaying the runs of `compare` (result
/// directories or files) on those of `dir`; returns the report's path.
pub fn write_report(dir: &Path, compare: &[PathBuf]) -> Result<PathBuf, ReportError> {
    let (loaded, skipped) = load_dir(dir)?;
    let compared = load_compared(compare)?;
    let pg_path = dir.join("pgbench.txt");
    let pgbench = std::fs::read_to_string(&pg_path)
        .ok()
        .and_then(|t| parse_pgbench(&t));
    // One checkout-shaped transaction per checkout: the naive design's
    // ceiling for the stress workload (scripts/bench.sh).
    let pg_checkout = std::fs::read_to_string(dir.join("pgbench-checkout.txt"))
        .ok()
        .and_then(|t| parse_pgbench(&t));
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

    let typed = |l: &Loaded| l.env.result.clone();
    let consistency: Vec<(&Loaded, ConsistencyResult)> = loaded
        .iter()
        .filter(|l| l.env.kind == "consistency")
        .filter_map(|l| serde_json::from_value(typed(l)).ok().map(|r| (l, r)))
        .collect();
    let stress: Vec<(&Loaded, StressResult)> = loaded
        .iter()
        .filter(|l| l.env.kind == "stress")
        .filter_map(|l| serde_json::from_value(typed(l)).ok().map(|r| (l, r)))
        .collect();
    let asyncs: Vec<(&Loaded, AsyncResult)> = loaded
        .iter()
        .filter(|l| l.env.kind == "async")
        .filter_map(|l| serde_json::from_value(typed(l)).ok().map(|r| (l, r)))
        .collect();
    let sweeps: Vec<(&Loaded, SweepResult)> = loaded
        .iter()
        .filter(|l| l.env.kind == "sweep")
        .filter_map(|l| serde_json::from_value(typed(l)).ok().map(|r| (l, r)))
        .collect();
    let ceilings: Vec<(&Loaded, CeilingResult)> = loaded
        .iter()
        .filter(|l| l.env.kind == "ceiling")
        .filter_map(|l| serde_json::from_value(typed(l)).ok().map(|r| (l, r)))
        .collect();
    let soaks: Vec<(&Loaded, SoakResult)> = loaded
        .iter()
        .filter(|l| l.env.kind == "soak")
        .filter_map(|l| serde_json::from_value(typed(l)).ok().map(|r| (l, r)))
        .collect();
    let used = consistency.len()
        + stress.len()
        + asyncs.len()
        + sweeps.len()
        + ceilings.len()
        + soaks.len();

    // --- our figures next to the ceilings
    let ceiling = ceilings.first().map(|(l, c)| (*l, c));
    let closed_stress = stress
        .iter()
        .any(|(_, s)| matches!(s.load.mode, LoadMode::Closed { .. }));
    if (closed_stress || !sweeps.is_empty())
        && (ceiling.is_some() || pgbench.is_some() || pg_checkout.is_some())
    {
        md.line("## Our figures next to the ceilings");
        md.blank();
        md.line("Ceilings measured on the same machine in the same run: `pgbench` running one checkout-shaped transaction per checkout (UPDATE a random item's stock, UPDATE a random user's credit, INSERT a ledger row; the naive design, the ceiling for `stress`), `pgbench` running a single-row `UPDATE … SET stock = stock - 1` (one durable hot-row write, the ceiling for `consistency`), and this harness against a trivial endpoint (what the harness and HTTP stack can drive at all). Ratio = our figure / ceiling. Only closed-loop runs are compared (an open loop's throughput is the offered rate).");
        md.blank();
        md.line("| measure | ours | ceiling | ratio |\n|---|---:|---:|---:|");
        for (l, s) in stress
            .iter()
            .filter(|(_, s)| matches!(s.load.mode, LoadMode::Closed { .. }))
        {
            let (tp, p50) = s
                .load
                .per_op
                .get("checkout")
                .map_or((s.load.throughput_rps, s.load.latency.p50_ms), |o| {
                    (o.throughput_rps, o.latency.p50_ms)
                });
            let name = format!("{} ({})", l.stem, s.load.mode.describe());
            if let Some(pg) = &pg_checkout {
                md.line(format!(
                    "| checkout throughput, {name} vs pgbench checkout transaction{} | {tp:.1}/s | {:.1} tps | {} |",
                    pg.clients.map(|c| format!(" ({c} clients)")).unwrap_or_default(),
                    pg.tps,
                    ratio(tp, pg.tps)
                ));
            }
            if let Some(pg) = &pgbench {
                md.line(format!(
                    "| checkout throughput, {name} vs pgbench UPDATE{} | {tp:.1}/s | {:.1} tps | {} |",
                    pg.clients.map(|c| format!(" ({c} clients)")).unwrap_or_default(),
                    pg.tps,
                    ratio(tp, pg.tps)
                ));
            }
            if let Some((cl, c)) = ceiling {
                md.line(format!(
                    "| checkout throughput, {name} vs harness on GET {} ({}) | {tp:.1}/s | {:.1}/s | {} |",
                    c.path,
                    c.load.mode.describe(),
                    c.load.throughput_rps,
                    ratio(tp, c.load.throughput_rps)
                ));
                md.line(format!(
                    "| checkout p50 latency, {name} vs GET {} ({}) | {p50:.2} ms | {:.2} ms | {} |",
                    c.path,
                    cl.stem,
                    c.load.latency.p50_ms,
                    ratio(p50, c.load.latency.p50_ms)
                ));
            }
        }
        for (l, s) in &sweeps {
            if let (Some(pg), true) = (&pgbench, s.saturation.peak_throughput > 0.0) {
                md.line(format!(
                    "| peak throughput, sweep {} vs pgbench UPDATE tps | {:.1}/s | {:.1}/s | {} |",
                    l.stem,
                    s.saturation.peak_throughput,
                    pg.tps,
                    ratio(s.saturation.peak_throughput, pg.tps)
                ));
            }
        }
        md.blank();
    }

    // --- consistency
    for (l, c) in &consistency {
        let v = &c.verdict;
        md.line(format!("## Consistency ({}): **{}**", l.stem, v.status));
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
    }

    // --- stress
    for (l, s) in &stress {
        md.line(format!("## Stress ({})", l.stem));
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
        load_section(&mut md, &s.load);
        let files = load_plots(dir, &l.stem, &title("stress", &l.stem), &s.load)?;
        md.images(&files);
    }

    // --- async
    for (l, a) in &asyncs {
        md.line(format!("## Async ({}, observed by {})", l.stem, a.observe));
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
            &l.stem,
            &format!("{} submissions", title("async", &l.stem)),
            &a.submit,
        )?;
        if !a.finals.timeline.is_empty() {
            let tl = &a.finals.timeline;
            files.push(svg_name(&plot::lines(
                &dir.join(format!("{}-time-to-final.svg", l.stem)),
                &format!(
                    "async {}: time to final status (by second the status was learned)",
                    l.stem
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
                &dir.join(format!("{}-time-to-final-spectrum.svg", l.stem)),
                &format!(
                    "async {}: time to final status (HDR percentile spectrum)",
                    l.stem
                ),
                &[(
                    "time to final".to_string(),
                    a.finals.time_to_final.spectrum.clone(),
                )],
            )?));
        }
        md.images(&files);
    }

    // --- sweep
    for (l, s) in &sweeps {
        md.line(format!(
            "## Sweep ({}, {})",
            l.stem,
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
            &dir.join(format!("{}-curve.svg", l.stem)),
            &format!("{}: throughput", title("sweep", &l.stem)),
            xl,
            "req/s",
            &tp_series,
            true,
            false,
        )?;
        let f2 = plot::lines(
            &dir.join(format!("{}-curve-latency.svg", l.stem)),
            &format!("{}: latency", title("sweep", &l.stem)),
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
    }

    // --- soak
    for (l, s) in &soaks {
        soak_section(&mut md, dir, &l.stem, s)?;
    }

    // --- ceilings
    if !ceilings.is_empty() || pgbench.is_some() || pg_checkout.is_some() {
        md.line("## Ceilings");
        md.blank();
    }
    if let Some(pg) = &pg_checkout {
        md.line(format!(
            "pgbench, one checkout-shaped transaction (two random UPDATEs and a ledger INSERT) on the same PostgreSQL: **{:.1} tps**{}{}{}.",
            pg.tps,
            pg.clients.map(|c| format!(", {c} clients")).unwrap_or_default(),
            pg.duration_s.map(|d| format!(", {d} s")).unwrap_or_default(),
            pg.latency_avg_ms.map(|l| format!(", average latency {l:.3} ms")).unwrap_or_default(),
        ));
        md.blank();
    }
    if let Some(pg) = &pgbench {
        md.line(format!(
            "pgbench, single-row `UPDATE … SET stock = stock - 1` on the same PostgreSQL: **{:.1} tps**{}{}{}.",
            pg.tps,
            pg.clients.map(|c| format!(", {c} clients")).unwrap_or_default(),
            pg.duration_s.map(|d| format!(", {d} s")).unwrap_or_default(),
            pg.latency_avg_ms.map(|l| format!(", average latency {l:.3} ms")).unwrap_or_default(),
        ));
        md.blank();
    }
    for (l, c) in &ceilings {
        md.line(format!("### Harness against GET {} ({})", c.path, l.stem));
        md.blank();
        load_section(&mut md, &c.load);
        let files = load_plots(dir, &l.stem, &title("ceiling", &l.stem), &c.load)?;
        md.images(&files);
    }

    if used < loaded.len() || !skipped.is_empty() {
        md.line("## Files not included");
        md.blank();
        for l in &loaded {
            let known = ["consistency", "stress", "async", "sweep", "ceiling", "soak"];
            if !known.contains(&l.env.kind.as_str()) {
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
    use crate::class::Class;
    use crate::output::{write_json, Host};
    use crate::stats::{Recorder, Sample};
    use crate::workload::{LoadOutcome, LoadPlan};
    use api_client::Status;
    use std::time::Duration;

    /// A ceiling result of 11.5 s (warm-up 1 s) at `per_s` answers a second of `ms` each.
    fn ceiling_result(label: &str, per_s: u64, ms: u64) -> Envelope {
        let plan = LoadPlan {
            mode: LoadMode::Closed { clients: 4 },
            duration: Duration::from_millis(10_500),
            warmup: Duration::from_secs(1),
            max_requests: None,
            max_in_flight: 4,
            co_interval: None,
            drain_timeout: Duration::from_secs(1),
        };
        let end = plan.warmup + plan.duration;
        let mut recorder = Recorder::new(plan.warmup, None).with_window_end(end);
        let n = per_s * end.as_millis() as u64 / 1000;
        for i in 0..n {
            let done = Duration::from_micros(i * 1_000_000 / per_s);
            let sent = done.saturating_sub(Duration::from_millis(ms));
            recorder.record_sample(&Sample {
                op: "health",
                status: Status::Http(200),
                class: Class::Success,
                intended: sent,
                sent,
                done,
            });
        }
        let outcome = LoadOutcome {
            recorder,
            window: plan.duration,
            issued: n,
            unfinished: 0,
            elapsed: end,
        };
        let load = LoadSummary::new(&plan, &outcome);
        Envelope {
            schema: SCHEMA.to_string(),
            kind: "ceiling".into(),
            status: "completed".into(),
            label: Some(label.into()),
            base_url: "http://127.0.0.1:1".into(),
            started_at: String::new(),
            finished_at: String::new(),
            harness_version: "test".into(),
            host: Host::current(),
            params: serde_json::Value::Null,
            result: serde_json::to_value(CeilingResult {
                path: "/health".into(),
                load,
            })
            .unwrap_or_default(),
        }
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
        let old = "tps = 100.0 (including connections establishing)\ntps = 110.5 (excluding connections establishing)\n";
        assert_eq!(parse_pgbench(old).map(|p| p.tps), Some(110.5));
        assert_eq!(parse_pgbench("nothing"), None);
    }
}
