//! The naming of every NATS subject and stream. All names hang off one
//! prefix (`NATS_PREFIX`, default `checkout`) so that independent
//! deployments, and tests running in parallel, can share a nats-server
//! without seeing each other's traffic.

/// Builds every subject and stream name from the deployment prefix.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Subject group of a service's request/reply endpoints:
    /// `{prefix}.svc.{service}`. Kept apart from the `{prefix}.js.` subjects
    /// that JetStream streams capture.
    pub fn service_group(&self, service: &str) -> String {
        format!("{}.svc.{service}", self.prefix)
    }

    /// Subject of one request/reply endpoint.
    pub fn endpoint(&self, service: &str, endpoint: &str) -> String {
        format!("{}.{endpoint}", self.service_group(service))
    }

    /// A subject captured by a JetStream stream: `{prefix}.js.{rest}`.
    pub fn js(&self, rest: &str) -> String {
        format!("{}.js.{rest}", self.prefix)
    }

    /// Core-NATS subject (not persisted) on which every `api` replica hears
    /// which request records became final (a batch per message).
    pub fn requests_final(&self) -> String {
        format!("{}.evt.requests.final", self.prefix)
    }

    /// Core-NATS subject (not persisted) on which order-svc tells every
    /// `api` replica which checkouts ended, right after the commit that
    /// ended them (a batch of outcomes per message): a waiting client is
    /// answered from it, before its record is finalised.
    pub fn checkout_ended(&self) -> String {
        format!("{}.evt.checkout.ended", self.prefix)
    }
}
