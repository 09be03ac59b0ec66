//! `bench`: benchmark harness for any deployment speaking the standard checkout API.

mod class;
mod cli;
mod output;
mod plot;
mod procs;
mod progress;
mod report;
mod stats;
mod verdict;
mod webhook;
mod workload;

use clap::Parser;
use cli::{Cli, Command};
use output::{Envelope, Host, Rows, SCHEMA};
use progress::Ui;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use verdict::VerdictStatus;

const EXIT_FAIL: u8 = 1;
const EXIT_INCONCLUSIVE: u8 = 3;
const EXIT_ERROR: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn default_out_dir() -> PathBuf {
    let ts = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
    Path::new("bench").join("results").join(ts)
}

/// The newest directory under bench/results.
fn newest_results_dir() -> Option<PathBuf> {
    let root = Path::new("bench").join("results");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.pop()
}

struct Finished {
    kind: &'static str,
    status: String,
    params: serde_json::Value,
    result: serde_json::Value,
    title: String,
    rows: Rows,
    exit: u8,
}

fn finished<T: serde::Serialize>(
    kind: &'static str,
    status: &str,
    params: serde_json::Value,
    result: &T,
    title: String,
    rows: Rows,
    exit: u8,
) -> anyhow::Result<Finished> {
    Ok(Finished {
        kind,
        status: status.to_string(),
        params,
        result: serde_json::to_value(result)?,
        title,
        rows,
        exit,
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Report(r) = &cli.command {
        let dir = r
            .dir
            .clone()
            .or_else(|| cli.out_dir.clone())
            .or_else(newest_results_dir)
            .ok_or_else(|| {
                anyhow::anyhow!("no results directory given and none under bench/results")
            })?;
        let path = report::write_report(&dir, &r.compare)?;
        println!("{}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let api = api_client::Api::new(
        &cli.base_url,
        cli.request_timeout,
        concat!("bench/", env!("CARGO_PKG_VERSION")),
    )?;
    let ui = Ui::new(!cli.no_progress);
    let started = chrono::Utc::now();
    let t = cli.request_timeout;
    let base = api.base_url().to_string();
    let f = match &cli.command {
        Command::Consistency(a) => {
            let (r, params) = workload::consistency::run(&api, a, &ui).await?;
            let exit = match r.verdict.status {
                VerdictStatus::Pass => 0,
                VerdictStatus::Fail => EXIT_FAIL,
                VerdictStatus::Inconclusive => EXIT_INCONCLUSIVE,
            };
            let status = serde_json::to_value(r.verdict.status)?
                .as_str()
                .unwrap_or("fail")
                .to_string();
            let title = format!("consistency against {base}: {}", r.verdict.status);
            finished(
                "consistency",
                &status,
                params,
                &r,
                title,
                output::consistency_rows(&r),
                exit,
            )?
        }
        Command::Stress(a) => {
            let (r, params) = workload::stress::run(&api, a, &ui, t).await?;
            let title = format!("stress against {base}");
            let rows = output::stress_rows(&r);
            finished(
                "stress",
                output::load_status(&r.load),
                params,
                &r,
                title,
                rows,
                0,
            )?
        }
        Command::Async(a) => {
            let (r, params) = workload::async_::run(&api, a, &ui, t).await?;
            let title = format!("async against {base}");
            let rows = output::async_rows(&r);
            finished(
                "async",
                output::load_status(&r.submit),
                params,
                &r,
                title,
                rows,
                0,
            )?
        }
        Command::Sweep(a) => {
            let (r, params) = workload::sweep::run(&api, a, &ui, t).await?;
            let title = format!("sweep against {base}");
            let rows = output::sweep_rows(&r);
            finished("sweep", "completed", params, &r, title, rows, 0)?
        }
        Command::Ceiling(a) => {
            let (r, params) = workload::ceiling::run(&api, a, &ui, t).await?;
            let title = format!("ceiling against {base}");
            let rows = output::ceiling_rows(&r);
            finished(
                "ceiling",
                output::load_status(&r.load),
                params,
                &r,
                title,
                rows,
                0,
            )?
        }
        Command::Soak(a) => {
            let (r, params) = workload::soak::run(&api, a, &ui, t).await?;
            let title = format!("soak against {base}: {}", r.verdict.status);
            let exit = match (a.strict, r.verdict.status.as_str()) {
                (true, "not_flat") => EXIT_FAIL,
                (true, "inconclusive") => EXIT_INCONCLUSIVE,
                _ => 0,
            };
            let rows = output::soak_rows(&r);
            finished(
                "soak",
                output::load_status(&r.load),
                params,
                &r,
                title,
                rows,
                exit,
            )?
        }
        Command::Report(_) => return Ok(ExitCode::SUCCESS),
    };
    let env = Envelope {
        schema: SCHEMA.into(),
        kind: f.kind.into(),
        status: f.status,
        label: cli.label.clone(),
        base_url: base,
        started_at: started.to_rfc3339(),
        finished_at: chrono::Utc::now().to_rfc3339(),
        harness_version: env!("CARGO_PKG_VERSION").into(),
        host: Host::current(),
        params: f.params,
        result: f.result,
    };
    let dir = cli.out_dir.clone().unwrap_or_else(default_out_dir);
    let stem = cli.name.clone().unwrap_or_else(|| f.kind.to_string());
    let json_path = output::write_json(&dir, &stem, &env)?;
    let report_path = if cli.no_report {
        None
    } else {
        match report::write_report(&dir, &[]) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("bench: warning: report not written: {e}");
                None
            }
        }
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&env)?);
    } else {
        output::print_table(&f.title, &f.rows);
        println!("  result  {}", json_path.display());
        if let Some(p) = report_path {
            println!("  report  {}", p.display());
        }
    }
    Ok(ExitCode::from(f.exit))
}
