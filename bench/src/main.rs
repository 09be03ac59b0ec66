//! `bench`: benchmark harness for any deployment speaking the standard checkout API.

mod class;
mod cli;
mod duration;
mod kind;
mod kinds;
mod load;
mod output;
mod plot;
mod procs;
mod progress;
mod report;
mod stats;
mod verdict;
mod webhook;

use clap::Parser;
use cli::{Cli, Command};
use kind::execute;
use output::{Envelope, Host, SCHEMA};
use progress::Ui;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The run itself failed (target unreachable, set-up rejected, …).
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
    )?
    .with_setup_token(cli.setup_token.as_deref());
    let ui = Ui::new(!cli.no_progress);
    let started = chrono::Utc::now();
    let base = api.base_url().to_string();
    let env = kind::Env {
        api: &api,
        ui: &ui,
        request_timeout: cli.request_timeout,
    };
    // One line a kind: what each runs and shows is its `Workload` (kinds/).
    let f = match &cli.command {
        Command::Consistency(a) => execute(&env, a).await?,
        Command::Stress(a) => execute(&env, a).await?,
        Command::Async(a) => execute(&env, a).await?,
        Command::Sweep(a) => execute(&env, a).await?,
        Command::Ceiling(a) => execute(&env, a).await?,
        Command::Soak(a) => execute(&env, a).await?,
        Command::Report(_) => return Ok(ExitCode::SUCCESS),
    };
    let title = format!(
        "{} against {base}{}",
        f.kind,
        f.headline.as_deref().unwrap_or_default()
    );
    let envelope = Envelope {
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
    let json_path = output::write_json(&dir, &stem, &envelope)?;
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
        println!("{}", serde_json::to_string_pretty(&envelope)?);
    } else {
        output::print_table(&title, &f.rows);
        println!("  result  {}", json_path.display());
        if let Some(p) = report_path {
            println!("  report  {}", p.display());
        }
    }
    Ok(ExitCode::from(f.exit))
}
