//! Request/reply between `api` and the services over NATS services.
//!
//! Each endpoint is a request type implementing [`Endpoint`], which names the
//! service, the endpoint and the response type, so the client and the server
//! side cannot disagree on the contract. Services register with the
//! async-nats `service` API: `$SRV.PING/INFO/STATS` discovery works, and
//! replicas share the load through the service's queue group.
//! Business refusals travel in the standard `Nats-Service-Error` and
//! `Nats-Service-Error-Code` headers, with HTTP-like codes.

use std::{future::Future, sync::Arc, time::Duration};

use async_nats::{
    service::{endpoint::Endpoint as NatsEndpoint, Request as NatsRequest},
    HeaderMap,
};
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cancel::Calls;
use contracts::{
    endpoint::{Endpoint, Refusal, Rejection, REQUEST_ID_HEADER},
    Subjects,
};

/// A database fault, as a service answers it: a value out of range is the
/// caller's (400), anything else ours (logged, 500).
impl From<crate::db::DbError> for Rejection {
    fn from(e: crate::db::DbError) -> Self {
        if e.is_out_of_range() {
            Rejection::invalid("the result would not fit a 64-bit integer")
        } else {
            tracing::error!(error = %e, "database failure");
            Rejection::internal("database unavailable")
        }
    }
}

/// Serves one endpoint until the subscription ends, running up to
/// `concurrency` requests at once (more wait in the subscription buffer).
/// A [cancellable](Endpoint::CANCELLABLE) call's token is cancelled by its
/// caller's cancel message (through `calls`) or at its caller's deadline;
/// the handler is then awaited to clean up.
pub async fn serve<E, H, Fut>(endpoint: NatsEndpoint, concurrency: usize, calls: Calls, handler: H)
where
    E: Endpoint,
    H: Fn(E, CancellationToken) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<E::Response, Rejection>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut endpoint = endpoint;
    while let Some(request) = endpoint.next().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (handler, calls) = (handler.clone(), calls.clone());
        tokio::spawn(async move {
            handle::<E, H, Fut>(request, calls, handler).await;
            drop(permit);
        });
    }
}

async fn handle<E, H, Fut>(request: NatsRequest, calls: Calls, handler: H)
where
    E: Endpoint,
    H: Fn(E, CancellationToken) -> Fut,
    Fut: Future<Output = Result<E::Response, Rejection>>,
{
    let request_id = request
        .message
        .headers
        .as_ref()
        .and_then(|h| h.get(REQUEST_ID_HEADER))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    let span =
        tracing::debug_span!("rpc", endpoint = %format!("{}.{}", E::SERVICE, E::NAME), %request_id);
    async {
        let timer = crate::metrics::RPC_DURATION
            .with_label_values(&[E::NAME])
            .start_timer();
        let result = match serde_json::from_slice::<E>(&request.message.payload) {
            Ok(req) if E::CANCELLABLE => {
                let call = calls.register(request.message.headers.as_ref(), E::MIN_TIMEOUT);
                let work = handler(req, call.token.clone());
                let mut work = std::pin::pin!(work);
                tokio::select! {
                    result = &mut work => result,
                    _ = tokio::time::sleep(call.deadline) => {
                        tracing::warn!(deadline = ?call.deadline, "caller's deadline passed: cancelling");
                        call.token.cancel();
                        work.await
                    }
                }
            }
            Ok(req) => handler(req, CancellationToken::new()).await,
            Err(e) => Err(Rejection::invalid(format!("malformed request: {e}"))),
        };
        let reply = match result {
            Ok(resp) => serde_json::to_vec(&resp)
                .map(Bytes::from)
                .map_err(|e| Rejection::internal(format!("cannot encode response: {e}"))),
            Err(r) => Err(r),
        };
        let code = match &reply {
            Ok(_) => 200,
            Err(r) => r.kind.code(),
        };
        crate::metrics::RPC_REQUESTS
            .with_label_values(&[E::NAME, &code.to_string()])
            .inc();
        if code >= 500 {
            tracing::warn!(code, "request failed");
        }
        let reply = reply.map_err(|r| async_nats::service::error::Error {
            code: r.kind.code() as usize,
            status: header_safe(r.message),
        });
        if let Err(e) = request.respond(reply).await {
            tracing::warn!(error = %e, "cannot send reply");
        }
        timer.observe_duration();
    }
    .instrument(span)
    .await
}

/// The refusal's message travels in a NATS header, where async-nats panics
/// on a line break (and messages quote client input): control characters
/// are escaped.
fn header_safe(message: String) -> String {
    if !message.chars().any(char::is_control) {
        return message;
    }
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Why a call did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The service answered with a refusal.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// No replica of the service was listening, even after retries.
    #[error("service {0} is unavailable")]
    Unavailable(&'static str),
    /// The service did not answer in time (for writes, the outcome is unknown).
    #[error("service {0} did not answer in time")]
    Timeout(&'static str),
    #[error("NATS request to {service} failed")]
    Transport {
        service: &'static str,
        #[source]
        source: async_nats::RequestError,
    },
    #[error("malformed message to or from {service}")]
    Protocol {
        service: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Client side of the endpoints.
#[derive(Clone)]
pub struct RpcClient {
    nats: async_nats::Client,
    subjects: Subjects,
    timeout: Duration,
}

impl RpcClient {
    pub fn new(nats: async_nats::Client, subjects: Subjects, timeout: Duration) -> Self {
        Self {
            nats,
            subjects,
            timeout,
        }
    }

    /// Sends `req` and decodes the answer. Retries with backoff for a few
    /// seconds while no replica is listening (a restart); retries timeouts
    /// only for idempotent endpoints.
    pub async fn call<E: Endpoint>(
        &self,
        req: &E,
        request_id: &str,
    ) -> Result<E::Response, CallError> {
        let payload =
            Bytes::from(
                serde_json::to_vec(req).map_err(|source| CallError::Protocol {
                    service: E::SERVICE,
                    source,
                })?,
            );
        let subject = self.subjects.endpoint(E::SERVICE, E::NAME);
        let mut headers = HeaderMap::new();
        if !request_id.is_empty() {
            headers.insert(REQUEST_ID_HEADER, request_id);
        }
        let timeout = self.timeout.max(E::MIN_TIMEOUT);
        // Dropped before the answer (the caller left, or the wait ran out):
        // the service is told to stop.
        let guard = E::CANCELLABLE.then(|| {
            crate::cancel::CallGuard::arm(
                &self.nats,
                &self.subjects,
                E::SERVICE,
                timeout,
                &mut headers,
            )
        });
        let attempt = || {
            let request = async_nats::Request::new()
                .payload(payload.clone())
                .headers(headers.clone())
                .timeout(Some(timeout));
            let subject = subject.clone();
            async move {
                self.nats
                    .send_request(subject, request)
                    .await
                    .map_err(|e| match e.kind() {
                        async_nats::RequestErrorKind::NoResponders => {
                            CallError::Unavailable(E::SERVICE)
                        }
                        async_nats::RequestErrorKind::TimedOut => CallError::Timeout(E::SERVICE),
                        _ => CallError::Transport {
                            service: E::SERVICE,
                            source: e,
                        },
                    })
            }
        };
        let message = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(50))
                    .with_max_delay(Duration::from_secs(1))
                    .with_max_times(8)
                    .with_jitter(),
            )
            .when(|e| match e {
                CallError::Unavailable(_) => true,
                CallError::Timeout(_) => E::IDEMPOTENT,
                _ => false,
            })
            .notify(|e, after| tracing::warn!(error = %e, ?after, "retrying NATS request"))
            .await?;
        if let Some(guard) = guard {
            guard.answered();
        }

        if let Some(headers) = &message.headers {
            if let Some(code) = headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE) {
                let kind = Refusal::from_code(code.as_str().parse::<u16>().unwrap_or(500));
                let text = headers
                    .get(async_nats::service::NATS_SERVICE_ERROR)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                return Err(Rejection::new(kind, text).into());
            }
        }
        serde_json::from_slice(&message.payload).map_err(|source| CallError::Protocol {
            service: E::SERVICE,
            source,
        })
    }
}

/// A service's request/reply side: one NATS service (with discovery) and one
/// task per endpoint.
pub struct Server {
    service: async_nats::service::Service,
    group: async_nats::service::Group,
    tasks: tokio::task::JoinSet<()>,
    concurrency: usize,
    calls: Calls,
}

impl Server {
    /// Registers the NATS service `name` whose endpoints live under
    /// `{prefix}.svc.{name}.*`.
    pub async fn start(
        nats: &async_nats::Client,
        subjects: &Subjects,
        name: &str,
        description: &str,
        concurrency: usize,
    ) -> Result<Self, async_nats::Error> {
        use async_nats::service::ServiceExt;
        let service = nats
            .service_builder()
            .description(description)
            .start(name, env!("CARGO_PKG_VERSION"))
            .await?;
        let group = service.group(subjects.service_group(name));
        let calls = Calls::default();
        let mut tasks = tokio::task::JoinSet::new();
        // Every replica hears every cancel (no queue group).
        let cancels = nats
            .subscribe(crate::cancel::subject(subjects, name))
            .await?;
        tasks.spawn(calls.clone().listen(cancels));
        Ok(Self {
            service,
            group,
            tasks,
            concurrency,
            calls,
        })
    }

    /// Serves endpoint `E` with `handler(state.clone(), request)`.
    pub async fn add<E, S, H, Fut>(&mut self, state: S, handler: H) -> Result<(), async_nats::Error>
    where
        E: Endpoint,
        S: Clone + Send + Sync + 'static,
        H: Fn(S, E) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<E::Response, Rejection>> + Send + 'static,
    {
        self.add_cancellable::<E, _, _, _>(state, move |s, req, _| handler(s, req))
            .await
    }

    /// Serves endpoint `E` with `handler(state.clone(), request, token)`;
    /// for a [cancellable](Endpoint::CANCELLABLE) `E` the token is
    /// cancelled when the caller stops waiting.
    pub async fn add_cancellable<E, S, H, Fut>(
        &mut self,
        state: S,
        handler: H,
    ) -> Result<(), async_nats::Error>
    where
        E: Endpoint,
        S: Clone + Send + Sync + 'static,
        H: Fn(S, E, CancellationToken) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<E::Response, Rejection>> + Send + 'static,
    {
        let endpoint = self.group.endpoint(E::NAME).await?;
        let handler = move |req: E, stop| handler(state.clone(), req, stop);
        self.tasks.spawn(serve::<E, _, _>(
            endpoint,
            self.concurrency,
            self.calls.clone(),
            handler,
        ));
        Ok(())
    }

    /// Runs until `shutdown` resolves, then unsubscribes so that in-flight
    /// requests finish and new ones go to other replicas.
    /// An endpoint task that ends by itself is a fault: it is returned, and
    /// the binary exits non-zero.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), crate::tasks::TaskFailed> {
        let result = tokio::select! {
            _ = shutdown => Ok(()),
            ended = self.tasks.join_next() => Err(crate::tasks::TaskFailed {
                name: "NATS endpoint",
                how: match ended {
                    Some(Err(e)) => format!("failed: {e}"),
                    _ => "ended".to_owned(),
                },
            }),
        };
        if let Err(e) = self.service.stop().await {
            tracing::warn!(error = %e, "cannot stop the NATS service cleanly");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_messages_fit_a_nats_header() {
        let safe = header_safe("item a\r\nb\u{11} not found".into());
        assert_eq!(safe, "item a\\r\\nb\\u{11} not found");
        // async-nats panics on a line break in a header value.
        let _ = async_nats::HeaderValue::from(safe.as_str());
        assert_eq!(header_safe("plain µ".into()), "plain µ");
    }
}
