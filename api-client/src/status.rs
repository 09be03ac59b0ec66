//! What a request ended with.

use std::fmt;

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
