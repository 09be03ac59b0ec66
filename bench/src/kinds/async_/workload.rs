//! `async`: checkouts with `Prefer: respond-async`; accept rate and time to final status,
//! observed by long-polling `GET /requests/{id}?wait=` or by the harness's webhook receiver.

use super::Async;
use crate::class::{classify, Class};
use crate::kind::{Env, Ran};
use crate::load::mix::{default_seed, rand_for};
use crate::load::{
    batch_init, run_load, Ctx, InitReport, LoadPlan, LoadSummary, RequestFn, WorkloadError,
};
use crate::stats::{Event, FinalOutcome, FinalSample, FinalSummary};
use crate::webhook::{Receiver, Registry, WebhookSummary};
use api_client::{Api, AsyncMode, RequestRecord, Status};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Upper bound on polls of one request (on top of the time bound).
const MAX_POLLS: u32 = 10_000;
/// A 404 for an ID returned by a 202 is retried this many times.
const MAX_NOT_FOUND: u32 = 3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AsyncResult {
    pub init: InitReport,
    /// "poll" or "webhook".
    pub observe: String,
    pub async_mode: AsyncMode,
    /// Submissions answered (any status) within the measurement window.
    pub submitted: u64,
    /// Submissions answered 202.
    pub accepted: u64,
    pub accept_rate: f64,
    /// Final statuses learned inside the window, per second of window.
    pub finals_per_s: f64,
    /// Submission latency and status codes (the accept side).
    pub submit: LoadSummary,
    /// Time from intended submission to final status, and outcomes.
    pub finals: FinalSummary,
    pub webhook: Option<WebhookSummary>,
    /// The first answer other than 202 (status and start of the body), if any.
    pub first_rejection: Option<String>,
}

fn outcome_of(r: &RequestRecord) -> FinalOutcome {
    match r.status.as_str() {
        "succeeded" => FinalOutcome::Succeeded,
        _ => FinalOutcome::Failed(r.reason.clone().unwrap_or_else(|| "unknown".into())),
    }
}

struct Shared {
    api: Api,
    orders: u64,
    seed: u64,
    mode: AsyncMode,
    callback: Option<String>,
    registry: Option<Arc<Registry>>,
    poll_wait: u64,
    final_timeout: Duration,
    missing: AtomicU64,
    first_rejection: std::sync::Mutex<Option<String>>,
}

impl Shared {
    /// Polls until final or `deadline`: (outcome, when learned, polls).
    async fn poll(&self, id: &str, deadline: Instant, wait: u64) -> (FinalOutcome, Instant, u32) {
        let mut polls = 0u32;
        let mut not_found = 0u32;
        let mut last_err: Option<String> = None;
        loop {
            let now = Instant::now();
            if now >= deadline || polls >= MAX_POLLS {
                let o = last_err.map_or(FinalOutcome::TimedOut, FinalOutcome::Error);
                return (o, now, polls);
            }
            let w = wait.min((deadline - now).as_secs());
            polls += 1;
            match self.api.poll_request(id, w).await {
                Ok(p) => match p.record {
                    Some(r) if r.is_final() => return (outcome_of(&r), Instant::now(), polls),
                    Some(_) => {
                        last_err = None;
                        if w == 0 {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    None => {
                        last_err = Some(p.status.to_string());
                        if p.status == 404 {
                            not_found += 1;
                            if not_found >= MAX_NOT_FOUND {
                                return (FinalOutcome::Error("404".into()), Instant::now(), polls);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Err(st) => {
                    last_err = Some(st.key());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn one(&self, ctx: Ctx) {
        let order = (rand_for(self.seed, ctx.seq, 1) % self.orders.max(1)).to_string();
        let sent = Instant::now();
        let sub = self
            .api
            .submit_async(&order, self.mode, self.callback.as_deref())
            .await;
        let done = Instant::now();
        let sub = match sub {
            Err(st) => {
                ctx.sample("checkout_async", st, Class::Error, sent, done);
                return;
            }
            Ok(s) => s,
        };
        let st = Status::Http(sub.status);
        let class = if sub.status == 202 {
            Class::Success
        } else {
            classify(st)
        };
        ctx.sample("checkout_async", st, class, sent, done);
        if sub.status != 202 {
            let mut first = self
                .first_rejection
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = Some(format!(
                    "{} {}",
                    sub.status,
                    sub.rejection.as_deref().unwrap_or("")
                ));
            }
            return;
        }
        let deadline = ctx.intended.max(sent) + self.final_timeout;
        let emit = |outcome, at: Instant, via, polls| {
            ctx.emit(Event::Final(FinalSample {
                intended: ctx.offset(ctx.intended),
                final_at: ctx.offset(at),
                outcome,
                via,
                polls,
            }))
        };
        let Some(id) = sub.request_id() else {
            emit(
                FinalOutcome::Error("no_request_id".into()),
                done,
                "response",
                0,
            );
            return;
        };
        if let Some(r) = sub.record.as_ref().filter(|r| r.is_final()) {
            emit(outcome_of(r), done, "response", 0);
            return;
        }
        match &self.registry {
            Some(reg) => {
                let rx = reg.expect(&id);
                match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(d)) => emit(outcome_of(&d.record), d.at, "webhook", 0),
                    _ => {
                        reg.give_up(&id);
                        self.missing.fetch_add(1, Ordering::Relaxed);
                        let (o, at, polls) = self
                            .poll(&id, Instant::now() + Duration::from_secs(5), 0)
                            .await;
                        emit(o, at, "poll_fallback", polls);
                    }
                }
            }
            None => {
                let (o, at, polls) = self.poll(&id, deadline, self.poll_wait).await;
                emit(o, at, "poll", polls);
            }
        }
    }
}

pub async fn run(env: &Env<'_>, a: &Async) -> Ran<AsyncResult> {
    let (api, ui, request_timeout) = (env.api, env.ui, env.request_timeout);
    if a.final_timeout.is_zero() {
        return Err(WorkloadError::Params("--final-timeout must be > 0".into()));
    }
    let poll_wait = a.poll_wait.min(30);
    let drain = a.final_timeout + request_timeout + Duration::from_secs(poll_wait + 10);
    let plan = LoadPlan::from_args(&a.load, drain)?;
    let seed = a.load.seed.unwrap_or_else(default_seed);
    let init = batch_init(api, &a.init, ui).await?;
    let receiver = if a.webhook {
        let r = Receiver::start(a.webhook_port, a.webhook_secret.as_deref()).await?;
        ui.note(format!(
            "webhook receiver listening on http://{}/hook",
            r.addr
        ));
        Some(r)
    } else {
        None
    };
    let callback = receiver.as_ref().map(|r| {
        a.webhook_url
            .clone()
            .unwrap_or_else(|| format!("http://{}/hook", r.addr))
    });
    let shared = Arc::new(Shared {
        api: api.clone(),
        orders: a.init.orders,
        seed,
        mode: a.async_mode,
        callback: callback.clone(),
        registry: receiver.as_ref().map(|r| r.registry.clone()),
        poll_wait,
        final_timeout: a.final_timeout,
        missing: AtomicU64::new(0),
        first_rejection: std::sync::Mutex::new(None),
    });
    ui.note(format!(
        "async: {} for {:.1} s, completion by {}",
        plan.mode.describe(),
        plan.duration.as_secs_f64(),
        if a.webhook { "webhook" } else { "long-polling" }
    ));
    let s2 = shared.clone();
    let f: RequestFn = Arc::new(move |ctx: Ctx| {
        let s = s2.clone();
        Box::pin(async move { s.one(ctx).await })
    });
    let outcome = run_load(&plan, ui, "async", f).await;
    let webhook = match (receiver, &callback) {
        (Some(r), Some(url)) => {
            let w = r.summary(url, shared.missing.load(Ordering::Relaxed));
            r.stop().await;
            Some(w)
        }
        _ => None,
    };
    let outcome = outcome?;
    let submit = LoadSummary::new(&plan, &outcome);
    let finals = outcome.recorder.final_summary();
    let accepted = submit.status_codes.get("202").copied().unwrap_or(0);
    let submitted = submit.completed;
    let window = outcome.window.as_secs_f64().max(1e-3);
    let params = serde_json::json!({
        "items": a.init.items, "stock": a.init.stock, "users": a.init.users,
        "credit": a.init.credit, "orders": a.init.orders, "skip_init": a.init.skip_init,
        "mode": plan.mode, "duration_s": plan.duration.as_secs_f64(),
        "warmup_s": plan.warmup.as_secs_f64(), "max_in_flight": plan.max_in_flight,
        "async_mode": a.async_mode, "webhook": a.webhook, "poll_wait_s": poll_wait,
        "final_timeout_s": a.final_timeout.as_secs_f64(), "seed": seed,
    });
    let first_rejection = shared
        .first_rejection
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if accepted == 0 && submitted > 0 {
        let why = first_rejection.clone().unwrap_or_default();
        if a.webhook {
            return Err(WorkloadError::Unsupported(format!(
                "webhook mode not available: no checkout with callback_url was accepted; the system answered {why}"
            )));
        }
        ui.note(format!(
            "async: no submission was accepted with 202 (answers: {:?}; first: {why})",
            submit.status_codes
        ));
    }
    Ok((
        AsyncResult {
            init,
            observe: if a.webhook { "webhook" } else { "poll" }.into(),
            async_mode: a.async_mode,
            submitted,
            accepted,
            accept_rate: if submitted > 0 {
                accepted as f64 / submitted as f64
            } else {
                0.0
            },
            finals_per_s: finals.finals_in_window as f64 / window,
            submit,
            finals,
            webhook,
            first_rejection,
        },
        params,
    ))
}
