//! The API operations of the load runs (`stress`, `sweep`, `ceiling`) on random keys, and the
//! request function that draws them from a mix.

use super::mix::{rand_for, splitmix64, Mix, OpKind};
use super::{Ctx, InitArgs, RequestFn};
use crate::class::classify;
use api_client::{seg, Api, Method, Status};
use std::sync::Arc;
use tokio::time::Instant;

/// The key space the operations draw from.
#[derive(Clone, Debug)]
pub struct Target {
    pub items: u64,
    pub users: u64,
    pub orders: u64,
    pub health_path: String,
    /// Checkouts take order `first + seq` (each order once, while the numbers last) instead of
    /// a random one: a repeat checkout of a paid order is cheap and would flatter the figures.
    pub checkout_from: Option<u64>,
}

impl Target {
    /// The data `batch_init` created, and the standard health endpoint.
    pub fn of(init: &InitArgs) -> Self {
        Self {
            items: init.items,
            users: init.users,
            orders: init.orders,
            health_path: "/health".into(),
            checkout_from: None,
        }
    }

    /// No data: only `GET path` (the harness's ceiling).
    pub fn health(path: &str) -> Self {
        Self {
            items: 1,
            users: 1,
            orders: 1,
            health_path: path.into(),
            checkout_from: None,
        }
    }

    /// The same data, checkouts of orders `first`, `first + 1`, … (request `seq` takes
    /// `first + seq`).
    pub fn checkout_in_sequence(self, first: u64) -> Self {
        Self {
            checkout_from: Some(first),
            ..self
        }
    }

    /// The order that request `seq` (random number `r`) checks out.
    fn checkout_order(&self, r: u64, seq: u64) -> String {
        match self.checkout_from {
            Some(first) => (first.wrapping_add(seq) % self.orders.max(1)).to_string(),
            None => pick(r, self.orders, 1),
        }
    }
}

fn pick(r: u64, n: u64, stream: u64) -> String {
    (splitmix64(r ^ stream) % n.max(1)).to_string()
}

/// Performs one operation on random keys derived from `r` (request `seq`).
async fn execute(api: &Api, op: OpKind, r: u64, seq: u64, t: &Target) -> Status {
    let order = || pick(r, t.orders, 1);
    let item = || pick(r, t.items, 2);
    let user = || pick(r, t.users, 3);
    let (method, path) = match op {
        OpKind::Checkout => return api.checkout(&t.checkout_order(r, seq)).await,
        OpKind::FindOrder => (Method::GET, format!("/orders/find/{}", order())),
        OpKind::FindItem => (Method::GET, format!("/stock/find/{}", item())),
        OpKind::FindUser => (Method::GET, format!("/payment/find_user/{}", user())),
        OpKind::AddStock => (Method::POST, format!("/stock/add/{}/1", item())),
        OpKind::AddFunds => (Method::POST, format!("/payment/add_funds/{}/1", user())),
        OpKind::AddItem => (
            Method::POST,
            format!("/orders/addItem/{}/{}/1", order(), item()),
        ),
        OpKind::Health if t.health_path.starts_with('/') => (Method::GET, t.health_path.clone()),
        OpKind::Health => (Method::GET, format!("/{}", seg(&t.health_path))),
    };
    api.probe(method, &path).await
}

/// The request function of `stress`, `sweep` and `ceiling`.
pub fn request_fn(api: Api, mix: Arc<Mix>, target: Arc<Target>, seed: u64) -> RequestFn {
    Arc::new(move |ctx: Ctx| {
        let (api, mix, target) = (api.clone(), mix.clone(), target.clone());
        Box::pin(async move {
            let op = mix.pick(rand_for(seed, ctx.seq, 0));
            let sent = Instant::now();
            let status = execute(&api, op, rand_for(seed, ctx.seq, 1), ctx.seq, &target).await;
            ctx.sample(op.name(), status, classify(status), sent, Instant::now());
        })
    })
}
