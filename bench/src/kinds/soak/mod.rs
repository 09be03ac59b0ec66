//! `soak`: a long open-loop run at a fraction of saturation (`workload`), reported per interval,
//! with a flatness verdict (`flatness`).

mod flatness;
mod show;
mod workload;

pub use workload::SoakResult;

use crate::duration::parse_duration;
use crate::kind::{Env, Ran, Workload, EXIT_FAIL, EXIT_INCONCLUSIVE};
use crate::load::InitArgs;
use crate::output::{load_status, Rows};
use crate::report::md::{Md, ReportError};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct Soak {
    #[command(flatten)]
    pub init: InitArgs,
    /// How long the soak runs (after the saturation probe).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Reporting interval (whole seconds).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Offered rate in checkouts/s. Without it, a closed-loop probe measures the saturation
    /// throughput first and the soak offers --load-fraction of it.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Fraction of the measured saturation throughput to offer.
    #[arg(long, default_value_t = 0.8)]
    pub load_fraction: f64,
    /// Duration of the saturation probe.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub probe_duration: Duration,
    /// Clients of the saturation probe (closed loop).
    #[arg(long, default_value_t = 64)]
    pub probe_clients: usize,
    /// Requests in flight at most; arrivals beyond it are counted as dropped.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Processes whose RSS is reported, NAME=PID (comma-separated or repeated). Default: the
    /// PID files of the four binaries in --run-dir.
    #[arg(long = "pid", value_delimiter = ',', env = "BENCH_SOAK_PIDS")]
    pub pids: Vec<String>,
    /// Where `scripts/up.sh` keeps the PID files (api.pid, order-svc.pid, …).
    #[arg(long, default_value = ".local/run", env = "BENCH_SOAK_RUN_DIR")]
    pub run_dir: PathBuf,
    /// Directory whose *.log files' growth is reported.
    #[arg(long, default_value = ".local/log", env = "BENCH_SOAK_LOG_DIR")]
    pub log_dir: PathBuf,
    /// Flat if the last interval's throughput is at least (1 - this) x the first's.
    #[arg(long, default_value_t = 0.10)]
    pub max_throughput_drop: f64,
    /// Flat if the last interval's p99 is at most (1 + this) x the first's + 10 ms.
    #[arg(long, default_value_t = 0.50)]
    pub max_p99_rise: f64,
    /// Flat if each process's RSS at the end of the last interval is at most (1 + this) x
    /// the first's + 16 MiB.
    #[arg(long, default_value_t = 0.20)]
    pub max_rss_growth: f64,
    /// Flat if the log growth of the last interval is at most (1 + this) x the first's
    /// + 64 KiB per minute.
    #[arg(long, default_value_t = 0.50)]
    pub max_log_growth: f64,
    /// Exit 1 when a figure is not flat (3 when the verdict is inconclusive).
    #[arg(long)]
    pub strict: bool,
}

impl Workload for Soak {
    const KIND: &'static str = "soak";
    type Result = SoakResult;

    async fn run(&self, env: &Env<'_>) -> Ran<SoakResult> {
        workload::run(env, self).await
    }

    fn status(r: &SoakResult) -> String {
        load_status(&r.load).into()
    }

    fn headline(r: &SoakResult) -> Option<String> {
        Some(format!(": {}", r.verdict.status))
    }

    fn exit(&self, r: &SoakResult) -> u8 {
        match (self.strict, r.verdict.status.as_str()) {
            (true, "not_flat") => EXIT_FAIL,
            (true, "inconclusive") => EXIT_INCONCLUSIVE,
            _ => 0,
        }
    }

    fn rows(r: &SoakResult) -> Rows {
        show::rows(r)
    }

    fn section(md: &mut Md, dir: &Path, stem: &str, s: &SoakResult) -> Result<(), ReportError> {
        show::section(md, dir, stem, s)
    }
}
