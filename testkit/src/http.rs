//! The tests' client of the standard API: the shared typed client (`api-client`) for the
//! standard flows, and raw requests whose answer a test inspects.

use api_client::{seg, Api, ApiError, Method};
use serde_json::Value;

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub use api_client::seg as urlencode;

#[derive(Clone)]
pub struct Client {
    api: Api,
}

/// What [`Client::one_unit_order`] made.
#[derive(Debug, Clone)]
pub struct OneUnitOrder {
    pub user: String,
    pub item: String,
    pub order: String,
}

/// Status and body (JSON, or `Value::Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// `body[key]` as a string (IDs are strings).
    pub fn str(&self, key: &str) -> String {
        self.body[key]
            .as_str()
            .unwrap_or_else(|| panic!("no string {key} in {}", self.body))
            .to_owned()
    }
    pub fn i64(&self, key: &str) -> i64 {
        self.body[key]
            .as_i64()
            .unwrap_or_else(|| panic!("no integer {key} in {}", self.body))
    }
}

impl Client {
    pub fn new(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .expect("a reqwest client builds");
        Self {
            api: Api::from_client(http, &base.into()),
        }
    }

    pub fn base(&self) -> &str {
        self.api.base_url()
    }

    pub fn raw(&self) -> &reqwest::Client {
        self.api.http()
    }

    /// The typed client of the standard API underneath.
    pub fn api(&self) -> &Api {
        &self.api
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.raw().get(self.api.url(path))).await
    }

    pub async fn post(&self, path: &str) -> Answer {
        self.send(self.raw().post(self.api.url(path))).await
    }

    /// The body of `GET url` as text (`/metrics`, say); any status.
    pub async fn text(&self, url: &str) -> String {
        let resp = self.raw().get(url).send().await;
        let resp = resp.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        resp.text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: body: {e}"))
    }

    /// Sends a prepared request (for custom headers or bodies).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        // A GET may be sent again: after a test restarts a server on the
        // same port, the first request can land on a pooled connection
        // the old process left behind.
        let retry = req
            .try_clone()
            .and_then(|r| r.build().ok())
            .filter(|r| r.method() == reqwest::Method::GET)
            .and_then(|_| req.try_clone());
        let resp = match (req.send().await, retry) {
            (Ok(resp), _) => resp,
            (Err(e), Some(again)) if e.is_connect() || e.is_request() => {
                again.send().await.expect("HTTP request failed twice")
            }
            (Err(e), _) => panic!("HTTP request failed: {e}"),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("cannot read HTTP body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            headers,
        }
    }

    /// Helpers for the standard flows: each must succeed.
    pub async fn create_item(&self, price: i64) -> String {
        must(self.api.create_item(price).await)
    }

    pub async fn add_stock(&self, item: &str, amount: i64) {
        must(self.api.add_stock(item, amount).await)
    }

    pub async fn stock(&self, item: &str) -> i64 {
        must(self.api.find_item(item).await).stock
    }

    pub async fn create_user(&self, credit: i64) -> String {
        let user = must(self.api.create_user().await);
        if credit > 0 {
            must(self.api.add_funds(&user, credit).await);
        }
        user
    }

    pub async fn credit(&self, user: &str) -> i64 {
        must(self.api.find_user(user).await)
    }

    pub async fn create_order(&self, user: &str) -> String {
        must(self.api.create_order(user).await)
    }

    pub async fn add_item(&self, order: &str, item: &str, quantity: i64) {
        must(self.api.add_item(order, item, quantity).await)
    }

    /// A fresh user with `credit`, a fresh item (`price`, `stock` units) and
    /// an order by that user of one unit of that item.
    pub async fn one_unit_order(&self, credit: i64, price: i64, stock: i64) -> OneUnitOrder {
        let user = self.create_user(credit).await;
        let item = self.create_item(price).await;
        if stock > 0 {
            self.add_stock(&item, stock).await;
        }
        let order = self.create_order(&user).await;
        self.add_item(&order, &item, 1).await;
        OneUnitOrder { user, item, order }
    }

    /// [`Client::one_unit_order`]'s order alone.
    pub async fn order_of_one(&self, credit: i64, price: i64, stock: i64) -> String {
        self.one_unit_order(credit, price, stock).await.order
    }

    /// `POST /orders/checkout/{order}` with `Prefer: respond-async`.
    pub async fn checkout_async(&self, order: &str) -> Answer {
        self.send(
            self.raw()
                .post(self.api.url(&format!("/orders/checkout/{order}")))
                .header("Prefer", "respond-async"),
        )
        .await
    }

    /// `POST /orders/checkout/{order}?callback_url=...`.
    pub async fn checkout_with_callback(&self, order: &str, url: &str) -> Answer {
        self.post(&format!(
            "/orders/checkout/{order}?callback_url={}",
            seg(url)
        ))
        .await
    }

    pub async fn order(&self, order: &str) -> Value {
        must(
            self.api
                .json(Method::GET, &format!("/orders/find/{}", seg(order)))
                .await,
        )
    }
}

/// The value of a call that must succeed; a failure fails the test with the call and its answer.
fn must<T>(r: Result<T, ApiError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}
