//! How a soak is shown: its stdout table and its report section.

use super::flatness::{FlatCheck, SoakInterval};
use super::SoakResult;
use crate::output::{load_rows, Rows};
use crate::plot::{self, series};
use crate::report::md::{load_plots, load_section, svg_name, title, Md, ReportError};
use std::path::Path;

/// How the soak's rate was chosen.
fn soak_rate(s: &SoakResult) -> String {
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
fn soak_interval(i: &SoakInterval) -> String {
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

/// A compared figure, "-" where it was not measured.
fn num(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.1}"))
}

fn flat_check(c: &FlatCheck) -> String {
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

pub fn rows(s: &SoakResult) -> Rows {
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

pub fn section(md: &mut Md, dir: &Path, stem: &str, s: &SoakResult) -> Result<(), ReportError> {
    md.line(format!(
        "## Soak ({stem}): **{}**",
        s.verdict.status.replace('_', " ")
    ));
    md.blank();
    md.line(format!(
        "Open loop at {}, for {:.0} s, reported every {} s; {} orders{}.",
        soak_rate(s),
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
    let mid = |i: &SoakInterval| (i.start_s + i.end_s) as f64 / 2.0;
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
