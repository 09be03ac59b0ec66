//! Which callback URLs are acceptable.
//!
//! Absolute http(s) URLs of bounded length, hosts filtered by optional allow
//! and deny lists, and optionally no loopback, private, link-local or other
//! internal addresses (an SSRF guard). The guard checks the resolved
//! addresses, and the delivery client's resolver applies the same filter at
//! connect time, so a name that later resolves elsewhere (DNS rebinding)
//! cannot slip through.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use common::config::{ConfigError, Vars};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `WEBHOOK_ALLOW_HOSTS`: if not empty, only these hosts (or their
    /// subdomains, given as `.example.com`).
    pub allow: Vec<String>,
    /// `WEBHOOK_DENY_HOSTS`: never these.
    pub deny: Vec<String>,
    /// `WEBHOOK_BLOCK_PRIVATE=true`: refuse internal addresses. Off by
    /// default so that local receivers (and the README example) work.
    pub block_private: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("callback_url is not a valid absolute URL: {0}")]
    Malformed(String),
    #[error("callback_url must be http or https")]
    Scheme,
    #[error("callback_url is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("callback_url host {0} is not allowed")]
    Host(String),
    #[error("callback_url host {0} resolves to an internal address")]
    Internal(String),
    #[error("callback_url host {0} does not resolve")]
    Unresolvable(String),
}

fn list(vars: &Vars, name: &str) -> Result<Vec<String>, ConfigError> {
    Ok(vars
        .string(name, "")?
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect())
}

fn matches(host: &str, pattern: &str) -> bool {
    match pattern.strip_prefix('.') {
        Some(suffix) => host == suffix || host.ends_with(&format!(".{suffix}")),
        None => host == pattern,
    }
}

/// Loopback, private, link-local, CGNAT, unique-local, multicast, unspecified
/// and documentation ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

impl Policy {
    pub fn load(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            allow: list(vars, "WEBHOOK_ALLOW_HOSTS")?,
            deny: list(vars, "WEBHOOK_DENY_HOSTS")?,
            block_private: vars.parse("WEBHOOK_BLOCK_PRIVATE", false)?,
        })
    }

    /// Checks everything that does not need the network.
    pub fn check_syntax(&self, raw: &str) -> Result<Url, Refused> {
        if raw.len() > MAX_URL_LEN {
            return Err(Refused::TooLong);
        }
        let url = Url::parse(raw).map_err(|e| Refused::Malformed(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::Scheme);
        }
        let host = url
            .host_str()
            .ok_or_else(|| Refused::Malformed("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if self.deny.iter().any(|p| matches(&host, p))
            || (!self.allow.is_empty() && !self.allow.iter().any(|p| matches(&host, p)))
        {
            return Err(Refused::Host(host));
        }
        if self.block_private {
            if let Ok(ip) = host.parse::<IpAddr>() {
                if is_internal(ip) {
                    return Err(Refused::Internal(host));
                }
            }
        }
        Ok(url)
    }

    /// Full check: syntax, lists, and (when blocking internal addresses)
    /// what the host resolves to now.
    pub async fn check(&self, raw: &str) -> Result<Url, Refused> {
        let url = self.check_syntax(raw)?;
        if self.block_private {
            let host = url.host_str().unwrap_or_default().to_owned();
            if host.parse::<IpAddr>().is_err() {
                let port = url.port_or_known_default().unwrap_or(80);
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|_| Refused::Unresolvable(host.clone()))?
                    .collect();
                if addrs.is_empty() {
                    return Err(Refused::Unresolvable(host));
                }
                if addrs.iter().any(|a| is_internal(a.ip())) {
                    return Err(Refused::Internal(host));
                }
            }
        }
        Ok(url)
    }
}

/// The delivery client's resolver: drops internal addresses when the policy
/// says so.
pub struct GuardedResolver {
    pub block_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let block = self.block_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !(block && is_internal(a.ip())))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host}: no allowed address").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl GuardedResolver {
    pub fn shared(block_private: bool) -> Arc<Self> {
        Arc::new(Self { block_private })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_and_lists() {
        let open = Policy::default();
        assert!(open.check_syntax("http://127.0.0.1:9/hook").is_ok());
        assert!(open.check_syntax("https://example.com/x?y=1").is_ok());
        assert_eq!(
            open.check_syntax("ftp://example.com/"),
            Err(Refused::Scheme)
        );
        assert!(matches!(
            open.check_syntax("/relative"),
            Err(Refused::Malformed(_))
        ));
        assert_eq!(
            open.check_syntax(&format!("http://e.com/{}", "a".repeat(2048))),
            Err(Refused::TooLong)
        );
        let listed = Policy {
            allow: vec![".example.com".into()],
            deny: vec!["bad.example.com".into()],
            block_private: false,
        };
        assert!(listed.check_syntax("https://hooks.example.com/").is_ok());
        assert!(listed.check_syntax("https://example.com/").is_ok());
        assert!(matches!(
            listed.check_syntax("https://bad.example.com/"),
            Err(Refused::Host(_))
        ));
        assert!(matches!(
            listed.check_syntax("https://evil.com/"),
            Err(Refused::Host(_))
        ));
    }

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().expect("ip")), "{ip}");
        }
        let guarded = Policy {
            block_private: true,
            ..Policy::default()
        };
        assert!(matches!(
            guarded.check_syntax("http://127.0.0.1/"),
            Err(Refused::Internal(_))
        ));
        assert!(matches!(
            guarded.check_syntax("http://[::1]/"),
            Err(Refused::Internal(_))
        ));
    }

    #[tokio::test]
    async fn resolved_names_are_checked() {
        let guarded = Policy {
            block_private: true,
            ..Policy::default()
        };
        assert!(matches!(
            guarded.check("http://localhost/").await,
            Err(Refused::Internal(_))
        ));
    }
}
