//! Pieces every binary of the checkout platform shares.
//!
//! One concern per module: configuration from the environment, logging, the
//! PostgreSQL pool and its migrations, the NATS connection and subject
//! naming, request/reply over NATS services, the wire messages, and the
//! operations endpoints (`/health`, `/ready`, `/metrics`).

pub mod bootstrap;
pub mod cancel;
pub mod config;
pub mod consumer;
pub mod db;
pub mod fault;
pub mod jetstream;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod nats;
pub mod ops;
pub mod problem;
pub mod retention;
pub mod retry;
pub mod rpc;
pub mod service;
pub mod setup;
pub mod shutdown;
pub mod tasks;
pub mod telemetry;
pub mod webhook;
