//! A workload kind: how its subcommand runs, and how its result is shown (the envelope's
//! status, the stdout table, the exit status, its section of the report, its overlay).
//!
//! Adding a kind: its module in `kinds/` (its arguments, its `impl Workload`, its driver), its
//! subcommand in `cli`, its entry in `kinds::ALL` and the one line of `main` that runs it.

use crate::load::{LoadSummary, WorkloadError};
use crate::output::Rows;
use crate::progress::Ui;
use crate::report::files::Loaded;
use crate::report::md::{per_second, Md, ReportError};
use crate::report::pgbench::Pgbenches;
use crate::stats::SpectrumPoint;
use api_client::Api;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

/// Exit status of a run whose verdict is a failure.
pub const EXIT_FAIL: u8 = 1;
/// Exit status of a run whose verdict could not be reached.
pub const EXIT_INCONCLUSIVE: u8 = 3;

/// What every run gets.
pub struct Env<'a> {
    pub api: &'a Api,
    pub ui: &'a Ui,
    pub request_timeout: Duration,
}

/// A finished run, as `main` writes and prints it.
pub struct Finished {
    pub kind: &'static str,
    pub status: String,
    pub params: serde_json::Value,
    pub result: serde_json::Value,
    /// The table's title after "<kind> against <base URL>", e.g. ": pass".
    pub headline: Option<String>,
    pub rows: Rows,
    pub exit: u8,
}

/// A run as the overlay plots show it.
pub struct Overlay {
    pub spectrum: Vec<SpectrumPoint>,
    /// Completions per whole second of the window, at the middle of each second.
    pub throughput: Vec<(f64, f64)>,
}

impl Overlay {
    /// A load run: the latency of every request, and its throughput.
    pub fn of_load(l: &LoadSummary) -> Self {
        Self {
            spectrum: l.latency.spectrum.clone(),
            throughput: per_second(l),
        }
    }
}

/// What a run returns: its result and the parameters it ran with (the envelope's `params`).
pub type Ran<R> = Result<(R, serde_json::Value), WorkloadError>;

/// A kind is its subcommand's arguments (a `clap::Args` struct) and what it does with them.
pub trait Workload: Sync + 'static {
    /// The subcommand and the envelope's `kind`.
    const KIND: &'static str;
    type Result: Serialize + DeserializeOwned;

    /// Runs the workload: its result and the parameters it ran with.
    fn run(&self, env: &Env<'_>) -> impl Future<Output = Ran<Self::Result>>;

    /// The envelope's `status`.
    fn status(r: &Self::Result) -> String;

    /// Said after the table's title (a verdict).
    fn headline(_r: &Self::Result) -> Option<String> {
        None
    }

    fn exit(&self, _r: &Self::Result) -> u8 {
        0
    }

    /// The stdout table.
    fn rows(r: &Self::Result) -> Rows;

    /// The run on the overlay plots, if it has a place there.
    fn overlay(_r: &Self::Result) -> Option<Overlay> {
        None
    }

    /// The report section of one run.
    fn section(md: &mut Md, dir: &Path, stem: &str, r: &Self::Result) -> Result<(), ReportError>;

    /// The report sections of every run of this kind (a kind may add a heading or the
    /// pgbench figures).
    fn sections(
        md: &mut Md,
        dir: &Path,
        runs: &[(&Loaded, Self::Result)],
        _pg: &Pgbenches,
    ) -> Result<(), ReportError> {
        for (l, r) in runs {
            Self::section(md, dir, &l.stem, r)?;
        }
        Ok(())
    }
}

/// Runs `K` and prepares what `main` writes.
pub async fn execute<K: Workload>(env: &Env<'_>, kind: &K) -> anyhow::Result<Finished> {
    let (r, params) = kind.run(env).await?;
    Ok(Finished {
        kind: K::KIND,
        status: K::status(&r),
        params,
        result: serde_json::to_value(&r)?,
        headline: K::headline(&r),
        rows: K::rows(&r),
        exit: kind.exit(&r),
    })
}

/// What a report is made from: the results directory, its result files and pgbench figures.
pub struct Sources<'a> {
    pub dir: &'a Path,
    pub loaded: &'a [Loaded],
    pub pg: &'a Pgbenches,
}

/// The report's view of a kind, without its types.
pub trait Shown: Sync {
    fn kind(&self) -> &'static str;
    /// Writes the sections of the results of this kind; returns how many it used.
    fn report(&self, md: &mut Md, src: &Sources<'_>) -> Result<usize, ReportError>;
    fn overlay(&self, l: &Loaded) -> Option<Overlay>;
}

/// A [`Workload`] as the report lists it.
pub struct Listed<K>(PhantomData<K>);

impl<K> Listed<K> {
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

fn typed<K: Workload>(l: &Loaded) -> Option<K::Result> {
    if l.env.kind != K::KIND {
        return None;
    }
    serde_json::from_value(l.env.result.clone()).ok()
}

/// The results of kind `K` among `loaded`, typed.
pub fn runs<K: Workload>(loaded: &[Loaded]) -> Vec<(&Loaded, K::Result)> {
    loaded
        .iter()
        .filter_map(|l| typed::<K>(l).map(|r| (l, r)))
        .collect()
}

impl<K: Workload> Shown for Listed<K> {
    fn kind(&self) -> &'static str {
        K::KIND
    }

    fn report(&self, md: &mut Md, src: &Sources<'_>) -> Result<usize, ReportError> {
        let runs = runs::<K>(src.loaded);
        K::sections(md, src.dir, &runs, src.pg)?;
        Ok(runs.len())
    }

    fn overlay(&self, l: &Loaded) -> Option<Overlay> {
        typed::<K>(l).and_then(|r| K::overlay(&r))
    }
}
