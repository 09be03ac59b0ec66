//! `ceiling`: the harness against a trivial endpoint, to bound what it can measure.

use super::mix::{Mix, OpKind};
use super::stress::{request_fn, Target};
use super::{run_load, LoadMode, LoadPlan, LoadSummary, WorkloadError};
use crate::cli::CeilingArgs;
use crate::progress::Ui;
use api_client::Api;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CeilingResult {
    pub path: String,
    pub load: LoadSummary,
}

pub async fn run(
    api: &Api,
    a: &CeilingArgs,
    ui: &Ui,
    request_timeout: Duration,
) -> Result<(CeilingResult, serde_json::Value), WorkloadError> {
    if a.clients == 0 || a.duration.is_zero() {
        return Err(WorkloadError::Params(
            "--clients and --duration must be > 0".into(),
        ));
    }
    let plan = LoadPlan {
        mode: LoadMode::Closed { clients: a.clients },
        duration: a.duration,
        warmup: a.warmup,
        max_requests: None,
        max_in_flight: a.clients,
        co_interval: None,
        drain_timeout: request_timeout + Duration::from_secs(5),
    };
    let target = Arc::new(Target {
        items: 1,
        users: 1,
        orders: 1,
        health_path: a.path.clone(),
    });
    ui.note(format!(
        "ceiling: GET {} with {} clients for {:.1} s",
        a.path,
        a.clients,
        a.duration.as_secs_f64()
    ));
    let f = request_fn(
        api.clone(),
        Arc::new(Mix::single(OpKind::Health)),
        target,
        1,
    );
    let outcome = run_load(&plan, ui, "ceiling", f).await?;
    let load = LoadSummary::new(&plan, &outcome);
    let params = serde_json::json!({
        "path": a.path, "clients": a.clients,
        "duration_s": a.duration.as_secs_f64(), "warmup_s": a.warmup.as_secs_f64(),
    });
    Ok((
        CeilingResult {
            path: a.path.clone(),
            load,
        },
        params,
    ))
}
