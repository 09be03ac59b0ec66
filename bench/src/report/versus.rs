//! Our figures next to the ceilings measured in the same run: closed-loop `stress` and `sweep`
//! against the pgbench ceilings and the harness's own ceiling.

use super::files::Loaded;
use super::md::{ratio, Md};
use super::pgbench::Pgbenches;
use crate::kind::runs;
use crate::kinds::{Ceiling, Stress, Sweep};
use crate::load::LoadMode;

pub fn section(md: &mut Md, loaded: &[Loaded], pg: &Pgbenches) {
    let stress = runs::<Stress>(loaded);
    let sweeps = runs::<Sweep>(loaded);
    let ceilings = runs::<Ceiling>(loaded);
    let ceiling = ceilings.first().map(|(l, c)| (*l, c));
    let closed_stress = stress
        .iter()
        .any(|(_, s)| matches!(s.load.mode, LoadMode::Closed { .. }));
    if (closed_stress || !sweeps.is_empty()) && (ceiling.is_some() || pg.any()) {
        md.line("## Our figures next to the ceilings");
        md.blank();
        md.line("Ceilings measured on the same machine in the same run: `pgbench` running one checkout-shaped transaction per checkout (UPDATE a random item's stock, UPDATE a random user's credit, INSERT a ledger row; the naive design, the ceiling for `stress`), `pgbench` running a single-row `UPDATE … SET stock = stock - 1` (one durable hot-row write, the ceiling for `consistency`), and this harness against a trivial endpoint (what the harness and HTTP stack can drive at all). Ratio = our figure / ceiling. Only closed-loop runs are compared (an open loop's throughput is the offered rate).");
        md.blank();
        md.line("| measure | ours | ceiling | ratio |\n|---|---:|---:|---:|");
        for (l, s) in stress
            .iter()
            .filter(|(_, s)| matches!(s.load.mode, LoadMode::Closed { .. }))
        {
            let (tp, lat) = s.load.of_op("checkout");
            let p50 = lat.p50_ms;
            let name = format!("{} ({})", l.stem, s.load.mode.describe());
            for (what, pg) in [
                ("checkout transaction", &pg.checkout),
                ("UPDATE", &pg.update),
            ] {
                let Some(pg) = pg else { continue };
                md.line(format!(
                    "| checkout throughput, {name} vs pgbench {what}{} | {tp:.1}/s | {:.1} tps | {} |",
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
            if let (Some(pg), true) = (&pg.update, s.saturation.peak_throughput > 0.0) {
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
}
