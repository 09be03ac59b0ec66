//! One way to start and stop a binary: say what it serves (NATS endpoints,
//! JetStream consumers, background tasks, an HTTP router), then
//! [`Service::run`] it until shutdown, which drains.
//!
//! ```ignore
//! Service::new(deps).await?
//!     .endpoints("order", "Orders and checkout")
//!     .endpoint(store.clone(), handlers::create_order)
//!     .consumer("order-steps", MAX_MESSAGES, |stop| results(stop))
//!     .retain(RETAINED.to_vec())
//!     .run(listener, shutdown)
//!     .await
//! ```

use std::{future::Future, pin::Pin};

use async_nats::jetstream::Context;
use axum::Router;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use contracts::endpoint::{Endpoint, Rejection};

use crate::{
    bootstrap::Deps,
    consumer::{Consumer, Handler, Liveness},
    http::ops,
    retention::Table,
    rpc::Server,
    tasks::Tasks,
};

/// How long shutdown waits for background tasks to finish what they hold.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// Requests served at once per NATS endpoint (more wait in the
/// subscription buffer).
const ENDPOINT_CONCURRENCY: usize = 128;

/// Why a binary stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Task(#[from] crate::tasks::TaskFailed),
}

/// Why a binary could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("NATS: {0}")]
    Nats(#[from] async_nats::Error),
    #[error(transparent)]
    JetStream(#[from] crate::jetstream::JetStreamError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Adds one endpoint to the started NATS service.
type Registration = Box<
    dyn for<'a> FnOnce(
            &'a mut Server,
        )
            -> Pin<Box<dyn Future<Output = Result<(), async_nats::Error>> + Send + 'a>>
        + Send,
>;

/// The NATS service a binary answers requests as.
struct Endpoints {
    name: &'static str,
    description: &'static str,
    registrations: Vec<Registration>,
}

impl Endpoints {
    /// Registers the NATS service and subscribes every endpoint.
    async fn start(self, deps: &Deps) -> Result<Server, async_nats::Error> {
        let mut server = Server::start(
            &deps.nats,
            &deps.subjects,
            self.name,
            self.description,
            ENDPOINT_CONCURRENCY,
        )
        .await?;
        for register in self.registrations {
            register(&mut server).await?;
        }
        Ok(server)
    }
}

/// The binary's own HTTP surface (the api's), given the operations routes
/// its listener keeps.
struct Http {
    app: Box<dyn FnOnce(Router) -> Router + Send>,
    /// Cancelled when shutdown begins: the listener stops accepting, and
    /// requests in flight finish before the background tasks drain.
    draining: CancellationToken,
}

/// What a binary serves, declared one item after another; see the module
/// documentation.
pub struct Service {
    deps: Deps,
    js: Context,
    endpoints: Option<Endpoints>,
    tasks: Tasks,
    consumers: Vec<Liveness>,
    http: Option<Http>,
}

impl Service {
    /// Sets up the JetStream streams every binary publishes to or consumes.
    pub async fn new(deps: Deps) -> Result<Self, RunError> {
        let js = crate::jetstream::setup(&deps.nats, &deps.topology).await?;
        Ok(Self {
            deps,
            js,
            endpoints: None,
            tasks: Tasks::new(),
            consumers: Vec::new(),
            http: None,
        })
    }

    pub fn deps(&self) -> &Deps {
        &self.deps
    }

    /// The JetStream context, for the handlers that publish.
    pub fn js(&self) -> &Context {
        &self.js
    }

    /// For a part that starts background tasks of its own: they are
    /// supervised and drained like the rest.
    pub fn tasks(&mut self) -> &mut Tasks {
        &mut self.tasks
    }

    /// Answers requests as the NATS service `name` (with discovery); its
    /// endpoints are added with [`Self::endpoint`].
    pub fn endpoints(mut self, name: &'static str, description: &'static str) -> Self {
        self.endpoints = Some(Endpoints {
            name,
            description,
            registrations: Vec::new(),
        });
        self
    }

    /// Serves the endpoint `E` with `handler(state.clone(), request)`.
    pub fn endpoint<E, S, H, Fut>(self, state: S, handler: H) -> Self
    where
        E: Endpoint,
        S: Clone + Send + Sync + 'static,
        H: Fn(S, E) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<E::Response, Rejection>> + Send + 'static,
    {
        self.register(Box::new(move |server: &mut Server| {
            Box::pin(server.add::<E, _, _, _>(state, handler))
        }))
    }

    /// Serves the [cancellable](Endpoint::CANCELLABLE) endpoint `E` with
    /// `handler(state.clone(), request, token)`.
    pub fn cancellable<E, S, H, Fut>(self, state: S, handler: H) -> Self
    where
        E: Endpoint,
        S: Clone + Send + Sync + 'static,
        H: Fn(S, E, CancellationToken) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<E::Response, Rejection>> + Send + 'static,
    {
        self.register(Box::new(move |server: &mut Server| {
            Box::pin(server.add_cancellable::<E, _, _, _>(state, handler))
        }))
    }

    fn register(mut self, registration: Registration) -> Self {
        let endpoints = self
            .endpoints
            .as_mut()
            .expect("Service::endpoints names the NATS service before its endpoints");
        endpoints.registrations.push(registration);
        self
    }

    /// Runs the JetStream consumer `durable` (`nats/jetstream.json`) with
    /// the handler `handler(stop)` makes, up to `max_messages` messages per
    /// batch; `/ready` reports it.
    pub fn consumer<T, H>(
        mut self,
        durable: &'static str,
        max_messages: usize,
        handler: impl FnOnce(CancellationToken) -> H,
    ) -> Self
    where
        T: DeserializeOwned + Send + Sync + 'static,
        H: Handler<T> + 'static,
    {
        let consumer = Consumer::new(
            self.js.clone(),
            self.deps.topology.clone(),
            durable,
            max_messages,
        );
        self.consumers.push(consumer.liveness.clone());
        let stop = self.tasks.stop_token();
        let handler = handler(stop.clone());
        self.tasks.spawn(durable, async move {
            consumer.run(handler, stop).await;
            Ok::<_, std::convert::Infallible>(())
        });
        self
    }

    /// Runs `task(stop)` until `stop` is cancelled.
    pub fn task<F>(mut self, name: &'static str, task: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = task(self.tasks.stop_token());
        self.tasks.spawn(name, async move {
            task.await;
            Ok::<_, std::convert::Infallible>(())
        });
        self
    }

    /// Keeps `tables` bounded: rows older than `RETENTION_HOURS` go.
    pub fn retain(self, tables: Vec<Table>) -> Self {
        let (pool, retention) = (self.deps.pool.clone(), self.deps.config.retention);
        self.task("retention", move |stop| {
            crate::retention::run(pool, tables, retention, stop)
        })
    }

    /// Serves `app(ops)` on the main listener instead of the operations
    /// routes alone (`ops` are those it keeps: all of them, or `/health`
    /// when they have a listener of their own, see `OPS_LISTEN_ADDR`).
    /// `draining` is cancelled when shutdown begins; the requests in
    /// flight then finish before the background tasks drain.
    pub fn http(
        mut self,
        draining: CancellationToken,
        app: impl FnOnce(Router) -> Router + Send + 'static,
    ) -> Self {
        self.http = Some(Http {
            app: Box::new(app),
            draining,
        });
        self
    }

    /// Serves everything declared, with the operations endpoints on
    /// `listener` (or on `OPS_LISTEN_ADDR`), until `shutdown` resolves or
    /// a background task fails.
    ///
    /// On shutdown: stop taking requests (NATS endpoints unsubscribe, the
    /// HTTP listener stops accepting and finishes what it holds), let the
    /// background tasks finish and acknowledge what they hold (at most
    /// [`DRAIN_GRACE`]), flush NATS, then stop the operations endpoints, so
    /// `/ready` and `/metrics` answer during the drain. A failed task is
    /// returned, so the binary exits non-zero and its supervisor restarts
    /// it.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let Service {
            deps,
            endpoints,
            mut tasks,
            consumers,
            http,
            ..
        } = self;
        let server = match endpoints {
            Some(endpoints) => Some(endpoints.start(&deps).await?),
            None => None,
        };
        let readiness = deps.readiness().with_consumers(consumers);
        let ops_stop = CancellationToken::new();
        // With OPS_LISTEN_ADDR the main listener keeps only /health.
        let (main_ops, ops) = match crate::bootstrap::listen_ops(&deps.config)
            .await
            .map_err(ServeError::from)?
        {
            Some(ops_listener) => (
                ops::health_router(),
                Some(tokio::spawn(ops::serve(
                    ops_listener,
                    ops::standalone(ops::router(readiness)),
                    ops_stop.clone().cancelled_owned(),
                ))),
            ),
            None => (ops::router(readiness), None),
        };
        // The binary's own HTTP stops at the start of the drain; the
        // operations routes alone are kept to its end.
        let draining = http.as_ref().map(|h| h.draining.clone());
        let main = tokio::spawn(match http {
            Some(Http { app, draining }) => {
                ops::serve(listener, app(main_ops), draining.cancelled_owned())
            }
            None => ops::serve(
                listener,
                ops::standalone(main_ops),
                ops_stop.clone().cancelled_owned(),
            ),
        });

        let mut failure = None;
        let stop = async {
            tokio::select! {
                _ = shutdown => {}
                failed = tasks.failed() => failure = Some(failed),
            }
        };
        let served = match server {
            Some(server) => server.run(stop).await,
            None => {
                stop.await;
                Ok(())
            }
        };
        if let Some(failed) = &failure {
            tracing::error!(error = %failed, "stopping");
        }
        // Clients in flight get their answer (or, after a short drain
        // period, their request record) before the background tasks stop.
        let (front, main) = match draining {
            Some(draining) => {
                draining.cancel();
                (Some(main.await), None)
            }
            None => (None, Some(main)),
        };
        tasks.drain(DRAIN_GRACE).await;
        // What the drained tasks published (acks, results, announcements)
        // may still sit in the connection's buffer.
        if let Err(e) = deps.nats.flush().await {
            tracing::warn!(error = %e, "cannot flush NATS at shutdown");
        }
        ops_stop.cancel();
        if let Some(front) = front {
            joined(front)?;
        }
        if let Some(main) = main {
            joined(main.await)?;
        }
        if let Some(ops) = ops {
            joined(ops.await)?;
        }
        served.map_err(ServeError::from)?;
        match failure {
            Some(failed) => Err(ServeError::from(failed).into()),
            None => Ok(()),
        }
    }
}

/// An HTTP server's end: a panic or an I/O error is a fault.
fn joined(ended: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), ServeError> {
    Ok(ended.map_err(std::io::Error::other)??)
}
