//! The pgbench ceilings `scripts/bench.sh` leaves beside the results.

use std::path::Path;

/// Figures of a pgbench run (parsed from its standard output).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pgbench {
    pub tps: f64,
    pub latency_avg_ms: Option<f64>,
    pub clients: Option<u64>,
    pub duration_s: Option<u64>,
    pub transactions: Option<u64>,
    pub failed: Option<u64>,
    /// "simple", "extended" or "prepared" (`-M`).
    pub query_mode: Option<String>,
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
        } else if let Some(v) = line.strip_prefix("query mode: ") {
            p.query_mode = Some(v.to_string());
        }
    }
    p.tps = tps?;
    Some(p)
}

/// The two pgbench ceilings of a results directory, where present.
#[derive(Clone, Debug, Default)]
pub struct Pgbenches {
    /// `pgbench.txt`: a single-row hot `UPDATE`, the ceiling for `consistency`.
    pub update: Option<Pgbench>,
    /// `pgbench-checkout.txt`: one checkout-shaped transaction per checkout (prepared
    /// statements), the naive design's ceiling for `stress` and the latency curve.
    pub checkout: Option<Pgbench>,
}

impl Pgbenches {
    pub fn read(dir: &Path) -> Self {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .and_then(|t| parse_pgbench(&t))
        };
        Self {
            update: read("pgbench.txt"),
            checkout: read("pgbench-checkout.txt"),
        }
    }

    pub fn any(&self) -> bool {
        self.update.is_some() || self.checkout.is_some()
    }
}
