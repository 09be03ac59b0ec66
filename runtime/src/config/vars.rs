//! Reading one variable: from the environment or from values given
//! explicitly, parsed and range-checked, refused with its name and why.

use std::{collections::HashMap, str::FromStr, time::Duration};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} has an invalid value {value:?}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("environment variable {name} is required: {reason}")]
    Missing { name: String, reason: String },
}

impl ConfigError {
    pub(super) fn invalid(name: &str, value: impl Into<String>, reason: impl ToString) -> Self {
        Self::Invalid {
            name: name.into(),
            value: value.into(),
            reason: reason.to_string(),
        }
    }
}

/// Where settings come from: the process environment, under values given
/// explicitly (a test running the services in-process gives each its own).
#[derive(Debug, Clone, Default)]
pub struct Vars {
    given: HashMap<String, String>,
}

impl Vars {
    /// The process environment only.
    pub fn process() -> Self {
        Self::default()
    }

    /// The process environment with `pairs` taking precedence, as for a
    /// child process started with them.
    pub fn with<K: Into<String>, V: Into<String>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.given
            .extend(pairs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The trimmed value of `name`; `None` when unset or blank.
    pub fn get(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let raw = match self.given.get(name) {
            Some(v) => v.clone(),
            None => match std::env::var(name) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => return Ok(None),
                Err(std::env::VarError::NotUnicode(v)) => {
                    return Err(ConfigError::invalid(
                        name,
                        v.to_string_lossy(),
                        "not valid UTF-8",
                    ))
                }
            },
        };
        let v = raw.trim();
        Ok((!v.is_empty()).then(|| v.to_owned()))
    }

    /// `name` as text, else `default`.
    pub fn string(&self, name: &str, default: impl Into<String>) -> Result<String, ConfigError> {
        Ok(self.get(name)?.unwrap_or_else(|| default.into()))
    }

    /// `name` parsed, else `default`.
    pub fn parse<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name)? {
            Some(v) => v
                .parse()
                .map_err(|e: T::Err| ConfigError::invalid(name, v, e)),
            None => Ok(default),
        }
    }

    /// `name` parsed, else `default`; below `min` is refused.
    pub fn at_least<T>(&self, name: &str, default: T, min: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
        T::Err: std::fmt::Display,
    {
        let v = self.parse(name, default)?;
        if v < min {
            return Err(ConfigError::invalid(
                name,
                v.to_string(),
                format!("must be at least {min}"),
            ));
        }
        Ok(v)
    }

    /// A duration in milliseconds (`FOO_MS=1500`), else `default`.
    pub fn duration_ms(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.parse(name, default.as_millis() as u64)
            .map(Duration::from_millis)
    }

    /// Like [`Vars::duration_ms`], but zero is refused: an interval of
    /// nothing would spin.
    pub fn interval_ms(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.at_least(name, default.as_millis() as u64, 1)
            .map(Duration::from_millis)
    }
}
