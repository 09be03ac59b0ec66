//! Which callback URLs are acceptable.
//!
//! Absolute http(s) URLs of bounded length, hosts filtered by optional allow
//! and deny lists, and no loopback, private, link-local or other non-global
//! addresses (an SSRF guard, on unless `WEBHOOK_ALLOW_PRIVATE=true`). The
//! guard checks the resolved addresses (within `WEBHOOK_DNS_TIMEOUT_MS`), and
//! the delivery client's resolver applies the same filter at connect time, so
//! a name that later resolves elsewhere (DNS rebinding) cannot slip through.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, LazyLock},
    time::Duration,
};

use tokio::sync::Semaphore;

use ipnet::{Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use runtime::config::{ConfigError, Vars};
use url::Url;

pub const MAX_URL_LEN: usize = 2048;

/// `WEBHOOK_DNS_TIMEOUT_MS`' default: a checkout's answer waits at most this
/// long for the callback host's name.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Policy {
    /// `WEBHOOK_ALLOW_HOSTS`: if not empty, only these hosts (or their
    /// subdomains, given as `.example.com`).
    pub allow: Vec<String>,
    /// `WEBHOOK_DENY_HOSTS`: never these.
    pub deny: Vec<String>,
    /// Refuse non-global addresses: on unless `WEBHOOK_ALLOW_PRIVATE=true`
    /// (local tests and benchmarks whose receiver is on loopback).
    pub block_private: bool,
    /// `WEBHOOK_DNS_TIMEOUT_MS`: bound on resolving a callback host.
    pub dns_timeout: Duration,
}

impl Default for Policy {
    /// No host lists, the guard on.
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: Vec::new(),
            block_private: true,
            dns_timeout: DEFAULT_DNS_TIMEOUT,
        }
    }
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
    #[error("callback_url host {0} is or resolves to an internal (non-global) address")]
    Internal(String),
    #[error("callback_url host {0} does not resolve")]
    Unresolvable(String),
    #[error("callback_url host {0} did not resolve within {1} ms")]
    DnsTimeout(String, u128),
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

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

/// IPv4 ranges that are not globally reachable unicast (IANA's
/// special-purpose registry, plus multicast and the reserved 240/4).
pub const BLOCKED_V4: [Ipv4Net; 15] = [
    v4(0, 0, 0, 0, 8),       // "this network"
    v4(10, 0, 0, 0, 8),      // private
    v4(100, 64, 0, 0, 10),   // carrier-grade NAT
    v4(127, 0, 0, 0, 8),     // loopback
    v4(169, 254, 0, 0, 16),  // link-local, cloud metadata
    v4(172, 16, 0, 0, 12),   // private
    v4(192, 0, 0, 0, 24),    // IETF protocol assignments
    v4(192, 0, 2, 0, 24),    // documentation
    v4(192, 88, 99, 0, 24),  // 6to4 relay anycast
    v4(192, 168, 0, 0, 16),  // private
    v4(198, 18, 0, 0, 15),   // benchmarking
    v4(198, 51, 100, 0, 24), // documentation
    v4(203, 0, 113, 0, 24),  // documentation
    v4(224, 0, 0, 0, 4),     // multicast
    v4(240, 0, 0, 0, 4),     // reserved, broadcast
];

/// IPv6 global unicast; everything outside it is refused (unspecified,
/// loopback, IPv4-compatible, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`,
/// discard `100::/64`, unique-local `fc00::/7`, link-local `fe80::/10`,
/// site-local, multicast), IPv4-mapped addresses are judged as IPv4.
const GLOBAL_V6: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// Parts of [`GLOBAL_V6`] that are not global either.
pub const BLOCKED_V6: [Ipv6Net; 4] = [
    // IETF protocol assignments, Teredo (embeds an IPv4 address) included.
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    // Documentation.
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    // 6to4: reaches the embedded IPv4 address through a relay.
    Ipv6Net::new_assert(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),
    // Documentation (RFC 9637).
    Ipv6Net::new_assert(Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
];

/// Whether `ip` is anything but a globally reachable unicast address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => BLOCKED_V4.iter().any(|n| n.contains(&ip)),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(mapped) => is_internal(IpAddr::V4(mapped)),
            None => !GLOBAL_V6.contains(&ip) || BLOCKED_V6.iter().any(|n| n.contains(&ip)),
        },
    }
}

/// Callback-host lookups in flight per process. The system resolver runs on
/// a blocking thread that a timeout cannot stop: each lookup holds a permit
/// until it really ends, so names that never answer occupy at most this many
/// threads (and the database's lookups never wait behind them).
pub const MAX_LOOKUPS: usize = 64;

static LOOKUPS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(MAX_LOOKUPS)));

/// Resolves `host` within `timeout` (waiting for a free lookup included).
async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, Refused> {
    resolve_limited(&LOOKUPS, host, port, timeout).await
}

async fn resolve_limited(
    lookups: &Arc<Semaphore>,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, Refused> {
    let timed_out = || Refused::DnsTimeout(host.to_owned(), timeout.as_millis());
    let deadline = tokio::time::Instant::now() + timeout;
    let permit = tokio::time::timeout_at(deadline, lookups.clone().acquire_owned())
        .await
        .map_err(|_| timed_out())?
        .map_err(|_| timed_out())?;
    let name = host.to_owned();
    let lookup = tokio::spawn(async move {
        let result = tokio::net::lookup_host((name.as_str(), port))
            .await
            .map(|addrs| addrs.collect::<Vec<SocketAddr>>());
        drop(permit);
        result
    });
    match tokio::time::timeout_at(deadline, lookup).await {
        Err(_) => Err(timed_out()),
        Ok(Err(_)) | Ok(Ok(Err(_))) => Err(Refused::Unresolvable(host.to_owned())),
        Ok(Ok(Ok(addrs))) if addrs.is_empty() => Err(Refused::Unresolvable(host.to_owned())),
        Ok(Ok(Ok(addrs))) => Ok(addrs),
    }
}

impl Policy {
    pub fn load(vars: &Vars) -> Result<Self, ConfigError> {
        // The old opt-in switch: refused rather than ignored, since the
        // guard is now on unless turned off.
        if let Some(v) = vars.get("WEBHOOK_BLOCK_PRIVATE")? {
            return Err(ConfigError::Invalid {
                name: "WEBHOOK_BLOCK_PRIVATE".into(),
                value: v,
                reason: "no longer read: internal addresses are refused by default; \
                         WEBHOOK_ALLOW_PRIVATE=true allows them"
                    .into(),
            });
        }
        Ok(Self {
            allow: list(vars, "WEBHOOK_ALLOW_HOSTS")?,
            deny: list(vars, "WEBHOOK_DENY_HOSTS")?,
            block_private: !vars.parse("WEBHOOK_ALLOW_PRIVATE", false)?,
            dns_timeout: vars.interval_ms("WEBHOOK_DNS_TIMEOUT_MS", DEFAULT_DNS_TIMEOUT)?,
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
    /// what the host resolves to now, waiting at most `dns_timeout`.
    pub async fn check(&self, raw: &str) -> Result<Url, Refused> {
        let url = self.check_syntax(raw)?;
        if self.block_private {
            // Literal addresses were judged above; names are resolved.
            if let Some(url::Host::Domain(host)) = url.host() {
                let port = url.port_or_known_default().unwrap_or(80);
                let addrs = resolve(host, port, self.dns_timeout).await?;
                if addrs.iter().any(|a| is_internal(a.ip())) {
                    return Err(Refused::Internal(host.to_owned()));
                }
            }
        }
        Ok(url)
    }
}

/// What the delivery client's resolver refused: every address of the name
/// was internal. Found again in the request error's source chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}: no allowed address")]
pub struct BlockedAddress(pub String);

/// The delivery client's resolver could not resolve the name in time.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DnsFailed(pub Refused);

/// The delivery client's resolver: drops internal addresses when the policy
/// says so, and gives up after the policy's DNS bound.
pub struct GuardedResolver {
    pub block_private: bool,
    pub dns_timeout: Duration,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (block, timeout) = (self.block_private, self.dns_timeout);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = resolve(&host, 0, timeout)
                .await
                .map_err(DnsFailed)?
                .into_iter()
                .filter(|a| !(block && is_internal(a.ip())))
                .collect();
            if addrs.is_empty() {
                return Err(BlockedAddress(host).into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl GuardedResolver {
    pub fn shared(policy: &Policy) -> Arc<Self> {
        Arc::new(Self {
            block_private: policy.block_private,
            dns_timeout: policy.dns_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Policy {
        Policy {
            block_private: false,
            ..Policy::default()
        }
    }

    #[test]
    fn syntax_and_lists() {
        let open = open();
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
            ..open
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

    /// One address inside (and the edges of) every refused range.
    #[test]
    fn every_non_global_range_is_internal() {
        for ip in [
            // IPv4
            "0.0.0.0",
            "0.255.255.255",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6
            "::",
            "::1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::5db8:d822",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:5db8:d822::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            // IPv4-mapped IPv6 of internal IPv4
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            "::ffff:240.0.0.1",
        ] {
            let parsed: IpAddr = ip.parse().expect("an address");
            assert!(is_internal(parsed), "{ip} should be internal");
        }
    }

    #[test]
    fn global_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "2001:200::1",
            "::ffff:93.184.216.34",
        ] {
            let parsed: IpAddr = ip.parse().expect("an address");
            assert!(!is_internal(parsed), "{ip} should be global");
        }
    }

    #[test]
    fn literal_internal_hosts_are_refused_in_every_spelling() {
        let guarded = Policy::default();
        for url in [
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]:8000/stock",
            "http://169.254.169.254/latest/meta-data/",
            "http://2130706433/", // 127.0.0.1 as one number
            "http://0x7f.1/",     // and in hex
            "http://0/",          // 0.0.0.0
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::]/",
            "http://[fe80::1%25eth0]/",
        ] {
            assert!(
                matches!(
                    guarded.check_syntax(url),
                    Err(Refused::Internal(_) | Refused::Malformed(_))
                ),
                "{url}: {:?}",
                guarded.check_syntax(url)
            );
        }
        assert!(guarded.check_syntax("http://93.184.216.34/").is_ok());
    }

    #[tokio::test]
    async fn resolved_names_are_checked() {
        let guarded = Policy::default();
        assert!(matches!(
            guarded.check("http://localhost/").await,
            Err(Refused::Internal(_))
        ));
        assert!(open().check("http://localhost/").await.is_ok());
    }

    #[tokio::test]
    async fn an_unresolvable_name_is_refused_within_the_bound() {
        let guarded = Policy {
            dns_timeout: Duration::from_millis(300),
            ..Policy::default()
        };
        let started = std::time::Instant::now();
        let r = guarded.check("http://no-such-host.invalid/hook").await;
        assert!(
            matches!(
                r,
                Err(Refused::Unresolvable(_) | Refused::DnsTimeout(_, 300))
            ),
            "{r:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    /// Every lookup slot taken by names that never answer: the next caller
    /// still gets its answer within the bound.
    #[tokio::test]
    async fn waiting_for_a_lookup_is_bounded_too() {
        let none_free = Arc::new(Semaphore::new(0));
        let started = std::time::Instant::now();
        let r = resolve_limited(&none_free, "example.com", 80, Duration::from_millis(200)).await;
        assert_eq!(r, Err(Refused::DnsTimeout("example.com".into(), 200)));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
