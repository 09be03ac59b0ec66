//! Markdown report and SVG plots from the JSON results of a directory.

use crate::output::{Envelope, SCHEMA};
use crate::stats::{LatencySummary, TimelinePoint};
use crate::workload::async_::AsyncResult;
use crate::workload::ceiling::CeilingResult;
use crate::workload::consistency::ConsistencyResult;
use crate::workload::soak::SoakResult;
use crate::workload::stress::StressResult;
use crate::workload::sweep::SweepResult;
use crate::workload::{LoadMode, LoadSummary};
use plotters::prelude::*;
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
    #[error("plot {path}: {msg}")]
    Plot { path: PathBuf, msg: String },
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

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(90, 90, 90),
];

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_string(),
        points,
    }
}

/// Draws a line chart (with point markers when `markers`) to an SVG file.
fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    all: &[Series],
    markers: bool,
) -> Result<(), ReportError> {
    let perr = |e: String| ReportError::Plot {
        path: path.to_path_buf(),
        msg: e,
    };
    let xs = all.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = all.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let xmin = xs.clone().fold(f64::INFINITY, f64::min);
    let xmax = xs.fold(f64::NEG_INFINITY, f64::max);
    let ymax = ys.fold(0.0f64, f64::max);
    let (xmin, xmax) = if xmin.is_finite() && xmax > xmin {
        (xmin, xmax)
    } else if xmin.is_finite() {
        (xmin - 1.0, xmin + 1.0)
    } else {
        (0.0, 1.0)
    };
    let ymax = if ymax > 0.0 { ymax * 1.1 } else { 1.0 };
    let root = SVGBackend::new(path, (960, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| perr(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(xmin..xmax, 0.0..ymax)
        .map_err(|e| perr(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| perr(e.to_string()))?;
    for (i, s) in all.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| perr(e.to_string()))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if markers {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| perr(e.to_string()))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| perr(e.to_string()))?;
    root.present().map_err(|e| perr(e.to_string()))?;
    Ok(())
}

fn timeline_plots(
    dir: &Path,
    stem: &str,
    title: &str,
    tl: &[TimelinePoint],
) -> Result<Vec<String>, ReportError> {
    if tl.is_empty() {
        return Ok(Vec::new());
    }
    let pick = |f: fn(&TimelinePoint) -> f64| -> Vec<(f64, f64)> {
        tl.iter().map(|p| (p.t_s as f64, f(p))).collect()
    };
    let mut tp = vec![
        series("completed/s", pick(|p| p.completed as f64)),
        series("2xx/s", pick(|p| p.ok as f64)),
        series("4xx/s", pick(|p| p.business as f64)),
        series("errors/s", pick(|p| p.error as f64)),
    ];
    if tl.iter().any(|p| p.dropped > 0) {
        tp.push(series("dropped/s", pick(|p| p.dropped as f64)));
    }
    let f1 = format!("{stem}-throughput.svg");
    line_chart(
        &dir.join(&f1),
        &format!("{title}: throughput per second"),
        "time (s)",
        "requests/s",
        &tp,
        false,
    )?;
    let lat = vec![
        series("p50", pick(|p| p.p50_ms)),
        series("p90", pick(|p| p.p90_ms)),
        series("p99", pick(|p| p.p99_ms)),
    ];
    let f2 = format!("{stem}-latency.svg");
    line_chart(
        &dir.join(&f2),
        &format!("{title}: latency percentiles per second"),
        "time (s)",
        "latency (ms)",
        &lat,
        false,
    )?;
    Ok(vec![f1, f2])
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
    fn images(&mut self, files: &[String]) {
        for f in files {
            self.line(format!("![{f}]({f})"));
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
    let f1 = format!("{stem}-intervals.svg");
    line_chart(
        &dir.join(&f1),
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
    )?;
    let mut files = vec![f1];
    if !s.processes.is_empty() {
        let f2 = format!("{stem}-rss.svg");
        let rss: Vec<Series> = s
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
        line_chart(
            &dir.join(&f2),
            &format!("{}: RSS at the end of each interval", title("soak", stem)),
            "time (s)",
            "MiB",
            &rss,
            true,
        )?;
        files.push(f2);
    }
    files.extend(timeline_plots(
        dir,
        stem,
        &title("soak", stem),
        &s.load.timeline,
    )?);
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

/// Writes `report.md` and the plots into `dir`; returns the report's path.
pub fn write_report(dir: &Path) -> Result<PathBuf, ReportError> {
    let (loaded, skipped) = load_dir(dir)?;
    let pg_path = dir.join("pgbench.txt");
    let pgbench = std::fs::read_to_string(&pg_path)
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
    if (closed_stress || !sweeps.is_empty()) && (ceiling.is_some() || pgbench.is_some()) {
        md.line("## Our figures next to the ceilings");
        md.blank();
        md.line("Ceilings measured on the same machine in the same run: `pgbench` running a single-row `UPDATE … SET stock = stock - 1` on the same PostgreSQL (the cost of one durable hot-row write), and this harness against a trivial endpoint (what the harness and HTTP stack can drive at all). Ratio = our figure / ceiling. Only closed-loop runs are compared (an open loop's throughput is the offered rate).");
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
        let files = timeline_plots(dir, &l.stem, &title("stress", &l.stem), &s.load.timeline)?;
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
        let mut files = timeline_plots(
            dir,
            &l.stem,
            &format!("{} submissions", title("async", &l.stem)),
            &a.submit.timeline,
        )?;
        if !a.finals.timeline.is_empty() {
            let tl = &a.finals.timeline;
            let f = format!("{}-time-to-final.svg", l.stem);
            line_chart(
                &dir.join(&f),
                &format!(
                    "async {}: time to final status (by second the status was learned)",
                    l.stem
                ),
                "time (s)",
                "ms",
                &[
                    series("p50", tl.iter().map(|p| (p.t_s as f64, p.p50_ms)).collect()),
                    series("p99", tl.iter().map(|p| (p.t_s as f64, p.p99_ms)).collect()),
                ],
                false,
            )?;
            files.push(f);
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
        let f1 = format!("{}-curve.svg", l.stem);
        let f2 = format!("{}-curve-latency.svg", l.stem);
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
        line_chart(
            &dir.join(&f1),
            &format!("{}: throughput", title("sweep", &l.stem)),
            xl,
            "req/s",
            &tp_series,
            true,
        )?;
        line_chart(
            &dir.join(&f2),
            &format!("{}: latency", title("sweep", &l.stem)),
            xl,
            "ms",
            &[
                series("p50", s.curve.iter().map(|p| (p.level, p.p50_ms)).collect()),
                series("p99", s.curve.iter().map(|p| (p.level, p.p99_ms)).collect()),
            ],
            true,
        )?;
        md.images(&[f1, f2]);
    }

    // --- soak
    for (l, s) in &soaks {
        soak_section(&mut md, dir, &l.stem, s)?;
    }

    // --- ceilings
    if !ceilings.is_empty() || pgbench.is_some() {
        md.line("## Ceilings");
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
        let files = timeline_plots(dir, &l.stem, &title("ceiling", &l.stem), &c.load.timeline)?;
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
