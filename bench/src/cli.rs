//! Command-line interface: the options every subcommand takes and the subcommands; each kind
//! owns its own arguments (`kinds::<kind>`).

use crate::duration::parse_duration;
use crate::kinds::{Async, Ceiling, Consistency, Soak, Stress, Sweep};
use crate::report::ReportArgs;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Benchmark harness for any deployment speaking the standard checkout API (see API.md).
///
/// Exit status: 0 success; 1 consistency FAIL (a proven inconsistency); 3 consistency
/// INCONCLUSIVE (some answers were errors, so outcomes are unknown); 4 the run itself failed
/// (target unreachable, set-up rejected, …); 2 usage error.
#[derive(Parser, Debug)]
#[command(name = "bench", version, about, long_about = None)]
pub struct Cli {
    /// Base URL of the system under test.
    #[arg(
        long,
        global = true,
        env = "BENCH_BASE_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub base_url: String,

    /// Where results go (default: bench/results/<timestamp>). Each run writes <name>.json there
    /// and regenerates report.md and the plots from every result in the directory.
    #[arg(long, global = true, env = "BENCH_OUT_DIR")]
    pub out_dir: Option<PathBuf>,

    /// Print the JSON result on stdout instead of the table.
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// Do not regenerate report.md and the plots after the run.
    #[arg(long, global = true)]
    pub no_report: bool,

    /// File stem of the JSON result (default: the subcommand's name).
    #[arg(long, global = true)]
    pub name: Option<String>,

    /// A label for the system under test, shown in the report (e.g. "ours", "reference").
    #[arg(long, global = true, env = "BENCH_LABEL")]
    pub label: Option<String>,

    /// Bearer token for the setup endpoints (`batch_init`) of a deployment that runs
    /// them with `SETUP_ENDPOINTS=token`.
    #[arg(long, global = true, env = "SETUP_TOKEN", hide_env_values = true)]
    pub setup_token: Option<String>,

    /// Timeout of one request (set-up batch calls use --init-timeout).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Standard consistency workload: populate through the API, fire every checkout at once,
    /// verify the outcome through the API. Non-zero exit on any inconsistency.
    Consistency(Consistency),
    /// Throughput and latency of random checkouts (or a mixed workload) over batch-initialised
    /// data, closed loop (--clients) or open loop (--rate).
    Stress(Stress),
    /// Asynchronous checkouts (Prefer: respond-async): accept rate and time to final status,
    /// observed by long-polling or by a webhook receiver run by the harness.
    Async(Async),
    /// Runs `stress` at increasing concurrency (or rate) and finds the saturation point.
    Sweep(Sweep),
    /// Harness ceiling: closed loop against a trivial endpoint (GET /health).
    Ceiling(Ceiling),
    /// Long run at a fraction of the saturation throughput, reported per interval: throughput,
    /// p99, each binary's RSS and log growth, with a verdict on whether they stay flat.
    Soak(Soak),
    /// Writes report.md and the plots from the JSON results of a directory.
    Report(ReportArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "bench",
            "stress",
            "--orders",
            "1000",
            "--duration",
            "3s",
            "--rate",
            "200",
            "--mix",
            "checkout=8,read=2",
        ])
        .expect("parse");
        match c.command {
            Command::Stress(s) => {
                assert_eq!(s.init.orders, 1000);
                assert_eq!(s.load.rate, Some(200.0));
                assert_eq!(s.load.duration, Duration::from_secs(3));
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from([
            "bench",
            "soak",
            "--rate",
            "50",
            "--pid",
            "api=1,order-svc=2",
            "--pid",
            "stock-svc=3",
        ])
        .expect("parse");
        match c.command {
            Command::Soak(s) => {
                assert_eq!(s.duration, Duration::from_secs(600));
                assert_eq!(s.interval, Duration::from_secs(60));
                assert_eq!(s.rate, Some(50.0));
                assert_eq!(s.pids, ["api=1", "order-svc=2", "stock-svc=3"]);
                assert!((s.load_fraction - 0.8).abs() < 1e-12);
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(["bench", "sweep", "--clients-list", "1,4,16", "--json"])
            .expect("parse");
        assert!(c.json);
        match c.command {
            Command::Sweep(s) => assert_eq!(s.clients_list, vec![1, 4, 16]),
            other => panic!("{other:?}"),
        }
    }
}
