//! The latency curve of the report: the sweeps of a run side by side, latency percentiles
//! against offered load (open loop) and against achieved throughput (closed loop), next to the
//! prepared pgbench checkout ceiling of the same run: plots, a table of ratios, the saturation
//! figure and the one-client latency.

use super::SweepResult;
use crate::plot::{self, series, vertical, Series};
use crate::report::files::Loaded;
use crate::report::md::{svg_name, Md, ReportError};
use crate::report::pgbench::Pgbench;
use std::path::Path;

/// One step of a sweep as the curve shows it (checkout figures: the checkout operation's where
/// the sweep mixed others in).
#[derive(Clone, Debug, PartialEq)]
pub struct CurveRow {
    pub run: String,
    pub open_loop: bool,
    /// Clients (closed loop) or offered checkouts/s (open loop).
    pub level: f64,
    pub checkouts_rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// Throughput ÷ the pgbench checkout ceiling.
    pub ratio: Option<f64>,
    /// Errors and dropped arrivals (a step that shed load reads better than it was).
    pub failed: u64,
    pub orders_ran_out: bool,
}

/// The rows of every sweep: closed-loop runs first, each run's steps in order.
pub fn rows(runs: &[(&Loaded, SweepResult)], ceiling: Option<&Pgbench>) -> Vec<CurveRow> {
    let mut out: Vec<CurveRow> = runs
        .iter()
        .flat_map(|(l, s)| {
            s.steps.iter().map(move |st| {
                let (tp, lat) = st.load.of_op("checkout");
                CurveRow {
                    run: l.stem.clone(),
                    open_loop: s.open_loop,
                    level: st.level,
                    checkouts_rps: tp,
                    p50_ms: lat.p50_ms,
                    p90_ms: lat.p90_ms,
                    p99_ms: lat.p99_ms,
                    ratio: ceiling.filter(|c| c.tps > 0.0).map(|c| tp / c.tps),
                    failed: st.load.counts.error + st.load.unfinished + st.load.dropped,
                    orders_ran_out: st.orders_ran_out,
                }
            })
        })
        .collect();
    out.sort_by_key(|r| r.open_loop); // stable: runs and steps keep their order
    out
}

/// The figures stated in a line each.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The best throughput over the curve and the step that reached it (of the steps that ran
    /// their full time, where there are any: one cut short by want of orders measured little).
    pub best: Option<CurveRow>,
    /// `best` ÷ the pgbench checkout ceiling.
    pub best_ratio: Option<f64>,
    /// p50 of the closed-loop step with one client.
    pub one_client_p50_ms: Option<f64>,
}

pub fn summary(rows: &[CurveRow]) -> Summary {
    let full: Vec<&CurveRow> = rows.iter().filter(|r| !r.orders_ran_out).collect();
    let candidates = if full.is_empty() {
        rows.iter().collect()
    } else {
        full
    };
    let best = candidates
        .into_iter()
        .max_by(|a, b| a.checkouts_rps.total_cmp(&b.checkouts_rps))
        .cloned();
    Summary {
        best_ratio: best.as_ref().and_then(|b| b.ratio),
        best,
        one_client_p50_ms: rows
            .iter()
            .find(|r| !r.open_loop && r.level == 1.0)
            .map(|r| r.p50_ms),
    }
}

fn step_name(r: &CurveRow) -> String {
    if r.open_loop {
        format!("open loop, {} checkouts/s offered", r.level)
    } else {
        format!("closed loop, {} clients", r.level)
    }
}

fn ceiling_name(c: &Pgbench) -> String {
    format!(
        "pgbench checkout transaction ({}{}): {:.0} tps",
        c.query_mode.as_deref().unwrap_or("query mode unknown"),
        c.clients
            .map(|n| format!(", {n} clients"))
            .unwrap_or_default(),
        c.tps
    )
}

/// p99, p90 and p50 (widest first) of the rows of one loop against `x`, one set per run.
fn percentile_lines(rows: &[&CurveRow], x: fn(&CurveRow) -> f64) -> Vec<Series> {
    let mut runs: Vec<&str> = rows.iter().map(|r| r.run.as_str()).collect();
    runs.dedup();
    let mut out = Vec::new();
    for run in &runs {
        let of_run: Vec<&&CurveRow> = rows.iter().filter(|r| r.run == *run).collect();
        for (name, y) in [
            ("p99", (|r: &CurveRow| r.p99_ms) as fn(&CurveRow) -> f64),
            ("p90", |r: &CurveRow| r.p90_ms),
            ("p50", |r: &CurveRow| r.p50_ms),
        ] {
            let name = if runs.len() > 1 {
                format!("{name} ({run})")
            } else {
                name.to_string()
            };
            out.push(series(name, of_run.iter().map(|r| (x(r), y(r))).collect()));
        }
    }
    out
}

/// The two plots (open loop, closed loop; where there are steps), each with the ceiling.
fn plots(
    dir: &Path,
    rows: &[CurveRow],
    ceiling: Option<&Pgbench>,
) -> Result<Vec<String>, ReportError> {
    let mut files = Vec::new();
    for (open, stem, x_desc, x) in [
        (
            true,
            "latency-vs-load-open",
            "offered load (checkouts/s)",
            (|r: &CurveRow| r.level) as fn(&CurveRow) -> f64,
        ),
        (
            false,
            "latency-vs-load-closed",
            "achieved throughput (checkouts/s)",
            |r: &CurveRow| r.checkouts_rps,
        ),
    ] {
        let of_loop: Vec<&CurveRow> = rows.iter().filter(|r| r.open_loop == open).collect();
        if of_loop.is_empty() {
            continue;
        }
        let mut lines = percentile_lines(&of_loop, x);
        lines.extend(ceiling.map(|c| vertical(ceiling_name(c), c.tps)));
        let title = if open {
            "Latency against offered load (open loop)".to_string()
        } else {
            let clients: Vec<String> = of_loop.iter().map(|r| r.level.to_string()).collect();
            format!(
                "Latency against throughput (closed loop, {} clients)",
                clients.join(", ")
            )
        };
        files.push(svg_name(&plot::lines(
            &dir.join(format!("{stem}.svg")),
            &title,
            x_desc,
            "latency (ms, log scale)",
            &lines,
            true,
            true,
        )?));
    }
    Ok(files)
}

fn or_dash(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.3}"))
}

/// The curve section, when the directory has sweeps.
pub fn section(
    md: &mut Md,
    dir: &Path,
    runs: &[(&Loaded, SweepResult)],
    ceiling: Option<&Pgbench>,
) -> Result<(), ReportError> {
    let rows = rows(runs, ceiling);
    if rows.is_empty() {
        return Ok(());
    }
    md.line("## Latency against load (the curve)");
    md.blank();
    md.line(format!(
        "Sweeps {}: the open loop's latency is charged from each checkout's scheduled arrival, the closed loop's from its send; each checkout is of an order no earlier request of the sweep checked out (a step that ran out of unpaid orders is marked and, if others ran in full, not taken as the best). Ceiling: {}, on the same PostgreSQL in the same run; ratio = our checkouts/s ÷ its tps.",
        runs.iter().map(|(l, _)| format!("`{}`", l.stem)).collect::<Vec<_>>().join(", "),
        ceiling.map_or_else(|| "none measured (no pgbench-checkout.txt)".into(), ceiling_name)
    ));
    md.blank();
    let s = summary(&rows);
    md.line(match &s.best {
        Some(b) => format!(
            "**Saturation: the best throughput over the curve is {:.1} checkouts/s ({}), {} × the pgbench checkout ceiling.**",
            b.checkouts_rps,
            step_name(b),
            or_dash(s.best_ratio)
        ),
        None => "Saturation: no step.".into(),
    });
    md.blank();
    md.line(match s.one_client_p50_ms {
        Some(p) => format!("**One client: p50 {p:.2} ms** (closed loop, one checkout at a time)."),
        None => "One client: no closed-loop step with one client.".into(),
    });
    md.blank();
    md.line("| run | loop | clients / offered (checkouts/s) | checkouts/s | p50 (ms) | p99 (ms) | ÷ ceiling | errors + dropped |\n|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        md.line(format!(
            "| {} | {} | {} | {:.1} | {:.2} | {:.2} | {} | {}{} |",
            r.run,
            if r.open_loop { "open" } else { "closed" },
            r.level,
            r.checkouts_rps,
            r.p50_ms,
            r.p99_ms,
            or_dash(r.ratio),
            r.failed,
            if r.orders_ran_out {
                " (ran out of unpaid orders: stopped early)"
            } else {
                ""
            }
        ));
    }
    md.blank();
    let files = plots(dir, &rows, ceiling)?;
    md.images(&files);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::saturation::{saturation, SaturationCriteria};
    use super::super::workload::{curve_point, SweepStep};
    use super::*;
    use crate::load::fixture::{envelope, recorded_load};
    use crate::load::{InitReport, LoadMode};
    use crate::output::write_json;
    use crate::report::files::load_dir;
    use crate::report::pgbench::parse_pgbench;
    use crate::report::write_report;

    const CEILING: &str = "transaction type: /tmp/co.sql\nquery mode: prepared\nnumber of clients: 32\nnumber of threads: 2\nduration: 20 s\ntps = 2000.0 (without initial connection time)\n";

    /// A sweep whose step at `level` completed `per_s` checkouts a second, 95 % in 5 ms and
    /// the rest in `slow` ms.
    fn sweep(open_loop: bool, steps: &[(f64, u64, u64)]) -> SweepResult {
        let steps: Vec<SweepStep> = steps
            .iter()
            .map(|&(level, per_s, slow)| {
                let mode = if open_loop {
                    LoadMode::Open { rate: level }
                } else {
                    LoadMode::Closed {
                        clients: level as usize,
                    }
                };
                let ms = move |i: u64| if i % 100 < 95 { 5 } else { slow };
                SweepStep {
                    level,
                    load: recorded_load(mode, "checkout", per_s, ms),
                    first_order: 0,
                    renewed: false,
                    orders_ran_out: false,
                }
            })
            .collect();
        let curve: Vec<_> = steps
            .iter()
            .map(|s| curve_point(s.level, &s.load))
            .collect();
        let criteria = SaturationCriteria {
            open_loop,
            ..SaturationCriteria::default()
        };
        SweepResult {
            init: InitReport {
                skipped: false,
                items: 10,
                stock: 1,
                price: 1,
                users: 10,
                credit: 1,
                orders: 1_000_000,
                seconds: 1.0,
            },
            open_loop,
            saturation: saturation(&curve, &criteria),
            criteria,
            curve,
            steps,
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("bench-curve-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    /// A results directory as `make bench` leaves it: both sweeps and the pgbench ceiling.
    fn results(name: &str) -> std::path::PathBuf {
        let dir = temp_dir(name);
        let closed = sweep(false, &[(1.0, 200, 20), (64.0, 800, 40), (256.0, 1000, 80)]);
        let open = sweep(true, &[(100.0, 100, 10), (500.0, 500, 30)]);
        // Named so that the open loop sorts first: the table still lists the closed loop first.
        write_json(&dir, "a-curve-open", &envelope("sweep", "ours", open)).expect("write");
        write_json(&dir, "b-curve-closed", &envelope("sweep", "ours", closed)).expect("write");
        std::fs::write(dir.join("pgbench-checkout.txt"), CEILING).expect("pgbench");
        dir
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.02
    }

    #[test]
    fn rows_and_ratios_from_recorded_sweeps() {
        let dir = results("rows");
        let (loaded, _) = load_dir(&dir).expect("load");
        let runs = crate::kind::runs::<super::super::Sweep>(&loaded);
        let ceiling = parse_pgbench(CEILING);
        let rows = rows(&runs, ceiling.as_ref());
        let levels: Vec<(bool, f64)> = rows.iter().map(|r| (r.open_loop, r.level)).collect();
        assert_eq!(
            levels,
            [
                (false, 1.0),
                (false, 64.0),
                (false, 256.0),
                (true, 100.0),
                (true, 500.0)
            ]
        );
        for (r, tp) in rows.iter().zip([200.0, 800.0, 1000.0, 100.0, 500.0]) {
            assert!(close(r.checkouts_rps, tp), "{r:?}");
            assert!(close(r.ratio.expect("a ceiling"), tp / 2000.0), "{r:?}");
            assert!(close(r.p50_ms, 5.0), "{r:?}");
            assert_eq!(r.failed, 0);
        }
        assert!(close(rows[2].p99_ms, 80.0), "{:?}", rows[2]);
        assert!(close(rows[4].p99_ms, 30.0), "{:?}", rows[4]);
        assert_eq!(rows[0].run, "b-curve-closed");

        let s = summary(&rows);
        let best = s.best.clone().expect("a best step");
        assert_eq!((best.open_loop, best.level), (false, 256.0));
        assert!(close(s.best_ratio.expect("a ratio"), 0.5), "{s:?}");
        assert!(
            close(s.one_client_p50_ms.expect("one client"), 5.0),
            "{s:?}"
        );

        // A step cut short for want of orders is not the best one while others ran in full.
        let mut cut = rows.clone();
        cut[2].orders_ran_out = true;
        let s = summary(&cut);
        assert_eq!(s.best.map(|b| b.level), Some(64.0));

        // Without a ceiling there are no ratios; without a one-client step no such line.
        let rows = super::rows(&runs[..1], None);
        assert!(rows.iter().all(|r| r.ratio.is_none() && r.open_loop));
        let s = summary(&rows);
        assert_eq!((s.best_ratio, s.one_client_p50_ms), (None, None));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_report_shows_the_curve_with_the_ceiling() {
        let dir = results("report");
        let md = std::fs::read_to_string(write_report(&dir, &[]).expect("report")).expect("md");
        assert!(md.contains("## Latency against load (the curve)"), "{md}");
        assert!(
            md.contains("pgbench checkout transaction (prepared, 32 clients): 2000 tps"),
            "{md}"
        );
        assert!(
            md.contains("**Saturation: the best throughput over the curve is 1000."),
            "{md}"
        );
        assert!(md.contains("(closed loop, 256 clients), 0.50"), "{md}");
        assert!(md.contains("**One client: p50 5."), "{md}");
        assert!(md.contains("| b-curve-closed | closed | 64 | 800."), "{md}");
        assert!(md.contains("| a-curve-open | open | 500 | 500."), "{md}");
        // The curve comes before the sweeps' own sections.
        let curve = md.find("## Latency against load").expect("curve");
        assert!(md.find("## Sweep (").is_some_and(|s| s > curve), "{md}");
        for stem in ["latency-vs-load-open", "latency-vs-load-closed"] {
            assert!(
                md.contains(&format!("![{stem}.svg]({stem}.svg)")),
                "{stem}: {md}"
            );
            assert!(dir.join(format!("{stem}.png")).is_file(), "{stem}.png");
            let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).expect("svg");
            // The ceiling's dashed line and its legend; the three percentiles.
            assert!(svg.contains("2000 tps"), "{stem}");
            for p in ["p50", "p90", "p99"] {
                assert!(svg.contains(p), "{stem}: {p}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
