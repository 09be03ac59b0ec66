//! Typed calls of the standard HTTP API over one shared connection pool.

use crate::records::{
    AsyncMode, ItemCreated, ItemState, OrderCreated, OrderState, Polled, Submitted, UserCreated,
    UserState,
};
use crate::Status;
use bytes::Bytes;
use reqwest::{Client, Method};
use serde::de::DeserializeOwned;
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

struct Exchange {
    status: u16,
    location: Option<String>,
    body: Bytes,
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
    /// `Authorization` of the setup calls (`batch_init`), when the deployment
    /// puts them behind a token.
    setup_auth: Option<Arc<str>>,
}

impl Api {
    /// A client tuned for driving load: every idle connection kept for reuse, no proxy, no
    /// Nagle delay, `timeout` per request (a call may set its own).
    pub fn new(base_url: &str, timeout: Duration, user_agent: &str) -> Result<Self, ApiError> {
        let http = Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(user_agent)
            .build()
            .map_err(ApiError::Build)?;
        Ok(Self::from_client(http, base_url))
    }

    /// Typed calls over a client configured by the caller.
    pub fn from_client(http: Client, base_url: &str) -> Self {
        Self {
            http,
            base: Arc::from(base_url.trim_end_matches('/')),
            setup_auth: None,
        }
    }

    /// Sends `token` as a bearer token with every `batch_init` call.
    pub fn with_setup_token(mut self, token: Option<&str>) -> Self {
        self.setup_auth = token.map(|t| Arc::from(format!("Bearer {t}")));
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The underlying client, for requests the typed calls do not cover.
    pub fn http(&self) -> &Client {
        &self.http
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<Exchange, reqwest::Error> {
        let mut req = self.http.request(method, self.url(path));
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
        let body = resp.bytes().await?;
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
    ) -> Result<Bytes, ApiError> {
        self.expect_ok_with(method, path, &[], timeout).await
    }

    async fn expect_ok_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<Bytes, ApiError> {
        let x = self
            .exchange(method.clone(), path, headers, timeout)
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

    /// A call that must answer 2xx with a JSON body of type `T`.
    pub async fn json<T: DeserializeOwned>(
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
        self.setup(&p, timeout).await
    }

    pub async fn batch_init_users(
        &self,
        n: u64,
        money: i64,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        let p = format!("/payment/batch_init/{n}/{money}");
        self.setup(&p, timeout).await
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
        self.setup(&p, timeout).await
    }

    /// A setup call, with the setup token if there is one.
    async fn setup(&self, path: &str, timeout: Duration) -> Result<(), ApiError> {
        let auth = self.setup_auth.as_deref().map(|a| ("authorization", a));
        let headers: Vec<_> = auth.into_iter().collect();
        self.expect_ok_with(Method::POST, path, &headers, Some(timeout))
            .await
            .map(drop)
    }

    pub async fn create_item(&self, price: i64) -> Result<String, ApiError> {
        let r: ItemCreated = self
            .json(Method::POST, &format!("/stock/item/create/{price}"))
            .await?;
        Ok(r.item_id)
    }

    pub async fn add_stock(&self, item: &str, amount: i64) -> Result<(), ApiError> {
        let p = format!("/stock/add/{}/{amount}", seg(item));
        self.expect_ok(Method::POST, &p, None).await.map(drop)
    }

    pub async fn create_user(&self) -> Result<String, ApiError> {
        let r: UserCreated = self.json(Method::POST, "/payment/create_user").await?;
        Ok(r.user_id)
    }

    pub async fn add_funds(&self, user: &str, amount: i64) -> Result<(), ApiError> {
        let p = format!("/payment/add_funds/{}/{amount}", seg(user));
        self.expect_ok(Method::POST, &p, None).await.map(drop)
    }

    pub async fn create_order(&self, user: &str) -> Result<String, ApiError> {
        let r: OrderCreated = self
            .json(Method::POST, &format!("/orders/create/{}", seg(user)))
            .await?;
        Ok(r.order_id)
    }

    pub async fn add_item(&self, order: &str, item: &str, qty: i64) -> Result<(), ApiError> {
        let p = format!("/orders/addItem/{}/{}/{qty}", seg(order), seg(item));
        self.expect_ok(Method::POST, &p, None).await.map(drop)
    }

    pub async fn find_item(&self, item: &str) -> Result<ItemState, ApiError> {
        self.json(Method::GET, &format!("/stock/find/{}", seg(item)))
            .await
    }

    pub async fn find_user(&self, user: &str) -> Result<i64, ApiError> {
        let u: UserState = self
            .json(Method::GET, &format!("/payment/find_user/{}", seg(user)))
            .await?;
        Ok(u.credit)
    }

    pub async fn find_order(&self, order: &str) -> Result<OrderState, ApiError> {
        self.json(Method::GET, &format!("/orders/find/{}", seg(order)))
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
    fn segments_are_encoded() {
        assert_eq!(seg("abc-1_2.3~"), "abc-1_2.3~");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert_eq!(
            seg("http://127.0.0.1:9/hook"),
            "http%3A%2F%2F127.0.0.1%3A9%2Fhook"
        );
    }
}
