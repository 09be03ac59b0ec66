//! Typed calls of the standard HTTP API (see API.md) over one shared connection pool.

use reqwest::{Client, Method};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Errors of typed API calls used for set-up and verification.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    #[error("{method} {path}: {kind} error: {source}")]
    Transport {
        method: Method,
        path: String,
        kind: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {path} answered {status}: {body}")]
    Status {
        method: Method,
        path: String,
        status: u16,
        body: String,
    },
    #[error("{method} {path}: unexpected body ({detail}): {body}")]
    Body {
        method: Method,
        path: String,
        detail: String,
        body: String,
    },
}

/// What a request ended with: an HTTP status or a transport failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Http(u16),
    Timeout,
    Connect,
    Transport,
}

impl Status {
    pub fn from_error(e: &reqwest::Error) -> Status {
        if e.is_timeout() {
            Status::Timeout
        } else if e.is_connect() {
            Status::Connect
        } else {
            Status::Transport
        }
    }

    /// Key used in the JSON `status_codes` maps.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Http(c) => write!(f, "{c}"),
            Status::Timeout => f.write_str("timeout"),
            Status::Connect => f.write_str("connect_error"),
            Status::Transport => f.write_str("transport_error"),
        }
    }
}

/// How the harness counts an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// 2xx: it happened.
    Success,
    /// 4xx: it did not happen, nothing changed.
    Business,
    /// 5xx, 1xx/3xx, timeouts, connection errors: outcome unknown.
    Error,
}

/// Classifies a synchronous answer. 2xx is success except 202, which a synchronous call must
/// never get (API.md: "a checkout must never answer … 202 … unless the client asked for
/// async"): it does not say whether anything happened, so it counts as an error.
pub fn classify(status: Status) -> Class {
    match status {
        Status::Http(202) => Class::Error,
        Status::Http(c) if (200..300).contains(&c) => Class::Success,
        Status::Http(c) if (400..500).contains(&c) => Class::Business,
        _ => Class::Error,
    }
}

/// How to ask for an asynchronous checkout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AsyncMode {
    /// `Prefer: respond-async` header (RFC 7240).
    Header,
    /// `?mode=async` query parameter.
    Query,
}

/// Accepts a JSON string or integer as an ID.
fn de_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        I(i64),
        U(u64),
    }
    Ok(match Id::deserialize(d)? {
        Id::S(s) => s,
        Id::I(i) => i.to_string(),
        Id::U(u) => u.to_string(),
    })
}

#[derive(Debug, Deserialize)]
struct ItemCreated {
    #[serde(deserialize_with = "de_id")]
    item_id: String,
}

#[derive(Debug, Deserialize)]
struct UserCreated {
    #[serde(deserialize_with = "de_id")]
    user_id: String,
}

#[derive(Debug, Deserialize)]
struct OrderCreated {
    #[serde(deserialize_with = "de_id")]
    order_id: String,
}

/// `GET /stock/find/{item_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ItemState {
    pub stock: i64,
    pub price: i64,
}

#[derive(Debug, Deserialize)]
struct UserState {
    credit: i64,
}

/// One `[item_id, quantity]` pair of an order.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct OrderLine(#[serde(deserialize_with = "de_id")] pub String, pub i64);

/// `GET /orders/find/{order_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct OrderState {
    pub paid: bool,
    #[serde(default)]
    pub items: Vec<OrderLine>,
    #[serde(deserialize_with = "de_id")]
    pub user_id: String,
    pub total_cost: i64,
}

/// The request record of the asynchronous extension.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct RequestRecord {
    #[serde(deserialize_with = "de_id")]
    pub request_id: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

impl RequestRecord {
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed")
    }
}

/// Answer to an asynchronous checkout submission.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub status: u16,
    pub record: Option<RequestRecord>,
    pub location: Option<String>,
    /// Start of the body when the answer was not 202.
    pub rejection: Option<String>,
}

impl Submitted {
    /// The request ID from the body, or else from the `Location` header.
    pub fn request_id(&self) -> Option<String> {
        if let Some(r) = &self.record {
            return Some(r.request_id.clone());
        }
        let loc = self.location.as_deref()?;
        let path = loc.split(['?', '#']).next().unwrap_or(loc);
        path.rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }
}

/// Answer to `GET /requests/{id}`.
#[derive(Clone, Debug)]
pub struct Polled {
    pub status: u16,
    pub record: Option<RequestRecord>,
}

struct Exchange {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

/// Percent-encodes one path segment (IDs are opaque strings).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let mut t: String = s.chars().take(300).collect();
    if s.chars().count() > 300 {
        t.push('…');
    }
    t
}

/// A cheap-to-clone handle on the target system.
#[derive(Clone)]
pub struct Api {
    http: Client,
    base: Arc<str>,
}

impl Api {
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ApiError> {
        let http = Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("bench/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ApiError::Build)?;
        Ok(Self {
            http,
            base: Arc::from(base_url.trim_end_matches('/')),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<Exchange, reqwest::Error> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.bytes().await?.to_vec();
        Ok(Exchange {
            status,
            location,
            body,
        })
    }

    /// A request whose body does not matter: only its status (load generation).
    pub async fn probe(&self, method: Method, path: &str) -> Status {
        match self.exchange(method, path, &[], None).await {
            Ok(x) => Status::Http(x.status),
            Err(e) => Status::from_error(&e),
        }
    }

    /// A set-up or verification call that must answer 2xx.
    async fn expect_ok(
        &self,
        method: Method,
        path: &str,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, ApiError> {
        let x = self
            .exchange(method.clone(), path, &[], timeout)
            .await
            .map_err(|e| ApiError::Transport {
                method: method.clone(),
                path: path.to_string(),
                kind: match Status::from_error(&e) {
                    Status::Timeout => "timeout",
                    Status::Connect => "connect",
                    _ => "transport",
                },
                source: e,
            })?;
        if !(200..300).contains(&x.status) {
            return Err(ApiError::Status {
                method,
                path: path.to_string(),
                status: x.status,
                body: snippet(&x.body),
            });
        }
        Ok(x.body)
    }

    async fn expect_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<T, ApiError> {
        let body = self.expect_ok(method.clone(), path, None).await?;
        serde_json::from_slice(&body).map_err(|e| ApiError::Body {
            method,
            path: path.to_string(),
            detail: e.to_string(),
            body: snippet(&body),
        })
    }

    pub async fn batch_init_stock(
        &self,
        n: u64,
        stock: i64,
        price: i64,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        let p = format!("/stock/batch_init/{n}/{stock}/{price}");
        self.expect_ok(Method::POST, &p, Some(timeout))
            .await
            .map(drop)
    }

    pub async fn batch_init_users(
        &self,
        n: u64,
        money: i64,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        let p = format!("/payment/batch_init/{n}/{money}");
        self.expect_ok(Method::POST, &p, Some(timeout))
            .await
            .map(drop)
    }

    pub async fn batch_init_orders(
        &self,
        n: u64,
        n_items: u64,
        n_users: u64,
        price: i64,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        let p = format!("/orders/batch_init/{n}/{n_items}/{n_users}/{price}");
        self.expect_ok(Method::POST, &p, Some(timeout))
            .await
            .map(drop)
    }

    pub async fn create_item(&self, price: i64) -> Result<String, ApiError> {
        let r: ItemCreated = self
            .expect_json(Method::POST, &format!("/stock/item/create/{price}"))
            .await?;
        Ok(r.item_id)
    }

    pub async fn add_stock(&self, item: &str, amount: i64) -> Result<(), ApiError> {
        let p = format!("/stock/add/{}/{amount}", seg(item));
        self.expect_ok(Method::POST, &p, None).await.map(drop)
    }

    pub async fn create_user(&self) -> Result<String, ApiError> {
        let r: UserCreated = self
            .expect_json(Method::POST, "/payment/create_user")
            .await?;
        Ok(r.user_id)
    }

    pub async fn add_funds(&self, user: &str, amount: i64) -> Result<(), ApiError> {
        let p = format!("/payment/add_funds/{}/{amount}", seg(user));
        self.expect_ok(Method::POST, &p, None).await.map(drop)
    }

    pub async fn create_order(&self, user: &str) -> Result<String, ApiError> {
        let r: OrderCreated = self
            .expect_json(Method::POST, &format!("/orders/create/{}", seg(user)))
            .await?;
        Ok(r.order_id)
    }

    pub async fn add_item(&self, order: &str, item: &str, qty: i64) -> Result<(), ApiError> {
        let p = format!("/orders/addItem/{}/{}/{qty}", seg(order), seg(item));
        self.expect_ok(Method::POST, &p, None).await.map(drop)
    }

    pub async fn find_item(&self, item: &str) -> Result<ItemState, ApiError> {
        self.expect_json(Method::GET, &format!("/stock/find/{}", seg(item)))
            .await
    }

    pub async fn find_user(&self, user: &str) -> Result<i64, ApiError> {
        let u: UserState = self
            .expect_json(Method::GET, &format!("/payment/find_user/{}", seg(user)))
            .await?;
        Ok(u.credit)
    }

    pub async fn find_order(&self, order: &str) -> Result<OrderState, ApiError> {
        self.expect_json(Method::GET, &format!("/orders/find/{}", seg(order)))
            .await
    }

    /// A plain (synchronous) checkout.
    pub async fn checkout(&self, order: &str) -> Status {
        self.probe(Method::POST, &format!("/orders/checkout/{}", seg(order)))
            .await
    }

    /// An asynchronous checkout; `callback` is passed as `callback_url`.
    pub async fn submit_async(
        &self,
        order: &str,
        mode: AsyncMode,
        callback: Option<&str>,
    ) -> Result<Submitted, Status> {
        let mut path = format!("/orders/checkout/{}", seg(order));
        let mut query = Vec::new();
        if mode == AsyncMode::Query {
            query.push("mode=async".to_string());
        }
        if let Some(cb) = callback {
            query.push(format!("callback_url={}", seg(cb)));
        }
        if !query.is_empty() {
            path.push('?');
            path.push_str(&query.join("&"));
        }
        let headers: &[(&str, &str)] = match mode {
            AsyncMode::Header => &[("prefer", "respond-async")],
            AsyncMode::Query => &[],
        };
        let x = self
            .exchange(Method::POST, &path, headers, None)
            .await
            .map_err(|e| Status::from_error(&e))?;
        let record = if x.status == 202 {
            serde_json::from_slice(&x.body).ok()
        } else {
            None
        };
        let rejection = (x.status != 202).then(|| snippet(&x.body));
        Ok(Submitted {
            status: x.status,
            record,
            location: x.location,
            rejection,
        })
    }

    /// `GET /requests/{id}?wait=…` (long poll, at most 30 s per the contract).
    pub async fn poll_request(&self, id: &str, wait_s: u64) -> Result<Polled, Status> {
        let wait_s = wait_s.min(30);
        let path = format!("/requests/{}?wait={wait_s}", seg(id));
        let timeout = Duration::from_secs(wait_s + 15);
        let x = self
            .exchange(Method::GET, &path, &[], Some(timeout))
            .await
            .map_err(|e| Status::from_error(&e))?;
        let record = if (200..300).contains(&x.status) {
            serde_json::from_slice(&x.body).ok()
        } else {
            None
        };
        Ok(Polled {
            status: x.status,
            record,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(Status::Http(200)), Class::Success);
        assert_eq!(classify(Status::Http(204)), Class::Success);
        assert_eq!(classify(Status::Http(202)), Class::Error);
        assert_eq!(classify(Status::Http(400)), Class::Business);
        assert_eq!(classify(Status::Http(404)), Class::Business);
        assert_eq!(classify(Status::Http(409)), Class::Business);
        assert_eq!(classify(Status::Http(500)), Class::Error);
        assert_eq!(classify(Status::Http(503)), Class::Error);
        assert_eq!(classify(Status::Http(302)), Class::Error);
        assert_eq!(classify(Status::Timeout), Class::Error);
        assert_eq!(classify(Status::Connect), Class::Error);
        assert_eq!(Status::Http(404).key(), "404");
        assert_eq!(Status::Timeout.key(), "timeout");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("abc-1_2.3~"), "abc-1_2.3~");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert_eq!(
            seg("http://127.0.0.1:9/hook"),
            "http%3A%2F%2F127.0.0.1%3A9%2Fhook"
        );
    }

    #[test]
    fn lenient_ids_and_order_lines() {
        let o: OrderState = serde_json::from_str(
            r#"{"order_id":"7","paid":true,"items":[["3",2],[4,1]],"user_id":12,"total_cost":3}"#,
        )
        .expect("parse");
        assert!(o.paid);
        assert_eq!(
            o.items,
            vec![OrderLine("3".into(), 2), OrderLine("4".into(), 1)]
        );
        assert_eq!(o.user_id, "12");
        let r: RequestRecord = serde_json::from_str(
            r#"{"request_id":"r1","kind":"checkout","status":"failed","reason":"insufficient_stock"}"#,
        )
        .expect("parse");
        assert!(r.is_final());
        assert_eq!(r.reason.as_deref(), Some("insufficient_stock"));
    }

    #[test]
    fn request_id_from_location() {
        let s = Submitted {
            status: 202,
            record: None,
            location: Some("/requests/0193-abc?x=1".into()),
            rejection: None,
        };
        assert_eq!(s.request_id().as_deref(), Some("0193-abc"));
        let s = Submitted {
            status: 202,
            record: None,
            location: None,
            rejection: None,
        };
        assert_eq!(s.request_id(), None);
    }
}
