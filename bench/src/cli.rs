//! Command-line interface.

use api_client::AsyncMode;
use clap::{Args, Parser, Subcommand};
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
    Consistency(ConsistencyArgs),
    /// Throughput and latency of random checkouts (or a mixed workload) over batch-initialised
    /// data, closed loop (--clients) or open loop (--rate).
    Stress(StressArgs),
    /// Asynchronous checkouts (Prefer: respond-async): accept rate and time to final status,
    /// observed by long-polling or by a webhook receiver run by the harness.
    Async(AsyncArgs),
    /// Runs `stress` at increasing concurrency (or rate) and finds the saturation point.
    Sweep(SweepArgs),
    /// Harness ceiling: closed loop against a trivial endpoint (GET /health).
    Ceiling(CeilingArgs),
    /// Long run at a fraction of the saturation throughput, reported per interval: throughput,
    /// p99, each binary's RSS and log growth, with a verdict on whether they stay flat.
    Soak(SoakArgs),
    /// Writes report.md and the plots from the JSON results of a directory.
    Report(ReportArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ConsistencyArgs {
    /// Number of items.
    #[arg(long, default_value_t = 1)]
    pub items: u64,
    /// Starting stock of each item.
    #[arg(long, default_value_t = 100)]
    pub stock: i64,
    /// Price of each item.
    #[arg(long, default_value_t = 1)]
    pub price: i64,
    /// Number of users.
    #[arg(long, default_value_t = 1000)]
    pub users: u64,
    /// Starting credit of each user.
    #[arg(long, default_value_t = 1)]
    pub credit: i64,
    /// Number of orders (order i belongs to user i mod users).
    #[arg(long, default_value_t = 1000)]
    pub orders: u64,
    /// addItem calls per order (order i, line j takes item (i + j) mod items).
    #[arg(long, default_value_t = 1)]
    pub items_per_order: u64,
    /// Quantity of each addItem call.
    #[arg(long, default_value_t = 1)]
    pub quantity: i64,
    /// Maximum checkouts in flight (0 = all at once).
    #[arg(long, default_value_t = 0)]
    pub concurrency: usize,
    /// Concurrent requests while populating and verifying.
    #[arg(long, default_value_t = 32)]
    pub populate_concurrency: usize,
    /// Pause between the last answer and the first verification read.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
    /// The state is read repeatedly until it has not changed for --quiet-period (the system
    /// has quiesced), for at most this long; then the verdict is computed with a warning.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub settle_timeout: Duration,
    /// How long the state must stay unchanged before it is judged.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub quiet_period: Duration,
}

/// Batch initialisation shared by `stress`, `async` and `sweep`.
#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// Items created by batch_init.
    #[arg(long, default_value_t = 100_000)]
    pub items: u64,
    /// Starting stock of each item.
    #[arg(long, default_value_t = 1_000_000)]
    pub stock: i64,
    /// Price of each item.
    #[arg(long, default_value_t = 1)]
    pub price: i64,
    /// Users created by batch_init.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Starting credit of each user.
    #[arg(long, default_value_t = 1_000_000)]
    pub credit: i64,
    /// Orders created by batch_init (the checkouts pick among them at random). A million, so
    /// that a run at thousands of checkouts/s rarely meets an order it already paid.
    #[arg(long, default_value_t = 1_000_000)]
    pub orders: u64,
    /// Do not call batch_init: reuse the data already there (the sizes must still match).
    /// Orders paid by earlier runs then check out without a saga, so such runs are cheaper
    /// and not comparable with runs on fresh data.
    #[arg(long)]
    pub skip_init: bool,
    /// Timeout of each batch_init call.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub init_timeout: Duration,
}

/// The load shape shared by `stress`, `async`, `sweep` and `ceiling`.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Measured duration (after the warm-up).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up excluded from the statistics (still shown in the timeline).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Closed loop: number of concurrent clients (ignored when --rate is given).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Open loop: fixed arrival rate in requests per second; latency is measured from each
    /// request's intended send time (no coordinated omission).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: requests in flight at most; arrivals beyond it are counted as dropped.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Stop after this many requests.
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Closed loop: also report latencies corrected for coordinated omission, assuming each
    /// client meant to send one request per this interval (HDR record_correct).
    #[arg(long, value_parser = parse_duration)]
    pub co_expected_interval: Option<Duration>,
    /// Seed of the (deterministic) choice of orders and operations.
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct StressArgs {
    #[command(flatten)]
    pub init: InitArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Operation weights, e.g. "checkout=1" (default) or "checkout=80,read=15,add=5".
    /// Operations: checkout, find_order, find_item, find_user, add_stock, add_funds, add_item,
    /// health; "read" spreads over the three finds, "add" over add_stock and add_funds.
    #[arg(long, default_value = "checkout=1")]
    pub mix: String,
}

#[derive(Args, Debug, Clone)]
pub struct AsyncArgs {
    #[command(flatten)]
    pub init: InitArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// How to ask for async processing.
    #[arg(long, value_enum, default_value_t = AsyncMode::Header)]
    pub async_mode: AsyncMode,
    /// Observe completion with a webhook receiver run by the harness (passes callback_url)
    /// instead of polling. The receiver is on loopback: run the api with
    /// WEBHOOK_ALLOW_PRIVATE=true, which refuses internal callback addresses otherwise.
    #[arg(long)]
    pub webhook: bool,
    /// Port of the webhook receiver on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub webhook_port: u16,
    /// callback_url to pass (default http://127.0.0.1:<port>/hook); use when the system
    /// reaches the harness under another address.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Standard Webhooks secret ("whsec_…"): verify webhook-signature and count failures.
    #[arg(long, env = "BENCH_WEBHOOK_SECRET")]
    pub webhook_secret: Option<String>,
    /// Long-poll wait in seconds (GET /requests/{id}?wait=…, at most 30).
    #[arg(long, default_value_t = 10)]
    pub poll_wait: u64,
    /// Give up on a request that is not final after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub final_timeout: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct SweepArgs {
    #[command(flatten)]
    pub init: InitArgs,
    /// Closed-loop client counts to try, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32,64,128,256"
    )]
    pub clients_list: Vec<usize>,
    /// Open-loop arrival rates to try instead (requests/s), e.g. 500,1000,2000,4000.
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<f64>>,
    /// Measured duration of each step.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub step_duration: Duration,
    /// Warm-up of each step.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open loop: in-flight cap per step.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Operation weights (see `stress --mix`).
    #[arg(long, default_value = "checkout=1")]
    pub mix: String,
    /// Closed loop: a step counts as still scaling if throughput grew by at least this fraction.
    #[arg(long, default_value_t = 0.05)]
    pub min_gain: f64,
    /// Open loop: a step is sustained if at least this fraction of the offered rate completed.
    #[arg(long, default_value_t = 0.95)]
    pub min_achieved_ratio: f64,
    /// A step with more than this fraction of errors + dropped requests is saturated.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_ratio: f64,
    /// Optional p99 objective: a step above it is saturated.
    #[arg(long, value_parser = parse_duration)]
    pub slo_p99: Option<Duration>,
    /// Stop after the first saturated step plus this many more.
    #[arg(long, default_value_t = 1)]
    pub steps_after_saturation: usize,
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
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

#[derive(Args, Debug, Clone)]
pub struct CeilingArgs {
    /// Path of the trivial endpoint.
    #[arg(long, default_value = "/health")]
    pub path: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Duration.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up excluded from the statistics.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Directory with the JSON results (default: --out-dir, or the newest bench/results/*).
    pub dir: Option<PathBuf>,
    /// Other runs to overlay on this directory's (before vs after, ours vs a reference): result
    /// directories or JSON files; repeatable.
    #[arg(long, value_name = "DIR_OR_JSON")]
    pub compare: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: use e.g. 30s, 500ms, 2m, 1h or a number of seconds")]
pub struct DurationError(String);

/// Parses "30s", "500ms", "2m", "1h", "1.5s" or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    let err = || DurationError(s.to_string());
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| err())?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => v,
        "ms" => v / 1000.0,
        "us" | "µs" => v / 1_000_000.0,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(err()),
    };
    if !secs.is_finite() || !(0.0..=1.0e9).contains(&secs) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }

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
