//! What every binary of the checkout platform runs on.
//!
//! One concern per module: configuration from the environment, logging, the
//! PostgreSQL pool and its migrations, the NATS connection, request/reply
//! over NATS services, JetStream streams and the consumer loop, supervised
//! tasks, one way to start and stop a binary ([`service`]), retention,
//! metrics, and the HTTP pieces every binary serves (problem+json, the
//! operations endpoints). What travels between the binaries is the
//! `contracts` crate's.

pub mod bootstrap;
pub mod cancel;
pub mod config;
pub mod consumer;
pub mod db;
pub mod fault;
pub mod http;
pub mod jetstream;
pub mod metrics;
pub mod nats;
pub mod retention;
pub mod retry;
pub mod rpc;
pub mod service;
pub mod setup;
pub mod shutdown;
pub mod tasks;
pub mod telemetry;
