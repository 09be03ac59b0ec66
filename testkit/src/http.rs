//! A small HTTP client for the standard API.

use serde_json::Value;

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
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
        Self {
            base: base.into(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .timeout(std::time::Duration::from_secs(120))
                .build()
                .expect("a reqwest client builds"),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn raw(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str) -> Answer {
        self.send(self.http.post(format!("{}{path}", self.base)))
            .await
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

    /// Helpers for the standard flows.
    pub async fn create_item(&self, price: i64) -> String {
        let a = self.post(&format!("/stock/item/create/{price}")).await;
        assert_eq!(a.status, 200, "{a:?}");
        a.str("item_id")
    }

    pub async fn add_stock(&self, item: &str, amount: i64) {
        let a = self.post(&format!("/stock/add/{item}/{amount}")).await;
        assert_eq!(a.status, 200, "{a:?}");
    }

    pub async fn stock(&self, item: &str) -> i64 {
        let a = self.get(&format!("/stock/find/{item}")).await;
        assert_eq!(a.status, 200, "{a:?}");
        a.i64("stock")
    }

    pub async fn create_user(&self, credit: i64) -> String {
        let a = self.post("/payment/create_user").await;
        assert_eq!(a.status, 200, "{a:?}");
        let user = a.str("user_id");
        if credit > 0 {
            let a = self
                .post(&format!("/payment/add_funds/{user}/{credit}"))
                .await;
            assert_eq!(a.status, 200, "{a:?}");
        }
        user
    }

    pub async fn credit(&self, user: &str) -> i64 {
        let a = self.get(&format!("/payment/find_user/{user}")).await;
        assert_eq!(a.status, 200, "{a:?}");
        a.i64("credit")
    }

    pub async fn create_order(&self, user: &str) -> String {
        let a = self.post(&format!("/orders/create/{user}")).await;
        assert_eq!(a.status, 200, "{a:?}");
        a.str("order_id")
    }

    pub async fn add_item(&self, order: &str, item: &str, quantity: i64) {
        let a = self
            .post(&format!("/orders/addItem/{order}/{item}/{quantity}"))
            .await;
        assert_eq!(a.status, 200, "{a:?}");
    }

    /// An order of one unit of a fresh item (`price`, `stock` units) by a
    /// fresh user with `credit`.
    pub async fn order_of_one(&self, credit: i64, price: i64, stock: i64) -> String {
        let user = self.create_user(credit).await;
        let item = self.create_item(price).await;
        if stock > 0 {
            self.add_stock(&item, stock).await;
        }
        let order = self.create_order(&user).await;
        self.add_item(&order, &item, 1).await;
        order
    }

    /// `POST /orders/checkout/{order}` with `Prefer: respond-async`.
    pub async fn checkout_async(&self, order: &str) -> Answer {
        self.send(
            self.http
                .post(format!("{}/orders/checkout/{order}", self.base))
                .header("Prefer", "respond-async"),
        )
        .await
    }

    /// `POST /orders/checkout/{order}?callback_url=...`.
    pub async fn checkout_with_callback(&self, order: &str, url: &str) -> Answer {
        self.post(&format!(
            "/orders/checkout/{order}?callback_url={}",
            urlencode(url)
        ))
        .await
    }

    pub async fn order(&self, order: &str) -> Value {
        let a = self.get(&format!("/orders/find/{order}")).await;
        assert_eq!(a.status, 200, "{a:?}");
        a.body
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
